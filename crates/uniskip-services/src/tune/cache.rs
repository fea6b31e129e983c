//! Distilled training text, kept between runs.
//!
//! Writing the training text (the base model continuing corpus prompts at full depth) is
//! a sizeable part of a tuning run, and runs that compare recipes, strategies, targets or
//! learning rates on one base model want the same text. The windows are stored under the
//! model cache (`distilled/`), named by a hash of everything that determines them: the
//! base model's sha256, the data label, the number and length of windows, and the seed.

use std::path::PathBuf;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Bumped when the distillation itself changes (sampler settings, prompt length), so old
/// files are not reused.
const FORMAT: u32 = 1;

/// Everything that determines a set of distilled windows.
#[derive(Debug, Clone)]
pub struct Key<'a> {
    /// sha256 of the base model file.
    pub base_sha256: &'a str,
    /// The data label (`distill:CORPUS`).
    pub data: &'a str,
    /// Windows.
    pub n: usize,
    /// Tokens per window.
    pub len: usize,
    /// Sampler seed.
    pub seed: u32,
}

impl Key<'_> {
    /// The file these windows are kept in.
    pub fn path(&self) -> Result<PathBuf> {
        let text = format!(
            "{FORMAT}|{}|{}|{}|{}|{}",
            self.base_sha256, self.data, self.n, self.len, self.seed
        );
        let digest: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(crate::models::cache_dir()?
            .join("distilled")
            .join(format!("{}.json", &digest[..32])))
    }
}

/// The windows kept for `key`, if a readable file with the right shape exists.
pub fn load(key: &Key<'_>) -> Result<Option<Vec<Vec<i32>>>> {
    let path = key.path()?;
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let windows: Vec<Vec<i32>> = match serde_json::from_str(&text) {
        Ok(w) => w,
        // A damaged file is written again.
        Err(_) => return Ok(None),
    };
    let right_shape = windows.len() == key.n && windows.iter().all(|w| w.len() == key.len);
    Ok(right_shape.then_some(windows))
}

/// Keeps `windows` for `key` (written whole, then renamed into place).
pub fn save(key: &Key<'_>, windows: &[Vec<i32>]) -> Result<PathBuf> {
    let path = key.path()?;
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(windows)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn every_setting_that_shapes_the_text_changes_the_file() {
        let base = Key {
            base_sha256: "abc",
            data: "distill:shakespeare",
            n: 32,
            len: 257,
            seed: 42,
        };
        let path = |k: &Key<'_>| k.path().unwrap();
        let p = path(&base);
        assert_eq!(p, path(&base.clone()));
        for other in [
            Key {
                base_sha256: "abd",
                ..base.clone()
            },
            Key {
                data: "distill:other.txt",
                ..base.clone()
            },
            Key {
                n: 33,
                ..base.clone()
            },
            Key {
                len: 513,
                ..base.clone()
            },
            Key {
                seed: 43,
                ..base.clone()
            },
        ] {
            assert_ne!(p, path(&other), "{other:?}");
        }
    }
}
