//! The base model at full depth as a teacher: for each training window, the distribution it
//! gives at every position, the soft targets of logit distillation ([`super::Targets`]).
//!
//! One distribution per position carries far more than the one token sampled from it: the
//! tuned model learns how much the base model hesitates between its candidates, which is
//! exactly what the held-out KL measures.

use anyhow::{Result, bail};

use crate::quality::metrics::log_softmax;
use uniskip_engine::{BatchToken, ContextOptions, LlamaToken, Model, Session};

/// A full-depth inference session of the base model, sized for one training window.
pub struct Teacher<'m> {
    session: Session<'m>,
    window: usize,
    n_vocab: usize,
}

impl<'m> Teacher<'m> {
    /// A teacher for windows of `window` input tokens.
    pub fn new(base: &'m Model, window: usize, threads: i32) -> Result<Self> {
        let n = window.next_multiple_of(256) as u32;
        let session = base.session(&ContextOptions {
            n_ctx: n,
            n_batch: n,
            n_seq: 1,
            threads,
        })?;
        Ok(Teacher {
            session,
            window,
            n_vocab: base.n_vocab(),
        })
    }

    /// The base model's next-token distribution at each of the first `window` positions of
    /// `tokens` (`window + 1` tokens: inputs and the targets after them), as `window` rows of
    /// `n_vocab` probabilities, row after row.
    pub fn distributions(&mut self, tokens: &[i32]) -> Result<Vec<f32>> {
        if tokens.len() != self.window + 1 {
            bail!(
                "a training window holds {} tokens, not {}",
                self.window + 1,
                tokens.len()
            );
        }
        self.session.clear();
        let batch = BatchToken::run_of(
            0,
            tokens[..self.window].iter().map(|&t| LlamaToken(t)),
            true,
        );
        // No mask: llama.cpp's own path, every block.
        let outputs = self.session.decode(&batch, None)?;
        let mut probs = Vec::with_capacity(self.window * self.n_vocab);
        for &i in &outputs {
            probs.extend(log_softmax(self.session.logits(i)).iter().map(|l| l.exp()));
        }
        if probs.len() != self.window * self.n_vocab {
            bail!(
                "the teacher gave {} probabilities for {} positions of {} tokens",
                probs.len(),
                self.window,
                self.n_vocab
            );
        }
        Ok(probs)
    }
}
