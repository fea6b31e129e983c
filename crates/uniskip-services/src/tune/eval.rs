//! Quality of a (tuned or untuned) model under a mask against the *base* model at full
//! depth, teacher-forced on held-out windows.
//!
//! [`crate::quality`] compares a model with its own full depth; a tuned model's own full
//! depth is no longer the base model, so here the reference distributions come from the
//! base file and the scored rows from the candidate file.

use anyhow::Result;

use crate::quality::{Distribution, QualityAccumulator, QualitySummary};
use uniskip_engine::{BatchToken, ContextOptions, LlamaToken, Model};
use uniskip_skip::{Mask, Plan};

/// Which blocks a window's prefix runs through in the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// Every block (the paper's rule at inference).
    Full,
    /// The same mask as the continuation (a pruned model, or the whole-window recipe).
    Masked,
}

/// The full-depth distributions of the base model over each window's continuation.
pub struct Reference {
    prefix: usize,
    windows: Vec<Vec<i32>>,
    rows: Vec<Distribution>,
}

fn context(window: usize, threads: i32) -> ContextOptions {
    let n = window.next_multiple_of(256) as u32;
    ContextOptions {
        n_ctx: n,
        n_batch: n,
        n_seq: 1,
        threads,
    }
}

/// Runs `windows` through `model` with `prefix_mask` over the first `prefix` tokens and
/// `plan` over the rest (continuation step `j` under `plan.mask(j + 1)`, as generation
/// numbers its steps), calling `row(window, j, logits)` for continuation position `j`.
fn forward(
    model: &Model,
    windows: &[Vec<i32>],
    prefix: usize,
    prefix_mask: &Mask,
    plan: &Plan,
    threads: i32,
    row: &mut dyn FnMut(usize, usize, &[f32]),
) -> Result<()> {
    let len = windows.first().map_or(0, Vec::len);
    let mut session = model.session(&context(len, threads))?;
    for (w, tokens) in windows.iter().enumerate() {
        session.clear();
        let batch = |range: std::ops::Range<usize>, logits: bool| {
            BatchToken::run_of(0, tokens[range].iter().map(|&t| LlamaToken(t)), logits)
        };
        // The last token is only a target.
        let cont = len - 1 - prefix;
        if plan.varies() {
            // A mask per step: one token per decode, as generation runs it.
            session.decode(&batch(0..prefix, false), Some(prefix_mask))?;
            for j in 0..cont {
                let outputs = session.decode(
                    &batch(prefix + j..prefix + j + 1, true),
                    Some(plan.mask(j + 1)),
                )?;
                row(w, j, session.logits(outputs[0]));
            }
        } else if prefix_mask == plan.mask(1) {
            let mut all = batch(0..len - 1, false);
            for t in &mut all[prefix..] {
                t.logits = true;
            }
            let outputs = session.decode(&all, Some(prefix_mask))?;
            for (j, &i) in outputs.iter().enumerate() {
                row(w, j, session.logits(i));
            }
        } else {
            session.decode(&batch(0..prefix, false), Some(prefix_mask))?;
            let outputs =
                session.decode(&batch(prefix..prefix + cont, true), Some(plan.mask(1)))?;
            for (j, &i) in outputs.iter().enumerate() {
                row(w, j, session.logits(i));
            }
        }
    }
    Ok(())
}

impl Reference {
    /// The base model's full-depth distributions over `windows` (all the same length,
    /// at most a few hundred tokens), positions `prefix..` scored.
    pub fn new(base: &Model, windows: Vec<Vec<i32>>, prefix: usize, threads: i32) -> Result<Self> {
        let full = Mask::full(base.n_layer());
        let mut rows = Vec::new();
        forward(
            base,
            &windows,
            prefix,
            &full,
            &Plan::fixed(full.clone()),
            threads,
            &mut |_, _, logits| rows.push(Distribution::from_logits(logits)),
        )?;
        Ok(Reference {
            prefix,
            windows,
            rows,
        })
    }

    /// Scores `candidate` under `plan` (its prefix as `prefix` says: masked means the
    /// prompt's mask, `plan.mask(0)`) against the reference.
    pub fn score(
        &self,
        candidate: &Model,
        plan: &Plan,
        prefix: Prefix,
        threads: i32,
    ) -> Result<QualitySummary> {
        let full = Mask::full(candidate.n_layer());
        let prefix_mask = match prefix {
            Prefix::Full => &full,
            Prefix::Masked => plan.mask(0),
        };
        let cont = self.windows[0].len() - 1 - self.prefix;
        let mut acc = QualityAccumulator::default();
        forward(
            candidate,
            &self.windows,
            self.prefix,
            prefix_mask,
            plan,
            threads,
            &mut |w, j, logits| {
                let target = self.windows[w][self.prefix + j + 1] as usize;
                acc.push(self.rows[w * cont + j].score(logits, target));
            },
        )?;
        Ok(acc.summary())
    }
}
