//! What skipping costs in quality, measured teacher-forced against full depth.
//!
//! The paper's protocol: each window of text is a prefix and a continuation. The prefix
//! runs at full depth (as a prompt does); the continuation's tokens are fed in as if the
//! model had generated them, under the configuration's masks, and every prediction is
//! scored: the negative log-likelihood of the actual next token (perplexity), the KL
//! divergence from the full-depth distribution at the same position, and whether the most
//! likely token is full depth's.
//!
//! A mask that is the same for every continuation token can run the whole continuation as
//! one batch: a block skipped for all of them writes no K/V that any of them reads, so the
//! batch computes exactly what token-by-token decoding would. A schedule that changes with
//! the position (SkipDecode) is split into runs of equal masks, decoded in order; the
//! engine's K/V rule repairs a run that computes a block an earlier run skipped (a
//! decaying schedule never does). Position `j` of the continuation is decode step `j + 1`
//! of a generation, as in [`uniskip_engine::generate`]: the first continuation token is
//! what the full-depth prefix predicted, and it is fed in at step 1.
//!
//! - [`metrics`]: the arithmetic (log-softmax, KL, perplexity, percentiles).
//! - [`corpus`]: the text and the evaluation and calibration windows cut from it.
//! - [`cross`]: scoring one model against another model's full depth (a tuned file
//!   against its base).
//! - [`lossless`]: the same windows scored from lossless decoding's verification rows.

pub mod corpus;
pub mod cross;
pub mod lossless;
pub mod metrics;

use serde::{Deserialize, Serialize};

pub use corpus::{Corpus, Slice};
pub use metrics::{Distribution, QualityAccumulator, QualitySummary, TokenScore};
use uniskip_engine::{BatchToken, ContextOptions, LlamaToken, Model, Result, Session};
use uniskip_skip::Mask;

/// How a window is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowShape {
    /// Tokens run at full depth (BOS included).
    pub prefix: usize,
    /// Tokens fed in under the masks, each predicting the next.
    pub continuation: usize,
}

impl WindowShape {
    /// Tokens a window needs: prefix, continuation, and the token the last one predicts.
    pub fn len(&self) -> usize {
        self.prefix + self.continuation + 1
    }

    /// True when nothing would be scored.
    pub fn is_empty(&self) -> bool {
        self.continuation == 0
    }
}

/// Most logit values one decode call may ask for (rows times vocabulary), so that models
/// with large vocabularies keep llama.cpp's output buffer moderate.
const MAX_LOGIT_VALUES: usize = 32 << 20;

/// Windows whose prefixes sit in the K/V cache at full depth and whose full-depth
/// continuation distributions are kept as the reference; scores mask schedules against
/// them.
///
/// Memory: the reference holds 8 bytes per vocabulary entry per scored token.
pub struct TeacherForcing<'m> {
    session: Session<'m>,
    shape: WindowShape,
    windows: Vec<Vec<LlamaToken>>,
    reference: Vec<Distribution>,
    rows_per_call: usize,
}

impl<'m> TeacherForcing<'m> {
    /// Runs the prefixes of `windows` (each exactly `shape.len()` tokens) at full depth, one
    /// sequence per window, and computes the reference from their continuations at full
    /// depth.
    pub fn new(
        model: &'m Model,
        threads: i32,
        windows: Vec<Vec<LlamaToken>>,
        shape: WindowShape,
    ) -> Result<Self> {
        let mut tf = Self::prefilled(model, threads, windows, shape)?;
        let full = Mask::full(model.n_layer());
        let mut reference = Vec::with_capacity(tf.scored_tokens());
        tf.run(&vec![full; shape.continuation], &mut |_, _, logits| {
            reference.push(Distribution::from_logits(logits));
        })?;
        tf.reference = reference;
        Ok(tf)
    }

    /// Runs the prefixes of `windows` at full depth, one sequence per window; the
    /// reference is left empty.
    fn prefilled(
        model: &'m Model,
        threads: i32,
        windows: Vec<Vec<LlamaToken>>,
        shape: WindowShape,
    ) -> Result<Self> {
        assert!(
            !windows.is_empty(),
            "teacher forcing needs at least one window"
        );
        assert!(
            windows.iter().all(|w| w.len() == shape.len()),
            "every window must hold prefix + continuation + 1 tokens"
        );
        assert!(shape.prefix >= 1 && shape.continuation >= 1);
        let n = windows.len();
        let n_ctx = (n * (shape.len() + 1)).max(64) as u32;
        let options = ContextOptions {
            n_ctx,
            n_batch: n_ctx.min(512),
            n_seq: n as u32,
            threads,
        };
        let session = model.session(&options)?;
        let rows_per_call = (MAX_LOGIT_VALUES / model.n_vocab().max(1)).clamp(1, 512);
        let mut tf = TeacherForcing {
            session,
            shape,
            windows,
            reference: Vec::new(),
            rows_per_call,
        };
        let full = Mask::full(model.n_layer());
        let prefix: Vec<BatchToken> = tf
            .windows
            .iter()
            .enumerate()
            .flat_map(|(w, tokens)| {
                tokens[..shape.prefix].iter().map(move |&token| BatchToken {
                    seq: w as i32,
                    token,
                    logits: false,
                })
            })
            .collect();
        for chunk in prefix.chunks(tf.session.n_batch()) {
            tf.session.decode(chunk, Some(&full))?;
        }
        Ok(tf)
    }

    /// The window shape.
    pub fn shape(&self) -> WindowShape {
        self.shape
    }

    /// Windows held.
    pub fn n_windows(&self) -> usize {
        self.windows.len()
    }

    /// Tokens scored per schedule.
    pub fn scored_tokens(&self) -> usize {
        self.windows.len() * self.shape.continuation
    }

    /// Scores one row of logits that predicted continuation position `position` of window
    /// `window` (a token of `window[prefix + position + 1]`) against the reference there.
    pub fn score_row(&self, window: usize, position: usize, logits: &[f32]) -> TokenScore {
        let c = self.shape.continuation;
        let target = self.windows[window][self.shape.prefix + position + 1].0 as usize;
        self.reference[window * c + position].score(logits, target)
    }

    /// Scores the schedule `masks` (`masks[j]` for continuation position `j`; exactly
    /// `shape.continuation` of them) against the full-depth reference.
    pub fn score(&mut self, masks: &[Mask]) -> Result<QualityAccumulator> {
        let mut acc = QualityAccumulator::default();
        let c = self.shape.continuation;
        let p = self.shape.prefix;
        let targets: Vec<usize> = self
            .windows
            .iter()
            .flat_map(|w| w[p + 1..].iter().map(|t| t.0 as usize))
            .collect();
        // Moved out for the duration of the run, which borrows `self` mutably.
        let reference = std::mem::take(&mut self.reference);
        let result = self.run(masks, &mut |w, j, logits| {
            acc.push(reference[w * c + j].score(logits, targets[w * c + j]));
        });
        self.reference = reference;
        result.map(|()| acc)
    }

    /// Feeds every window's continuation under `masks` (runs of equal masks in order, in
    /// chunks the context takes), calls `row(window, position, logits)` for each
    /// prediction, then drops the continuations from the cache again.
    fn run(&mut self, masks: &[Mask], row: &mut dyn FnMut(usize, usize, &[f32])) -> Result<()> {
        let c = self.shape.continuation;
        let p = self.shape.prefix;
        assert_eq!(masks.len(), c, "one mask per continuation position");
        let chunk_len = self.session.n_batch().min(self.rows_per_call);
        let mut j0 = 0;
        while j0 < c {
            let mut j1 = j0 + 1;
            while j1 < c && masks[j1] == masks[j0] {
                j1 += 1;
            }
            // (window, position) of every token of this run, window-major so that each
            // sequence's positions ascend across chunks.
            let places: Vec<(usize, usize)> = (0..self.windows.len())
                .flat_map(|w| (j0..j1).map(move |j| (w, j)))
                .collect();
            for chunk in places.chunks(chunk_len) {
                let batch: Vec<BatchToken> = chunk
                    .iter()
                    .map(|&(w, j)| BatchToken {
                        seq: w as i32,
                        token: self.windows[w][p + j],
                        logits: true,
                    })
                    .collect();
                let outputs = self.session.decode(&batch, Some(&masks[j0]))?;
                for (&(w, j), &i) in chunk.iter().zip(&outputs) {
                    row(w, j, self.session.logits(i));
                }
            }
            j0 = j1;
        }
        for w in 0..self.windows.len() {
            self.session.truncate(w as i32, p)?;
        }
        Ok(())
    }
}

/// How many windows to evaluate together so that the full-depth reference (8 bytes per
/// vocabulary entry per scored token) stays within about 256 MiB, and each window has a
/// sequence of its own (llama.cpp allows at most 256 in one context).
pub fn windows_per_group(n_vocab: usize, continuation: usize) -> usize {
    const BUDGET: usize = 256 << 20;
    const MAX_SEQUENCES: usize = 256;
    (BUDGET / (8 * n_vocab.max(1) * continuation.max(1))).clamp(1, MAX_SEQUENCES)
}

/// Scores every schedule in `schedules` on `windows`, `group` windows at a time (to bound
/// the reference's memory, see [`windows_per_group`]), and returns one accumulator per
/// schedule. `progress(done, total)` is called after each schedule of each group, in work
/// units.
pub fn evaluate(
    model: &Model,
    threads: i32,
    windows: &[Vec<LlamaToken>],
    shape: WindowShape,
    group: usize,
    schedules: &[Vec<Mask>],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<QualityAccumulator>> {
    let mut out = vec![QualityAccumulator::default(); schedules.len()];
    let groups: Vec<&[Vec<LlamaToken>]> = windows.chunks(group.max(1)).collect();
    // Progress in work units: a token through `n` blocks weighs `n + 10` (the output head
    // and the rest that skipping does not shrink weigh about ten blocks).
    let weight = |masks: &[Mask]| -> usize { masks.iter().map(|m| m.n_active() + 10).sum() };
    let per_group: usize = schedules.iter().map(|m| weight(m)).sum();
    let total = groups.len() * per_group;
    let mut done = 0;
    progress(0, total);
    for g in groups {
        let mut tf = TeacherForcing::new(model, threads, g.to_vec(), shape)?;
        for (acc, masks) in out.iter_mut().zip(schedules) {
            acc.merge(&tf.score(masks)?);
            done += weight(masks);
            progress(done, total);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::windows_per_group;

    #[test]
    fn window_groups_fit_the_memory_budget_and_llama_cpps_sequence_limit() {
        // SmolLM2's vocabulary: 64 scored tokens of 8-byte rows take 25 MiB per window.
        assert_eq!(windows_per_group(49_152, 64), 10);
        // One scored token per window would allow 682 windows: capped at 256 sequences.
        assert_eq!(windows_per_group(49_152, 1), 256);
        // Never zero, however large a window.
        assert_eq!(windows_per_group(262_144, 4096), 1);
    }
}
