//! Logit distillation: training rows whose targets are the base model's whole next-token
//! distributions (soft labels) instead of the next tokens.

use crate::common::*;
use uniskip::engine::{
    BatchToken, LlamaToken, Model, Trainer, TrainerOptions, TrainingMask, write_f32_model,
};
use uniskip::skip::{Depth, Mask, Strategy, StrategySpec, plan};
use uniskip::tune::teacher::Teacher;

/// Mean KL divergence, over the continuation rows, of `model` (prompt of `prefix` tokens at
/// full depth, the rest under `mask`, decoded by the inference path) from the distributions
/// in `probs` (one row of `n_vocab` per window position).
fn inference_kl(model: &Model, tokens: &[i32], prefix: usize, mask: &Mask, probs: &[f32]) -> f64 {
    let n_vocab = model.n_vocab();
    let mut session = model.session(&ctx(1)).unwrap();
    let batch = |range: std::ops::Range<usize>, logits: bool| -> Vec<BatchToken> {
        tokens[range]
            .iter()
            .map(|&t| BatchToken {
                seq: 0,
                token: LlamaToken(t),
                logits,
            })
            .collect()
    };
    let n = tokens.len() - 1;
    session.decode(&batch(0..prefix, false), None).unwrap();
    let rows = session.decode(&batch(prefix..n, true), Some(mask)).unwrap();
    let mut total = 0f64;
    for (j, &i) in rows.iter().enumerate() {
        let logits = session.logits(i);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max
            + logits
                .iter()
                .map(|&l| (l as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let p = &probs[(prefix + j) * n_vocab..(prefix + j + 1) * n_vocab];
        total += p
            .iter()
            .zip(logits)
            .filter(|&(&p, _)| p > 0.0)
            .map(|(&p, &l)| p as f64 * ((p as f64).ln() - (l as f64 - lse)))
            .sum::<f64>();
    }
    total / rows.len() as f64
}

/// With the base model's full-depth distributions as targets, the trainer's loss on a
/// prefix-recipe window is the KL divergence of the masked model from the base model: it
/// equals the KL measured through the inference path (prompt at full depth, continuation
/// with the skipped blocks left out) on the same window, it is not the next-token
/// cross-entropy, and steps towards those targets lower it.
#[test]
fn logit_targets_train_the_kl_from_the_base_model_that_inference_measures() {
    let dir = tempfile::tempdir().unwrap();
    let f32_path = dir.path().join("smollm2-f32.gguf");
    write_f32_model(&model_path("smollm2"), &f32_path, 1).expect("F32 copy");
    let base = load("smollm2");
    let spec = StrategySpec::default_for(Strategy::Unified).unwrap();
    let mask = plan(&spec, 30, Depth::Ratio(1.5), 0).unwrap();
    let text = format!("{PROMPT} ").repeat(40);
    let tokens: Vec<i32> = base.tokenize(&text, true).unwrap()[..257]
        .iter()
        .map(|t| t.0)
        .collect();
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

    let mut trainer = Trainer::load(
        &f32_path,
        &TrainerOptions {
            window: 256,
            threads: 1,
            trainable_blocks: mask.active_indices(),
            train_output_norm: true,
        },
    )
    .expect("trainer");
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
