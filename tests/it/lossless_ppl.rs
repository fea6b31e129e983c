//! `uniskip ppl --lossless`: the quality of lossless decoding is computed from the rows
//! that verified the drafts, and it is full depth's.
//!
//! Tolerances. Lossless decoding is compared with plain full depth one token at a time on
//! the same text: verification batches of up to 9 tokens give SmolLM2 bit-identical logits
//! (see `lossless.rs`), so KL must be below 1e-6 and top-1 100%. `uniskip ppl`'s own full
//! depth runs each continuation as one batch of 32 tokens, where llama.cpp's kernels round
//! differently (KL about 5e-3 from one-token decoding here); its perplexity may differ from
//! lossless decoding's by up to [`BATCHED_PPL_TOLERANCE`]. The drafting mask alone is far
//! from full depth (KL above 0.05), so a lossless row scored from draft rows instead of
//! verification rows fails, and so does a draft kept without verification: the position
//! after it would have no row and `ppl` refuses to report.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_uniskip");

/// Relative difference allowed between the perplexities of batched and one-token full
/// depth on the same windows.
const BATCHED_PPL_TOLERANCE: f64 = 0.05;

const WINDOWS: u64 = 2;
const CONTINUATION: u64 = 32;

/// A copy-heavy text SmolLM2 predicts in part: lists, each repeated with one change, so
/// that n-gram lookup drafts well and some drafts are refused.
fn copy_heavy_corpus(dir: &Path) -> PathBuf {
    const WORDS: [&str; 24] = [
        "bread", "milk", "eggs", "butter", "cheese", "apples", "rice", "beans", "onions", "garlic",
        "carrots", "lemons", "pepper", "salt", "flour", "sugar", "honey", "tea", "coffee", "pasta",
        "tomatoes", "potatoes", "yogurt", "oats",
    ];
    let mut state: u64 = 7;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % n
    };
    let mut text = String::new();
    for i in 0..160 {
        let items: Vec<&str> = (0..8).map(|_| WORDS[next(WORDS.len())]).collect();
        let mut again = items.clone();
        again[next(items.len())] = WORDS[next(WORDS.len())];
        text.push_str(&format!(
            "Shopping list {i}: {}.\nThe same list with one change: {}.\n\n",
            items.join(", "),
            again.join(", ")
        ));
    }
    let path = dir.join("lists.txt");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `uniskip ppl` on SmolLM2 with `extra` flags and returns its JSON report.
fn ppl_json(corpus: &Path, extra: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(["ppl", "-m", "smollm2", "-t", "2", "--json", "--corpus"])
        .arg(corpus)
        .args(["--windows", &WINDOWS.to_string(), "--prefix", "40"])
        .args(["--continuation", &CONTINUATION.to_string()])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ppl {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for key in path {
        v = &v[*key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {v}"))
}

#[test]
fn ppl_lossless_scores_verification_rows_and_equals_full_depth() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = copy_heavy_corpus(dir.path());
    let plain = ppl_json(&corpus, &["--speedup", "2"]);
    let lossless = ppl_json(&corpus, &["--lossless", "--speedup", "2"]);
    let q = &lossless["lossless_quality"];

    // The oracle can tell: the drafting mask alone is far from full depth.
    assert!(
        f(&plain, &["skipped", "kl_mean"]) > 0.05,
        "the 2x mask must be lossy for this test to mean anything: {plain}"
    );
    // Every position was scored once, from full depth's rows.
    assert_eq!(f(q, &["tokens"]), (WINDOWS * CONTINUATION) as f64);
    assert!(f(q, &["kl_max"]) < 1e-6, "lossless KL from full depth: {q}");
    assert_eq!(f(q, &["top1_agreement"]), 1.0, "{q}");
    let one_token = f(&lossless, &["full", "perplexity"]);
    let got = f(q, &["perplexity"]);
    assert!(
        (got - one_token).abs() <= 1e-6 * one_token,
        "lossless PPL {got} vs full depth one token at a time {one_token}"
    );
    // `ppl`'s own full depth, batched, on the same windows.
    let batched = f(&plain, &["full", "perplexity"]);
    assert_eq!(f(&lossless, &["full_batched_perplexity"]), batched);
    assert!(
        (got - batched).abs() <= BATCHED_PPL_TOLERANCE * batched,
        "lossless PPL {got} vs `ppl` at full depth {batched}"
    );
    // Drafts were made, some kept (rows after a kept draft were scored) and some refused.
    let d = &lossless["drafts"];
    let (drafted, kept) = (f(d, &["draft_tokens"]), f(d, &["kept_tokens"]));
    assert!(kept > 0.0 && kept < drafted, "drafts: {d}");
    assert!(f(d, &["checked_tokens"]) >= kept, "drafts: {d}");
}

#[test]
fn ppl_refuses_drafter_flags_without_lossless_and_lossless_with_a_masked_prefill() {
    for args in [
        &["ppl", "--drafter", "lookup"][..],
        &["ppl", "--lossless", "--prefill", "masked"][..],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains("--"),
            "{args:?} says which flag is wrong on its first line: {stderr}"
        );
    }
}
