//! What the HTTP side and the engine thread say to each other: the requests it runs, the
//! events it streams back, how a generation ended, and the status it publishes.

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::engine::{LlamaToken, PrefillPolicy, Sampling, SpeculationStats, StopReason};
use crate::skip::Plan;

/// A request the engine thread runs.
pub struct Job {
    /// The prompt's tokens.
    pub prompt: Vec<LlamaToken>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How tokens are chosen.
    pub sampling: Sampling,
    /// The masks of every step (the drafter's, when lossless).
    pub plan: Plan,
    /// Which blocks the prompt runs through.
    pub prefill: PrefillPolicy,
    /// Lossless decoding (the server's drafter settings).
    pub lossless: bool,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Where its text and its end go; closed when the client has gone.
    pub events: UnboundedSender<Event>,
    /// When the request was queued.
    pub queued_at: Instant,
}

/// What the engine sends a request's handler.
#[derive(Debug)]
pub enum Event {
    /// More text.
    Text(String),
    /// The generation ended.
    Done(Box<Summary>),
    /// The engine failed on this request.
    Failed(String),
}

/// Why a generation ended, as the server reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its text.
    EndOfGeneration,
    /// `max_tokens` was reached.
    MaxTokens,
    /// The sequence's share of the context is full.
    ContextFull,
    /// A stop string was found.
    StopString,
    /// The server is shutting down.
    Shutdown,
}

impl Finish {
    /// OpenAI's `finish_reason`.
    pub fn openai(self) -> &'static str {
        match self {
            Finish::MaxTokens | Finish::ContextFull => "length",
            Finish::EndOfGeneration | Finish::StopString | Finish::Shutdown => "stop",
        }
    }

    /// The reason in uniskip's words (the `uniskip.stop_reason` field).
    pub fn name(self) -> &'static str {
        match self {
            Finish::EndOfGeneration => "end_of_generation",
            Finish::MaxTokens => "max_tokens",
            Finish::ContextFull => "context_full",
            Finish::StopString => "stop_string",
            Finish::Shutdown => "shutdown",
        }
    }

    pub(super) fn of(reason: StopReason) -> Finish {
        match reason {
            StopReason::EndOfGeneration => Finish::EndOfGeneration,
            StopReason::MaxTokens => Finish::MaxTokens,
            StopReason::ContextFull => Finish::ContextFull,
            StopReason::Stopped => Finish::Shutdown,
        }
    }
}

/// What a finished request did and cost.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Why it ended.
    pub finish: Finish,
    /// Blocks in the model.
    pub n_layer: usize,
    /// Blocks its first decode step computed (the drafter's, when lossless).
    pub active_blocks: usize,
    /// Mean blocks computed over its decode steps.
    pub mean_active_blocks: f64,
    /// The strategy's name.
    pub strategy: String,
    /// The target speedup.
    pub target_speedup: f64,
    /// Its tokens over the time of the decode calls it was in.
    pub decode_tokens_per_s: f64,
    /// Its prompt tokens over the time of its prompt's batches.
    pub prefill_tokens_per_s: f64,
    /// One sequence's full-depth decode speed on this server: the median of its latest
    /// one-sequence full-depth steps, else the start-up probe's.
    pub full_depth_tokens_per_s: f64,
    /// What drafting did (lossless requests).
    pub speculation: Option<SpeculationStats>,
    /// Time spent waiting for a free sequence.
    pub queue_time: Duration,
}

/// What the handlers see of the engine: counts published after every step.
#[derive(Debug, Default)]
pub struct Status {
    /// Requests sent to the engine and not yet given a sequence (the handlers count them
    /// in, the engine counts them out).
    pub waiting: AtomicUsize,
    /// Sequences in use.
    pub busy: AtomicUsize,
    /// Cache cells in use, all sequences together.
    pub cells_used: AtomicUsize,
    /// Requests finished.
    pub served: AtomicU64,
}

/// Messages to the engine thread.
pub enum Msg {
    /// Run a request.
    Job(Box<Job>),
    /// End every generation, answer the waiting requests, and return.
    Shutdown,
}
