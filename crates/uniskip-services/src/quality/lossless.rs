//! The quality of lossless decoding, computed rather than assumed: the windows'
//! continuations are teacher-forced through [`generate_forced`] with lossless decoding on,
//! so the drafter proposes, full depth verifies the drafts in batches, and every scored
//! prediction is a row of a verification batch (or of a plain full-depth step, where the
//! drafter had nothing to offer). A draft is kept when it equals the text's token, so the
//! sequence always follows the text and each position is scored exactly once.
//!
//! The reference is plain full-depth decoding of the same text, one token at a time (the
//! same loop without `--lossless`): what generation at full depth computes. Lossless
//! decoding's perplexity, KL and top-1 come out equal to it up to llama.cpp's rounding
//! between batch shapes. `uniskip ppl`'s own full-depth row, which runs each continuation
//! as one batch, is compared with the same reference: its distance from one-token decoding
//! is the scale of that rounding. The drafter is measured on the way: how often a draft
//! equals the text (what was kept), and how often it equals full depth's most likely token
//! at its position (what greedy generation would have kept there).

use std::cell::RefCell;
use std::ops::ControlFlow;

use anyhow::{Result, bail};
use serde::Serialize;

use super::metrics::{Distribution, argmax};
use super::{QualityAccumulator, TeacherForcing, WindowShape};
use uniskip_engine::{
    ContextOptions, ForcedRow, Forcing, LlamaToken, Lossless, Model, PrefillPolicy, Request,
    Sampling, Session, SpeculationStats, generate_forced,
};
use uniskip_skip::Mask;

/// What the drafter did over every window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DraftSummary {
    /// Verification batches (plain full-depth steps included).
    pub rounds: u64,
    /// Rounds that verified at least one drafted token.
    pub drafting_rounds: u64,
    /// Tokens drafted.
    pub draft_tokens: u64,
    /// Drafted tokens equal to the text's (kept).
    pub kept_tokens: u64,
    /// Share of drafted tokens kept.
    pub kept_rate: f64,
    /// Drafted tokens checked at a position whose context is the text (every draft up to
    /// and including the first that differs from the text).
    pub checked_tokens: u64,
    /// Of those, equal to full depth's most likely token there.
    pub argmax_tokens: u64,
    /// `argmax_tokens / checked_tokens`: the drafter's acceptance against full depth's
    /// greedy choice on this text.
    pub argmax_acceptance: f64,
    /// Decode calls spent drafting.
    pub draft_decodes: u64,
    /// Times drafting paused itself for being slower than plain steps.
    pub pauses: u64,
}

/// Quality of lossless decoding on a set of windows, each against plain full depth.
pub struct LosslessQuality {
    /// Plain full-depth decoding, one token at a time: the reference (its perplexity; KL 0,
    /// top-1 100% by definition).
    pub full: QualityAccumulator,
    /// `uniskip ppl`'s full depth: each continuation teacher-forced in one batch. Its
    /// perplexity, and its KL from the reference `KL(batched || one token at a time)`.
    pub batched: QualityAccumulator,
    /// The same perplexity as `batched`'s rows give it (what `uniskip ppl` prints).
    pub batched_perplexity: f64,
    /// Lossless decoding's rows (verification and plain steps) against the reference.
    pub lossless: QualityAccumulator,
    /// What the drafter did.
    pub drafts: DraftSummary,
}

/// Scores `windows` (each `shape.len()` tokens) through lossless decoding with `config`,
/// the mask drafter drafting under `draft_mask(step)`, against plain full depth; `group`
/// windows share one batched teacher-forcing run (see [`super::windows_per_group`]).
/// `progress(done, total)` counts decoding passes (two per window).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_lossless(
    model: &Model,
    threads: i32,
    windows: &[Vec<LlamaToken>],
    shape: WindowShape,
    group: usize,
    config: Lossless<'_>,
    draft_mask: &dyn Fn(usize) -> Mask,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LosslessQuality> {
    let full = Mask::full(model.n_layer());
    // One sequence: the prefix, the continuation and the longest draft's cells.
    let n_ctx = (shape.len() + 2 * uniskip_engine::speculative::DRAFT_MAX_LIMIT).max(64) as u32;
    let mut session = model.session(&ContextOptions {
        n_ctx,
        n_batch: n_ctx.min(512),
        n_seq: 1,
        threads,
    })?;
    let mut out = LosslessQuality {
        full: QualityAccumulator::default(),
        batched: QualityAccumulator::default(),
        batched_perplexity: 0.0,
        lossless: QualityAccumulator::default(),
        drafts: DraftSummary::default(),
    };
    let mut batched_ppl = QualityAccumulator::default();
    let (mut done, total) = (0, 2 * windows.len());
    progress(0, total);
    for g in windows.chunks(group.max(1)) {
        let mut tf = TeacherForcing::new(model, threads, g.to_vec(), shape)?;
        batched_ppl.merge(&tf.score(&vec![full.clone(); shape.continuation])?);
        for (w, window) in g.iter().enumerate() {
            let texts = [window[shape.prefix..].to_vec()];
            // Plain full depth: the reference, and `ppl`'s batched rows against it.
            let mut reference: Vec<Option<Distribution>> = vec![None; shape.continuation];
            let mut plain = QualityAccumulator::default();
            let mut batched = QualityAccumulator::default();
            forced(
                &mut session,
                window,
                &texts,
                shape,
                None,
                &|_| full.clone(),
                &mut |row, j| {
                    let d = Distribution::from_logits(row.logits);
                    plain.push(d.score(row.logits, texts[0][j + 1].0 as usize));
                    batched.push(tf.score_row(w, j, row.logits));
                    reference[j] = Some(d);
                },
            )?;
            done += 1;
            progress(done, total);
            let reference: Vec<Distribution> = reference
                .into_iter()
                .map(|d| d.expect("every position scored"))
                .collect();
            // Lossless: verification's rows against the reference.
            let mut lossless = QualityAccumulator::default();
            let (mut checked, mut argmax_equal) = (0u64, 0u64);
            let stats = forced(
                &mut session,
                window,
                &texts,
                shape,
                Some(config),
                draft_mask,
                &mut |row, j| {
                    if let Some(d) = row.drafted {
                        checked += 1;
                        argmax_equal += u64::from(argmax(row.logits) == d.0 as usize);
                    }
                    lossless.push(reference[j].score(row.logits, texts[0][j + 1].0 as usize));
                },
            )?;
            add(&mut out.drafts, &stats);
            out.drafts.checked_tokens += checked;
            out.drafts.argmax_tokens += argmax_equal;
            out.full.merge(&plain);
            out.batched.merge(&batched);
            out.lossless.merge(&lossless);
            done += 1;
            progress(done, total);
        }
    }
    out.batched_perplexity = batched_ppl.summary().perplexity;
    let d = &mut out.drafts;
    d.kept_rate = ratio(d.kept_tokens, d.draft_tokens);
    d.argmax_acceptance = ratio(d.argmax_tokens, d.checked_tokens);
    Ok(out)
}

/// Teacher-forces one window's continuation through [`generate_forced`] (lossless when
/// `lossless` is given) and calls `score(row, j)` for the row that predicted each
/// continuation position `j`'s next token, exactly once per position.
fn forced(
    session: &mut Session<'_>,
    window: &[LlamaToken],
    texts: &[Vec<LlamaToken>; 1],
    shape: WindowShape,
    lossless: Option<Lossless<'_>>,
    mask: &dyn Fn(usize) -> Mask,
    score: &mut dyn FnMut(&ForcedRow<'_>, usize),
) -> Result<SpeculationStats> {
    let c = shape.continuation;
    // The prompt is the prefix; the text taken is the continuation and the token its last
    // position predicts. Its first token comes from the prompt's logits and is not scored
    // (as in `ppl`); token k >= 1 is predicted at continuation position k - 1.
    let prompts = [window[..shape.prefix].to_vec()];
    let mut seen = vec![0usize; c];
    let observe = RefCell::new(|row: ForcedRow<'_>| {
        if let Some(j) = row.index.checked_sub(1) {
            seen[j] += 1;
            score(&row, j);
        }
    });
    let sampling = Sampling::greedy();
    let generation = generate_forced(
        session,
        &Request {
            prompts: &prompts,
            max_tokens: c + 1,
            prefill: PrefillPolicy::Full,
            sampling: &sampling,
            interrupt: None,
            lossless,
        },
        &Forcing {
            texts,
            observe: &observe,
        },
        &mut |step| mask(step),
        &mut |_| ControlFlow::Continue(()),
    )?;
    if let Some(j) = seen.iter().position(|&n| n != 1) {
        bail!(
            "continuation position {j} was scored {} times, not once (the text holds an \
             end-of-text token?); choose another --corpus or shorter windows",
            seen[j]
        );
    }
    Ok(generation.speculation.unwrap_or_default())
}

fn add(d: &mut DraftSummary, s: &SpeculationStats) {
    d.rounds += s.rounds;
    d.drafting_rounds += s.drafting_rounds;
    d.draft_tokens += s.draft_tokens;
    d.kept_tokens += s.accepted_tokens;
    d.draft_decodes += s.draft_decodes;
    d.pauses += s.pauses;
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}
