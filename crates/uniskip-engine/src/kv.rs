//! Which blocks hold valid K/V for which positions, per sequence (docs/DESIGN.md section 3).
//!
//! A skipped block writes no K/V for the tokens it skipped. Before a batch runs under a
//! mask, the earliest position whose K/V is missing in some block that mask computes is
//! found; the cache is dropped from there and those positions are re-run under the new
//! mask. This module is the bookkeeping only: it never touches llama.cpp.

/// A run of consecutive positions processed under one mask.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    /// First position of the run.
    start: usize,
    /// One past the last position.
    end: usize,
    /// `computed[b]`: block `b` wrote K/V for these positions.
    computed: Vec<bool>,
}

/// The K/V ledger of one sequence: its tokens by position and the runs that cover them.
#[derive(Debug, Clone, Default)]
pub struct SeqLedger {
    tokens: Vec<i32>,
    runs: Vec<Run>,
}

impl SeqLedger {
    /// Number of positions held (the next token's position).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when the sequence holds nothing.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens held, by position.
    pub fn tokens(&self) -> &[i32] {
        &self.tokens
    }

    /// Records that `tokens` were appended, processed with the blocks in `computed`.
    pub fn record(&mut self, tokens: &[i32], computed: &[bool]) {
        if tokens.is_empty() {
            return;
        }
        let start = self.tokens.len();
        self.tokens.extend_from_slice(tokens);
        let end = self.tokens.len();
        match self.runs.last_mut() {
            Some(last) if last.computed == computed => last.end = end,
            _ => self.runs.push(Run {
                start,
                end,
                computed: computed.to_vec(),
            }),
        }
    }

    /// The earliest position whose K/V is missing in a block that `wanted` computes.
    pub fn first_missing(&self, wanted: &[bool]) -> Option<usize> {
        self.runs
            .iter()
            .find(|run| {
                wanted
                    .iter()
                    .zip(&run.computed)
                    .any(|(&want, &have)| want && !have)
            })
            .map(|run| run.start)
    }

    /// Forgets positions `p..` (after the cache dropped them), returning their tokens.
    pub fn truncate(&mut self, p: usize) -> Vec<i32> {
        let p = p.min(self.tokens.len());
        let dropped = self.tokens.split_off(p);
        self.runs.retain(|run| run.start < p);
        if let Some(last) = self.runs.last_mut() {
            last.end = last.end.min(p);
        }
        dropped
    }

    /// Masks in force over the positions, as `(start, end, computed)` runs.
    pub fn runs(&self) -> impl Iterator<Item = (usize, usize, &[bool])> {
        self.runs
            .iter()
            .map(|r| (r.start, r.end, r.computed.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: [bool; 4] = [true; 4];
    const SKIP_1_2: [bool; 4] = [true, false, false, true];
    const SKIP_2: [bool; 4] = [true, true, false, true];

    fn ledger(parts: &[(usize, &[bool])]) -> SeqLedger {
        let mut l = SeqLedger::default();
        let mut next = 0;
        for &(n, mask) in parts {
            let toks: Vec<i32> = (next..next + n as i32).collect();
            next += n as i32;
            l.record(&toks, mask);
        }
        l
    }

    #[test]
    fn a_fixed_mask_never_needs_repair() {
        let l = ledger(&[(5, &FULL), (7, &SKIP_1_2), (3, &SKIP_1_2)]);
        assert_eq!(l.first_missing(&SKIP_1_2), None);
    }

    #[test]
    fn full_depth_after_a_skipped_reply_repairs_from_the_reply_start() {
        let l = ledger(&[(5, &FULL), (7, &SKIP_1_2)]);
        assert_eq!(l.first_missing(&FULL), Some(5));
    }

    #[test]
    fn a_mask_that_computes_fewer_blocks_needs_no_repair() {
        // SkipDecode's decaying depth: each step computes a subset of the previous one.
        let l = ledger(&[(5, &FULL), (2, &SKIP_2)]);
        assert_eq!(l.first_missing(&SKIP_1_2), None);
    }

    #[test]
    fn the_earliest_missing_run_wins() {
        let l = ledger(&[(3, &FULL), (2, &SKIP_2), (2, &FULL), (2, &SKIP_1_2)]);
        assert_eq!(l.first_missing(&SKIP_2), Some(7));
        assert_eq!(l.first_missing(&FULL), Some(3));
    }

    #[test]
    fn runs_under_the_same_mask_merge() {
        let l = ledger(&[(3, &FULL), (2, &FULL)]);
        assert_eq!(l.runs().count(), 1);
        assert_eq!(l.len(), 5);
    }

    #[test]
    fn truncate_returns_the_dropped_tokens_and_cuts_runs() {
        let mut l = ledger(&[(3, &FULL), (4, &SKIP_1_2)]);
        assert_eq!(l.truncate(5), vec![5, 6]);
        assert_eq!(l.len(), 5);
        let runs: Vec<_> = l.runs().map(|(s, e, _)| (s, e)).collect();
        assert_eq!(runs, vec![(0, 3), (3, 5)]);
        l.truncate(3);
        assert_eq!(l.runs().count(), 1);
        assert_eq!(l.first_missing(&FULL), None);
    }
}
