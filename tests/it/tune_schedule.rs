//! Tuning for a mask that changes with the generated position (SkipDecode's schedule).

use crate::common::*;
use uniskip::engine::{BatchToken, LlamaToken, Model, TrainingMask};
use uniskip::skip::{Plan, PlanSettings, Strategy};

/// Mean cross-entropy of the continuation decoded as generation runs it: the prompt of
/// `prefix` tokens at full depth, then one token per decode, step `j` under
/// `plan.mask(j + 1)`.
fn stepwise_loss(model: &Model, tokens: &[i32], prefix: usize, plan: &Plan) -> f64 {
    let mut session = model.session(&ctx(1)).unwrap();
    let token = |i: usize, logits: bool| BatchToken {
        seq: 0,
        token: LlamaToken(tokens[i]),
        logits,
    };
    let prompt: Vec<BatchToken> = (0..prefix).map(|i| token(i, false)).collect();
    session.decode(&prompt, None).unwrap();
    let mut total = 0f64;
    let n = tokens.len() - 1;
    for (j, i) in (prefix..n).enumerate() {
        let out = session
            .decode(&[token(i, true)], Some(plan.mask(j + 1)))
            .unwrap();
        total += cross_entropy(session.logits(out[0]), tokens[i + 1] as usize);
    }
    total / (n - prefix) as f64
}

/// SkipDecode's schedule trains as it generates: the trainer's loss on a window whose
/// prompt runs at full depth and whose continuation step `j` runs under the schedule's
/// mask for that step (every block computed, each row blending by its own mask) equals the
/// loss of decoding the continuation token by token under those masks, and differs from
/// the loss at the schedule's first mask alone.
#[test]
fn a_skipdecode_schedule_trains_each_generated_position_under_its_own_mask() {
    let f32_path = f32_copy("smollm2");
    let model = Model::load(&f32_path, &Default::default()).unwrap();
    let prefix = 32;
    // The window (8 x 256) leaves 224 continuation steps; a ramp over 64 of them, then
    // the last mask, as generation past the planned length does.
    let plan = Plan::new(
        PlanSettings {
            planned_len: 64,
            ..PlanSettings::new(Strategy::SkipDecode, 2.0)
        },
        30,
    )
    .unwrap();
    assert!(plan.varies());
    let tokens = repeated_prompt_window(&model);
    let inference = stepwise_loss(&model, &tokens, prefix, &plan);
    let first_mask_only =
        stepwise_loss(&model, &tokens, prefix, &Plan::fixed(plan.mask(1).clone()));
    drop(model);

    let masks: Vec<u8> = (0..256 - prefix)
        .flat_map(|j| plan.mask(j + 1).as_bytes())
        .collect();
    let mut trainer = trainer(&f32_path, (0..30).collect(), true);
    let schedule = TrainingMask::Schedule {
        masks: &masks,
        prefix,
    };
    let trained = trainer.evaluate(&[&tokens], schedule).unwrap();
    eprintln!(
        "schedule: trainer {trained:.5}, token by token {inference:.5}, first mask only {first_mask_only:.5}"
    );
    let tolerance = 0.002 * inference;
    assert!(
        (trained - inference).abs() < tolerance,
        "trainer {trained} vs inference {inference}"
    );
    assert!(
        (trained - first_mask_only).abs() > 10.0 * tolerance,
        "{trained} vs the first mask alone {first_mask_only}"
    );
    // A row whose mask skips block 0 cannot blend: refused, not trained wrongly.
    let mut bad = masks.clone();
    bad[30] = 0;
    assert!(
        trainer
            .evaluate(
                &[&tokens],
                TrainingMask::Schedule {
                    masks: &bad,
                    prefix
                }
            )
            .is_err()
    );
}

fn uniskip(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_uniskip"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// A file tuned for SkipDecode records its schedule's span, and `run` replays that
/// schedule without skip flags: the blocks per generated token follow the ramp the file
/// was trained on, not one mask. `bench -m FILE`, which compares one mask per row, refuses
/// it with one line (exit 2).
#[test]
fn a_skipdecode_tuned_file_replays_its_schedule_in_run_and_bench_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("skipdecode.gguf");
    let o = out.to_str().unwrap();
    let tuned = uniskip(&[
        "tune",
        "--speedup",
        "1.5",
        "--strategy",
        "skipdecode",
        "--export-only",
        "--eval-windows",
        "1",
        "-t",
        "1",
        "-o",
        o,
        "--json",
    ]);
    assert!(
        tuned.status.success(),
        "{}",
        String::from_utf8_lossy(&tuned.stderr)
    );
    let model = Model::load(&out, &Default::default()).unwrap();
    let info = uniskip::tune::TunedInfo::read(&model)
        .unwrap()
        .expect("tuned metadata");
    drop(model);
    assert_eq!(info.strategy, "skipdecode");
    assert_eq!(info.planned_len, Some(uniskip::tune::QUALITY_CONTINUATION));
    let plan = Plan::new(
        PlanSettings {
            planned_len: uniskip::tune::QUALITY_CONTINUATION,
            ..PlanSettings::new(Strategy::SkipDecode, 1.5)
        },
        30,
    )
    .unwrap();

    let run = uniskip(&[
        "run",
        "-m",
        o,
        "-p",
        PROMPT,
        "-n",
        "8",
        "-t",
        "1",
        "--ignore-eos",
        "--json",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["strategy"], "skipdecode");
    // One mask per decode call: step 0 reads the prompt, steps 1..7 the generated tokens
    // (the eighth token is sampled from step 7's logits), each under the ramp's mask.
    let ramp: Vec<usize> = (0..8).map(|s| plan.mask(s).n_active()).collect();
    let expected = ramp.iter().sum::<usize>() as f64 / 8.0;
    let mean = report["mean_active_layers"].as_f64().unwrap();
    eprintln!("mean active blocks {mean}, ramp {ramp:?}");
    assert!(ramp[1] > ramp[7], "the ramp descends: {ramp:?}");
    assert!((mean - expected).abs() < 1e-9, "{mean} vs {expected}");

    let bench = uniskip(&["bench", "-m", o, "-t", "1", "--no-speed", "--windows", "1"]);
    assert_eq!(bench.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bench.stderr);
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error")).count(),
        1,
        "{err}"
    );
}
