//! Benchmarks: the speed and the quality of every strategy, side by side, measured in one
//! run on the running machine.
//!
//! - [`grid`]: the rows (full depth, each strategy at each target; impossible ones kept).
//! - speed comes from [`crate::measure::speed`] (interleaved rounds, medians).
//! - quality comes from [`crate::quality`] (teacher-forced, against full depth).
//! - [`report`]: the JSON record and the Markdown tables; [`svg`]: the charts.
//! - [`lossless`]: lossless decoding against plain full depth, per prompt.
//! - [`machine`]: where (when: [`crate::utc`]).
//! - [`soak`]: the long run with its replay oracle.
//! - [`tuned`]: a tuned file beside its base model at the file's target.

pub mod grid;
pub mod lossless;
pub mod machine;
pub mod report;
pub mod run;
pub mod soak;
pub mod svg;
pub mod tuned;

use std::time::Instant;

use anyhow::Result;

use crate::measure::speed::{self, Config};
use crate::quality::{QualityAccumulator, WindowShape};
use grid::{Row, RowKind};
use report::{Phases, RowReport, SpeedCell, Stat};
use uniskip_engine::{ContextOptions, LlamaToken, Model, Session};
use uniskip_skip::Plan;

/// The quality half of a benchmark: evaluation windows and how they are cut.
pub struct QualityPlan {
    /// The evaluation windows (`shape.len()` tokens each).
    pub windows: Vec<Vec<LlamaToken>>,
    /// How each window is cut.
    pub shape: WindowShape,
    /// Windows evaluated together (bounds the reference's memory).
    pub group: usize,
}

/// The speed half of a benchmark.
pub struct SpeedPlan {
    /// Batch sizes.
    pub batches: Vec<usize>,
    /// Measured rounds (after one warm-up round).
    pub rounds: usize,
    /// Tokens decoded per sequence per measurement.
    pub decode_tokens: usize,
    /// The prompt, prefilled at full depth for every sequence.
    pub prompt: Vec<LlamaToken>,
}

/// A benchmark to run on one model.
pub struct Bench<'a> {
    /// The model.
    pub model: &'a Model,
    /// CPU threads.
    pub threads: i32,
    /// The grid; the first row must be full depth (the reference).
    pub rows: Vec<Row>,
    /// Quality, if measured.
    pub quality: Option<QualityPlan>,
    /// Speed, if measured.
    pub speed: Option<SpeedPlan>,
}

/// Which part of a benchmark is running, for progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Teacher-forced quality evaluation.
    Quality,
    /// Speed measurement.
    Speed,
}

impl Bench<'_> {
    /// Runs quality, then speed; `progress(phase, done, total)` after each unit of work.
    pub fn run(
        &self,
        progress: &mut dyn FnMut(Phase, usize, usize),
    ) -> Result<(Vec<RowReport>, Phases)> {
        assert!(
            matches!(self.rows.first().map(|r| &r.kind), Some(Ok(RowKind::Full))),
            "the first row must be full depth"
        );
        let n_layer = self.model.n_layer();
        let mut phases = Phases::default();
        let mut reports: Vec<RowReport> = self.rows.iter().map(|r| self.describe(r)).collect();

        if let Some(q) = &self.quality {
            let started = Instant::now();
            let scored: Vec<usize> = (0..self.rows.len())
                .filter(|&i| self.rows[i].masks(n_layer, 1).is_some())
                .collect();
            let schedules: Vec<_> = scored
                .iter()
                .map(|&i| {
                    // Position j of the continuation is decode step j + 1.
                    let mut m = self.rows[i]
                        .masks(n_layer, q.shape.continuation + 1)
                        .expect("possible row");
                    m.remove(0);
                    m
                })
                .collect();
            let accs: Vec<QualityAccumulator> = crate::quality::evaluate(
                self.model,
                self.threads,
                &q.windows,
                q.shape,
                q.group,
                &schedules,
                &mut |d, t| progress(Phase::Quality, d, t),
            )?;
            for (&i, acc) in scored.iter().zip(&accs) {
                reports[i].quality = Some(acc.summary());
            }
            phases.quality = started.elapsed().as_secs_f64();
        }

        if let Some(s) = &self.speed {
            let started = Instant::now();
            let mut sessions: Vec<Session<'_>> = Vec::new();
            for &b in &s.batches {
                let per_seq = s.prompt.len() + s.decode_tokens + 8;
                let n_ctx = (b * per_seq).max(256) as u32;
                let options = ContextOptions {
                    n_ctx,
                    n_batch: n_ctx.min((b * s.prompt.len()).max(512) as u32),
                    n_seq: b as u32,
                    threads: self.threads,
                };
                sessions.push(self.model.session(&options)?);
            }
            let mut configs = Vec::new();
            let mut owner = Vec::new();
            for (i, row) in self.rows.iter().enumerate() {
                // The plan spans the prefill's token and every decode step.
                let plan = row.plan(n_layer, s.decode_tokens + 1);
                if plan.is_none() && !matches!(row.kind, Ok(RowKind::Unset)) {
                    continue;
                }
                for &b in &s.batches {
                    configs.push(Config {
                        label: format!("{} batch {b}", reports[i].label()),
                        batch: b,
                        plan: plan.clone(),
                    });
                    owner.push(i);
                }
            }
            let measured = speed::measure(
                &mut sessions,
                &s.prompt,
                s.decode_tokens,
                &configs,
                s.rounds,
                &mut |d, t| progress(Phase::Speed, d, t),
            )?;
            for ((config, m), &i) in configs.iter().zip(&measured).zip(&owner) {
                // Row 0 is full depth; its measurement at this batch size is the baseline.
                let base = configs
                    .iter()
                    .zip(&measured)
                    .zip(&owner)
                    .find(|((c, _), o)| **o == 0 && c.batch == config.batch)
                    .map(|((_, m), _)| m)
                    .expect("full depth is measured at every batch size");
                let ratios = m
                    .decode
                    .iter()
                    .zip(&base.decode)
                    .map(|(x, b)| x / b)
                    .collect();
                reports[i].speed.push(SpeedCell {
                    batch: config.batch,
                    prefill_tokens_per_s: Stat::of(m.prefill.clone()),
                    decode_tokens_per_s: Stat::of(m.decode.clone()),
                    speedup: Stat::of(ratios),
                });
            }
            phases.speed = started.elapsed().as_secs_f64();
        }
        Ok((reports, phases))
    }

    /// A row's report before anything is measured: its masks, or why it is impossible.
    fn describe(&self, row: &Row) -> RowReport {
        let n_layer = self.model.n_layer();
        let steps = self.speed.as_ref().map_or(64, |s| s.decode_tokens);
        let mut r = RowReport {
            strategy: row.strategy.clone(),
            target: row.target,
            possible: row.is_possible(),
            reason: row.kind.as_ref().err().cloned(),
            kept_blocks: None,
            active_blocks_per_step: None,
            active_blocks: None,
            speedup_by_layers: None,
            quality: None,
            speed: Vec::new(),
        };
        if row.is_possible() {
            // The hook-unset row runs every block, like full depth.
            let plan = row
                .plan(n_layer, steps + 1)
                .unwrap_or_else(|| Plan::full(n_layer));
            let active = plan.mean_active(1, steps);
            if row.varies() {
                r.active_blocks_per_step =
                    Some((1..=steps).map(|s| plan.mask(s).n_active()).collect());
            } else {
                r.kept_blocks = Some(plan.mask(1).active_indices());
            }
            r.active_blocks = Some(active);
            r.speedup_by_layers = Some(n_layer as f64 / active);
        }
        r
    }
}
