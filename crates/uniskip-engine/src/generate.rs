//! Generation: prefill, then decode step by step under a mask schedule, sampling with
//! llama.cpp's sampler chain and streaming valid UTF-8.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use llama_cpp_2::{
    sampling::LlamaSampler,
    token::{LlamaToken, logit_bias::LlamaLogitBias},
};
use serde::Serialize;

use super::error::{EngineError, Result};
use super::session::{BatchToken, Session};
use super::speculative::{
    Emitted, Entry, Lossless, Next, Picker, SpeculationStats, Speculator, rule::Rng,
};
use uniskip_skip::Mask;

/// Sampling settings. `temperature <= 0` means greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 or less picks the most likely token.
    pub temperature: f32,
    /// Keep the k most likely tokens (0: off).
    pub top_k: i32,
    /// Nucleus sampling threshold (1: off).
    pub top_p: f32,
    /// Drop tokens below this fraction of the top probability (0: off).
    pub min_p: f32,
    /// Penalty for repeating recent tokens (1: off).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: i32,
    /// Seed of the random choice.
    pub seed: u32,
    /// Never choose an end-of-generation token: decode exactly the token limit (for
    /// measurements).
    pub ignore_eos: bool,
}

impl Sampling {
    /// Greedy decoding: deterministic, what the oracles compare.
    pub fn greedy() -> Self {
        Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
            ignore_eos: false,
        }
    }

    /// How tokens are picked: by llama.cpp's chain, or — for lossless decoding with
    /// sampling, whose rejection rule needs the probabilities — by the chain's shaping
    /// stages and a random source seeded alike.
    pub(super) fn picker<'a>(&self, model: &super::Model, lossless: bool) -> Picker<'a> {
        if lossless && self.temperature > 0.0 {
            Picker::Shaped {
                shape: LlamaSampler::chain_simple(self.stages(model, false)),
                rng: Rng::new(u64::from(self.seed)),
            }
        } else {
            Picker::Chain(LlamaSampler::chain_simple(self.stages(model, true)))
        }
    }

    /// The sampler stages, with the final draw (`draw`) or without it.
    fn stages(&self, model: &super::Model, draw: bool) -> Vec<LlamaSampler> {
        let n_vocab = model.n_vocab() as i32;
        let mut stages = Vec::new();
        if self.ignore_eos {
            let never: Vec<LlamaLogitBias> = model
                .end_of_generation_tokens()
                .into_iter()
                .map(|t| LlamaLogitBias::new(t, f32::NEG_INFINITY))
                .collect();
            stages.push(LlamaSampler::logit_bias(n_vocab, &never));
        }
        if self.repeat_penalty != 1.0 {
            stages.push(LlamaSampler::penalties(
                n_vocab,
                self.repeat_last_n,
                self.repeat_penalty,
                0.0,
                0.0,
            ));
        }
        if self.temperature <= 0.0 {
            stages.push(LlamaSampler::greedy());
        } else {
            if self.top_k > 0 {
                stages.push(LlamaSampler::top_k(self.top_k));
            }
            if self.top_p < 1.0 {
                stages.push(LlamaSampler::top_p(self.top_p, 1));
            }
            if self.min_p > 0.0 {
                stages.push(LlamaSampler::min_p(self.min_p, 1));
            }
            stages.push(LlamaSampler::temp(self.temperature));
            if draw {
                stages.push(LlamaSampler::dist(self.seed));
            }
        }
        stages
    }
}

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

/// Assembles token bytes into whole UTF-8 characters.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds bytes and returns the complete characters now available; invalid bytes become
    /// U+FFFD, an incomplete character at the end waits for the next call.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[..valid]).expect("valid prefix"),
                    );
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left at the end, lossily.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
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

/// The one decoding loop behind [`generate`] and [`super::generate_forced`].
pub(super) fn decode_loop<'f>(
    session: &mut Session<'_>,
    request: &Request<'_>,
    forcing: Option<&super::forced::Forcing<'f>>,
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
    let model = session.model();
    let total_prompt: usize = request.prompts.iter().map(Vec::len).sum();
    if total_prompt >= session.n_ctx() {
        return Err(EngineError::PromptTooLong {
            tokens: total_prompt,
            n_ctx: session.n_ctx(),
        });
    }
    let repair_before = session.repair_stats();
    let first_mask = mask_for_step(0);
    let prefill_mask = &prefill_mask(request.prefill, request.lossless.is_some(), &first_mask);
    let mut speculator = speculator(request.lossless, model, &first_mask, request.sampling)?;

    // Prefill: reuse each sequence's cached common prefix; run the rest but the last token
    // without logits, then every sequence's last prompt token together in one batch, whose
    // logits give the first generated tokens.
    let prefill_start = Instant::now();
    let interrupted = || request.interrupt.is_some_and(|stop| stop());
    let stopped_in_prefill = |prompt_tokens| {
        Generation::before_decoding(
            n,
            StopReason::Stopped,
            prompt_tokens,
            prefill_start.elapsed(),
        )
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
                return Ok(stopped_in_prefill(prompt_tokens));
            }
            session.prefill(seq as i32, chunk, Some(prefill_mask))?;
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
        return Ok(stopped_in_prefill(prompt_tokens));
    }
    let logit_index = session.decode(&last_tokens, Some(prefill_mask))?;
    prompt_tokens += n;
    let mut next: Vec<Next> = logit_index.into_iter().map(Next::Logits).collect();
    let mut emitter = Emitter {
        out: Generation::before_decoding(
            n,
            StopReason::MaxTokens,
            prompt_tokens,
            prefill_start.elapsed(),
        ),
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
    loop {
        // Choose one token per live sequence: from the logits of the previous decode, or
        // the one verification already chose.
        let mut batch = Vec::with_capacity(n);
        let mut stopped = false;
        for seq in 0..n {
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
                    stopped = true;
                    break;
                }
            }
        }
        if stopped {
            emitter.stop_all();
            break;
        }
        if batch.is_empty() {
            break;
        }
        if session.n_cached() + batch.len() > session.n_ctx() {
            for t in &batch {
                emitter.out.stop[t.seq as usize] = StopReason::ContextFull;
            }
            break;
        }
        step += 1;
        let mask = mask_for_step(step);
        if let Some(spec) = speculator.as_mut() {
            let entries: Vec<Entry> = batch
                .iter()
                .map(|t| Entry {
                    seq: t.seq,
                    token: t.token,
                    room: request.max_tokens - emitter.out.tokens[t.seq as usize].len(),
                })
                .collect();
            let outcome =
                spec.round(session, &entries, &mask, &mut pickers, &mut |seq, token| {
                    emitter.emit(seq, token, step)
                })?;
            for (seq, chosen) in outcome.next {
                next[seq as usize] = chosen;
            }
            if outcome.stopped {
                emitter.stop_all();
                break;
            }
        } else {
            let indices = session.decode(&batch, Some(&mask))?;
            for (t, i) in batch.iter().zip(indices) {
                next[t.seq as usize] = Next::Logits(i);
            }
        }
        let repair_now = session.repair_stats();
        emitter.out.repair_tokens += repair_now.tokens - repair_seen.tokens;
        emitter.out.repair_time += repair_now.time - repair_seen.time;
        repair_seen = repair_now;
    }
    let Emitter {
        mut out,
        mut streams,
        on_piece,
        ..
    } = emitter;
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
    out.speculation = speculator.map(Speculator::finish);
    out.decode_time = decode_start.elapsed().saturating_sub(out.repair_time);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_holds_back_a_character_split_across_tokens() {
        let mut s = Utf8Stream::default();
        let bytes = "é🦀".as_bytes();
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..3]), "é");
        assert_eq!(s.push(&bytes[3..]), "🦀");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn utf8_stream_replaces_invalid_bytes_and_goes_on() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(b"a\xffb"), "a\u{FFFD}b");
    }

    #[test]
    fn utf8_stream_flushes_an_incomplete_tail_lossily() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(&[0xF0, 0x9F]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }
}
