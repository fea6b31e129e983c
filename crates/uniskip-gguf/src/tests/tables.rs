//! The mirrored tables against ggml and the pinned llama.cpp.

use super::*;

// ---- tables -------------------------------------------------------------------------------

#[test]
fn type_layout_matches_ggml_for_spot_checks() {
    assert_eq!(type_layout(0), Some((1, 4)));
    assert_eq!(type_layout(3), Some((32, 20)));
    assert_eq!(type_layout(12), Some((256, 144)));
    assert_eq!(type_layout(39), Some((32, 17)));
    for removed in [4, 5, 31, 32, 33, 36, 37, 38, 43, u32::MAX] {
        assert_eq!(type_layout(removed), None, "type {removed}");
    }
}

/// Checks [`ARCHITECTURES`] against the pinned llama.cpp source in the cargo registry (there
/// wherever the main crate was built or `cargo fetch` ran; `just test-pure` fetches it).
#[test]
fn architectures_mirror_the_pinned_llama_cpp() {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let source = home.and_then(|home| {
        fs::read_dir(home.join("registry/src")).ok()?.find_map(|d| {
            let p = d
                .ok()?
                .path()
                .join("llama-cpp-sys-2-0.1.161/llama.cpp/src/llama-arch.cpp");
            fs::read_to_string(p).ok()
        })
    });
    let source = source.expect(
        "llama-arch.cpp of llama-cpp-sys-2 0.1.161 is not in the cargo registry \
         ($CARGO_HOME/registry/src): run `cargo fetch --locked` (just test-pure does)",
    );
    let table = source
        .split("LLM_ARCH_NAMES = {")
        .nth(1)
        .and_then(|t| t.split("};").next())
        .expect("LLM_ARCH_NAMES table");
    let names: Vec<&str> = table
        .lines()
        .filter_map(|l| l.split('"').nth(1))
        .filter(|&n| n != "(unknown)")
        .collect();
    assert_eq!(names, ARCHITECTURES);
}
