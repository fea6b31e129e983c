//! A progress bar with time left on stderr: redrawn in place on a terminal, otherwise an
//! occasional plain line (every tenth of the work, at most one per 20 s otherwise).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// One bar for one phase of work; its clock starts at the first update (report `0` done
/// when the work starts).
pub struct Progress {
    label: String,
    started: Option<Instant>,
    tty: bool,
    last_draw: Option<Instant>,
    last_tenth: usize,
}

impl Progress {
    /// Starts a bar named `label`.
    pub fn new(label: &str) -> Progress {
        Progress {
            label: label.to_string(),
            started: None,
            tty: std::io::stderr().is_terminal(),
            last_draw: None,
            last_tenth: 0,
        }
    }

    /// Reports `done` of `total` units, with a short `detail` (what is running).
    pub fn update(&mut self, done: usize, total: usize, detail: &str) {
        let total = total.max(1);
        let done = done.min(total);
        let elapsed = self.started.get_or_insert_with(Instant::now).elapsed();
        let left = if done == 0 {
            None
        } else {
            Some(elapsed.mul_f64((total - done) as f64 / done as f64))
        };
        let left = left.map_or("--".into(), fmt_duration);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let now = Instant::now();
            let due = self
                .last_draw
                .is_none_or(|t| now - t >= Duration::from_millis(100));
            if !due && done < total {
                return;
            }
            self.last_draw = Some(now);
            let width = 28;
            let filled = done * width / total;
            let _ = write!(
                err,
                "\r\x1b[2K{} [{}{}] {done}/{total} {} left {detail}",
                self.label,
                "#".repeat(filled),
                "-".repeat(width - filled),
                left
            );
            if done == total {
                let _ = writeln!(err);
            }
        } else {
            let tenth = done * 10 / total;
            let quiet_for = self.last_draw.map_or(elapsed, |t| t.elapsed());
            if tenth > self.last_tenth || quiet_for >= Duration::from_secs(20) || done == total {
                self.last_tenth = tenth;
                self.last_draw = Some(Instant::now());
                let _ = writeln!(
                    err,
                    "{}: {done}/{total} ({}%), {} elapsed, {} left {detail}",
                    self.label,
                    done * 100 / total,
                    fmt_duration(elapsed),
                    left
                );
            }
        }
    }

    /// Time since the first update.
    pub fn elapsed(&self) -> Duration {
        self.started.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

/// `42s`, `3m05s`, `1h02m`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(Duration::from_secs(42)), "42s");
        assert_eq!(fmt_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(fmt_duration(Duration::from_secs(3720)), "1h02m");
    }
}
