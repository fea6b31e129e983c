//! Gemma 3 (sliding-window attention, 18 blocks, no chat template) under a mask.

use crate::common::*;
use uniskip::engine::{PrefillPolicy, Request, Sampling, generate};
use uniskip::skip::{Depth, StrategySpec, plan};

#[test]
fn gemma3_generates_under_a_unified_mask_and_the_mask_changes_its_output() {
    let model = load("gemma3");
    assert_eq!(model.architecture(), "gemma3");
    assert_eq!(model.n_layer(), 18);
    assert!(!model.has_chat_template());
    let prompt = vec![
        model
            .tokenize("The three primary colours are", true)
            .unwrap(),
    ];
    let sampling = Sampling::greedy();
    let run = |mask: uniskip::skip::Mask| {
        let mut session = model.session(&ctx(1)).unwrap();
        generate(
            &mut session,
            &Request {
                prompts: &prompt,
                max_tokens: 12,
                prefill: PrefillPolicy::Full,
                sampling: &sampling,
                interrupt: None,
                lossless: None,
            },
            &mut |_| mask.clone(),
            &mut |_| std::ops::ControlFlow::Continue(()),
        )
        .unwrap()
    };
    let skipped = plan(&StrategySpec::Unified, 18, Depth::Ratio(1.5), 0).unwrap();
    assert_eq!(skipped.n_active(), 12);
    let full = run(uniskip::skip::Mask::full(18));
    let masked = run(skipped);
    assert_eq!(masked.generated_tokens, masked.tokens[0].len());
    assert!(masked.generated_tokens > 0, "nothing generated");
    assert!(!full.texts[0].is_empty());
    assert_ne!(
        full.tokens[0], masked.tokens[0],
        "skipping 6 of 18 blocks changed nothing"
    );
}

#[test]
fn gemma3_switch_and_repair_match_a_fresh_context() {
    let model = load("gemma3");
    let n = model.n_layer();
    let tokens = model
        .tokenize("Once upon a time, in a small village,", true)
        .unwrap();
    let m1 = skipping(n, &[3, 6, 9, 12]);
    let m2 = skipping(n, &[4, 8, 13]);
    let follow = model.tokenize(" there lived an old baker", false).unwrap();
    let mut live = model.session(&ctx(1)).unwrap();
    decode_all(&mut live, &tokens, None);
    for &t in &follow[..3] {
        step(&mut live, t, Some(&m1));
    }
    let got = step(&mut live, follow[3], Some(&m2));
    assert_eq!(live.repair_stats().tokens, 3);
    let mut fresh = model.session(&ctx(1)).unwrap();
    decode_all(&mut fresh, &tokens, None);
    decode_all(&mut fresh, &follow[..3], Some(&m2));
    let want = step(&mut fresh, follow[3], Some(&m2));
    let diff = max_abs_diff(&got, &want);
    assert!(diff <= 1e-3, "logits differ by {diff}");
}
