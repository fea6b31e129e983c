//! How long to draft, and whether to draft at all, from what drafting has measured so far.
//! Pure bookkeeping on times and counts: no llama.cpp here.
//!
//! Expected speedup of drafting k tokens at acceptance a, with draft cost c per token and
//! verification cost V(k+1) (both relative to one plain full-depth step):
//! (1 - a^(k+1)) / ((1 - a) (k c + V(k+1))). The length maximises that estimate; the
//! measured rate decides whether a drafter stays on: when its rounds produce tokens more
//! slowly than plain steps do, it pauses, and probes again after a pause that doubles each
//! time it fails.

use std::time::Duration;

/// The drafter kinds a round can use (the model drafter shares the mask's bookkeeping
/// slot shape but has its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// n-gram lookup: free to draft.
    Lookup,
    /// The model under the skip mask.
    Mask,
    /// A second, smaller model.
    Model,
}

impl Kind {
    fn index(self) -> usize {
        self as usize
    }
}

/// Weight of the past in the running sums (per round): about the last 16 rounds count.
const DECAY: f64 = 0.94;
/// Rounds a drafter runs before its measured rate may switch it off.
const MIN_ROUNDS: u32 = 6;
/// First pause after a drafter is found slower than plain steps (in steps).
const FIRST_PAUSE: usize = 32;
/// Longest pause.
const MAX_PAUSE: usize = 1024;
/// A plain step is taken at least this often, so the plain rate follows the machine.
const PLAIN_REFRESH: usize = 64;

/// Decayed sums of produced tokens and time.
#[derive(Debug, Clone, Copy, Default)]
struct Rate {
    tokens: f64,
    secs: f64,
}

impl Rate {
    fn add(&mut self, tokens: f64, time: Duration) {
        self.tokens = self.tokens * DECAY + tokens;
        self.secs = self.secs * DECAY + time.as_secs_f64();
    }
    fn per_s(&self) -> Option<f64> {
        (self.secs > 0.0 && self.tokens > 0.0).then(|| self.tokens / self.secs)
    }
}

/// What one drafter has measured.
#[derive(Debug, Clone)]
struct DrafterState {
    /// Decayed accepted drafts and refusals: acceptance = accepted / (accepted + refused).
    accepted: f64,
    refused: f64,
    /// Tokens per second of this drafter's rounds.
    rate: Rate,
    /// Seconds per draft decode (mask and model drafters), decayed mean.
    draft_secs: Option<f64>,
    rounds_since_probe: u32,
    /// Paused until this step.
    paused_until: usize,
    pause: usize,
}

impl DrafterState {
    fn new(prior_acceptance: f64) -> Self {
        DrafterState {
            accepted: prior_acceptance * 2.0,
            refused: (1.0 - prior_acceptance) * 2.0,
            rate: Rate::default(),
            draft_secs: None,
            rounds_since_probe: 0,
            paused_until: 0,
            pause: FIRST_PAUSE,
        }
    }
    fn acceptance(&self) -> f64 {
        self.accepted / (self.accepted + self.refused)
    }
}

/// The running estimates behind every drafting decision of one generation.
#[derive(Debug, Clone)]
pub struct Controller {
    draft_max: usize,
    drafters: [DrafterState; 3],
    plain: Rate,
    /// Seconds of a plain step (one token per sequence), decayed mean.
    plain_secs: Option<f64>,
    /// Verification seconds per batch of n tokens per sequence (index n), decayed means.
    verify_secs: Vec<Option<f64>>,
    steps: usize,
    last_plain: usize,
    pauses: u64,
}

fn blend(old: Option<f64>, new: f64) -> Option<f64> {
    Some(old.map_or(new, |o| o * 0.8 + new * 0.2))
}

impl Controller {
    /// A controller that drafts at most `draft_max` tokens per round.
    pub fn new(draft_max: usize) -> Self {
        Controller {
            draft_max: draft_max.max(1),
            drafters: [
                DrafterState::new(0.6),
                DrafterState::new(0.5),
                DrafterState::new(0.6),
            ],
            plain: Rate::default(),
            plain_secs: None,
            verify_secs: vec![None; draft_max.max(1) + 2],
            steps: 0,
            last_plain: 0,
            pauses: 0,
        }
    }

    /// The measured acceptance of `kind` (a prior until it has drafted).
    pub fn acceptance(&self, kind: Kind) -> f64 {
        self.drafters[kind.index()].acceptance()
    }

    /// Whether `kind` is paused at the current step.
    pub fn is_paused(&self, kind: Kind) -> bool {
        self.steps < self.drafters[kind.index()].paused_until
    }

    /// How many times a drafter was paused for being slower than plain steps.
    pub fn pauses(&self) -> u64 {
        self.pauses
    }

    /// Measured tokens/s of `kind`'s rounds over that of plain steps, when both are known.
    pub fn measured_speedup(&self, kind: Kind) -> Option<f64> {
        let d = &self.drafters[kind.index()];
        Some(d.rate.per_s()? / self.plain.per_s()?)
    }

    /// Whether the next round should be a plain step regardless of drafts: the first
    /// steps measure the plain rate, and it is refreshed now and then.
    pub fn wants_plain(&self) -> bool {
        self.plain_secs.is_none() || self.steps >= self.last_plain + PLAIN_REFRESH
    }

    /// Verification cost of n tokens per sequence relative to a plain step: measured when
    /// seen, else a prior shaped like measurements on a 2-core CPU (two tokens cost one,
    /// each further token about a quarter).
    fn verify_cost(&self, n: usize) -> f64 {
        let prior = (0.5 + 0.25 * n as f64).max(1.0);
        match (self.verify_secs.get(n).copied().flatten(), self.plain_secs) {
            (Some(v), Some(p)) => (v / p).max(0.5),
            _ => prior,
        }
    }

    fn draft_cost(&self, kind: Kind) -> f64 {
        match kind {
            Kind::Lookup => 0.0,
            _ => match (self.drafters[kind.index()].draft_secs, self.plain_secs) {
                (Some(d), Some(p)) => d / p,
                _ => 0.6,
            },
        }
    }

    /// The estimated speedup of drafting `k` tokens with `kind`.
    pub fn expected_speedup(&self, kind: Kind, k: usize) -> f64 {
        let a = self.acceptance(kind).clamp(0.01, 0.99);
        let produced = (1.0 - a.powi(k as i32 + 1)) / (1.0 - a);
        produced / (k as f64 * self.draft_cost(kind) + self.verify_cost(k + 1))
    }

    /// How many tokens `kind` should draft now (0: take a plain step), at most `room`.
    pub fn draft_len(&self, kind: Kind, room: usize) -> usize {
        if self.wants_plain() || self.is_paused(kind) {
            return 0;
        }
        let max = self.draft_max.min(room);
        (1..=max)
            .max_by(|&x, &y| {
                self.expected_speedup(kind, x)
                    .total_cmp(&self.expected_speedup(kind, y))
            })
            .unwrap_or(0)
    }

    /// Records a plain step (one token per sequence, `tokens` in all) that took `time`.
    pub fn plain_step(&mut self, tokens: usize, time: Duration) {
        self.steps += 1;
        self.last_plain = self.steps;
        self.plain.add(tokens as f64, time);
        self.plain_secs = blend(self.plain_secs, time.as_secs_f64());
    }

    /// Records one draft decode of `kind` that took `time`.
    pub fn draft_step(&mut self, kind: Kind, time: Duration) {
        let d = &mut self.drafters[kind.index()];
        d.draft_secs = blend(d.draft_secs, time.as_secs_f64());
    }

    /// Records a verification of `n` tokens per sequence that took `time`.
    pub fn verify_step(&mut self, n: usize, time: Duration) {
        if let Some(slot) = self.verify_secs.get_mut(n) {
            *slot = blend(*slot, time.as_secs_f64());
        }
    }

    /// Records what verification made of `drafted` tokens of `kind` for one sequence.
    pub fn acceptance_seen(&mut self, kind: Kind, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        let d = &mut self.drafters[kind.index()];
        d.accepted = d.accepted * DECAY + accepted as f64;
        d.refused = d.refused * DECAY + f64::from(u8::from(accepted < drafted));
    }

    /// Records a drafting round led by `kind`: `tokens` produced in all, in `time`. May
    /// pause the drafter.
    pub fn round(&mut self, kind: Kind, tokens: usize, time: Duration) {
        self.steps += 1;
        let plain = self.plain.per_s();
        let d = &mut self.drafters[kind.index()];
        d.rate.add(tokens as f64, time);
        d.rounds_since_probe += 1;
        if d.rounds_since_probe < MIN_ROUNDS {
            return;
        }
        let (Some(rate), Some(plain)) = (d.rate.per_s(), plain) else {
            return;
        };
        if rate < plain {
            d.paused_until = self.steps + d.pause;
            d.pause = (d.pause * 2).min(MAX_PAUSE);
            d.rounds_since_probe = 0;
            d.rate = Rate::default();
            self.pauses += 1;
        } else if d.rounds_since_probe >= 2 * MIN_ROUNDS {
            d.pause = FIRST_PAUSE;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_first_step_is_plain_to_measure_the_baseline() {
        let c = Controller::new(8);
        assert!(c.wants_plain());
        assert_eq!(c.draft_len(Kind::Lookup, 8), 0);
    }

    #[test]
    fn high_acceptance_drafts_longer_than_low() {
        let mut c = Controller::new(8);
        c.plain_step(1, 10 * MS);
        for _ in 0..20 {
            c.acceptance_seen(Kind::Lookup, 4, 4);
            c.round(Kind::Lookup, 5, 20 * MS);
        }
        let long = c.draft_len(Kind::Lookup, 8);
        let mut c = Controller::new(8);
        c.plain_step(1, 10 * MS);
        for _ in 0..20 {
            c.acceptance_seen(Kind::Lookup, 4, 0);
            c.round(Kind::Lookup, 1, 15 * MS);
        }
        let short = c.draft_len(Kind::Lookup, 8);
        assert!(long > short, "{long} vs {short}");
    }

    #[test]
    fn a_drafter_slower_than_plain_steps_pauses_then_probes_again() {
        let mut c = Controller::new(4);
        c.plain_step(1, 10 * MS);
        // Each round: 1 token in 20 ms, while a plain step gives 1 in 10 ms.
        for _ in 0..MIN_ROUNDS {
            assert!(!c.is_paused(Kind::Mask));
            c.acceptance_seen(Kind::Mask, 3, 0);
            c.round(Kind::Mask, 1, 20 * MS);
        }
        assert!(c.is_paused(Kind::Mask));
        assert_eq!(c.draft_len(Kind::Mask, 4), 0);
        assert_eq!(c.pauses(), 1);
        for _ in 0..FIRST_PAUSE {
            c.plain_step(1, 10 * MS);
        }
        assert!(!c.is_paused(Kind::Mask), "probes again after the pause");
    }

    #[test]
    fn a_drafter_faster_than_plain_steps_stays_on() {
        let mut c = Controller::new(4);
        c.plain_step(1, 10 * MS);
        for _ in 0..50 {
            c.acceptance_seen(Kind::Lookup, 4, 3);
            c.round(Kind::Lookup, 4, 15 * MS);
        }
        assert!(!c.is_paused(Kind::Lookup));
        assert!(c.measured_speedup(Kind::Lookup).unwrap() > 2.0);
    }

    #[test]
    fn the_plain_rate_is_refreshed_now_and_then() {
        let mut c = Controller::new(4);
        c.plain_step(1, 10 * MS);
        for _ in 0..PLAIN_REFRESH {
            assert!(!c.wants_plain());
            c.acceptance_seen(Kind::Lookup, 2, 2);
            c.round(Kind::Lookup, 3, 12 * MS);
        }
        assert!(c.wants_plain());
    }
}
