//! Full depth's logits for a position do not depend on how the batch that computes it is
//! shaped or where its cells sit in the cache. Lossless decoding rests on this: a
//! verification row must equal the row a plain one-token step would have produced.
//! (docs/DESIGN.md section 2, edit 5: the build makes ggml's CPU attention sum in F32 and
//! never split one token's cells across threads.)

use crate::common::*;
use uniskip::engine::{BatchToken, LlamaToken, Model, Session};
use uniskip::quality::{Corpus, Slice};
use uniskip::skip::Mask;

/// Most rows a verification batch has while fewer than 64 sequences are live (the engine's
/// limit; from 64 rows on, the CPU attention is tiled and rounds differently).
const ROWS: usize = 63;

/// About 420 tokens of Shakespeare.
fn long_text(model: &Model) -> Vec<LlamaToken> {
    let corpus = Corpus::load(Some(model_path("shakespeare").to_str().unwrap())).unwrap();
    let windows = corpus
        .windows(model, Slice::Evaluation, 1, 420)
        .expect("a 420-token window");
    windows[0].clone()
}

/// Logits of `text[p]` decoded as the first of `width` tokens of sequence `seq`, after
/// the sequence is cut back to `p` cached positions.
fn row_at(
    session: &mut Session<'_>,
    seq: i32,
    text: &[LlamaToken],
    p: usize,
    width: usize,
) -> Vec<f32> {
    let full = Mask::full(session.model().n_layer());
    session.truncate(seq, p).unwrap();
    let batch = BatchToken::run_of(seq, text[p..p + width].iter().copied(), true);
    let rows = session.decode(&batch, Some(&full)).unwrap();
    session.logits(rows[0]).to_vec()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// One token alone and the same token first in a batch of each of `widths` rows give
/// bit-identical logits, before and after 256 cached positions. (Without the build's
/// attention edit, a lone token past 256 positions is split across threads and moved
/// SmolLM2's logits by 0.3 to 0.8 at over a third of positions; with F16 sums, every row
/// moved.)
fn a_lone_token_and_a_batch_agree(name: &str, widths: &[usize]) {
    let model = load(name);
    let text = long_text(&model);
    let mut session = model.session(&ctx(1)).unwrap();
    let full = Mask::full(model.n_layer());
    session.prefill(0, &text[..200], Some(&full)).unwrap();
    let positions: Vec<usize> = (200..240).chain(260..340).step_by(5).collect();
    assert!(text.len() >= 340 + ROWS);
    for &p in &positions {
        let have = session.tokens(0).unwrap().len();
        if have < p {
            session.prefill(0, &text[have..p], Some(&full)).unwrap();
        }
        let alone = row_at(&mut session, 0, &text, p, 1);
        for &width in widths {
            let batched = row_at(&mut session, 0, &text, p, width);
            assert!(
                alone == batched,
                "{name}: position {p}: one token alone and first of {width} differ by {}",
                max_abs_diff(&alone, &batched)
            );
        }
    }
}

#[test]
fn smollm2_one_token_alone_and_first_in_a_batch_get_identical_logits_past_256_positions() {
    a_lone_token_and_a_batch_agree("smollm2", &[2, 9, 17, ROWS]);
}

/// Gemma 3's Q4_K weights are repacked for the CPU, and from 4 rows on ggml quantizes the
/// activations and multiplies in groups of four: those rows round differently (docs/LOSSLESS.md,
/// "Exactness and its limit"). Below 4 rows its logits are bit-identical too.
#[test]
fn gemma3_one_token_alone_and_first_in_a_batch_of_up_to_3_get_identical_logits_past_256_positions()
{
    a_lone_token_and_a_batch_agree("gemma3", &[2, 3]);
}

/// Two sequences share the cache. Sequence 0's last cells are dropped (refused drafts),
/// and sequence 1's next tokens refill those cells, which lie before its own latest ones:
/// its cells are no longer in position order. Its logits stay those of a sequence laid
/// out alone, within F32 rounding (which, rarely, a quantized activation amplifies: the
/// lossless tests allow a near-tie to part at batch > 1). (With F16 sums this moved SmolLM2's logits by up to
/// 0.3 and flipped a greedy choice whose margin was 0.24.)
#[test]
fn cells_refilled_out_of_position_order_leave_a_sequences_logits_as_if_alone() {
    let model = load("smollm2");
    let full = Mask::full(model.n_layer());
    let text = long_text(&model);
    let (head, tail) = (42, 47);

    let mut alone = model.session(&ctx(1)).unwrap();
    alone.prefill(0, &text[..tail], Some(&full)).unwrap();
    let want = decode_all(&mut alone, &text[tail..tail + 2], Some(&full));

    let mut shared = model.session(&ctx(2)).unwrap();
    let other: Vec<LlamaToken> = text[300..305].to_vec();
    shared.prefill(1, &text[..head], Some(&full)).unwrap();
    shared.prefill(0, &other, Some(&full)).unwrap();
    shared.prefill(1, &text[head..tail], Some(&full)).unwrap();
    shared.truncate(0, 0).unwrap();
    let batch = BatchToken::run_of(1, text[tail..tail + 2].iter().copied(), true);
    let rows = shared.decode(&batch, Some(&full)).unwrap();
    for (i, (&row, want)) in rows.iter().zip(&want).enumerate() {
        let got = shared.logits(row);
        let diff = max_abs_diff(got, want);
        assert!(
            diff < 1e-3,
            "row {i}: logits moved by {diff} when the cells came out of order"
        );
        assert_eq!(argmax(got), argmax(want));
    }
}
