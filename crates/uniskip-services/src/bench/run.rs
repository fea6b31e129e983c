//! One benchmark run from its settings to its report: the model, the calibrated
//! placements (found, or searched first), the grid, quality, speed, and the files written.
//! The command line only turns flags into [`BenchSettings`] and prints the result.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::machine::Machine;
use super::report::{CalibrationInfo, ModelInfo, QualitySettings, Report, SpeedSettings};
use super::svg::{QualityMetric, quality_chart, throughput_chart};
use super::{Bench, Phase, QualityPlan, SpeedPlan, grid};
use crate::calibrate::{DEFAULT_SHAPE, FoundProfile, calibrate, find_profile, profile_file};
use crate::quality::{Corpus, Slice, WindowShape};
use crate::utc;
use uniskip_engine::{LlamaToken, Model, ModelOptions};
use uniskip_skip::{Mask, Strategy};

/// What to benchmark and how.
#[derive(Debug, Clone)]
pub struct BenchSettings {
    /// The model file.
    pub model_path: PathBuf,
    /// How the model is loaded.
    pub model_options: ModelOptions,
    /// CPU threads.
    pub threads: i32,
    /// Strategies compared with full depth.
    pub strategies: Vec<Strategy>,
    /// Target speedups (block count ratios).
    pub targets: Vec<f64>,
    /// Batch sizes of the speed measurement.
    pub batches: Vec<usize>,
    /// Explicit skip lists (`8-22`) measured as their own rows.
    pub skip_lists: Vec<String>,
    /// Measured rounds per configuration (after a warm-up round).
    pub rounds: usize,
    /// Tokens decoded per sequence per measurement.
    pub decode_tokens: usize,
    /// Prompt tokens per sequence.
    pub prompt_tokens: usize,
    /// Text for quality and calibration (`None`: the default corpus).
    pub corpus: Option<String>,
    /// Quality windows.
    pub windows: usize,
    /// How each quality window is cut.
    pub shape: WindowShape,
    /// Measure quality.
    pub quality: bool,
    /// Measure speed.
    pub speed: bool,
    /// Add the `full, hook unset` row.
    pub unset_row: bool,
    /// Calibration profile for the calibrated rows (`None`: the model's cached one).
    pub profile: Option<PathBuf>,
    /// Search a calibration profile when none is cached.
    pub calibrate: bool,
    /// The command line, as recorded in the report.
    pub command: String,
    /// For a tuned file: its base model (`None`: the cached catalog model the file names).
    pub base: Option<PathBuf>,
}

/// The labels of a run's phases, numbered as they will run.
struct PhaseLabels {
    calibration: String,
    quality: String,
    speed: String,
}

impl PhaseLabels {
    fn new(calibrates: bool, quality: bool, speed: bool) -> PhaseLabels {
        let count = usize::from(calibrates) + usize::from(quality) + usize::from(speed);
        let quality_at = 1 + usize::from(calibrates);
        let speed_at = quality_at + usize::from(quality);
        PhaseLabels {
            calibration: format!("calibration (phase 1 of {count})"),
            quality: format!("quality (phase {quality_at} of {count})"),
            speed: format!("speed (phase {speed_at} of {count})"),
        }
    }
}

/// Runs the benchmark; `progress(label, done, total)` reports each phase's work under its
/// label (a new label starts a new phase).
pub fn run(
    settings: &BenchSettings,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Report> {
    let started = Instant::now();
    let unix = utc::now();
    let machine = Machine::current();
    for &t in &settings.targets {
        if !(t.is_finite() && t >= 1.0) {
            bail!("--targets: {t} is not a speedup (a number >= 1)");
        }
    }
    let path = &settings.model_path;
    let model = Model::load(path, &settings.model_options)?;
    let n_layer = model.n_layer();
    let threads = settings.threads;
    let sha = crate::models::file_sha256(path)?;
    let model_info = ModelInfo::of(&model, path, sha.clone());
    if let Some(w) = model.unverified_warning() {
        eprintln!("{w}");
    }
    // A tuned file is compared with its base model at its own target.
    if let Some(info) = crate::tune::read_tuned(&model)? {
        return super::tuned::run(settings, &model, &info, progress);
    }
    if settings.base.is_some() {
        return Err(uniskip_error::BadInput(format!(
            "--base is for tuned files, and {} has no uniskip tuning metadata",
            path.display()
        ))
        .into());
    }
    let mut batches = settings.batches.clone();
    batches.sort_unstable();
    batches.dedup();
    let manual = settings
        .skip_lists
        .iter()
        .map(|list| {
            Mask::from_skip_list(list, n_layer)
                .map(|m| (list.clone(), m))
                .with_context(|| format!("--skip-layers {list}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let wants_calibrated = settings.strategies.contains(&Strategy::Calibrated);
    let corpus = if settings.quality || wants_calibrated {
        Some(Corpus::load(settings.corpus.as_deref())?)
    } else {
        None
    };

    // The calibrated placements: an explicit or cached profile, else a search now.
    let found = if wants_calibrated {
        find_profile(&sha, settings.profile.as_deref())?
    } else {
        None
    };
    let searches = wants_calibrated
        && settings.calibrate
        && settings.profile.is_none()
        && !found.as_ref().is_some_and(|f| f.profile.complete);
    let labels = PhaseLabels::new(searches, settings.quality, settings.speed);
    let mut calibration_seconds = 0.0;
    let profile: Option<(FoundProfile, bool)> = if searches {
        let t = Instant::now();
        let file = profile_file(&sha, None)?;
        eprintln!(
            "no complete calibration profile for this model: searching one first (cached in {})",
            file.display()
        );
        let (windows, shape) = DEFAULT_SHAPE;
        let (profile, _) = calibrate(
            &model,
            &sha,
            threads,
            corpus.as_ref().expect("loaded for calibration"),
            windows,
            shape,
            &file,
            false,
            &mut |s| progress(&labels.calibration, s.done, s.total),
        )?;
        calibration_seconds = t.elapsed().as_secs_f64();
        Some((
            FoundProfile {
                profile,
                path: file,
            },
            true,
        ))
    } else {
        found.map(|f| (f, false))
    };
    let mut calibration: Option<CalibrationInfo> = None;
    let calibrated: Result<Vec<Mask>, String> = match profile {
        _ if !wants_calibrated => Err("not requested".into()),
        Some((found, made)) => {
            let p = &found.profile;
            calibration = Some(CalibrationInfo {
                profile: found.path.display().to_string(),
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
            path.display()
        )),
    };

    let rows = grid::build(
        n_layer,
        &settings.strategies,
        &settings.targets,
        &manual,
        calibrated,
        settings.unset_row,
    );
    let shape = settings.shape;
    let quality = match (&corpus, settings.quality) {
        (Some(c), true) => Some(QualityPlan {
            windows: c
                .windows(&model, Slice::Evaluation, settings.windows, shape.len())
                .context("cutting the evaluation windows")?,
            shape,
            group: crate::quality::windows_per_group(model.n_vocab(), shape.continuation),
        }),
        _ => None,
    };
    let speed = settings
        .speed
        .then(|| -> Result<SpeedPlan> {
            Ok(SpeedPlan {
                batches: batches.clone(),
                rounds: settings.rounds,
                decode_tokens: settings.decode_tokens,
                prompt: prompt_tokens(&model, settings.prompt_tokens)?,
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
    let (rows, mut phases) = bench.run(&mut |phase, done, total| match phase {
        Phase::Quality => progress(&labels.quality, done, total),
        Phase::Speed => progress(&labels.speed, done, total),
    })?;
    phases.calibration = calibration_seconds;

    let speed_settings = SpeedSettings {
        threads,
        rounds: settings.rounds,
        warmup_rounds: 1,
        decode_tokens: settings.decode_tokens,
        prompt_tokens: prompt_len,
        batch_sizes: batches,
        targets: settings.targets.clone(),
        strategies: settings
            .strategies
            .iter()
            .map(|s| s.name().to_string())
            .collect(),
        prefill: "full".into(),
        measured: settings.speed,
    };
    let mut report = Report::finished_now(
        &settings.command,
        unix,
        started,
        phases,
        machine,
        model_info,
        speed_settings,
    );
    report.quality_settings = bench.quality.as_ref().map(|q| {
        let c = corpus.as_ref().expect("quality needs the corpus");
        QualitySettings::evaluation(
            c,
            q.windows.len(),
            q.shape,
            "full depth, same windows, same positions".into(),
        )
    });
    report.calibration = calibration;
    report.rows = rows;
    Ok(report)
}

/// Prompt of the speed measurement; cut to `--prompt-tokens`.
const PROMPT: &str = "The history of the printing press begins in the fifteenth century, when \
a goldsmith in Mainz combined movable metal type, oil-based ink and a screw press adapted from \
wine making. Within fifty years printing shops had opened in more than two hundred cities \
across Europe, and the price of books fell so far that ordinary merchants could afford them. \
Scholars argue about how quickly the new technology changed the way people read, wrote and \
thought, but few doubt that it changed everything in the end.";

/// Exactly `n` tokens of the speed prompt (repeated if it is too short).
pub(super) fn prompt_tokens(model: &Model, n: usize) -> Result<Vec<LlamaToken>> {
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

/// A short name for file names: the catalog name given as `spec` (the default model's
/// when none was given), or the file's stem.
pub fn model_label(spec: Option<&str>, path: &Path) -> String {
    let raw = match spec {
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
pub fn write_outputs(
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
