//! `uniskip ppl`: the quality of one configuration against full depth, teacher-forced.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use super::args::{ModelArgs, SkipArgs};
use super::progress::Progress;
use crate::calibrate::{Profile, profile_path};
use crate::engine::{Model, PrefillPolicy};
use crate::quality::{Corpus, Slice, WindowShape, evaluate};
use crate::skip::{Mask, Strategy};

/// Default evaluation slice of `ppl` and `bench`: windows, prefix and continuation tokens.
pub const DEFAULT_WINDOWS: u32 = 16;
/// See [`DEFAULT_WINDOWS`].
pub const DEFAULT_PREFIX: u32 = 64;
/// See [`DEFAULT_WINDOWS`].
pub const DEFAULT_CONTINUATION: u32 = 64;

/// Perplexity and divergence from full depth of one configuration.
#[derive(Debug, Args)]
#[command(
    after_help = "The paper's protocol: each window's prefix runs at full depth; its \
continuation is fed in under the configuration's masks (teacher-forced) and every prediction \
is scored: perplexity of the actual text, KL divergence from the full-depth distribution \
(mean and 99th percentile), and top-1 agreement with full depth. Windows come from the \
evaluation slice of the corpus (disjoint from the calibration slice).

Example:
  uniskip ppl -t 2 --speedup 1.5
  uniskip ppl -t 2 --strategy calibrated --speedup 2 --corpus notes.txt"
)]
pub struct PplArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub skip: SkipArgs,
    /// Text to evaluate on: `shakespeare` (default) or a UTF-8 file or directory.
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<String>,
    /// Windows to evaluate.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_WINDOWS,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub windows: u32,
    /// Prefix tokens per window (full depth).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PREFIX,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub prefix: u32,
    /// Continuation tokens per window (scored under the masks).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONTINUATION,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub continuation: u32,
    /// Calibration profile for `--strategy calibrated` [default: the model's cached one].
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Seed of the random strategy.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Loads the calibration profile for the model file `path`: `explicit`, or the cached one.
pub fn load_profile(path: &Path, explicit: Option<&Path>) -> Result<(Profile, PathBuf)> {
    let file = match explicit {
        Some(p) => p.to_path_buf(),
        None => profile_path(&crate::models::file_sha256(path)?)?,
    };
    if !file.exists() {
        bail!(
            "no calibration profile for this model (looked for {}): run `uniskip calibrate -m {}`",
            file.display(),
            path.display()
        );
    }
    Ok((Profile::load(&file)?, file))
}

/// Runs `uniskip ppl`.
pub fn run(args: PplArgs) -> Result<()> {
    if args.skip.prefill != PrefillPolicy::Full {
        bail!(
            "`uniskip ppl` runs every prefix at full depth (the paper's protocol): drop --prefill"
        );
    }
    let path = args.model.resolve()?;
    let model = Model::load(&path, &args.model.model_options())?;
    let n_layer = model.n_layer();
    let shape = WindowShape {
        prefix: args.prefix as usize,
        continuation: args.continuation as usize,
    };
    let calibrated =
        if args.skip.strategy == Strategy::Calibrated && args.skip.skip_layers.is_none() {
            Some(load_profile(&path, args.profile.as_deref())?.0.masks())
        } else {
            None
        };
    let plan = args.skip.plan_with(
        n_layer,
        shape.continuation + 1,
        args.seed,
        None,
        calibrated.as_deref(),
    )?;
    // Position j of the continuation is decode step j + 1.
    let masks: Vec<Mask> = (1..=shape.continuation).map(|s| plan.mask(s)).collect();
    let corpus = Corpus::load(args.corpus.as_deref())?;
    let windows = corpus
        .windows(
            &model,
            Slice::Evaluation,
            args.windows as usize,
            shape.len(),
        )
        .context("cutting the evaluation windows")?;
    let threads = args.model.context_options(1).threads;
    let mut bar = Progress::new("evaluating");
    let accs = evaluate(
        &model,
        threads,
        &windows,
        shape,
        crate::quality::windows_per_group(model.n_vocab(), shape.continuation),
        &[vec![Mask::full(n_layer); shape.continuation], masks.clone()],
        &mut |d, t| bar.update(d, t, ""),
    )?;
    let (full, skipped) = (accs[0].summary(), accs[1].summary());
    let mean_active = masks.iter().map(|m| m.n_active() as f64).sum::<f64>() / masks.len() as f64;
    let strategy = plan.spec.strategy().name();
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = json!({
            "model": model.name(),
            "n_layer": n_layer,
            "strategy": strategy,
            "target": plan.target(),
            "active_blocks": mean_active,
            "kept_blocks": (!plan.spec.depends_on_step()).then(|| masks[0].active_indices()),
            "corpus": corpus.label(),
            "corpus_sha256": corpus.sha256(),
            "slice": Slice::Evaluation.name(),
            "windows": args.windows,
            "prefix_tokens": shape.prefix,
            "continuation_tokens": shape.continuation,
            "full": full,
            "skipped": skipped,
        });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{} ({n_layer} blocks), {} windows of {} ({} slice), prefix {} + continuation {} tokens, {} scored",
        model.name(),
        args.windows,
        corpus.label(),
        Slice::Evaluation.name(),
        shape.prefix,
        shape.continuation,
        skipped.tokens
    )?;
    writeln!(
        out,
        "\n| configuration | blocks | PPL | KL mean | KL p99 | top-1 |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    writeln!(
        out,
        "| full depth | {n_layer} | {:.3} | 0 | 0 | 100% |",
        full.perplexity
    )?;
    writeln!(
        out,
        "| {strategy} {:.3}x | {mean_active:.1} | {:.3} | {:.4} | {:.4} | {:.1}% |",
        plan.target(),
        skipped.perplexity,
        skipped.kl_mean,
        skipped.kl_p99,
        100.0 * skipped.top1_agreement
    )?;
    Ok(())
}
