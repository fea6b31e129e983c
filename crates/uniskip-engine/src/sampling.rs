//! How a token is chosen from a row of logits: the sampling settings, and the pickers that
//! apply them.
//!
//! Plain decoding and greedy lossless decoding let llama.cpp's sampler chain choose.
//! Lossless decoding with sampling needs the probabilities themselves (the rejection rule
//! compares them), so the same chain shapes the distribution — penalties, top-k, top-p,
//! min-p, temperature — and a seeded random source chooses from it. Teacher forcing (for
//! scoring a text) chooses nothing: it takes the text's next token and shows the row that
//! predicted it to an observer.

use std::cell::RefCell;

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::{LlamaToken, logit_bias::LlamaLogitBias};

use crate::session::Session;
use uniskip_draft::rule::{Dist, Rng};

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
    pub(crate) fn picker<'a>(&self, model: &crate::Model, lossless: bool) -> Picker<'a> {
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
    fn stages(&self, model: &crate::Model, draw: bool) -> Vec<LlamaSampler> {
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

/// Teacher forcing: every sequence takes the tokens of a given text instead of choosing
/// (the first from the prompt's logits), and `observe` sees each row that predicted one.
pub struct Forcing<'a> {
    /// Per sequence, the tokens to take, at least the request's `max_tokens` each.
    pub texts: &'a [Vec<LlamaToken>],
    /// Sees every row that predicted a token of a text.
    pub observe: &'a Observer<'a>,
}

/// A logit row that predicted a token of a forced text.
pub struct ForcedRow<'r> {
    /// The sequence.
    pub seq: usize,
    /// Index of the predicted token in the sequence's text.
    pub index: usize,
    /// The row's logits (full depth's: only verification and plain steps reach a picker).
    pub logits: &'r [f32],
    /// The token a drafter proposed at this position, when the row verified a draft.
    pub drafted: Option<LlamaToken>,
}

/// Sees every row that predicted a forced token.
pub type Observer<'a> = RefCell<dyn FnMut(ForcedRow<'_>) + 'a>;

/// Picks tokens for one sequence.
pub enum Picker<'a> {
    /// llama.cpp's chain chooses (its last stage is greedy or a seeded draw).
    Chain(LlamaSampler),
    /// The chain without its final draw shapes the distribution; `rng` draws from it.
    Shaped {
        /// Every stage but the draw.
        shape: LlamaSampler,
        /// The random source.
        rng: Rng,
    },
    /// Teacher forcing: takes `text[next]` and shows the row to `observe`.
    Forced {
        /// The sequence.
        seq: usize,
        /// The tokens to take, in order.
        text: &'a [LlamaToken],
        /// How many were taken.
        next: usize,
        /// Sees each row (shared by every sequence's picker).
        observe: &'a Observer<'a>,
    },
}

impl Picker<'_> {
    /// Records tokens that are now part of the sequence (for repetition penalties).
    pub fn accept_many(&mut self, tokens: &[LlamaToken]) {
        if let Some(chain) = self.chain_mut() {
            chain.accept_many(tokens.iter());
        }
    }

    /// Records one token that is now part of the sequence.
    pub fn accept(&mut self, token: LlamaToken) {
        if let Some(chain) = self.chain_mut() {
            chain.accept(token);
        }
    }

    fn chain_mut(&mut self) -> Option<&mut LlamaSampler> {
        match self {
            Picker::Chain(c) => Some(c),
            Picker::Shaped { shape, .. } => Some(shape),
            Picker::Forced { .. } => None,
        }
    }

    /// Chooses a token from logit row `row` of the last batch and records it.
    pub fn pick(&mut self, session: &Session<'_>, row: usize) -> LlamaToken {
        self.pick_against(session, row, None)
    }

    /// [`Picker::pick`] at a row that verifies `drafted` (teacher forcing reports it).
    pub fn pick_against(
        &mut self,
        session: &Session<'_>,
        row: usize,
        drafted: Option<LlamaToken>,
    ) -> LlamaToken {
        match self {
            Picker::Chain(chain) => chain.sample(session.context(), row as i32),
            Picker::Shaped { shape, rng } => {
                let dist = shaped(shape, session, row);
                let token = LlamaToken(dist.sample(rng.uniform()));
                shape.accept(token);
                token
            }
            Picker::Forced {
                seq,
                text,
                next,
                observe,
            } => {
                // generate_forced checks that no sequence takes more than its text holds.
                let token = text[*next];
                (observe.borrow_mut())(ForcedRow {
                    seq: *seq,
                    index: *next,
                    logits: session.logits(row),
                    drafted,
                });
                *next += 1;
                token
            }
        }
    }

    /// The distribution this picker draws from at logit row `row`, without recording
    /// anything (only for [`Picker::Shaped`]; a chain's distribution is not exposed).
    pub fn distribution(&mut self, session: &Session<'_>, row: usize) -> Option<Dist> {
        match self {
            Picker::Chain(_) | Picker::Forced { .. } => None,
            Picker::Shaped { shape, .. } => Some(shaped(shape, session, row)),
        }
    }

    /// The random source of a shaped picker.
    pub fn rng(&mut self) -> Option<&mut Rng> {
        match self {
            Picker::Chain(_) | Picker::Forced { .. } => None,
            Picker::Shaped { rng, .. } => Some(rng),
        }
    }

    /// A copy of the shaping stages with their state (for drafting ahead without touching
    /// this picker).
    pub fn fork_shape(&self) -> Option<LlamaSampler> {
        match self {
            Picker::Chain(_) | Picker::Forced { .. } => None,
            Picker::Shaped { shape, .. } => Some(shape.clone()),
        }
    }
}

/// `shape`'s distribution at logit row `row` of `session`'s last batch.
pub fn shaped(shape: &mut LlamaSampler, session: &Session<'_>, row: usize) -> Dist {
    let mut array = session.context().token_data_array_ith(row as i32);
    shape.apply(&mut array);
    Dist::softmax(array.data.iter().map(|d| (d.id().0, d.logit())))
}

/// The token with the largest logit in row `row` of `session`'s last batch, other than
/// `banned` ones.
pub fn argmax(session: &Session<'_>, row: usize, banned: &[LlamaToken]) -> LlamaToken {
    let logits = session.logits(row);
    let mut best: Option<usize> = None;
    for (i, &x) in logits.iter().enumerate() {
        if best.is_none_or(|b| x > logits[b]) && !banned.contains(&LlamaToken(i as i32)) {
            best = Some(i);
        }
    }
    LlamaToken(best.unwrap_or(0) as i32)
}
