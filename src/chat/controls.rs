//! What decides the mask while a chat runs: the target speedup, the strategy, the speedup
//! mode and the prefill policy. Changed by keys and commands on the UI thread, read by the
//! engine thread before every decode call.

use crate::engine::{Drafter, PrefillPolicy};
use crate::skip::{CostModel, Depth, Mask, SpeedupMode, Strategy, StrategySpec, plan};

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

/// The skip settings in force. The setters keep them plannable for the model (targets
/// are checked; the strategies offered plan at every valid target), so
/// [`SkipControls::mask`] always has a mask.
#[derive(Clone, Debug, PartialEq)]
pub struct SkipControls {
    /// Blocks in the model.
    pub n_layer: usize,
    /// The target speedup (1 = full depth).
    pub target: f64,
    /// The strategy with its parameters.
    pub spec: StrategySpec,
    /// Whether the target counts blocks or wall-clock time.
    pub mode: SpeedupMode,
    /// Which blocks the prompt runs through.
    pub prefill: PrefillPolicy,
    /// The measured decode-time model, once probed; measured mode needs it.
    pub cost: Option<CostModel>,
    /// SkipDecode's ramp length (the reply's token limit).
    pub planned_len: usize,
    /// The random strategy's seed.
    pub seed: u64,
    /// Lossless decoding: the mask drafts, full depth verifies (`None`: off). Kept when
    /// off, so that toggling it back on restores the drafter.
    pub lossless: Option<Drafter>,
    /// The drafter lossless decoding uses when toggled on.
    pub drafter: Drafter,
    /// Most tokens drafted per round.
    pub draft_max: usize,
}

impl SkipControls {
    /// The depth the target asks for in the current mode.
    pub fn depth(&self) -> Result<Depth, String> {
        if let StrategySpec::Manual { mask } = &self.spec {
            return Ok(Depth::Kept(mask.n_active().clamp(2, self.n_layer)));
        }
        self.mode
            .depth(self.target, self.n_layer, self.cost.as_ref())
            .map_err(|e| e.to_string())
    }

    /// Turns lossless decoding on or off.
    pub fn toggle_lossless(&mut self) {
        self.lossless = match self.lossless {
            Some(_) => None,
            None => Some(self.drafter),
        };
    }

    /// The mask lossless decoding drafts under at step `step`: the settings' mask, or a 2x
    /// unified mask when they keep every block (drafting at full depth gains nothing).
    pub fn draft_mask(&self, step: usize) -> Mask {
        let mask = self.mask(step);
        if !mask.is_full() {
            return mask;
        }
        plan(
            &StrategySpec::Unified,
            self.n_layer,
            Depth::Ratio(crate::cli::lossless_args::DEFAULT_DRAFT_SPEEDUP),
            step,
        )
        .unwrap_or(mask)
    }

    /// The mask of decode step `step` (0-based within a reply). Falls back to full depth
    /// if the settings cannot be planned, which the setters rule out.
    pub fn mask(&self, step: usize) -> Mask {
        self.depth()
            .and_then(|depth| {
                plan(&self.spec, self.n_layer, depth, step).map_err(|e| e.to_string())
            })
            .unwrap_or_else(|_| Mask::full(self.n_layer))
    }

    /// The largest target the current mode can reach: `L / 2` blocks counted (2 kept), or
    /// what the cost model predicts for 2 kept blocks in measured mode.
    pub fn max_target(&self) -> f64 {
        match (self.mode, &self.cost) {
            (SpeedupMode::Measured, Some(cost)) => cost.max_speedup(self.n_layer),
            _ => self.n_layer as f64 / 2.0,
        }
    }

    /// Sets the target; refused (with the reason) when the model cannot reach it in the
    /// current mode. Leaves a manual mask for the unified strategy: a target means
    /// planning, and a manual mask has no target.
    pub fn set_target(&mut self, target: f64) -> Result<(), String> {
        let mut next = self.clone();
        next.target = target;
        if next.spec.strategy() == Strategy::Manual {
            next.spec = StrategySpec::Unified;
        }
        next.depth()
            .and_then(|d| plan(&next.spec, next.n_layer, d, 0).map_err(|e| e.to_string()))?;
        *self = next;
        Ok(())
    }

    /// Moves the target by `steps` times [`TARGET_STEP`], snapped to that grid and held
    /// within 1 and [`SkipControls::max_target`]. Returns whether anything changed.
    pub fn nudge_target(&mut self, steps: i32) -> bool {
        let snapped = (self.target / TARGET_STEP).round() * TARGET_STEP;
        let wanted = snapped + f64::from(steps) * TARGET_STEP;
        // The top of the range is rarely on the grid: stop there rather than below it.
        let max = (self.max_target() * 100.0).floor() / 100.0;
        let next = wanted.clamp(1.0, max.max(1.0));
        if (next - self.target).abs() < 1e-9 && self.spec.strategy() != Strategy::Manual {
            return false;
        }
        self.set_target(next).is_ok()
    }

    /// Moves to the next (or previous) strategy of [`CYCLE`].
    pub fn cycle_strategy(&mut self, forward: bool) {
        let current = self.spec.strategy();
        let i = CYCLE.iter().position(|&s| s == current);
        let next = match (i, forward) {
            (None, _) => CYCLE[0],
            (Some(i), true) => CYCLE[(i + 1) % CYCLE.len()],
            (Some(i), false) => CYCLE[(i + CYCLE.len() - 1) % CYCLE.len()],
        };
        self.spec = self.spec_for(next);
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
        if strategy == Strategy::Calibrated {
            return Err(
                "the chat does not load calibration profiles yet; `uniskip ppl` and \
                 `uniskip bench` do"
                    .into(),
            );
        }
        self.spec = self.spec_for(strategy);
        Ok(())
    }

    /// Switches between block-counted and measured speedup. Measured mode needs the cost
    /// model; a target above what it can reach is lowered to the largest reachable one.
    pub fn toggle_mode(&mut self) -> Result<(), String> {
        match self.mode {
            SpeedupMode::Measured => {
                self.mode = SpeedupMode::Layers;
                Ok(())
            }
            SpeedupMode::Layers => {
                if self.cost.is_none() {
                    return Err("measured mode needs the decode-time probe".into());
                }
                let mut next = self.clone();
                next.mode = SpeedupMode::Measured;
                let max = (next.max_target() * 100.0).floor() / 100.0;
                next.target = next.target.min(max).max(1.0);
                next.depth()?;
                *self = next;
                Ok(())
            }
        }
    }

    /// Blocks computed by the mask of decode step 0.
    pub fn kept(&self) -> usize {
        self.mask(0).n_active()
    }

    fn spec_for(&self, strategy: Strategy) -> StrategySpec {
        match strategy {
            Strategy::SkipDecode => StrategySpec::SkipDecode {
                planned_len: self.planned_len.max(1),
            },
            Strategy::Random => StrategySpec::Random { seed: self.seed },
            other => StrategySpec::default_for(other).unwrap_or(StrategySpec::Unified),
        }
    }
}

#[cfg(test)]
impl SkipControls {
    /// The chat's tests' settings: a 30-block model at `target`, unified, in blocks.
    pub(crate) fn for_tests(target: f64) -> SkipControls {
        SkipControls {
            n_layer: 30,
            target,
            spec: StrategySpec::Unified,
            mode: SpeedupMode::Layers,
            prefill: PrefillPolicy::Full,
            cost: None,
            planned_len: 64,
            seed: 0,
            lossless: None,
            drafter: Drafter::MaskLookup,
            draft_max: 8,
        }
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
        assert_eq!(c.target, 1.5);
        assert_eq!(c.kept(), 20);
        assert!(c.nudge_target(-1));
        assert_eq!(c.target, 1.25);
    }

    #[test]
    fn nudging_stops_at_full_depth_and_at_two_kept_blocks() {
        let mut c = controls();
        assert!(!c.nudge_target(-1));
        assert_eq!(c.target, 1.0);
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
        assert_eq!(c.spec.strategy(), Strategy::EarlyExit);
        c.cycle_strategy(false);
        c.cycle_strategy(false);
        assert_eq!(c.spec.strategy(), Strategy::Random);
        c.cycle_strategy(true);
        assert_eq!(c.spec.strategy(), Strategy::Unified);
    }

    #[test]
    fn skipdecode_gets_the_reply_length_as_its_ramp() {
        let mut c = controls();
        c.set_strategy("skipdecode").unwrap();
        assert_eq!(c.spec, StrategySpec::SkipDecode { planned_len: 64 });
        assert!(c.set_strategy("manual").is_err());
        assert!(c.set_strategy("fastest").is_err());
    }

    #[test]
    fn measured_mode_needs_a_cost_model_and_caps_the_target() {
        let mut c = controls();
        c.set_target(10.0).unwrap();
        assert!(c.toggle_mode().is_err());
        assert_eq!(c.mode, SpeedupMode::Layers);
        // Half of each token's time is fixed: at most about 1.9x with 2 of 30 blocks.
        c.cost = Some(CostModel {
            a_s: 0.003,
            b_s: 0.0001,
        });
        c.toggle_mode().unwrap();
        assert_eq!(c.mode, SpeedupMode::Measured);
        assert!(c.target <= c.max_target() && c.target > 1.8);
        assert!(c.kept() >= 2);
        c.toggle_mode().unwrap();
        assert_eq!(c.mode, SpeedupMode::Layers);
    }

    #[test]
    fn a_target_change_leaves_a_manual_mask_for_unified() {
        let mut c = controls();
        let manual = Mask::from_skip_list("10-19", 30).unwrap();
        c.spec = StrategySpec::Manual {
            mask: manual.clone(),
        };
        assert_eq!(c.mask(0), manual);
        assert!(c.nudge_target(1));
        assert_eq!(c.spec.strategy(), Strategy::Unified);
    }
}
