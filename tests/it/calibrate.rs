//! Calibration on a tiny slice of real text, on SmolLM2.

use crate::common::*;
use uniskip::calibrate::{CalibrationSettings, Profile, Search};
use uniskip::engine::Model;
use uniskip::quality::{Corpus, Slice, TeacherForcing, WindowShape};
use uniskip::skip::{Depth, Mask, StrategySpec, plan};

const SMOLLM2: &str = "smollm2";

/// Tiny on purpose: a complete search evaluates about 540 placements on SmolLM2.
const SHAPE: WindowShape = WindowShape {
    prefix: 8,
    continuation: 4,
};

fn search(model: &Model, lowest_kept: usize) -> Search<'_> {
    let corpus = Corpus::load(Some(model_path("shakespeare").to_str().unwrap())).unwrap();
    let windows = corpus
        .windows(model, Slice::Calibration, 1, SHAPE.len())
        .unwrap();
    Search {
        model,
        model_sha256: "test".into(),
        threads: 2,
        settings: CalibrationSettings {
            corpus: corpus.label().into(),
            corpus_sha256: corpus.sha256().into(),
            windows: 1,
            shape: SHAPE,
        },
        windows,
        lowest_kept,
    }
}

fn kl_on_slice(tf: &mut TeacherForcing<'_>, mask: &Mask) -> f64 {
    tf.score(&vec![mask.clone(); SHAPE.continuation])
        .unwrap()
        .kl_mean()
}

#[test]
fn calibration_on_a_tiny_slice_gives_a_valid_profile_never_worse_than_unified() {
    let model = load(SMOLLM2);
    let n = model.n_layer();
    let s = search(&model, 2);
    let mut saved = 0;
    let profile = s
        .run(
            None,
            &mut |_| {
                saved += 1;
                Ok(())
            },
            &mut |_| {},
        )
        .unwrap();

    assert!(profile.complete);
    assert_eq!(saved, n - 2, "written after every count");
    let counts: Vec<usize> = profile.steps.iter().map(|s| s.kept).collect();
    assert_eq!(counts, (2..n).rev().collect::<Vec<_>>());
    for step in &profile.steps {
        assert_eq!(step.kept_blocks.len(), step.kept);
        assert!(step.kept_blocks.windows(2).all(|w| w[0] < w[1]));
        assert!(step.kept_blocks.iter().all(|&b| b < n));
        assert_eq!(
            step.first_and_last_kept,
            step.kept_blocks.contains(&0) && step.kept_blocks.contains(&(n - 1))
        );
        assert!(step.kl_mean <= step.unified_kl_mean, "{step:?}");
    }
    assert_eq!(
        profile.first_and_last_kept,
        profile.steps.iter().all(|s| s.first_and_last_kept)
    );

    // Re-measured independently on the same slice: never worse than unified.
    let mut tf = TeacherForcing::new(&model, 2, s.windows.clone(), SHAPE).unwrap();
    for kept in [n - 1, 24, 20, 15, 10, 2] {
        let calibrated = plan(&profile.spec(), n, Depth::Kept(kept), 0).unwrap();
        let unified = plan(&StrategySpec::Unified, n, Depth::Kept(kept), 0).unwrap();
        assert_eq!(calibrated.n_active(), kept);
        let (c, u) = (
            kl_on_slice(&mut tf, &calibrated),
            kl_on_slice(&mut tf, &unified),
        );
        assert!(c <= u, "{kept} kept: calibrated KL {c} > unified {u}");
    }
}

#[test]
fn an_interrupted_calibration_resumes_where_it_stopped() {
    let model = load(SMOLLM2);
    let n = model.n_layer();
    let lowest = n - 3;
    let s = search(&model, lowest);
    let whole = s.run(None, &mut |_| Ok(()), &mut |_| {}).unwrap();
    assert_eq!(whole.steps.len(), 3);
    assert!(!whole.complete, "stopped above 2 kept blocks");

    // Interrupted after two counts: the last profile written holds them.
    let mut last: Option<Profile> = None;
    let err = s
        .run(
            None,
            &mut |p| {
                last = Some(p.clone());
                if p.steps.len() == 2 {
                    anyhow::bail!("interrupted")
                }
                Ok(())
            },
            &mut |_| {},
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "interrupted");
    let partial = last.unwrap();
    assert_eq!(partial.steps.len(), 2);

    let mut searched = Vec::new();
    let resumed = s
        .run(Some(partial), &mut |_| Ok(()), &mut |p| {
            searched.push(p.kept)
        })
        .unwrap();
    assert!(
        searched.iter().all(|&k| k < n - 2),
        "counts 29 and 28 were not searched again"
    );
    let blocks = |p: &Profile| -> Vec<Vec<usize>> {
        p.steps.iter().map(|s| s.kept_blocks.clone()).collect()
    };
    assert_eq!(blocks(&resumed), blocks(&whole));
}
