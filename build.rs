//! Links the app's binaries so they find llama.cpp's shared libraries.
//!
//! With cpu-variants llama.cpp is a set of shared libraries. The binaries find them where
//! llama-cpp-sys-2 installed them (its OUT_DIR/lib, beside the backends folder it reports,
//! passed on by the engine crate), and beside themselves ($ORIGIN) when they are copied
//! elsewhere with them.

use std::{env, path::Path};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_UNISKIP_HOOK_BACKENDS_DIR");
    if env::var_os("CARGO_FEATURE_CPU_VARIANTS").is_some() {
        if let Some(backends) = env::var_os("DEP_UNISKIP_HOOK_BACKENDS_DIR") {
            let lib = Path::new(&backends).with_file_name("lib");
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        }
        println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN");
    }
}
