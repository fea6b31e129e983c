//! `--speedup-mode measured` on the real default model: the probe's fit and the count it
//! picks. How well the prediction matches a fresh measurement is printed (a benchmark
//! check on a shared machine, not an assertion).

use crate::common::*;
use uniskip::measure::{probe, speed};
use uniskip::skip::{Depth, Plan, StrategySpec, plan};

#[test]
fn the_measured_mode_picks_the_deepest_count_whose_fitted_time_meets_the_target() {
    let model = load("smollm2");
    let n = model.n_layer();
    let prompt = model.tokenize(PROMPT, true).unwrap();
    let mut session = model.session(&ctx(1)).unwrap();
    let probe = probe::measure(&mut session, &prompt, 24, 3, 2).unwrap();

    // The fit and its inputs: a line through the measured medians (least squares: the
    // residuals cancel), growing with depth, with a non-negative fixed cost.
    assert_eq!(
        probe.samples.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![n, n / 2, 2]
    );
    assert!(
        probe.cost.b_s > 0.0 && probe.cost.a_s >= 0.0,
        "{:?}",
        probe.cost
    );
    if probe.cost.a_s > 0.0 {
        let residual: f64 = probe
            .samples
            .iter()
            .map(|&(k, t)| t - probe.cost.predict_s(k))
            .sum();
        let scale: f64 = probe.samples.iter().map(|s| s.1).sum();
        assert!(
            residual.abs() <= 1e-9 * scale.max(1.0) + 1e-12,
            "residuals sum to {residual}"
        );
    }
    let target = 1.5;
    let k = probe.cost.count_for_target(n, target).unwrap();
    assert!(probe.cost.predicted_speedup(k, n) >= target - 1e-9);
    assert!(
        k == n || probe.cost.predicted_speedup(k + 1, n) < target,
        "a deeper count also meets it"
    );
    // The fixed cost makes the measured count keep fewer blocks than counting layers.
    assert!(k <= Depth::Ratio(target).kept(n).unwrap());

    // Benchmark check: what the engine measures for that count, interleaved with full depth.
    let configs = [
        speed::Config {
            label: "full".into(),
            batch: 1,
            plan: None,
        },
        speed::Config {
            label: format!("{k} blocks"),
            batch: 1,
            plan: Some(Plan::fixed(
                plan(&StrategySpec::Unified, n, Depth::Kept(k), 0).unwrap(),
            )),
        },
    ];
    let m = speed::measure(
        std::slice::from_mut(&mut session),
        &prompt,
        32,
        &configs,
        3,
        &mut |_, _| {},
    )
    .unwrap();
    let measured = speed::median(&m[1].decode) / speed::median(&m[0].decode);
    let predicted = probe.cost.predicted_speedup(k, n);
    eprintln!(
        "measured mode at {target}x: {k}/{n} blocks, predicted {predicted:.3}x, measured {measured:.3}x ({:+.1}%{})",
        (measured / predicted - 1.0) * 100.0,
        if (measured / predicted - 1.0).abs() <= 0.10 {
            ", within 10%"
        } else {
            ", NOT within 10%"
        }
    );
}
