//! Skip-aware fine-tuning on SmolLM2 through llama.cpp's own training API.

use crate::common::*;
use uniskip::engine::{Trainer, TrainerOptions, write_f32_model};
use uniskip::skip::{Depth, Strategy, StrategySpec, plan};

/// Training under a mask of 15 of SmolLM2's 30 blocks lowers the loss of what it trains
/// on, measured by a forward pass under the same mask before and after (the spike that
/// shows llama.cpp's training API works with the skip hook).
#[test]
fn training_under_a_mask_of_15_of_30_blocks_lowers_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let f32_path = dir.path().join("smollm2-f32.gguf");
    write_f32_model(&model_path("smollm2"), &f32_path, 2).expect("F32 copy");
    let model = load("smollm2");
    let spec = StrategySpec::default_for(Strategy::Unified).unwrap();
    let mask = plan(&spec, 30, Depth::Ratio(2.0), 0).unwrap();
    assert_eq!(mask.n_active(), 15);
    let text = format!("{PROMPT} ").repeat(40);
    let tokens: Vec<i32> = model.tokenize(&text, true).unwrap()[..257]
        .iter()
        .map(|t| t.0)
        .collect();
    drop(model);

    let mut trainer = Trainer::load(
        &f32_path,
        &TrainerOptions {
            window: 256,
            threads: 2,
            trainable_blocks: mask.active_indices(),
            train_output_norm: false,
        },
    )
    .expect("trainer");
    trainer.set_learning_rate(1e-4);
    let bytes = mask.as_bytes();
    let before = trainer.evaluate(&[&tokens], Some(&bytes)).unwrap();
    let mut losses = Vec::new();
    for _ in 0..3 {
        losses.push(trainer.step(&tokens, Some(&bytes)).unwrap());
    }
    let after = trainer.evaluate(&[&tokens], Some(&bytes)).unwrap();
    eprintln!("masked loss before {before:.4}, steps {losses:?}, after {after:.4}");
    // The first step's loss is the loss before any update: the same forward pass.
    assert!(
        (losses[0] - before).abs() < 1e-3 * before.max(1.0),
        "{losses:?} vs {before}"
    );
    assert!(after < before - 0.1, "loss went from {before} to {after}");
}
