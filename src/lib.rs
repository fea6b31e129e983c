//! uniskip: Unified Layer Skipping for GGUF models on llama.cpp.
//!
//! - [`skip`]: pure planning: masks, strategies, the cost model (no llama.cpp).
//! - [`engine`]: models, sessions, decode under a mask with exact K/V, generation.
//! - [`models`]: the model catalog, and fetching models into the local cache.
//! - [`quality`]: perplexity and divergence from full depth, teacher-forced on a corpus.
//! - [`calibrate`]: which blocks to skip for each kept count, searched on text.
//! - [`tokcheck`]: llama.cpp's tokenizer checked against the model's original one.
//! - [`bench`](mod@bench): speed and quality of every strategy, side by side.
//! - [`utc`]: the clock as reports, profiles and file names write it.

pub mod bench;
pub mod calibrate;
pub mod chat;
pub mod cli;
pub mod engine;
pub mod error;
pub mod flags;
pub mod measure;
pub mod models;
pub mod quality;
pub mod skip;
pub mod tokcheck;
pub mod utc;
