//! uniskip: Unified Layer Skipping for GGUF models on llama.cpp.
//!
//! This package is the app layer: [`cli`] (the commands), [`chat`] (the terminal chat),
//! [`serve`] (the OpenAI-compatible HTTP server), [`flags`] (the clap flags they share)
//! and [`error`] (whose fault an error is, and the exit code). The layers below are crates
//! of their own (crates/, docs/DESIGN.md section 7), so an upward import does not compile:
//!
//! - `uniskip-services`: [`bench`](mod@bench), [`quality`], [`calibrate`], [`measure`],
//!   [`models`], [`tune`], [`tokcheck`], [`utc`].
//! - `uniskip-engine` ([`engine`]): models, sessions, decode under a mask with exact K/V,
//!   generation and lossless decoding; the only code that talks to llama.cpp and the only
//!   `unsafe`.
//! - Pure (no llama.cpp): `uniskip-skip` ([`skip`]: masks, strategies, the plan of a run,
//!   the cost model), `uniskip-gguf` ([`gguf`]: bounds-checked reading of GGUF files),
//!   `uniskip-draft` (the drafting policy the engine runs) and `uniskip-error` (the error
//!   in the user's input, and the exit codes).
//!
//! The lower crates are re-exported under the module names they had inside this package,
//! so `uniskip::engine::Model` and `uniskip::skip::Plan` read as before.

pub use uniskip_engine as engine;
pub use uniskip_gguf as gguf;
pub use uniskip_services::{bench, calibrate, measure, models, quality, tokcheck, tune, utc};
pub use uniskip_skip as skip;

pub mod chat;
pub mod cli;
pub mod error;
pub mod flags;
pub mod serve;
