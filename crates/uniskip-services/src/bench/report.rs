//! What a benchmark run produced: every measured number with its settings (JSON), and the
//! Markdown tables.

use std::fmt::Write as _;

use serde::Serialize;

use super::machine::Machine;
use crate::calibrate::CalibrationSettings;
use crate::measure::speed::{median, spread};
use crate::quality::QualitySummary;

/// A whole benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// uniskip's version.
    pub version: String,
    /// The skip hook revision compiled into llama.cpp.
    pub hook_revision: String,
    /// The command line.
    pub command: String,
    /// Start time (UTC).
    pub date: String,
    /// Start time, Unix seconds.
    pub unix_time: u64,
    /// Wall time of the whole run, calibration included, in seconds.
    pub wall_seconds: f64,
    /// CPU time the run used (user + system, all threads), in seconds, where the system
    /// says: far below `threads * wall_seconds` means other work competed for the CPUs.
    pub cpu_seconds: Option<f64>,
    /// Seconds per phase.
    pub phases: Phases,
    /// The machine.
    pub machine: Machine,
    /// The model.
    pub model: ModelInfo,
    /// Speed settings.
    pub speed_settings: SpeedSettings,
    /// Quality settings (`None` when quality was not measured).
    pub quality_settings: Option<QualitySettings>,
    /// The calibration profile the calibrated rows use (`None` without one).
    pub calibration: Option<CalibrationInfo>,
    /// One entry per row of the grid, impossible rows included.
    pub rows: Vec<RowReport>,
    /// For a tuned file: its tuning and its base model, which the `full` and `(base,
    /// untuned)` rows run and quality is measured against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuned: Option<super::tuned::TunedComparison>,
}

/// Seconds spent per phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Phases {
    /// Calibration run for this benchmark (0 when a cached profile was used).
    pub calibration: f64,
    /// Quality evaluation.
    pub quality: f64,
    /// Speed measurement.
    pub speed: f64,
}

/// The model measured.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Name from the model's metadata.
    pub name: String,
    /// The file.
    pub file: String,
    /// sha256 of the file.
    pub sha256: String,
    /// Size of the file in bytes.
    pub size_bytes: u64,
    /// GGUF architecture.
    pub architecture: String,
    /// Blocks.
    pub n_layer: usize,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Where its blocks ran: `CPU (haswell)` or `CUDA0 (NVIDIA H200), 30/30 blocks`.
    pub device: String,
}

impl ModelInfo {
    /// The facts of `model`, loaded from `path` whose sha256 is `sha256`.
    pub fn of(model: &uniskip_engine::Model, path: &std::path::Path, sha256: String) -> ModelInfo {
        ModelInfo {
            name: model.name().to_string(),
            file: path.display().to_string(),
            sha256,
            size_bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
            architecture: model.architecture().to_string(),
            n_layer: model.n_layer(),
            n_vocab: model.n_vocab(),
            device: model.placement().describe(),
        }
    }
}

/// How speed was measured.
#[derive(Debug, Clone, Serialize)]
pub struct SpeedSettings {
    /// CPU threads.
    pub threads: i32,
    /// Measured rounds per configuration.
    pub rounds: usize,
    /// Warm-up rounds run first and discarded.
    pub warmup_rounds: usize,
    /// Tokens decoded per sequence per measurement.
    pub decode_tokens: usize,
    /// Prompt tokens per sequence, prefilled at full depth.
    pub prompt_tokens: usize,
    /// Batch sizes (sequences decoded together).
    pub batch_sizes: Vec<usize>,
    /// Target speedups of the grid.
    pub targets: Vec<f64>,
    /// Strategies of the grid (full depth always included).
    pub strategies: Vec<String>,
    /// Which blocks the prompt runs through: always `full` (the paper's rule), so prefill
    /// speed is the same for every strategy.
    pub prefill: String,
    /// Whether speed was measured at all.
    pub measured: bool,
}

/// How quality was measured.
#[derive(Debug, Clone, Serialize)]
pub struct QualitySettings {
    /// What the corpus was loaded from.
    pub corpus: String,
    /// sha256 of the corpus text.
    pub corpus_sha256: String,
    /// The slice windows come from (`evaluation`).
    pub slice: String,
    /// Windows.
    pub windows: usize,
    /// Prefix tokens per window, at full depth.
    pub prefix_tokens: usize,
    /// Continuation tokens per window, scored under the masks.
    pub continuation_tokens: usize,
    /// Tokens scored per row.
    pub scored_tokens: usize,
    /// The reference the divergences are measured against.
    pub reference: String,
}

impl QualitySettings {
    /// `windows` windows of `shape` from `corpus`'s evaluation slice, divergences measured
    /// against `reference`.
    pub fn evaluation(
        corpus: &crate::quality::Corpus,
        windows: usize,
        shape: crate::quality::WindowShape,
        reference: String,
    ) -> Self {
        QualitySettings {
            corpus: corpus.label().to_string(),
            corpus_sha256: corpus.sha256().to_string(),
            slice: crate::quality::Slice::Evaluation.name().into(),
            windows,
            prefix_tokens: shape.prefix,
            continuation_tokens: shape.continuation,
            scored_tokens: windows * shape.continuation,
            reference,
        }
    }
}

/// The calibration profile in use.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationInfo {
    /// Its file.
    pub profile: String,
    /// The calibration slice it was searched on.
    pub settings: CalibrationSettings,
    /// Whether every count is calibrated.
    pub complete: bool,
    /// Whether every placement keeps the first and last block.
    pub first_and_last_kept: bool,
    /// Search time, in seconds.
    pub search_seconds: f64,
    /// Whether this run made (or finished) it.
    pub made_by_this_run: bool,
}

/// One row: a strategy at a target, its masks, its quality and its speed per batch size.
#[derive(Debug, Clone, Serialize)]
pub struct RowReport {
    /// Strategy name.
    pub strategy: String,
    /// Target speedup (`None` for manual masks).
    pub target: Option<f64>,
    /// Whether the model can run it.
    pub possible: bool,
    /// Why not, when it cannot.
    pub reason: Option<String>,
    /// Kept blocks of a fixed mask.
    pub kept_blocks: Option<Vec<usize>>,
    /// Computed blocks per decode step of a varying schedule (SkipDecode), over the speed
    /// measurement's steps.
    pub active_blocks_per_step: Option<Vec<usize>>,
    /// Mean computed blocks per decode step.
    pub active_blocks: Option<f64>,
    /// `L / active_blocks`: the speedup counted in blocks.
    pub speedup_by_layers: Option<f64>,
    /// Quality against full depth (`None` for speed-only rows or when not measured).
    pub quality: Option<QualitySummary>,
    /// Speed per batch size.
    pub speed: Vec<SpeedCell>,
}

/// Speed of one row at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct SpeedCell {
    /// Sequences decoded together.
    pub batch: usize,
    /// Prompt tokens per second, all sequences together.
    pub prefill_tokens_per_s: Stat,
    /// Generated tokens per second, all sequences together.
    pub decode_tokens_per_s: Stat,
    /// Decode speed over full depth's at the same batch size, per round (pairs measured in
    /// the same round).
    pub speedup: Stat,
}

/// A measured quantity over rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Stat {
    /// Median over the rounds.
    pub median: f64,
    /// Lowest round.
    pub min: f64,
    /// Highest round.
    pub max: f64,
    /// Every round, in order.
    pub rounds: Vec<f64>,
}

impl Stat {
    /// Summarises per-round values.
    pub fn of(rounds: Vec<f64>) -> Stat {
        let (min, max) = spread(&rounds);
        Stat {
            median: median(&rounds),
            min,
            max,
            rounds,
        }
    }
}

impl RowReport {
    /// The speed cell of batch size `batch`.
    pub fn at_batch(&self, batch: usize) -> Option<&SpeedCell> {
        self.speed.iter().find(|c| c.batch == batch)
    }

    /// `unified 1.5x`, `full`, `manual 8-22`.
    pub fn label(&self) -> String {
        match self.target {
            Some(t) if self.strategy != "full" && !self.strategy.starts_with("full,") => {
                format!("{} {}", self.strategy, fmt_target(t))
            }
            _ => self.strategy.clone(),
        }
    }
}

/// A perplexity for tables: two decimals, no decimals from 1000, and powers of ten from
/// 100000 (where the model has stopped predicting the text at all).
pub fn fmt_ppl(p: f64) -> String {
    if p < 1000.0 {
        format!("{p:.2}")
    } else if p < 1e5 {
        format!("{p:.0}")
    } else {
        format!("{p:.1e}")
    }
}

/// `1.5x`, `2x`, `1.25x`.
pub fn fmt_target(t: f64) -> String {
    let s = format!("{t:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}x")
}

impl Report {
    /// A report of the run started at `unix` (`started` by the clock) with the command
    /// line `command`, its wall and CPU time taken now; no quality settings, calibration,
    /// rows or tuning yet.
    pub fn finished_now(
        command: &str,
        unix: u64,
        started: std::time::Instant,
        phases: Phases,
        machine: Machine,
        model: ModelInfo,
        speed_settings: SpeedSettings,
    ) -> Report {
        Report {
            version: env!("CARGO_PKG_VERSION").into(),
            hook_revision: uniskip_engine::hook::revision().into(),
            command: command.to_string(),
            date: crate::utc::timestamp(unix),
            unix_time: unix,
            wall_seconds: started.elapsed().as_secs_f64(),
            cpu_seconds: super::machine::process_cpu_seconds(),
            phases,
            machine,
            model,
            speed_settings,
            quality_settings: None,
            calibration: None,
            rows: Vec::new(),
            tuned: None,
        }
    }

    /// The Markdown tables: quality and decode speed per row, then prefill speed.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let s = &self.speed_settings;
        let _ = writeln!(
            out,
            "{} ({} blocks, {}) on {}, {} threads on {}; {}.",
            self.model.name,
            self.model.n_layer,
            &self.model.sha256[..12.min(self.model.sha256.len())],
            self.model.device,
            s.threads,
            self.machine.summary(),
            self.date
        );
        let _ = writeln!(
            out,
            "Wall time {:.0} s (calibration {:.0} s, quality {:.0} s, speed {:.0} s){}.",
            self.wall_seconds,
            self.phases.calibration,
            self.phases.quality,
            self.phases.speed,
            self.cpu_seconds.map_or(String::new(), |c| format!(
                "; CPU time {c:.0} s of {:.0} s available on {} threads",
                self.wall_seconds * f64::from(s.threads),
                s.threads
            ))
        );
        if let Some(t) = &self.tuned {
            let _ = writeln!(
                out,
                "Tuned file {} ({}), beside its base model {} ({}): the `full` and `(base, \
                 untuned)` rows run the base model, and quality is measured against the base at \
                 full depth.",
                self.model.file,
                t.tuning.describe(),
                t.base.file,
                &t.base.sha256[..12.min(t.base.sha256.len())]
            );
            for r in &t.tuned_over_untuned {
                let _ = writeln!(
                    out,
                    "Tuned over untuned decode speed under the same mask, batch {}: {:.3}x \
                     ({:.3}..{:.3}, per round).",
                    r.batch, r.ratio.median, r.ratio.min, r.ratio.max
                );
            }
        }
        if let Some(q) = &self.quality_settings {
            let _ = writeln!(
                out,
                "Quality: {} windows of {} ({} slice): {} prefix tokens at full depth, {} \
                 continuation tokens scored under the mask ({} tokens per row).",
                q.windows,
                q.corpus,
                q.slice,
                q.prefix_tokens,
                q.continuation_tokens,
                q.scored_tokens
            );
        }
        if s.measured {
            let _ = writeln!(
                out,
                "Speed: {} prompt tokens prefilled at full depth, then {} tokens decoded per \
                 sequence; median of {} interleaved rounds after {} warm-up (min..max); speedup \
                 = decode tok/s over full depth's at the same batch size, paired per round.",
                s.prompt_tokens, s.decode_tokens, s.rounds, s.warmup_rounds
            );
        }
        out.push('\n');
        let mut head =
            String::from("| strategy | target | blocks | PPL | KL mean | KL p99 | top-1 |");
        let mut rule = String::from("|---|---|---|---|---|---|---|");
        if s.measured {
            for b in &s.batch_sizes {
                let _ = write!(head, " decode tok/s, batch {b} | speedup, batch {b} |");
                rule.push_str("---|---|");
            }
        }
        let _ = writeln!(out, "{head}\n{rule}");
        let ncols = 7 + if s.measured {
            2 * s.batch_sizes.len()
        } else {
            0
        };
        for r in &self.rows {
            let target = r.target.map_or("-".into(), fmt_target);
            if let Some(reason) = &r.reason {
                let _ = write!(out, "| {} | {target} | impossible: {reason} |", r.strategy);
                out.push_str(&" |".repeat(ncols - 3));
                out.push('\n');
                continue;
            }
            let blocks = match (&r.active_blocks_per_step, r.active_blocks) {
                (Some(_), Some(a)) => format!("{a:.1} avg"),
                (_, Some(a)) => format!("{a:.0}"),
                _ => "-".into(),
            };
            let q = match &r.quality {
                Some(q) => format!(
                    "{} | {:.3} | {:.3} | {:.1}%",
                    fmt_ppl(q.perplexity),
                    q.kl_mean,
                    q.kl_p99,
                    100.0 * q.top1_agreement
                ),
                None => "- | - | - | -".into(),
            };
            let _ = write!(out, "| {} | {target} | {blocks} | {q} |", r.strategy);
            if s.measured {
                for &b in &s.batch_sizes {
                    match r.at_batch(b) {
                        Some(c) => {
                            let d = &c.decode_tokens_per_s;
                            let _ = write!(
                                out,
                                " {:.1} ({:.0}..{:.0}) | {:.2}x |",
                                d.median, d.min, d.max, c.speedup.median
                            );
                        }
                        None => out.push_str(" - | - |"),
                    }
                }
            }
            out.push('\n');
        }
        if s.measured {
            out.push_str(
                "\nPrefill (the prompt runs at full depth for every strategy, so these differ \
                 only by noise):\n\n",
            );
            let mut head = String::from("| strategy | target |");
            let mut rule = String::from("|---|---|");
            for b in &s.batch_sizes {
                let _ = write!(head, " prefill tok/s, batch {b} |");
                rule.push_str("---|");
            }
            let _ = writeln!(out, "{head}\n{rule}");
            for r in self.rows.iter().filter(|r| r.possible) {
                let target = r.target.map_or("-".into(), fmt_target);
                let _ = write!(out, "| {} | {target} |", r.strategy);
                for &b in &s.batch_sizes {
                    match r.at_batch(b) {
                        Some(c) => {
                            let p = &c.prefill_tokens_per_s;
                            let _ = write!(out, " {:.0} ({:.0}..{:.0}) |", p.median, p.min, p.max);
                        }
                        None => out.push_str(" - |"),
                    }
                }
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_print_without_trailing_zeros() {
        assert_eq!(fmt_target(1.5), "1.5x");
        assert_eq!(fmt_target(2.0), "2x");
        assert_eq!(fmt_target(1.25), "1.25x");
    }

    #[test]
    fn perplexities_print_compactly() {
        assert_eq!(fmt_ppl(54.123), "54.12");
        assert_eq!(fmt_ppl(2896.68), "2897");
        assert_eq!(fmt_ppl(11_555_169_396.28), "1.2e10");
    }

    #[test]
    fn a_stat_has_the_median_and_the_spread() {
        let s = Stat::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.rounds, vec![3.0, 1.0, 2.0]);
    }
}
