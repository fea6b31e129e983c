//! `uniskip bench --lossless`: lossless decoding against plain full depth, per prompt.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::progress::{Progress, fmt_duration};
use crate::bench::lossless::{BenchPrompt, LosslessBench, LosslessConfig, markdown};
use crate::bench::machine::Machine;
use crate::engine::speculative::{DRAFT_MAX_DEFAULT, DRAFT_MAX_LIMIT};
use crate::engine::{ChatMessage, Drafter, Model};
use crate::flags::ModelArgs;
use crate::skip::{Depth, Mask, StrategySpec, plan};
use crate::utc;

/// Ordinary chat prompts (name, text).
const CHAT_PROMPTS: [(&str, &str); 3] = [
    (
        "chat: story",
        "Write a short story about a robot who learns to paint.",
    ),
    (
        "chat: explain",
        "Explain why the sky is blue in simple words.",
    ),
    (
        "chat: tips",
        "Give me three tips for learning a new language.",
    ),
];

/// Copy-heavy prompts: the reply repeats its input with a change.
const COPY_PROMPTS: [(&str, &str); 2] = [
    (
        "copy: list",
        "Repeat this list, one item per line, but write kiwi instead of lemon: apple, \
         banana, cherry, grape, lemon, mango, orange, peach, pear, plum, apricot, melon.",
    ),
    (
        "copy: sentences",
        "Copy these sentences exactly: The train leaves the station at seven in the morning. \
         It stops in three towns before it reaches the coast. Passengers can buy coffee and \
         sandwiches on board. The journey takes about four hours.",
    ),
];

/// Flags of the lossless benchmark.
#[derive(Debug, Clone, Args)]
pub struct LosslessBenchArgs {
    /// Benchmark lossless decoding instead of the strategy grid: plain full depth against
    /// each drafter on chat and copy-heavy prompts (greedy, the model's chat template).
    #[arg(long)]
    pub lossless: bool,
    /// Drafting targets of the mask drafter rows (unified masks).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1.25,1.5,2",
        requires = "lossless"
    )]
    pub draft_targets: Vec<f64>,
    /// Placements of the mask drafter rows: unified, calibrated (the placement `uniskip
    /// calibrate` searched for this model; its profile must be cached), or both.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "unified",
        value_parser = ["unified", "calibrated"],
        requires = "lossless"
    )]
    pub draft_strategies: Vec<String>,
    /// Most tokens drafted per round.
    #[arg(long, value_name = "K", default_value_t = DRAFT_MAX_DEFAULT as u32,
          value_parser = clap::value_parser!(u32).range(1..=DRAFT_MAX_LIMIT as i64),
          requires = "lossless")]
    pub draft_max: u32,
    /// Use these prompts instead of the built-in ones (repeat the flag).
    #[arg(long = "prompt", value_name = "TEXT", requires = "lossless")]
    pub prompts: Vec<String>,
    /// Most tokens generated per run.
    #[arg(long, value_name = "N", default_value_t = 128, requires = "lossless",
          value_parser = clap::value_parser!(u32).range(2..=4096))]
    pub lossless_tokens: u32,
    /// Never stop at end of text: decode exactly --lossless-tokens per run.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Instead of generating, report what each decode shape of a lossless generation
    /// costs repeated (raw) and right after the shape before it (what the controller
    /// sees): verifications of 2..=8 rows, a draft under each --draft-targets mask, and
    /// the plain step after a round, in plain steps.
    #[arg(long, requires = "lossless")]
    pub costs: bool,
}

/// Verification sizes the cost report measures.
const COST_VERIFY_ROWS: [usize; 7] = [2, 3, 4, 5, 6, 7, 8];
/// Prompt positions before every decode of the cost report.
const COST_PREFIX: usize = 64;

/// Runs the lossless benchmark.
pub fn run(
    model_args: &ModelArgs,
    args: &LosslessBenchArgs,
    rounds: u32,
    json: bool,
) -> Result<()> {
    let started = Instant::now();
    for &t in &args.draft_targets {
        if !(t.is_finite() && t > 1.0) {
            bail!("--draft-targets: {t} is not a drafting speedup (a number > 1)");
        }
    }
    let machine = Machine::current();
    let path = model_args.resolve()?;
    let model = Model::load(&path, &model_args.model_options())?;
    let n_layer = model.n_layer();
    if args.costs {
        return costs(model_args, args, &model, &machine, rounds, json);
    }
    let chat = model.has_chat_template();
    let texts: Vec<(String, String)> = if args.prompts.is_empty() {
        CHAT_PROMPTS
            .iter()
            .chain(&COPY_PROMPTS)
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    } else {
        args.prompts
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("prompt {}", i + 1), t.clone()))
            .collect()
    };
    let prompts = texts
        .into_iter()
        .map(|(name, text)| -> Result<BenchPrompt> {
            let fed = if chat {
                model.apply_chat_template(&[ChatMessage {
                    role: "user".into(),
                    content: text.clone(),
                }])?
            } else {
                text.clone()
            };
            let tokens = model.tokenize(&fed, true)?;
            Ok(BenchPrompt {
                name,
                n_tokens: tokens.len(),
                tokens,
                text,
                fed,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let full = Mask::full(n_layer);
    let mut configs = vec![
        LosslessConfig {
            label: "full depth".into(),
            drafter: None,
            mask: full.clone(),
        },
        LosslessConfig {
            label: "lossless lookup".into(),
            drafter: Some(Drafter::Lookup),
            mask: full.clone(),
        },
    ];
    let mut placements = Vec::new();
    for name in &args.draft_strategies {
        let spec = if name == "calibrated" {
            let sha = crate::models::file_sha256(&path)?;
            let found = crate::calibrate::require_profile(&sha, None, &path)?;
            StrategySpec::Calibrated {
                masks: found.profile.masks(),
            }
        } else {
            StrategySpec::Unified
        };
        placements.push((name.as_str(), spec));
    }
    for &t in &args.draft_targets {
        for (name, spec) in &placements {
            let mask = plan(spec, n_layer, Depth::Ratio(t), 0)
                .with_context(|| format!("--draft-targets {t} ({name})"))?;
            for drafter in [Drafter::Mask, Drafter::MaskLookup] {
                configs.push(LosslessConfig {
                    label: format!(
                        "lossless {} ({name} {})",
                        drafter.name(),
                        crate::bench::report::fmt_target(t)
                    ),
                    drafter: Some(drafter),
                    mask: mask.clone(),
                });
            }
        }
    }
    let bench = LosslessBench {
        model: &model,
        context: model_args.context_options(1),
        prompts,
        configs,
        rounds: rounds as usize,
        max_tokens: args.lossless_tokens as usize,
        ignore_eos: args.ignore_eos,
        draft_max: args.draft_max as usize,
    };
    let mut bar = Progress::new("lossless bench");
    let cells = bench.run(&mut |done, total| bar.update(done, total, ""))?;
    let mut stdout = std::io::stdout().lock();
    if json {
        let mut value = report_header(&machine, &model, model_args.context_options(1).threads);
        value.extend([
            ("rounds".into(), serde_json::json!(rounds)),
            ("max_tokens".into(), serde_json::json!(args.lossless_tokens)),
            ("ignore_eos".into(), serde_json::json!(args.ignore_eos)),
            ("draft_max".into(), serde_json::json!(args.draft_max)),
            ("prompts".into(), serde_json::json!(bench.prompts)),
            ("cells".into(), serde_json::json!(cells)),
        ]);
        let value = serde_json::Value::Object(value);
        writeln!(stdout, "{value}")?;
    } else {
        writeln!(
            stdout,
            "{} ({} blocks), {} threads, greedy, up to {} tokens{}, draft max {}, {} rounds after a warm-up, interleaved; {}\n",
            model.name(),
            n_layer,
            model_args.context_options(1).threads,
            args.lossless_tokens,
            if args.ignore_eos {
                " (end of text ignored)"
            } else {
                ""
            },
            args.draft_max,
            rounds,
            machine.summary(),
        )?;
        write!(stdout, "{}", markdown(&cells))?;
    }
    eprintln!("wall time {}", fmt_duration(started.elapsed()));
    Ok(())
}

/// `bench --lossless --costs`: the switch-cost report.
fn costs(
    model_args: &ModelArgs,
    args: &LosslessBenchArgs,
    model: &Model,
    machine: &Machine,
    rounds: u32,
    json: bool,
) -> Result<()> {
    use crate::measure::switch_costs;
    let n_layer = model.n_layer();
    let masks = args
        .draft_targets
        .iter()
        .map(|&t| {
            plan(&StrategySpec::Unified, n_layer, Depth::Ratio(t), 0)
                .with_context(|| format!("--draft-targets {t}"))
        })
        .collect::<Result<Vec<Mask>>>()?;
    let shapes = switch_costs::lossless_shapes(n_layer, &COST_VERIFY_ROWS, &masks);
    // Costs do not depend on the text: the probe's sentence, repeated to the length needed
    // (no corpus to fetch).
    let mut text = Vec::new();
    while text.len() < COST_PREFIX + COST_VERIFY_ROWS[COST_VERIFY_ROWS.len() - 1] {
        text.extend(model.tokenize(crate::measure::PROBE_PROMPT, text.is_empty())?);
    }
    let context = model_args.context_options(1);
    let mut session = model.session(&context)?;
    let mut bar = Progress::new("switch costs");
    let report = switch_costs::measure(
        &mut session,
        &text,
        COST_PREFIX,
        &shapes,
        rounds as usize,
        2,
        &mut |done, total| bar.update(done, total, ""),
    )?;
    let mut stdout = std::io::stdout().lock();
    if json {
        let mut value = report_header(machine, model, context.threads);
        value.extend([
            ("prefix".into(), serde_json::json!(COST_PREFIX)),
            ("costs".into(), serde_json::json!(report)),
        ]);
        let value = serde_json::Value::Object(value);
        writeln!(stdout, "{value}")?;
    } else {
        writeln!(
            stdout,
            "{} ({} blocks) on {}, {} threads, at position {COST_PREFIX}; {}\n",
            model.name(),
            n_layer,
            model.placement().describe(),
            context.threads,
            machine.summary(),
        )?;
        write!(stdout, "{}", report.markdown())?;
    }
    Ok(())
}

/// What every JSON report of the lossless benchmark starts with: when, on what machine, which
/// model on which device, how many threads.
fn report_header(
    machine: &Machine,
    model: &Model,
    threads: i32,
) -> serde_json::Map<String, serde_json::Value> {
    let serde_json::Value::Object(header) = serde_json::json!({
        "date": utc::timestamp(utc::now()),
        "machine": machine,
        "model": model.name(),
        "device": model.placement(),
        "threads": threads,
    }) else {
        unreachable!("a JSON object literal")
    };
    header
}
