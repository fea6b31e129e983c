//! Ties the engine to the revision of the llama.cpp hook in ffi/.
//!
//! llama.cpp is built by llama-cpp-sys-2, which cannot see ffi/ changing. We compute the
//! same hash of ffi/ that ffi/uniskip.cmake bakes into the library and
//! 1. refuse to build when GGML_UNISKIP_REV (the stamp that makes llama-cpp-sys-2 rebuild)
//!    does not match it, and
//! 2. link against a symbol whose name holds the hash, so a library built from another
//!    revision of ffi/ cannot link.

use sha2::{Digest, Sha256};
use std::{env, fs, path::Path};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ffi_revision(dir: &Path) -> String {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read ffi/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut acc = String::new();
    for name in names {
        let bytes = fs::read(dir.join(&name)).expect("read ffi file");
        acc.push_str(&format!("{name} {}\n", hex(&Sha256::digest(&bytes))));
    }
    hex(&Sha256::digest(acc.as_bytes()))[..16].to_string()
}

fn main() {
    // ffi/ stays at the top of the repository, two levels above this crate.
    let ffi = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../ffi");
    println!("cargo:rerun-if-changed=../../ffi");
    println!("cargo:rerun-if-env-changed=GGML_UNISKIP_REV");
    // The app links its binaries with a run path to llama.cpp's libraries: it is not a
    // direct dependent of llama-cpp-sys-2, so pass on where they are (DEP_UNISKIP_HOOK_BACKENDS_DIR).
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_BACKENDS_DIR");
    if let Some(backends) = env::var_os("DEP_LLAMA_BACKENDS_DIR") {
        println!("cargo:backends_dir={}", Path::new(&backends).display());
    }
    let rev = ffi_revision(&ffi);
    match env::var("GGML_UNISKIP_REV") {
        Ok(stamp) if stamp == rev => {}
        Ok(stamp) => panic!(
            "ffi/ is at hook revision {rev} but .cargo/config.toml says GGML_UNISKIP_REV = \"{stamp}\": \
             set it to \"{rev}\" (or run `just hook-rev`) so llama.cpp is rebuilt with the new hook"
        ),
        Err(_) => panic!(
            "GGML_UNISKIP_REV is not set: build from the repository root so .cargo/config.toml applies"
        ),
    }
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("hook_rev.rs");
    fs::write(
        out,
        format!(
            "/// Revision of ffi/ this crate was built against.\n\
             pub const HOOK_REV: &str = \"{rev}\";\n\
             unsafe extern \"C\" {{\n\
             \x20   /// Defined only by a llama.cpp built from the same ffi/ revision.\n\
             \x20   #[link_name = \"uniskip_hook_rev_{rev}\"]\n\
             \x20   pub fn uniskip_hook_rev() -> u32;\n\
             }}\n"
        ),
    )
    .expect("write hook_rev.rs");
}
