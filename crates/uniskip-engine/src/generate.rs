//! Generation: prefill, then decode step by step under a mask schedule, choosing tokens
//! ([`crate::sampling`]) and streaming valid UTF-8; lossless rounds and teacher forcing
//! are parts the step calls.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use llama_cpp_2::token::LlamaToken;
use serde::Serialize;

use super::error::{EngineError, Result};
use super::sampling::{Forcing, Picker, Sampling};
use super::session::{BatchToken, Session};
use super::speculative::{Emitted, Entry, Lossless, Next, SpeculationStats, Speculator};
use super::utf8::Utf8Stream;
use uniskip_skip::Mask;

/// Which blocks the prompt runs through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefillPolicy {
    /// Every block (the paper's rule: the prompt's K/V stays complete).
    #[default]
    Full,
    /// The same mask as the first generated token.
    Masked,
}

/// Why a sequence stopped generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// The token limit was reached.
    MaxTokens,
    /// The context is full.
    ContextFull,
    /// The caller asked to stop.
    Stopped,
}

/// A piece of streamed text.
#[derive(Debug, Clone, Copy)]
pub struct Piece<'a> {
    /// The sequence it belongs to.
    pub seq: usize,
    /// Whole UTF-8 characters (possibly empty while a character is incomplete).
    pub text: &'a str,
    /// Generation step it came from (0-based).
    pub step: usize,
}

/// What a generation produced and what it cost, from the engine's own clock.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    /// Generated text per sequence.
    pub texts: Vec<String>,
    /// Generated token ids per sequence.
    #[serde(skip)]
    pub tokens: Vec<Vec<LlamaToken>>,
    /// Why each sequence stopped.
    pub stop: Vec<StopReason>,
    /// Prompt tokens processed (all sequences; cached prefixes excluded).
    pub prompt_tokens: usize,
    /// Time spent on the prompt.
    pub prefill_time: Duration,
    /// Tokens generated (all sequences).
    pub generated_tokens: usize,
    /// Time spent generating (decode steps, sampling included, repairs excluded).
    pub decode_time: Duration,
    /// Tokens re-run to repair the cache during this generation.
    pub repair_tokens: u64,
    /// Time spent on those repairs.
    pub repair_time: Duration,
    /// What drafting did (lossless decoding only).
    pub speculation: Option<SpeculationStats>,
}

impl Generation {
    /// `n` sequences whose prompts took `prompt_tokens` tokens and `prefill_time`, with
    /// nothing generated yet; each will stop for `stop` unless something else comes first.
    fn before_decoding(
        n: usize,
        stop: StopReason,
        prompt_tokens: usize,
        prefill_time: Duration,
    ) -> Self {
        Generation {
            texts: vec![String::new(); n],
            tokens: vec![Vec::new(); n],
            stop: vec![stop; n],
            prompt_tokens,
            prefill_time,
            generated_tokens: 0,
            decode_time: Duration::ZERO,
            repair_tokens: 0,
            repair_time: Duration::ZERO,
            speculation: None,
        }
    }

    /// Prompt tokens per second.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill_time)
    }
    /// Generated tokens per second.
    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(self.generated_tokens, self.decode_time)
    }
}

fn rate(n: usize, t: Duration) -> f64 {
    if t.is_zero() {
        0.0
    } else {
        n as f64 / t.as_secs_f64()
    }
}

/// A generation request: one prompt per sequence, all decoded together.
pub struct Request<'a> {
    /// Full token sequences per sequence id (0..n). A prefix already in the cache is reused.
    pub prompts: &'a [Vec<LlamaToken>],
    /// Most tokens generated per sequence.
    pub max_tokens: usize,
    /// Which blocks the prompt runs through.
    pub prefill: PrefillPolicy,
    /// Sampling settings (each sequence gets its own chain, seeded `seed + seq`).
    pub sampling: &'a Sampling,
    /// Asked before every prefill batch: `true` stops the generation before its first
    /// token ([`StopReason::Stopped`]). A long prompt takes many batches, and a person
    /// who pressed Ctrl+C should not wait for all of them. The cache keeps the batches
    /// already run, so the next prompt with the same beginning reuses them.
    pub interrupt: Option<&'a dyn Fn() -> bool>,
    /// Lossless decoding: drafts checked by full depth, output equal to full depth's.
    /// `mask_for_step` then gives the mask drafter's mask, every decode that produces
    /// output runs at full depth, and the prompt runs through every block.
    pub lossless: Option<Lossless<'a>>,
}

/// Hands chosen tokens to the output: text, streaming, and the per-sequence stops.
struct Emitter<'f, 'p> {
    out: Generation,
    streams: Vec<Utf8Stream>,
    live: Vec<bool>,
    max_tokens: usize,
    on_piece: &'f mut dyn FnMut(Piece<'_>) -> ControlFlow<()>,
    model: &'p super::Model,
}

impl Emitter<'_, '_> {
    /// Emits `token` for `seq` at decode step `step`.
    fn emit(&mut self, seq: usize, token: LlamaToken, step: usize) -> Emitted {
        if self.model.is_end_of_generation(token) {
            self.live[seq] = false;
            self.out.stop[seq] = StopReason::EndOfGeneration;
            return Emitted::Ended;
        }
        self.out.tokens[seq].push(token);
        self.out.generated_tokens += 1;
        let text = self.streams[seq].push(&self.model.token_bytes(token));
        self.out.texts[seq].push_str(&text);
        if (self.on_piece)(Piece {
            seq,
            text: &text,
            step,
        })
        .is_break()
        {
            return Emitted::Stop;
        }
        if self.out.tokens[seq].len() >= self.max_tokens {
            self.live[seq] = false;
            self.out.stop[seq] = StopReason::MaxTokens;
            return Emitted::Ended;
        }
        Emitted::Live
    }

    /// The generation so far, with each stream's held-back tail flushed (and shown) as of
    /// step `step`.
    fn finish(self, step: usize) -> Generation {
        let Emitter {
            mut out,
            mut streams,
            on_piece,
            ..
        } = self;
        for (seq, stream) in streams.iter_mut().enumerate() {
            let rest = stream.finish();
            if !rest.is_empty() {
                out.texts[seq].push_str(&rest);
                let _ = on_piece(Piece {
                    seq,
                    text: &rest,
                    step,
                });
            }
        }
        out
    }

    /// Marks every sequence still live as stopped by the caller.
    fn stop_all(&mut self) {
        for (stop, _) in self
            .out
            .stop
            .iter_mut()
            .zip(&self.live)
            .filter(|(_, l)| **l)
        {
            *stop = StopReason::Stopped;
        }
    }
}

/// The mask a prompt runs under: the first step's under [`PrefillPolicy::Masked`] (unless
/// lossless, whose output is full depth's), else every block.
pub(super) fn prefill_mask(prefill: PrefillPolicy, lossless: bool, first_mask: &Mask) -> Mask {
    match (prefill, lossless) {
        (PrefillPolicy::Masked, false) => first_mask.clone(),
        _ => Mask::full(first_mask.n_layer()),
    }
}

/// Lossless decoding's state for one generation, the mask drafter starting under
/// `first_mask`; greedy drafts avoid end of text when the sampler never chooses it.
pub(super) fn speculator<'a>(
    lossless: Option<Lossless<'a>>,
    model: &super::Model,
    first_mask: &Mask,
    sampling: &Sampling,
) -> Result<Option<Speculator<'a>>> {
    let Some(config) = lossless else {
        return Ok(None);
    };
    let banned = if sampling.ignore_eos {
        model.end_of_generation_tokens()
    } else {
        Vec::new()
    };
    Ok(Some(Speculator::new(config, model, first_mask, banned)?))
}

/// Generates for every prompt at once. `mask_for_step(step)` gives the mask of decode step
/// `step` (read once per step, so a change applies from the next decode call);
/// `on_piece` receives streamed text and may stop the generation.
pub fn generate(
    session: &mut Session<'_>,
    request: &Request<'_>,
    mask_for_step: &mut dyn FnMut(usize) -> Mask,
    on_piece: &mut dyn FnMut(Piece<'_>) -> ControlFlow<()>,
) -> Result<Generation> {
    decode_loop(session, request, None, mask_for_step, on_piece)
}

/// [`generate`] with every token taken from `forcing`'s texts instead of chosen: the same
/// loop, plain or lossless, so that a text can be scored from the very logits generation
/// computes (with `--lossless`, verification's rows). A drafted token is kept when it
/// equals the text's.
pub fn generate_forced(
    session: &mut Session<'_>,
    request: &Request<'_>,
    forcing: &Forcing<'_>,
    mask_for_step: &mut dyn FnMut(usize) -> Mask,
    on_piece: &mut dyn FnMut(Piece<'_>) -> ControlFlow<()>,
) -> Result<Generation> {
    let short = (0..request.prompts.len()).find(|&seq| {
        forcing
            .texts
            .get(seq)
            .is_none_or(|t| t.len() < request.max_tokens)
    });
    if let Some(seq) = short {
        return Err(EngineError::ForcedTextShort {
            seq,
            tokens: forcing.texts.get(seq).map_or(0, Vec::len),
            max_tokens: request.max_tokens,
        });
    }
    decode_loop(session, request, Some(forcing), mask_for_step, on_piece)
}

/// The one decoding loop behind [`generate`] and [`generate_forced`]: check the request,
/// prefill, then one step per generated token until every sequence has stopped.
fn decode_loop<'f>(
    session: &mut Session<'_>,
    request: &Request<'_>,
    forcing: Option<&Forcing<'f>>,
    mask_for_step: &mut dyn FnMut(usize) -> Mask,
    on_piece: &mut dyn FnMut(Piece<'_>) -> ControlFlow<()>,
) -> Result<Generation> {
    let n = request.prompts.len();
    if n == 0 || n > session.n_seq() {
        return Err(EngineError::BadSequence {
            seq: n as i32,
            n_seq: session.n_seq(),
        });
    }
    let total_prompt: usize = request.prompts.iter().map(Vec::len).sum();
    if total_prompt >= session.n_ctx() {
        return Err(EngineError::PromptTooLong {
            tokens: total_prompt,
            n_ctx: session.n_ctx(),
        });
    }
    let model = session.model();
    let repair_before = session.repair_stats();
    let first_mask = mask_for_step(0);
    let prefill_mask = prefill_mask(request.prefill, request.lossless.is_some(), &first_mask);
    let mut speculator = speculator(request.lossless, model, &first_mask, request.sampling)?;
    let Prefilled {
        mut pickers,
        mut next,
        prompt_tokens,
        time: prefill_time,
    } = match prefill(session, request, forcing, &prefill_mask)? {
        Prefill::Ready(prefilled) => prefilled,
        Prefill::Interrupted {
            prompt_tokens,
            time,
        } => {
            let stopped = StopReason::Stopped;
            return Ok(Generation::before_decoding(n, stopped, prompt_tokens, time));
        }
    };
    let mut emitter = Emitter {
        out: Generation::before_decoding(n, StopReason::MaxTokens, prompt_tokens, prefill_time),
        streams: (0..n).map(|_| Utf8Stream::default()).collect(),
        live: vec![true; n],
        max_tokens: request.max_tokens,
        on_piece,
        model,
    };
    let decode_start = Instant::now();
    if let Some(s) = speculator.as_mut() {
        s.start_clock();
    }
    let mut repair_seen = repair_before;
    let mut step = 0;
    while let Some(batch) = choose(session, &mut emitter, &mut pickers, &next, step) {
        step += 1;
        let mask = mask_for_step(step);
        let go_on = match speculator.as_mut() {
            Some(spec) => lossless_step(
                session,
                spec,
                &batch,
                &mask,
                &mut pickers,
                &mut emitter,
                &mut next,
                step,
            )?,
            None => {
                let indices = session.decode(&batch, Some(&mask))?;
                for (t, i) in batch.iter().zip(indices) {
                    next[t.seq as usize] = Next::Logits(i);
                }
                true
            }
        };
        let repair_now = session.repair_stats();
        emitter.out.repair_tokens += repair_now.tokens - repair_seen.tokens;
        emitter.out.repair_time += repair_now.time - repair_seen.time;
        repair_seen = repair_now;
        if !go_on {
            break;
        }
    }
    let mut out = emitter.finish(step);
    out.speculation = speculator.map(Speculator::finish);
    out.decode_time = decode_start.elapsed().saturating_sub(out.repair_time);
    Ok(out)
}

/// How prefill ended.
enum Prefill<'f> {
    /// Every prompt ran: decoding can start.
    Ready(Prefilled<'f>),
    /// The request's interrupt stopped it before the first token, after `prompt_tokens`
    /// tokens and `time` (the cache keeps what ran).
    Interrupted {
        /// Prompt tokens that ran.
        prompt_tokens: usize,
        /// Time they took.
        time: Duration,
    },
}

/// What prefill leaves for the first step: a picker per sequence (its prompt recorded for
/// repetition penalties), where each first token comes from, and what the prompt cost.
struct Prefilled<'f> {
    pickers: Vec<Picker<'f>>,
    next: Vec<Next>,
    prompt_tokens: usize,
    time: Duration,
}

/// Runs the prompts: each sequence's cached common prefix is reused, the rest but the last
/// token runs without logits in chunks of the batch size, then every sequence's last prompt
/// token runs together in one batch whose logits give the first generated tokens. The
/// request's interrupt is asked before every batch.
fn prefill<'f>(
    session: &mut Session<'_>,
    request: &Request<'_>,
    forcing: Option<&Forcing<'f>>,
    mask: &Mask,
) -> Result<Prefill<'f>> {
    let n = request.prompts.len();
    let model = session.model();
    let start = Instant::now();
    let interrupted = || request.interrupt.is_some_and(|stop| stop());
    let stopped = |prompt_tokens| Prefill::Interrupted {
        prompt_tokens,
        time: start.elapsed(),
    };
    let mut prompt_tokens = 0;
    let mut pickers: Vec<Picker<'f>> = Vec::with_capacity(n);
    let mut last_tokens = Vec::with_capacity(n);
    for (seq, prompt) in request.prompts.iter().enumerate() {
        let Some((&last, _)) = prompt.split_last() else {
            return Err(EngineError::Tokenize("empty prompt".into()));
        };
        let cached = session.tokens(seq as i32)?;
        let common = cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| **a == b.0)
            .count()
            .min(prompt.len() - 1);
        session.truncate(seq as i32, common)?;
        let fresh = &prompt[common..prompt.len() - 1];
        for chunk in fresh.chunks(session.n_batch()) {
            if interrupted() {
                return Ok(stopped(prompt_tokens));
            }
            session.prefill(seq as i32, chunk, Some(mask))?;
            prompt_tokens += chunk.len();
        }
        last_tokens.push(BatchToken {
            seq: seq as i32,
            token: last,
            logits: true,
        });
        let mut sampling = request.sampling.clone();
        sampling.seed = sampling.seed.wrapping_add(seq as u32);
        let mut picker = match forcing {
            Some(f) => Picker::Forced {
                seq,
                text: &f.texts[seq],
                next: 0,
                observe: f.observe,
            },
            None => sampling.picker(model, request.lossless.is_some()),
        };
        picker.accept_many(prompt);
        pickers.push(picker);
    }
    if interrupted() {
        return Ok(stopped(prompt_tokens));
    }
    let logit_index = session.decode(&last_tokens, Some(mask))?;
    prompt_tokens += n;
    Ok(Prefill::Ready(Prefilled {
        pickers,
        next: logit_index.into_iter().map(Next::Logits).collect(),
        prompt_tokens,
        time: start.elapsed(),
    }))
}

/// Chooses and emits one token per live sequence (from the logits of the previous decode,
/// or the one verification already chose) and returns the batch to decode next; `None`
/// when generation ends here: every sequence stopped, the caller asked to stop, or the
/// context has no room for the batch.
fn choose(
    session: &Session<'_>,
    emitter: &mut Emitter<'_, '_>,
    pickers: &mut [Picker<'_>],
    next: &[Next],
    step: usize,
) -> Option<Vec<BatchToken>> {
    let mut batch = Vec::with_capacity(next.len());
    for seq in 0..next.len() {
        if !emitter.live[seq] {
            continue;
        }
        let token = match next[seq] {
            Next::Logits(i) => pickers[seq].pick(session, i),
            Next::Chosen(t) => t,
        };
        match emitter.emit(seq, token, step) {
            Emitted::Live => batch.push(BatchToken {
                seq: seq as i32,
                token,
                logits: true,
            }),
            Emitted::Ended => {}
            // Asked to stop: the other sequences are not sampled or shown this step.
            Emitted::Stop => {
                emitter.stop_all();
                return None;
            }
        }
    }
    if batch.is_empty() {
        return None;
    }
    if session.n_cached() + batch.len() > session.n_ctx() {
        for t in &batch {
            emitter.out.stop[t.seq as usize] = StopReason::ContextFull;
        }
        return None;
    }
    Some(batch)
}

/// One lossless round for `batch` at decode step `step`: drafts under `mask`, verified at
/// full depth; the tokens it keeps are emitted as it goes, and `next` learns where each
/// sequence's next token comes from. `false` when the caller asked to stop.
#[allow(clippy::too_many_arguments)]
fn lossless_step(
    session: &mut Session<'_>,
    spec: &mut Speculator<'_>,
    batch: &[BatchToken],
    mask: &Mask,
    pickers: &mut [Picker<'_>],
    emitter: &mut Emitter<'_, '_>,
    next: &mut [Next],
    step: usize,
) -> Result<bool> {
    let entries: Vec<Entry> = batch
        .iter()
        .map(|t| Entry {
            seq: t.seq,
            token: t.token,
            room: emitter.max_tokens - emitter.out.tokens[t.seq as usize].len(),
        })
        .collect();
    let outcome = spec.round(session, &entries, mask, pickers, &mut |seq, token| {
        emitter.emit(seq, token, step)
    })?;
    for (seq, chosen) in outcome.next {
        next[seq as usize] = chosen;
    }
    if outcome.stopped {
        emitter.stop_all();
        return Ok(false);
    }
    Ok(true)
}
