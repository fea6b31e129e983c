//! `uniskip bench`: speed and quality of every strategy at every target, side by side.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::args::ModelArgs;
use super::calibrate as cal;
use super::ppl;
use super::progress::{Progress, fmt_duration};
use crate::bench::machine::Machine;
use crate::bench::report::{CalibrationInfo, ModelInfo, QualitySettings, Report, SpeedSettings};
use crate::bench::svg::{QualityMetric, quality_chart, throughput_chart};
use crate::bench::{Bench, Phase, QualityPlan, SpeedPlan, grid};
use crate::calibrate::{Profile, profile_path};
use crate::engine::{LlamaToken, Model};
use crate::quality::{Corpus, Slice, WindowShape};
use crate::skip::{Mask, Strategy};
use crate::utc;

/// Measure speed and quality of every strategy at every target, side by side.
#[derive(Debug, Args)]
#[command(
    after_help = "Speed: every row decodes the same number of tokens after the same \
full-depth prefill, at each batch size (sequences decoded together under one mask); rounds \
are interleaved (the order rotates), a warm-up round is discarded, and medians are reported \
with the spread. Speedup is decode tok/s over full depth's at the same batch size, paired per \
round. A `full, hook unset` row compares llama.cpp's own path with full depth via the hook.

Quality: teacher-forced on the evaluation slice of the corpus: each window's prefix at full \
depth, the continuation under the mask; perplexity, KL divergence from full depth (mean, 99th \
percentile), top-1 agreement. Calibrated rows use the model's calibration profile (searched \
first when there is none, on the corpus's calibration slice, which is disjoint).

Writes the Markdown table to stdout and the JSON record, the table and the SVG charts to \
--out. Targets a model cannot reach are reported as impossible, with the reason.

Examples:
  uniskip bench -t 2
  uniskip bench -t 2 --strategies unified,early-exit --targets 1.5,2 --batch 1 --rounds 3
  uniskip bench -t 2 --lossless --draft-targets 1.25,2 --rounds 3"
)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Strategies to compare with full depth: unified, early-exit, skipdecode, block,
    /// calibrated, random.
    #[arg(long, value_name = "LIST", value_delimiter = ',',
          default_value = "unified,early-exit,skipdecode,block,calibrated",
          value_parser = parse_strategy)]
    pub strategies: Vec<Strategy>,
    /// Target speedups (block count ratios, as in the paper).
    #[arg(
        short = 's',
        long,
        alias = "speedup",
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "1.25,1.5,2,3"
    )]
    pub targets: Vec<f64>,
    /// Batch sizes: sequences decoded together under one mask.
    #[arg(short = 'b', long, value_name = "LIST", value_delimiter = ',', default_value = "1,8",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub batch: Vec<u32>,
    /// Also measure explicit skip lists, e.g. `8-22` (repeat the flag for several).
    #[arg(long, value_name = "LIST")]
    pub skip_layers: Vec<String>,
    /// Measured rounds per configuration (after a warm-up round).
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,
    /// Tokens decoded per sequence per measurement.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(2..=4096))]
    pub tokens: u32,
    /// Prompt tokens per sequence (prefilled at full depth).
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(2..=512))]
    pub prompt_tokens: u32,
    /// Text for quality: `shakespeare` (default) or a UTF-8 file or directory.
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<String>,
    /// Quality windows.
    #[arg(long, value_name = "N", default_value_t = ppl::DEFAULT_WINDOWS,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub windows: u32,
    /// Prefix tokens per quality window (full depth).
    #[arg(long, value_name = "N", default_value_t = ppl::DEFAULT_PREFIX,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub prefix: u32,
    /// Continuation tokens per quality window (scored under the mask).
    #[arg(long, value_name = "N", default_value_t = ppl::DEFAULT_CONTINUATION,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub continuation: u32,
    /// Skip the quality measurement.
    #[arg(long)]
    pub no_quality: bool,
    /// Skip the speed measurement.
    #[arg(long)]
    pub no_speed: bool,
    /// Leave out the `full, hook unset` row.
    #[arg(long)]
    pub no_unset_row: bool,
    /// Calibration profile for the calibrated rows [default: the model's cached one].
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Never run a calibration search: without a cached profile the calibrated rows are
    /// reported as unavailable.
    #[arg(long)]
    pub no_calibrate: bool,
    /// Quality measure of the chart.
    #[arg(long, value_enum, value_name = "M", default_value_t = QualityMetric::Kl)]
    pub chart: QualityMetric,
    /// Directory for the JSON record, the table and the charts.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub out: PathBuf,
    /// Print the JSON record on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lossless: super::bench_lossless::LosslessBenchArgs,
}

fn parse_strategy(s: &str) -> std::result::Result<Strategy, String> {
    match s.parse::<Strategy>() {
        Ok(Strategy::Manual) => Err("use --skip-layers LIST for explicit masks".into()),
        Ok(st) => Ok(st),
        Err(e) => Err(e.to_string()),
    }
}

/// Prompt of the speed measurement; cut to `--prompt-tokens`.
const PROMPT: &str = "The history of the printing press begins in the fifteenth century, when \
a goldsmith in Mainz combined movable metal type, oil-based ink and a screw press adapted from \
wine making. Within fifty years printing shops had opened in more than two hundred cities \
across Europe, and the price of books fell so far that ordinary merchants could afford them. \
Scholars argue about how quickly the new technology changed the way people read, wrote and \
thought, but few doubt that it changed everything in the end.";

/// Runs `uniskip bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.lossless.lossless {
        return super::bench_lossless::run(&args.model, &args.lossless, args.rounds, args.json);
    }
    let started = Instant::now();
    let unix = utc::now();
    let machine = Machine::current();
    for &t in &args.targets {
        if !(t.is_finite() && t >= 1.0) {
            bail!("--targets: {t} is not a speedup (a number >= 1)");
        }
    }
    let path = args.model.resolve()?;
    let model = Model::load(&path, &args.model.model_options())?;
    let n_layer = model.n_layer();
    let threads = args.model.context_options(1).threads;
    let sha = crate::models::file_sha256(&path)?;
    let model_info = ModelInfo {
        name: model.name().to_string(),
        file: path.display().to_string(),
        sha256: sha.clone(),
        size_bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
        architecture: model.architecture().to_string(),
        n_layer,
        n_vocab: model.n_vocab(),
    };
    if let Some(w) = model.unverified_warning() {
        eprintln!("{w}");
    }
    let mut batches: Vec<usize> = args.batch.iter().map(|&b| b as usize).collect();
    batches.sort_unstable();
    batches.dedup();
    let manual = args
        .skip_layers
        .iter()
        .map(|list| {
            Mask::from_skip_list(list, n_layer)
                .map(|m| (list.clone(), m))
                .with_context(|| format!("--skip-layers {list}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let needs_corpus = !args.no_quality || args.strategies.contains(&Strategy::Calibrated);
    let corpus = if needs_corpus {
        Some(Corpus::load(args.corpus.as_deref())?)
    } else {
        None
    };

    // The calibrated placements: an explicit or cached profile, else a search now.
    let mut calibration_seconds = 0.0;
    let mut calibration: Option<CalibrationInfo> = None;
    let calibrated: Result<Vec<Mask>, String> = if !args.strategies.contains(&Strategy::Calibrated)
    {
        Err("not requested".into())
    } else {
        let file = match &args.profile {
            Some(p) => p.clone(),
            None => profile_path(&sha)?,
        };
        let existing = file.exists().then(|| Profile::load(&file)).transpose()?;
        let profile = match existing {
            Some(p) if p.complete || args.no_calibrate || args.profile.is_some() => {
                Some((p, false))
            }
            _ if args.no_calibrate || args.profile.is_some() => None,
            _ => {
                let t = Instant::now();
                eprintln!(
                    "no complete calibration profile for this model: searching one first \
                         (cached in {})",
                    file.display()
                );
                let made = cal::calibrate(
                    &model,
                    &sha,
                    threads,
                    corpus.as_ref().expect("loaded for calibration"),
                    cal::DEFAULT_WINDOWS as usize,
                    WindowShape {
                        prefix: cal::DEFAULT_PREFIX as usize,
                        continuation: cal::DEFAULT_CONTINUATION as usize,
                    },
                    &file,
                    false,
                    &format!(
                        "calibration (phase 1 of {})",
                        1 + usize::from(!args.no_quality) + usize::from(!args.no_speed)
                    ),
                )?;
                calibration_seconds = t.elapsed().as_secs_f64();
                Some(made)
            }
        };
        match profile {
            Some((p, made)) => {
                if p.model_sha256 != sha {
                    bail!(
                        "the profile {} was made for another model file (sha256 {})",
                        file.display(),
                        p.model_sha256
                    );
                }
                calibration = Some(CalibrationInfo {
                    profile: file.display().to_string(),
                    settings: p.settings.clone(),
                    complete: p.complete,
                    first_and_last_kept: p.first_and_last_kept,
                    search_seconds: p.seconds,
                    made_by_this_run: made,
                });
                Ok(p.masks())
            }
            None => Err(format!(
                "no calibration profile (run `uniskip calibrate -m {}`)",
                args.model.model.as_deref().unwrap_or("smollm2")
            )),
        }
    };

    let rows = grid::build(
        n_layer,
        &args.strategies,
        &args.targets,
        &manual,
        calibrated,
        !args.no_unset_row,
    );
    let shape = WindowShape {
        prefix: args.prefix as usize,
        continuation: args.continuation as usize,
    };
    let quality = match (&corpus, args.no_quality) {
        (Some(c), false) => Some(QualityPlan {
            windows: c
                .windows(
                    &model,
                    Slice::Evaluation,
                    args.windows as usize,
                    shape.len(),
                )
                .context("cutting the evaluation windows")?,
            shape,
            group: crate::quality::windows_per_group(model.n_vocab(), shape.continuation),
        }),
        _ => None,
    };
    let speed = (!args.no_speed)
        .then(|| -> Result<SpeedPlan> {
            Ok(SpeedPlan {
                batches: batches.clone(),
                rounds: args.rounds as usize,
                decode_tokens: args.tokens as usize,
                prompt: prompt_tokens(&model, args.prompt_tokens as usize)?,
            })
        })
        .transpose()?;
    let prompt_len = speed.as_ref().map_or(0, |s| s.prompt.len());
    let bench = Bench {
        model: &model,
        threads,
        rows,
        quality,
        speed,
    };
    // Phases in order: calibration (when it ran), quality, speed.
    let n_phases = usize::from(calibration_seconds > 0.0)
        + usize::from(bench.quality.is_some())
        + usize::from(bench.speed.is_some());
    let first = 1 + usize::from(calibration_seconds > 0.0);
    let mut quality_bar = Progress::new(&format!("quality (phase {first} of {n_phases})"));
    let speed_phase = first + usize::from(bench.quality.is_some());
    let mut speed_bar = Progress::new(&format!("speed (phase {speed_phase} of {n_phases})"));
    let (rows, mut phases) = bench.run(&mut |phase, done, total| match phase {
        Phase::Quality => quality_bar.update(done, total, ""),
        Phase::Speed => speed_bar.update(done, total, ""),
    })?;
    phases.calibration = calibration_seconds;

    let report = Report {
        version: env!("CARGO_PKG_VERSION").into(),
        hook_revision: crate::engine::hook::revision().into(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        date: utc::timestamp(unix),
        unix_time: unix,
        wall_seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: crate::bench::machine::process_cpu_seconds(),
        phases,
        machine,
        model: model_info,
        speed_settings: SpeedSettings {
            threads,
            rounds: args.rounds as usize,
            warmup_rounds: 1,
            decode_tokens: args.tokens as usize,
            prompt_tokens: prompt_len,
            batch_sizes: batches.clone(),
            targets: args.targets.clone(),
            strategies: args
                .strategies
                .iter()
                .map(|s| s.name().to_string())
                .collect(),
            prefill: "full".into(),
            measured: !args.no_speed,
        },
        quality_settings: bench.quality.as_ref().map(|q| {
            let c = corpus.as_ref().expect("quality needs the corpus");
            QualitySettings {
                corpus: c.label().to_string(),
                corpus_sha256: c.sha256().to_string(),
                slice: Slice::Evaluation.name().into(),
                windows: q.windows.len(),
                prefix_tokens: q.shape.prefix,
                continuation_tokens: q.shape.continuation,
                scored_tokens: q.windows.len() * q.shape.continuation,
                reference: "full depth, same windows, same positions".into(),
            }
        }),
        calibration,
        rows,
    };
    let written = write_outputs(&report, &args.out, &model_label(&args, &path), args.chart)?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
    } else {
        write!(stdout, "{}", report.markdown())?;
    }
    eprintln!(
        "\nwall time {} (calibration {}, quality {}, speed {}); CPU time {}",
        fmt_duration(started.elapsed()),
        fmt_duration(std::time::Duration::from_secs_f64(
            report.phases.calibration
        )),
        fmt_duration(std::time::Duration::from_secs_f64(report.phases.quality)),
        fmt_duration(std::time::Duration::from_secs_f64(report.phases.speed)),
        report
            .cpu_seconds
            .map_or("unknown".into(), |c| fmt_duration(
                std::time::Duration::from_secs_f64(c)
            )),
    );
    for f in written {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}

/// Exactly `n` tokens of the speed prompt (repeated if it is too short).
fn prompt_tokens(model: &Model, n: usize) -> Result<Vec<LlamaToken>> {
    let mut text = PROMPT.to_string();
    loop {
        let tokens = model.tokenize(&text, true)?;
        if tokens.len() >= n {
            return Ok(tokens[..n].to_vec());
        }
        text.push(' ');
        text.push_str(PROMPT);
    }
}

/// A short name for file names: the catalog name, or the file's stem.
fn model_label(args: &BenchArgs, path: &Path) -> String {
    let raw = match args.model.model.as_deref() {
        Some(m) if !m.contains(['/', '.']) => m.to_string(),
        None => crate::models::list()
            .ok()
            .and_then(|l| l.into_iter().find(|e| e.default))
            .map_or_else(|| "model".into(), |e| e.entry.name),
        _ => path
            .file_stem()
            .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned()),
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `bench-<model>-<date>.{json,md}` and the charts into `dir`; returns the files.
fn write_outputs(
    report: &Report,
    dir: &Path,
    label: &str,
    metric: QualityMetric,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let base = format!("bench-{label}-{}", utc::file_stamp(report.unix_time));
    let mut files = Vec::new();
    let mut put = |name: String, text: String| -> Result<()> {
        let f = dir.join(name);
        std::fs::write(&f, text).with_context(|| format!("writing {}", f.display()))?;
        files.push(f);
        Ok(())
    };
    put(
        format!("{base}.json"),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    put(format!("{base}.md"), report.markdown())?;
    let batches = &report.speed_settings.batch_sizes;
    if report.speed_settings.measured {
        if let Some(&b) = batches.first()
            && let Some(svg) = quality_chart(report, b, metric)
        {
            put(format!("{base}-quality.svg"), svg)?;
        }
        if let Some(&b) = batches.last()
            && let Some(svg) = throughput_chart(report, b)
        {
            put(format!("{base}-throughput-batch{b}.svg"), svg)?;
        }
    }
    Ok(files)
}
