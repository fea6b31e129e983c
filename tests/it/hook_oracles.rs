//! The skip hook against oracles that cannot lie (docs/DESIGN.md section 5), on SmolLM2.

use crate::common::*;
use uniskip::engine::{EngineError, Model, ModelOptions, write_pruned_model};
use uniskip::skip::Mask;

const SMOLLM2: &str = "smollm2";

/// Logits may differ between the pruned file and the skipped model only by float noise;
/// both run the same kernels on the same weights, so this is tight.
const PRUNE_TOLERANCE: f32 = 1e-3;

#[test]
fn skipping_blocks_at_run_time_equals_the_file_llama_cpp_writes_without_them() {
    let path = model_path(SMOLLM2);
    let model = load(SMOLLM2);
    let pruned_blocks = [3, 7, 11, 12, 13, 20, 26];
    let dir = tempfile::tempdir().unwrap();
    let pruned_path = dir.path().join("pruned.gguf");
    write_pruned_model(&path, &pruned_path, &pruned_blocks)
        .expect("llama.cpp writes the pruned file");
    let pruned = Model::load(&pruned_path, &ModelOptions::default()).unwrap();
    assert_eq!(pruned.n_layer(), model.n_layer() - pruned_blocks.len());

    let tokens = model.tokenize(PROMPT, true).unwrap();
    let mask = skipping(model.n_layer(), &pruned_blocks);

    let mut skipped = model.session(&ctx(1)).unwrap();
    let mut reference = pruned.session(&ctx(1)).unwrap();
    let got = decode_all(&mut skipped, &tokens, Some(&mask));
    let want = decode_all(&mut reference, &tokens, None);
    for (pos, (g, w)) in got.iter().zip(&want).enumerate() {
        let diff = max_abs_diff(g, w);
        assert!(
            diff <= PRUNE_TOLERANCE,
            "position {pos}: logits differ by {diff}"
        );
    }
    // And token by token, through the K/V cache of the skipped model.
    let (mut a, mut b) = (argmax(got.last().unwrap()), argmax(want.last().unwrap()));
    for i in 0..8 {
        assert_eq!(a, b, "greedy token {i} differs");
        let g = step(&mut skipped, a, Some(&mask));
        let w = step(&mut reference, b, None);
        let diff = max_abs_diff(&g, &w);
        assert!(
            diff <= PRUNE_TOLERANCE,
            "decode step {i}: logits differ by {diff}"
        );
        (a, b) = (argmax(&g), argmax(&w));
    }
}

#[test]
fn full_depth_through_the_hook_equals_a_run_that_sets_no_mask_bit_for_bit() {
    let model = load(SMOLLM2);
    let tokens = model.tokenize(PROMPT, true).unwrap();
    let full = Mask::full(model.n_layer());
    let mut hooked = model.session(&ctx(1)).unwrap();
    let mut plain = model.session(&ctx(1)).unwrap();
    let got = decode_all(&mut hooked, &tokens, Some(&full));
    let want = decode_all(&mut plain, &tokens, None);
    assert_eq!(got, want);
    let mut t = argmax(got.last().unwrap());
    for _ in 0..8 {
        let g = step(&mut hooked, t, Some(&full));
        let w = step(&mut plain, t, None);
        assert_eq!(g, w);
        t = argmax(&g);
    }
}

#[test]
fn a_mask_switch_takes_effect_at_once_and_matches_a_fresh_context() {
    let model = load(SMOLLM2);
    let n = model.n_layer();
    let tokens = model.tokenize(PROMPT, true).unwrap();
    let (body, last) = tokens.split_at(tokens.len() - 1);
    let m1 = skipping(n, &[5, 10, 15, 20]);
    // m2 computes a subset of m1's blocks: no repair, the switch alone is tested.
    let m2 = skipping(n, &[5, 10, 15, 20, 8, 9, 24]);
    let follow = model.tokenize(" a ship on the rocks", false).unwrap();

    let mut live = model.session(&ctx(1)).unwrap();
    decode_all(&mut live, body, None);
    step(&mut live, last[0], None);
    for &t in &follow[..3] {
        step(&mut live, t, Some(&m1));
    }
    // Same graph shape (one token), new mask: the logits must come from m2's graph.
    let after_switch = step(&mut live, follow[3], Some(&m2));
    assert_eq!(
        live.repair_stats().tokens,
        0,
        "m2 needs no block m1 skipped"
    );

    let mut fresh = model.session(&ctx(1)).unwrap();
    decode_all(&mut fresh, body, None);
    step(&mut fresh, last[0], None);
    for &t in &follow[..3] {
        step(&mut fresh, t, Some(&m1));
    }
    let under_m1 = {
        let mut other = model.session(&ctx(1)).unwrap();
        decode_all(&mut other, body, None);
        step(&mut other, last[0], None);
        for &t in &follow[..3] {
            step(&mut other, t, Some(&m1));
        }
        step(&mut other, follow[3], Some(&m1))
    };
    let want = step(&mut fresh, follow[3], Some(&m2));
    assert_eq!(
        after_switch, want,
        "state differs from a fresh context with the same masks"
    );
    assert!(
        max_abs_diff(&after_switch, &under_m1) > 1e-2,
        "the switch did not change the graph"
    );
}

#[test]
fn switching_to_a_mask_that_needs_skipped_blocks_repairs_and_matches_a_fresh_context() {
    let model = load(SMOLLM2);
    let n = model.n_layer();
    let tokens = model.tokenize(PROMPT, true).unwrap();
    let m1 = skipping(n, &[4, 8, 12, 16, 20, 24]);
    let m2 = skipping(n, &[6, 10, 14, 18]);
    let follow = model.tokenize(" a ship on the rocks", false).unwrap();

    let mut live = model.session(&ctx(1)).unwrap();
    decode_all(&mut live, &tokens, None);
    for &t in &follow[..3] {
        step(&mut live, t, Some(&m1));
    }
    let got = step(&mut live, follow[3], Some(&m2));
    assert_eq!(
        live.repair_stats().tokens,
        3,
        "the three tokens run under m1 are re-run"
    );

    // The oracle: positions under m1 were re-run under m2, so a fresh context sees the
    // prompt at full depth and everything after it under m2.
    let mut fresh = model.session(&ctx(1)).unwrap();
    decode_all(&mut fresh, &tokens, None);
    decode_all(&mut fresh, &follow[..3], Some(&m2));
    let want = step(&mut fresh, follow[3], Some(&m2));
    assert!(
        max_abs_diff(&got, &want) <= 1e-4,
        "repaired state differs by {}",
        max_abs_diff(&got, &want)
    );
}

#[test]
fn a_full_depth_turn_after_a_skipped_reply_equals_a_fresh_full_prefill_of_the_transcript() {
    let model = load(SMOLLM2);
    let n = model.n_layer();
    let prompt = model.tokenize(PROMPT, true).unwrap();
    let skip = skipping(n, &(8..20).collect::<Vec<_>>());
    let full = Mask::full(n);

    let mut chat = model.session(&ctx(1)).unwrap();
    let mut logits = decode_all(&mut chat, &prompt, Some(&full)).pop().unwrap();
    let mut reply = Vec::new();
    for _ in 0..6 {
        let t = argmax(&logits);
        reply.push(t);
        logits = step(&mut chat, t, Some(&skip));
    }
    let turn = model.tokenize(" Then the keeper said", false).unwrap();
    let got = decode_all(&mut chat, &turn, Some(&full)).pop().unwrap();
    assert_eq!(
        chat.repair_stats().tokens,
        6,
        "the skipped reply is re-run once"
    );

    let transcript: Vec<_> = prompt.iter().chain(&reply).chain(&turn).copied().collect();
    let mut fresh = model.session(&ctx(1)).unwrap();
    let want = decode_all(&mut fresh, &transcript, Some(&full))
        .pop()
        .unwrap();
    let diff = max_abs_diff(&got, &want);
    assert!(diff <= 1e-3, "logits differ by {diff}");
}

#[test]
fn four_sequences_decoded_together_give_each_ones_greedy_tokens_alone() {
    use uniskip::engine::{PrefillPolicy, Request, Sampling, generate};
    let model = load(SMOLLM2);
    let mask = skipping(model.n_layer(), &[6, 11, 16, 21, 25]);
    let prompts: Vec<_> = [
        "The capital of France is",
        "Water boils at a temperature of",
        "My favourite animal is the",
        "In 1969, the first person to walk on the moon was",
    ]
    .iter()
    .map(|p| model.tokenize(p, true).unwrap())
    .collect();
    let sampling = Sampling::greedy();
    let run = |prompts: &[Vec<uniskip::engine::LlamaToken>]| {
        let mut session = model.session(&ctx(prompts.len() as u32)).unwrap();
        generate(
            &mut session,
            &Request {
                prompts,
                max_tokens: 16,
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
    let together = run(&prompts);
    for (i, p) in prompts.iter().enumerate() {
        let alone = run(std::slice::from_ref(p));
        assert_eq!(together.tokens[i], alone.tokens[0], "sequence {i}");
        assert!(!alone.tokens[0].is_empty());
    }
}

#[test]
fn early_exit_masks_that_skip_the_top_block_give_logits_of_the_right_shape() {
    let model = load(SMOLLM2);
    let n = model.n_layer();
    let tokens = model.tokenize(PROMPT, true).unwrap();
    let full = {
        let mut s = model.session(&ctx(1)).unwrap();
        decode_all(&mut s, &tokens, None)
    };
    for kept in [1, 2, 15, n - 1] {
        let mask = Mask::from_active((0..n).map(|i| i < kept).collect()).unwrap();
        let mut s = model.session(&ctx(1)).unwrap();
        let rows = decode_all(&mut s, &tokens, Some(&mask));
        assert_eq!(rows.len(), tokens.len());
        for row in &rows {
            assert_eq!(row.len(), model.n_vocab());
            assert!(row.iter().all(|x| x.is_finite()));
        }
        assert!(
            max_abs_diff(rows.last().unwrap(), full.last().unwrap()) > 1e-2,
            "kept {kept}: no effect"
        );
        // Decode steps too: a single output row selected in the last active block.
        let row = step(&mut s, argmax(rows.last().unwrap()), Some(&mask));
        assert_eq!(row.len(), model.n_vocab());
    }
}

#[test]
fn a_mask_of_the_wrong_length_is_refused() {
    let model = load(SMOLLM2);
    let mut s = model.session(&ctx(1)).unwrap();
    let tokens = model.tokenize("Hello", true).unwrap();
    let batch = [uniskip::engine::BatchToken {
        seq: 0,
        token: tokens[0],
        logits: true,
    }];
    let wrong = Mask::full(model.n_layer() + 1);
    assert!(matches!(
        s.decode(&batch, Some(&wrong)),
        Err(EngineError::MaskLength { .. })
    ));
}

#[test]
fn a_mask_that_skips_every_block_cannot_be_made() {
    assert!(Mask::from_active(vec![false; 30]).is_err());
}

#[test]
fn a_fixed_mask_reuses_the_graph_and_a_changed_mask_rebuilds_it() {
    let model = load(SMOLLM2);
    let n = model.n_layer();
    let tokens = model.tokenize(PROMPT, true).unwrap();
    let m1 = skipping(n, &[5, 10, 15]);
    let m2 = skipping(n, &[5, 10, 15, 20]);
    let mut s = model.session(&ctx(1)).unwrap();
    let mut logits = decode_all(&mut s, &tokens, None).pop().unwrap();
    let mut steps = |s: &mut uniskip::engine::Session<'_>, mask: &Mask, k: usize| {
        let before = s.graph_builds();
        for _ in 0..k {
            logits = step(s, argmax(&logits), Some(mask));
        }
        s.graph_builds() - before
    };
    // The first step under a new mask builds; the same shape and mask then reuse it.
    assert_eq!(
        steps(&mut s, &m1, 6),
        1,
        "a fixed mask must reuse its graph"
    );
    assert_eq!(
        steps(&mut s, &m2, 6),
        1,
        "a new mask must build a new graph"
    );
    let m3 = skipping(n, &[5, 10, 15, 20, 25]);
    assert_eq!(steps(&mut s, &m3, 3), 1, "a third mask must build again");
    assert_eq!(
        s.repair_stats().tokens,
        0,
        "each mask computed a subset of the last"
    );
}
