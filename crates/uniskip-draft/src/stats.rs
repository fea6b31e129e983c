//! What lossless decoding did over one generation, as reports show it.

use std::time::Duration;

use serde::Serialize;

use crate::Drafter;

/// What drafting did over one generation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SpeculationStats {
    /// The drafter asked for.
    pub drafter: Drafter,
    /// Verification batches run (plain steps included).
    pub rounds: u64,
    /// Rounds that verified at least one drafted token.
    pub drafting_rounds: u64,
    /// Tokens drafted (all drafters).
    pub draft_tokens: u64,
    /// Drafted tokens full depth kept.
    pub accepted_tokens: u64,
    /// Tokens drafted and kept by n-gram lookup.
    pub lookup_drafted: u64,
    /// Of those, kept.
    pub lookup_accepted: u64,
    /// Tokens drafted by the mask or the draft model.
    pub model_drafted: u64,
    /// Of those, kept.
    pub model_accepted: u64,
    /// Decode calls spent drafting.
    pub draft_decodes: u64,
    /// Time spent drafting (draft decodes).
    #[serde(skip)]
    pub draft_time: Duration,
    /// Time spent in verification batches.
    #[serde(skip)]
    pub verify_time: Duration,
    /// Times a drafter paused itself for being slower than plain steps.
    pub pauses: u64,
    /// Whether drafting was paused when generation ended.
    pub paused_at_end: bool,
    /// Measured tokens/s of drafting rounds over that of plain full-depth steps in the
    /// same generation (none when one of the two was never seen).
    pub measured_speedup: Option<f64>,
    /// Tokens per second of this generation's plain full-depth steps (what full depth does
    /// at the same context and under the same load; none when no warm one was measured,
    /// and then no cost was handed back either).
    #[serde(default)]
    pub plain_tokens_per_s: Option<f64>,
}

impl SpeculationStats {
    /// Share of drafted tokens that full depth kept.
    pub fn acceptance_rate(&self) -> f64 {
        if self.draft_tokens == 0 {
            0.0
        } else {
            self.accepted_tokens as f64 / self.draft_tokens as f64
        }
    }

    /// Mean tokens drafted per drafting round.
    pub fn mean_draft_len(&self) -> f64 {
        if self.drafting_rounds == 0 {
            0.0
        } else {
            self.draft_tokens as f64 / self.drafting_rounds as f64
        }
    }
}
