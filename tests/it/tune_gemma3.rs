//! Tuning a second architecture: Gemma 3, whose feed-forward ggml cannot differentiate in
//! its fused form (GEGLU); training graphs compose it from operations that have a backward
//! pass.

use crate::common::*;
use uniskip::engine::{Model, TrainingMask};
use uniskip::skip::{Depth, Strategy, StrategySpec, plan};

/// Gemma 3 trains under the prefix recipe at 1.5x (12 of 18 blocks): the trainer's loss
/// before any step equals the inference path's on the same window (the composed GEGLU
/// computes what the fused one does), and two steps lower it.
#[test]
fn gemma3_trains_under_the_prefix_recipe_and_its_loss_matches_inference() {
    let f32_path = f32_copy("gemma3");
    let model = Model::load(&f32_path, &Default::default()).unwrap();
    let spec = StrategySpec::default_for(Strategy::Unified).unwrap();
    let mask = plan(&spec, 18, Depth::Ratio(1.5), 0).unwrap();
    assert_eq!(mask.n_active(), 12);
    let tokens = repeated_prompt_window(&model);
    let prefix = 32;
    let inference = inference_continuation_loss(&model, &tokens, prefix, None, &mask);
    drop(model);

    let mut trainer = trainer(&f32_path, mask.active_indices(), true);
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
