//! `uniskip calibrate`: search, per kept count, which blocks to skip; cache the profile.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::args::ModelArgs;
use super::progress::{Progress, fmt_duration};
use crate::calibrate::{CalibrationSettings, Profile, Search, profile_path};
use crate::engine::Model;
use crate::quality::{Corpus, Slice, WindowShape};

/// Default calibration slice: windows, prefix and continuation tokens. Small on purpose:
/// the search evaluates about L^2/2 + 4L placements (some 540 on a 30-block model).
pub const DEFAULT_WINDOWS: u32 = 4;
/// See [`DEFAULT_WINDOWS`].
pub const DEFAULT_PREFIX: u32 = 64;
/// See [`DEFAULT_WINDOWS`].
pub const DEFAULT_CONTINUATION: u32 = 8;

/// Find, for every kept count, the blocks whose skipping costs the least.
#[derive(Debug, Args)]
#[command(
    after_help = "Greedy search on the calibration slice of the corpus (disjoint from the \
slice `uniskip bench` and `uniskip ppl` evaluate on): from full depth, for each kept count from \
L-1 down to 2, remove the block whose removal gives the least mean KL divergence from full \
depth (teacher-forced); the fixed placements (unified, early exit, deepest block run) are \
tried too, so the profile is never worse than them on the slice. A partial profile is written \
after each count: run the command again to resume.

Example:
  uniskip calibrate -m smollm2 -t 2"
)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text to calibrate on: `shakespeare` (default) or a UTF-8 file or directory.
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<String>,
    /// Windows in the calibration slice.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WINDOWS,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub windows: u32,
    /// Prefix tokens per window (full depth).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PREFIX,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub prefix: u32,
    /// Continuation tokens per window (scored).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONTINUATION,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub continuation: u32,
    /// Start over instead of resuming a partial profile.
    #[arg(long)]
    pub fresh: bool,
    /// Write the profile here instead of the model cache.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
}

/// Runs `uniskip calibrate`.
pub fn run(args: CalibrateArgs) -> Result<()> {
    let path = args.model.resolve()?;
    let model = Model::load(&path, &args.model.model_options())?;
    let sha = crate::models::file_sha256(&path)?;
    let corpus = Corpus::load(args.corpus.as_deref())?;
    let out = match &args.profile {
        Some(p) => p.clone(),
        None => profile_path(&sha)?,
    };
    let threads = args.model.context_options(1).threads;
    let shape = WindowShape {
        prefix: args.prefix as usize,
        continuation: args.continuation as usize,
    };
    let (profile, _) = calibrate(
        &model,
        &sha,
        threads,
        &corpus,
        args.windows as usize,
        shape,
        &out,
        args.fresh,
        "calibrating",
    )?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{} ({} blocks): {} calibrated counts, first and last block always kept: {}",
        profile.model_name,
        profile.n_layer,
        profile.steps.len(),
        if profile.first_and_last_kept {
            "yes"
        } else {
            "no"
        }
    )?;
    writeln!(
        stdout,
        "\n| kept | KL mean (calibrated) | KL mean (unified) | chosen | skipped blocks |"
    )?;
    writeln!(stdout, "|---|---|---|---|---|")?;
    for s in &profile.steps {
        let skipped: Vec<String> = (0..profile.n_layer)
            .filter(|b| !s.kept_blocks.contains(b))
            .map(|b| b.to_string())
            .collect();
        writeln!(
            stdout,
            "| {} | {:.4} | {:.4} | {} | {} |",
            s.kept,
            s.kl_mean,
            s.unified_kl_mean,
            s.chosen,
            skipped.join(",")
        )?;
    }
    writeln!(
        stdout,
        "\nprofile: {} (search time {})",
        out.display(),
        fmt_duration(std::time::Duration::from_secs_f64(profile.seconds))
    )?;
    Ok(())
}

/// Calibrates `model` on the calibration slice of `corpus`, resuming the partial profile
/// at `out` when its settings match (unless `fresh`), writing it after each count.
/// Returns the profile and whether anything was searched. `label` names the progress bar.
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
    label: &str,
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
    let mut bar = Progress::new(label);
    let profile = search.run(resume, &mut |p| p.save(out), &mut |s| {
        bar.update(s.done, s.total, &format!("(count {})", s.kept))
    })?;
    Ok((profile, true))
}
