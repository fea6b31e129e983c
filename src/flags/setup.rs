//! From flags to a run, resolved in one place: the model file and the loaded model, its
//! tuning (a file from `uniskip tune` runs the mask it was tuned for unless skip flags name
//! another), the plan of which blocks run at every step (with the calibration profile and
//! the cost model where the strategy and the speedup mode need them), lossless decoding's
//! drafter and the plan it drafts under, and a tuned file's base model.
//!
//! Every command that loads a model to generate or score (`run`, `chat`, `ppl`, `serve`)
//! builds one [`RunSetup`] and asks it; none turns these flags into a plan on its own, so
//! the rules below hold for all of them alike.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::SkipArgs;
use super::lossless::LosslessArgs;
use super::tuned::overrides_tuned;
use super::{ModelArgs, tuned::BaseArgs};
use crate::engine::{Drafter, Model};
use crate::error::BadInput;
use crate::skip::{CostModel, Plan};
use crate::tune::TunedInfo;
use crate::tune::base::{load_base, tuned_plan};

/// A model loaded for a run, with what its flags and its file decided.
pub struct RunSetup {
    /// The model file (a path, or the catalog model it names, fetched on first use).
    pub path: PathBuf,
    /// The model.
    pub model: Model,
    /// The tuning metadata when the file is from `uniskip tune`.
    pub tuned: Option<TunedInfo>,
    /// Whether the plan is the tuned file's own mask (a tuned file, and no skip flag that
    /// names another configuration).
    pub runs_tuned_mask: bool,
    /// Lossless decoding's drafter; `None` without `--lossless`.
    pub drafter: Option<Drafter>,
}

/// What a plan depends on besides the skip flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanInputs<'a> {
    /// Generated tokens SkipDecode's depth ramp spans (usually the token limit).
    pub planned_len: usize,
    /// Seed of the random strategy.
    pub seed: u64,
    /// The measured decode-time model, which `--speedup-mode measured` needs.
    pub cost: Option<&'a CostModel>,
    /// A calibration profile file given by flag; else the model's cached profile serves
    /// `--strategy calibrated`.
    pub profile: Option<&'a Path>,
}

impl RunSetup {
    /// Checks the lossless flags (before anything is loaded, so a wrong combination costs
    /// no loading), resolves and loads the model, and reads its tuning.
    pub fn load(model: &ModelArgs, skip: &SkipArgs, lossless: &LosslessArgs) -> Result<RunSetup> {
        let drafter = lossless.drafter()?;
        let path = model.resolve()?;
        let loaded = Model::load(&path, &model.model_options())?;
        let tuned = crate::tune::read_tuned(&loaded)?;
        Ok(RunSetup {
            runs_tuned_mask: tuned.is_some() && !overrides_tuned(skip),
            path,
            model: loaded,
            tuned,
            drafter,
        })
    }

    /// The plan of a run: a tuned file's own mask unless the skip flags name another
    /// configuration, else the skip flags' plan.
    pub fn plan(&self, skip: &SkipArgs, inputs: PlanInputs) -> Result<Plan> {
        plan_for(
            &self.path,
            self.model.n_layer(),
            self.tuned.as_ref(),
            skip,
            inputs,
        )
    }

    /// The plan decoding runs under: with lossless decoding, the plan its mask drafter
    /// drafts under ([`Plan::for_drafting`]: the run's plan, or 2x when that keeps every
    /// block); else the run's plan.
    pub fn decoding_plan(&self, plan: Plan) -> Plan {
        match self.drafter {
            Some(_) => plan.for_drafting(),
            None => plan,
        }
    }

    /// A tuned file's base model (the quality reference): `--base`, checked, else the
    /// cached catalog model the file names. `--base` for a file that is not tuned is bad
    /// input; an untuned file has no base.
    pub fn base(&self, args: &BaseArgs, model: &ModelArgs) -> Result<Option<(PathBuf, Model)>> {
        match &self.tuned {
            Some(info) => Ok(Some(load_base(
                &self.model,
                info,
                &self.path,
                args.base.as_deref(),
                &model.model_options(),
            )?)),
            None if args.base.is_some() => Err(BadInput(format!(
                "--base is for tuned files, and {} has no uniskip tuning metadata",
                self.path.display()
            ))
            .into()),
            None => Ok(None),
        }
    }

    /// What the run says about the file's tuning at start: the mask it was tuned for, and
    /// whether the flags' mask runs instead. `None` for an untuned file.
    pub fn tuned_notice(&self) -> Option<String> {
        let info = self.tuned.as_ref()?;
        Some(if self.runs_tuned_mask {
            format!("{}: starting at its mask", info.describe())
        } else {
            format!("{}; running the skip flags' mask instead", info.describe())
        })
    }
}

/// The plan of a run on the model file `path` of `n_layer` blocks, with `tuned` its tuning
/// metadata: the tuned file's own mask unless `skip` names another configuration, else
/// `skip`'s plan (with the model's calibration profile for `--strategy calibrated`). The
/// one rule [`RunSetup::plan`] and the server's per-request plans follow.
pub fn plan_for(
    path: &Path,
    n_layer: usize,
    tuned: Option<&TunedInfo>,
    skip: &SkipArgs,
    inputs: PlanInputs,
) -> Result<Plan> {
    if let Some(info) = tuned.filter(|_| !overrides_tuned(skip)) {
        return tuned_plan(info, n_layer, inputs.planned_len, inputs.seed);
    }
    let profile = skip.calibration_masks(Some(path), inputs.profile)?;
    skip.plan_with(
        n_layer,
        inputs.planned_len,
        inputs.seed,
        inputs.cost,
        profile.as_deref(),
    )
}
