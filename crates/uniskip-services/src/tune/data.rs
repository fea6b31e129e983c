//! The windows training learns from, and the held-out windows it is judged on.
//!
//! Training text comes from the corpus's calibration slice (its odd stripes); evaluation
//! windows from its evaluation slice (the even stripes): no text is in both
//! ([`crate::quality::corpus`]).
//!
//! - Corpus: the windows are the corpus text itself.
//! - Self-distillation (the default): each window starts with a short prompt cut from the
//!   corpus, and the rest is what the base model writes after it at full depth, sampled
//!   (sequence-level distillation: the tuned model learns to write what the full model
//!   writes, not what some other text says).

use std::ops::ControlFlow;

use anyhow::{Result, bail};

use crate::quality::{Corpus, Slice};
use uniskip_engine::{
    ContextOptions, LlamaToken, Model, PrefillPolicy, Request, Sampling, generate,
};
use uniskip_skip::Mask;

/// Tokens of corpus text that open a self-distillation window.
pub const DISTILL_PROMPT_TOKENS: usize = 32;

/// Sequences generated together while distilling.
const DISTILL_BATCH: usize = 8;

/// Where training text comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// The base model's own continuations of corpus prompts.
    Distill,
    /// The corpus text itself.
    Corpus,
}

/// `n` training windows of `len` tokens each.
///
/// `progress(done, n)` is called as windows are made; `stop()` is asked between batches
/// of generation.
#[allow(clippy::too_many_arguments)]
pub fn training_windows(
    model: &Model,
    corpus: &Corpus,
    source: &DataSource,
    n: usize,
    len: usize,
    threads: i32,
    seed: u32,
    progress: &mut dyn FnMut(usize, usize),
    stop: &dyn Fn() -> bool,
) -> Result<Vec<Vec<i32>>> {
    let ids = |w: Vec<LlamaToken>| w.into_iter().map(|t| t.0).collect::<Vec<i32>>();
    match source {
        DataSource::Corpus => {
            let windows = corpus.windows(model, Slice::Calibration, n, len)?;
            progress(n, n);
            Ok(windows.into_iter().map(ids).collect())
        }
        DataSource::Distill => distill(model, corpus, n, len, threads, seed, progress, stop),
    }
}

#[allow(clippy::too_many_arguments)]
fn distill(
    model: &Model,
    corpus: &Corpus,
    n: usize,
    len: usize,
    threads: i32,
    seed: u32,
    progress: &mut dyn FnMut(usize, usize),
    stop: &dyn Fn() -> bool,
) -> Result<Vec<Vec<i32>>> {
    // Twice the prompts needed: a continuation that ends (end of text) before the window
    // is full is set aside, and the next prompt is used.
    let prompts = corpus.windows(model, Slice::Calibration, 2 * n, DISTILL_PROMPT_TOKENS)?;
    let options = ContextOptions {
        n_ctx: (DISTILL_BATCH * (len + 8)) as u32,
        n_batch: 512,
        n_seq: DISTILL_BATCH as u32,
        threads,
    };
    let full = Mask::full(model.n_layer());
    let mut out = Vec::with_capacity(n);
    progress(0, n);
    for (b, batch) in prompts.chunks(DISTILL_BATCH).enumerate() {
        if out.len() >= n {
            break;
        }
        if stop() {
            bail!("stopped while writing the training text");
        }
        let mut session = model.session(&options)?;
        let sampling = Sampling {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: seed.wrapping_add((b * DISTILL_BATCH) as u32),
            ignore_eos: false,
        };
        let request = Request {
            prompts: batch,
            max_tokens: len - DISTILL_PROMPT_TOKENS,
            prefill: PrefillPolicy::Full,
            sampling: &sampling,
            interrupt: None,
            lossless: None,
        };
        let generation = generate(&mut session, &request, &mut |_| full.clone(), &mut |_| {
            ControlFlow::Continue(())
        })?;
        for (prompt, tokens) in batch.iter().zip(&generation.tokens) {
            if prompt.len() + tokens.len() >= len && out.len() < n {
                let mut w: Vec<i32> = prompt.iter().map(|t| t.0).collect();
                w.extend(tokens.iter().map(|t| t.0));
                w.truncate(len);
                out.push(w);
            }
        }
        progress(out.len().min(n), n);
    }
    if out.len() < n {
        bail!(
            "the model ended its text early too often: {} of {n} training windows written; use --corpus",
            out.len()
        );
    }
    Ok(out)
}

/// `n` held-out windows of `len` tokens from the corpus's evaluation slice.
pub fn evaluation_windows(
    model: &Model,
    corpus: &Corpus,
    n: usize,
    len: usize,
) -> Result<Vec<Vec<i32>>> {
    Ok(corpus
        .windows(model, Slice::Evaluation, n, len)?
        .into_iter()
        .map(|w| w.into_iter().map(|t| t.0).collect())
        .collect())
}
