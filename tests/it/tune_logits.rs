//! Logit distillation: training rows whose targets are the base model's whole next-token
//! distributions (soft labels) instead of the next tokens.

use crate::common::*;
use uniskip::engine::{Model, TrainingMask};
use uniskip::skip::{Depth, Mask, Strategy, StrategySpec, plan};
use uniskip::tune::teacher::Teacher;

/// Mean KL divergence, over the continuation rows, of `model` (prompt of `prefix` tokens at
/// full depth, the rest under `mask`, decoded by the inference path) from the distributions
/// in `probs` (one row of `n_vocab` per window position).
fn inference_kl(model: &Model, tokens: &[i32], prefix: usize, mask: &Mask, probs: &[f32]) -> f64 {
    let n_vocab = model.n_vocab();
    let (mut total, mut n) = (0f64, 0usize);
    continuation_rows(model, tokens, prefix, None, mask, &mut |j, logits| {
        let lse = log_sum_exp(logits);
        let p = &probs[(prefix + j) * n_vocab..(prefix + j + 1) * n_vocab];
        total += p
            .iter()
            .zip(logits)
            .filter(|&(&p, _)| p > 0.0)
            .map(|(&p, &l)| p as f64 * ((p as f64).ln() - (l as f64 - lse)))
            .sum::<f64>();
        n += 1;
    });
    total / n as f64
}

/// With the base model's full-depth distributions as targets, the trainer's loss on a
/// prefix-recipe window is the KL divergence of the masked model from the base model: it
/// equals the KL measured through the inference path (prompt at full depth, continuation
/// with the skipped blocks left out) on the same window, it is not the next-token
/// cross-entropy, and steps towards those targets lower it.
#[test]
fn logit_targets_train_the_kl_from_the_base_model_that_inference_measures() {
    let f32_path = f32_copy("smollm2");
    let base = load("smollm2");
    let spec = StrategySpec::default_for(Strategy::Unified).unwrap();
    let mask = plan(&spec, 30, Depth::Ratio(1.5), 0).unwrap();
    let tokens = repeated_prompt_window(&base);
    let prefix = 32;
    let probs = Teacher::new(&base, 256, 1)
        .unwrap()
        .distributions(&tokens)
        .unwrap();
    assert_eq!(probs.len(), 256 * base.n_vocab());
    for row in probs.chunks_exact(base.n_vocab()).take(3) {
        let sum: f64 = row.iter().map(|&p| p as f64).sum();
        assert!((sum - 1.0).abs() < 1e-3, "a teacher row sums to {sum}");
    }
    drop(base);
    let f32_model = Model::load(&f32_path, &Default::default()).unwrap();
    let inference = inference_kl(&f32_model, &tokens, prefix, &mask, &probs);
    drop(f32_model);

    let mut trainer = trainer(&f32_path, mask.active_indices(), true);
    let bytes = mask.as_bytes();
    let recipe = TrainingMask::Prefix {
        mask: &bytes,
        prefix,
    };
    let hard = trainer.evaluate(&[&tokens], recipe).unwrap();
    trainer.set_learning_rate(1e-4);
    let mut kls = Vec::new();
    for _ in 0..3 {
        kls.push(trainer.step_towards(&tokens, recipe, &probs).unwrap());
    }
    eprintln!("trainer KL {kls:?}, inference KL {inference:.5}, next-token loss {hard:.5}");
    // Inference caches K and V in F16, training in F32: a few parts in a thousand.
    let tolerance = 0.005 * inference;
    assert!(
        (kls[0] - inference).abs() < tolerance,
        "trainer KL {} vs inference KL {inference}",
        kls[0]
    );
    assert!(
        (kls[0] - hard).abs() > 10.0 * tolerance,
        "the soft targets were not used: KL {} vs next-token loss {hard}",
        kls[0]
    );
    assert!(kls[2] < kls[0] - 0.1, "KL went {kls:?}");
}
