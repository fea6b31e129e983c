//! One plan of masks for a run, built once from every setting that decides it.
//!
//! A [`Plan`] is what the engine, `run`, the chat, the benchmark and the lossless drafter
//! ask for the mask of each decode step. It is made once, from [`PlanSettings`] (strategy,
//! target, speedup mode, cost model, seed, calibration profile) and the model's block
//! count, so every app turns the same settings into the same masks, and a strategy whose
//! mask changes with the step (SkipDecode) builds its whole schedule once, not per token.

use super::cost::{CostError, CostModel, SpeedupMode};
use super::strategy::{Depth, PlanError, Strategy, StrategySpec, plan, skipdecode_schedule};
use super::{Mask, speedup_by_layers};

/// Everything that decides which blocks run, before the model is known.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSettings {
    /// How the kept blocks are placed.
    pub strategy: Strategy,
    /// Target speedup (1 = full depth); ignored by a manual mask.
    pub target: f64,
    /// Whether the target counts blocks or wall-clock time.
    pub mode: SpeedupMode,
    /// The measured decode-time model; measured mode needs it.
    pub cost: Option<CostModel>,
    /// Seed of the random strategy.
    pub seed: u64,
    /// Generated tokens SkipDecode's depth ramp spans (usually the token limit).
    pub planned_len: usize,
    /// The masks of the model's calibration profile; the calibrated strategy needs them.
    pub profile: Option<Vec<Mask>>,
    /// The mask of the manual strategy.
    pub manual: Option<Mask>,
}

impl PlanSettings {
    /// Settings for `strategy` at `target`, counted in blocks, with default parameters.
    pub fn new(strategy: Strategy, target: f64) -> PlanSettings {
        PlanSettings {
            strategy,
            target,
            mode: SpeedupMode::Layers,
            cost: None,
            seed: 0,
            planned_len: StrategySpec::DEFAULT_PLANNED_LEN,
            profile: None,
            manual: None,
        }
    }

    /// Settings that compute exactly the blocks of `mask` for every token; their target
    /// is the mask's block ratio.
    pub fn manual(mask: Mask) -> PlanSettings {
        PlanSettings {
            target: speedup_by_layers(mask.n_layer(), mask.n_active()),
            manual: Some(mask),
            ..PlanSettings::new(Strategy::Manual, 1.0)
        }
    }

    /// The strategy with its parameters taken from these settings.
    pub fn spec(&self) -> Result<StrategySpec, SettingsError> {
        Ok(match self.strategy {
            Strategy::Unified => StrategySpec::Unified,
            Strategy::EarlyExit => StrategySpec::EarlyExit,
            Strategy::SkipDecode => StrategySpec::SkipDecode {
                planned_len: self.planned_len.max(1),
            },
            Strategy::Block => StrategySpec::default_for(Strategy::Block).expect("has defaults"),
            Strategy::Random => StrategySpec::Random { seed: self.seed },
            Strategy::Manual => StrategySpec::Manual {
                mask: self.manual.clone().ok_or(SettingsError::NoManualMask)?,
            },
            Strategy::Calibrated => StrategySpec::Calibrated {
                masks: self.profile.clone().ok_or(SettingsError::NoProfile)?,
            },
        })
    }

    /// The depth the target asks for on an `n_layer`-block model in the settings' mode.
    /// A manual mask's depth is its own kept count.
    pub fn depth(&self, n_layer: usize) -> Result<Depth, SettingsError> {
        if let (Strategy::Manual, Some(mask)) = (self.strategy, &self.manual) {
            return Ok(Depth::Kept(mask.n_active().clamp(2, n_layer.max(2))));
        }
        Ok(self.mode.depth(self.target, n_layer, self.cost.as_ref())?)
    }

    /// The largest target these settings can reach on an `n_layer`-block model: 2 kept
    /// blocks, counted in blocks or predicted by the cost model in measured mode.
    pub fn max_target(&self, n_layer: usize) -> f64 {
        match (self.mode, &self.cost) {
            (SpeedupMode::Measured, Some(cost)) => cost.max_speedup(n_layer),
            _ => n_layer as f64 / 2.0,
        }
    }
}

/// Why settings could not become a plan.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SettingsError {
    /// The target or mask does not fit the model.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The target cannot be turned into a block count (measured mode).
    #[error(transparent)]
    Cost(#[from] CostError),
    /// The calibrated strategy was asked for without a calibration profile.
    #[error(
        "the calibrated strategy needs the model's calibration profile: run \
         `uniskip calibrate -m MODEL` first"
    )]
    NoProfile,
    /// The manual strategy was asked for without a mask.
    #[error("the manual strategy needs a mask: name the skipped blocks with --skip-layers")]
    NoManualMask,
}

impl SettingsError {
    /// Always the input's fault (exit code 2): the settings do not fit the model.
    pub fn is_user_error(&self) -> bool {
        true
    }
}

/// The masks of a run: one per decode step, built once.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    settings: PlanSettings,
    n_layer: usize,
    spec: StrategySpec,
    depth: Depth,
    /// The distinct masks of the run.
    masks: Vec<Mask>,
    /// `masks[by_step[s]]` is step `s`'s mask; empty when one mask serves every step.
    /// Steps past the end use the last entry (SkipDecode's ramp has bottomed out).
    by_step: Vec<usize>,
}

impl Plan {
    /// Plans `settings` for an `n_layer`-block model.
    pub fn new(settings: PlanSettings, n_layer: usize) -> Result<Plan, SettingsError> {
        let spec = settings.spec()?;
        let depth = settings.depth(n_layer)?;
        let (masks, by_step) = match &spec {
            StrategySpec::SkipDecode { planned_len } => {
                let schedule = skipdecode_schedule(n_layer, depth, *planned_len)?;
                let mut masks: Vec<Mask> = Vec::new();
                let mut by_step = Vec::with_capacity(schedule.len());
                // The schedule is non-increasing: each new depth is a new mask.
                for (step, &active) in schedule.iter().enumerate() {
                    if masks.last().is_none_or(|m| m.n_active() != active) {
                        masks.push(plan(&spec, n_layer, depth, step)?);
                    }
                    by_step.push(masks.len() - 1);
                }
                (masks, by_step)
            }
            _ => (vec![plan(&spec, n_layer, depth, 0)?], Vec::new()),
        };
        Ok(Plan {
            settings,
            n_layer,
            spec,
            depth,
            masks,
            by_step,
        })
    }

    /// Full depth on an `n_layer`-block model (`n_layer` >= 1).
    pub fn full(n_layer: usize) -> Plan {
        Plan::fixed(Mask::full(n_layer))
    }

    /// `mask` for every step, as a manual plan. Unlike planning manual settings, any mask
    /// is accepted, even of a model too shallow to plan for.
    pub fn fixed(mask: Mask) -> Plan {
        Plan {
            settings: PlanSettings::manual(mask.clone()),
            n_layer: mask.n_layer(),
            spec: StrategySpec::Manual { mask: mask.clone() },
            depth: Depth::Kept(mask.n_active()),
            masks: vec![mask],
            by_step: Vec::new(),
        }
    }

    /// The mask of step `step`: step 0 is the prompt's (used when the prompt runs under
    /// the mask), step `s >= 1` the decode call that reads the `s`-th generated token.
    pub fn mask(&self, step: usize) -> &Mask {
        match self.by_step.len() {
            0 => &self.masks[0],
            n => &self.masks[self.by_step[step.min(n - 1)]],
        }
    }

    /// The settings the plan was made from.
    pub fn settings(&self) -> &PlanSettings {
        &self.settings
    }

    /// The strategy with its parameters.
    pub fn spec(&self) -> &StrategySpec {
        &self.spec
    }

    /// The depth planned for.
    pub fn depth(&self) -> Depth {
        self.depth
    }

    /// Blocks in the model.
    pub fn n_layer(&self) -> usize {
        self.n_layer
    }

    /// Blocks computed at step 0.
    pub fn kept(&self) -> usize {
        self.mask(0).n_active()
    }

    /// The distinct masks of the run, in the order steps first use them.
    pub fn distinct_masks(&self) -> &[Mask] {
        &self.masks
    }

    /// Whether the mask changes from one step to the next.
    pub fn varies(&self) -> bool {
        self.masks.len() > 1
    }

    /// Whether every step computes every block.
    pub fn is_full(&self) -> bool {
        self.masks.iter().all(Mask::is_full)
    }

    /// The target speedup: as asked, or the block ratio of a manual mask.
    pub fn target(&self) -> f64 {
        match &self.spec {
            StrategySpec::Manual { mask } => speedup_by_layers(self.n_layer, mask.n_active()),
            _ => self.settings.target,
        }
    }

    /// The plan lossless decoding's mask drafter drafts under: this plan, unless it keeps
    /// every block (a full-depth draft costs what verifying it saves); then the same
    /// strategy and settings at [`DEFAULT_DRAFT_SPEEDUP`] counted in blocks, or unified
    /// there when this plan's strategy cannot be replanned (a manual mask that skips
    /// nothing).
    pub fn for_drafting(&self) -> Plan {
        if !self.is_full() {
            return self.clone();
        }
        let replanned = PlanSettings {
            target: DEFAULT_DRAFT_SPEEDUP,
            mode: SpeedupMode::Layers,
            ..self.settings.clone()
        };
        Plan::new(replanned, self.n_layer)
            .ok()
            .filter(|p| !p.is_full())
            .or_else(|| {
                let unified = PlanSettings::new(Strategy::Unified, DEFAULT_DRAFT_SPEEDUP);
                Plan::new(unified, self.n_layer).ok()
            })
            // A model too shallow to skip anything drafts at full depth.
            .unwrap_or_else(|| self.clone())
    }

    /// Mean number of computed blocks over steps `first..first + steps`.
    pub fn mean_active(&self, first: usize, steps: usize) -> f64 {
        let steps = steps.max(1);
        (first..first + steps)
            .map(|s| self.mask(s).n_active() as f64)
            .sum::<f64>()
            / steps as f64
    }
}

/// Target speedup of lossless decoding's mask drafter when the plan in force keeps every
/// block (no `--speedup` with `--lossless`): the mask must skip something to draft cheaply.
pub const DEFAULT_DRAFT_SPEEDUP: f64 = 2.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_that_skips_blocks_drafts_under_itself() {
        let plan = Plan::new(PlanSettings::new(Strategy::EarlyExit, 1.5), 30).unwrap();
        assert_eq!(plan.for_drafting(), plan);
    }

    #[test]
    fn a_full_depth_plan_drafts_at_the_default_speedup_with_its_own_strategy() {
        let full = Plan::new(PlanSettings::new(Strategy::EarlyExit, 1.0), 30).unwrap();
        let drafting = full.for_drafting();
        let expected = Plan::new(PlanSettings::new(Strategy::EarlyExit, 2.0), 30).unwrap();
        assert_eq!(drafting.mask(1), expected.mask(1));
        assert_eq!(drafting.mask(1).n_active(), 15);
    }

    #[test]
    fn a_manual_mask_that_skips_nothing_drafts_under_the_unified_mask() {
        let drafting = Plan::fixed(Mask::full(30)).for_drafting();
        let unified = Plan::new(PlanSettings::new(Strategy::Unified, 2.0), 30).unwrap();
        assert_eq!(drafting.mask(1), unified.mask(1));
    }

    #[test]
    fn unified_settings_plan_the_papers_mask_for_every_step() {
        let plan = Plan::new(PlanSettings::new(Strategy::Unified, 5.0), 30).unwrap();
        assert_eq!(plan.mask(0).active_indices(), vec![0, 6, 12, 18, 24, 29]);
        assert_eq!(plan.mask(1000), plan.mask(0));
        assert!(!plan.varies());
        assert_eq!(plan.target(), 5.0);
    }

    #[test]
    fn skipdecode_plans_its_ramp_once_and_matches_the_per_step_planner() {
        let settings = PlanSettings {
            planned_len: 40,
            ..PlanSettings::new(Strategy::SkipDecode, 2.0)
        };
        let plan = Plan::new(settings.clone(), 30).unwrap();
        let spec = settings.spec().unwrap();
        for step in 0..50 {
            let expected = super::plan(&spec, 30, Depth::Ratio(2.0), step).unwrap();
            assert_eq!(plan.mask(step), &expected, "step {step}");
        }
        assert!(plan.varies());
        assert!((plan.mean_active(0, 40) - 15.0).abs() < 0.05);
    }

    #[test]
    fn calibrated_without_a_profile_and_manual_without_a_mask_are_refused() {
        assert_eq!(
            Plan::new(PlanSettings::new(Strategy::Calibrated, 1.5), 30),
            Err(SettingsError::NoProfile)
        );
        assert_eq!(
            Plan::new(PlanSettings::new(Strategy::Manual, 1.5), 30),
            Err(SettingsError::NoManualMask)
        );
    }

    #[test]
    fn measured_mode_needs_a_cost_model() {
        let settings = PlanSettings {
            mode: SpeedupMode::Measured,
            ..PlanSettings::new(Strategy::Unified, 1.5)
        };
        assert!(matches!(
            Plan::new(settings.clone(), 30),
            Err(SettingsError::Cost(CostError::MissingCostModel))
        ));
        let with_cost = PlanSettings {
            cost: Some(CostModel {
                a_s: 0.0,
                b_s: 0.001,
            }),
            ..settings
        };
        assert_eq!(Plan::new(with_cost, 30).unwrap().kept(), 20);
    }

    #[test]
    fn a_manual_mask_is_its_own_target() {
        let mask = Mask::from_skip_list("10-19", 30).unwrap();
        let plan = Plan::new(PlanSettings::manual(mask.clone()), 30).unwrap();
        assert_eq!(plan.mask(3), &mask);
        assert_eq!(plan.target(), 1.5);
        assert!(Plan::full(30).is_full());
    }

    #[test]
    fn an_out_of_range_target_is_refused_with_the_planners_reason() {
        let err = Plan::new(PlanSettings::new(Strategy::Unified, 16.0), 30).unwrap_err();
        assert!(matches!(
            err,
            SettingsError::Cost(CostError::Plan(PlanError::RatioOutOfRange { .. }))
        ));
    }
}
