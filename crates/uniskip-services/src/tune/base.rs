//! What a tuned file (written by `uniskip tune`) implies on its own: the plan of the mask
//! it was tuned for, and the model it was tuned from (its base, the quality reference),
//! found by the sha256 in its metadata.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::TunedInfo;
use uniskip_engine::Model;
use uniskip_error::BadInput;
use uniskip_skip::{Mask, Plan, PlanSettings, Strategy};

/// The plan of a tuned file's own mask on its model of `n_layer` blocks: planned from the
/// file's strategy and target when that gives exactly the file's mask (so the target
/// reads as the file's R and can be changed from there, in the chat), else the mask as
/// it is (a pruned file, a calibrated placement).
pub fn tuned_plan(info: &TunedInfo, n_layer: usize, planned_len: usize, seed: u64) -> Result<Plan> {
    if let Some(plan) = schedule_plan(info, n_layer)? {
        return Ok(plan);
    }
    let mask = info.mask()?;
    let replanned = info.strategy.parse::<Strategy>().ok().and_then(|strategy| {
        let settings = PlanSettings {
            planned_len,
            seed,
            ..PlanSettings::new(strategy, info.speedup)
        };
        Plan::new(settings, n_layer)
            .ok()
            .filter(|p| !p.spec().depends_on_step() && p.mask(1) == &mask)
    });
    match replanned {
        Some(plan) => Ok(plan),
        None => Ok(Plan::new(PlanSettings::manual(mask), n_layer)?),
    }
}

/// The schedule of a file tuned for a mask that changes with the generated position
/// (SkipDecode): replanned from its strategy, target and the span it was trained with
/// (`uniskip.planned_len`), so every step runs the mask it was trained under. `None` for a
/// static mask.
pub fn schedule_plan(info: &TunedInfo, n_layer: usize) -> Result<Option<Plan>> {
    let Some(planned_len) = info.planned_len else {
        return Ok(None);
    };
    let strategy: Strategy = info
        .strategy
        .parse()
        .map_err(|e| BadInput(format!("the tuned file's strategy: {e}")))?;
    let settings = PlanSettings {
        planned_len,
        ..PlanSettings::new(strategy, info.speedup)
    };
    let plan = Plan::new(settings, n_layer)
        .map_err(|e| BadInput(format!("the tuned file's schedule: {e}")))?;
    if plan.mask(1).active_indices() != info.kept_blocks {
        return Err(BadInput(
            "the tuned file's schedule does not start with its kept blocks".into(),
        )
        .into());
    }
    Ok(Some(plan))
}

/// The mask the tuned file's mask stands for on its base model of `base_n_layer` blocks:
/// the same mask, or for a pruned file (only the kept blocks written) the mask it was
/// pruned with.
pub fn base_mask(tuned: &Model, info: &TunedInfo, base_n_layer: usize) -> Result<Mask> {
    let key = format!("{}pruned_from_blocks", super::meta::PREFIX);
    let mask = match tuned.metadata(&key) {
        // "20 of 30: 1-4,6,..." (the skipped blocks of the original mask).
        Some(value) => {
            let list = value.split_once(':').map_or("", |(_, l)| l.trim());
            if list.is_empty() {
                Mask::full(base_n_layer)
            } else {
                Mask::from_skip_list(list, base_n_layer)
                    .with_context(|| format!("{key} = `{value}`"))?
            }
        }
        None => info.mask()?,
    };
    if mask.n_layer() != base_n_layer {
        return Err(BadInput(format!(
            "the tuned file's mask has {} blocks but its base model has {base_n_layer}",
            mask.n_layer()
        ))
        .into());
    }
    Ok(mask)
}

/// The base model of the tuned file `tuned_path`: `explicit` (`--base`) when given, its
/// sha256 checked against the one the tuned file names, else the cached catalog model
/// with that sha256. Neither found is bad input, with what to do.
pub fn find_base(info: &TunedInfo, tuned_path: &Path, explicit: Option<&Path>) -> Result<PathBuf> {
    let want = info.base_sha256.to_ascii_lowercase();
    if let Some(path) = explicit {
        if !path.is_file() {
            return Err(BadInput(format!("--base {}: no such file", path.display())).into());
        }
        let got = crate::models::file_sha256(path)?;
        if got != want {
            return Err(BadInput(format!(
                "--base {} is not the model {} was tuned from: its sha256 is {}, the tuned file names {}",
                path.display(),
                tuned_path.display(),
                &got[..12.min(got.len())],
                &want[..12.min(want.len())]
            ))
            .into());
        }
        return Ok(path.to_path_buf());
    }
    if let Some(path) = crate::models::cached_model_with_sha256(&want)? {
        return Ok(path);
    }
    let cache = crate::models::cache_dir()
        .map_or_else(|_| "the model cache".into(), |d| d.display().to_string());
    Err(BadInput(format!(
        "{} was tuned from a model with sha256 {}, which is not among the cached catalog models in {cache}: give the base model with --base FILE (the quality reference of a tuned file)",
        tuned_path.display(),
        &want[..12.min(want.len())]
    ))
    .into())
}

/// A tuned file's base model, loaded, with its vocabulary checked against the tuned
/// file's (the windows are cut once, and scored by both).
pub fn load_base(
    tuned: &Model,
    info: &TunedInfo,
    tuned_path: &Path,
    explicit: Option<&Path>,
    options: &uniskip_engine::ModelOptions,
) -> Result<(PathBuf, Model)> {
    let path = find_base(info, tuned_path, explicit)?;
    let base = Model::load(&path, options)?;
    if base.n_vocab() != tuned.n_vocab() {
        return Err(BadInput(format!(
            "{} has a vocabulary of {} tokens but the tuned file {} has {}: not its base model",
            path.display(),
            base.n_vocab(),
            tuned_path.display(),
            tuned.n_vocab()
        ))
        .into());
    }
    Ok((path, base))
}
