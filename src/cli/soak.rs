//! `uniskip soak`: a long run with random mask changes, oracles and memory checked.

use anyhow::{Result, bail};
use clap::Args;

use crate::bench::soak::{ORACLE_TOLERANCE, SoakOptions, soak};
use crate::engine::{ContextOptions, Model};
use crate::flags::ModelArgs;

/// Generate many tokens across many conversations, changing the mask at random points;
/// check the switch and repair oracles at checkpoints and follow resident memory.
#[derive(Debug, Args)]
#[command(
    after_help = "Fails (exit 1) when an oracle differs by more than the tolerance or \
resident memory grows by more than 20% between the first and the last checkpoint.

Example:
  uniskip soak --threads 2 --tokens 20000"
)]
pub struct SoakArgs {
    /// The model and how to run it.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Tokens to generate in all.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub tokens: usize,
    /// Check the oracles every N generated tokens.
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    pub checkpoint_every: usize,
    /// Seed of every random choice.
    #[arg(long, value_name = "S", default_value_t = 7)]
    pub seed: u64,
    /// Print the report as JSON at the end.
    #[arg(long)]
    pub json: bool,
}

/// Runs `uniskip soak`.
pub fn run(args: SoakArgs) -> Result<()> {
    let path = args.model.resolve()?;
    let model = Model::load(&path, &args.model.model_options())?;
    args.model.check_context(&model)?;
    let options = SoakOptions {
        tokens: args.tokens,
        checkpoint_every: args.checkpoint_every.max(1),
        seed: args.seed,
        context: ContextOptions {
            // The oracle is exact, not loose: a replay matches the live run bit for bit as
            // long as both stay on the same llama.cpp kernel paths. Those change with the
            // batch size (above about 48 tokens) and with the cached length (past 256 the
            // attention splits its work differently for one token than for a batch), so
            // batches of 32 and conversations within 256 tokens.
            n_batch: 32,
            n_ctx: 256,
            ..args.model.context_options(1)
        },
    };
    eprintln!(
        "soak: {} tokens on {} ({} threads), oracle every {} tokens",
        options.tokens,
        model.name(),
        options.context.threads,
        options.checkpoint_every
    );
    let report = soak(&model, &options, &mut |c| {
        eprintln!(
            "{:>6} tokens | {:>3} conversations | {:>4} masks | {:>5} tokens repaired | RSS {:>7.1} MiB | oracle max |dlogit| {:.2e} over {} tokens",
            c.generated,
            c.conversations,
            c.mask_changes,
            c.repair_tokens,
            c.rss_mib,
            c.oracle_max_diff,
            c.checked_tokens
        );
    })?;
    let (first, last) = (
        report.checkpoints.first().map_or(0.0, |c| c.rss_mib),
        report.checkpoints.last().map_or(0.0, |c| c.rss_mib),
    );
    let growth = if first > 0.0 { last / first - 1.0 } else { 0.0 };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    eprintln!(
        "soak: {} tokens in {:.0} s ({:.1} tok/s); RSS {first:.1} -> {last:.1} MiB ({:+.1}%); worst oracle difference {:.2e} (tolerance {ORACLE_TOLERANCE:.0e})",
        report.generated,
        report.seconds,
        report.generated as f64 / report.seconds,
        growth * 100.0,
        report.worst_diff
    );
    if report.worst_diff > ORACLE_TOLERANCE {
        bail!(
            "an oracle failed: the live state differs from a fresh replay by {:.3e}",
            report.worst_diff
        );
    }
    if growth > 0.20 {
        bail!(
            "resident memory grew by {:.0}% over the run",
            growth * 100.0
        );
    }
    Ok(())
}
