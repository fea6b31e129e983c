//! What the UI thread and the engine thread say to each other: the commands the UI sends,
//! the events the engine reports, and the facts those carry (the model, the full-depth
//! speed, what a reply cost).

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::Model;
use crate::skip::{CostModel, Mask};

/// What the UI needs to know about the loaded model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFacts {
    /// The model's name from its metadata.
    pub name: String,
    /// The GGUF architecture.
    pub architecture: String,
    /// Blocks in the model.
    pub n_layer: usize,
    /// Whether the model carries a chat template (else: plain continuation).
    pub template: bool,
    /// For a tuned file (from `uniskip tune`): `tuned for 1.5x`.
    pub tuned: Option<String>,
    /// Where the blocks run: `CPU` or `CUDA0 30/30` (blocks on the GPU).
    pub device: String,
}

impl ModelFacts {
    /// Reads the facts off a loaded model.
    pub fn of(model: &Model) -> ModelFacts {
        ModelFacts {
            name: model.name().to_owned(),
            architecture: model.architecture().to_owned(),
            n_layer: model.n_layer(),
            template: model.has_chat_template(),
            tuned: None,
            device: model.placement().short(),
        }
    }
}

/// Where a full-depth tokens/s figure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineSource {
    /// A short timed decode at start-up (or on request).
    Probe,
    /// The last reply generated entirely at full depth (it replaces the probe: it ran at
    /// a real context length, with the chat drawing its tokens, as replies do).
    LastReply,
}

impl BaselineSource {
    /// How it was measured, in a few words.
    pub fn label(self) -> &'static str {
        match self {
            BaselineSource::Probe => "probe",
            BaselineSource::LastReply => "last full-depth reply",
        }
    }
}

/// Full-depth decode speed on this machine, what achieved speedups are measured against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Baseline {
    /// Tokens per second at full depth.
    pub tokens_per_s: f64,
    /// How it was measured.
    pub source: BaselineSource,
}

/// What a reply cost; saved with it in the transcript.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplyStats {
    /// Tokens generated.
    pub tokens: usize,
    /// Prompt tokens processed (the cached prefix excluded).
    pub prompt_tokens: usize,
    /// Prompt tokens per second.
    pub prefill_tok_s: f64,
    /// Generated tokens per second (repairs excluded).
    pub decode_tok_s: f64,
    /// Tokens re-run to repair the K/V cache.
    pub repair_tokens: u64,
    /// Time those repairs took, in milliseconds.
    pub repair_ms: f64,
    /// Why the reply ended: `end_of_generation`, `max_tokens`, `context_full`, `stopped`.
    pub stop: String,
    /// Blocks in the model.
    pub n_layer: usize,
    /// Fewest and most blocks computed by any decode step of the reply.
    pub kept_min: usize,
    /// See `kept_min`.
    pub kept_max: usize,
    /// The target speedup at the end of the reply.
    pub target: f64,
    /// The strategy at the end of the reply.
    pub strategy: String,
    /// The speedup mode at the end of the reply.
    pub mode: String,
    /// Lossless decoding: the share of drafted tokens full depth kept (absent when off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lossless_acceptance: Option<f64>,
    /// Lossless decoding: tokens per second of the reply's own plain full-depth steps,
    /// at the same context and under the same load as its drafting rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_depth_tok_s: Option<f64>,
}

impl ReplyStats {
    /// Whether every decode step of the reply ran every block.
    pub fn full_depth(&self) -> bool {
        self.kept_min == self.n_layer
    }

    /// Whether the person stopped the reply.
    pub fn stopped(&self) -> bool {
        self.stop == "stopped"
    }

    /// Blocks computed, e.g. `20/30 blocks`, or `12-30/30 blocks` when the depth changed.
    pub fn blocks(&self) -> String {
        if self.kept_min == self.kept_max {
            format!("{}/{} blocks", self.kept_max, self.n_layer)
        } else {
            format!(
                "{}-{}/{} blocks",
                self.kept_min, self.kept_max, self.n_layer
            )
        }
    }

    /// One line: tokens, speed, blocks, target and strategy, repairs, how it ended.
    pub fn summary(&self) -> String {
        let blocks = self.blocks();
        let mut s = format!(
            "{} tok · {:.1} tok/s · {blocks} · target {:.2}x {}",
            self.tokens, self.decode_tok_s, self.target, self.strategy
        );
        if let Some(a) = self.lossless_acceptance {
            s.push_str(&format!(" · lossless, {:.0}% of drafts kept", 100.0 * a));
        }
        if self.mode != "layers" {
            s.push_str(&format!(" ({})", self.mode));
        }
        if self.repair_tokens > 0 {
            s.push_str(&format!(
                " · KV repair {} tok {:.0} ms",
                self.repair_tokens, self.repair_ms
            ));
        }
        match self.stop.as_str() {
            "end_of_generation" => {}
            "max_tokens" => s.push_str(" · token limit"),
            "context_full" => s.push_str(" · context full"),
            other => s.push_str(&format!(" · {other}")),
        }
        s
    }
}

/// Requests to the engine thread, handled in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Add a user message and generate the reply.
    Send(String),
    /// Set (or, with `None`, remove) the system prompt from the next turn on.
    SetSystem(Option<String>),
    /// Start a new conversation (and a new transcript file).
    Reset,
    /// Measure (or load the cached) decode-time model, for measured speedup mode.
    Probe,
    /// Finish and end the thread.
    Quit,
}

/// What the engine thread reports, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The decode-speed probe started.
    Probing,
    /// Full-depth speed, measured.
    Baseline(Baseline),
    /// The decode-time model, fitted from the probe (measured speedup mode uses it).
    Cost(CostModel),
    /// The probe (or its second depth) failed; the text says why.
    ProbeFailed(String),
    /// The transcript file the conversation is appended to.
    Transcript(PathBuf),
    /// A reply started (after the message was queued and the prompt fits).
    ReplyStarted,
    /// One generated token's text (possibly empty while a character is incomplete), and
    /// when it was produced.
    Piece {
        /// The text.
        text: String,
        /// When the token was sampled, for the moving-window speed.
        at: Instant,
    },
    /// The mask in use from decode step `step` of the current reply on.
    Mask {
        /// The mask.
        mask: Mask,
        /// The decode step.
        step: usize,
    },
    /// The reply ended; it is in the conversation and the transcript.
    ReplyDone(ReplyStats),
    /// The message could not be answered; the text says why.
    ReplyFailed(String),
    /// Something worth telling that changes nothing.
    Notice(String),
    /// The engine cannot go on.
    Failed(String),
}

#[cfg(test)]
impl ReplyStats {
    /// A reply of `tokens` tokens at `tok_s` tokens/s, keeping `kept` of 30 blocks at
    /// every step with the unified strategy, ended by the model: the one fixture the chat's
    /// tests start from (struct update syntax changes what a test is about).
    pub(crate) fn fixture(tokens: usize, kept: usize, tok_s: f64) -> ReplyStats {
        ReplyStats {
            tokens,
            prompt_tokens: 10,
            prefill_tok_s: 100.0,
            decode_tok_s: tok_s,
            repair_tokens: 0,
            repair_ms: 0.0,
            stop: "end_of_generation".into(),
            n_layer: 30,
            kept_min: kept,
            kept_max: kept,
            target: 30.0 / kept as f64,
            strategy: "unified".into(),
            mode: "layers".into(),
            lossless_acceptance: None,
            full_depth_tok_s: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_summary_names_blocks_speed_and_how_it_ended() {
        let stats = ReplyStats {
            prompt_tokens: 30,
            prefill_tok_s: 500.0,
            repair_tokens: 14,
            repair_ms: 12.4,
            stop: "stopped".into(),
            kept_min: 20,
            target: 1.5,
            ..ReplyStats::fixture(24, 30, 181.26)
        };
        assert_eq!(
            stats.summary(),
            "24 tok · 181.3 tok/s · 20-30/30 blocks · target 1.50x unified · KV repair 14 tok 12 ms · stopped"
        );
        assert!(!stats.full_depth() && stats.stopped());
    }
}
