//! Shared set-up of the integration tests: real models from the local cache.

use std::path::PathBuf;

use uniskip::engine::{BatchToken, ContextOptions, LlamaToken, Model, ModelOptions, Session};
use uniskip::skip::Mask;

pub mod training;
pub use training::*;

/// The cached file of catalog model `name`; fails with what to run when it is missing.
pub fn model_path(name: &str) -> PathBuf {
    uniskip::models::resolve(Some(name)).unwrap_or_else(|e| {
        panic!("{e}\n(the tests need the catalog models: run `just model` first)")
    })
}

/// Loads catalog model `name` on the CPU.
pub fn load(name: &str) -> Model {
    Model::load(&model_path(name), &ModelOptions::default()).expect("model loads")
}

/// Context options for tests: small, deterministic, 2 threads.
pub fn ctx(n_seq: u32) -> ContextOptions {
    ContextOptions {
        n_ctx: 1024,
        n_batch: 256,
        n_seq,
        threads: 2,
    }
}

/// A mask from a list of skipped blocks.
pub fn skipping(n_layer: usize, skipped: &[usize]) -> Mask {
    let mut active = vec![true; n_layer];
    for &i in skipped {
        active[i] = false;
    }
    Mask::from_active(active).expect("valid mask")
}

/// Decodes `tokens` on sequence 0 with logits for every token; returns all logit rows.
pub fn decode_all(
    session: &mut Session<'_>,
    tokens: &[LlamaToken],
    mask: Option<&Mask>,
) -> Vec<Vec<f32>> {
    let batch = BatchToken::run_of(0, tokens.iter().copied(), true);
    let idx = session.decode(&batch, mask).expect("decode");
    idx.iter().map(|&i| session.logits(i).to_vec()).collect()
}

/// Decodes one token on sequence 0; returns its logits.
pub fn step(session: &mut Session<'_>, token: LlamaToken, mask: Option<&Mask>) -> Vec<f32> {
    decode_all(session, &[token], mask).pop().expect("one row")
}

/// The index of the largest logit.
pub fn argmax(logits: &[f32]) -> LlamaToken {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    LlamaToken(best as i32)
}

/// Largest absolute difference between two logit rows (infinite on a NaN).
pub use uniskip::quality::metrics::max_abs_diff;

/// A prompt long enough to matter and short enough to be quick.
pub const PROMPT: &str = "The old lighthouse keeper climbed the stairs every evening, and on the night of the storm he saw";
