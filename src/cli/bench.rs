//! `uniskip bench`: decode speed under masks, measured in one run, interleaved.

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use super::args::ModelArgs;
use crate::bench::speed::{self, Config};
use crate::engine::Model;
use crate::skip::{Depth, Mask, StrategySpec, plan};

/// Measure decode tokens/s: no mask, full depth through the hook, and skip masks.
#[derive(Debug, Args)]
#[command(
    after_help = "Every configuration decodes the same number of tokens after the same \
full-depth prefill; rounds are interleaved (the order rotates) and medians are reported with \
the spread. Ratios compare configurations measured in this run only.

Example:
  uniskip bench --threads 2 --speedup 1.5 --speedup 2 --skip-layers 8-22"
)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Unified-skipping targets to measure (repeat the flag for several).
    #[arg(short = 's', long, value_name = "R", default_values_t = [1.5, 2.0], value_parser = super::parse_speedup)]
    pub speedup: Vec<f64>,
    /// Explicit skip lists to measure, e.g. `8-22` (repeat the flag for several).
    #[arg(long, value_name = "LIST")]
    pub skip_layers: Vec<String>,
    /// Tokens decoded per measurement.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(4..=4096))]
    pub tokens: u32,
    /// Measured rounds (after one warm-up round).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,
    /// Sequences decoded together.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub batch: u32,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `uniskip bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let path = args.model.resolve()?;
    let model = Model::load(&path, &args.model.model_options())?;
    let n_layer = model.n_layer();
    let mut configs = vec![
        Config {
            label: "no mask (hook unset)".into(),
            mask: None,
        },
        Config {
            label: "full depth via hook".into(),
            mask: Some(Mask::full(n_layer)),
        },
    ];
    for &r in &args.speedup {
        let mask = plan(&StrategySpec::Unified, n_layer, Depth::Ratio(r), 0)
            .with_context(|| format!("--speedup {r}"))?;
        configs.push(Config {
            label: format!("unified {r}x"),
            mask: Some(mask),
        });
    }
    for list in &args.skip_layers {
        let mask =
            Mask::from_skip_list(list, n_layer).with_context(|| format!("--skip-layers {list}"))?;
        configs.push(Config {
            label: format!("skip {list}"),
            mask: Some(mask),
        });
    }
    let prompt = model.tokenize(super::PROBE_PROMPT, true)?;
    let mut options = args.model.context_options(args.batch);
    options.n_ctx = options
        .n_ctx
        .max((prompt.len() as u32 + args.tokens + 8) * args.batch);
    let mut session = model.session(&options)?;
    let threads = options.threads;
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let results = speed::measure(
        &mut session,
        &prompt,
        args.tokens as usize,
        &configs,
        args.rounds as usize,
        &mut |done, total| {
            let elapsed = started.elapsed().as_secs_f64();
            let left = elapsed / done as f64 * (total - done) as f64;
            if tty {
                eprint!("\rmeasuring {done}/{total} ({left:.0} s left)   ");
                if done == total {
                    eprintln!();
                }
            }
        },
    )?;
    let base = results[0].median();
    if args.json {
        let rows: Vec<_> = results
            .iter()
            .map(|m| {
                let (lo, hi) = m.spread();
                json!({
                    "config": m.config.label,
                    "active_layers": m.config.mask.as_ref().map_or(n_layer, Mask::n_active),
                    "decode_tokens_per_s_median": m.median(),
                    "decode_tokens_per_s_min": lo,
                    "decode_tokens_per_s_max": hi,
                    "rounds": m.rounds,
                    "ratio_vs_no_mask": m.median() / base,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "model": model.name(),
                "n_layer": n_layer,
                "threads": threads,
                "batch": args.batch,
                "tokens_per_measurement": args.tokens,
                "rounds": args.rounds,
                "results": rows,
            })
        );
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} ({} blocks), {} threads, batch {}, {} tokens x {} rounds (medians, interleaved)\n",
        model.name(),
        n_layer,
        threads,
        args.batch,
        args.tokens,
        args.rounds
    )?;
    writeln!(
        out,
        "| configuration | active blocks | decode tok/s (median) | min..max | vs no mask |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    for m in &results {
        let (lo, hi) = m.spread();
        let active = m.config.mask.as_ref().map_or(n_layer, Mask::n_active);
        writeln!(
            out,
            "| {} | {active}/{n_layer} | {:.1} | {lo:.1}..{hi:.1} | {:.3}x |",
            m.config.label,
            m.median(),
            m.median() / base
        )?;
    }
    Ok(())
}
