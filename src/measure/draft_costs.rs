//! Lossless decoding's measured costs (a verification batch, a draft decode, the switch
//! back to plain steps, each relative to a plain step), kept between runs per model file,
//! thread count and batch size. They are properties of the machine, not of the text: a
//! run that starts from them does not pay again for the drafting rounds that found a
//! drafter too slow.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::probe::{cache_file, write_best_effort};
use crate::engine::speculative::DraftCosts;

#[derive(Serialize, Deserialize)]
struct Cached {
    key: String,
    costs: DraftCosts,
}

fn setting(threads: i32, n_seq: u32) -> String {
    format!("t{threads}-b{n_seq}")
}

/// The costs measured for `model_file` at `threads` threads and `n_seq` sequences, or
/// none known (also when the file, the build or the setting changed).
pub fn load(model_file: &Path, threads: i32, n_seq: u32) -> DraftCosts {
    let read = || -> Option<DraftCosts> {
        let (path, key) = cache_file(model_file, &setting(threads, n_seq), "draft")?;
        let cached: Cached = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        (cached.key == key).then_some(cached.costs)
    };
    read().unwrap_or_default()
}

/// Remembers `costs` (best effort: a cache that cannot be written only costs some
/// drafting rounds next time).
pub fn store(model_file: &Path, threads: i32, n_seq: u32, costs: &DraftCosts) {
    let Some((path, key)) = cache_file(model_file, &setting(threads, n_seq), "draft") else {
        return;
    };
    let value = Cached {
        key,
        costs: costs.clone(),
    };
    write_best_effort(&path, &value);
}
