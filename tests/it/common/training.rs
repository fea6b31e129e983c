//! Shared set-up of the training tests: an F32 copy to train, a window of text, a trainer,
//! and the inference-path oracle they are compared with.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use uniskip::engine::{BatchToken, LlamaToken, Model, Trainer, TrainerOptions, write_f32_model};
use uniskip::skip::Mask;

use super::{PROMPT, ctx, model_path};

/// Catalog model `name` as F32 (the form training needs), shared read-only by every test:
/// written once into cargo's directory for test files (kept between runs, keyed by the
/// source file's size and modification time) instead of once per test. Tests that write
/// a model write it elsewhere. The copy appears by a rename, so a test run cut short, or
/// two test processes writing it at once, never leave a partial file under its name.
pub fn f32_copy(name: &str) -> PathBuf {
    static WRITING: Mutex<()> = Mutex::new(());
    let source = model_path(name);
    let meta = std::fs::metadata(&source).expect("catalog model");
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}-{}-{modified}-f32.gguf", meta.len()));
    let _one_writer = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let partial = dir.join(format!("{name}-f32.{}.partial", std::process::id()));
        write_f32_model(&source, &partial, 2).expect("F32 copy");
        std::fs::rename(&partial, &path).expect("F32 copy in place");
    }
    path
}

/// One training window: 257 tokens (256 inputs and the targets after them) of the test
/// prompt repeated.
pub fn repeated_prompt_window(model: &Model) -> Vec<i32> {
    let text = format!("{PROMPT} ").repeat(40);
    model.tokenize(&text, true).unwrap()[..257]
        .iter()
        .map(|t| t.0)
        .collect()
}

/// A one-thread trainer of 256-token windows on the F32 model at `path`.
pub fn trainer(path: &Path, trainable_blocks: Vec<usize>, train_output_norm: bool) -> Trainer {
    Trainer::load(
        path,
        &TrainerOptions {
            window: 256,
            threads: 1,
            trainable_blocks,
            train_output_norm,
            gpu_layers: 0,
        },
    )
    .expect("trainer")
}

/// Decodes `tokens` as inference does: the first `prefix` under `prefix_mask` (`None`:
/// full depth) in one batch, the rest but the last under `mask` in one batch with logits
/// on every row; calls `row(j, logits)` for continuation position `j` (predicting
/// `tokens[prefix + j + 1]`).
pub fn continuation_rows(
    model: &Model,
    tokens: &[i32],
    prefix: usize,
    prefix_mask: Option<&Mask>,
    mask: &Mask,
    row: &mut dyn FnMut(usize, &[f32]),
) {
    let mut session = model.session(&ctx(1)).unwrap();
    let batch = |range: std::ops::Range<usize>, logits: bool| {
        BatchToken::run_of(0, tokens[range].iter().map(|&t| LlamaToken(t)), logits)
    };
    let n = tokens.len() - 1;
    session
        .decode(&batch(0..prefix, false), prefix_mask)
        .unwrap();
    let rows = session.decode(&batch(prefix..n, true), Some(mask)).unwrap();
    for (j, &i) in rows.iter().enumerate() {
        row(j, session.logits(i));
    }
}

/// `log(sum(exp(logits)))`, computed in f64 from the largest logit.
pub fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + logits
        .iter()
        .map(|&l| (l as f64 - max).exp())
        .sum::<f64>()
        .ln()
}

/// Cross-entropy of `target` under `logits`.
pub fn cross_entropy(logits: &[f32], target: usize) -> f64 {
    log_sum_exp(logits) - logits[target] as f64
}

/// Mean cross-entropy of the continuation `tokens[prefix + 1..]` at inference (see
/// [`continuation_rows`]).
pub fn inference_continuation_loss(
    model: &Model,
    tokens: &[i32],
    prefix: usize,
    prefix_mask: Option<&Mask>,
    mask: &Mask,
) -> f64 {
    let (mut total, mut n) = (0f64, 0usize);
    continuation_rows(
        model,
        tokens,
        prefix,
        prefix_mask,
        mask,
        &mut |j, logits| {
            total += cross_entropy(logits, tokens[prefix + j + 1] as usize);
            n += 1;
        },
    );
    total / n as f64
}
