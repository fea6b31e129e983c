//! The clock in UTC, as reports, profiles and file names write it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now (0 if the clock is before it).
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time.
pub fn timestamp(unix: u64) -> String {
    let (y, m, d) = civil_from_days((unix / 86_400) as i64);
    let s = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `YYYYMMDD-HHMMSS` for a Unix time, for file names.
pub fn file_stamp(unix: u64) -> String {
    timestamp(unix)
        .replace(['-', ':'], "")
        .replace('T', "-")
        .trim_end_matches('Z')
        .to_string()
}

/// Year, month and day of a count of days since 1970-01-01 (proleptic Gregorian;
/// H. Hinnant's `civil_from_days`, which is all these stamps need of a calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_known_dates() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day) 12:34:56.
        assert_eq!(timestamp(951_827_696), "2000-02-29T12:34:56Z");
        assert_eq!(timestamp(1_767_225_599), "2025-12-31T23:59:59Z");
    }

    #[test]
    fn file_stamps_carry_the_date_and_time() {
        assert_eq!(file_stamp(0), "19700101-000000");
        assert_eq!(file_stamp(1_700_000_000), "20231114-221320");
        assert_eq!(file_stamp(951_782_400), "20000229-000000");
        assert_eq!(file_stamp(951_827_696), "20000229-123456");
    }
}
