//! The flags a tuned file (written by `uniskip tune`) meets: without skip flags it runs the
//! mask it was tuned for, and `--base` names the model it was tuned from. What follows from
//! the file itself (its plan, its base model) is the tune service's (`tune::base`).

use std::path::PathBuf;

use clap::Args;

use super::SkipArgs;
use crate::skip::Strategy;

/// Where the base model of a tuned file is.
#[derive(Debug, Clone, Args)]
pub struct BaseArgs {
    /// For a tuned file: the model it was tuned from, the quality reference [default: the
    /// cached catalog model with the sha256 the tuned file names].
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,
}

/// Whether the skip flags name a configuration themselves (`--speedup`, `--skip-layers`,
/// or a `--strategy` other than the default): then they win over a tuned file's mask.
pub fn overrides_tuned(skip: &SkipArgs) -> bool {
    skip.skip_layers.is_some() || skip.speedup != 1.0 || skip.strategy != Strategy::Unified
}
