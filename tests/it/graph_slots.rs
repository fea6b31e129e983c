//! Graph slots (docs/DESIGN.md section 2, edit 6): llama.cpp keeps one graph result and one
//! scheduler per decode shape, so a lossless generation that alternates between a one-row
//! draft under a mask, a k-row verification at full depth and a plain step finds each
//! shape's graph built and allocated, and runs it without building. That is also what lets
//! a GPU backend find its captured graph for the shape instead of capturing a new one at
//! every switch; on a machine without a GPU these tests are what guards it.
//!
//! The oracle: every (mask, rows) shape, decoded after any number of switches, gives logits
//! bit-identical to the same decode in a fresh context, where its graph is built for the
//! first time.

use crate::common::*;
use uniskip::engine::{BatchToken, LlamaToken, Model, Session};
use uniskip::skip::Mask;

/// One decode shape of a lossless generation: `rows` tokens of sequence 0 under `mask`.
struct Shape {
    name: &'static str,
    mask: Mask,
    rows: usize,
}

/// The shapes a lossless generation under the 2x unified mask alternates between.
fn lossless_shapes(model: &Model) -> Vec<Shape> {
    let n = model.n_layer();
    let half = Mask::from_active((0..n).map(|i| i % 2 == 0 || i == n - 1).collect()).unwrap();
    let full = Mask::full(n);
    vec![
        Shape {
            name: "draft, 1 row under the mask",
            mask: half,
            rows: 1,
        },
        Shape {
            name: "verification, 2 rows",
            mask: full.clone(),
            rows: 2,
        },
        Shape {
            name: "verification, 4 rows",
            mask: full.clone(),
            rows: 4,
        },
        Shape {
            name: "plain step, 1 row",
            mask: full,
            rows: 1,
        },
    ]
}

/// Cuts the sequence back to `prefix` positions and decodes `shape` on the tokens that
/// follow; returns every row's logits.
fn decode_after(
    session: &mut Session<'_>,
    text: &[LlamaToken],
    prefix: usize,
    shape: &Shape,
) -> Vec<Vec<f32>> {
    session.truncate(0, prefix).unwrap();
    let batch = BatchToken::run_of(0, text[prefix..prefix + shape.rows].iter().copied(), true);
    let rows = session.decode(&batch, Some(&shape.mask)).unwrap();
    rows.iter().map(|&i| session.logits(i).to_vec()).collect()
}

#[test]
fn alternating_decode_shapes_keep_their_graph_slots_and_match_fresh_graphs_bit_for_bit() {
    let model = load("smollm2");
    let text = model
        .tokenize(&format!("{PROMPT} {PROMPT} {PROMPT}"), true)
        .unwrap();
    let prefix = 40;
    assert!(text.len() >= prefix + 4);
    let full = Mask::full(model.n_layer());
    let shapes = lossless_shapes(&model);

    // Each shape decoded once in a fresh context: its graph built for the first time.
    let fresh: Vec<Vec<Vec<f32>>> = shapes
        .iter()
        .map(|shape| {
            let mut s = model.session(&ctx(1)).unwrap();
            s.prefill(0, &text[..prefix], Some(&full)).unwrap();
            decode_after(&mut s, &text, prefix, shape)
        })
        .collect();

    let mut s = model.session(&ctx(1)).unwrap();
    s.prefill(0, &text[..prefix], Some(&full)).unwrap();
    let rounds = 5;
    let mut after_first_round = None;
    for round in 0..rounds {
        for (shape, reference) in shapes.iter().zip(&fresh) {
            let rows = decode_after(&mut s, &text, prefix, shape);
            assert!(
                &rows == reference,
                "round {round}, {}: logits differ from a fresh graph's by {}",
                shape.name,
                rows.iter()
                    .zip(reference)
                    .map(|(a, b)| max_abs_diff(a, b))
                    .fold(0.0, f32::max)
            );
        }
        if round == 0 {
            after_first_round = Some(s.graph_slots());
        }
    }
    let first = after_first_round.unwrap();
    let total = s.graph_slots();
    let later_decodes = ((rounds - 1) * shapes.len()) as u64;
    eprintln!("graph slots after round 1: {first:?}; after {rounds} rounds: {total:?}");
    // After the first round every shape comes back to its own slot: no slot changes hands.
    assert_eq!(
        total.new_slot, first.new_slot,
        "a shape lost its slot to another"
    );
    assert_eq!(total.kept - first.kept, later_decodes);
    // And each finds its graph built and allocated in its own scheduler: nothing is rebuilt.
    assert_eq!(
        total.reused - first.reused,
        later_decodes,
        "a shape that came back was rebuilt"
    );
}

#[test]
fn the_same_shape_twice_in_a_row_runs_its_graph_without_building() {
    let model = load("smollm2");
    let tokens = model.tokenize(PROMPT, true).unwrap();
    let mask = skipping(model.n_layer(), &[5, 10, 15]);
    let mut s = model.session(&ctx(1)).unwrap();
    let mut logits = decode_all(&mut s, &tokens, None).pop().unwrap();
    for _ in 0..2 {
        logits = step(&mut s, argmax(&logits), Some(&mask));
    }
    let before = s.graph_slots();
    for _ in 0..5 {
        logits = step(&mut s, argmax(&logits), Some(&mask));
    }
    let after = s.graph_slots();
    assert_eq!(after.reused - before.reused, 5, "{before:?} -> {after:?}");
    assert_eq!(after.kept - before.kept, 5);
}
