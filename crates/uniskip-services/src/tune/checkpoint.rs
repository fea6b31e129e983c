//! What an interrupted tuning run leaves behind, so that `--resume` continues it: the
//! weights so far (F32 GGUF) and this state (JSON) in a directory next to the output.
//!
//! AdamW's moment estimates are not kept (llama.cpp's optimizer does not expose them): a
//! resumed run restarts them, as a short warm-up does.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The settings a checkpoint was made with; a resume must give the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// sha256 of the base model file.
    pub base_sha256: String,
    /// Strategy name.
    pub strategy: String,
    /// Target speedup.
    pub speedup: f64,
    /// Kept blocks of the mask.
    pub kept_blocks: Vec<usize>,
    /// Training data description.
    pub data: String,
    /// Optimizer steps planned.
    pub steps: usize,
    /// Tokens per window.
    pub window: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// The recipe.
    pub recipe: super::Recipe,
    /// The loss targets.
    pub targets: super::Targets,
}

/// A checkpoint's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The settings it belongs to.
    pub fingerprint: Fingerprint,
    /// Optimizer steps done.
    pub step: usize,
    /// Training loss of each step done.
    pub losses: Vec<f64>,
    /// Held-out loss under the mask before training.
    pub eval_loss_before: f64,
    /// The training windows (tokens), so a resumed run trains on the same text.
    pub windows: Vec<Vec<i32>>,
    /// Seconds spent training so far.
    pub train_seconds: f64,
}

/// The checkpoint directory of output `out`: `OUT.tune/`.
pub fn dir_for(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".tune");
    out.with_file_name(name)
}

/// The weights file inside a checkpoint directory.
pub fn weights(dir: &Path) -> PathBuf {
    dir.join("weights-f32.gguf")
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Writes the state (the weights are written by the trainer beforehand).
pub fn save(dir: &Path, state: &State) -> Result<()> {
    let path = state_path(dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(state)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads the state of the checkpoint in `dir`, if there is one.
pub fn load(dir: &Path) -> Result<Option<State>> {
    let path = state_path(dir);
    if !path.exists() || !weights(dir).exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let state = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a tuning checkpoint", path.display()))?;
    Ok(Some(state))
}
