//! Tests of the charts.

use super::*;

#[test]
fn ticks_are_round_numbers_covering_the_range() {
    assert_eq!(ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    assert_eq!(
        ticks(0.0, 300.0, 6),
        vec![0.0, 50.0, 100.0, 150.0, 200.0, 250.0, 300.0]
    );
    let t = ticks(0.93, 2.6, 8);
    assert!(t.first().unwrap() >= &0.93 && t.last().unwrap() <= &2.6);
    assert!(t.len() >= 4, "{t:?}");
}

fn row(strategy: &str, target: f64, kl: f64, speed: Option<(f64, f64)>) -> RowReport {
    use crate::bench::report::{SpeedCell, Stat};
    RowReport {
        strategy: strategy.into(),
        target: Some(target),
        possible: speed.is_some(),
        reason: speed.is_none().then(|| "out of range".into()),
        kept_blocks: None,
        active_blocks_per_step: None,
        active_blocks: None,
        speedup_by_layers: None,
        quality: speed.map(|_| crate::quality::QualitySummary {
            tokens: 10,
            perplexity: 20.0 + 100.0 * kl,
            kl_mean: kl,
            kl_p99: 2.0 * kl,
            kl_max: 3.0 * kl,
            top1_agreement: 1.0 - kl / 10.0,
        }),
        speed: speed
            .map(|(tps, ratio)| {
                [1, 8]
                    .into_iter()
                    .map(|batch| SpeedCell {
                        batch,
                        prefill_tokens_per_s: Stat::of(vec![100.0]),
                        decode_tokens_per_s: Stat::of(vec![tps * batch as f64]),
                        speedup: Stat::of(vec![ratio]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn report() -> Report {
    use crate::bench::report::{ModelInfo, Phases, SpeedSettings};
    Report {
        version: "0".into(),
        hook_revision: "r".into(),
        command: "uniskip bench".into(),
        date: "2025-01-01T00:00:00Z".into(),
        unix_time: 0,
        wall_seconds: 1.0,
        cpu_seconds: None,
        phases: Phases::default(),
        machine: super::super::machine::Machine::current(),
        model: ModelInfo {
            name: "M & <N>".into(),
            file: "m.gguf".into(),
            sha256: "00".into(),
            size_bytes: 1,
            architecture: "llama".into(),
            n_layer: 30,
            n_vocab: 100,
            device: "CPU (test)".into(),
        },
        speed_settings: SpeedSettings {
            threads: 2,
            rounds: 2,
            warmup_rounds: 1,
            decode_tokens: 4,
            prompt_tokens: 4,
            batch_sizes: vec![1, 8],
            targets: vec![1.5, 2.0],
            strategies: vec!["unified".into(), "early-exit".into()],
            prefill: "full".into(),
            measured: true,
        },
        quality_settings: None,
        calibration: None,
        tuned: None,
        rows: vec![
            row("full", 1.0, 0.0, Some((80.0, 1.0))),
            row("unified", 1.5, 2.0, Some((100.0, 1.3))),
            row("unified", 2.0, 4.0, Some((120.0, 1.6))),
            row("early-exit", 1.5, 3.0, Some((101.0, 1.31))),
            row("early-exit", 2.0, 0.0, None),
        ],
    }
}

#[test]
fn the_quality_chart_draws_one_line_per_strategy_and_marks_full_depth() {
    let svg = quality_chart(&report(), 1, QualityMetric::Kl).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<polyline points=").count(),
        1 + 2,
        "axes + 2 strategies"
    );
    assert!(svg.contains("full depth"));
    assert!(svg.contains("M &amp; &lt;N&gt;"), "text is escaped");
    let ppl = quality_chart(&report(), 1, QualityMetric::Ppl).unwrap();
    assert!(ppl.contains("log scale"));
}

#[test]
fn the_throughput_chart_has_a_bar_per_possible_cell_and_marks_impossible_ones() {
    let svg = throughput_chart(&report(), 8).unwrap();
    assert_eq!(svg.matches("<rect x=").count(), 3, "three possible cells");
    assert!(svg.contains(">impossible</text>"));
    assert!(svg.contains("full depth (640)"));
    assert!(
        throughput_chart(&report(), 2).is_none(),
        "batch 2 was not measured"
    );
}

#[test]
fn text_is_escaped() {
    assert_eq!(esc("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
}
