//! `uniskip bench`: speed and quality of every strategy at every target, side by side.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use super::progress::{Progress, fmt_duration};
use crate::bench;
use crate::bench::run::{BenchSettings, model_label, write_outputs};
use crate::bench::svg::QualityMetric;
use crate::flags::{CorpusArgs, ModelArgs};
use crate::skip::Strategy;

/// The quality measure on the chart's vertical axis, as `--chart` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChartMetric {
    /// Mean KL divergence from full depth (nats), linear axis.
    Kl,
    /// Perplexity, logarithmic axis.
    Ppl,
}

impl From<ChartMetric> for QualityMetric {
    fn from(metric: ChartMetric) -> Self {
        match metric {
            ChartMetric::Kl => QualityMetric::Kl,
            ChartMetric::Ppl => QualityMetric::Ppl,
        }
    }
}

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

A tuned file (from `uniskip tune`) is compared with its base model at the file's own \
strategy and target, instead of the grid: the base at full depth, the base under the same \
mask (untuned) and the tuned file under its mask; quality against the base at full depth, \
speed of all three in one interleaved run. The base is the cached catalog model with the \
sha256 the file names, or --base FILE.

Writes the Markdown table to stdout and the JSON record, the table and the SVG charts to \
--out. Targets a model cannot reach are reported as impossible, with the reason.

Examples:
  uniskip bench -t 2
  uniskip bench -t 2 --strategies unified,early-exit --targets 1.5,2 --batch 1 --rounds 3
  uniskip bench -t 2 --lossless --draft-targets 1.25,2 --rounds 3
  uniskip bench -t 2 -m smollm2.tuned-unified-1.5x.gguf --batch 1"
)]
pub struct BenchArgs {
    /// The model and how to run it.
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
    /// The text and its windows.
    #[command(flatten)]
    pub corpus: CorpusArgs,
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
    #[arg(long, value_enum, value_name = "M", default_value_t = ChartMetric::Kl)]
    pub chart: ChartMetric,
    /// Directory for the JSON record, the table and the charts.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub out: PathBuf,
    /// Print the JSON record on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// A tuned file's base model.
    #[command(flatten)]
    pub base: crate::flags::tuned::BaseArgs,
    /// The lossless benchmark's flags.
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

/// Runs `uniskip bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.lossless.lossless {
        return super::bench_lossless::run(&args.model, &args.lossless, args.rounds, args.json);
    }
    let started = Instant::now();
    let path = args.model.resolve()?;
    let settings = BenchSettings {
        model_path: path.clone(),
        model_options: args.model.model_options(),
        threads: args.model.context_options(1).threads,
        strategies: args.strategies.clone(),
        targets: args.targets.clone(),
        batches: args.batch.iter().map(|&b| b as usize).collect(),
        skip_lists: args.skip_layers.clone(),
        rounds: args.rounds as usize,
        decode_tokens: args.tokens as usize,
        prompt_tokens: args.prompt_tokens as usize,
        corpus: args.corpus.corpus.clone(),
        windows: args.corpus.windows as usize,
        shape: args.corpus.shape(),
        quality: !args.no_quality,
        speed: !args.no_speed,
        unset_row: !args.no_unset_row,
        profile: args.profile.clone(),
        calibrate: !args.no_calibrate,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        base: args.base.base.clone(),
    };
    let mut bar: Option<(String, Progress)> = None;
    let report = bench::run::run(&settings, &mut |label, done, total| {
        if bar.as_ref().is_none_or(|(l, _)| l != label) {
            bar = Some((label.to_string(), Progress::new(label)));
        }
        if let Some((_, b)) = bar.as_mut() {
            b.update(done, total, "");
        }
    })?;
    let label = model_label(args.model.model.as_deref(), &path);
    let written = write_outputs(&report, &args.out, &label, args.chart.into())?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
    } else {
        write!(stdout, "{}", report.markdown())?;
    }
    let secs = std::time::Duration::from_secs_f64;
    eprintln!(
        "\nwall time {} (calibration {}, quality {}, speed {}); CPU time {}",
        fmt_duration(started.elapsed()),
        fmt_duration(secs(report.phases.calibration)),
        fmt_duration(secs(report.phases.quality)),
        fmt_duration(secs(report.phases.speed)),
        report
            .cpu_seconds
            .map_or("unknown".into(), |c| fmt_duration(secs(c))),
    );
    for f in written {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}
