//! `uniskip run`: one generation, streamed to stdout, with a summary of what it cost.

use std::io::{IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use super::args::{ModelArgs, SamplingArgs, SkipArgs};
use crate::bench::probe::{self, Probe};
use crate::engine::{ChatMessage, Model, Request, generate};
use crate::skip::SpeedupMode;

/// One line on what the probe measured and what it means.
pub fn describe_probe(probe: &Probe, n_layer: usize, from_cache: bool) -> String {
    format!(
        "cost model ({}, {} threads): {:.2} ms + {:.3} ms per block per token; full depth {:.1} tok/s; largest reachable speedup {:.2}x (2 blocks)",
        if from_cache {
            "cached probe"
        } else {
            "probed now"
        },
        probe.threads,
        probe.cost.a_s * 1e3,
        probe.cost.b_s * 1e3,
        probe.full_depth_tokens_per_s(n_layer),
        probe.cost.max_speedup(n_layer),
    )
}

/// Generate text from a prompt, skipping blocks.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  uniskip run -p 'The capital of France is' -n 32
  uniskip run --chat -p 'Write a haiku about rain' --speedup 1.5
  uniskip run -p 'Once upon a time' --skip-layers 10-19 --json
  uniskip run -f prompt.txt --batch 8 --speedup 2")]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt text.
    #[arg(
        short = 'p',
        long,
        value_name = "PROMPT",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub prompt: Option<String>,
    /// Read the prompt from a file (`-` for standard input).
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Most tokens to generate per sequence.
    #[arg(short = 'n', long = "max-tokens", value_name = "N", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_tokens: u32,
    #[command(flatten)]
    pub skip: SkipArgs,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Generate N sequences from the prompt together, under one mask (seeds differ).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub batch: u32,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

fn read_prompt(args: &RunArgs) -> Result<String> {
    let text = match (&args.prompt, &args.file) {
        (Some(p), _) => p.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading the prompt from stdin")?;
            String::from_utf8(buf).context("the prompt on stdin is not valid UTF-8")?
        }
        (None, Some(path)) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            String::from_utf8(bytes)
                .with_context(|| format!("{} is not valid UTF-8 text", path.display()))?
        }
        (None, None) => bail!("give a prompt with -p TEXT or -f FILE"),
    };
    if text.contains('\0') {
        bail!("the prompt contains a NUL byte");
    }
    if text.trim().is_empty() {
        bail!("the prompt is empty");
    }
    Ok(text)
}

/// Runs `uniskip run`.
pub fn run(args: RunArgs) -> Result<()> {
    let prompt = read_prompt(&args)?;
    let sampling = args.sampling.sampling()?;
    let path = args.model.resolve()?;
    let model = Model::load(&path, &args.model.model_options())?;
    let n_seq = args.batch;
    let mut session = model.session(&args.model.context_options(n_seq))?;
    let probe = if args.skip.speedup_mode == SpeedupMode::Measured {
        let threads = args.model.context_options(1).threads;
        let probe_prompt = model.tokenize(super::PROBE_PROMPT, true)?;
        let (probe, from_cache) =
            probe::cached_or_measure(&path, &mut session, &probe_prompt, threads)?;
        session.clear();
        if !args.json {
            eprintln!("{}", describe_probe(&probe, model.n_layer(), from_cache));
        }
        Some(probe)
    } else {
        None
    };
    let plan = args.skip.plan_with_cost(
        model.n_layer(),
        args.max_tokens as usize,
        u64::from(args.sampling.seed),
        probe.as_ref().map(|p| &p.cost),
    )?;
    let first = plan.mask(0);
    if let Some(w) = model.unverified_warning().filter(|_| !first.is_full()) {
        eprintln!("{w}");
    }

    let text = if args.chat {
        if !model.has_chat_template() {
            bail!(
                "{} has no chat template; run without --chat for plain continuation",
                model.name()
            );
        }
        model.apply_chat_template(&[ChatMessage {
            role: "user".into(),
            content: prompt,
        }])?
    } else {
        prompt
    };
    let tokens = model.tokenize(&text, true)?;
    let prompts = vec![tokens; n_seq as usize];

    let stream = !args.json && n_seq == 1;
    let mut stdout = std::io::stdout().lock();
    let mut masks_used = Vec::new();
    let generation = generate(
        &mut session,
        &Request {
            prompts: &prompts,
            max_tokens: args.max_tokens as usize,
            prefill: args.skip.prefill,
            sampling: &sampling,
        },
        &mut |step| {
            let m = plan.mask(step);
            if masks_used.last() != Some(&m) {
                masks_used.push(m.clone());
            }
            m
        },
        &mut |piece| {
            if stream
                && (stdout.write_all(piece.text.as_bytes()).is_err() || stdout.flush().is_err())
            {
                // stdout closed (e.g. piped into `head`): stop quietly.
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        },
    )?;
    let active = first.active_indices();
    if args.json {
        let value = json!({
            "model": model.name(),
            "model_path": path,
            "architecture": model.architecture(),
            "n_layer": model.n_layer(),
            "strategy": plan.spec.strategy().name(),
            "speedup_target": plan.target(),
            "speedup_by_layers": model.n_layer() as f64 / active.len() as f64,
            "active_layers": active,
            "speedup_mode": args.skip.speedup_mode.name(),
            "predicted_speedup": probe.as_ref().map(|p| p.cost.predicted_speedup(active.len(), model.n_layer())),
            "max_speedup": probe.as_ref().map(|p| p.cost.max_speedup(model.n_layer())),
            "masks_used": masks_used.iter().map(|m| m.active_indices()).collect::<Vec<_>>(),
            "prefill": args.skip.prefill,
            "prompt_tokens": generation.prompt_tokens,
            "generated_tokens": generation.generated_tokens,
            "text": generation.texts[0],
            "texts": generation.texts,
            "stop_reason": generation.stop,
            "prefill_tokens_per_s": generation.prefill_tokens_per_s(),
            "decode_tokens_per_s": generation.decode_tokens_per_s(),
            "kv_repair_tokens": generation.repair_tokens,
        });
        writeln!(stdout, "{value}")?;
    } else {
        if n_seq > 1 {
            for (i, t) in generation.texts.iter().enumerate() {
                writeln!(stdout, "--- sequence {i} ---\n{t}")?;
            }
        } else if std::io::stdout().is_terminal() || !generation.texts[0].ends_with('\n') {
            let _ = writeln!(stdout);
        }
        let depth = if plan.spec.depends_on_step() {
            format!(
                "{} schedule, {} blocks at step 0",
                plan.spec.strategy().name(),
                first.n_active()
            )
        } else {
            format!("{}/{} blocks active", first.n_active(), model.n_layer())
        };
        eprintln!(
            "{depth} (target {:.2}x, {}) | prefill {} tok {:.1} tok/s | decode {} tok {:.1} tok/s | kv repair {} tok | stop: {:?}",
            plan.target(),
            plan.spec.strategy().name(),
            generation.prompt_tokens,
            generation.prefill_tokens_per_s(),
            generation.generated_tokens,
            generation.decode_tokens_per_s(),
            generation.repair_tokens,
            generation.stop[0],
        );
    }
    Ok(())
}
