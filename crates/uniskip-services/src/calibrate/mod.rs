//! Calibrated placement: for every kept count, which blocks to skip.
//!
//! Greedy search on a calibration slice of a corpus (disjoint from the evaluation slice,
//! see [`crate::quality::corpus`]), minimizing the mean KL divergence of the teacher-forced
//! continuation from full depth:
//!
//! - start from full depth; for each count `k` from `L - 1` down to 2, try removing each
//!   block the previous count kept (the first and the last included) and keep the removal
//!   that costs the least;
//! - also try the fixed placements for `k` (unified, early exit, the deepest block run),
//!   and take one of them when it beats the greedy step, so on the calibration slice the
//!   profile is never worse than any of them; the search goes on from whatever was taken.
//!
//! Whether the first and last blocks stay kept is what the search finds; the profile says
//! so per count and overall. A profile is written after each count, so an interrupted
//! search resumes where it stopped. Profiles are cached per model file, by its sha256, in
//! `<model cache>/profiles/<sha256>.json`.

mod cache;

pub use cache::{
    DEFAULT_SHAPE, FoundProfile, calibrate, find_profile, profile_file, require_profile,
};

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::quality::{TeacherForcing, WindowShape};
use crate::utc;
use uniskip_engine::{LlamaToken, Model};
use uniskip_skip::{BlockPlacement, Depth, Mask, StrategySpec, plan};

/// Version of the profile file layout.
pub const FORMAT: u32 = 1;

/// What the search optimizes, as written into profiles.
pub const OBJECTIVE: &str = "mean per-token KL(full || skipped) in nats, teacher-forced";

/// Where the search ran: enough to tell whether a saved profile can be resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalibrationSettings {
    /// What the corpus was loaded from.
    pub corpus: String,
    /// sha256 of the corpus text.
    pub corpus_sha256: String,
    /// Windows of the calibration slice.
    pub windows: usize,
    /// How each window is cut.
    pub shape: WindowShape,
}

/// The placement chosen for one kept count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Blocks kept.
    pub kept: usize,
    /// The kept blocks, ascending.
    pub kept_blocks: Vec<usize>,
    /// How it was found: `greedy (removed block B)`, or the name of a fixed placement.
    pub chosen: String,
    /// Mean KL divergence from full depth on the calibration slice.
    pub kl_mean: f64,
    /// Top-1 agreement with full depth on the calibration slice.
    pub top1_agreement: f64,
    /// The unified placement's mean KL for the same count, for comparison.
    pub unified_kl_mean: f64,
    /// Whether block 0 and block `L - 1` are kept.
    pub first_and_last_kept: bool,
    /// Placements evaluated for this count.
    pub evaluations: usize,
    /// Time spent on this count.
    pub seconds: f64,
}

/// A calibration profile: the best placement found for each kept count of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// [`FORMAT`].
    pub format: u32,
    /// sha256 of the model file.
    pub model_sha256: String,
    /// The model's name.
    pub model_name: String,
    /// The model's block count.
    pub n_layer: usize,
    /// The slice searched on.
    pub settings: CalibrationSettings,
    /// [`OBJECTIVE`].
    pub objective: String,
    /// One step per count, from `L - 1` down.
    pub steps: Vec<Step>,
    /// Whether every count down to 2 is done.
    pub complete: bool,
    /// Whether every placement keeps the first and the last block.
    pub first_and_last_kept: bool,
    /// Search time over all sessions, in seconds.
    pub seconds: f64,
    /// When the profile was last written (UTC).
    pub updated: String,
}

impl Profile {
    /// The placement for `kept` blocks, if calibrated.
    pub fn mask(&self, kept: usize) -> Option<Mask> {
        self.steps
            .iter()
            .find(|s| s.kept == kept)
            .map(|s| kept_mask(self.n_layer, &s.kept_blocks))
    }

    /// Every calibrated placement (for [`StrategySpec::Calibrated`]).
    pub fn masks(&self) -> Vec<Mask> {
        self.steps
            .iter()
            .map(|s| kept_mask(self.n_layer, &s.kept_blocks))
            .collect()
    }

    /// The strategy that uses this profile.
    pub fn spec(&self) -> StrategySpec {
        StrategySpec::Calibrated {
            masks: self.masks(),
        }
    }

    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Profile> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("reading calibration profile {}", path.display()))?;
        let profile: Profile = serde_json::from_str(&text)
            .with_context(|| format!("parsing calibration profile {}", path.display()))?;
        if profile.format != FORMAT {
            bail!(
                "calibration profile {} has format {}, this uniskip reads {FORMAT}: run `uniskip calibrate --fresh`",
                path.display(),
                profile.format
            );
        }
        // Masks are built from the steps without further checks: a hand-edited or foreign
        // file must fail here, with its name, not later.
        for step in &profile.steps {
            let sorted = step.kept_blocks.windows(2).all(|w| w[0] < w[1]);
            let inside = step.kept_blocks.iter().all(|&b| b < profile.n_layer);
            if !sorted || !inside || step.kept_blocks.len() != step.kept || step.kept < 2 {
                bail!(
                    "calibration profile {} is damaged: its step for {} kept blocks lists \
                     {:?} of a {}-block model; run `uniskip calibrate --fresh`",
                    path.display(),
                    step.kept,
                    step.kept_blocks,
                    profile.n_layer
                );
            }
        }
        Ok(profile)
    }

    /// Writes the profile (to a temporary file renamed into place, so a reader never sees
    /// half a file).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("json.part");
        let text = serde_json::to_string_pretty(self)?;
        fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

fn kept_mask(n_layer: usize, kept: &[usize]) -> Mask {
    let mut active = vec![false; n_layer];
    for &b in kept {
        active[b] = true;
    }
    Mask::from_active(active).expect("checked by Profile::load: at least 2 blocks")
}

/// Where the profile of the model with file hash `model_sha256` is cached.
pub fn profile_path(model_sha256: &str) -> Result<PathBuf> {
    Ok(crate::models::cache_dir()?
        .join("profiles")
        .join(format!("{model_sha256}.json")))
}

/// The cost of what does not shrink with skipping (embeddings, output head), in blocks:
/// weights progress so that the time left is right although deep counts cost more.
const FIXED_COST: usize = 10;

/// Progress of a search, in work units (an evaluation at `k` kept blocks weighs about
/// `k + 10`).
#[derive(Debug, Clone, Copy)]
pub struct SearchProgress {
    /// Work done so far.
    pub done: usize,
    /// Work of the whole search.
    pub total: usize,
    /// The kept count being searched.
    pub kept: usize,
}

/// A search to run: the model and the calibration windows.
pub struct Search<'a> {
    /// The model.
    pub model: &'a Model,
    /// sha256 of the model file.
    pub model_sha256: String,
    /// CPU threads.
    pub threads: i32,
    /// The calibration slice's description.
    pub settings: CalibrationSettings,
    /// The calibration windows (`settings.windows` of them, `settings.shape.len()` tokens each).
    pub windows: Vec<Vec<LlamaToken>>,
    /// The last count to search (2 for a complete profile).
    pub lowest_kept: usize,
}

impl Search<'_> {
    /// Searches every count from `L - 1` down to `lowest_kept`, continuing `resume` when it is a
    /// partial profile of the same model and settings (a mismatching one is ignored).
    /// `on_step` receives the profile after each count (to save it); `progress` after each
    /// evaluation.
    pub fn run(
        &self,
        resume: Option<Profile>,
        on_step: &mut dyn FnMut(&Profile) -> Result<()>,
        progress: &mut dyn FnMut(SearchProgress),
    ) -> Result<Profile> {
        let n = self.model.n_layer();
        if n < 3 {
            bail!("a model with {n} blocks has nothing to calibrate");
        }
        let mut profile = match resume {
            Some(p) if self.can_resume(&p) => p,
            _ => Profile {
                format: FORMAT,
                model_sha256: self.model_sha256.clone(),
                model_name: self.model.name().to_string(),
                n_layer: n,
                settings: self.settings.clone(),
                objective: OBJECTIVE.into(),
                steps: Vec::new(),
                complete: false,
                first_and_last_kept: true,
                seconds: 0.0,
                updated: utc::timestamp(utc::now()),
            },
        };
        if profile.complete {
            return Ok(profile);
        }
        let c = self.settings.shape.continuation;
        let mut current = profile
            .steps
            .last()
            .map_or_else(|| Mask::full(n), |s| kept_mask(n, &s.kept_blocks));
        let first_kept = current.n_active() - 1;
        // Greedy candidates (one per kept block) plus the fixed placements, per count.
        let lowest = self.lowest_kept.max(2);
        // Progress in work units: an evaluation at k kept blocks costs about k + FIXED_COST.
        let total: usize = (lowest..=first_kept)
            .map(|k| (k + 1 + fixed_placements().len()) * (k + FIXED_COST))
            .sum();
        let mut done = 0;
        progress(SearchProgress {
            done,
            total,
            kept: first_kept,
        });
        let mut tf = TeacherForcing::new(
            self.model,
            self.threads,
            self.windows.clone(),
            self.settings.shape,
        )?;
        for kept in (lowest..=first_kept).rev() {
            let started = Instant::now();
            let mut candidates: Vec<(String, Mask)> = current
                .active_indices()
                .into_iter()
                .map(|b| {
                    let mut active = current.as_slice().to_vec();
                    active[b] = false;
                    (
                        format!("greedy (removed block {b})"),
                        Mask::from_active(active).expect("k >= 2 blocks stay"),
                    )
                })
                .collect();
            for (name, spec) in fixed_placements() {
                let mask = plan(&spec, n, Depth::Kept(kept), 0)?;
                candidates.push((name.to_string(), mask));
            }
            let mut best: Option<(usize, f64, f64)> = None;
            let mut unified_kl = f64::NAN;
            let mut scored: Vec<(Mask, f64, f64)> = Vec::new();
            let mut evaluations = 0;
            for (i, (name, mask)) in candidates.iter().enumerate() {
                let (kl, top1) = match scored.iter().find(|(m, _, _)| m == mask) {
                    Some(&(_, kl, top1)) => (kl, top1),
                    None => {
                        let acc = tf.score(&vec![mask.clone(); c])?;
                        evaluations += 1;
                        let s = (acc.kl_mean(), acc.summary().top1_agreement);
                        scored.push((mask.clone(), s.0, s.1));
                        s
                    }
                };
                if name == "unified" {
                    unified_kl = kl;
                }
                if best.is_none_or(|(_, b, _)| kl < b) {
                    best = Some((i, kl, top1));
                }
                done += kept + FIXED_COST;
                progress(SearchProgress { done, total, kept });
            }
            let (i, kl_mean, top1_agreement) = best.expect("candidates are never empty");
            current = candidates[i].1.clone();
            let first_and_last_kept = current.is_active(0) && current.is_active(n - 1);
            let seconds = started.elapsed().as_secs_f64();
            profile.steps.push(Step {
                kept,
                kept_blocks: current.active_indices(),
                chosen: candidates[i].0.clone(),
                kl_mean,
                top1_agreement,
                unified_kl_mean: unified_kl,
                first_and_last_kept,
                evaluations,
                seconds,
            });
            profile.first_and_last_kept &= first_and_last_kept;
            profile.seconds += seconds;
            profile.complete = kept == 2;
            profile.updated = utc::timestamp(utc::now());
            on_step(&profile)?;
        }
        Ok(profile)
    }

    fn can_resume(&self, p: &Profile) -> bool {
        p.format == FORMAT
            && p.model_sha256 == self.model_sha256
            && p.n_layer == self.model.n_layer()
            && p.settings == self.settings
    }
}

/// The fixed placements every count is also checked against.
fn fixed_placements() -> [(&'static str, StrategySpec); 3] {
    [
        ("unified", StrategySpec::Unified),
        ("early-exit", StrategySpec::EarlyExit),
        (
            "block",
            StrategySpec::Block {
                placement: BlockPlacement::Deepest,
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(steps: &[(usize, &[usize])]) -> Profile {
        Profile {
            format: FORMAT,
            model_sha256: "ab".into(),
            model_name: "m".into(),
            n_layer: 6,
            settings: CalibrationSettings {
                corpus: "c".into(),
                corpus_sha256: "cd".into(),
                windows: 1,
                shape: WindowShape {
                    prefix: 4,
                    continuation: 4,
                },
            },
            objective: OBJECTIVE.into(),
            steps: steps
                .iter()
                .map(|&(kept, blocks)| Step {
                    kept,
                    kept_blocks: blocks.to_vec(),
                    chosen: "greedy".into(),
                    kl_mean: 0.1,
                    top1_agreement: 0.9,
                    unified_kl_mean: 0.2,
                    first_and_last_kept: true,
                    evaluations: 3,
                    seconds: 0.5,
                })
                .collect(),
            complete: false,
            first_and_last_kept: true,
            seconds: 1.0,
            updated: "2025-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_profile_gives_its_mask_per_count_and_as_a_strategy() {
        let p = profile(&[(5, &[0, 1, 2, 3, 5]), (4, &[0, 2, 3, 5])]);
        assert_eq!(p.mask(4).unwrap().active_indices(), vec![0, 2, 3, 5]);
        assert_eq!(p.mask(3), None);
        let m = plan(&p.spec(), 6, Depth::Kept(5), 0).unwrap();
        assert_eq!(m.skipped_indices(), vec![4]);
    }

    #[test]
    fn a_profile_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("p.json");
        let p = profile(&[(5, &[0, 1, 2, 3, 5])]);
        p.save(&path).unwrap();
        assert_eq!(Profile::load(&path).unwrap(), p);
        assert!(!path.with_extension("json.part").exists());
    }

    #[test]
    fn a_profile_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        let mut p = profile(&[]);
        p.format = FORMAT + 1;
        p.save(&path).unwrap();
        let err = Profile::load(&path).unwrap_err().to_string();
        assert!(err.contains("--fresh"), "{err}");
    }
}
