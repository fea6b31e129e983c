//! Lossless decoding: a cheap drafter proposes tokens, one full-depth batch checks them, and
//! every token full depth would also have produced is kept. The output is full depth's.
//!
//! One round, inside [`super::generate`]'s loop, for every live sequence whose next token
//! `t` was just chosen: draft `d0..dk-1` after `t` (n-gram lookup, the model under the skip
//! mask, or a second model), decode `[t, d0..dk-1]` at full depth with logits on every row,
//! keep the longest prefix full depth agrees with (greedy: equal to its choice; sampling:
//! the speculative rejection rule), and let full depth's row after the last kept token
//! give the next token. Cells of refused drafts are dropped from the cache. Drafts made
//! under the mask are dropped before verification and rewritten at full depth by it, so
//! the K/V ledger only ever holds full-depth positions and no repair is ever needed.

mod drafting;
mod verify;

use std::cell::RefCell;
use std::time::Instant;

use llama_cpp_2::token::LlamaToken;

pub use crate::sampling::{ForcedRow, Observer, Picker};
// The drafting policy is pure (crates/uniskip-draft); this module runs it on the model.
pub use uniskip_draft::{
    Controller, DRAFT_MAX_DEFAULT, DRAFT_MAX_LIMIT, DraftCosts, Drafter, Kind, SpeculationStats,
    lookup, rule,
};

use super::error::{EngineError, Result};
use super::model::{ContextOptions, Model};
use super::session::{BatchToken, Session};
use rule::Verdict;
use uniskip_skip::Mask;
use verify::judge;

/// Most rows in a verification batch while a plain step has no more. From 64 rows on,
/// ggml's CPU attention takes a tiled path that rounds differently from the row-by-row
/// path of plain steps (measured: SmolLM2's logits move by up to 0.6), so a longer batch
/// would judge drafts against logits plain decoding never computes (docs/DESIGN.md
/// section 2, edit 5).
pub const VERIFY_ROWS_MAX: usize = 63;

/// Settings of lossless decoding.
#[derive(Clone, Copy)]
pub struct Lossless<'a> {
    /// Who drafts.
    pub drafter: Drafter,
    /// Most tokens drafted per round (the length adapts below it).
    pub draft_max: usize,
    /// The draft model and its context settings, for [`Drafter::Model`].
    pub draft_model: Option<(&'a Model, ContextOptions)>,
    /// The mask the draft model drafts under (`None`: every block), for a draft model tuned
    /// for a mask. Its cache is filled at full depth, as a tuned file's prompt runs.
    pub draft_mask: Option<&'a Mask>,
    /// Costs earlier generations measured with this model, thread count and batch size:
    /// drafting starts from them (a drafter they rule out does not draft), and they are
    /// updated with this generation's measurements when it ends.
    pub costs: Option<&'a RefCell<DraftCosts>>,
}

impl Lossless<'_> {
    /// Lossless decoding with `drafter` and the default draft length.
    pub fn with(drafter: Drafter) -> Self {
        Lossless {
            drafter,
            draft_max: DRAFT_MAX_DEFAULT,
            draft_model: None,
            draft_mask: None,
            costs: None,
        }
    }
}

/// One live sequence entering a round: its token chosen but not yet decoded.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The sequence.
    pub seq: i32,
    /// Its next token (already emitted).
    pub token: LlamaToken,
    /// Tokens it may still produce after `token` (the `-n` limit).
    pub room: usize,
}

/// Where a sequence's next token comes from after a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Choose it from this logit row of the last batch.
    Logits(usize),
    /// Verification already chose it (a refused draft's replacement): emit it as is.
    Chosen(LlamaToken),
}

/// What became of a token handed to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emitted {
    /// The sequence goes on.
    Live,
    /// The sequence has ended (end of text or the `-n` limit).
    Ended,
    /// The caller asked to stop everything.
    Stop,
}

/// The result of one round.
pub struct RoundOutcome {
    /// Per sequence still live, where its next token comes from.
    pub next: Vec<(i32, Next)>,
    /// The caller asked to stop.
    pub stopped: bool,
}

/// The state of lossless decoding over one generation.
pub struct Speculator<'a> {
    config: Lossless<'a>,
    control: Controller,
    stats: SpeculationStats,
    round_start: Instant,
    draft_session: Option<Session<'a>>,
    /// Tokens the sampler never chooses (end of generation under `ignore_eos`): greedy
    /// drafts avoid them too.
    banned: Vec<LlamaToken>,
    /// Blocks the mask drafter's mask keeps (its costs are known per block count).
    mask_blocks: usize,
    /// Per sequence: whether its last round kept a whole lookup draft, so that its next
    /// lookup draft continues a match that holds ([`Controller::lookup_len`]).
    lookup_streak: Vec<bool>,
}

impl<'a> Speculator<'a> {
    /// Starts lossless decoding for a target `model`, the mask drafter drafting under
    /// `draft_mask` at first; makes the draft model's context when the drafter needs one.
    /// `banned` tokens are never chosen by the sampler.
    pub fn new(
        config: Lossless<'a>,
        model: &Model,
        draft_mask: &Mask,
        banned: Vec<LlamaToken>,
    ) -> Result<Self> {
        let draft_session = match (config.drafter, &config.draft_model) {
            (Drafter::Model, Some((draft, options))) => {
                if draft.n_vocab() != model.n_vocab() {
                    return Err(EngineError::DraftVocabulary {
                        draft: draft.n_vocab(),
                        target: model.n_vocab(),
                    });
                }
                Some(draft.session(options)?)
            }
            (Drafter::Model, None) => return Err(EngineError::NoDraftModel),
            _ => None,
        };
        let mut control = Controller::new(config.draft_max.clamp(1, DRAFT_MAX_LIMIT));
        let mask_blocks = draft_mask.n_active();
        if let Some(costs) = config.costs {
            control.seed(&costs.borrow(), mask_blocks, config.drafter.kinds());
        }
        Ok(Speculator {
            control,
            mask_blocks,
            config,
            stats: SpeculationStats {
                drafter: config.drafter,
                ..SpeculationStats::default()
            },
            round_start: Instant::now(),
            draft_session,
            banned,
            lookup_streak: Vec::new(),
        })
    }

    /// Marks the start of decoding (the first round's time counts from here).
    pub fn start_clock(&mut self) {
        self.round_start = Instant::now();
    }

    /// Ends lossless decoding: hands the costs measured back to the caller's
    /// [`Lossless::costs`] and returns what drafting did.
    pub fn finish(self) -> SpeculationStats {
        if let Some(costs) = self.config.costs {
            let updated = self.control.costs(&costs.borrow(), self.mask_blocks);
            *costs.borrow_mut() = updated;
        }
        self.stats()
    }

    /// What drafting did so far.
    pub fn stats(&self) -> SpeculationStats {
        let mut s = self.stats.clone();
        s.pauses = self.control.pauses();
        let kinds: &[Kind] = match self.config.drafter {
            Drafter::Mask => &[Kind::Mask],
            Drafter::Lookup => &[Kind::Lookup],
            Drafter::MaskLookup => &[Kind::Lookup, Kind::Mask],
            Drafter::Model => &[Kind::Model],
        };
        s.paused_at_end = kinds.iter().all(|&k| self.control.is_paused(k));
        s.measured_speedup = kinds
            .iter()
            .filter_map(|&k| self.control.measured_speedup(k))
            .reduce(f64::max);
        s.plain_tokens_per_s = self.control.plain_tokens_per_s();
        s
    }

    /// One round: drafts after each entry's token, verifies at full depth, emits the kept
    /// drafts through `emit`, and drops refused cells. `draft_mask` is the mask drafter's.
    pub fn round(
        &mut self,
        session: &mut Session<'_>,
        entries: &[Entry],
        draft_mask: &Mask,
        pickers: &mut [Picker<'_>],
        emit: &mut dyn FnMut(usize, LlamaToken) -> Emitted,
    ) -> Result<RoundOutcome> {
        let model = session.model();
        let full = Mask::full(model.n_layer());
        if draft_mask.n_active() != self.mask_blocks {
            self.mask_blocks = draft_mask.n_active();
            let prior = self
                .config
                .costs
                .and_then(|c| c.borrow().mask.get(&self.mask_blocks).copied());
            self.control.mask_changed(prior);
        }
        let starts: Vec<usize> = entries
            .iter()
            .map(|e| session.tokens(e.seq).map(<[i32]>::len))
            .collect::<Result<_>>()?;
        let mut drafts = self.plan_lookup(session, entries)?;
        self.fit(session, entries, &mut drafts);
        self.draft_with_model(session, entries, draft_mask, pickers, &mut drafts, &starts)?;
        self.fit(session, entries, &mut drafts);
        for d in &drafts {
            let n = d.tokens.len() as u64;
            self.stats.draft_tokens += n;
            match d.kind {
                Some(Kind::Lookup) => self.stats.lookup_drafted += n,
                Some(_) => self.stats.model_drafted += n,
                None => {}
            }
        }

        // Verify: every sequence's [t, d0..dk-1], logits on every row, at full depth.
        let mut batch = Vec::new();
        for (e, d) in entries.iter().zip(&drafts) {
            batch.push(BatchToken {
                seq: e.seq,
                token: e.token,
                logits: true,
            });
            batch.extend(BatchToken::run_of(e.seq, d.tokens.iter().copied(), true));
        }
        let t = Instant::now();
        let rows = session.decode(&batch, Some(&full))?;
        let verify_time = t.elapsed();
        self.stats.verify_time += verify_time;
        self.stats.rounds += 1;
        let longest = drafts.iter().map(|d| d.tokens.len()).max().unwrap_or(0);
        if longest > 0 {
            self.control.verify_step(longest + 1, verify_time);
            self.stats.drafting_rounds += 1;
        }

        // Accept, sequence by sequence, in the order the plain loop would emit.
        let mut next = Vec::with_capacity(entries.len());
        let mut stopped = false;
        let mut produced = 0;
        let mut offset = 0;
        for ((e, d), &start) in entries.iter().zip(&drafts).zip(&starts) {
            let own_rows = &rows[offset..offset + 1 + d.tokens.len()];
            offset += own_rows.len();
            let mut kept = 0;
            let mut outcome = None;
            if !stopped {
                produced += 1;
                let picker = &mut pickers[e.seq as usize];
                let mut ended = false;
                for (i, &drafted) in d.tokens.iter().enumerate() {
                    let verdict = judge(picker, session, own_rows[i], d, i, drafted);
                    match verdict {
                        Verdict::Accept => {
                            self.count_accept(d.kind);
                            produced += 1;
                            if !model.is_end_of_generation(drafted) {
                                kept += 1;
                            }
                            match emit(e.seq as usize, drafted) {
                                Emitted::Live => continue,
                                Emitted::Ended => ended = true,
                                Emitted::Stop => stopped = true,
                            }
                        }
                        Verdict::Replace(x) => outcome = Some(Next::Chosen(LlamaToken(x))),
                    }
                    break;
                }
                if let Some(kind) = d.kind {
                    self.control.acceptance_seen(kind, d.tokens.len(), kept);
                }
                let streak = self.on_streak(e.seq);
                if d.kind == Some(Kind::Lookup) {
                    self.control.lookup_seen(streak, d.tokens.len(), kept);
                }
                self.set_streak(
                    e.seq,
                    d.kind == Some(Kind::Lookup) && kept == d.tokens.len(),
                );
                if !ended && !stopped {
                    next.push((
                        e.seq,
                        outcome.unwrap_or(Next::Logits(own_rows[d.tokens.len()])),
                    ));
                }
            }
            // The cache keeps t and the drafts that were kept.
            session.truncate(e.seq, start + 1 + kept)?;
        }

        let elapsed = self.round_start.elapsed();
        self.round_start = Instant::now();
        let lead = drafts
            .iter()
            .filter_map(|d| d.kind)
            .max_by_key(|k| *k != Kind::Lookup);
        match lead {
            Some(kind) => self.control.round(kind, produced, elapsed),
            None => self.control.plain_step(produced, elapsed),
        }
        Ok(RoundOutcome { next, stopped })
    }

    /// Whether sequence `seq`'s last round kept a whole lookup draft.
    fn on_streak(&self, seq: i32) -> bool {
        self.lookup_streak
            .get(seq as usize)
            .copied()
            .unwrap_or(false)
    }

    fn set_streak(&mut self, seq: i32, on: bool) {
        let i = seq as usize;
        if self.lookup_streak.len() <= i {
            self.lookup_streak.resize(i + 1, false);
        }
        self.lookup_streak[i] = on;
    }

    fn count_accept(&mut self, kind: Option<Kind>) {
        self.stats.accepted_tokens += 1;
        match kind {
            Some(Kind::Lookup) => self.stats.lookup_accepted += 1,
            _ => self.stats.model_accepted += 1,
        }
    }
}
