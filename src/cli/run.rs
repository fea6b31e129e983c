//! `uniskip run`: one generation, streamed to stdout, with a summary of what it cost.

use std::io::{IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::engine::{ChatMessage, Lossless, Request, StopReason, generate};
use crate::error::BadInput;
use crate::flags::lossless::LosslessArgs;
use crate::flags::setup::{PlanInputs, RunSetup};
use crate::flags::{ModelArgs, SamplingArgs, SkipArgs};
use crate::measure::draft_costs;
use crate::measure::probe::{self, Probe};
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
  uniskip run -f prompt.txt --batch 8 --speedup 2
  uniskip run --chat -p 'Repeat this list: ...' --lossless --drafter lookup")]
pub struct RunArgs {
    /// The model and how to run it.
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
    /// Which blocks to skip.
    #[command(flatten)]
    pub skip: SkipArgs,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Generate N sequences from the prompt together, under one mask (seeds differ).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub batch: u32,
    /// How tokens are drawn.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Lossless decoding.
    #[command(flatten)]
    pub lossless: LosslessArgs,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

/// The prompt from `-p`, a file or stdin, refused with a clear message when it is not
/// usable text.
fn read_prompt(args: &RunArgs) -> Result<String> {
    let bad = |m: String| anyhow::Error::new(BadInput(m));
    let (text, source) = match (&args.prompt, &args.file) {
        (Some(p), _) => (p.clone(), "the prompt".to_string()),
        (None, Some(path)) => {
            let (bytes, source) = if path.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .context("reading the prompt from stdin")?;
                (buf, "the prompt on stdin".to_string())
            } else {
                let bytes = std::fs::read(path).map_err(|e| {
                    bad(format!(
                        "cannot read the prompt file {}: {e}",
                        path.display()
                    ))
                })?;
                (bytes, path.display().to_string())
            };
            let text = String::from_utf8(bytes).map_err(|e| {
                bad(format!(
                    "{source} is not valid UTF-8 (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ))
            })?;
            (text, source)
        }
        (None, None) => return Err(bad("give a prompt with -p TEXT or -f FILE".into())),
    };
    if let Some(at) = text.find('\0') {
        return Err(bad(format!("{source} contains a NUL byte (at byte {at})")));
    }
    if text.trim().is_empty() {
        return Err(bad(format!("{source} is empty or only whitespace")));
    }
    Ok(text)
}

/// Why generation ended, in words, with what to do when a limit was hit.
fn describe_stop(stop: StopReason, n_ctx: usize) -> String {
    match stop {
        StopReason::EndOfGeneration => "stopped: end of text".into(),
        StopReason::MaxTokens => "stopped: -n limit reached".into(),
        StopReason::ContextFull => {
            format!("stopped: the context ({n_ctx} tokens) is full; raise --ctx to go on")
        }
        StopReason::Stopped => "stopped: interrupted".into(),
    }
}

/// Runs `uniskip run`.
pub fn run(args: RunArgs) -> Result<()> {
    let prompt = read_prompt(&args)?;
    let sampling = args.sampling.sampling()?;
    let setup = RunSetup::load(&args.model, &args.skip, &args.lossless)?;
    let (path, model) = (&setup.path, &setup.model);
    args.model.check_context(model)?;
    let n_seq = args.batch;
    let mut session = model.session(&args.model.context_options(n_seq))?;
    let probe = if args.skip.speedup_mode == SpeedupMode::Measured {
        let threads = args.model.context_options(1).threads;
        let probe_prompt = model.tokenize(crate::measure::PROBE_PROMPT, true)?;
        let (probe, from_cache) =
            probe::cached_or_measure(path, &mut session, &probe_prompt, threads)?;
        session.clear();
        if !args.json {
            eprintln!("{}", describe_probe(&probe, model.n_layer(), from_cache));
        }
        Some(probe)
    } else {
        None
    };
    let plan = setup.plan(
        &args.skip,
        PlanInputs {
            planned_len: args.max_tokens as usize,
            seed: u64::from(args.sampling.seed),
            cost: probe.as_ref().map(|p| &p.cost),
            profile: None,
        },
    )?;
    let plan = setup.decoding_plan(plan);
    let tuned = setup.tuned.as_ref().filter(|_| setup.runs_tuned_mask);
    let prefill = args.skip.prefill;
    let draft_model = args.lossless.load_draft_model(&args.model)?;
    let threads = args.model.context_options(n_seq).threads;
    // What earlier runs measured drafting to cost here; this run adds to it.
    let draft_costs = draft_costs::Kept::load(path, model, threads, n_seq);
    let lossless = args
        .lossless
        .config(&args.model, n_seq, draft_model.as_ref())?
        .map(|l| Lossless {
            costs: Some(draft_costs.cell()),
            ..l
        });
    let first = plan.mask(0);
    if let Some(w) = model.unverified_warning().filter(|_| !first.is_full()) {
        eprintln!("{w}");
    }
    if let Some(w) = model
        .placement()
        .lossless_warning()
        .filter(|_| lossless.is_some())
    {
        eprintln!("{w}");
    }

    let text = if args.chat {
        if !model.has_chat_template() {
            return Err(BadInput(format!(
                "{} has no chat template; run without --chat for plain continuation",
                model.name()
            ))
            .into());
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
    // Active blocks of every step's mask: a schedule's depth varies, and what it gives is
    // the average over the steps run, not step 0.
    let mut active_per_step = Vec::new();
    let generation = generate(
        &mut session,
        &Request {
            prompts: &prompts,
            max_tokens: args.max_tokens as usize,
            prefill,
            sampling: &sampling,
            interrupt: None,
            lossless,
        },
        &mut |step| {
            let m = plan.mask(step).clone();
            active_per_step.push(m.n_active());
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
    if lossless.is_some() {
        draft_costs.store();
    }
    let active = first.active_indices();
    let n_steps = active_per_step.len().max(1) as f64;
    let mean_active = active_per_step.iter().sum::<usize>() as f64 / n_steps;
    if args.json {
        let value = json!({
            "model": model.name(),
            "model_path": path,
            "architecture": model.architecture(),
            "n_layer": model.n_layer(),
            "strategy": plan.spec().strategy().name(),
            "speedup_target": plan.target(),
            "speedup_by_layers": model.n_layer() as f64 / mean_active,
            "active_layers": active,
            "mean_active_layers": mean_active,
            "speedup_mode": args.skip.speedup_mode.name(),
            // Time is linear in the active count: the mean time over the steps, as a
            // harmonic mean of each step's predicted speedup.
            "predicted_speedup": probe.as_ref().map(|p| n_steps / active_per_step
                .iter()
                .map(|&n| 1.0 / p.cost.predicted_speedup(n, model.n_layer()))
                .sum::<f64>()),
            "max_speedup": probe.as_ref().map(|p| p.cost.max_speedup(model.n_layer())),
            "masks_used": masks_used.iter().map(|m| m.active_indices()).collect::<Vec<_>>(),
            "prefill": prefill,
            "tuned": tuned,
            "prompt_tokens": generation.prompt_tokens,
            "generated_tokens": generation.generated_tokens,
            "text": generation.texts[0],
            "texts": generation.texts,
            "stop_reason": generation.stop,
            "prefill_tokens_per_s": generation.prefill_tokens_per_s(),
            "decode_tokens_per_s": generation.decode_tokens_per_s(),
            "kv_repair_tokens": generation.repair_tokens,
            "cpu_variant": crate::engine::cpu::variant(),
            "device": model.placement(),
            "rpc_split": model.rpc_split(),
            "lossless": lossless.is_some(),
            "drafter": lossless.map(|l| l.drafter.name()),
            "draft_tokens": generation.speculation.as_ref().map(|s| s.draft_tokens),
            "accepted_tokens": generation.speculation.as_ref().map(|s| s.accepted_tokens),
            "acceptance_rate": generation.speculation.as_ref().map(|s| s.acceptance_rate()),
            "mean_draft_len": generation.speculation.as_ref().map(|s| s.mean_draft_len()),
            "speculation": generation.speculation,
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
        let depth = if let Some(s) = &generation.speculation {
            format!(
                "lossless ({} drafts, mask {}/{} blocks): {} drafted, {} kept ({:.0}%), {:.1} per round{}",
                s.drafter.name(),
                first.n_active(),
                model.n_layer(),
                s.draft_tokens,
                s.accepted_tokens,
                100.0 * s.acceptance_rate(),
                s.mean_draft_len(),
                if s.paused_at_end {
                    ", drafting paused (slower than full depth)"
                } else {
                    ""
                }
            )
        } else if plan.spec().depends_on_step() {
            format!(
                "{} schedule, {} blocks at step 0",
                plan.spec().strategy().name(),
                first.n_active()
            )
        } else {
            format!("{}/{} blocks active", first.n_active(), model.n_layer())
        };
        eprintln!(
            "{depth} (target {:.2}x, {}) | prefill {} tok {:.1} tok/s | decode {} tok {:.1} tok/s | kv repair {} tok | {} | {}{}",
            plan.target(),
            plan.spec().strategy().name(),
            generation.prompt_tokens,
            generation.prefill_tokens_per_s(),
            generation.generated_tokens,
            generation.decode_tokens_per_s(),
            generation.repair_tokens,
            describe_stop(generation.stop[0], session.n_ctx()),
            model.placement().describe(),
            if model.rpc_devices().is_empty() {
                String::new()
            } else {
                format!(" | rpc {}", model.rpc_split().join("; "))
            },
        );
        if let Some(info) = &tuned {
            eprintln!("{} (from the file's metadata)", info.describe());
        }
    }
    Ok(())
}
