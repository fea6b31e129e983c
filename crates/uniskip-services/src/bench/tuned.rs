//! `bench -m TUNED`: a tuned file (from `uniskip tune`) beside the model it was tuned from,
//! at the file's own strategy and target. Three rows: the base model at full depth (the
//! reference), the base model under the same mask (untuned), and the tuned file under its
//! mask. Quality of both masked rows is measured against the base at full depth on the
//! same windows; speed of all three is measured in one interleaved run, so the tuned row's
//! tokens/s can be compared with the untuned row's under the same mask.

use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::machine::Machine;
use super::report::{
    ModelInfo, Phases, QualitySettings, Report, RowReport, SpeedCell, SpeedSettings, Stat,
};
use super::run::BenchSettings;
use crate::measure::speed::{WARMUP_STEPS, time_once};
use crate::quality::cross::evaluate_against;
use crate::quality::{Corpus, Slice};
use crate::tune::TunedInfo;
use crate::tune::base::{base_mask, load_base};
use crate::utc;
use uniskip_engine::{ContextOptions, LlamaToken, Model, Session};
use uniskip_skip::{Mask, Plan};

/// What a tuned file's benchmark compares: the tuning and the base model.
#[derive(Debug, Clone, Serialize)]
pub struct TunedComparison {
    /// The tuned file's metadata.
    pub tuning: TunedInfo,
    /// The base model: the `full` and `(base, untuned)` rows run it, and it is the
    /// quality reference.
    pub base: ModelInfo,
    /// Decode speed of the tuned row over the untuned row (the same mask), per batch size:
    /// the two should run at the same speed.
    pub tuned_over_untuned: Vec<BatchRatio>,
}

/// A speed ratio at one batch size.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRatio {
    /// Sequences decoded together.
    pub batch: usize,
    /// The ratio per round (pairs measured in the same round).
    pub ratio: Stat,
}

/// One row: which model runs it, under which mask.
struct TunedRow {
    report: RowReport,
    on_tuned: bool,
    mask: Mask,
}

/// A row's report before anything is measured; the speedup by blocks counts the base
/// model's blocks (a pruned tuned file has fewer).
fn row(strategy: String, target: f64, mask: &Mask, base_layers: usize) -> RowReport {
    RowReport {
        strategy,
        target: Some(target),
        possible: true,
        reason: None,
        kept_blocks: Some(mask.active_indices()),
        active_blocks_per_step: None,
        active_blocks: Some(mask.n_active() as f64),
        speedup_by_layers: Some(base_layers as f64 / mask.n_active() as f64),
        quality: None,
        speed: Vec::new(),
    }
}

/// Runs the benchmark of the tuned file `tuned` (loaded from `settings.model_path`, with
/// tuning `info`) against its base model; `progress` as in [`super::run::run`].
pub fn run(
    settings: &BenchSettings,
    tuned: &Model,
    info: &TunedInfo,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Report> {
    let started = Instant::now();
    let unix = utc::now();
    let machine = Machine::current();
    let path = &settings.model_path;
    let threads = settings.threads;
    let tuned_info = ModelInfo::of(tuned, path, crate::models::file_sha256(path)?);
    let (base_path, base) = load_base(
        tuned,
        info,
        path,
        settings.base.as_deref(),
        &settings.model_options,
    )?;
    let base_info = ModelInfo::of(&base, &base_path, info.base_sha256.to_ascii_lowercase());
    let n_layer = base.n_layer();
    eprintln!(
        "{}: {} (base model {})",
        path.display(),
        info.describe(),
        base_path.display()
    );

    if info.planned_len.is_some() {
        // Every row here is one mask; a schedule changes with the position.
        return Err(uniskip_error::BadInput(format!(
            "{} is tuned for a schedule that changes with the position ({}): bench compares one mask per row; measure it with `uniskip ppl -m FILE`",
            path.display(),
            info.strategy
        ))
        .into());
    }
    let tuned_mask = info.mask()?;
    let untuned_mask = base_mask(tuned, info, n_layer)?;
    let mut rows = vec![
        TunedRow {
            report: row("full".into(), 1.0, &Mask::full(n_layer), n_layer),
            on_tuned: false,
            mask: Mask::full(n_layer),
        },
        TunedRow {
            report: row(
                format!("{} (base, untuned)", info.strategy),
                info.speedup,
                &untuned_mask,
                n_layer,
            ),
            on_tuned: false,
            mask: untuned_mask.clone(),
        },
        TunedRow {
            report: row(
                format!("{} (tuned)", info.strategy),
                info.speedup,
                &tuned_mask,
                n_layer,
            ),
            on_tuned: true,
            mask: tuned_mask.clone(),
        },
    ];
    let phases_count = usize::from(settings.quality) + usize::from(settings.speed);
    let quality_label = format!("quality (phase 1 of {phases_count})");
    let speed_label = format!("speed (phase {phases_count} of {phases_count})");
    let mut phases = Phases::default();

    let mut quality_settings = None;
    if settings.quality {
        let t = Instant::now();
        let corpus = Corpus::load(settings.corpus.as_deref())?;
        let shape = settings.shape;
        let windows = corpus
            .windows(&base, Slice::Evaluation, settings.windows, shape.len())
            .context("cutting the evaluation windows")?;
        let c = shape.continuation;
        let (on_base, on_tuned) = evaluate_against(
            &base,
            tuned,
            threads,
            &windows,
            shape,
            crate::quality::windows_per_group(base.n_vocab(), c),
            &[vec![Mask::full(n_layer); c], vec![untuned_mask; c]],
            &[vec![tuned_mask; c]],
            &mut |d, t| progress(&quality_label, d, t),
        )?;
        for (r, acc) in rows.iter_mut().zip(on_base.iter().chain(&on_tuned)) {
            r.report.quality = Some(acc.summary());
        }
        quality_settings = Some(QualitySettings::evaluation(
            &corpus,
            windows.len(),
            shape,
            format!(
                "the base model at full depth ({}), same windows, same positions",
                base_path.display()
            ),
        ));
        phases.quality = t.elapsed().as_secs_f64();
    }

    let mut batches = settings.batches.clone();
    batches.sort_unstable();
    batches.dedup();
    let mut prompt_len = 0;
    let mut tuned_over_untuned = Vec::new();
    if settings.speed {
        let t = Instant::now();
        let prompt = super::run::prompt_tokens(&base, settings.prompt_tokens)?;
        prompt_len = prompt.len();
        measure_speed(
            &base,
            tuned,
            threads,
            &prompt,
            settings,
            &batches,
            &mut rows,
            &mut |d, t| progress(&speed_label, d, t),
        )?;
        phases.speed = t.elapsed().as_secs_f64();
        // Rows 1 and 2: the same mask on the base and on the tuned file.
        for (untuned, tuned) in rows[1].report.speed.iter().zip(&rows[2].report.speed) {
            let ratio = tuned
                .decode_tokens_per_s
                .rounds
                .iter()
                .zip(&untuned.decode_tokens_per_s.rounds)
                .map(|(t, u)| t / u)
                .collect();
            tuned_over_untuned.push(BatchRatio {
                batch: tuned.batch,
                ratio: Stat::of(ratio),
            });
        }
    }

    let speed_settings = SpeedSettings {
        threads,
        rounds: settings.rounds,
        warmup_rounds: 1,
        decode_tokens: settings.decode_tokens,
        prompt_tokens: prompt_len,
        batch_sizes: batches,
        targets: vec![info.speedup],
        strategies: vec![info.strategy.clone()],
        prefill: "full".into(),
        measured: settings.speed,
    };
    let mut report = Report::finished_now(
        &settings.command,
        unix,
        started,
        phases,
        machine,
        tuned_info,
        speed_settings,
    );
    report.quality_settings = quality_settings;
    report.rows = rows.into_iter().map(|r| r.report).collect();
    report.tuned = Some(TunedComparison {
        tuning: info.clone(),
        base: base_info,
        tuned_over_untuned,
    });
    Ok(report)
}

/// Measures every row at every batch size, rounds interleaved across both models as
/// [`crate::measure::speed::measure`] interleaves one model's configurations (the order
/// rotates, and runs backwards every other round; a shorter warm-up round first). The
/// speedup is paired per round with the base model's full depth at the same batch size.
#[allow(clippy::too_many_arguments)]
fn measure_speed(
    base: &Model,
    tuned: &Model,
    threads: i32,
    prompt: &[LlamaToken],
    settings: &BenchSettings,
    batches: &[usize],
    rows: &mut [TunedRow],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let steps = settings.decode_tokens;
    let rounds = settings.rounds;
    // The contexts `Bench::run` makes: every sequence's prompt and steps fit.
    fn open<'m>(
        model: &'m Model,
        b: usize,
        prompt: usize,
        steps: usize,
        threads: i32,
    ) -> Result<Session<'m>> {
        let n_ctx = (b * (prompt + steps + 8)).max(256) as u32;
        Ok(model.session(&ContextOptions {
            n_ctx,
            n_batch: n_ctx.min((b * prompt).max(512) as u32),
            n_seq: b as u32,
            threads,
        })?)
    }
    // sessions[model][batch index]: 0 the base, 1 the tuned file.
    let mut sessions: Vec<Vec<Session<'_>>> = vec![Vec::new(), Vec::new()];
    for &b in batches {
        sessions[0].push(open(base, b, prompt.len(), steps, threads)?);
        sessions[1].push(open(tuned, b, prompt.len(), steps, threads)?);
    }
    // (row, batch index, plan)
    let configs: Vec<(usize, usize, Plan)> = (0..rows.len())
        .flat_map(|r| (0..batches.len()).map(move |bi| (r, bi)))
        .map(|(r, bi)| (r, bi, Plan::fixed(rows[r].mask.clone())))
        .collect();
    let work = |bi: usize, n: usize| batches[bi] * (prompt.len() + n);
    let warmup = steps.min(WARMUP_STEPS);
    let total: usize = configs
        .iter()
        .map(|&(_, bi, _)| work(bi, warmup) + rounds * work(bi, steps))
        .sum();
    let mut done = 0;
    progress(0, total);
    // decode[config] and prefill[config], per measured round.
    let mut decode = vec![Vec::new(); configs.len()];
    let mut prefill = vec![Vec::new(); configs.len()];
    let n_cfg = configs.len();
    for round in 0..=rounds {
        for k in 0..n_cfg {
            let c = if round % 2 == 0 {
                (k + round) % n_cfg
            } else {
                (n_cfg - 1 - k + round) % n_cfg
            };
            let (r, bi, plan) = &configs[c];
            let s = &mut sessions[usize::from(rows[*r].on_tuned)][*bi];
            let n = if round == 0 { warmup } else { steps };
            let (pt, dt) = time_once(s, prompt, n, Some(plan))?;
            if round > 0 {
                let n_seq = batches[*bi] as f64;
                prefill[c].push(n_seq * prompt.len() as f64 / pt.as_secs_f64());
                decode[c].push(n_seq * steps as f64 / dt.as_secs_f64());
            }
            done += work(*bi, n);
            progress(done, total);
        }
    }
    for (c, &(r, bi, _)) in configs.iter().enumerate() {
        // Row 0 is the base model at full depth; configs are row-major.
        let reference = &decode[bi];
        let ratios = decode[c]
            .iter()
            .zip(reference)
            .map(|(x, b)| x / b)
            .collect();
        rows[r].report.speed.push(SpeedCell {
            batch: batches[bi],
            prefill_tokens_per_s: Stat::of(prefill[c].clone()),
            decode_tokens_per_s: Stat::of(decode[c].clone()),
            speedup: Stat::of(ratios),
        });
    }
    Ok(())
}
