//! `uniskip calibrate`: search, per kept count, which blocks to skip; cache the profile.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::progress::{Progress, fmt_duration};
use crate::calibrate::{calibrate, profile_file};
use crate::engine::Model;
use crate::flags::{CorpusArgs, ModelArgs};

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
  uniskip calibrate -m smollm2 -t 2",
    // A small slice: the search evaluates some L^2/2 + 4L placements.
    mut_arg("windows", |a| a.default_value("4")),
    mut_arg("continuation", |a| a.default_value("8"))
)]
pub struct CalibrateArgs {
    /// The model and how to run it.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text and its windows.
    #[command(flatten)]
    pub corpus: CorpusArgs,
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
    let corpus = args.corpus.load()?;
    let out = profile_file(&sha, args.profile.as_deref())?;
    let threads = args.model.context_options(1).threads;
    let mut bar = Progress::new("calibrating");
    let (profile, _) = calibrate(
        &model,
        &sha,
        threads,
        &corpus,
        args.corpus.windows as usize,
        args.corpus.shape(),
        &out,
        args.fresh,
        &mut |s| bar.update(s.done, s.total, &format!("(count {})", s.kept)),
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
