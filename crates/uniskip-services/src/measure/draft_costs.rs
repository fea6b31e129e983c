//! Lossless decoding's measured costs (a verification batch, a draft decode, the switch
//! back to plain steps, each relative to a plain step), kept between runs per model file,
//! thread count and batch size. They are properties of the machine, not of the text: a
//! run that starts from them does not pay again for the drafting rounds that found a
//! drafter too slow.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::probe::{cache_file, write_best_effort};
use uniskip_engine::Model;
use uniskip_engine::speculative::DraftCosts;

#[derive(Serialize, Deserialize)]
struct Cached {
    key: String,
    costs: DraftCosts,
}

/// The setting the costs belong to: where the model runs (the CPU, or a GPU with so many
/// blocks), threads and sequences. Costs are properties of the machine, and a CPU and a GPU
/// differ by far more than any text does.
fn setting(model: &Model, threads: i32, n_seq: u32) -> String {
    format!("{}-t{threads}-b{n_seq}", model.placement().tag())
}

/// The costs measured for `model_file` (loaded as `model`) at `threads` threads and `n_seq`
/// sequences, or none known (also when the file, the build or the setting changed).
pub fn load(model_file: &Path, model: &Model, threads: i32, n_seq: u32) -> DraftCosts {
    let read = || -> Option<DraftCosts> {
        let (path, key) = cache_file(model_file, &setting(model, threads, n_seq), "draft")?;
        let cached: Cached = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        (cached.key == key).then_some(cached.costs)
    };
    read().unwrap_or_default()
}

/// Remembers `costs` (best effort: a cache that cannot be written only costs some
/// drafting rounds next time).
pub fn store(model_file: &Path, model: &Model, threads: i32, n_seq: u32, costs: &DraftCosts) {
    let Some((path, key)) = cache_file(model_file, &setting(model, threads, n_seq), "draft") else {
        return;
    };
    let value = Cached {
        key,
        costs: costs.clone(),
    };
    write_best_effort(&path, &value);
}

/// The costs kept for one model file and setting, loaded once for a generation that may
/// draft (the engine reads and updates them through [`Kept::cell`]) and written back after
/// it: what `run --lossless` and each lossless chat reply do.
pub struct Kept<'m> {
    model_file: PathBuf,
    model: &'m Model,
    threads: i32,
    n_seq: u32,
    costs: RefCell<DraftCosts>,
}

impl<'m> Kept<'m> {
    /// The costs kept for `model_file` (loaded as `model`) at `threads` threads and `n_seq`
    /// sequences (none known: empty costs).
    pub fn load(model_file: &Path, model: &'m Model, threads: i32, n_seq: u32) -> Self {
        Kept {
            costs: RefCell::new(load(model_file, model, threads, n_seq)),
            model_file: model_file.to_path_buf(),
            model,
            threads,
            n_seq,
        }
    }

    /// The costs, for the engine's `Lossless::costs`.
    pub fn cell(&self) -> &RefCell<DraftCosts> {
        &self.costs
    }

    /// Writes the costs back (best effort, as [`store`]).
    pub fn store(&self) {
        store(
            &self.model_file,
            self.model,
            self.threads,
            self.n_seq,
            &self.costs.borrow(),
        );
    }
}
