//! uniskip: Unified Layer Skipping for GGUF models on llama.cpp.
//!
//! Dependencies point one way (docs/DESIGN.md section 7): the apps on top, the services
//! below them, the engine below those, and two pure modules apart.
//!
//! - Apps: [`cli`] (the commands), [`chat`] (the terminal chat), [`serve`] (the
//!   OpenAI-compatible HTTP server), [`flags`] (the clap flags
//!   they share), [`error`] (whose fault an error is, and the exit code).
//! - Services: [`bench`](mod@bench) (speed and quality of every strategy, side by side),
//!   [`quality`] (perplexity and divergence from full depth, teacher-forced),
//!   [`calibrate`] (which blocks to skip for each kept count, searched on text),
//!   [`measure`] (decode timing and the cost-model probe), [`models`] (the catalog and
//!   fetching models into the local cache), [`tune`] (skip-aware fine-tuning, and the
//!   metadata of tuned files), [`tokcheck`] (llama.cpp's tokenizer checked against the
//!   model's original tokenizer.json), [`utc`] (the clock reports write).
//! - [`engine`]: models, sessions, decode under a mask with exact K/V, generation (with
//!   lossless decoding: drafts checked by full depth, [`engine::speculative`]); the only
//!   code that talks to llama.cpp and the only `unsafe`.
//! - Pure: [`skip`] (masks, strategies, the plan of a run, the cost model) and [`gguf`]
//!   (bounds-checked reading of GGUF files before llama.cpp sees them).

pub mod bench;
pub mod calibrate;
pub mod chat;
pub mod cli;
pub mod engine;
pub mod error;
pub mod flags;
pub use uniskip_gguf as gguf;
pub mod measure;
pub mod models;
pub mod quality;
pub mod serve;
pub use uniskip_skip as skip;
pub mod tokcheck;
pub mod tune;
pub mod utc;
