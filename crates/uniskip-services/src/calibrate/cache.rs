//! A model's cached calibration profile: found in one place, checked in one place, and
//! searched (or resumed) when it is missing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{CalibrationSettings, Profile, Search, SearchProgress, profile_path};
use crate::quality::{Corpus, Slice, WindowShape};
use uniskip_engine::Model;

/// Default calibration slice: windows, prefix and continuation tokens. Small on purpose:
/// the search evaluates about L^2/2 + 4L placements (some 540 on a 30-block model).
pub const DEFAULT_SHAPE: (usize, WindowShape) = (
    4,
    WindowShape {
        prefix: 64,
        continuation: 8,
    },
);

/// A calibration profile and the file it came from.
#[derive(Debug, Clone)]
pub struct FoundProfile {
    /// The profile.
    pub profile: Profile,
    /// Where it was read.
    pub path: PathBuf,
}

/// The file the profile of the model with file hash `model_sha256` is read from:
/// `explicit`, else the model cache's.
pub fn profile_file(model_sha256: &str, explicit: Option<&Path>) -> Result<PathBuf> {
    match explicit {
        Some(p) => Ok(p.to_path_buf()),
        None => profile_path(model_sha256),
    }
}

/// Loads the calibration profile of the model with file hash `model_sha256` (`explicit`,
/// else the cached one). `None` when there is no such file; an error when it is damaged
/// or was made for another model file: a profile's placements are only meaningful for
/// the weights they were searched on.
pub fn find_profile(model_sha256: &str, explicit: Option<&Path>) -> Result<Option<FoundProfile>> {
    let path = profile_file(model_sha256, explicit)?;
    if !path.exists() {
        return Ok(None);
    }
    let profile = Profile::load(&path)?;
    if profile.model_sha256 != model_sha256 {
        return Err(uniskip_error::BadInput(format!(
            "the calibration profile {} was made for another model file (sha256 {}); \
             run `uniskip calibrate` for this one",
            path.display(),
            profile.model_sha256
        ))
        .into());
    }
    Ok(Some(FoundProfile { profile, path }))
}

/// Like [`find_profile`], but a missing profile is an error that says how to make one.
pub fn require_profile(
    model_sha256: &str,
    explicit: Option<&Path>,
    model_path: &Path,
) -> Result<FoundProfile> {
    find_profile(model_sha256, explicit)?.ok_or_else(|| {
        let looked = profile_file(model_sha256, explicit)
            .map_or_else(|_| "the model cache".into(), |p| p.display().to_string());
        uniskip_error::BadInput(format!(
            "no calibration profile for this model (looked for {looked}): run \
             `uniskip calibrate -m {}`",
            model_path.display()
        ))
        .into()
    })
}

/// Calibrates `model` on the calibration slice of `corpus`, resuming the partial profile
/// at `out` when its settings match (unless `fresh`), writing it after each count.
/// Returns the profile and whether anything was searched. Notices (resuming, starting
/// over) go to stderr; `progress` sees the search's progress.
#[allow(clippy::too_many_arguments)]
pub fn calibrate(
    model: &Model,
    model_sha256: &str,
    threads: i32,
    corpus: &Corpus,
    windows: usize,
    shape: WindowShape,
    out: &Path,
    fresh: bool,
    progress: &mut dyn FnMut(SearchProgress),
) -> Result<(Profile, bool)> {
    let settings = CalibrationSettings {
        corpus: corpus.label().to_string(),
        corpus_sha256: corpus.sha256().to_string(),
        windows,
        shape,
    };
    let resume = if fresh || !out.exists() {
        None
    } else {
        match Profile::load(out) {
            Ok(p) if p.complete && p.settings == settings && p.model_sha256 == model_sha256 => {
                eprintln!("calibration profile is complete: {}", out.display());
                return Ok((p, false));
            }
            Ok(p) if p.settings == settings && p.model_sha256 == model_sha256 => {
                eprintln!(
                    "resuming the calibration at {} kept blocks ({})",
                    p.steps.last().map_or(model.n_layer(), |s| s.kept) - 1,
                    out.display()
                );
                Some(p)
            }
            Ok(_) => {
                eprintln!(
                    "the profile at {} was made with other settings: starting over",
                    out.display()
                );
                None
            }
            Err(e) => {
                eprintln!("ignoring unreadable profile: {e:#}");
                None
            }
        }
    };
    let tokens = corpus
        .windows(model, Slice::Calibration, windows, shape.len())
        .context("cutting the calibration windows")?;
    let search = Search {
        model,
        model_sha256: model_sha256.to_string(),
        threads,
        settings,
        windows: tokens,
        lowest_kept: 2,
    };
    let profile = search.run(resume, &mut |p| p.save(out), progress)?;
    Ok((profile, true))
}
