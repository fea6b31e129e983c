//! `uniskip tune`: fine-tune a model for one skip mask and write it as a tuned GGUF.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use clap::Args;

use super::progress::Progress;
use crate::engine::{Model, ModelOptions, WINDOW_QUANTUM};
use crate::error::BadInput;
use crate::skip::{Depth, Plan, PlanSettings, Strategy, StrategySpec, plan};
use crate::tune::{DataSource, Event, Outcome, Recipe, Report, TuneSettings, tune};

/// Fine-tune a model so that it works with the blocks a target skips, and write it as GGUF.
#[derive(Debug, Args)]
#[command(
    long_about = "Fine-tune a model so that it works with the blocks a target skips, and write it as GGUF.

Skipping blocks of a model that was never trained to do without them ruins its text
(SmolLM2 at 1.5x, untuned: perplexity in the thousands). Tuning trains the kept blocks
with the mask applied, through llama.cpp's own training API and the same skip hook as
inference, so the model learns to work without the skipped blocks.

Recipes (--recipe):
  prefix        each window's prompt (its first 32 tokens) runs through every block, the
                continuation under the mask, and the loss is on the continuation only:
                how the tuned file runs at inference (prompt at full depth, generated
                tokens under the mask). Every block is computed for every row during
                training and each row keeps or drops a block by its own mask, so a step
                costs a full-depth pass.
  whole-window  every position runs under the mask and the loss is on every position
                (static pruning plus healing): cheaper steps, and the only recipe for
                --prune, which writes only the kept blocks, a file plain llama.cpp runs at
                the tuned speed with no mask.
`uniskip run` reads the tuned file's uniskip.* metadata and applies its mask when no
--speedup or --skip-layers is given.

Strategies (--strategy): unified, early-exit, block and calibrated give one mask for every
generated token; skipdecode gives a schedule whose depth shrinks with the generated
position (prefix recipe only): each continuation row trains under its own step's mask.
The ramp spans 64 generated tokens (the tokens the quality report scores, so their mean
depth meets the target as unified's does) and stays at its last depth after them; the
tuned file replays that schedule when it runs.

Targets (--targets): tokens trains each row on the next token of the training text;
logits on the base model's whole next-token distribution at full depth (logit
distillation: the loss is then the KL divergence from the base model, the quantity the
quality report measures, and each step also runs the base model over the window).

Data: by default self-distillation: the base model, at full depth, continues short
prompts cut from the corpus (Shakespeare unless --corpus), and the tuned model learns to
write what the full model writes. --data corpus trains on the corpus text itself. The
corpus's evaluation slice is never trained on; the held-out loss and quality (KL, top-1,
perplexity against the base model at full depth) are measured on it before and after.

Training needs the model in F32: weights, gradients and AdamW state take about 16 bytes
per parameter (SmolLM2-135M: about 2.2 GB plus activations); a model that does not fit is
refused before anything starts. The output is written in the base file's quantization type
(or --type), F32 too with --f32. Ctrl+C finishes the current step, writes a checkpoint
next to the output (OUT.tune/) and exits; --resume continues from it.",
    after_help = "Examples:
  uniskip tune -m smollm2 --speedup 1.5 -t 2
  uniskip tune -m smollm2 --speedup 2 --strategy early-exit --train-tokens 16384 -o smol-ee-2x.gguf
  uniskip tune -m gemma3 --speedup 1.5 --train-tokens 8192 --lr 3e-4
  uniskip tune -m model.gguf --speedup 1.5 --data corpus --corpus notes.txt --f32
  uniskip run -m smollm2.tuned-unified-1.5x.gguf -p 'Once upon a time'   # applies the tuned mask"
)]
pub struct TuneArgs {
    /// GGUF file, or a catalog name (`smollm2`, `gemma3`); default: smollm2.
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: Option<String>,
    /// Target speedup R: the mask keeps the blocks the strategy keeps for R.
    #[arg(short = 's', long, value_name = "R", value_parser = crate::flags::parse_speedup)]
    pub speedup: f64,
    /// How the kept blocks are placed: unified, early-exit, block or calibrated (one mask
    /// for every token; calibrated needs the model's `uniskip calibrate` profile), or
    /// skipdecode (depth ramping down over 64 generated tokens; prefix recipe only).
    #[arg(long, value_name = "S", default_value = "unified", value_parser = parse_static_strategy)]
    pub strategy: Strategy,
    /// Tokens to train on, at least one window (rounded up to whole windows; one window is
    /// one optimizer step).
    #[arg(long, value_name = "N", default_value_t = 32_768,
          value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub train_tokens: u64,
    /// Write the outputs without training (no optimizer step): the tuned file then holds
    /// the base model's weights under the tuning metadata. A check of the export path, and
    /// an oracle for tests.
    #[arg(long, conflicts_with = "train_tokens")]
    pub export_only: bool,
    /// Training text: distill (the base model's own continuations of corpus prompts) or
    /// corpus (the corpus text itself).
    #[arg(long, value_name = "D", default_value = "distill", value_parser = ["distill", "corpus"])]
    pub data: String,
    /// The corpus: a catalog text (`shakespeare`, `alice`; fetched on first use), a UTF-8 file, or a
    /// directory of .txt files. Prompts (distill) or text (corpus) come from its
    /// calibration slice; held-out windows from its evaluation slice.
    #[arg(long, value_name = "FILE|NAME")]
    pub corpus: Option<String>,
    /// The tuned file [default: MODEL.tuned-STRATEGY-Rx.gguf in the current directory].
    #[arg(short = 'o', long = "out", value_name = "OUT.gguf")]
    pub out: Option<PathBuf>,
    /// Output quantization: f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m, q5_k_m, q6_k
    /// [default: the base file's].
    #[arg(long = "type", value_name = "T", value_parser = parse_file_type)]
    pub file_type: Option<i32>,
    /// Also write the F32 weights, all blocks (OUT.f32.gguf).
    #[arg(long)]
    pub f32: bool,
    /// Write only the kept blocks into OUT: a smaller model that plain llama.cpp (and
    /// anything built on it) runs at the tuned speed with no mask. It suits the
    /// whole-window recipe, which trains every position under the mask.
    #[arg(long)]
    pub prune: bool,
    /// How training windows meet the mask: prefix (prompt at full depth, continuation
    /// under the mask, loss on the continuation; it healed SmolLM2 at 1.5x better than
    /// whole-window on the same budget, docs/TUNE.md) or whole-window (everything under
    /// the mask, loss everywhere; needed by --prune).
    /// [default: prefix; whole-window with --prune]
    #[arg(long, value_name = "R", value_parser = ["prefix", "whole-window"])]
    pub recipe: Option<String>,
    /// What each row's loss compares the model with: logits (the base model's whole
    /// next-token distribution at full depth, logit distillation: the loss is the KL from
    /// the base model) or tokens (the next token of the training text only).
    #[arg(long, value_name = "T", default_value = "tokens", value_parser = ["logits", "tokens"])]
    pub targets: String,
    /// Continue the run interrupted with Ctrl+C (same flags).
    #[arg(long)]
    pub resume: bool,
    /// Peak learning rate (AdamW; linear warm-up, cosine decay to a tenth). With the
    /// default budget 1e-4 healed SmolLM2 at 1.5x far better than 3e-4, which drifts
    /// over a long run (ggml's AdamW clips no gradient); 3e-4 suits budgets of a few
    /// thousand tokens (docs/TUNE.md).
    #[arg(long, value_name = "LR", default_value_t = 1e-4, value_parser = parse_lr)]
    pub lr: f64,
    /// Tokens per training window (a multiple of 256).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = parse_window)]
    pub window: u32,
    /// Held-out windows evaluated before and after.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub eval_windows: u32,
    /// Layers on the GPU while training and evaluating: -1 = all, 0 = CPU only (as for `run`).
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-1..=100_000))]
    pub gpu_layers: i32,
    /// CPU threads [default: all cores].
    #[arg(short = 't', long, value_name = "T", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Seed of the distillation sampler.
    #[arg(long, value_name = "S", default_value_t = 42)]
    pub seed: u32,
    /// Print one JSON object (the report) on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_static_strategy(s: &str) -> std::result::Result<Strategy, String> {
    let strategy: Strategy = s
        .parse()
        .map_err(|e: crate::skip::ParseNameError| e.to_string())?;
    match strategy {
        Strategy::Unified
        | Strategy::EarlyExit
        | Strategy::Block
        | Strategy::Calibrated
        | Strategy::SkipDecode => Ok(strategy),
        other => Err(format!(
            "`{}` cannot be tuned for; tune supports unified, early-exit, block, calibrated, skipdecode",
            other.name()
        )),
    }
}

/// llama.cpp's file type numbers (`general.file_type`) by name.
const FILE_TYPES: &[(&str, i32)] = &[
    ("f32", 0),
    ("f16", 1),
    ("q4_0", 2),
    ("q4_1", 3),
    ("q8_0", 7),
    ("q5_0", 8),
    ("q5_1", 9),
    ("q4_k_m", 15),
    ("q5_k_m", 17),
    ("q6_k", 18),
];

fn parse_file_type(s: &str) -> std::result::Result<i32, String> {
    let lower = s.to_ascii_lowercase();
    FILE_TYPES
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|&(_, t)| t)
        .ok_or_else(|| {
            let names: Vec<&str> = FILE_TYPES.iter().map(|(n, _)| *n).collect();
            format!("unknown type `{s}`; expected one of: {}", names.join(", "))
        })
}

fn parse_lr(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 1e-2 => Ok(x),
        _ => Err(format!("`{s}` is not a learning rate in (0, 0.01]")),
    }
}

fn parse_window(s: &str) -> std::result::Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if n > 0 && n % WINDOW_QUANTUM == 0 && n <= 8192 => Ok(n),
        _ => Err(format!(
            "`{s}` is not a window: give a multiple of {WINDOW_QUANTUM} up to 8192"
        )),
    }
}

/// Runs `uniskip tune`.
pub fn run(args: TuneArgs) -> Result<()> {
    let path = crate::models::ensure(args.model.as_deref(), crate::models::Progress::Stderr)?;
    let threads = args.threads.map_or_else(
        || {
            std::thread::available_parallelism()
                .map(|n| n.get() as i32)
                .unwrap_or(2)
        },
        i32::from,
    );
    if !args.export_only && args.train_tokens < u64::from(args.window) {
        return Err(BadInput(format!(
            "--train-tokens {} is less than one {}-token window: give at least {} (or --export-only to write the file untrained)",
            args.train_tokens, args.window, args.window
        ))
        .into());
    }
    let (tuned_plan, n_layer) = {
        let model = Model::load(&path, &ModelOptions::default())?;
        let n_layer = model.n_layer();
        let spec = match args.strategy {
            Strategy::Calibrated => StrategySpec::Calibrated {
                masks: crate::calibrate::require_profile(
                    &crate::models::file_sha256(&path)?,
                    None,
                    &path,
                )?
                .profile
                .masks(),
            },
            // The ramp spans the tokens the quality report scores, so their mean depth is
            // the target's, as unified's is; later rows train at the ramp's last depth,
            // where generation past the span stays.
            Strategy::SkipDecode => StrategySpec::SkipDecode {
                planned_len: crate::tune::QUALITY_CONTINUATION,
            },
            other => StrategySpec::default_for(other).expect("a static strategy"),
        };
        let tuned_plan = match spec {
            StrategySpec::SkipDecode { planned_len } => Plan::new(
                PlanSettings {
                    planned_len,
                    ..PlanSettings::new(Strategy::SkipDecode, args.speedup)
                },
                n_layer,
            )
            .map_err(|e| BadInput(format!("--speedup {}: {e}", args.speedup)))?,
            spec => Plan::fixed(
                plan(&spec, n_layer, Depth::Ratio(args.speedup), 0)
                    .map_err(|e| BadInput(format!("--speedup {}: {e}", args.speedup)))?,
            ),
        };
        (tuned_plan, n_layer)
    };
    if tuned_plan.is_full() {
        return Err(BadInput(format!(
            "--speedup {} keeps all {n_layer} blocks: there is nothing to tune for",
            args.speedup
        ))
        .into());
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        PathBuf::from(format!(
            "{stem}.tuned-{}-{}x.gguf",
            args.strategy.name(),
            args.speedup
        ))
    });
    if out.is_dir() {
        return Err(BadInput(format!("-o {}: is a directory; name a file", out.display())).into());
    }
    let settings = TuneSettings {
        model: path,
        plan: tuned_plan,
        strategy: args.strategy.name().into(),
        speedup: args.speedup,
        train_tokens: if args.export_only {
            0
        } else {
            args.train_tokens as usize
        },
        window: args.window as usize,
        source: if args.data == "corpus" {
            DataSource::Corpus
        } else {
            DataSource::Distill
        },
        corpus: args.corpus.clone(),
        out,
        file_type: args.file_type,
        also_f32: args.f32,
        prune: args.prune,
        resume: args.resume,
        threads,
        gpu_layers: args.gpu_layers,
        learning_rate: args.lr,
        eval_windows: args.eval_windows as usize,
        seed: args.seed,
        recipe: match (&args.recipe, args.prune) {
            (Some(name), _) => name.parse().map_err(BadInput)?,
            (None, true) => Recipe::WholeWindow,
            (None, false) => Recipe::Prefix,
        },
        targets: args.targets.parse().map_err(BadInput)?,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| anyhow::anyhow!("installing a signal handler: {e}"))?;
    }
    let mut data_bar = Progress::new("training text");
    let mut step_bar = Progress::new("tuning");
    let mut announced = false;
    let outcome = tune(&settings, &stop, &mut |event| match event {
        Event::Phase(line) => eprintln!("{line}"),
        Event::Data { done, total } => data_bar.update(done, total, "windows"),
        Event::Step {
            step,
            steps,
            loss,
            tokens_per_s,
            eta_s,
        } => {
            if stop.load(Ordering::Relaxed) && !announced {
                announced = true;
                eprintln!("\nstopping: writing a checkpoint after this step");
            }
            step_bar.update(
                step,
                steps,
                &format!("loss {loss:.3}, {tokens_per_s:.0} tok/s, ETA {eta_s:.0} s"),
            );
        }
    })?;
    match outcome {
        Outcome::Interrupted { step, dir } => {
            eprintln!(
                "interrupted at step {step}: checkpoint in {}; continue with the same flags and --resume",
                dir.display()
            );
            std::process::exit(130);
        }
        Outcome::Finished(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            Ok(())
        }
    }
}

fn print_report(r: &Report) {
    println!("wrote {} ({})", r.out.display(), r.tuned.describe());
    if let Some(p) = &r.out_f32 {
        println!("wrote {} (F32)", p.display());
    }
    println!(
        "training: {} steps, loss {:.3} -> {:.3} (last 10 mean), {:.0} tok/s, {:.0} s, peak RSS {:.2} GiB",
        r.losses.len(),
        r.losses.first().copied().unwrap_or(f64::NAN),
        r.tuned.final_loss,
        r.train_tokens_per_s,
        r.train_seconds,
        r.peak_rss_bytes as f64 / (1u64 << 30) as f64
    );
    println!(
        "held-out loss under the mask: {:.3} -> {:.3}",
        r.eval_loss_before, r.eval_loss_after
    );
    println!("held-out quality against the base model at full depth:");
    println!("  {:<28} {:>10} {:>9} {:>7}", "", "PPL", "KL mean", "top-1");
    let rows = [
        ("untuned, prompt masked", Some(&r.untuned_masked_prefix)),
        ("untuned, prompt full depth", Some(&r.untuned_full_prefix)),
        ("tuned, prompt masked", Some(&r.tuned_masked_prefix)),
        ("tuned, prompt full depth", Some(&r.tuned_full_prefix)),
        (
            "tuned F32, prompt full depth",
            r.tuned_f32_full_prefix.as_ref(),
        ),
    ];
    for (name, q) in rows.into_iter().filter_map(|(n, q)| Some((n, q?))) {
        println!(
            "  {name:<28} {:>10.2} {:>9.3} {:>6.1}%",
            q.perplexity,
            q.kl_mean,
            100.0 * q.top1_agreement
        );
    }
}
