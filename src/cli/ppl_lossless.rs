//! `uniskip ppl --lossless`: the quality of lossless decoding, computed from its
//! verification rows and set beside plain full depth's on the same windows.

use std::io::Write;

use anyhow::Result;
use serde_json::json;

use super::ppl::PplArgs;
use super::progress::Progress;
use crate::engine::{LlamaToken, Model};
use crate::quality::lossless::evaluate_lossless;
use crate::quality::{Corpus, Slice, WindowShape};
use crate::skip::Plan;

/// Scores `windows` through lossless decoding (drafting under `plan`, or the default
/// drafting mask when it keeps every block) and prints full depth and lossless side by side.
pub fn run(
    args: &PplArgs,
    model: &Model,
    plan: Plan,
    corpus: &Corpus,
    windows: &[Vec<LlamaToken>],
    shape: WindowShape,
) -> Result<()> {
    let n_layer = model.n_layer();
    let draft_model = args.lossless.load_draft_model(&args.model)?;
    let config = args
        .lossless
        .config(&args.model, 1, draft_model.as_ref())?
        .expect("called with --lossless");
    let plan = plan.for_drafting();
    let uses_mask = !matches!(
        config.drafter,
        crate::engine::Drafter::Lookup | crate::engine::Drafter::Model
    );
    let threads = args.model.context_options(1).threads;
    let mut bar = Progress::new("lossless");
    let q = evaluate_lossless(
        model,
        threads,
        windows,
        shape,
        crate::quality::windows_per_group(model.n_vocab(), shape.continuation),
        config,
        &|step| plan.mask(step).clone(),
        &mut |d, t| bar.update(d, t, "windows"),
    )?;
    let (full, batched, lossless) = (q.full.summary(), q.batched.summary(), q.lossless.summary());
    let d = &q.drafts;
    let mask_blocks = plan.mask(1).n_active();
    let strategy = plan.spec().strategy().name();
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = json!({
            "model": model.name(),
            "n_layer": n_layer,
            "lossless": true,
            "drafter": config.drafter.name(),
            "draft_max": config.draft_max,
            "draft_model": args.lossless.draft_model,
            "draft_strategy": uses_mask.then_some(strategy),
            "draft_target": uses_mask.then(|| plan.target()),
            "draft_active_blocks": uses_mask.then_some(mask_blocks),
            "corpus": corpus.label(),
            "corpus_sha256": corpus.sha256(),
            "slice": Slice::Evaluation.name(),
            "windows": windows.len(),
            "prefix_tokens": shape.prefix,
            "continuation_tokens": shape.continuation,
            "full": full,
            "full_batched": batched,
            "full_batched_perplexity": q.batched_perplexity,
            "lossless_quality": lossless,
            "drafts": d,
        });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{} ({n_layer} blocks), {} windows of {} ({} slice), prefix {} + continuation {} tokens, {} scored",
        model.name(),
        windows.len(),
        corpus.label(),
        Slice::Evaluation.name(),
        shape.prefix,
        shape.continuation,
        lossless.tokens
    )?;
    let drafter = if uses_mask {
        format!(
            "{}, mask {strategy} {:.3}x ({mask_blocks}/{n_layer} blocks)",
            config.drafter.name(),
            plan.target()
        )
    } else {
        config.drafter.name().to_string()
    };
    writeln!(
        out,
        "\n| configuration | blocks | PPL | KL mean | KL p99 | top-1 |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    writeln!(
        out,
        "| full depth, one token at a time (reference) | {n_layer} | {:.3} | 0 | 0 | 100% |",
        full.perplexity
    )?;
    writeln!(
        out,
        "| full depth, batched (as plain `ppl`) | {n_layer} | {:.3} | {:.2e} | {:.2e} | {:.1}% |",
        q.batched_perplexity,
        batched.kl_mean,
        batched.kl_p99,
        100.0 * batched.top1_agreement
    )?;
    writeln!(
        out,
        "| lossless ({drafter}) | {n_layer} | {:.3} | {:.2e} | {:.2e} | {:.1}% |",
        lossless.perplexity,
        lossless.kl_mean,
        lossless.kl_p99,
        100.0 * lossless.top1_agreement
    )?;
    writeln!(
        out,
        "\nAll rows are compared with full depth one token at a time. The lossless row is scored \
         from verification's full-depth rows; the batched row shows the scale of llama.cpp's \
         rounding between batch shapes."
    )?;
    writeln!(
        out,
        "Drafts: {} drafted in {} of {} rounds, {} kept ({:.1}%, equal to the text); {:.1}% of \
         the {} checked equal full depth's most likely token.",
        d.draft_tokens,
        d.drafting_rounds,
        d.rounds,
        d.kept_tokens,
        100.0 * d.kept_rate,
        100.0 * d.argmax_acceptance,
        d.checked_tokens
    )?;
    Ok(())
}
