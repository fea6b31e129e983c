//! Which CPU code llama.cpp runs.
//!
//! With the `cpu-variants` feature, llama.cpp's CPU backend is built once per x86-64 level
//! (`libggml-cpu-x64.so`, `-haswell`, `-skylakex`, `-icelake`) and ggml loads the one whose
//! score is highest among those this CPU supports: AVX-512 kernels where the CPU has them,
//! AVX2 or plain x86-64 where it does not. Without the feature the CPU backend is linked in,
//! built for AVX2. `UNISKIP_CPU_VARIANT=haswell` (say) loads one variant instead, to compare
//! them or to avoid one.

#[cfg(feature = "cpu-variants")]
use std::path::{Path, PathBuf};

use super::error::{EngineError, Result};

/// The prefix of ggml's CPU backend modules.
#[cfg(feature = "cpu-variants")]
const CPU_MODULE_PREFIX: &str = "libggml-cpu-";

/// Where the backend modules are: beside the running binary when they were installed
/// with it, else where the build put them.
#[cfg(feature = "cpu-variants")]
fn modules_dir() -> Option<PathBuf> {
    let has_modules = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(CPU_MODULE_PREFIX)
            })
        })
    };
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    beside_binary
        .into_iter()
        .chain(llama_cpp_sys_2::BACKENDS_DIR.map(PathBuf::from))
        .find(|d| has_modules(d))
}

/// Loads llama.cpp's backend modules (the best CPU variant, RPC) before the backend is
/// initialised. Does nothing when the CPU backend is linked in.
pub(crate) fn load_backends() -> Result<()> {
    if std::env::var_os("UNISKIP_LLAMA_LOG").is_none() {
        // Loading modules logs each one: silence ggml before that, as the backend is later.
        // SAFETY: sets ggml's process-wide log function to one that ignores everything.
        unsafe { llama_cpp_sys_2::ggml_log_set(Some(quiet), std::ptr::null_mut()) };
    }
    #[cfg(feature = "cpu-variants")]
    {
        let dir = modules_dir().ok_or_else(|| {
            EngineError::Backend(format!(
                "llama.cpp's CPU backend modules ({CPU_MODULE_PREFIX}*.so) are neither beside the binary nor in {}; copy them next to uniskip",
                llama_cpp_sys_2::BACKENDS_DIR.unwrap_or("the build directory")
            ))
        })?;
        match std::env::var("UNISKIP_CPU_VARIANT") {
            // For comparisons (and a way out should a variant misbehave): load exactly one.
            Ok(forced) if !forced.is_empty() => load_forced(&dir, &forced)?,
            _ => llama_cpp_2::llama_backend::load_backends_from_path(&dir),
        }
    }
    // SAFETY: a query of ggml's device list.
    let cpu = unsafe {
        llama_cpp_sys_2::ggml_backend_dev_by_type(llama_cpp_sys_2::GGML_BACKEND_DEVICE_TYPE_CPU)
    };
    if cpu.is_null() {
        return Err(EngineError::Backend(
            "no CPU backend could be loaded (does this CPU lack even the x86-64 baseline?)".into(),
        ));
    }
    Ok(())
}

/// Loads the CPU variant `name` (and the RPC backend) from `dir`, ignoring the others.
#[cfg(feature = "cpu-variants")]
fn load_forced(dir: &Path, name: &str) -> Result<()> {
    let load = |file: PathBuf| -> bool {
        let Some(c) = file.to_str().and_then(|s| std::ffi::CString::new(s).ok()) else {
            return false;
        };
        // SAFETY: a NUL-terminated path; ggml returns null when it cannot load the module.
        !unsafe { llama_cpp_sys_2::ggml_backend_load(c.as_ptr()) }.is_null()
    };
    if !load(dir.join(format!("{CPU_MODULE_PREFIX}{name}.so"))) {
        let mut known: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| {
                        let f = e.file_name().to_string_lossy().into_owned();
                        Some(
                            f.strip_prefix(CPU_MODULE_PREFIX)?
                                .strip_suffix(".so")?
                                .to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        known.sort();
        return Err(EngineError::Backend(format!(
            "UNISKIP_CPU_VARIANT={name}: no such CPU variant in {} (built: {})",
            dir.display(),
            known.join(", ")
        )));
    }
    let rpc = dir.join("libggml-rpc.so");
    if rpc.exists() {
        load(rpc);
    }
    Ok(())
}

/// The CPU code in use: the variant ggml loaded (`icelake`, `haswell`, `x64`, ...), or
/// `built-in (AVX2)` when the CPU backend is linked in.
pub fn variant() -> String {
    // The modules load with the backend.
    if super::model::ensure_backend().is_err() {
        return "none (llama.cpp did not start)".into();
    }
    if !cfg!(feature = "cpu-variants") {
        return "built-in (AVX2)".into();
    }
    // The loaded module is the one mapped into this process.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|l| l.rsplit('/').next())
        .find_map(|file| {
            let rest = file.strip_prefix("libggml-cpu-")?;
            Some(rest.split(".so").next().unwrap_or(rest).to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

unsafe extern "C" fn quiet(
    _level: llama_cpp_sys_2::ggml_log_level,
    _text: *const std::ffi::c_char,
    _user_data: *mut std::ffi::c_void,
) {
}
