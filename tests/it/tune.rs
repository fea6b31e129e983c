//! Skip-aware fine-tuning on SmolLM2 through llama.cpp's own training API.

use crate::common::*;
use uniskip::engine::TrainingMask;
use uniskip::skip::{Depth, Strategy, StrategySpec, plan};

/// Training under a mask of 15 of SmolLM2's 30 blocks lowers the loss of what it trains
/// on, measured by a forward pass under the same mask before and after (the spike that
/// shows llama.cpp's training API works with the skip hook).
#[test]
fn training_under_a_mask_of_15_of_30_blocks_lowers_the_loss() {
    let f32_path = f32_copy("smollm2");
    let model = load("smollm2");
    let spec = StrategySpec::default_for(Strategy::Unified).unwrap();
    let mask = plan(&spec, 30, Depth::Ratio(2.0), 0).unwrap();
    assert_eq!(mask.n_active(), 15);
    let tokens = repeated_prompt_window(&model);
    drop(model);

    let mut trainer = trainer(&f32_path, mask.active_indices(), false);
    trainer.set_learning_rate(1e-4);
    let bytes = mask.as_bytes();
    let before = trainer
        .evaluate(&[&tokens], TrainingMask::Window(&bytes))
        .unwrap();
    let mut losses = Vec::new();
    for _ in 0..3 {
        losses.push(trainer.step(&tokens, TrainingMask::Window(&bytes)).unwrap());
    }
    let after = trainer
        .evaluate(&[&tokens], TrainingMask::Window(&bytes))
        .unwrap();
    eprintln!("masked loss before {before:.4}, steps {losses:?}, after {after:.4}");
    // The first step's loss is the loss before any update: the same forward pass.
    assert!(
        (losses[0] - before).abs() < 1e-3 * before.max(1.0),
        "{losses:?} vs {before}"
    );
    assert!(after < before - 0.1, "loss went from {before} to {after}");
}

/// The prefix recipe trains exactly what inference runs: the trainer's loss on a window
/// whose first 32 tokens run at full depth and the rest under a 1.5x mask (every block
/// computed, each row blending by its own mask, the prompt's rows left out of the loss)
/// equals the cross-entropy of the same continuation decoded by the inference path (prompt
/// at full depth, continuation with the blocks skipped), and differs clearly from the same
/// window with the prompt under the mask too, and from full depth.
#[test]
fn the_prefix_recipe_loss_equals_inference_with_the_prompt_at_full_depth() {
    let f32_path = f32_copy("smollm2");
    let model = uniskip::engine::Model::load(&f32_path, &Default::default()).unwrap();
    let spec = StrategySpec::default_for(Strategy::Unified).unwrap();
    let mask = plan(&spec, 30, Depth::Ratio(1.5), 0).unwrap();
    let tokens = repeated_prompt_window(&model);
    let prefix = 32;
    let inference = inference_continuation_loss(&model, &tokens, prefix, None, &mask);
    let prompt_masked = inference_continuation_loss(&model, &tokens, prefix, Some(&mask), &mask);
    let full_depth = inference_continuation_loss(
        &model,
        &tokens,
        prefix,
        None,
        &uniskip::skip::Mask::full(30),
    );
    drop(model);

    let mut trainer = trainer(&f32_path, mask.active_indices(), true);
    let bytes = mask.as_bytes();
    let recipe = trainer
        .evaluate(
            &[&tokens],
            TrainingMask::Prefix {
                mask: &bytes,
                prefix,
            },
        )
        .unwrap();
    eprintln!(
        "prefix recipe {recipe:.5}, inference {inference:.5}, prompt masked too {prompt_masked:.5}, full depth {full_depth:.5}"
    );
    // Inference caches K and V in F16, training in F32: agreement to a few parts in ten
    // thousand (measured 5e-4 relative).
    // The oracle tells apart what a wrong blend would give: every row at full depth, or the
    // prompt's rows under the mask too.
    let tolerance = 0.002 * inference;
    assert!(
        (recipe - inference).abs() < tolerance,
        "recipe {recipe} vs inference {inference}"
    );
    assert!(
        (recipe - full_depth).abs() > 10.0 * tolerance,
        "{recipe} vs full depth {full_depth}"
    );
    assert!(
        (recipe - prompt_masked).abs() > 10.0 * tolerance,
        "{recipe} vs prompt masked {prompt_masked}"
    );

    // A step under the recipe lowers the continuation's loss.
    trainer.set_learning_rate(1e-4);
    for _ in 0..2 {
        trainer
            .step(
                &tokens,
                TrainingMask::Prefix {
                    mask: &bytes,
                    prefix,
                },
            )
            .unwrap();
    }
    let after = trainer
        .evaluate(
            &[&tokens],
            TrainingMask::Prefix {
                mask: &bytes,
                prefix,
            },
        )
        .unwrap();
    assert!(after < recipe - 0.1, "loss went from {recipe} to {after}");
}

fn uniskip(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_uniskip"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// `uniskip tune` on SmolLM2 with flags for a tiny budget, writing `out`.
pub(crate) fn tune_command(out: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let smollm2 = model_path("smollm2");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_uniskip"));
    cmd.args([
        "tune",
        "-m",
        smollm2.to_str().unwrap(),
        "--speedup",
        "1.5",
        "-t",
        "1",
    ])
    .args(["--eval-windows", "2", "--json", "-o", out.to_str().unwrap()])
    .args(extra);
    cmd
}

/// A small context on one thread: the machine is shared, and one thread wastes none of
/// its time waiting for another that was descheduled.
fn one_thread() -> uniskip::engine::ContextOptions {
    uniskip::engine::ContextOptions {
        threads: 1,
        ..ctx(1)
    }
}

pub(crate) fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// The whole command on a tiny budget (4 steps of 256 tokens of corpus text), interrupted with
/// Ctrl+C after its first step and resumed: the resumed run reaches the planned step, the
/// training loss goes down, the tuned model's masked KL from the base model on held-out
/// windows is below the untuned model's at the same mask, the metadata round-trips, and
/// `run` applies the tuned mask without `--speedup`.
#[test]
fn tune_interrupted_and_resumed_lowers_the_loss_and_the_held_out_kl_and_run_applies_its_mask() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned.gguf");
    let budget = ["--train-tokens", "1024", "--lr", "3e-4", "--data", "corpus"];

    let mut child = tune_command(&out, &budget)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    // Not a terminal: the progress is plain lines.
    for line in stderr.lines().map(Result::unwrap) {
        seen.push(line.clone());
        if line.contains("tuning") && line.contains("1/4") {
            // SIGINT, as Ctrl+C sends it.
            let pid = child.id().to_string();
            std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap();
        }
    }
    let status = child.wait().unwrap();
    let seen = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("interrupted at step"), "{seen}");
    assert!(!out.exists(), "no tuned file before the run finishes");

    // Without --resume an existing checkpoint is refused, as bad input.
    let refused = tune_command(&out, &budget).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));

    let report = json(
        &tune_command(&out, &[&budget[..], &["--resume"]].concat())
            .output()
            .unwrap(),
    );
    let losses: Vec<f64> = report["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(losses.len(), 4, "the resumed run reaches the planned step");
    assert_eq!(report["tuned"]["tokens_trained"], 1024);
    let before = report["eval_loss_before"].as_f64().unwrap();
    let after = report["eval_loss_after"].as_f64().unwrap();
    assert!(after < before, "held-out loss {before} -> {after}");
    assert!(losses[3] < losses[0], "training loss {losses:?}");
    let kl = |k: &str| report[k]["kl_mean"].as_f64().unwrap();
    assert!(
        kl("tuned_masked_prefix") < kl("untuned_masked_prefix"),
        "masked KL: tuned {} vs untuned {}",
        kl("tuned_masked_prefix"),
        kl("untuned_masked_prefix")
    );

    // The metadata round-trips.
    let tuned_model = uniskip::engine::Model::load(&out, &Default::default()).unwrap();
    let info = uniskip::tune::TunedInfo::read(&tuned_model)
        .unwrap()
        .expect("tuned metadata");
    let reported: uniskip::tune::TunedInfo =
        serde_json::from_value(report["tuned"].clone()).unwrap();
    assert_eq!(info.kept_blocks, reported.kept_blocks);
    assert_eq!(info.kept_blocks.len(), 20);
    assert_eq!(info.strategy, "unified");
    assert_eq!(info.speedup, 1.5);
    assert_eq!(info.recipe, "prefix", "the default recipe");
    assert_eq!(info.tokens_trained, 1024);
    assert_eq!(
        info.base_sha256,
        uniskip::models::file_sha256(&model_path("smollm2")).unwrap()
    );
    assert!((info.final_loss - reported.final_loss).abs() < 1e-4);
    // The training context (256) did not replace the model's own.
    assert_eq!(tuned_model.n_ctx_train(), load("smollm2").n_ctx_train());
    drop(tuned_model);

    // `run` applies the tuned mask without --speedup.
    let run = json(&uniskip(&[
        "run",
        "-m",
        out.to_str().unwrap(),
        "-p",
        PROMPT,
        "-n",
        "4",
        "-t",
        "1",
        "--json",
    ]));
    let active: Vec<usize> = serde_json::from_value(run["active_layers"].clone()).unwrap();
    assert_eq!(active, info.kept_blocks);
    assert_eq!(run["tuned"]["speedup"], 1.5);
    assert_eq!(run["prefill"], "full");
}

/// With zero training steps the exports hold the source's weights: the F32 copy at full
/// depth gives the logits of the source written as F32, and the pruned file (`--prune`:
/// the kept blocks, quantized back to Q4_1) gives at its full depth the logits of the
/// source under the mask. Same greedy text on a few prompts; the largest logit difference
/// is printed.
#[test]
fn an_untrained_export_writes_what_the_source_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("zero.gguf");
    let report = json(
        &tune_command(&out, &["--export-only", "--f32", "--prune"])
            .output()
            .unwrap(),
    );
    assert_eq!(report["losses"].as_array().unwrap().len(), 0);
    let source = load("smollm2");
    let mask = plan(
        &StrategySpec::default_for(Strategy::Unified).unwrap(),
        30,
        Depth::Ratio(1.5),
        0,
    )
    .unwrap();
    // The F32 export is compared with the source written as F32 directly: F32 weights
    // multiply in full precision where Q4_1 ones round the activations to 8 bits, so the
    // F32 form of the same weights does not give the Q4_1 file's logits.
    let source_f32_path = f32_copy("smollm2");
    let source_f32 = uniskip::engine::Model::load(&source_f32_path, &Default::default()).unwrap();
    let pruned = uniskip::engine::Model::load(&out, &Default::default()).unwrap();
    assert_eq!(pruned.n_layer(), 20);
    let exported_f32 =
        uniskip::engine::Model::load(&dir.path().join("zero.f32.gguf"), &Default::default())
            .unwrap();
    let full30 = uniskip::skip::Mask::full(30);
    let full20 = uniskip::skip::Mask::full(20);
    for (name, source, source_mask, model, model_mask) in [
        ("pruned Q4_1", &source, &mask, &pruned, &full20),
        ("f32", &source_f32, &full30, &exported_f32, &full30),
    ] {
        let mut worst = 0f32;
        for prompt in [PROMPT, "The capital of France is", "def fibonacci(n):"] {
            let tokens = source.tokenize(prompt, true).unwrap();
            let greedy = |m: &uniskip::engine::Model, mask: &uniskip::skip::Mask| {
                let mut s = m.session(&one_thread()).unwrap();
                let mut rows = decode_all(&mut s, &tokens, Some(mask));
                let mut text = Vec::new();
                let mut last = rows.pop().unwrap();
                let mut lasts = vec![last.clone()];
                for _ in 0..12 {
                    let t = argmax(&last);
                    text.push(t.0);
                    last = step(&mut s, t, Some(mask));
                    lasts.push(last.clone());
                }
                (text, lasts)
            };
            let (a, la) = greedy(source, source_mask);
            let (b, lb) = greedy(model, model_mask);
            assert_eq!(a, b, "{name}: greedy text differs on {prompt:?}");
            for (x, y) in la.iter().zip(&lb) {
                worst = worst.max(max_abs_diff(x, y));
            }
        }
        eprintln!("{name} export: largest logit difference from the source {worst:.6}");
        // The weights are the source's (Q4_1 -> F32 -> Q4_1 reproduces every block), so
        // the logits agree as closely as the pruned-model oracle's do.
        assert!(worst < 1e-3, "{name}: logits differ by {worst}");
    }
}

#[test]
fn bad_tune_flags_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let o = out.to_str().unwrap();
    let bogus = dir.path().join("bogus.gguf");
    std::fs::write(&bogus, b"not a model").unwrap();
    for args in [
        vec!["tune", "--speedup", "1.5", "--strategy", "random", "-o", o],
        // A schedule that changes with the position trains with the prefix recipe only.
        vec![
            "tune",
            "--speedup",
            "1.5",
            "--strategy",
            "skipdecode",
            "--recipe",
            "whole-window",
            "-o",
            o,
        ],
        vec!["tune", "--speedup", "1.5", "--window", "100", "-o", o],
        vec!["tune", "--speedup", "1", "-o", o],
        vec!["tune", "--speedup", "1.5", "--resume", "-o", o],
        vec![
            "tune",
            "--speedup",
            "1.5",
            "--recipe",
            "prefix",
            "--prune",
            "-o",
            o,
        ],
        vec!["tune", "--speedup", "1.5", "--recipe", "halfway", "-o", o],
        // A budget under one window trains nothing: `--export-only` says so on purpose.
        vec!["tune", "--speedup", "1.5", "--train-tokens", "0", "-o", o],
        vec!["tune", "--speedup", "1.5", "--train-tokens", "255", "-o", o],
        vec![
            "tune",
            "-m",
            bogus.to_str().unwrap(),
            "--speedup",
            "1.5",
            "-o",
            o,
        ],
    ] {
        let r = uniskip(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        // One error line (clap adds a hint line after its own).
        let errors = err.lines().filter(|l| l.starts_with("error")).count();
        assert_eq!(errors, 1, "{args:?}: {err}");
    }
}
