//! Writing a model file with blocks removed, by llama.cpp's own quantizer.
//!
//! `llama_model_quantize` with `only_copy` and `prune_layers` copies every tensor unchanged
//! except those of the pruned blocks, renumbers the remaining blocks and lowers the block
//! count. Skipping those blocks at run time must give the same logits: the pruned file is
//! an oracle for the hook that shares none of its code (docs/DESIGN.md section 5).

use std::ffi::CString;
use std::path::Path;

use super::error::{EngineError, Result};

/// Writes `dst`: the model at `src` without the blocks in `pruned` (0-based indices,
/// each below the model's block count; at least one block must stay).
pub fn write_pruned_model(src: &Path, dst: &Path, pruned: &[usize]) -> Result<()> {
    let fail = |reason: String| EngineError::Load {
        path: src.to_path_buf(),
        reason,
    };
    // The quantizer reads the file as llama.cpp's loader does: check it first, as
    // `Model::load` does, and check the list against it (llama.cpp does not).
    let summary = uniskip_gguf::validate_file(src)?;
    let n_layer = summary.block_count;
    if let Some(&bad) = pruned.iter().find(|&&i| i >= n_layer) {
        return Err(fail(format!(
            "block {bad} cannot be pruned: the model has blocks 0-{}",
            n_layer - 1
        )));
    }
    let to_c = |p: &Path| {
        p.to_str()
            .and_then(|s| CString::new(s).ok())
            .ok_or_else(|| {
                fail(format!(
                    "path {} is not valid UTF-8 without NUL",
                    p.display()
                ))
            })
    };
    let (src_c, dst_c) = (to_c(src)?, to_c(dst)?);
    // llama.cpp reads the list up to a -1 and expects it sorted ascending.
    // (Every index is below the block count, itself at most a few hundred: it fits.)
    let mut list: Vec<i32> = pruned.iter().map(|&i| i as i32).collect();
    list.sort_unstable();
    list.dedup();
    if list.len() == n_layer {
        return Err(fail("pruning every block leaves no model".into()));
    }
    list.push(-1);
    super::model::ensure_backend()?;
    // SAFETY: default params from llama.cpp, then plain fields set; `list` and the two C
    // strings outlive the call, which only reads them.
    let status = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.only_copy = true;
        params.prune_layers = list.as_ptr();
        params.nthread = 1;
        llama_cpp_sys_2::llama_model_quantize(src_c.as_ptr(), dst_c.as_ptr(), &params)
    };
    if status != 0 {
        return Err(fail(format!(
            "llama.cpp could not write the pruned model (status {status})"
        )));
    }
    Ok(())
}
