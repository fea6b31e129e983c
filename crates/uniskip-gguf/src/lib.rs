//! Bounds-checked validation of GGUF model files, run before llama.cpp sees them.
//!
//! llama.cpp trusts parts of what a GGUF file claims: a damaged or hostile file can make it
//! abort (`GGML_ASSERT`) or allocate in proportion to a count written in the header. This module
//! reads the header with its own checks, so that a bad file is refused with one line that names
//! the file and says what is wrong, for example
//!
//! ```text
//! model.gguf: truncated: the file ends inside tensor info 12 of 272 (`blk.1.attn_q.weight`) (needs at least 8 bytes at offset 1234567; the file has 1000000 bytes)
//! ```
//!
//! What is checked:
//! - structure: the magic, the version (2 or 3, little-endian), every length and count against
//!   the bytes that remain (before iterating or allocating), metadata value types, every tensor
//!   info (name, dimensions, ggml type, byte size), `general.alignment`, and that each tensor's
//!   data is aligned, lies inside the file and is packed in the order the pinned llama.cpp
//!   loader (`gguf.cpp`) requires;
//! - content: a known `general.architecture`, a `<arch>.block_count` in `1..=512`,
//!   `token_embd.weight`, at least one `blk.<i>.*` tensor for every block, and the full per-block
//!   tensor set of the architectures verified against real files (`llama`, `gemma3`).
//!
//! Memory stays bounded on any file, here and in llama.cpp after us:
//! - tensor data is never read, and metadata values are skipped, not held (the few the checks
//!   need are read, at most 256 bytes each); what is kept (keys, tensor infos, one 64 KiB read
//!   window) grows with bytes really present in the file, never with a count the file claims;
//! - limits of our own, far above real models, refuse a file by name before llama.cpp, whose
//!   cost grows with counts, would load it: at most 65,536 metadata entries and tensors,
//!   4,194,304 metadata array elements and 64 MiB of metadata (see `tables`).
//!
//! This is the only GGUF parser on uniskip's run-time path. The `gguf-rs` crate is kept as a
//! second, independent parser for tests only (`tests/differential.rs`): it holds every
//! metadata array element as a JSON value (about 63 bytes each) and panics on tensor type 40,
//! and everything uniskip needs from a header (architecture, name, block count) is in
//! [`Summary`] already, read within the bounds above.
//!
//! The module is pure and self-contained (std and `thiserror` only, nothing else of uniskip) so
//! that the fuzz crate in `fuzz/` can include it by path without building llama.cpp. Files:
//! `tables` (mirrors of llama.cpp), `problem` (the refusals), `source` (bytes or a file),
//! `parser` with `metadata` and `tensors` (the structure), `content` (what llama.cpp
//! needs beyond the structure).

mod content;
mod metadata;
mod parser;
mod problem;
mod source;
mod tables;
mod tensors;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::path::Path;

pub use problem::{InvalidModel, Problem};
pub use tables::{
    ARCHITECTURES, MAX_ARRAY_ELEMENTS, MAX_BLOCK_COUNT, MAX_KV_COUNT, MAX_METADATA_BYTES,
    MAX_TENSOR_COUNT, type_layout,
};
pub use tensors::TensorInfo;

use parser::parse;
use problem::{io_problem, open_problem};
use source::{FileSource, SliceSource};
use tables::FILE_WINDOW;

/// What a valid file says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// GGUF version (2 or 3).
    pub version: u32,
    /// `general.architecture`, one of [`ARCHITECTURES`].
    pub architecture: String,
    /// `general.name` when present as a string (at most 256 bytes of it, lossily decoded).
    pub name: Option<String>,
    /// `<architecture>.block_count`, in `1..=MAX_BLOCK_COUNT`.
    pub block_count: usize,
    /// Number of tensors.
    pub n_tensors: u64,
    /// Number of metadata key/value pairs.
    pub n_kv: u64,
    /// Alignment of the tensor data (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute file offset where the tensor infos start (the end of the metadata).
    pub tensor_info_offset: u64,
    /// Absolute file offset where the tensor data section starts.
    pub data_offset: u64,
    /// Size of the file (or buffer) in bytes.
    pub file_size: u64,
    /// The tensor infos, in file order.
    pub tensors: Vec<TensorInfo>,
    /// Elements of all metadata arrays, nested ones included.
    pub array_elements: u64,
    /// Whether some metadata array holds arrays.
    pub nested_arrays: bool,
}
/// Validates the GGUF file at `path` without loading its tensor data.
///
/// The header is read through a 64 KiB window, so memory stays bounded by the header bytes the
/// file really has, whatever counts it claims.
///
/// # Errors
///
/// A missing path, a directory, a special file (device, FIFO, socket), a file that cannot be
/// read, an empty file, and everything [`validate_bytes`] refuses, each with the path.
pub fn validate_file(path: &Path) -> Result<Summary, InvalidModel> {
    let invalid = |problem| InvalidModel {
        path: path.to_path_buf(),
        problem,
    };
    // Look before opening: opening a FIFO for reading blocks until someone writes to it.
    let kind = |meta: &std::fs::Metadata| {
        if meta.is_dir() {
            Err(invalid(Problem::IsDirectory))
        } else if !meta.is_file() {
            Err(invalid(Problem::NotRegularFile))
        } else {
            Ok(())
        }
    };
    kind(&std::fs::metadata(path).map_err(|e| invalid(open_problem(&e)))?)?;
    let file = File::open(path).map_err(|e| invalid(open_problem(&e)))?;
    // Again on the opened file, in case the path was replaced in between.
    let meta = file
        .metadata()
        .map_err(|e| invalid(io_problem("inspect", &e)))?;
    kind(&meta)?;
    let mut src = FileSource::new(file, meta.len(), FILE_WINDOW);
    parse(&mut src, meta.len()).map_err(invalid)
}

/// Validates a whole GGUF file held in memory.
///
/// Pure and panic-free; it allocates at most a small multiple of `data.len()` (keys and tensor
/// names), whatever the bytes claim. This is the fuzz target's entry point.
///
/// # Errors
///
/// The first [`Problem`] found, structural ones before content ones.
pub fn validate_bytes(data: &[u8]) -> Result<Summary, Problem> {
    parse(&mut SliceSource(data), data.len() as u64)
}
