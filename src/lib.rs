//! uniskip: Unified Layer Skipping for GGUF models on llama.cpp.
//!
//! - [`skip`]: pure planning: masks, strategies, the cost model (no llama.cpp).
//! - [`engine`]: models, sessions, decode under a mask with exact K/V, generation.
//! - [`models`]: the model catalog, and fetching models into the local cache.

pub mod bench;
pub mod chat;
pub mod cli;
pub mod engine;
pub mod models;
pub mod skip;
