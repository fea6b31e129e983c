//! The drafting policy of lossless decoding, pure: which drafter proposes tokens, how long
//! it drafts and whether it drafts at all ([`Controller`], from measured costs and
//! acceptance), the n-gram [`lookup`] drafter, the speculative acceptance [`rule`] on
//! explicit distributions, and what drafting did ([`SpeculationStats`]). No llama.cpp here:
//! the engine runs this policy on the model, and its tests run in seconds on synthetic
//! numbers.

mod control;
mod estimates;
pub mod lookup;
pub mod rule;
mod stats;

use serde::Serialize;

pub use control::{Controller, DraftCosts, Kind};
pub use stats::SpeculationStats;

/// Which drafter proposes tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum Drafter {
    /// The model itself under the skip mask.
    #[serde(rename = "mask")]
    Mask,
    /// n-grams copied from the prompt and the text so far.
    #[serde(rename = "lookup")]
    Lookup,
    /// Lookup where it finds a match, else the mask.
    #[default]
    #[serde(rename = "mask+lookup")]
    MaskLookup,
    /// A second model with the same vocabulary (`--draft-model`).
    #[serde(rename = "model")]
    Model,
}

impl Drafter {
    /// The drafter's name as flags and reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            Drafter::Mask => "mask",
            Drafter::Lookup => "lookup",
            Drafter::MaskLookup => "mask+lookup",
            Drafter::Model => "model",
        }
    }
    /// The drafter kinds this drafter drafts with.
    pub fn kinds(self) -> &'static [Kind] {
        match self {
            Drafter::Mask => &[Kind::Mask],
            Drafter::Lookup => &[Kind::Lookup],
            Drafter::MaskLookup => &[Kind::Lookup, Kind::Mask],
            Drafter::Model => &[Kind::Model],
        }
    }

    /// Whether this drafter copies n-grams from the text (lookup, alone or first).
    pub fn looks_up(self) -> bool {
        matches!(self, Drafter::Lookup | Drafter::MaskLookup)
    }
}

/// Default draft length (the most a round drafts unless `--draft-max` says otherwise).
pub const DRAFT_MAX_DEFAULT: usize = 8;
/// Largest draft length accepted: longer batches cost more than they can gain on a CPU,
/// and llama.cpp's batched logits drift further from one-token logits.
pub const DRAFT_MAX_LIMIT: usize = 16;
