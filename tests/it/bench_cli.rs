//! `uniskip bench` end to end on a tiny grid of the real default model.

use crate::common;

use std::process::Command;

use serde_json::Value;

fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for key in path.split('.') {
        cur = cur
            .get(key)
            .unwrap_or_else(|| panic!("missing field `{path}` (at `{key}`) in {v:#}"));
    }
    cur
}

fn number(v: &Value, path: &str) -> f64 {
    field(v, path)
        .as_f64()
        .unwrap_or_else(|| panic!("`{path}` is not a number: {}", field(v, path)))
}

#[test]
fn the_json_record_of_a_tiny_grid_has_every_field() {
    common::model_path("smollm2");
    let out = tempfile::tempdir().unwrap();
    let missing_profile = out.path().join("no-profile.json");
    let run = Command::new(env!("CARGO_BIN_EXE_uniskip"))
        .args([
            "bench",
            "-t",
            "2",
            "--strategies",
            "unified,skipdecode,calibrated",
            "--targets",
            "2,20",
            "--batch",
            "1,2",
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
            "--no-calibrate",
            "--json",
        ])
        .arg("--profile")
        .arg(&missing_profile)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("runs uniskip bench");
    assert!(
        run.status.success(),
        "uniskip bench failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: Value = serde_json::from_slice(&run.stdout).expect("stdout is one JSON object");

    for path in [
        "version",
        "hook_revision",
        "command",
        "date",
        "machine.cpu",
        "machine.os",
        "machine.arch",
        "model.name",
        "model.file",
        "model.architecture",
        "quality_settings.corpus",
        "quality_settings.corpus_sha256",
        "quality_settings.slice",
        "quality_settings.reference",
        "speed_settings.prefill",
    ] {
        assert!(field(&report, path).is_string(), "`{path}` is not a string");
    }
    assert_eq!(field(&report, "model.sha256").as_str().unwrap().len(), 64);
    for path in [
        "unix_time",
        "wall_seconds",
        "cpu_seconds",
        "phases.calibration",
        "phases.quality",
        "phases.speed",
        "machine.logical_cpus",
        "model.size_bytes",
        "model.n_layer",
        "model.n_vocab",
        "speed_settings.threads",
        "speed_settings.rounds",
        "speed_settings.warmup_rounds",
        "speed_settings.decode_tokens",
        "speed_settings.prompt_tokens",
        "quality_settings.windows",
        "quality_settings.prefix_tokens",
        "quality_settings.continuation_tokens",
        "quality_settings.scored_tokens",
    ] {
        number(&report, path);
    }
    assert_eq!(number(&report, "speed_settings.threads"), 2.0);
    assert_eq!(number(&report, "speed_settings.rounds"), 1.0);
    assert_eq!(
        field(&report, "speed_settings.batch_sizes"),
        &serde_json::json!([1, 2])
    );
    assert!(
        field(&report, "calibration").is_null(),
        "no profile was given"
    );

    let rows = field(&report, "rows").as_array().unwrap();
    let labels: Vec<(String, Option<f64>)> = rows
        .iter()
        .map(|r| {
            (
                field(r, "strategy").as_str().unwrap().to_string(),
                field(r, "target").as_f64(),
            )
        })
        .collect();
    let want: Vec<(String, Option<f64>)> = [
        ("full", 1.0),
        ("full, hook unset", 1.0),
        ("unified", 2.0),
        ("unified", 20.0),
        ("skipdecode", 2.0),
        ("skipdecode", 20.0),
        ("calibrated", 2.0),
        ("calibrated", 20.0),
    ]
    .iter()
    .map(|&(s, t)| (s.to_string(), Some(t)))
    .collect();
    assert_eq!(
        labels, want,
        "every cell is reported, impossible ones included"
    );

    for r in rows {
        let name = format!("{} {}", field(r, "strategy"), field(r, "target"));
        if !field(r, "possible").as_bool().unwrap() {
            let reason = field(r, "reason").as_str().unwrap();
            assert!(!reason.is_empty(), "{name}: impossible without a reason");
            assert!(field(r, "speed").as_array().unwrap().is_empty());
            assert!(field(r, "quality").is_null());
            continue;
        }
        assert!(field(r, "reason").is_null());
        number(r, "active_blocks");
        number(r, "speedup_by_layers");
        let speed = field(r, "speed").as_array().unwrap();
        assert_eq!(speed.len(), 2, "{name}: one cell per batch size");
        for cell in speed {
            number(cell, "batch");
            for stat in ["prefill_tokens_per_s", "decode_tokens_per_s", "speedup"] {
                for k in ["median", "min", "max"] {
                    let x = number(cell, &format!("{stat}.{k}"));
                    assert!(x.is_finite() && x > 0.0, "{name} {stat}.{k} = {x}");
                }
                assert_eq!(
                    field(cell, &format!("{stat}.rounds"))
                        .as_array()
                        .unwrap()
                        .len(),
                    1
                );
            }
        }
        if field(r, "strategy") == "full, hook unset" {
            assert!(field(r, "quality").is_null(), "the unset row is speed only");
            continue;
        }
        for k in [
            "tokens",
            "perplexity",
            "kl_mean",
            "kl_p99",
            "kl_max",
            "top1_agreement",
        ] {
            number(r, &format!("quality.{k}"));
        }
        assert_eq!(number(r, "quality.tokens"), 8.0);
    }
    let full = &rows[0];
    assert_eq!(number(full, "quality.kl_mean"), 0.0);
    assert_eq!(number(full, "quality.top1_agreement"), 1.0);
    assert_eq!(number(&field(full, "speed")[0], "speedup.median"), 1.0);
    assert!(number(&rows[2], "quality.kl_mean") > 0.0);
    assert!(
        field(&rows[4], "active_blocks_per_step").is_array(),
        "skipdecode's schedule"
    );
    assert!(field(&rows[2], "kept_blocks").is_array(), "unified's mask");
    let reason = field(&rows[6], "reason").as_str().unwrap();
    assert!(reason.contains("calibrat"), "{reason}");

    let mut written: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bench-"))
        .collect();
    written.sort();
    assert_eq!(written.len(), 4, "{written:?}");
    assert!(written.iter().any(|n| n.ends_with(".json")));
    assert!(written.iter().any(|n| n.ends_with(".md")));
    assert!(written.iter().any(|n| n.ends_with("-quality.svg")));
    assert!(
        written
            .iter()
            .any(|n| n.ends_with("-throughput-batch2.svg"))
    );
}

/// `bench --lossless --costs`: every shape of a lossless generation timed repeated and right
/// after the shape before it, each relative to a plain step, and every shape that came back
/// after the warm-up found its graph slot (none was taken from another).
#[test]
fn the_switch_cost_report_times_every_shape_both_ways_and_keeps_their_graphs() {
    let model = common::model_path("smollm2");
    let out = Command::new(env!("CARGO_BIN_EXE_uniskip"))
        .args([
            "bench",
            "-m",
            model.to_str().unwrap(),
            "-t",
            "2",
            "--lossless",
            "--costs",
            "--rounds",
            "1",
            "--draft-targets",
            "2",
            "--json",
        ])
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let shapes = field(&v, "costs.shapes").as_array().unwrap();
    let names: Vec<&str> = shapes
        .iter()
        .map(|s| field(s, "shape").as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "plain step after a round",
            "verify 2 rows",
            "verify 3 rows",
            "verify 4 rows",
            "verify 5 rows",
            "verify 6 rows",
            "verify 7 rows",
            "verify 8 rows",
            "draft, 15/30 blocks",
        ]
    );
    let plain = number(&v, "costs.plain_ms");
    for s in shapes {
        for way in ["raw", "switched"] {
            let ms = number(s, &format!("{way}_ms"));
            let steps = number(s, &format!("{way}_steps"));
            assert!(ms > 0.0, "{s}");
            assert!((steps - ms / plain).abs() < 1e-9, "{s}");
        }
    }
    assert_eq!(field(&v, "device.backend"), "CPU", "{v}");
    // The nine shapes (a plain step, seven verifications, a draft) each take a slot once;
    // every later decode finds its shape's slot and runs its graph as built.
    let slots = field(&v, "costs.graph_slots");
    assert_eq!(number(slots, "new_slot"), 9.0, "{slots}");
    assert!(number(slots, "kept") > 0.0, "{slots}");
    assert_eq!(number(slots, "reused"), number(slots, "kept"), "{slots}");
}
