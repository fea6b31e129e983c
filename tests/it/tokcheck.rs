//! `uniskip check`: llama.cpp's tokenization against the model's original tokenizer.json,
//! on the real models and the real tokenizer file from the catalog.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common;

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uniskip"))
        .arg("check")
        .args(args)
        .output()
        .expect("binary runs")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "one JSON object ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Gemma 3's original tokenizer.json, from the catalog cache.
fn gemma3_tokenizer() -> PathBuf {
    common::model_path("gemma3-tokenizer")
}

#[test]
fn gemma3_gguf_tokenizes_exactly_like_its_original_tokenizer() {
    let out = check(&["-m", "gemma3", "--texts", "200", "--json"]);
    let v = json(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "examples: {}",
        serde_json::to_string_pretty(&v["examples"]).unwrap()
    );
    assert_eq!(v["mismatches"], 0);
    assert!(
        v["texts"].as_u64().unwrap() >= 200 + 30,
        "corpus and edge cases: {v}"
    );
    assert!(v["tokens"].as_u64().unwrap() > 5000, "{v}");
    assert_eq!(v["architecture"], "gemma3");
    assert_eq!(v["tokenizer_ggml_pre"], "default");
    assert_eq!(v["hook_covers_architecture"], true);
    // The catalog tokenizer was found without --tokenizer.
    assert!(
        v["tokenizer"]
            .as_str()
            .unwrap()
            .ends_with(".tokenizer.json")
    );
}

#[test]
fn another_models_tokenizer_fails_with_examples() {
    let tok = gemma3_tokenizer();
    let out = check(&[
        "-m",
        "smollm2",
        "--tokenizer",
        tok.to_str().unwrap(),
        "--texts",
        "20",
        "--examples",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1), "a mismatch is exit status 1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("tokenizer.ggml.pre: smollm"), "{stdout}");
    assert!(stdout.contains("chat template: "), "{stdout}");
    assert!(stdout.contains("mismatch rate"), "{stdout}");
    assert!(stdout.contains("first difference at token"), "{stdout}");
    assert_eq!(
        stdout.matches("llama.cpp: ").count(),
        3,
        "three examples: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tokenize") && stderr.contains("differently"),
        "{stderr}"
    );
}

#[test]
fn a_wrong_pre_tokenizer_is_caught_on_some_texts() {
    // The classic conversion mistake: a SentencePiece-style dummy "▁" prefix that Gemma 3
    // does not use. Only texts whose first word changes are affected.
    let mut t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gemma3_tokenizer()).unwrap()).unwrap();
    let replace = t["normalizer"].clone();
    t["normalizer"] = serde_json::json!({
        "type": "Sequence",
        "normalizers": [{"type": "Prepend", "prepend": "▁"}, replace],
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, serde_json::to_vec(&t).unwrap()).unwrap();
    let out = check(&[
        "-m",
        "gemma3",
        "--tokenizer",
        path.to_str().unwrap(),
        "--texts",
        "20",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let mismatches = v["mismatches"].as_u64().unwrap();
    assert!(mismatches > 0, "{v}");
    let first = &v["examples"][0];
    assert_eq!(
        first["first_difference"], 0,
        "the prefix changes the first token: {first}"
    );
    assert_ne!(first["llama_cpp"], first["reference"]);
}

#[test]
fn missing_or_broken_tokenizer_json_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("tokenizer.json");
    std::fs::write(&broken, "{ not json").unwrap();
    for path in [broken, dir.path().join("absent.json")] {
        let out = check(&["-m", "gemma3", "--tokenizer", path.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains("cannot load tokenizer"), "{stderr}");
    }
    // A GGUF with nothing beside it, and no --tokenizer.
    let alone = tempfile::tempdir().unwrap();
    let copy = alone.path().join("model.gguf");
    std::fs::copy(common::model_path("smollm2"), &copy).unwrap();
    let out = check(&["-m", copy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tokenizer.json next to"));
}
