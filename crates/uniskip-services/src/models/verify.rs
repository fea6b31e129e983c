//! Checking a cached file against its catalog size and sha256.
//!
//! Hashing 250 MB takes a noticeable moment, and `resolve` runs on every start, so a
//! successful check is remembered in a stamp file (`<file>.sha256`) holding the hash and
//! the file's size and mtime. The file is only hashed again once one of those changes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::archive::sha256_file;
use super::{IoContext, ModelError, Progress};

/// Where the stamp of `file` lives.
pub(super) fn stamp_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// The stamp line for `file` as it is now on disk, or `None` if the file system keeps no
/// modification time (then every check hashes).
fn stamp_line(file: &Path, sha256: &str) -> Option<String> {
    let meta = fs::metadata(file).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!(
        "sha256={sha256} size={} mtime_ns={mtime}\n",
        meta.len()
    ))
}

/// Records that `file` was checked and has `sha256`. Best effort: a missing stamp only
/// costs a re-hash, so failing to write one must not fail the caller.
pub(super) fn write_stamp(file: &Path, sha256: &str) {
    if let Some(line) = stamp_line(file, sha256) {
        let _ = fs::write(stamp_path(file), line);
    }
}

/// Removes a file that failed verification together with its stamp, so the next fetch
/// starts from scratch.
fn discard(file: &Path) -> Result<(), ModelError> {
    let _ = fs::remove_file(stamp_path(file));
    fs::remove_file(file).ctx(|| format!("deleting bad file {}", file.display()))
}

/// Checks `file` against the expected size and sha256, using the stamp when it is
/// current. A file that fails is deleted (it lives in our cache and is useless).
pub(super) fn verify_file(
    file: &Path,
    size: u64,
    sha256: &str,
    progress: Progress,
) -> Result<(), ModelError> {
    let actual_size = fs::metadata(file)
        .ctx(|| format!("reading {}", file.display()))?
        .len();
    if actual_size != size {
        discard(file)?;
        return Err(ModelError::SizeMismatch {
            path: file.to_owned(),
            expected: size,
            actual: actual_size,
        });
    }
    let stamp = fs::read_to_string(stamp_path(file)).ok();
    if stamp.is_some() && stamp == stamp_line(file, sha256) {
        return Ok(());
    }
    progress.start(format_args!("verifying sha256 of {} ...", file.display()));
    let actual = sha256_file(file).ctx(|| format!("hashing {}", file.display()))?;
    if actual != sha256 {
        progress.finish("FAILED");
        discard(file)?;
        return Err(ModelError::ChecksumMismatch {
            path: file.to_owned(),
            expected: sha256.to_owned(),
            actual,
        });
    }
    progress.finish("ok");
    write_stamp(file, sha256);
    Ok(())
}
