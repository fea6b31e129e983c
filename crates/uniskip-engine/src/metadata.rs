//! Writing key-value metadata into a GGUF file with ggml's own gguf API.
//!
//! The tensor data section is copied byte for byte: only the header (metadata and tensor
//! descriptions, whose data offsets are relative to the data section) is rewritten.

use std::ffi::CString;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

use llama_cpp_sys_2 as sys;

use super::error::{EngineError, Result};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// A UTF-8 string.
    Str(String),
    /// An unsigned 32-bit integer.
    U32(u32),
    /// An unsigned 64-bit integer.
    U64(u64),
    /// A 32-bit float.
    F32(f32),
}

/// Writes `dst`: the GGUF file `src` with `entries` set (added, or replacing a key of the
/// same name whatever its type).
pub fn write_with_metadata(src: &Path, dst: &Path, entries: &[(String, MetaValue)]) -> Result<()> {
    let fail = |reason: String| EngineError::Load {
        path: src.to_path_buf(),
        reason,
    };
    uniskip_gguf::validate_file(src)?;
    let to_c = |s: &str| CString::new(s).map_err(|_| fail(format!("`{s}` contains a NUL byte")));
    let path_c = |p: &Path| {
        p.to_str()
            .ok_or_else(|| fail(format!("{} is not valid UTF-8", p.display())))
            .and_then(to_c)
    };
    let (src_c, dst_c) = (path_c(src)?, path_c(dst)?);
    let mut c_entries = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let v = match value {
            MetaValue::Str(s) => Some(to_c(s)?),
            _ => None,
        };
        c_entries.push((to_c(key)?, value, v));
    }
    // SAFETY: metadata only (no_alloc, no ggml context); every C string outlives the calls
    // that read it; the gguf context is freed once on every path.
    let (written, data_offset) = unsafe {
        let params = sys::gguf_init_params {
            no_alloc: true,
            ctx: std::ptr::null_mut(),
        };
        let ctx = sys::gguf_init_from_file(src_c.as_ptr(), params);
        if ctx.is_null() {
            return Err(fail("ggml could not read its GGUF header".into()));
        }
        for (key, value, s) in &c_entries {
            match value {
                MetaValue::Str(_) => {
                    let s = s
                        .as_ref()
                        .expect("a C string was made for every string value");
                    sys::gguf_set_val_str(ctx, key.as_ptr(), s.as_ptr());
                }
                MetaValue::U32(v) => sys::gguf_set_val_u32(ctx, key.as_ptr(), *v),
                MetaValue::U64(v) => sys::gguf_set_val_u64(ctx, key.as_ptr(), *v),
                MetaValue::F32(v) => sys::gguf_set_val_f32(ctx, key.as_ptr(), *v),
            }
        }
        let data_offset = sys::gguf_get_data_offset(ctx);
        let written = sys::gguf_write_to_file(ctx, dst_c.as_ptr(), true);
        sys::gguf_free(ctx);
        (written, data_offset)
    };
    if !written {
        return Err(EngineError::Decode(format!(
            "cannot write the GGUF header of {}",
            dst.display()
        )));
    }
    let io = |e: std::io::Error| {
        EngineError::Decode(format!(
            "cannot copy the tensor data into {}: {e}",
            dst.display()
        ))
    };
    let mut from = File::open(src).map_err(io)?;
    from.seek(SeekFrom::Start(data_offset as u64)).map_err(io)?;
    let mut to = std::fs::OpenOptions::new()
        .append(true)
        .open(dst)
        .map_err(io)?;
    std::io::copy(&mut from, &mut to).map_err(io)?;
    to.sync_all().map_err(io)?;
    Ok(())
}
