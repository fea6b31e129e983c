//! Teacher-forced quality on SmolLM2 against computations that share no code with it.

use crate::common::*;
use uniskip::quality::{Corpus, Slice, TeacherForcing, WindowShape};
use uniskip::skip::{Depth, Mask, StrategySpec, plan};

const SMOLLM2: &str = "smollm2";

const SHAPE: WindowShape = WindowShape {
    prefix: 8,
    continuation: 12,
};

/// A window of `SHAPE.len()` tokens from the test prompt.
fn window(model: &uniskip::engine::Model) -> Vec<uniskip::engine::LlamaToken> {
    let text = format!("{PROMPT} {PROMPT}");
    let tokens = model.tokenize(&text, true).unwrap();
    tokens[..SHAPE.len()].to_vec()
}

/// Natural log of the softmax of `logits` at `i`, in f64, written out longhand.
fn log_softmax_by_hand(logits: &[f32], i: usize) -> f64 {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &z| m.max(f64::from(z)));
    let sum: f64 = logits.iter().map(|&z| (f64::from(z) - max).exp()).sum();
    f64::from(logits[i]) - max - sum.ln()
}

/// Perplexity of the continuation from raw logits of the whole window decoded in one batch.
fn perplexity_by_hand(
    model: &uniskip::engine::Model,
    tokens: &[uniskip::engine::LlamaToken],
    mask: &Mask,
) -> f64 {
    let mut session = model.session(&ctx(1)).unwrap();
    let (prefix, rest) = tokens.split_at(SHAPE.prefix);
    decode_all(&mut session, prefix, Some(&Mask::full(model.n_layer())));
    let rows = decode_all(&mut session, &rest[..SHAPE.continuation], Some(mask));
    let nll: f64 = rows
        .iter()
        .enumerate()
        .map(|(j, row)| -log_softmax_by_hand(row, rest[j + 1].0 as usize))
        .sum();
    (nll / SHAPE.continuation as f64).exp()
}

#[test]
fn perplexity_at_full_depth_matches_a_log_softmax_by_hand_on_raw_logits() {
    let model = load(SMOLLM2);
    let tokens = window(&model);
    let full = Mask::full(model.n_layer());
    let want = perplexity_by_hand(&model, &tokens, &full);

    let mut tf = TeacherForcing::new(&model, 2, vec![tokens], SHAPE).unwrap();
    let got = tf.score(&vec![full; SHAPE.continuation]).unwrap().summary();
    assert_eq!(got.tokens, SHAPE.continuation);
    let rel = (got.perplexity - want).abs() / want;
    assert!(
        rel < 1e-4,
        "perplexity {} vs {want} by hand (relative difference {rel})",
        got.perplexity
    );
}

#[test]
fn kl_of_full_depth_against_itself_is_zero_and_of_a_skipped_mask_is_positive() {
    let model = load(SMOLLM2);
    let n = model.n_layer();
    let mut tf = TeacherForcing::new(&model, 2, vec![window(&model)], SHAPE).unwrap();

    let full = tf.score(&vec![Mask::full(n); SHAPE.continuation]).unwrap();
    let s = full.summary();
    assert_eq!((s.kl_mean, s.kl_p99, s.kl_max), (0.0, 0.0, 0.0));
    assert_eq!(s.top1_agreement, 1.0);

    let unified = plan(&StrategySpec::Unified, n, Depth::Ratio(2.0), 0).unwrap();
    let s = tf
        .score(&vec![unified; SHAPE.continuation])
        .unwrap()
        .summary();
    assert!(s.kl_mean > 0.0 && s.kl_p99 >= s.kl_mean, "{s:?}");
    assert!(s.top1_agreement < 1.0, "{s:?}");

    // Scoring again after other masks gives the same numbers: the cache is back to the
    // prefixes alone after every schedule.
    let again = tf.score(&vec![Mask::full(n); SHAPE.continuation]).unwrap();
    assert_eq!(again.summary(), full.summary());
}

#[test]
fn a_decaying_schedule_split_into_runs_equals_token_by_token_decoding() {
    let model = load(SMOLLM2);
    let n = model.n_layer();
    let tokens = window(&model);
    let spec = StrategySpec::SkipDecode {
        planned_len: SHAPE.continuation + 1,
    };
    // Position j is decode step j + 1.
    let masks: Vec<Mask> = (1..=SHAPE.continuation)
        .map(|s| plan(&spec, n, Depth::Ratio(2.0), s).unwrap())
        .collect();
    assert!(
        masks.windows(2).any(|w| w[0] != w[1]),
        "the schedule varies"
    );

    let mut session = model.session(&ctx(1)).unwrap();
    decode_all(&mut session, &tokens[..SHAPE.prefix], Some(&Mask::full(n)));
    let mut nll = 0.0;
    for (j, mask) in masks.iter().enumerate() {
        let row = step(&mut session, tokens[SHAPE.prefix + j], Some(mask));
        nll -= log_softmax_by_hand(&row, tokens[SHAPE.prefix + j + 1].0 as usize);
    }
    assert_eq!(
        session.repair_stats().repairs,
        0,
        "a decaying schedule never repairs"
    );
    let want = (nll / SHAPE.continuation as f64).exp();

    let mut tf = TeacherForcing::new(&model, 2, vec![tokens], SHAPE).unwrap();
    let got = tf.score(&masks).unwrap().summary().perplexity;
    let rel = (got - want).abs() / want;
    assert!(rel < 1e-3, "teacher-forced {got} vs step by step {want}");
}

#[test]
fn evaluation_and_calibration_windows_come_from_different_text() {
    let model = load(SMOLLM2);
    let corpus = Corpus::load(Some(model_path("shakespeare").to_str().unwrap())).unwrap();
    let eval = corpus.windows(&model, Slice::Evaluation, 6, 40).unwrap();
    let cal = corpus.windows(&model, Slice::Calibration, 6, 40).unwrap();
    assert!(eval.iter().chain(&cal).all(|w| w.len() == 40));
    for e in &eval {
        for c in &cal {
            assert_ne!(e[1..9], c[1..9], "a window appears in both slices");
        }
    }
    // Deterministic: the same windows every time.
    assert_eq!(
        eval,
        corpus.windows(&model, Slice::Evaluation, 6, 40).unwrap()
    );
}
