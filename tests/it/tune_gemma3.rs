//! Tuning a second architecture: Gemma 3, whose feed-forward ggml cannot differentiate in
//! its fused form (GEGLU); training graphs compose it from operations that have a backward
//! pass.

use crate::common::*;
use uniskip::engine::{
    BatchToken, LlamaToken, Model, Trainer, TrainerOptions, TrainingMask, write_f32_model,
};
use uniskip::skip::{Depth, Mask, Strategy, StrategySpec, plan};

/// Mean cross-entropy of `tokens[prefix + 1..]` at inference: the prompt at full depth,
/// the rest under `mask`.
fn inference_loss(model: &Model, tokens: &[i32], prefix: usize, mask: &Mask) -> f64 {
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
        let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        total += max + sum.ln() - logits[tokens[prefix + j + 1] as usize] as f64;
    }
    total / rows.len() as f64
}

/// Gemma 3 trains under the prefix recipe at 1.5x (12 of 18 blocks): the trainer's loss
/// before any step equals the inference path's on the same window (the composed GEGLU
/// computes what the fused one does), and two steps lower it.
#[test]
fn gemma3_trains_under_the_prefix_recipe_and_its_loss_matches_inference() {
    let dir = tempfile::tempdir().unwrap();
    let f32_path = dir.path().join("gemma3-f32.gguf");
    write_f32_model(&model_path("gemma3"), &f32_path, 1).expect("F32 copy");
    let model = Model::load(&f32_path, &Default::default()).unwrap();
    let spec = StrategySpec::default_for(Strategy::Unified).unwrap();
    let mask = plan(&spec, 18, Depth::Ratio(1.5), 0).unwrap();
    assert_eq!(mask.n_active(), 12);
    let text = format!("{PROMPT} ").repeat(40);
    let tokens: Vec<i32> = model.tokenize(&text, true).unwrap()[..257]
        .iter()
        .map(|t| t.0)
        .collect();
    let prefix = 32;
    let inference = inference_loss(&model, &tokens, prefix, &mask);
    drop(model);

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
    trainer.set_learning_rate(1e-4);
    let mut losses = Vec::new();
    for _ in 0..3 {
        losses.push(trainer.step(&tokens, recipe).unwrap());
    }
    eprintln!("gemma3 prefix recipe: trainer {losses:?}, inference {inference:.5}");
    let tolerance = 0.005 * inference;
    assert!(
        (losses[0] - inference).abs() < tolerance,
        "trainer {} vs inference {inference}",
        losses[0]
    );
    assert!(losses[2] < losses[0] - 0.1, "loss went {losses:?}");
}
