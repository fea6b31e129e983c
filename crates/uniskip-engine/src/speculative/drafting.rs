//! Drafting: n-gram lookup, the model under the skip mask, or a second model propose the
//! tokens a round verifies, shortened to fit the batch and the context.

use std::time::Instant;

use llama_cpp_2::token::LlamaToken;

use super::rule::Dist;
use super::{Drafter, Entry, Kind, Picker, Speculator, VERIFY_ROWS_MAX, lookup};
use crate::error::Result;
use crate::sampling as picker;
use crate::session::{BatchToken, Session};
use uniskip_skip::Mask;

/// A sequence's drafted tokens and, when sampling, the distributions they were drawn from.
#[derive(Default)]
pub(super) struct Draft {
    pub(super) kind: Option<Kind>,
    pub(super) tokens: Vec<LlamaToken>,
    /// `q` per drafted token (sampling only; lookup drafts are point masses).
    pub(super) dists: Vec<Dist>,
}

impl Speculator<'_> {
    /// n-gram drafts for the sequences where lookup finds a match.
    pub(super) fn plan_lookup(
        &mut self,
        session: &Session<'_>,
        entries: &[Entry],
    ) -> Result<Vec<Draft>> {
        let mut drafts: Vec<Draft> = entries.iter().map(|_| Draft::default()).collect();
        if !self.config.drafter.looks_up() {
            return Ok(drafts);
        }
        for (e, d) in entries.iter().zip(&mut drafts) {
            let k = self.control.lookup_len(e.room, self.on_streak(e.seq));
            if k == 0 {
                continue;
            }
            let mut history = session.tokens(e.seq)?.to_vec();
            history.push(e.token.0);
            let found = lookup::draft(&history, k);
            if !found.is_empty() {
                d.kind = Some(Kind::Lookup);
                d.tokens = found.into_iter().map(LlamaToken).collect();
            }
        }
        Ok(drafts)
    }

    /// Shortens drafts until the verification batch fits the batch size, the context, and
    /// (while plain steps have fewer rows) [`VERIFY_ROWS_MAX`].
    pub(super) fn fit(&self, session: &Session<'_>, entries: &[Entry], drafts: &mut [Draft]) {
        let free = session.n_ctx().saturating_sub(session.n_cached());
        let mut limit = session.n_batch().min(free);
        if entries.len() <= VERIFY_ROWS_MAX {
            limit = limit.min(VERIFY_ROWS_MAX);
        }
        loop {
            let total: usize = entries.len() + drafts.iter().map(|d| d.tokens.len()).sum::<usize>();
            if total <= limit {
                return;
            }
            let Some(longest) = drafts.iter_mut().max_by_key(|d| d.tokens.len()) else {
                return;
            };
            if longest.tokens.is_empty() {
                return;
            }
            longest.tokens.pop();
            longest.dists.truncate(longest.tokens.len());
            if longest.tokens.is_empty() {
                longest.kind = None;
            }
        }
    }

    /// Drafts with the model under the mask (or the draft model) for the sequences lookup
    /// left without a draft: one decode per drafted position, all those sequences together.
    pub(super) fn draft_with_model(
        &mut self,
        session: &mut Session<'_>,
        entries: &[Entry],
        draft_mask: &Mask,
        pickers: &mut [Picker<'_>],
        drafts: &mut [Draft],
        starts: &[usize],
    ) -> Result<()> {
        let kind = match self.config.drafter {
            Drafter::Mask | Drafter::MaskLookup => Kind::Mask,
            Drafter::Model => Kind::Model,
            Drafter::Lookup => return Ok(()),
        };
        let room = session
            .n_ctx()
            .saturating_sub(session.n_cached() + entries.len());
        let mut want: Vec<usize> = entries
            .iter()
            .zip(drafts.iter())
            .map(|(e, d)| {
                if d.kind.is_some() {
                    0
                } else {
                    self.control.draft_len(kind, e.room)
                }
            })
            .collect();
        // Drafting under the mask borrows cells of the target's cache.
        while want.iter().sum::<usize>() > room.min(session.n_batch()) {
            let i = (0..want.len()).max_by_key(|&i| want[i]).expect("entries");
            want[i] -= 1;
        }
        let longest = want.iter().copied().max().unwrap_or(0);
        if longest == 0 {
            return Ok(());
        }
        let mut shapes: Vec<_> = entries
            .iter()
            .map(|e| pickers[e.seq as usize].fork_shape())
            .collect();
        let mut rngs: Vec<_> = entries
            .iter()
            .map(|e| pickers[e.seq as usize].rng().cloned())
            .collect();
        if kind == Kind::Model {
            self.sync_draft_session(session, entries, &want)?;
        }
        let mut current: Vec<LlamaToken> = entries.iter().map(|e| e.token).collect();
        for step in 0..longest {
            let who: Vec<usize> = (0..entries.len()).filter(|&i| want[i] > step).collect();
            let batch: Vec<BatchToken> = who
                .iter()
                .map(|&i| BatchToken {
                    seq: entries[i].seq,
                    token: current[i],
                    logits: true,
                })
                .collect();
            let t = Instant::now();
            let banned = &self.banned;
            let mut choose = |drafter: &Session<'_>, rows: &[usize]| {
                for (&i, &row) in who.iter().zip(rows) {
                    let d = &mut drafts[i];
                    let token = match (&mut shapes[i], &mut rngs[i]) {
                        (Some(shape), Some(rng)) => {
                            let q = picker::shaped(shape, drafter, row);
                            let token = LlamaToken(q.sample(rng.uniform()));
                            shape.accept(token);
                            d.dists.push(q);
                            token
                        }
                        _ => picker::argmax(drafter, row, banned),
                    };
                    d.kind = Some(kind);
                    d.tokens.push(token);
                    current[i] = token;
                }
            };
            if kind == Kind::Model {
                let drafter = self.draft_session.as_mut().expect("made with the drafter");
                let rows = drafter.decode(&batch, self.config.draft_mask)?;
                choose(drafter, &rows);
            } else {
                let rows = session.decode(&batch, Some(draft_mask))?;
                choose(session, &rows);
            }
            let spent = t.elapsed();
            self.control.draft_step(kind, spent);
            self.stats.draft_time += spent;
            self.stats.draft_decodes += 1;
        }
        if kind == Kind::Mask {
            // Drafted cells were written under the mask: drop them, verification rewrites
            // these positions at full depth.
            for (e, &start) in entries.iter().zip(starts) {
                session.truncate(e.seq, start)?;
            }
        }
        Ok(())
    }

    /// Brings the draft model's cache level with each drafting sequence's history up to,
    /// not including, its token `t`, which the first draft decode then adds.
    fn sync_draft_session(
        &mut self,
        session: &Session<'_>,
        entries: &[Entry],
        want: &[usize],
    ) -> Result<()> {
        let draft = self.draft_session.as_mut().expect("made with the drafter");
        for (e, _) in entries.iter().zip(want).filter(|(_, w)| **w > 0) {
            let history = session.tokens(e.seq)?;
            let have = draft.tokens(e.seq)?;
            let common = have.iter().zip(history).take_while(|(a, b)| a == b).count();
            draft.truncate(e.seq, common)?;
            let rest: Vec<LlamaToken> = history[common..].iter().map(|&t| LlamaToken(t)).collect();
            draft.prefill(e.seq, &rest, None)?;
        }
        Ok(())
    }
}
