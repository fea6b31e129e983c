//! The engine thread: owns the model's session and the conversation, generates replies
//! and streams them back. The UI thread talks to it through channels only, plus two
//! shared values read before every decode call: the skip controls and the number of the
//! reply to stop.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::controls::SkipControls;
use super::transcript::{self, Record, TranscriptWriter};
use crate::bench::probe::{self, Probe};
use crate::bench::speed::{median, time_decode};
use crate::engine::{
    ChatMessage, ContextOptions, LlamaToken, Model, Request, Sampling, Session, StopReason,
    generate,
};
use crate::skip::{CostModel, Mask};

/// The engine thread's name (the panic hook leaves its panics to the engine's own report).
pub const ENGINE_THREAD: &str = "uniskip-engine";

/// Tokens decoded per probe round, and rounds per depth (the median is kept).
const PROBE_STEPS: usize = 12;
const PROBE_ROUNDS: usize = 3;

/// What the UI needs to know about the loaded model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// The model's name from its metadata.
    pub name: String,
    /// The GGUF architecture.
    pub architecture: String,
    /// Blocks in the model.
    pub n_layer: usize,
    /// Whether the model carries a chat template (else: plain continuation).
    pub template: bool,
}

impl ModelInfo {
    /// Reads the facts off a loaded model.
    pub fn of(model: &Model) -> ModelInfo {
        ModelInfo {
            name: model.name().to_owned(),
            architecture: model.architecture().to_owned(),
            n_layer: model.n_layer(),
            template: model.has_chat_template(),
        }
    }
}

/// Where a full-depth tokens/s figure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineSource {
    /// A short timed decode at start-up (or on request).
    Probe,
    /// The first reply generated entirely at full depth.
    FirstReply,
}

impl BaselineSource {
    /// How it was measured, in a few words.
    pub fn label(self) -> &'static str {
        match self {
            BaselineSource::Probe => "probe",
            BaselineSource::FirstReply => "first full-depth reply",
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

/// What the engine knows, or measures, of decode speed when it starts.
#[derive(Clone, Debug)]
pub struct StartProbe {
    /// A cost-model probe for measured mode, and whether it was measured just now (its
    /// fit then also gives the full-depth speed) rather than cached by an earlier run.
    pub cost: Option<(Probe, bool)>,
    /// Time a few full-depth decodes for the full-depth speed (cut short when a message
    /// arrives); a cached probe is not trusted for this, as the machine's load changes.
    pub quick: bool,
}

/// How the engine thread runs.
#[derive(Clone, Debug)]
pub struct EngineSetup {
    /// The context to create.
    pub context: ContextOptions,
    /// Sampling settings.
    pub sampling: Sampling,
    /// Most tokens per reply.
    pub max_tokens: usize,
    /// What is known of decode speed at start-up.
    pub start_probe: StartProbe,
    /// The model file (the cost-model probe is cached under it).
    pub model_path: PathBuf,
    /// Where new transcripts go (after `/reset`).
    pub chats_dir: PathBuf,
    /// The system prompt to start with.
    pub system: Option<String>,
    /// Messages of a resumed conversation.
    pub messages: Vec<ChatMessage>,
}

/// The handle the UI keeps on the engine thread.
pub struct Engine {
    commands: Sender<Command>,
    events: Receiver<Event>,
    /// Replies asked for so far; replies are numbered from 1 in the order sent.
    sent: Cell<u64>,
    /// The number of the reply to stop (0: none). A number, not a flag, so a stop that
    /// arrives just after its reply ended cannot stop the next one.
    stop: Arc<AtomicU64>,
    controls: Arc<Mutex<SkipControls>>,
    finished: Receiver<()>,
    handle: Option<JoinHandle<()>>,
}

/// The stop value that stops whichever reply is running (the signal watchdog uses it).
const STOP_ANY: u64 = u64::MAX;

/// A handle that can stop the engine's reply from any thread.
#[derive(Clone, Debug)]
pub struct Stopper(Arc<AtomicU64>);

impl Stopper {
    /// Stops the reply being generated, whichever it is, after its current token.
    pub fn stop_any(&self) {
        self.0.store(STOP_ANY, Ordering::SeqCst);
    }
}

impl Engine {
    /// A handle that stops replies from another thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.stop))
    }

    /// Starts the engine thread on `model`, appending to `transcript`.
    pub fn spawn(
        model: Model,
        setup: EngineSetup,
        controls: SkipControls,
        transcript: Option<TranscriptWriter>,
    ) -> std::io::Result<Engine> {
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let (finished_tx, finished) = mpsc::channel();
        let stop = Arc::new(AtomicU64::new(0));
        let controls = Arc::new(Mutex::new(controls));
        let shared = Shared {
            events: event_tx,
            stop: Arc::clone(&stop),
            controls: Arc::clone(&controls),
        };
        let handle = std::thread::Builder::new()
            .name(ENGINE_THREAD.into())
            .spawn(move || {
                let events = shared.events.clone();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    engine_thread(&model, setup, transcript, &shared, &command_rx);
                }));
                if let Err(panic) = result {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown cause".into());
                    let _ = events.send(Event::Failed(format!("the engine failed: {what}")));
                }
                let _ = finished_tx.send(());
            })?;
        Ok(Engine {
            commands,
            events,
            sent: Cell::new(0),
            stop,
            controls,
            finished,
            handle: Some(handle),
        })
    }

    /// Queues a command (ignored once the thread has ended: its `Failed` event says why).
    pub fn send(&self, command: Command) {
        if matches!(command, Command::Send(_)) {
            self.sent.set(self.sent.get() + 1);
        }
        let _ = self.commands.send(command);
    }

    /// The next event, if one is waiting.
    pub fn try_event(&self) -> Result<Event, mpsc::TryRecvError> {
        self.events.try_recv()
    }

    /// The next event, waiting for it at most `timeout`.
    pub fn event_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        self.events.recv_timeout(timeout)
    }

    /// Asks the last reply asked for to stop after its current token (at its first token
    /// if it has not started yet).
    pub fn stop_reply(&self) {
        self.stop.store(self.sent.get(), Ordering::SeqCst);
    }

    /// New skip settings, used from the next decode call on.
    pub fn set_controls(&self, controls: SkipControls) {
        *self.controls.lock().unwrap_or_else(PoisonError::into_inner) = controls;
    }

    /// Stops any reply, ends the thread and waits for it up to `timeout` (a reply stops
    /// after its current batch; past the timeout the process may exit without it).
    pub fn shutdown(mut self, timeout: Duration) {
        self.stop_reply();
        self.send(Command::Quit);
        if self.finished.recv_timeout(timeout).is_ok()
            && let Some(handle) = self.handle.take()
        {
            let _ = handle.join();
        }
    }
}

struct Shared {
    events: Sender<Event>,
    stop: Arc<AtomicU64>,
    controls: Arc<Mutex<SkipControls>>,
}

impl Shared {
    fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn controls(&self) -> SkipControls {
        self.controls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn engine_thread(
    model: &Model,
    setup: EngineSetup,
    transcript: Option<TranscriptWriter>,
    shared: &Shared,
    commands: &Receiver<Command>,
) {
    let mut session = match model.session(&setup.context) {
        Ok(s) => s,
        Err(e) => return shared.send(Event::Failed(e.to_string())),
    };
    let mut chat = Conversation {
        info: ModelInfo::of(model),
        system: setup.system.clone(),
        messages: setup.messages.clone(),
        transcript,
        replies: 0,
    };
    if let Some(t) = &chat.transcript {
        shared.send(Event::Transcript(t.path().to_path_buf()));
    }
    // Commands that arrived while the probe ran, which they cut short.
    let mut pending = VecDeque::new();
    if let Some((probe, fresh)) = &setup.start_probe.cost {
        report_probe(shared, probe, model.n_layer(), *fresh);
    }
    if setup.start_probe.quick {
        quick_probe(&mut session, shared, &mut || match commands.try_recv() {
            Ok(command) => {
                pending.push_back(command);
                true
            }
            Err(_) => false,
        });
    }
    loop {
        let command = match pending.pop_front() {
            Some(command) => command,
            None => match commands.recv() {
                Ok(command) => command,
                Err(_) => break,
            },
        };
        match command {
            Command::Quit => break,
            Command::Send(text) => chat.reply(&mut session, &setup, shared, text),
            Command::SetSystem(system) => {
                chat.system = system.clone();
                chat.record(
                    shared,
                    &Record::System {
                        time: transcript::now(),
                        content: system,
                    },
                );
            }
            Command::Reset => {
                chat.messages.clear();
                session.clear();
                chat.new_transcript(&setup, shared);
            }
            Command::Probe => cost_probe(&mut session, &setup, shared),
        }
    }
}

/// The conversation as the engine keeps it, and the file it is appended to.
struct Conversation {
    info: ModelInfo,
    system: Option<String>,
    messages: Vec<ChatMessage>,
    transcript: Option<TranscriptWriter>,
    /// Replies asked for so far (numbered like [`Engine::stop_reply`] numbers them).
    replies: u64,
}

impl Conversation {
    fn record(&mut self, shared: &Shared, record: &Record) {
        if let Some(t) = &mut self.transcript
            && let Err(e) = t.append(record)
        {
            shared.send(Event::Notice(format!(
                "{e:#}; the conversation is no longer saved"
            )));
            self.transcript = None;
        }
    }

    fn new_transcript(&mut self, setup: &EngineSetup, shared: &Shared) {
        let start = Record::Start {
            version: transcript::FORMAT_VERSION,
            time: transcript::now(),
            model: self.info.name.clone(),
            template: self.info.template,
        };
        match TranscriptWriter::create(&setup.chats_dir, &start) {
            Ok(t) => {
                shared.send(Event::Transcript(t.path().to_path_buf()));
                self.transcript = Some(t);
            }
            Err(e) => {
                shared.send(Event::Notice(format!(
                    "{e:#}; this conversation is not saved"
                )));
                self.transcript = None;
            }
        }
        if let Some(system) = self.system.clone() {
            self.record(
                shared,
                &Record::System {
                    time: transcript::now(),
                    content: Some(system),
                },
            );
        }
    }

    /// The whole conversation as the prompt text of the next reply.
    fn prompt(&self, model: &Model) -> Result<String, String> {
        if !self.info.template {
            return Ok(continuation_text(self.system.as_deref(), &self.messages));
        }
        let mut messages = Vec::with_capacity(self.messages.len() + 1);
        if let Some(system) = &self.system {
            messages.push(ChatMessage {
                role: "system".into(),
                content: system.clone(),
            });
        }
        messages.extend(self.messages.iter().cloned());
        model
            .apply_chat_template(&messages)
            .map_err(|e| e.to_string())
    }

    fn reply(
        &mut self,
        session: &mut Session<'_>,
        setup: &EngineSetup,
        shared: &Shared,
        text: String,
    ) {
        let model = session.model();
        self.replies += 1;
        let id = self.replies;
        self.messages.push(ChatMessage {
            role: "user".into(),
            content: text.clone(),
        });
        let tokens = match self
            .prompt(model)
            .and_then(|p| model.tokenize(&p, true).map_err(|e| e.to_string()))
        {
            Ok(t) => t,
            Err(e) => {
                self.messages.pop();
                return shared.send(Event::ReplyFailed(e));
            }
        };
        if tokens.len() + 1 >= session.n_ctx() {
            self.messages.pop();
            return shared.send(Event::ReplyFailed(format!(
                "the conversation is {} tokens and no longer fits the {}-token context: \
                 /reset starts a new one (or start with a larger --ctx)",
                tokens.len(),
                session.n_ctx()
            )));
        }
        self.record(
            shared,
            &Record::Message {
                time: transcript::now(),
                role: "user".into(),
                content: text,
                stats: None,
            },
        );
        shared.send(Event::ReplyStarted);

        let start_controls = shared.controls();
        let mut last_controls = start_controls.clone();
        let mut last_mask: Option<Mask> = None;
        let (mut kept_min, mut kept_max) = (usize::MAX, 0);
        let stop_asked = || {
            let stop = shared.stop.load(Ordering::SeqCst);
            stop == id || stop == STOP_ANY
        };
        let result = generate(
            session,
            &Request {
                prompts: std::slice::from_ref(&tokens),
                max_tokens: setup.max_tokens,
                prefill: start_controls.prefill,
                sampling: &setup.sampling,
                interrupt: Some(&stop_asked),
                lossless: start_controls
                    .lossless
                    .map(|drafter| crate::engine::Lossless {
                        drafter,
                        draft_max: start_controls.draft_max,
                        draft_model: None,
                    }),
            },
            &mut |step| {
                // Read the latest settings before every decode call: a change made while
                // the reply streams applies from the next token.
                last_controls = shared.controls();
                let mask = if start_controls.lossless.is_some() {
                    last_controls.draft_mask(step)
                } else {
                    last_controls.mask(step)
                };
                kept_min = kept_min.min(mask.n_active());
                kept_max = kept_max.max(mask.n_active());
                if last_mask.as_ref() != Some(&mask) {
                    shared.send(Event::Mask {
                        mask: mask.clone(),
                        step,
                    });
                    last_mask = Some(mask.clone());
                }
                mask
            },
            &mut |piece| {
                shared.send(Event::Piece {
                    text: piece.text.to_owned(),
                    at: Instant::now(),
                });
                if stop_asked() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        let generation = match result {
            Ok(g) => g,
            Err(e) => {
                // No reply: the next turn must not follow two user messages in a row (some
                // chat templates refuse that). The transcript keeps what was asked.
                self.messages.pop();
                return shared.send(Event::ReplyFailed(e.to_string()));
            }
        };
        let content = generation.texts.into_iter().next().unwrap_or_default();
        let stats = ReplyStats {
            tokens: generation.generated_tokens,
            prompt_tokens: generation.prompt_tokens,
            prefill_tok_s: generation.prompt_tokens as f64
                / generation.prefill_time.as_secs_f64().max(1e-9),
            decode_tok_s: if generation.decode_time.is_zero() {
                0.0
            } else {
                generation.generated_tokens as f64 / generation.decode_time.as_secs_f64()
            },
            repair_tokens: generation.repair_tokens,
            repair_ms: generation.repair_time.as_secs_f64() * 1e3,
            stop: stop_name(generation.stop.first().copied()).into(),
            n_layer: model.n_layer(),
            kept_min: kept_min.min(kept_max),
            kept_max,
            target: last_controls.target,
            strategy: last_controls.spec.strategy().name().into(),
            mode: last_controls.mode.name().into(),
            lossless_acceptance: generation.speculation.as_ref().map(|s| s.acceptance_rate()),
        };
        self.messages.push(ChatMessage {
            role: "assistant".into(),
            content: content.clone(),
        });
        self.record(
            shared,
            &Record::Message {
                time: transcript::now(),
                role: "assistant".into(),
                content,
                stats: Some(stats.clone()),
            },
        );
        shared.send(Event::ReplyDone(stats));
    }
}

fn stop_name(stop: Option<StopReason>) -> &'static str {
    match stop {
        Some(StopReason::EndOfGeneration) => "end_of_generation",
        Some(StopReason::MaxTokens) => "max_tokens",
        Some(StopReason::ContextFull) => "context_full",
        Some(StopReason::Stopped) => "stopped",
        None => "none",
    }
}

/// A conversation as one continuing text, for a model without a chat template: each
/// message follows the last, a user message on a new line unless the text already ends
/// with white space.
pub fn continuation_text(system: Option<&str>, messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    if let Some(system) = system.filter(|s| !s.is_empty()) {
        out.push_str(system);
        if !system.ends_with(char::is_whitespace) {
            out.push_str("\n\n");
        }
    }
    for m in messages {
        if m.role == "user" && !out.is_empty() && !out.ends_with(char::is_whitespace) {
            out.push('\n');
        }
        out.push_str(&m.content);
    }
    out
}

/// Measures full-depth decode speed (a few short runs) for the achieved speedup.
/// `interrupted` is asked between runs: nobody should wait for this, so a message that
/// arrives cuts it short (the first full-depth reply then gives the full-depth speed).
fn quick_probe(session: &mut Session<'_>, shared: &Shared, interrupted: &mut dyn FnMut() -> bool) {
    shared.send(Event::Probing);
    let model = session.model();
    let prompt = match model.tokenize(crate::cli::PROBE_PROMPT, true) {
        Ok(p) if !p.is_empty() => p,
        Ok(_) => return shared.send(Event::ProbeFailed("the probe prompt is empty".into())),
        Err(e) => return shared.send(Event::ProbeFailed(e.to_string())),
    };
    let full = Mask::full(model.n_layer());
    // A first short run warms caches and threads; it is not counted.
    let measured = time_decode(session, &prompt, 4, Some(&full))
        .map_err(|e| e.to_string())
        .and_then(|_| seconds_per_token(session, &prompt, &full, interrupted));
    session.clear();
    match measured {
        Ok(Some(t)) => shared.send(Event::Baseline(Baseline {
            tokens_per_s: 1.0 / t,
            source: BaselineSource::Probe,
        })),
        Ok(None) => shared.send(Event::ProbeFailed(
            "speed probe put off for your message: the first full-depth reply gives \
             the full-depth speed"
                .into(),
        )),
        Err(e) => shared.send(Event::ProbeFailed(e)),
    }
}

/// The cost-model probe that measured speedup mode plans with (the one `uniskip run
/// --speedup-mode measured` uses, cached per model file and thread count).
fn cost_probe(session: &mut Session<'_>, setup: &EngineSetup, shared: &Shared) {
    shared.send(Event::Probing);
    let model = session.model();
    let result = model
        .tokenize(crate::cli::PROBE_PROMPT, true)
        .and_then(|prompt| {
            probe::cached_or_measure(&setup.model_path, session, &prompt, setup.context.threads)
        });
    session.clear();
    match result {
        Ok((probe, from_cache)) => report_probe(shared, &probe, model.n_layer(), !from_cache),
        Err(e) => shared.send(Event::ProbeFailed(format!(
            "no decode-time model, so no measured mode: {e}"
        ))),
    }
}

/// Sends what a cost-model probe says: the decode-time model and, when it was measured
/// just now, the full-depth speed by its fit.
fn report_probe(shared: &Shared, probe: &Probe, n_layer: usize, fresh: bool) {
    if fresh {
        shared.send(Event::Baseline(Baseline {
            tokens_per_s: probe.full_depth_tokens_per_s(n_layer),
            source: BaselineSource::Probe,
        }));
    }
    shared.send(Event::Cost(probe.cost));
}

/// The median time of one decode step under `mask`, over [`PROBE_ROUNDS`] runs; `None`
/// when `interrupted` says so between runs.
fn seconds_per_token(
    session: &mut Session<'_>,
    prompt: &[LlamaToken],
    mask: &Mask,
    interrupted: &mut dyn FnMut() -> bool,
) -> Result<Option<f64>, String> {
    let mut rounds = Vec::with_capacity(PROBE_ROUNDS);
    for _ in 0..PROBE_ROUNDS {
        if interrupted() {
            return Ok(None);
        }
        let t = time_decode(session, prompt, PROBE_STEPS, Some(mask)).map_err(|e| e.to_string())?;
        rounds.push(t.as_secs_f64() / PROBE_STEPS as f64);
    }
    Ok(Some(median(&rounds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn continuation_text_runs_messages_on_and_starts_user_turns_on_a_new_line() {
        let messages = [
            msg("user", "Once upon a time"),
            msg("assistant", " there was a king"),
            msg("user", "The end."),
        ];
        assert_eq!(
            continuation_text(None, &messages),
            "Once upon a time there was a king\nThe end."
        );
        assert_eq!(
            continuation_text(Some("A fairy tale."), &messages[..1]),
            "A fairy tale.\n\nOnce upon a time"
        );
    }

    #[test]
    fn reply_summary_names_blocks_speed_and_how_it_ended() {
        let stats = ReplyStats {
            tokens: 24,
            prompt_tokens: 30,
            prefill_tok_s: 500.0,
            decode_tok_s: 181.26,
            repair_tokens: 14,
            repair_ms: 12.4,
            stop: "stopped".into(),
            n_layer: 30,
            kept_min: 20,
            kept_max: 30,
            target: 1.5,
            strategy: "unified".into(),
            mode: "layers".into(),
            lossless_acceptance: None,
        };
        assert_eq!(
            stats.summary(),
            "24 tok · 181.3 tok/s · 20-30/30 blocks · target 1.50x unified · KV repair 14 tok 12 ms · stopped"
        );
        assert!(!stats.full_depth() && stats.stopped());
    }
}
