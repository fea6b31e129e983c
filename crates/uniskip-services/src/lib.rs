//! The services: what the apps (CLI, chat, server) ask of the engine, each a job of its own.
//!
//! They stand on the engine (`uniskip-engine`) and the pure crates, and import nothing from
//! the apps (the manifest has no path to them).
//!
//! - [`bench`](mod@bench): speed and quality of every strategy, side by side.
//! - [`quality`]: perplexity and divergence from full depth, teacher-forced.
//! - [`calibrate`]: which blocks to skip for each kept count, searched on text.
//! - [`measure`]: decode timing and the cost-model probe.
//! - [`models`]: the catalog, and fetching models into the local cache.
//! - [`tune`]: skip-aware fine-tuning, the metadata of tuned files and what they imply.
//! - [`tokcheck`]: llama.cpp's tokenizer checked against the model's original
//!   tokenizer.json.
//! - [`utc`]: the clock reports write.

pub mod bench;
pub mod calibrate;
pub mod measure;
pub mod models;
pub mod quality;
pub mod tokcheck;
pub mod tune;
pub mod utc;
