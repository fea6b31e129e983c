//! `uniskip plan`: which blocks a target keeps, read from the file's header (no weights).

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use super::run::describe_probe;
use crate::engine::Model;
use crate::flags::{ModelArgs, SkipArgs};
use crate::measure::probe;
use crate::skip::{Mask, SpeedupMode, speedup_by_layers};

/// Show the mask a target gives: one cell per block, kept or skipped.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  uniskip plan --layers 30 --speedup 5            the paper's example: keeps 0,6,12,18,24,29
  uniskip plan -m gemma3 --speedup 1.5 --strategy early-exit
  uniskip plan --speedup 2 --speedup-mode measured    probes this machine first
  uniskip plan --layers 24 --speedup 2 --json")]
pub struct PlanArgs {
    /// The model and how to run it.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Plan for a model with L blocks instead of reading a model file.
    #[arg(long, value_name = "L", conflicts_with = "model",
          value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub layers: Option<u32>,
    /// Which blocks to skip.
    #[command(flatten)]
    pub skip: SkipArgs,
    /// Decode step to show (SkipDecode's mask changes with the generated position).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub step: usize,
    /// SkipDecode's ramp length in generated tokens.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub planned_len: usize,
    /// Seed of the random strategy.
    #[arg(long, value_name = "S", default_value_t = 42)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `uniskip plan`.
pub fn run(args: PlanArgs) -> Result<()> {
    let measured = args.skip.speedup_mode == SpeedupMode::Measured;
    if measured && args.layers.is_some() {
        return Err(crate::error::BadInput(
            "--speedup-mode measured needs a model to probe; use -m MODEL instead of --layers"
                .into(),
        )
        .into());
    }
    let (title, n_layer, path) = match args.layers {
        Some(l) => (format!("a model with {l} blocks"), l as usize, None),
        None => {
            let path = args.model.resolve()?;
            // The validator's summary is the header: no second parser runs here (see `gguf`).
            let header = crate::gguf::validate_file(&path)?;
            let name = header
                .name
                .clone()
                .unwrap_or_else(|| path.display().to_string());
            (
                format!(
                    "{name} ({}, {} blocks)",
                    header.architecture, header.block_count
                ),
                header.block_count,
                Some(path),
            )
        }
    };
    let probe = match (&path, measured) {
        (Some(path), true) => {
            let model = Model::load(path, &args.model.model_options())?;
            let threads = args.model.context_options(1).threads;
            let mut session = model.session(&args.model.context_options(1))?;
            let prompt = model.tokenize(crate::measure::PROBE_PROMPT, true)?;
            let (probe, from_cache) =
                probe::cached_or_measure(path, &mut session, &prompt, threads)
                    .context("probing decode speed")?;
            if !args.json {
                eprintln!("{}", describe_probe(&probe, n_layer, from_cache));
            }
            Some(probe)
        }
        _ => None,
    };
    let profile = args.skip.calibration_masks(path.as_deref(), None)?;
    let plan = args.skip.plan_with(
        n_layer,
        args.planned_len,
        args.seed,
        probe.as_ref().map(|p| &p.cost),
        profile.as_deref(),
    )?;
    let mask = plan.mask(args.step);
    let kept = mask.active_indices();
    let skipped = mask.skipped_indices();
    let by_layers = speedup_by_layers(n_layer, kept.len());
    let predicted = probe
        .as_ref()
        .map(|p| p.cost.predicted_speedup(kept.len(), n_layer));
    if args.json {
        let value = json!({
            "model": title,
            "n_layer": n_layer,
            "strategy": plan.spec().strategy().name(),
            "speedup_target": plan.target(),
            "speedup_mode": args.skip.speedup_mode.name(),
            "step": args.step,
            "kept": kept,
            "skipped": skipped,
            "speedup_by_layers": by_layers,
            "predicted_speedup": predicted,
            "max_speedup": probe.as_ref().map(|p| p.cost.max_speedup(n_layer)),
        });
        println!("{value}");
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{title}: {} at {:.2}x ({} mode){}",
        plan.spec().strategy().name(),
        plan.target(),
        args.skip.speedup_mode.name(),
        if plan.spec().depends_on_step() {
            format!(", step {}", args.step)
        } else {
            String::new()
        }
    )?;
    writeln!(out, "blocks   {}", mask)?;
    writeln!(out, "         {}", axis(n_layer))?;
    writeln!(out, "kept     {} of {n_layer}: {}", kept.len(), list(&kept))?;
    writeln!(
        out,
        "skipped  {}: {}",
        skipped.len(),
        if skipped.is_empty() {
            "none".into()
        } else {
            Mask::to_skip_list(mask)
        }
    )?;
    writeln!(out, "speedup by block count {by_layers:.2}x")?;
    if let Some(p) = predicted {
        writeln!(
            out,
            "predicted speedup on this machine {p:.2}x (decode time = a + b x blocks)"
        )?;
    }
    Ok(())
}

fn list(indices: &[usize]) -> String {
    indices
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Tick marks under the block map: the index of every tenth block.
fn axis(n_layer: usize) -> String {
    let mut line = String::new();
    let mut i = 0;
    while i < n_layer {
        let label = i.to_string();
        line.push_str(&label);
        let width = 10.min(n_layer - i);
        line.push_str(&" ".repeat(width.saturating_sub(label.len())));
        i += 10;
    }
    line.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::axis;

    #[test]
    fn axis_labels_every_tenth_block_under_its_cell() {
        assert_eq!(axis(30), "0         10        20");
        assert_eq!(axis(5), "0");
    }
}
