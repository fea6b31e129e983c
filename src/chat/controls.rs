//! What decides the mask while a chat runs: the target speedup, the strategy, the speedup
//! mode and the prefill policy. Changed by keys and commands on the UI thread, read by the
//! engine thread before every decode call.

use crate::engine::{Drafter, PrefillPolicy};
use crate::skip::{CostModel, Mask, Plan, PlanSettings, SpeedupMode, Strategy};

/// The strategies the strategy key cycles through, in order. `manual` is not among them:
/// it needs a mask given with `--skip-layers`.
pub const CYCLE: [Strategy; 5] = [
    Strategy::Unified,
    Strategy::EarlyExit,
    Strategy::SkipDecode,
    Strategy::Block,
    Strategy::Random,
];

/// How far one press of the target keys moves the target.
pub const TARGET_STEP: f64 = 0.25;

/// The skip settings in force, with the plan they give. Every setter replans and keeps
/// the change only when the plan can be made, so [`SkipControls::mask`] always has a mask.
#[derive(Clone, Debug, PartialEq)]
pub struct SkipControls {
    plan: Plan,
    /// Which blocks the prompt runs through.
    pub prefill: PrefillPolicy,
    /// Lossless decoding, when on: the drafter (the mask drafts, full depth verifies).
    pub lossless: Option<Drafter>,
    /// The drafter lossless decoding uses when toggled on.
    pub drafter: Drafter,
    /// Most tokens drafted per round.
    pub draft_max: usize,
}

impl SkipControls {
    /// Controls starting from `plan`.
    pub fn new(plan: Plan, prefill: PrefillPolicy) -> SkipControls {
        SkipControls {
            plan,
            prefill,
            lossless: None,
            drafter: Drafter::default(),
            draft_max: crate::engine::speculative::DRAFT_MAX_DEFAULT,
        }
    }

    /// Turns lossless decoding on or off.
    pub fn toggle_lossless(&mut self) {
        self.lossless = match self.lossless {
            Some(_) => None,
            None => Some(self.drafter),
        };
    }

    /// The mask lossless decoding drafts under at step `step`: the plan's, or its drafting
    /// plan's when it keeps every block (`Plan::for_drafting`, the rule every command
    /// follows).
    pub fn draft_mask(&self, step: usize) -> Mask {
        let mask = self.mask(step);
        if !mask.is_full() {
            return mask;
        }
        self.plan.for_drafting().mask(step).clone()
    }

    /// The plan of the current settings.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The settings the plan was made from.
    pub fn settings(&self) -> &PlanSettings {
        self.plan.settings()
    }

    /// Blocks in the model.
    pub fn n_layer(&self) -> usize {
        self.plan.n_layer()
    }

    /// The target speedup (1 = full depth; a manual mask's block ratio).
    pub fn target(&self) -> f64 {
        self.plan.target()
    }

    /// The strategy in force.
    pub fn strategy(&self) -> Strategy {
        self.plan.spec().strategy()
    }

    /// Whether the target counts blocks or wall-clock time.
    pub fn mode(&self) -> SpeedupMode {
        self.settings().mode
    }

    /// The measured decode-time model, once probed.
    pub fn cost(&self) -> Option<&CostModel> {
        self.settings().cost.as_ref()
    }

    /// The mask of decode step `step` (0-based within a reply).
    pub fn mask(&self, step: usize) -> Mask {
        self.plan.mask(step).clone()
    }

    /// The largest target the current mode can reach: `L / 2` blocks counted (2 kept), or
    /// what the cost model predicts for 2 kept blocks in measured mode.
    pub fn max_target(&self) -> f64 {
        self.settings().max_target(self.n_layer())
    }

    /// Replans with `settings`; nothing changes when they cannot be planned.
    fn replan(&mut self, settings: PlanSettings) -> Result<(), String> {
        self.plan = Plan::new(settings, self.n_layer()).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Sets the target; refused (with the reason) when the model cannot reach it in the
    /// current mode. Leaves a manual mask for the unified strategy: a target means
    /// planning, and a manual mask has no target.
    pub fn set_target(&mut self, target: f64) -> Result<(), String> {
        let mut next = self.settings().clone();
        next.target = target;
        if next.strategy == Strategy::Manual {
            next.strategy = Strategy::Unified;
        }
        self.replan(next)
    }

    /// Moves the target by `steps` times [`TARGET_STEP`], snapped to that grid and held
    /// within 1 and [`SkipControls::max_target`]. Returns whether anything changed.
    pub fn nudge_target(&mut self, steps: i32) -> bool {
        let current = self.settings().target;
        let snapped = (current / TARGET_STEP).round() * TARGET_STEP;
        let wanted = snapped + f64::from(steps) * TARGET_STEP;
        // The top of the range is rarely on the grid: stop there rather than below it.
        let max = (self.max_target() * 100.0).floor() / 100.0;
        let next = wanted.clamp(1.0, max.max(1.0));
        if (next - current).abs() < 1e-9 && self.strategy() != Strategy::Manual {
            return false;
        }
        self.set_target(next).is_ok()
    }

    /// Moves to the next (or previous) strategy of [`CYCLE`].
    pub fn cycle_strategy(&mut self, forward: bool) {
        let i = CYCLE.iter().position(|&s| s == self.strategy());
        let next = match (i, forward) {
            (None, _) => CYCLE[0],
            (Some(i), true) => CYCLE[(i + 1) % CYCLE.len()],
            (Some(i), false) => CYCLE[(i + CYCLE.len() - 1) % CYCLE.len()],
        };
        // Every strategy of the cycle plans at every target the current one reached.
        let _ = self.switch_to(next);
    }

    /// Switches to the strategy named `name` (as on the command line).
    pub fn set_strategy(&mut self, name: &str) -> Result<(), String> {
        let strategy: Strategy = name
            .trim()
            .parse()
            .map_err(|e: crate::skip::ParseNameError| e.to_string())?;
        if strategy == Strategy::Manual {
            return Err("a manual mask is given at start-up with --skip-layers LIST".into());
        }
        if strategy == Strategy::Calibrated && self.settings().profile.is_none() {
            return Err(
                "this model has no calibration profile: run `uniskip calibrate -m MODEL`".into(),
            );
        }
        self.switch_to(strategy)
    }

    fn switch_to(&mut self, strategy: Strategy) -> Result<(), String> {
        let mut next = self.settings().clone();
        next.strategy = strategy;
        self.replan(next)
    }

    /// Switches between block-counted and measured speedup. Measured mode needs the cost
    /// model; a target above what it can reach is lowered to the largest reachable one.
    pub fn toggle_mode(&mut self) -> Result<(), String> {
        let mut next = self.settings().clone();
        match next.mode {
            SpeedupMode::Measured => next.mode = SpeedupMode::Layers,
            SpeedupMode::Layers => {
                if next.cost.is_none() {
                    return Err("measured mode needs the decode-time probe".into());
                }
                next.mode = SpeedupMode::Measured;
                let max = (next.max_target(self.n_layer()) * 100.0).floor() / 100.0;
                next.target = next.target.min(max).max(1.0);
            }
        }
        self.replan(next)
    }

    /// Gives the controls the measured decode-time model (measured mode needs it).
    pub fn set_cost(&mut self, cost: CostModel) {
        let mut next = self.settings().clone();
        next.cost = Some(cost);
        // Measured mode with a new cost model may no longer reach the target: lower it.
        if next.mode == SpeedupMode::Measured {
            let max = (next.max_target(self.n_layer()) * 100.0).floor() / 100.0;
            next.target = next.target.min(max).max(1.0);
        }
        let _ = self.replan(next);
    }

    /// Blocks computed by the mask of decode step 0.
    pub fn kept(&self) -> usize {
        self.plan.kept()
    }
}

#[cfg(test)]
impl SkipControls {
    /// The chat's tests' settings: a 30-block model at `target`, unified, in blocks.
    pub(crate) fn for_tests(target: f64) -> SkipControls {
        let settings = PlanSettings {
            planned_len: 64,
            ..PlanSettings::new(Strategy::Unified, target)
        };
        SkipControls::new(
            Plan::new(settings, 30).expect("a valid target"),
            PrefillPolicy::Full,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controls() -> SkipControls {
        SkipControls::for_tests(1.0)
    }

    #[test]
    fn nudging_moves_the_target_by_a_quarter_and_replans() {
        let mut c = controls();
        assert_eq!(c.kept(), 30);
        assert!(c.nudge_target(2));
        assert_eq!(c.target(), 1.5);
        assert_eq!(c.kept(), 20);
        assert!(c.nudge_target(-1));
        assert_eq!(c.target(), 1.25);
    }

    #[test]
    fn nudging_stops_at_full_depth_and_at_two_kept_blocks() {
        let mut c = controls();
        assert!(!c.nudge_target(-1));
        assert_eq!(c.target(), 1.0);
        c.set_target(15.0).unwrap();
        assert!(!c.nudge_target(1));
        assert_eq!(c.kept(), 2);
    }

    #[test]
    fn an_unreachable_target_is_refused_and_nothing_changes() {
        let mut c = controls();
        assert!(c.set_target(16.0).is_err());
        assert!(c.set_target(0.5).is_err());
        assert!(c.set_target(f64::NAN).is_err());
        assert_eq!(c, controls());
    }

    #[test]
    fn the_strategy_cycle_skips_manual_and_wraps_both_ways() {
        let mut c = controls();
        c.cycle_strategy(true);
        assert_eq!(c.strategy(), Strategy::EarlyExit);
        c.cycle_strategy(false);
        c.cycle_strategy(false);
        assert_eq!(c.strategy(), Strategy::Random);
        c.cycle_strategy(true);
        assert_eq!(c.strategy(), Strategy::Unified);
    }

    #[test]
    fn skipdecode_gets_the_reply_length_as_its_ramp() {
        let mut c = controls();
        c.set_strategy("skipdecode").unwrap();
        assert_eq!(
            c.plan().spec(),
            &crate::skip::StrategySpec::SkipDecode { planned_len: 64 }
        );
        assert!(c.set_strategy("manual").is_err());
        assert!(c.set_strategy("fastest").is_err());
    }

    #[test]
    fn measured_mode_needs_a_cost_model_and_caps_the_target() {
        let mut c = controls();
        c.set_target(10.0).unwrap();
        assert!(c.toggle_mode().is_err());
        assert_eq!(c.mode(), SpeedupMode::Layers);
        // Half of each token's time is fixed: at most about 1.9x with 2 of 30 blocks.
        c.set_cost(CostModel {
            a_s: 0.003,
            b_s: 0.0001,
        });
        c.toggle_mode().unwrap();
        assert_eq!(c.mode(), SpeedupMode::Measured);
        assert!(c.target() <= c.max_target() && c.target() > 1.8);
        assert!(c.kept() >= 2);
        c.toggle_mode().unwrap();
        assert_eq!(c.mode(), SpeedupMode::Layers);
    }

    #[test]
    fn a_target_change_leaves_a_manual_mask_for_unified() {
        let manual = Mask::from_skip_list("10-19", 30).unwrap();
        let mut c = SkipControls::new(
            Plan::new(PlanSettings::manual(manual.clone()), 30).unwrap(),
            PrefillPolicy::Full,
        );
        assert_eq!(c.mask(0), manual);
        assert!(c.nudge_target(1));
        assert_eq!(c.strategy(), Strategy::Unified);
    }
}
