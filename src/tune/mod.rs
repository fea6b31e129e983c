//! Skip-aware fine-tuning: train a model so that it works under one skip mask, and write
//! it as a GGUF that carries the mask.
//!
//! Training runs through llama.cpp's own training API ([`crate::engine::Trainer`]) with
//! the mask set by the same hook as at inference. The recipe is *whole-window*: every
//! position of a training window runs under the mask and the loss is taken on every
//! position (static pruning plus healing). The file it writes runs with the mask from its
//! metadata (`run` applies it), or pruned (`--prune`) in plain llama.cpp.
//!
//! - [`data`]: training windows (self-distillation or corpus) and held-out windows.
//! - [`eval`]: quality against the base model at full depth.
//! - [`checkpoint`]: what Ctrl+C leaves, for `--resume`.
//! - [`meta`]: the `uniskip.*` metadata of a tuned file.

pub mod checkpoint;
pub mod data;
pub mod eval;
pub mod meta;
mod service;

pub use data::DataSource;
pub use meta::{TunedInfo, read_tuned};
pub use service::{Event, Outcome, Report, TuneSettings, memory_estimate, tune};

/// The recipe the trainer implements: every position under the mask, loss everywhere.
pub const RECIPE_WHOLE_WINDOW: &str = "whole-window";
