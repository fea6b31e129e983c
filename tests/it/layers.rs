//! The layers are crates, and the manifests hold them: what each workspace crate may
//! depend on (docs/DESIGN.md section 7), read from `cargo metadata`. Cargo itself refuses a
//! cycle, so no lower crate can import a higher one; this test catches what cargo allows
//! and the design does not (a pure crate naming the engine, llama.cpp outside the engine).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// The workspace's crates, each with the crates (workspace and llama.cpp's) it depends on
/// for building its library and binaries.
fn layer_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON");
    let mut graph = BTreeMap::new();
    for package in meta["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name").to_string();
        let deps = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            // Normal and build dependencies: dev-dependencies serve the tests only.
            .filter(|d| d["kind"].as_str() != Some("dev"))
            .filter_map(|d| d["name"].as_str())
            .filter(|d| d.starts_with("uniskip") || d.starts_with("llama-cpp"))
            .map(str::to_string)
            .collect();
        graph.insert(name, deps);
    }
    graph
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn each_crate_depends_only_on_the_layers_below_it() {
    let graph = layer_dependencies();
    let allowed: BTreeMap<&str, BTreeSet<String>> = BTreeMap::from([
        (
            "uniskip",
            set(&[
                "uniskip-services",
                "uniskip-engine",
                "uniskip-skip",
                "uniskip-gguf",
                "uniskip-error",
            ]),
        ),
        (
            "uniskip-services",
            set(&[
                "uniskip-engine",
                "uniskip-skip",
                "uniskip-gguf",
                "uniskip-error",
            ]),
        ),
        (
            "uniskip-engine",
            set(&[
                "uniskip-skip",
                "uniskip-gguf",
                "uniskip-draft",
                "llama-cpp-2",
                "llama-cpp-sys-2",
            ]),
        ),
        ("uniskip-skip", set(&[])),
        ("uniskip-gguf", set(&[])),
        ("uniskip-draft", set(&[])),
        ("uniskip-error", set(&[])),
    ]);
    assert_eq!(
        graph.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        allowed.keys().copied().collect::<BTreeSet<_>>(),
        "the workspace's crates are the layers of docs/DESIGN.md section 7"
    );
    for (name, deps) in &graph {
        let extra: Vec<_> = deps.difference(&allowed[name.as_str()]).collect();
        assert!(
            extra.is_empty(),
            "{name} depends on {extra:?}, which its layer may not import"
        );
    }
}

#[test]
fn only_the_engine_links_llama_cpp() {
    let graph = layer_dependencies();
    let linking: Vec<_> = graph
        .iter()
        .filter(|(_, deps)| deps.iter().any(|d| d.starts_with("llama-cpp")))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(linking, ["uniskip-engine"]);
}
