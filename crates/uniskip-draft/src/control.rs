//! How long to draft, and whether to draft at all, from what drafting has measured so far.
//! Pure bookkeeping on times and counts: no llama.cpp here.
//!
//! Expected speedup of drafting k tokens at acceptance a, with draft cost c per token and
//! verification cost V(k+1) (both relative to one plain full-depth step):
//! (1 - a^(k+1)) / ((1 - a) (k c + V(k+1))). The length maximises that estimate; the
//! measured rate decides whether a drafter stays on: when its rounds produce tokens more
//! slowly than plain steps do, it pauses, and probes again after a pause that doubles each
//! time it fails. The cost model stops a drafter earlier: when even perfect acceptance
//! could not pay for its drafts and verifications at the measured costs (after one round
//! when the gap is wide, else after two; then for at least 256 steps, since costs follow
//! the machine, not the text), or, after two rounds, when the measured acceptance gives a
//! clear loss.
//!
//! Lookup drafts are judged in two states: the first draft of a match, and a draft that
//! continues a match whose previous draft was kept whole (a reply copying its input). Each
//! has its own measured acceptance, so a copy drafts long while new matches draft short.
//!
//! Costs are properties of the machine and the model, not of the text: a controller can
//! start from the costs an earlier generation measured ([`DraftCosts`], relative to a
//! plain step). A drafter those costs already rule out then never drafts before its
//! first long pause is over, instead of paying for the rounds that would find it out.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::estimates::{Acceptance, Rate, Timing};

/// Costs measured by earlier generations on this machine, each relative to one plain
/// full-depth step (one token per sequence) of the same model, thread count and batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DraftCosts {
    /// Verifying n tokens per sequence, at index n (0 and 1 unused).
    pub verify: Vec<Option<f64>>,
    /// One draft decode under a mask that keeps k blocks, by k.
    pub mask: BTreeMap<usize, f64>,
    /// One draft decode of the draft model.
    pub model: Option<f64>,
    /// What the first plain step after a drafting round costs beyond a plain step.
    pub switch: Option<f64>,
}

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

/// Rounds a drafter runs before its measured rate may switch it off.
const MIN_ROUNDS: u32 = 6;
/// Rounds before the cost model may switch a drafter off (the first round of a batch size
/// also builds its graph, so one round alone overstates the cost).
const EARLY_ROUNDS: u32 = 2;
/// Below this estimated speedup (measured acceptance and costs) a drafter stops early.
const EARLY_FLOOR: f64 = 0.9;
/// A ceiling this far below 1 stops a drafter after its first round: even a first
/// round's overstated costs cannot hide a gap this wide.
const CLEAR_CEILING: f64 = 0.8;
/// Shortest pause of a drafter that cannot win at the measured costs: costs change with
/// the machine's load, not with the text, so it probes again rarely.
const HOPELESS_PAUSE: usize = 256;
/// First pause after a drafter is found slower than plain steps (in steps).
const FIRST_PAUSE: usize = 32;
/// Longest pause.
const MAX_PAUSE: usize = 1024;
/// A plain step is taken at least this often, so the plain rate follows the machine.
const PLAIN_REFRESH: usize = 64;
/// Runs of a decode shape (a verification size, a drafter's draft step, the plain step, the
/// plain step right after a round) whose time is not taken as its cost: the first builds the
/// shape's graph, and a GPU backend runs a new graph once directly and captures it on the
/// second. Costs measured on them would be one-time costs charged for good.
const COLD_RUNS: u32 = 2;
/// Warm timings a shape needs before its cost replaces the one an earlier generation kept.
const TIMINGS_TO_KEEP: usize = 3;

/// Prior acceptance of a lookup draft that continues a match whose previous draft was kept
/// whole. A reply that is copying its input goes on copying, so on copy-heavy text such
/// drafts are kept far more often than the first draft of a new match, and the two are
/// measured apart; the prior stays modest, as on chat text one kept token is no sign of
/// a copy (a prior of 0.8 drafted 3 tokens after each lucky one there, measured 0.90-0.94x
/// of full depth against 0.98-0.99 with 0.6).
const STREAK_PRIOR: f64 = 0.6;
/// Prior acceptance of the first lookup draft of a match.
const FRESH_PRIOR: f64 = 0.5;

/// What one drafter has measured.
#[derive(Debug, Clone)]
struct DrafterState {
    /// Over all its rounds: what the verdicts on the drafter use.
    overall: Acceptance,
    /// Lookup only, by whether the sequence's previous round kept a whole lookup draft
    /// (index 1) or not (0): what the draft length of a lookup round uses.
    by_streak: [Acceptance; 2],
    /// Tokens per second of this drafter's rounds.
    rate: Rate,
    /// Seconds per draft decode (mask and model drafters), its latest timings.
    draft_secs: Timing,
    rounds_since_probe: u32,
    /// Paused until this step.
    paused_until: usize,
    pause: usize,
}

impl DrafterState {
    fn new(prior_acceptance: f64) -> Self {
        DrafterState {
            overall: Acceptance::prior(prior_acceptance),
            by_streak: [
                Acceptance::prior(FRESH_PRIOR),
                Acceptance::prior(STREAK_PRIOR),
            ],
            rate: Rate::default(),
            draft_secs: Timing::default(),
            rounds_since_probe: 0,
            paused_until: 0,
            pause: FIRST_PAUSE,
        }
    }
    fn acceptance(&self) -> f64 {
        self.overall.rate()
    }
}

/// The running estimates behind every drafting decision of one generation.
#[derive(Debug, Clone)]
pub struct Controller {
    draft_max: usize,
    drafters: [DrafterState; 3],
    plain: Rate,
    /// Seconds of a plain step (one token per sequence), its latest timings.
    plain_secs: Timing,
    /// Extra seconds of the first plain step after a drafting round over a plain step
    /// (llama.cpp rebuilds its graph when the batch shape or the mask changes back),
    /// its latest timings: a cost of drafting, not of plain steps.
    switch_secs: Timing,
    /// The drafter that led the previous step, when it was a drafting round.
    after_round: Option<Kind>,
    /// Verification seconds per batch of n tokens per sequence (index n), latest timings.
    verify_secs: Vec<Timing>,
    /// Costs from earlier generations, relative to a plain step (used until measured).
    prior: Prior,
    steps: usize,
    last_plain: usize,
    pauses: u64,
    /// Runs seen per shape, to leave out the cold ones ([`COLD_RUNS`]).
    seen: Seen,
    /// Whether the round under way ran a cold shape: its time says nothing of the drafter.
    cold_round: bool,
    /// Whether `plain_secs` is still a cold step's time, kept only so drafting can start
    /// (the first warm plain step replaces it; costs are not handed back relative to it).
    plain_provisional: bool,
}

/// How many times each decode shape ran in this generation.
#[derive(Debug, Clone, Default)]
struct Seen {
    plain: u32,
    after_round: u32,
    verify: Vec<u32>,
    draft: [u32; 3],
}

impl Seen {
    /// Counts one run; true while the shape is still cold.
    fn cold(count: &mut u32) -> bool {
        *count += 1;
        *count <= COLD_RUNS
    }
}

/// An earlier generation's costs as the controller uses them.
#[derive(Debug, Clone, Default)]
struct Prior {
    verify: Vec<Option<f64>>,
    /// Per kind: one draft decode.
    draft: [Option<f64>; 3],
    switch: Option<f64>,
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
            plain_secs: Timing::default(),
            switch_secs: Timing::default(),
            after_round: None,
            verify_secs: vec![Timing::default(); draft_max.max(1) + 2],
            prior: Prior::default(),
            steps: 0,
            last_plain: 0,
            pauses: 0,
            seen: Seen {
                verify: vec![0; draft_max.max(1) + 2],
                ..Seen::default()
            },
            cold_round: false,
            plain_provisional: false,
        }
    }

    /// Starts from `costs`, an earlier generation's, with the mask drafter drafting under
    /// a mask that keeps `mask_blocks` blocks. Every drafter of `kinds` (those the
    /// generation drafts with) that those costs rule out (its ceiling is below 1) is paused
    /// for [`HOPELESS_PAUSE`] steps at once.
    pub fn seed(&mut self, costs: &DraftCosts, mask_blocks: usize, kinds: &[Kind]) {
        self.prior = Prior {
            verify: costs.verify.clone(),
            draft: [
                Some(0.0),
                costs.mask.get(&mask_blocks).copied(),
                costs.model,
            ],
            switch: costs.switch,
        };
        for &kind in kinds {
            if self.costs_known(kind) && self.ceiling(kind) < 1.0 {
                self.pause_for_at_least(kind, HOPELESS_PAUSE);
            }
        }
    }

    /// The mask drafter now drafts under another mask, keeping `mask_blocks` blocks:
    /// what it measured no longer holds; `prior` is an earlier generation's draft cost
    /// under such a mask, if any.
    pub fn mask_changed(&mut self, prior: Option<f64>) {
        self.drafters[Kind::Mask.index()] = DrafterState::new(0.5);
        self.prior.draft[Kind::Mask.index()] = prior;
        self.seen.draft[Kind::Mask.index()] = 0;
        if self.costs_known(Kind::Mask) && self.ceiling(Kind::Mask) < 1.0 {
            self.pause_for_at_least(Kind::Mask, HOPELESS_PAUSE);
        }
    }

    /// The costs known now, relative to a plain step: `earlier` (what the controller was
    /// seeded with) updated by what this generation measured, the mask drafter's under a
    /// mask of `mask_blocks` blocks.
    pub fn costs(&self, earlier: &DraftCosts, mask_blocks: usize) -> DraftCosts {
        let mut costs = earlier.clone();
        let Some(p) = self
            .plain_secs
            .get()
            .filter(|&p| p > 0.0 && !self.plain_provisional)
        else {
            return costs;
        };
        // A cost measured on a sample or two replaces only a cost nobody kept yet.
        let hand_back = |slot: &mut Option<f64>, measured: &Timing| {
            if let Some(v) = measured.get()
                && (measured.samples() >= TIMINGS_TO_KEEP || slot.is_none())
            {
                *slot = Some(v / p);
            }
        };
        if costs.verify.len() < self.verify_secs.len() {
            costs.verify.resize(self.verify_secs.len(), None);
        }
        for (slot, measured) in costs.verify.iter_mut().zip(&self.verify_secs) {
            hand_back(slot, measured);
        }
        let mut mask = costs.mask.get(&mask_blocks).copied();
        hand_back(&mut mask, &self.drafters[Kind::Mask.index()].draft_secs);
        if let Some(m) = mask {
            costs.mask.insert(mask_blocks, m);
        }
        hand_back(
            &mut costs.model,
            &self.drafters[Kind::Model.index()].draft_secs,
        );
        hand_back(&mut costs.switch, &self.switch_secs);
        costs
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

    /// Tokens per second of plain full-depth steps (decayed), once measured.
    pub fn plain_tokens_per_s(&self) -> Option<f64> {
        self.plain.per_s()
    }

    /// Whether the next round should be a plain step regardless of drafts: the first
    /// steps measure the plain rate, and it is refreshed now and then.
    pub fn wants_plain(&self) -> bool {
        self.plain_secs.get().is_none() || self.steps >= self.last_plain + PLAIN_REFRESH
    }

    /// Verification cost of n tokens per sequence relative to a plain step: measured when
    /// seen, else an earlier generation's; else a line from the plain step (n = 1 costs 1)
    /// through the nearest size measured (now, else earlier); else a guess shaped like
    /// measurements on a 2-core CPU (two tokens cost one, each further token a quarter).
    fn verify_cost(&self, n: usize) -> f64 {
        let measured = |m: usize| Some(self.verify_secs.get(m)?.get()? / self.plain_secs.get()?);
        let earlier = |m: usize| self.prior.verify.get(m).copied().flatten();
        let sources: [&dyn Fn(usize) -> Option<f64>; 2] = [&measured, &earlier];
        if let Some(v) = sources.iter().find_map(|cost| cost(n)) {
            return v.max(0.5);
        }
        let sizes = 2..self.verify_secs.len().max(self.prior.verify.len());
        for cost in sources {
            let nearest = sizes
                .clone()
                .filter_map(|m| Some((m, cost(m)?)))
                .min_by_key(|&(m, _)| m.abs_diff(n));
            if let Some((m, v)) = nearest {
                return (1.0 + (v - 1.0) * (n - 1) as f64 / (m - 1) as f64).max(0.5);
            }
        }
        (0.5 + 0.25 * n as f64).max(1.0)
    }

    /// Whether `kind`'s costs are known, measured now or earlier: a verification and (for
    /// a drafter that decodes) a draft decode, relative to a plain step.
    fn costs_known(&self, kind: Kind) -> bool {
        let measured = self.plain_secs.get().is_some();
        let verify = (measured && self.verify_secs.iter().skip(2).any(|t| t.samples() > 0))
            || self.prior.verify.iter().skip(2).any(Option::is_some);
        let draft = kind == Kind::Lookup
            || (measured && self.drafters[kind.index()].draft_secs.samples() > 0)
            || self.prior.draft[kind.index()].is_some();
        verify && draft
    }

    /// The best speedup `kind` could give with every draft accepted, at the measured costs:
    /// below 1, drafting with it loses time whatever its acceptance (a mask that keeps most
    /// blocks on a machine where verifying a batch costs nearly its length in plain steps).
    pub fn ceiling(&self, kind: Kind) -> f64 {
        (1..=self.draft_max)
            .map(|k| {
                (k + 1) as f64
                    / (k as f64 * self.draft_cost(kind)
                        + self.verify_cost(k + 1)
                        + self.switch_cost())
            })
            .fold(0.0, f64::max)
    }

    /// The best estimated speedup of `kind` over the draft lengths allowed.
    fn best_expected(&self, kind: Kind) -> f64 {
        (1..=self.draft_max)
            .map(|k| self.expected_speedup(kind, k))
            .fold(0.0, f64::max)
    }

    fn draft_cost(&self, kind: Kind) -> f64 {
        match kind {
            Kind::Lookup => 0.0,
            _ => match (
                self.drafters[kind.index()].draft_secs.get(),
                self.plain_secs.get(),
            ) {
                (Some(d), Some(p)) => d / p,
                _ => self.prior.draft[kind.index()].unwrap_or(0.6),
            },
        }
    }

    /// The cost of returning to plain steps after a drafting round, relative to a plain
    /// step (0 until measured).
    fn switch_cost(&self) -> f64 {
        match (self.switch_secs.get(), self.plain_secs.get()) {
            (Some(w), Some(p)) if p > 0.0 => w / p,
            _ => self.prior.switch.unwrap_or(0.0),
        }
    }

    /// The estimated speedup of drafting `k` tokens with `kind`.
    pub fn expected_speedup(&self, kind: Kind, k: usize) -> f64 {
        self.expected_speedup_at(kind, k, self.acceptance(kind))
    }

    /// The estimated speedup of drafting `k` tokens with `kind` at acceptance `a`.
    fn expected_speedup_at(&self, kind: Kind, k: usize, a: f64) -> f64 {
        let a = a.clamp(0.01, 0.99);
        let produced = (1.0 - a.powi(k as i32 + 1)) / (1.0 - a);
        produced / (k as f64 * self.draft_cost(kind) + self.verify_cost(k + 1) + self.switch_cost())
    }

    /// How many tokens `kind` should draft now (0: take a plain step), at most `room`.
    pub fn draft_len(&self, kind: Kind, room: usize) -> usize {
        self.best_len(kind, room, self.acceptance(kind))
    }

    /// How many tokens lookup should draft now for a sequence, at most `room`: `streak`
    /// when its previous round kept a whole lookup draft (the match goes on), with the
    /// acceptance measured in that state.
    pub fn lookup_len(&self, room: usize, streak: bool) -> usize {
        let a = self.drafters[Kind::Lookup.index()].by_streak[usize::from(streak)].rate();
        self.best_len(Kind::Lookup, room, a)
    }

    fn best_len(&self, kind: Kind, room: usize, a: f64) -> usize {
        if self.wants_plain() || self.is_paused(kind) {
            return 0;
        }
        let max = self.draft_max.min(room);
        (1..=max)
            .max_by(|&x, &y| {
                self.expected_speedup_at(kind, x, a)
                    .total_cmp(&self.expected_speedup_at(kind, y, a))
            })
            .unwrap_or(0)
    }

    /// Records a plain step (one token per sequence, `tokens` in all) that took `time`.
    pub fn plain_step(&mut self, tokens: usize, time: Duration) {
        let secs = time.as_secs_f64();
        if let (Some(kind), Some(p)) = (self.after_round.take(), self.plain_secs.get()) {
            // The first plain step after a drafting round pays for switching back: its
            // surplus is the round's cost, and the plain estimates keep a plain step's.
            // (Not while that switch is still cold: its surplus is a one-time cost.)
            if !Seen::cold(&mut self.seen.after_round) {
                let surplus = (secs - p).max(0.0);
                self.switch_secs.add(surplus);
                self.drafters[kind.index()].rate.secs += surplus;
            }
            self.steps += 1;
            self.last_plain = self.steps;
            // Against a cold baseline this step's share is unknown: no plain rate from it
            // (so a plain rate, and `plain_tokens_per_s`, means a warm baseline).
            if !self.plain_provisional {
                self.plain
                    .add(tokens as f64, Duration::from_secs_f64(p.min(secs)));
            }
            return;
        }
        self.steps += 1;
        self.last_plain = self.steps;
        if Seen::cold(&mut self.seen.plain) {
            // Kept for now so drafting need not wait; the first warm step replaces it.
            if self.plain_secs.samples() == 0 || self.plain_provisional {
                self.plain_secs.clear();
                self.plain_secs.add(secs);
                self.plain_provisional = true;
            }
            return;
        }
        self.plain.add(tokens as f64, time);
        if std::mem::take(&mut self.plain_provisional) {
            self.plain_secs.clear();
        }
        self.plain_secs.add(secs);
    }

    /// Records one draft decode of `kind` that took `time`.
    pub fn draft_step(&mut self, kind: Kind, time: Duration) {
        if Seen::cold(&mut self.seen.draft[kind.index()]) {
            self.cold_round = true;
            return;
        }
        let d = &mut self.drafters[kind.index()];
        d.draft_secs.add(time.as_secs_f64());
    }

    /// Records a verification of `n` tokens per sequence that took `time`.
    pub fn verify_step(&mut self, n: usize, time: Duration) {
        if let Some(count) = self.seen.verify.get_mut(n)
            && Seen::cold(count)
        {
            self.cold_round = true;
            return;
        }
        if let Some(slot) = self.verify_secs.get_mut(n) {
            slot.add(time.as_secs_f64());
        }
    }

    /// Records what verification made of `drafted` tokens of `kind` for one sequence.
    pub fn acceptance_seen(&mut self, kind: Kind, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        self.drafters[kind.index()].overall.seen(drafted, accepted);
    }

    /// Records what verification made of a lookup draft of `drafted` tokens drafted in
    /// state `streak` (see [`Controller::lookup_len`]), besides [`Self::acceptance_seen`].
    pub fn lookup_seen(&mut self, streak: bool, drafted: usize, accepted: usize) {
        if drafted > 0 {
            self.drafters[Kind::Lookup.index()].by_streak[usize::from(streak)]
                .seen(drafted, accepted);
        }
    }

    /// Records a drafting round led by `kind`: `tokens` produced in all, in `time`. May
    /// pause the drafter.
    pub fn round(&mut self, kind: Kind, tokens: usize, time: Duration) {
        self.steps += 1;
        self.after_round = Some(kind);
        let plain = self.plain.per_s();
        let d = &mut self.drafters[kind.index()];
        // A round that ran a cold shape measured a one-time cost, not the drafter: its time
        // stays out of the rate. What it says of acceptance holds all the same, and the cost
        // model's verdicts below use costs that never include a cold run, so the round
        // counts towards them: a drafter whose drafts are refused stops after its first two
        // rounds, not after two more warm ones (a short reply has few rounds to lose).
        if !std::mem::take(&mut self.cold_round) {
            d.rate.add(tokens as f64, time);
        }
        d.rounds_since_probe += 1;
        let rounds = d.rounds_since_probe;
        // Early verdicts from the cost model, before the measured rate is reliable: a
        // drafter that cannot win even with every draft accepted, or whose measured
        // acceptance gives a clear loss, stops at once instead of after MIN_ROUNDS.
        if self.costs_known(kind) {
            let ceiling = self.ceiling(kind);
            if ceiling < CLEAR_CEILING || (rounds >= EARLY_ROUNDS && ceiling < 1.0) {
                self.pause_for_at_least(kind, HOPELESS_PAUSE);
                return;
            }
            if rounds >= EARLY_ROUNDS && self.best_expected(kind) < EARLY_FLOOR {
                self.pause(kind);
                return;
            }
        }
        let d = &mut self.drafters[kind.index()];
        if rounds < MIN_ROUNDS {
            return;
        }
        let (Some(rate), Some(plain)) = (d.rate.per_s(), plain) else {
            return;
        };
        if rate < plain {
            self.pause(kind);
        } else if rounds >= 2 * MIN_ROUNDS {
            d.pause = FIRST_PAUSE;
        }
    }

    /// Pauses `kind` for its current pause, and doubles the next one.
    fn pause(&mut self, kind: Kind) {
        self.pause_for_at_least(kind, 0);
    }

    /// Pauses `kind` for its current pause or `min_steps`, whichever is longer, and
    /// doubles the next one.
    fn pause_for_at_least(&mut self, kind: Kind, min_steps: usize) {
        let d = &mut self.drafters[kind.index()];
        d.paused_until = self.steps + d.pause.max(min_steps);
        d.pause = (d.pause * 2).min(MAX_PAUSE);
        d.rounds_since_probe = 0;
        d.rate = Rate::default();
        self.pauses += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const ALL_KINDS: [Kind; 3] = [Kind::Lookup, Kind::Mask, Kind::Model];

    /// A controller past every shape's cold runs: what the tests below describe is the
    /// steady state.
    fn warmed(draft_max: usize) -> Controller {
        let mut c = Controller::new(draft_max);
        c.seen.plain = COLD_RUNS;
        c.seen.after_round = COLD_RUNS;
        c.seen.draft = [COLD_RUNS; 3];
        c.seen.verify.fill(COLD_RUNS);
        c
    }

    #[test]
    fn the_cold_runs_of_a_shape_are_not_taken_as_its_cost() {
        let mut c = Controller::new(4);
        // Building and capturing graphs: the first runs of each shape are slow. A cold plain
        // step lets drafting start, but the first warm one replaces its time.
        c.plain_step(1, 50 * MS);
        assert!(!c.wants_plain());
        for _ in 1..COLD_RUNS {
            c.plain_step(1, 50 * MS);
        }
        c.plain_step(1, 10 * MS);
        assert!((c.plain_secs.get().unwrap() - 0.010).abs() < 1e-12);
        for _ in 0..COLD_RUNS {
            c.verify_step(2, 150 * MS);
            c.draft_step(Kind::Mask, 90 * MS);
            c.acceptance_seen(Kind::Mask, 1, 1);
            c.round(Kind::Mask, 2, 240 * MS);
            c.plain_step(1, 100 * MS);
        }
        assert!(!c.is_paused(Kind::Mask), "cold rounds rule nothing out");
        assert_eq!(
            c.measured_speedup(Kind::Mask),
            None,
            "nor count in its rate"
        );
        assert!((c.switch_cost() - 0.0).abs() < 1e-12);
        // Warm: a 2-row verification at 11 ms and a draft at 5 ms are the costs.
        c.verify_step(2, 11 * MS);
        c.draft_step(Kind::Mask, 5 * MS);
        assert!(
            (c.verify_cost(2) - 1.1).abs() < 1e-9,
            "{}",
            c.verify_cost(2)
        );
        assert!((c.draft_cost(Kind::Mask) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn the_first_step_is_plain_to_measure_the_baseline() {
        let c = Controller::new(8);
        assert!(c.wants_plain());
        assert_eq!(c.draft_len(Kind::Lookup, 8), 0);
    }

    #[test]
    fn high_acceptance_drafts_longer_than_low() {
        let mut c = warmed(8);
        c.plain_step(1, 10 * MS);
        for _ in 0..20 {
            c.acceptance_seen(Kind::Lookup, 4, 4);
            c.round(Kind::Lookup, 5, 20 * MS);
        }
        let long = c.draft_len(Kind::Lookup, 8);
        let mut c = warmed(8);
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
        let mut c = warmed(4);
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
    fn a_drafter_that_cannot_win_even_at_full_acceptance_stops_after_two_rounds() {
        let mut c = warmed(4);
        c.plain_step(1, 10 * MS);
        // Drafting costs 8 ms a token and verifying n tokens 10 ms + 6 ms per extra token:
        // with every draft accepted, k drafts give k + 1 tokens in 8k + 10 + 6k ms, never
        // faster than one token per 10 ms.
        for round in 1..=EARLY_ROUNDS {
            assert!(!c.is_paused(Kind::Mask), "round {round}");
            for n in 2..=5 {
                c.verify_step(n, (10 + 6 * (n as u32 - 1)) * MS);
            }
            c.draft_step(Kind::Mask, 8 * MS);
            c.acceptance_seen(Kind::Mask, 1, 1);
            c.round(Kind::Mask, 2, 24 * MS);
        }
        assert!(c.ceiling(Kind::Mask) < 1.0, "{}", c.ceiling(Kind::Mask));
        assert!(c.is_paused(Kind::Mask), "stopped before MIN_ROUNDS");
        assert_eq!(c.pauses(), 1);
        // It stays off for a long while: the costs, not the text, ruled it out.
        for _ in 0..FIRST_PAUSE * 4 {
            c.plain_step(1, 10 * MS);
        }
        assert!(c.is_paused(Kind::Mask));
    }

    #[test]
    fn a_drafter_far_from_paying_stops_after_its_first_round() {
        let mut c = warmed(4);
        c.plain_step(1, 10 * MS);
        // Drafting costs 9 ms a token and verifying n tokens 10 ms + 9 ms per extra token:
        // the ceiling is about 0.6.
        for n in 2..=5 {
            c.verify_step(n, (10 + 9 * (n as u32 - 1)) * MS);
        }
        c.draft_step(Kind::Mask, 9 * MS);
        c.acceptance_seen(Kind::Mask, 1, 1);
        c.round(Kind::Mask, 2, 28 * MS);
        assert!(c.ceiling(Kind::Mask) < CLEAR_CEILING);
        assert!(c.is_paused(Kind::Mask));
    }

    #[test]
    fn a_cheap_drafter_with_high_acceptance_is_not_stopped_early() {
        let mut c = warmed(4);
        c.plain_step(1, 10 * MS);
        for _ in 0..MIN_ROUNDS {
            for n in 2..=5 {
                c.verify_step(n, (10 + 2 * (n as u32 - 1)) * MS);
            }
            c.draft_step(Kind::Mask, 3 * MS);
            c.acceptance_seen(Kind::Mask, 4, 4);
            c.round(Kind::Mask, 5, 28 * MS);
        }
        assert!(c.ceiling(Kind::Mask) > 1.0);
        assert!(!c.is_paused(Kind::Mask));
    }

    #[test]
    fn one_slow_decode_is_neither_a_shapes_cost_nor_kept_for_later_generations() {
        let mut c = warmed(4);
        for _ in 0..3 {
            c.plain_step(1, 10 * MS);
        }
        // The first warm 2-row verification hits a hiccup of the machine.
        c.verify_step(2, 40 * MS);
        assert!((c.verify_cost(2) - 4.0).abs() < 1e-9);
        let kept = DraftCosts {
            verify: vec![None, None, Some(1.6)],
            ..DraftCosts::default()
        };
        assert_eq!(
            c.costs(&kept, 15).verify[2],
            Some(1.6),
            "one sample does not replace a kept cost"
        );
        for _ in 0..2 {
            c.verify_step(2, 16 * MS);
        }
        assert!(
            (c.verify_cost(2) - 1.6).abs() < 1e-9,
            "{}",
            c.verify_cost(2)
        );
        let handed = c.costs(&kept, 15).verify[2].unwrap();
        assert!((handed - 1.6).abs() < 1e-9, "{handed}");
    }

    #[test]
    fn a_lookup_match_that_holds_drafts_longer_than_a_new_one() {
        let mut c = warmed(8);
        c.plain_step(1, 10 * MS);
        for n in 2..=9 {
            c.verify_step(n, (10 + 3 * (n as u32 - 1)) * MS);
        }
        for _ in 0..10 {
            // The first draft of a new match is refused; a match that held goes on.
            c.lookup_seen(false, 4, 0);
            c.acceptance_seen(Kind::Lookup, 4, 0);
            c.lookup_seen(true, 8, 8);
            c.acceptance_seen(Kind::Lookup, 8, 8);
        }
        assert_eq!(c.lookup_len(8, true), 8);
        assert_eq!(c.lookup_len(8, false), 1);
        let overall = c.draft_len(Kind::Lookup, 8);
        assert!(
            (2..8).contains(&overall),
            "one estimate for both would draft {overall} in either state"
        );
    }

    #[test]
    fn refused_drafts_stop_a_drafter_after_two_rounds_even_while_its_shapes_are_cold() {
        // Earlier costs let the drafter start (its ceiling is above 1); this generation's
        // shapes are all cold, so no round's time may count, but its refusals do.
        let mut c = Controller::new(4);
        c.seed(&earlier_costs(15, 0.3), 15, &ALL_KINDS);
        assert!(c.ceiling(Kind::Mask) > 1.0);
        c.plain_step(1, 10 * MS);
        for round in 1..=EARLY_ROUNDS {
            assert!(!c.is_paused(Kind::Mask), "round {round}");
            c.draft_step(Kind::Mask, 30 * MS);
            c.verify_step(2, 40 * MS);
            c.acceptance_seen(Kind::Mask, 1, 0);
            c.round(Kind::Mask, 1, 80 * MS);
            c.plain_step(1, 10 * MS);
        }
        assert!(c.is_paused(Kind::Mask));
        assert_eq!(
            c.measured_speedup(Kind::Mask),
            None,
            "the cold rounds' time stays out of the rate"
        );
    }

    #[test]
    fn the_slow_plain_step_after_a_round_is_charged_to_the_round() {
        let mut c = warmed(4);
        c.plain_step(1, 10 * MS);
        c.verify_step(2, 14 * MS);
        c.draft_step(Kind::Lookup, Duration::ZERO);
        c.acceptance_seen(Kind::Lookup, 1, 1);
        c.round(Kind::Lookup, 2, 14 * MS);
        // Switching back costs 4 ms more than a plain step.
        c.plain_step(1, 14 * MS);
        assert!((c.switch_cost() - 0.4).abs() < 1e-9, "{}", c.switch_cost());
        // The plain estimate keeps a plain step's 10 ms.
        assert!((c.plain_secs.get().unwrap() - 0.010).abs() < 1e-12);
        // The round now counts 2 tokens in 18 ms.
        let rate = c.drafters[Kind::Lookup.index()].rate;
        assert!((rate.secs - 0.018).abs() < 1e-9, "{}", rate.secs);
        // And the estimate of drafting 1 token pays for it: (1 + a) / (1.4 + 0.4).
        let a = c.acceptance(Kind::Lookup);
        assert!((c.expected_speedup(Kind::Lookup, 1) - (1.0 + a) / 1.8).abs() < 1e-9);
    }

    #[test]
    fn unmeasured_verification_sizes_follow_the_line_through_the_nearest_measured_one() {
        let mut c = warmed(8);
        c.plain_step(1, 10 * MS);
        c.verify_step(3, 20 * MS);
        // n = 3 costs 2 steps: a line from (1, 1) through (3, 2) gives 3 at n = 5.
        assert!(
            (c.verify_cost(5) - 3.0).abs() < 1e-9,
            "{}",
            c.verify_cost(5)
        );
        assert!((c.verify_cost(3) - 2.0).abs() < 1e-9);
    }

    /// Costs of a machine where verifying n tokens takes 0.5 + 0.5 n plain steps.
    fn earlier_costs(mask_blocks: usize, mask_draft: f64) -> DraftCosts {
        DraftCosts {
            verify: (0..6)
                .map(|n| (n >= 2).then_some(0.5 + 0.5 * n as f64))
                .collect(),
            mask: BTreeMap::from([(mask_blocks, mask_draft)]),
            model: None,
            switch: Some(0.1),
        }
    }

    #[test]
    fn a_drafter_that_earlier_costs_rule_out_does_not_draft_at_all() {
        let mut c = warmed(4);
        // A draft decode costs 0.8 steps: k drafts give k + 1 tokens in 0.8k + 1 + 0.5k
        // + 0.1 steps, never more than one token per step.
        c.seed(&earlier_costs(15, 0.8), 15, &ALL_KINDS);
        assert!(c.ceiling(Kind::Mask) < 1.0, "{}", c.ceiling(Kind::Mask));
        c.plain_step(1, 10 * MS);
        assert_eq!(c.draft_len(Kind::Mask, 4), 0);
        assert_eq!(c.pauses(), 1);
        // Lookup drafts for free and can still win.
        assert!(c.draft_len(Kind::Lookup, 4) > 0);
        // It probes again after the long pause: the machine's load may have changed.
        for _ in 0..HOPELESS_PAUSE {
            c.plain_step(1, 10 * MS);
        }
        assert!(c.draft_len(Kind::Mask, 4) > 0);
    }

    #[test]
    fn earlier_costs_of_another_mask_do_not_rule_this_one_out() {
        let mut c = warmed(4);
        c.seed(&earlier_costs(15, 0.8), 10, &ALL_KINDS);
        c.plain_step(1, 10 * MS);
        assert!(c.draft_len(Kind::Mask, 4) > 0);
    }

    #[test]
    fn costs_measured_now_are_handed_back_relative_to_a_plain_step() {
        let earlier = earlier_costs(10, 0.3);
        let mut c = warmed(4);
        c.seed(&earlier, 15, &ALL_KINDS);
        c.plain_step(1, 10 * MS);
        c.verify_step(3, 20 * MS);
        c.draft_step(Kind::Mask, 6 * MS);
        let now = c.costs(&earlier, 15);
        assert_eq!(now.verify[3], Some(2.0));
        assert_eq!(
            now.verify[2], earlier.verify[2],
            "unmeasured sizes keep the old cost"
        );
        assert_eq!(now.mask.get(&15), Some(&0.6));
        assert_eq!(now.mask.get(&10), Some(&0.3), "another mask's cost is kept");
        assert_eq!(now.switch, Some(0.1));
    }

    #[test]
    fn a_new_mask_forgets_what_the_old_one_measured() {
        let mut c = warmed(4);
        c.plain_step(1, 10 * MS);
        c.draft_step(Kind::Mask, 9 * MS);
        assert!((c.draft_cost(Kind::Mask) - 0.9).abs() < 1e-9);
        c.mask_changed(Some(0.4));
        assert!((c.draft_cost(Kind::Mask) - 0.4).abs() < 1e-9);
        c.mask_changed(None);
        assert!(
            (c.draft_cost(Kind::Mask) - 0.6).abs() < 1e-9,
            "the guess, unmeasured"
        );
    }

    #[test]
    fn a_drafter_faster_than_plain_steps_stays_on() {
        let mut c = warmed(4);
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
        let mut c = warmed(4);
        c.plain_step(1, 10 * MS);
        for _ in 0..PLAIN_REFRESH {
            assert!(!c.wants_plain());
            c.acceptance_seen(Kind::Lookup, 2, 2);
            c.round(Kind::Lookup, 3, 12 * MS);
        }
        assert!(c.wants_plain());
    }
}
