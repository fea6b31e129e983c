//! Text to evaluate on, and the windows cut from it.
//!
//! A corpus is one UTF-8 text: a file, or every `.txt` file of a directory in name order
//! (a `metadata.txt` is left out), joined by blank lines. Windows for evaluation and for
//! calibration come from disjoint parts of it: the text is cut into [`STRIPES`] equal
//! stripes; evaluation windows lie in the even stripes, calibration windows in the odd
//! ones, so whatever the window counts, no text is in both slices.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use uniskip_engine::{LlamaToken, Model};

/// Number of stripes the text is cut into (half for each slice).
pub const STRIPES: usize = 16;

/// Which part of the corpus windows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slice {
    /// The even stripes: what quality is reported on.
    Evaluation,
    /// The odd stripes: what calibration searches on.
    Calibration,
}

impl Slice {
    /// `evaluation` or `calibration`.
    pub fn name(self) -> &'static str {
        match self {
            Slice::Evaluation => "evaluation",
            Slice::Calibration => "calibration",
        }
    }

    fn parity(self) -> usize {
        match self {
            Slice::Evaluation => 0,
            Slice::Calibration => 1,
        }
    }
}

/// A loaded text corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    label: String,
    text: String,
    sha256: String,
    files: usize,
}

impl Corpus {
    /// Loads `spec`: `None` for the catalog's Shakespeare texts, the name of a catalog
    /// corpus or text (`shakespeare`, `alice`; fetched on first use), else a UTF-8 file or
    /// a directory of `.txt` files.
    pub fn load(spec: Option<&str>) -> Result<Corpus> {
        let name = spec.unwrap_or("shakespeare");
        let catalog = crate::models::Catalog::builtin()?;
        let is_text = catalog.get(name).is_some_and(|e| {
            matches!(
                e.kind,
                crate::models::Kind::Corpus | crate::models::Kind::Text
            )
        });
        let path = if is_text {
            crate::models::ensure(Some(name), crate::models::Progress::Stderr)?
        } else {
            PathBuf::from(name)
        };
        Corpus::from_path(name, &path)
    }

    /// Loads a file, or every `.txt` file of a directory (`metadata.txt` excepted).
    pub fn from_path(label: &str, path: &Path) -> Result<Corpus> {
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut files: Vec<PathBuf> = fs::read_dir(path)
                .with_context(|| format!("reading corpus directory {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "txt")
                        && p.file_name().is_some_and(|n| n != "metadata.txt")
                })
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("corpus directory {} holds no .txt files", path.display());
            }
            files
        } else {
            vec![path.to_path_buf()]
        };
        let mut parts = Vec::with_capacity(files.len());
        for f in &files {
            let bytes = fs::read(f).with_context(|| format!("reading corpus {}", f.display()))?;
            let text = String::from_utf8(bytes)
                .with_context(|| format!("corpus file {} is not valid UTF-8", f.display()))?;
            parts.push(text.replace("\r\n", "\n"));
        }
        let mut corpus = Corpus::from_text(label, &parts.join("\n\n"));
        corpus.files = files.len();
        Ok(corpus)
    }

    /// A corpus from text in memory.
    pub fn from_text(label: &str, text: &str) -> Corpus {
        Corpus {
            label: label.to_string(),
            text: text.to_string(),
            sha256: Sha256::digest(text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            files: 1,
        }
    }

    /// What the corpus was loaded from.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// sha256 of the joined text.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Files joined.
    pub fn files(&self) -> usize {
        self.files
    }

    /// The joined text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Length of the text in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// True for an empty text.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// `n` windows of exactly `len` tokens (BOS included when the model wants one) from
    /// `slice`, spread evenly over its stripes. Each window stays inside one stripe and starts at a
    /// line start where the stripe leaves room for one (else wherever it must).
    pub fn windows(
        &self,
        model: &Model,
        slice: Slice,
        n: usize,
        len: usize,
    ) -> Result<Vec<Vec<LlamaToken>>> {
        let stripe_len = self.text.len() / STRIPES;
        let stripes: Vec<usize> = (0..STRIPES).filter(|s| s % 2 == slice.parity()).collect();
        let slice_len = stripe_len * stripes.len();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            // Evenly spread offsets inside the slice, each mapped into its stripe.
            let offset = ((2 * i + 1) * slice_len) / (2 * n);
            let stripe = stripes[offset / stripe_len.max(1)];
            let start = stripe * stripe_len + offset % stripe_len.max(1);
            let lo = floor_char_boundary(&self.text, stripe * stripe_len);
            let hi = floor_char_boundary(&self.text, (stripe + 1) * stripe_len);
            out.push(self.window_at(model, start, lo, hi, len).with_context(|| {
                format!(
                    "{} window {i} of {n} ({} tokens) from corpus {}",
                    slice.name(),
                    len,
                    self.label
                )
            })?);
        }
        Ok(out)
    }

    /// The first `len` tokens of the text from the line start at or after `start`, within
    /// `lo..hi`; moved back towards `lo` when the stripe's end comes too soon.
    fn window_at(
        &self,
        model: &Model,
        start: usize,
        lo: usize,
        hi: usize,
        len: usize,
    ) -> Result<Vec<LlamaToken>> {
        let text = &self.text;
        let line_start = |from: usize| -> usize {
            let from = floor_char_boundary(text, from.max(lo));
            if from == lo {
                return from;
            }
            match text[from..hi].find('\n') {
                Some(nl) => from + nl + 1,
                None => from,
            }
        };
        let mut begin = line_start(start);
        // Generous: English runs about 4 bytes per token.
        let mut want = len * 8;
        loop {
            let end = floor_char_boundary(text, (begin + want).min(hi));
            let tokens = model.tokenize(&text[begin..end], true)?;
            if tokens.len() >= len {
                return Ok(tokens[..len].to_vec());
            }
            if end < hi {
                want *= 2;
            } else if begin > lo {
                // Not enough text left in the stripe: start earlier.
                let back = floor_char_boundary(text, begin.saturating_sub(want).max(lo));
                let snapped = line_start(back);
                begin = if snapped < begin { snapped } else { back };
            } else {
                bail!(
                    "the corpus is too small: a stripe of {} bytes holds only {} tokens",
                    hi - lo,
                    tokens.len()
                );
            }
        }
    }
}

/// The largest char boundary at or below `i`.
fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_char_boundary_never_splits_a_character() {
        let s = "aé🦀";
        for i in 0..=s.len() + 2 {
            let b = floor_char_boundary(s, i);
            assert!(s.is_char_boundary(b) && b <= i);
        }
    }

    #[test]
    fn the_two_slices_use_alternate_stripes() {
        let even: Vec<usize> = (0..STRIPES)
            .filter(|s| s % 2 == Slice::Evaluation.parity())
            .collect();
        let odd: Vec<usize> = (0..STRIPES)
            .filter(|s| s % 2 == Slice::Calibration.parity())
            .collect();
        assert_eq!(even.len(), odd.len());
        assert!(even.iter().all(|s| !odd.contains(s)));
    }

    #[test]
    fn a_directory_corpus_joins_txt_files_in_name_order_without_metadata() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("b.txt"), "second").unwrap();
        fs::write(dir.path().join("a.txt"), "first").unwrap();
        fs::write(dir.path().join("metadata.txt"), "[a]\nurl = x").unwrap();
        fs::write(dir.path().join("c.md"), "not text").unwrap();
        let c = Corpus::from_path("t", dir.path()).unwrap();
        assert_eq!(c.text, "first\n\nsecond");
        assert_eq!(c.files(), 2);
        assert_eq!(c.sha256().len(), 64);
    }
}
