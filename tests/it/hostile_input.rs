//! Bad input gets one clear line and exit code 2: never a panic, never an abort inside
//! llama.cpp.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

fn uniskip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uniskip"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// Exit code 2 and exactly one line on stderr that contains `needle`.
fn refused(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit status {:?}; stderr: {err}",
        out.status
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 || lines.iter().any(|l| l.starts_with("For more information")),
        "not one line: {err}"
    );
    assert!(err.contains(needle), "`{needle}` not in: {err}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn broken_model_files_are_refused_with_the_file_named() {
    let model = std::fs::read(common::model_path("smollm2")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut flipped = model[..4096].to_vec();
    flipped[0] ^= 0xff;
    let mut absurd = model[..64].to_vec();
    absurd[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let cases: Vec<(String, &str)> = vec![
        (write(dir.path(), "empty.gguf", b""), "empty"),
        (
            write(dir.path(), "text.gguf", b"just some text, not a model\n"),
            "not a GGUF file",
        ),
        (write(dir.path(), "header.gguf", &model[..20]), "truncated"),
        (
            write(dir.path(), "metadata.gguf", &model[..2000]),
            "truncated",
        ),
        (
            write(dir.path(), "infos.gguf", &model[..1_770_000]),
            "truncated",
        ),
        (
            write(dir.path(), "data.gguf", &model[..60_000_000]),
            "truncated",
        ),
        (
            write(dir.path(), "flipped.gguf", &flipped),
            "not a GGUF file",
        ),
        (write(dir.path(), "absurd.gguf", &absurd), "tensor"),
        (dir.path().to_str().unwrap().to_string(), "directory"),
    ];
    for (path, needle) in &cases {
        let out = uniskip(&["run", "-m", path, "-p", "hello", "-n", "2"]);
        refused(&out, needle);
        let err = String::from_utf8_lossy(&out.stderr);
        let name = Path::new(path).file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name), "the file is not named: {err}");
    }
    refused(
        &uniskip(&["run", "-m", "/no/such/model.gguf", "-p", "hi"]),
        "does not exist",
    );
}

#[test]
fn flag_values_out_of_range_name_the_valid_range() {
    refused(&uniskip(&["run", "-p", "hi", "--speedup", "0.5"]), ">= 1");
    refused(
        &uniskip(&["run", "-p", "hi", "--speedup", "nan"]),
        "out of range",
    );
    refused(
        &uniskip(&["run", "-p", "hi", "--speedup", "20", "--threads", "2"]),
        "from 1 to 15",
    );
    refused(&uniskip(&["run", "-p", "hi", "--threads", "0"]), "1..=1024");
    refused(&uniskip(&["run", "-p", "hi", "--ctx", "0"]), "16..=262144");
    refused(
        &uniskip(&["run", "-p", "hi", "--ctx", "100000"]),
        "trained on",
    );
    refused(&uniskip(&["run", "-p", "hi", "--batch", "0"]), "1..=256");
    refused(
        &uniskip(&["run", "-p", "hi", "--strategy", "fastest"]),
        "expected one of",
    );
    refused(
        &uniskip(&["run", "-p", "hi", "--top-p", "2"]),
        "from 0 to 1",
    );
    refused(
        &uniskip(&["run", "-p", "hi", "--skip-layers", "5-3"]),
        "reversed",
    );
    refused(
        &uniskip(&["run", "-p", "hi", "--skip-layers", "0-29"]),
        "at least one block",
    );
    refused(
        &uniskip(&["run", "-p", "hi", "--skip-layers", "1-3", "--speedup", "2"]),
        "cannot be used with",
    );
}

#[test]
fn unusable_prompts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad_utf8 = write(dir.path(), "latin1.txt", b"caf\xe9 au lait");
    let nul = write(dir.path(), "nul.txt", b"before\0after");
    let blank = write(dir.path(), "blank.txt", b" \n\t \n");
    refused(&uniskip(&["run", "-f", &bad_utf8]), "not valid UTF-8");
    refused(&uniskip(&["run", "-f", &nul]), "NUL");
    refused(&uniskip(&["run", "-f", &blank]), "only whitespace");
    refused(&uniskip(&["run", "-p", "   "]), "only whitespace");
    refused(
        &uniskip(&["run", "-f", "/no/such/prompt.txt"]),
        "cannot read the prompt file",
    );
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let long = "word ".repeat(3000);
    refused(
        &uniskip(&["run", "-p", &long, "--ctx", "512", "--threads", "2"]),
        "larger --ctx",
    );
}

#[test]
fn generation_that_fills_the_context_stops_cleanly_and_says_why() {
    // llama.cpp rounds the context up to 256 tokens: start close to that.
    let counting: String = (1..=60).map(|i| format!("{i}, ")).collect();
    let out = uniskip(&[
        "run",
        "-p",
        counting.trim_end(),
        "--ctx",
        "32",
        "-n",
        "400",
        "--threads",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is full; raise --ctx"), "{err}");
}
