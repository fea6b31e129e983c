//! The `uniskip` binary as a user runs it.

use crate::common;

use std::process::Command;

fn uniskip(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_uniskip"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn plan_shows_the_papers_example_for_30_blocks_at_5x() {
    let v = json(&uniskip(&[
        "plan",
        "--layers",
        "30",
        "--speedup",
        "5",
        "--json",
    ]));
    assert_eq!(v["kept"], serde_json::json!([0, 6, 12, 18, 24, 29]));
    assert_eq!(v["n_layer"], 30);
    assert_eq!(v["strategy"], "unified");
    assert_eq!(v["speedup_by_layers"], 5.0);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 24);
}

#[test]
fn plan_reads_the_block_count_from_the_model_header() {
    let path = common::model_path("gemma3");
    let v = json(&uniskip(&[
        "plan",
        "-m",
        path.to_str().unwrap(),
        "--speedup",
        "1.5",
        "--json",
    ]));
    assert_eq!(v["n_layer"], 18);
    assert_eq!(v["kept"].as_array().unwrap().len(), 12);
}

#[test]
fn a_target_out_of_range_is_one_line_naming_the_valid_range() {
    let out = uniskip(&["plan", "--layers", "30", "--speedup", "16"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("from 1 to 15"), "{err}");
}

#[test]
fn run_json_reports_what_was_run_and_what_it_cost() {
    let v = json(&uniskip(&[
        "run",
        "-p",
        "The capital of France is",
        "-n",
        "8",
        "--threads",
        "2",
        "--speedup",
        "2",
        "--json",
    ]));
    for key in [
        "model",
        "n_layer",
        "active_layers",
        "speedup_target",
        "prompt_tokens",
        "generated_tokens",
        "text",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "kv_repair_tokens",
    ] {
        assert!(!v[key].is_null(), "missing {key} in {v}");
    }
    assert_eq!(v["n_layer"], 30);
    assert_eq!(v["active_layers"].as_array().unwrap().len(), 15);
    assert_eq!(v["active_layers"][0], 0);
    assert_eq!(v["active_layers"][14], 29);
    assert!(v["generated_tokens"].as_u64().unwrap() >= 1);
    assert_eq!(v["kv_repair_tokens"], 0, "a fixed mask never repairs");
}

#[test]
fn gpu_layers_takes_minus_one_for_all_and_names_where_the_blocks_ran() {
    let run = |gpu_layers: &str| {
        json(&uniskip(&[
            "run",
            "-p",
            "The capital of France is",
            "-n",
            "2",
            "--threads",
            "2",
            "--gpu-layers",
            gpu_layers,
            "--json",
        ]))
    };
    let v = run("-1");
    let device = &v["device"];
    assert_eq!(device["n_layer"], 30, "{v}");
    // The blocks are on a GPU exactly when the build loaded a GPU backend that found one.
    match device["backend"].as_str().unwrap() {
        "CPU" => assert_eq!(device["gpu_blocks"], 0, "{device}"),
        _ => assert_eq!(device["gpu_blocks"], 30, "{device}"),
    }
    let cpu = run("0");
    assert_eq!(cpu["device"]["backend"], "CPU", "{cpu}");
    assert_eq!(cpu["device"]["gpu_blocks"], 0);
    // Below -1 is not a layer count: one line, exit 2, naming the range.
    let out = uniskip(&["run", "-p", "x", "--gpu-layers", "-5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("-1"), "{err}");
}

#[test]
fn run_streams_text_and_prints_a_summary_line() {
    let out = uniskip(&[
        "run",
        "-p",
        "Once upon a time",
        "-n",
        "6",
        "--threads",
        "2",
        "--skip-layers",
        "10-19",
    ]);
    assert!(out.status.success());
    assert!(!out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("20/30 blocks active"), "{err}");
    assert!(err.contains("decode") && err.contains("tok/s"), "{err}");
}

#[test]
fn settings_a_command_cannot_use_are_bad_input_with_what_to_do_instead() {
    for (args, says) in [
        (
            &[
                "plan",
                "--layers",
                "30",
                "--speedup",
                "2",
                "--strategy",
                "calibrated",
            ][..],
            "use `uniskip ppl` or `uniskip bench`",
        ),
        (
            &[
                "plan",
                "--layers",
                "30",
                "--speedup",
                "2",
                "--speedup-mode",
                "measured",
            ][..],
            "use -m MODEL instead of --layers",
        ),
    ] {
        let out = uniskip(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn run_lossless_keeps_what_drafting_cost_in_the_profile_cache() {
    let cache = tempfile::tempdir().unwrap();
    let model = common::model_path("smollm2");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "-m",
            model.to_str().unwrap(),
            "-p",
            "Once upon a time",
            "-n",
            "24",
            "--threads",
            "2",
            "--ignore-eos",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_uniskip"))
            .args(&args)
            .env("UNISKIP_MODELS", cache.path())
            .output()
            .expect("binary runs");
        json(&out)
    };
    let profiles = cache.path().join("profiles");
    let stem = model.file_stem().unwrap().to_str().unwrap();
    // Kept per device too: `cpu` here, a GPU backend and its block count there.
    let file = profiles.join(format!("draft-{stem}-cpu-t2-b1.json"));

    run(&[]);
    assert!(!file.exists(), "a plain run keeps no drafting costs");
    // Costs are relative to a warm plain step: a run that drafted from its second step to
    // its end (possible when the machine is loaded and drafting never pauses) has none and
    // hands nothing back. Each run is one side of that rule; a few runs see the first side.
    let mut kept_after_warm_baseline = false;
    for _ in 0..4 {
        let _ = std::fs::remove_file(&file);
        let v = run(&["--lossless", "--drafter", "mask", "--speedup", "2"]);
        assert!(v["draft_tokens"].as_u64().unwrap() > 0, "{v}");
        let kept: Option<serde_json::Value> = std::fs::read(&file)
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap());
        let verified = |kept: &serde_json::Value| {
            kept["costs"]["verify"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c.as_f64().is_some_and(|c| c > 0.0))
                .count()
        };
        if v["speculation"]["plain_tokens_per_s"].is_null() {
            assert!(
                kept.as_ref().is_none_or(|k| verified(k) == 0),
                "costs handed back against a cold step: {kept:?}"
            );
            continue;
        }
        let kept = kept.expect("costs kept");
        assert!(verified(&kept) > 0, "no verification cost kept: {kept}");
        assert!(
            kept["costs"]["mask"]["15"]
                .as_f64()
                .is_some_and(|c| c > 0.0),
            "{kept}"
        );
        kept_after_warm_baseline = true;
        break;
    }
    assert!(
        kept_after_warm_baseline,
        "no run measured a warm plain step"
    );
}
