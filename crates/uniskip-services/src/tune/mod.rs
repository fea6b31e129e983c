//! Skip-aware fine-tuning: train a model so that it works under one skip mask, and write
//! it as a GGUF that carries the mask.
//!
//! Training runs through llama.cpp's own training API ([`uniskip_engine::Trainer`]) with
//! the mask set by the same hook as at inference. Two recipes ([`Recipe`]): *whole-window*
//! (every position of a training window under the mask, loss everywhere: static pruning
//! plus healing) and *prefix* (the window's prompt at full depth, the continuation under
//! the mask, loss on the continuation: how the file runs at inference). The file it writes
//! runs with the mask from its metadata, or pruned (`--prune`, whole-window only) in plain
//! llama.cpp.
//!
//! - [`data`]: training windows (self-distillation or corpus) and held-out windows.
//! - [`eval`]: quality against the base model at full depth.
//! - [`teacher`]: the base model's full-depth distributions, the soft targets.
//! - [`cache`]: distilled training text kept between runs.
//! - [`checkpoint`]: what Ctrl+C leaves, for `--resume`.
//! - [`meta`]: the `uniskip.*` metadata of a tuned file.

pub mod base;
pub mod cache;
pub mod checkpoint;
pub mod data;
pub mod eval;
pub mod meta;
mod output;
mod service;
pub mod teacher;

pub use data::DataSource;
pub use meta::{TunedInfo, read_tuned};
pub use output::f32_path_for;
pub use service::{
    Event, Outcome, QUALITY_CONTINUATION, Report, TuneSettings, memory_estimate, tune,
};

/// How training windows meet the mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// Every position under the mask, loss everywhere (static pruning plus healing).
    WholeWindow,
    /// The first [`data::DISTILL_PROMPT_TOKENS`] positions (the prompt) at full depth, the
    /// continuation under the mask, loss on the continuation.
    Prefix,
}

impl Recipe {
    /// The name written into a tuned file's metadata and shown to people.
    pub fn name(self) -> &'static str {
        match self {
            Recipe::WholeWindow => "whole-window",
            Recipe::Prefix => "prefix",
        }
    }

    /// How a window is trained under `mask` with this recipe.
    pub fn training_mask(self, mask: &[u8]) -> uniskip_engine::TrainingMask<'_> {
        match self {
            Recipe::WholeWindow => uniskip_engine::TrainingMask::Window(mask),
            Recipe::Prefix => uniskip_engine::TrainingMask::Prefix {
                mask,
                prefix: data::DISTILL_PROMPT_TOKENS,
            },
        }
    }
}

/// What each training row's loss compares the model with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Targets {
    /// The next token of the training text (one-hot labels): plain fine-tuning on the text.
    Tokens,
    /// The base model's whole next-token distribution at full depth (logit distillation):
    /// the loss is the KL divergence from the base model, the quantity the quality
    /// evaluation measures.
    Logits,
}

impl Targets {
    /// The name written into a tuned file's metadata and shown to people.
    pub fn name(self) -> &'static str {
        match self {
            Targets::Tokens => "tokens",
            Targets::Logits => "logits",
        }
    }
}

impl std::str::FromStr for Targets {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tokens" => Ok(Targets::Tokens),
            "logits" => Ok(Targets::Logits),
            other => Err(format!("unknown targets `{other}`: use logits or tokens")),
        }
    }
}

impl std::str::FromStr for Recipe {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "whole-window" => Ok(Recipe::WholeWindow),
            "prefix" => Ok(Recipe::Prefix),
            other => Err(format!(
                "unknown recipe `{other}`: use prefix or whole-window"
            )),
        }
    }
}
