//! `uniskip ppl`: the quality of one configuration against full depth, teacher-forced.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use super::progress::Progress;
use crate::engine::PrefillPolicy;
use crate::error::BadInput;
use crate::flags::lossless::LosslessArgs;
use crate::flags::setup::{PlanInputs, RunSetup};
use crate::flags::tuned::BaseArgs;
use crate::flags::{CorpusArgs, ModelArgs, SkipArgs};
use crate::quality::cross::evaluate_against;
use crate::quality::{Slice, evaluate};
use crate::skip::Mask;

/// Perplexity and divergence from full depth of one configuration.
#[derive(Debug, Args)]
#[command(
    after_help = "The paper's protocol: each window's prefix runs at full depth; its \
continuation is fed in under the configuration's masks (teacher-forced) and every prediction \
is scored: perplexity of the actual text, KL divergence from the full-depth distribution \
(mean and 99th percentile), and top-1 agreement with full depth. Windows come from the \
evaluation slice of the corpus (disjoint from the calibration slice).

A tuned file (from `uniskip tune`) runs its own mask unless --speedup, --skip-layers or \
--strategy say otherwise, and is scored against its base model at full depth (found in the \
model cache by the sha256 the file names, or given with --base): the full-depth row is then \
the base model's.

With --lossless the continuation is decoded the lossless way instead (the drafter proposes, \
full depth verifies in batches, a draft is kept when it equals the text) and every prediction \
is scored from verification's rows: the quality is computed, not assumed, and equals full \
depth's up to llama.cpp's rounding between batch shapes. The drafter's share of drafts equal \
to the text and to full depth's most likely token is reported beside it.

Example:
  uniskip ppl -t 2 --speedup 1.5
  uniskip ppl -t 2 --lossless --drafter mask --speedup 2
  uniskip ppl -t 2 --strategy calibrated --speedup 2 --corpus notes.txt
  uniskip ppl -t 2 -m smollm2.tuned-unified-1.5x.gguf"
)]
pub struct PplArgs {
    /// The model and how to run it.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Which blocks to skip.
    #[command(flatten)]
    pub skip: SkipArgs,
    /// The text and its windows.
    #[command(flatten)]
    pub corpus: CorpusArgs,
    /// A tuned file's base model.
    #[command(flatten)]
    pub base: BaseArgs,
    /// Calibration profile for `--strategy calibrated` [default: the model's cached one].
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Seed of the random strategy.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Lossless decoding (`--speedup`/`--strategy` choose the drafting mask).
    #[command(flatten)]
    pub lossless: LosslessArgs,
}

/// Runs `uniskip ppl`.
pub fn run(args: PplArgs) -> Result<()> {
    if args.skip.prefill != PrefillPolicy::Full {
        return Err(BadInput(
            "`uniskip ppl` runs every prefix at full depth (the paper's protocol): drop --prefill"
                .into(),
        )
        .into());
    }
    let setup = RunSetup::load(&args.model, &args.skip, &args.lossless)?;
    let model = &setup.model;
    let n_layer = model.n_layer();
    let shape = args.corpus.shape();
    // A tuned file runs its own mask unless the flags name one, and its reference is the
    // model it was tuned from.
    let tuned = setup.tuned.as_ref();
    let base = setup.base(&args.base, &args.model)?;
    let plan = setup.plan(
        &args.skip,
        PlanInputs {
            planned_len: shape.continuation + 1,
            seed: args.seed,
            cost: None,
            profile: args.profile.as_deref(),
        },
    )?;
    // Position j of the continuation is decode step j + 1.
    let masks: Vec<Mask> = (1..=shape.continuation)
        .map(|s| plan.mask(s).clone())
        .collect();
    let corpus = args.corpus.load()?;
    let reference_model = base.as_ref().map_or(model, |(_, b)| b);
    let windows = corpus
        .windows(
            reference_model,
            Slice::Evaluation,
            args.corpus.windows as usize,
            shape.len(),
        )
        .context("cutting the evaluation windows")?;
    if args.lossless.lossless {
        return super::ppl_lossless::run(&args, model, plan, &corpus, &windows, shape);
    }
    let threads = args.model.context_options(1).threads;
    let mut bar = Progress::new("evaluating");
    let group = crate::quality::windows_per_group(model.n_vocab(), shape.continuation);
    let (full, skipped) = match &base {
        Some((_, base_model)) => {
            let (on_base, on_tuned) = evaluate_against(
                base_model,
                model,
                threads,
                &windows,
                shape,
                group,
                &[vec![Mask::full(base_model.n_layer()); shape.continuation]],
                std::slice::from_ref(&masks),
                &mut |d, t| bar.update(d, t, ""),
            )?;
            (on_base[0].summary(), on_tuned[0].summary())
        }
        None => {
            let accs = evaluate(
                model,
                threads,
                &windows,
                shape,
                group,
                &[vec![Mask::full(n_layer); shape.continuation], masks.clone()],
                &mut |d, t| bar.update(d, t, ""),
            )?;
            (accs[0].summary(), accs[1].summary())
        }
    };
    let base_path = base.as_ref().map(|(p, _)| p.display().to_string());
    let reference = match &base_path {
        Some(p) => format!("the base model at full depth ({p})"),
        None => "full depth".to_string(),
    };
    let mean_active = masks.iter().map(|m| m.n_active() as f64).sum::<f64>() / masks.len() as f64;
    let strategy = plan.spec().strategy().name();
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = json!({
            "model": model.name(),
            "n_layer": n_layer,
            "strategy": strategy,
            "target": plan.target(),
            "active_blocks": mean_active,
            "kept_blocks": (!plan.spec().depends_on_step()).then(|| masks[0].active_indices()),
            "corpus": corpus.label(),
            "corpus_sha256": corpus.sha256(),
            "slice": Slice::Evaluation.name(),
            "windows": args.corpus.windows,
            "prefix_tokens": shape.prefix,
            "continuation_tokens": shape.continuation,
            "full": full,
            "skipped": skipped,
            "tuned": tuned,
            "reference": reference,
            "base_model": base_path,
            "base_sha256": tuned.as_ref().map(|t| &t.base_sha256),
        });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{} ({n_layer} blocks), {} windows of {} ({} slice), prefix {} + continuation {} tokens, {} scored",
        model.name(),
        args.corpus.windows,
        corpus.label(),
        Slice::Evaluation.name(),
        shape.prefix,
        shape.continuation,
        skipped.tokens
    )?;
    let (full_label, full_blocks, tuned_label) = match (&tuned, &base) {
        (Some(info), Some((_, b))) => {
            writeln!(out, "{}; KL and top-1 against {reference}", info.describe())?;
            ("full depth (base model)", b.n_layer(), " (tuned file)")
        }
        _ => ("full depth", n_layer, ""),
    };
    writeln!(
        out,
        "\n| configuration | blocks | PPL | KL mean | KL p99 | top-1 |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    writeln!(
        out,
        "| {full_label} | {full_blocks} | {:.3} | 0 | 0 | 100% |",
        full.perplexity
    )?;
    writeln!(
        out,
        "| {strategy} {:.3}x{tuned_label} | {mean_active:.1} | {:.3} | {:.4} | {:.4} | {:.1}% |",
        plan.target(),
        skipped.perplexity,
        skipped.kl_mean,
        skipped.kl_p99,
        100.0 * skipped.top1_agreement
    )?;
    Ok(())
}
