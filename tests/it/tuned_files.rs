//! A tuned file (from `uniskip tune`) in the commands that run it: `ppl`, `bench` and
//! `chat` apply the mask it was tuned for without skip flags, and measure its quality
//! against the model it was tuned from.
//!
//! The oracle: with `--export-only` the tuned file holds the base model's weights, so
//! every number measured on it under its mask must be the base model's under that mask.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::common::model_path;
use crate::tune::{json, tune_command};

const BIN: &str = env!("CARGO_BIN_EXE_uniskip");

/// SmolLM2 "tuned" for unified 1.5x with no training step (made once per test run).
fn untrained_tuned_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| untrained("tuned-files-untrained-1.5x.gguf", &[]))
}

/// The same, pruned: only the 20 kept blocks written, so its own full depth is the base
/// model under the mask.
fn untrained_pruned_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| untrained("tuned-files-untrained-1.5x-pruned.gguf", &["--prune"]))
}

fn untrained(name: &str, extra: &[&str]) -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut args = vec!["--export-only"];
    args.extend(extra);
    let report = json(&tune_command(&out, &args).output().unwrap());
    assert_eq!(report["tuned"]["kept_blocks"].as_array().unwrap().len(), 20);
    out
}

fn uniskip(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("uniskip runs")
}

/// A few short windows on one thread: what the oracles need, at a small cost.
const PPL: [&str; 9] = [
    "--json",
    "-t",
    "1",
    "--windows",
    "2",
    "--prefix",
    "16",
    "--continuation",
    "16",
];

fn ppl(model: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["ppl", "-m", model.to_str().unwrap()];
    args.extend(PPL);
    args.extend(extra);
    json(&uniskip(&args))
}

/// The blocks a list of kept blocks leaves out, as `--skip-layers` takes them.
fn skip_list(kept: &Value, n_layer: usize) -> String {
    let kept: Vec<u64> = kept
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    (0..n_layer as u64)
        .filter(|i| !kept.contains(i))
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn ppl_of_a_tuned_file_runs_its_mask_and_scores_it_against_the_base_model() {
    let tuned = untrained_tuned_file();
    let base = model_path("smollm2");
    let on_tuned = ppl(tuned, &[]);
    // The file's own mask, planned from its strategy and R, without --speedup.
    assert_eq!(on_tuned["tuned"]["speedup"].as_f64(), Some(1.5));
    assert_eq!(on_tuned["strategy"], "unified");
    assert_eq!(on_tuned["target"].as_f64(), Some(1.5));
    assert_eq!(on_tuned["kept_blocks"], on_tuned["tuned"]["kept_blocks"]);
    // The reference is the base model, found in the cache by its sha256.
    let sha = uniskip::models::file_sha256(&base).unwrap();
    assert_eq!(on_tuned["base_sha256"], sha.as_str());
    assert_eq!(on_tuned["base_model"], base.to_str().unwrap());
    assert!(
        on_tuned["reference"]
            .as_str()
            .unwrap()
            .starts_with("the base model at full depth"),
        "{on_tuned}"
    );

    // The untrained file holds the base's weights: its numbers are the base's under the
    // same mask, named with --skip-layers.
    let skip = skip_list(&on_tuned["kept_blocks"], 30);
    let on_base = ppl(&base, &["--skip-layers", &skip]);
    assert_eq!(on_base["tuned"], Value::Null);
    assert_eq!(on_base["kept_blocks"], on_tuned["kept_blocks"]);
    assert_eq!(on_tuned["full"], on_base["full"]);
    assert_eq!(on_tuned["skipped"], on_base["skipped"]);
    assert!(on_tuned["skipped"]["kl_mean"].as_f64().unwrap() > 0.1);
}

#[test]
fn skip_flags_win_over_a_tuned_files_mask_and_the_base_stays_the_reference() {
    let tuned = untrained_tuned_file();
    let base = model_path("smollm2");
    let on_tuned = ppl(tuned, &["--speedup", "2"]);
    assert_eq!(on_tuned["target"].as_f64(), Some(2.0));
    assert_eq!(on_tuned["kept_blocks"].as_array().unwrap().len(), 15);
    let on_base = ppl(&base, &["--speedup", "2"]);
    assert_eq!(on_tuned["full"], on_base["full"]);
    assert_eq!(on_tuned["skipped"], on_base["skipped"]);
}

/// A pruned file's own full depth is the base under the mask (its prompt too: the skipped
/// blocks are gone). Scored against itself its KL would be exactly 0; against the base it
/// is not, and its full-depth row is the base's.
#[test]
fn a_pruned_tuned_file_is_scored_against_its_base_model_not_its_own_full_depth() {
    let pruned = untrained_pruned_file();
    let base = model_path("smollm2");
    let on_pruned = ppl(pruned, &[]);
    assert_eq!(on_pruned["n_layer"], 20);
    assert_eq!(on_pruned["active_blocks"].as_f64(), Some(20.0));
    let on_base = ppl(&base, &["--speedup", "1.5"]);
    assert_eq!(on_pruned["full"], on_base["full"]);
    assert!(on_pruned["skipped"]["kl_mean"].as_f64().unwrap() > 0.1);

    // bench on the same windows: the untuned row runs the base under the mask the file
    // was pruned with, and each masked row scores what `ppl` scores.
    let out = tempfile::tempdir().unwrap();
    let mut args = vec![
        "bench",
        "-m",
        pruned.to_str().unwrap(),
        "--no-speed",
        "--out",
        out.path().to_str().unwrap(),
    ];
    args.extend(PPL);
    let report = json(&uniskip(&args));
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows[1]["kept_blocks"], on_base["kept_blocks"]);
    assert_eq!(rows[2]["kept_blocks"].as_array().unwrap().len(), 20);
    assert_eq!(rows[2]["speedup_by_layers"].as_f64(), Some(1.5));
    assert_eq!(rows[0]["quality"], on_base["full"]);
    assert_eq!(rows[1]["quality"], on_base["skipped"]);
    assert_eq!(rows[2]["quality"], on_pruned["skipped"]);
}

#[test]
fn bench_of_a_tuned_file_puts_it_beside_the_untuned_base_model_at_its_target() {
    let tuned = untrained_tuned_file();
    let out = tempfile::tempdir().unwrap();
    let run = uniskip(&[
        "bench",
        "-m",
        tuned.to_str().unwrap(),
        "-t",
        "1",
        "--batch",
        "1",
        "--rounds",
        "1",
        "--tokens",
        "4",
        "--prompt-tokens",
        "8",
        "--windows",
        "1",
        "--prefix",
        "8",
        "--continuation",
        "8",
        "--json",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let report = json(&run);
    let rows = report["rows"].as_array().unwrap();
    let labels: Vec<&str> = rows
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["full", "unified (base, untuned)", "unified (tuned)"]
    );
    assert_eq!(rows[1]["target"].as_f64(), Some(1.5));
    assert_eq!(rows[2]["target"].as_f64(), Some(1.5));
    assert_eq!(rows[1]["kept_blocks"], rows[2]["kept_blocks"]);
    // Quality against the base at full depth: the untrained file scores as the base does
    // under the same mask.
    assert_eq!(rows[0]["quality"]["kl_mean"].as_f64(), Some(0.0));
    assert_eq!(rows[1]["quality"], rows[2]["quality"]);
    assert!(rows[2]["quality"]["kl_mean"].as_f64().unwrap() > 0.1);
    // Speed of every row, and the tuned-over-untuned ratio, at batch 1.
    for r in rows {
        let cell = &r["speed"][0];
        assert_eq!(cell["batch"], 1);
        assert!(cell["decode_tokens_per_s"]["median"].as_f64().unwrap() > 0.0);
    }
    let sha = uniskip::models::file_sha256(&model_path("smollm2")).unwrap();
    assert_eq!(report["tuned"]["base"]["sha256"], sha.as_str());
    assert_eq!(report["tuned"]["tuning"]["speedup"].as_f64(), Some(1.5));
    let ratio = &report["tuned"]["tuned_over_untuned"][0];
    assert_eq!(ratio["batch"], 1);
    assert!(ratio["ratio"]["median"].as_f64().unwrap() > 0.0);
    // The table names the rows and the base.
    let md = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "md"))
        .unwrap();
    let table = std::fs::read_to_string(md).unwrap();
    assert!(table.contains("| unified (tuned) | 1.5x | 20 |"), "{table}");
    assert!(table.contains("beside its base model"), "{table}");
}

fn assert_one_line_exit_2(out: &Output, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
}

#[test]
fn a_tuned_file_whose_base_is_missing_or_wrong_exits_2_with_one_line() {
    let tuned = untrained_tuned_file().to_str().unwrap();
    // A model cache without the base model in it.
    let empty = tempfile::tempdir().unwrap();
    let results = empty.path().join("results");
    for args in [
        vec!["ppl", "-m", tuned, "-t", "1"],
        vec![
            "bench",
            "-m",
            tuned,
            "-t",
            "1",
            "--out",
            results.to_str().unwrap(),
        ],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .env("UNISKIP_MODELS", empty.path())
            .output()
            .unwrap();
        assert_one_line_exit_2(&out, "give the base model with --base FILE");
    }
    let gemma = model_path("gemma3");
    let out = uniskip(&["ppl", "-m", tuned, "--base", gemma.to_str().unwrap()]);
    assert_one_line_exit_2(&out, "is not the model");
}

#[test]
fn the_chat_of_a_tuned_file_says_tuned_for_1_5x_and_starts_at_its_mask() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["chat", "-m", untrained_tuned_file().to_str().unwrap()])
        .args(["--threads", "1", "-n", "2", "--no-probe"])
        .env("UNISKIP_DATA", data.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"Hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let title = stderr.lines().next().unwrap();
    assert!(title.contains("· tuned for 1.5x"), "{stderr}");
    assert!(
        stderr.contains("20/30 blocks · target 1.50x unified"),
        "{stderr}"
    );
}

/// A tuned file keeps what makes its base an instruct model: its chat template (llama.cpp's
/// model writer drops it; the tuned file carries it over), so `run --chat` works on it, in
/// both output forms.
#[test]
fn a_tuned_file_keeps_its_base_models_chat_template() {
    for file in [untrained_tuned_file(), untrained_pruned_file()] {
        let out = uniskip(&[
            "run",
            "-m",
            file.to_str().unwrap(),
            "--chat",
            "-p",
            "Hello",
            "-n",
            "2",
            "-t",
            "1",
        ]);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
