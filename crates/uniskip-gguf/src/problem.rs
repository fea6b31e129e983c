//! What is wrong with a model file, as one line that names the file and the fault.

use std::io::{self, ErrorKind};
use std::path::PathBuf;

use super::tables::{MAX_ARRAY_DEPTH, MAX_BLOCK_COUNT, MAX_DIMS, type_name};

/// A model file that failed validation: the file and what is wrong with it.
///
/// Displays as one line, `<path>: <problem>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", one_line(&.path.display().to_string()))]
pub struct InvalidModel {
    /// The file, as given.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: Problem,
}

impl InvalidModel {
    /// Always the input's fault (exit code 2): the file is not a model llama.cpp can load.
    pub fn is_user_error(&self) -> bool {
        true
    }
}

/// What is wrong with a model file. Each message is one line; text taken from the file is
/// escaped and shortened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The path does not exist.
    #[error("no such file")]
    NotFound,
    /// The path is a directory.
    #[error("is a directory, not a model file")]
    IsDirectory,
    /// The path is a device, FIFO or socket (reading it could block or never end).
    #[error("is not a regular file")]
    NotRegularFile,
    /// The file cannot be opened for reading.
    #[error("permission denied: cannot read the file")]
    PermissionDenied,
    /// Any other I/O failure.
    #[error("cannot {action} the file: {message}")]
    Io {
        /// What was being done (`open`, `read`, ...).
        action: &'static str,
        /// The operating system's message.
        message: String,
    },
    /// The file has no bytes at all.
    #[error("the file is empty (0 bytes)")]
    Empty,
    /// The first bytes are not `GGUF`.
    #[error("not a GGUF file: it starts with \"{}\" instead of \"GGUF\"{}", .found.escape_ascii(), legacy_hint(.found))]
    NotGguf {
        /// The first (up to 4) bytes of the file.
        found: Vec<u8>,
    },
    /// The version field is byte-swapped.
    #[error(
        "big-endian GGUF file (the version field reads {raw:#010x}); only little-endian files are supported"
    )]
    BigEndian {
        /// The version field read as little-endian.
        raw: u32,
    },
    /// A GGUF version other than 2 or 3.
    #[error("GGUF version {version} is not supported{}", version_hint(*.version))]
    UnsupportedVersion {
        /// The version in the header.
        version: u32,
    },
    /// The file ends inside a header item.
    #[error(
        "truncated: the file ends inside {what} (needs at least {need} bytes at offset {offset}; the file has {file_size} bytes)"
    )]
    Truncated {
        /// The item being read.
        what: String,
        /// Where it starts (or continues).
        offset: u64,
        /// Bytes it needs from `offset`.
        need: u64,
        /// Size of the file.
        file_size: u64,
    },
    /// A count so large no file could hold it: the count is corrupt.
    #[error(
        "{what} claims {count} {unit} of at least {each} bytes each, far more than the {remaining} bytes that follow"
    )]
    ImpossibleCount {
        /// Where the count is.
        what: String,
        /// The count.
        count: u64,
        /// What is counted.
        unit: &'static str,
        /// Minimum bytes per counted item.
        each: u64,
        /// Bytes left after the count.
        remaining: u64,
    },
    /// A string length so large no file could hold it: the length is corrupt.
    #[error(
        "{what} claims a string of {len} bytes, far more than the {remaining} bytes that follow"
    )]
    ImpossibleLength {
        /// Where the length is.
        what: String,
        /// The length.
        len: u64,
        /// Bytes left after the length.
        remaining: u64,
    },
    /// A count or length above a fixed limit (of llama.cpp, of the GGUF specification, or one of
    /// uniskip's own that keep memory bounded).
    #[error("{what} claims {count} {unit}, more than the limit of {limit}")]
    OverLimit {
        /// Where the count is.
        what: String,
        /// The count.
        count: u64,
        /// What is counted.
        unit: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The metadata arrays hold more elements, all together, than uniskip accepts.
    #[error(
        "metadata key `{}` holds an array of {count} elements, which brings the metadata's arrays to {total} elements in all, more than the limit of {limit}",
        shown(.key)
    )]
    TooManyArrayElements {
        /// The key whose array crosses the limit.
        key: String,
        /// Elements of that array (nested ones included).
        count: u64,
        /// Elements of all arrays so far, this one included.
        total: u64,
        /// The limit.
        limit: u64,
    },
    /// The metadata section is larger than uniskip accepts.
    #[error(
        "metadata key `{}` ends {end} bytes into the file, past the limit of {limit} bytes of metadata",
        shown(.key)
    )]
    MetadataTooLarge {
        /// The key whose value crosses the limit.
        key: String,
        /// Where its value ends (an absolute file offset).
        end: u64,
        /// The limit.
        limit: u64,
    },
    /// A key or tensor name that is empty, not UTF-8, or contains a NUL byte (C code would cut
    /// it there, so two different names could become one).
    #[error("{what} {reason}")]
    BadText {
        /// Which key or name.
        what: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The same metadata key twice.
    #[error("metadata key `{}` appears more than once", shown(.key))]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// A value (or array element) type outside 0..=12.
    #[error("metadata key `{}` has unknown value type {type_id}", shown(.key))]
    BadValueType {
        /// The key.
        key: String,
        /// The type id found.
        type_id: u32,
    },
    /// Arrays nested deeper than the limit.
    #[error("metadata key `{}` nests arrays more than {MAX_ARRAY_DEPTH} deep", shown(.key))]
    ArrayTooDeep {
        /// The key.
        key: String,
    },
    /// A bool that is neither 0 nor 1.
    #[error("metadata key `{}` holds a bool of value {value} (must be 0 or 1)", shown(.key))]
    BadBool {
        /// The key.
        key: String,
        /// The byte found.
        value: u8,
    },
    /// A key this module reads has the wrong value type.
    #[error("metadata key `{}` is of type {found}, expected {expected}", shown(.key))]
    WrongKeyType {
        /// The key.
        key: String,
        /// The type(s) accepted.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// `general.alignment` is zero or not a power of two.
    #[error("general.alignment is {alignment}, which is not a power of two")]
    BadAlignment {
        /// The alignment found.
        alignment: u64,
    },
    /// The same tensor name twice.
    #[error("tensor name `{}` appears more than once", shown(.name))]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// More than 4 dimensions.
    #[error("tensor `{}` has {n_dims} dimensions (at most {MAX_DIMS} are allowed)", shown(.name))]
    TooManyDims {
        /// The tensor.
        name: String,
        /// Its `n_dims`.
        n_dims: u32,
    },
    /// A dimension, the element count or the byte size does not fit in 63 bits.
    #[error("tensor `{}` has shape {shape:?}, whose element count or byte size overflows", shown(.name))]
    ShapeOverflow {
        /// The tensor.
        name: String,
        /// Its dimensions.
        shape: Vec<u64>,
    },
    /// A ggml type id this llama.cpp cannot load.
    #[error("tensor `{}` has {}", shown(.name), type_id_text(*.type_id))]
    UnknownTensorType {
        /// The tensor.
        name: String,
        /// The type id found.
        type_id: u32,
    },
    /// The first dimension is not a whole number of quantization blocks.
    #[error(
        "tensor `{}` has rows of {row} elements, not a multiple of the {block}-element blocks of type {}",
        shown(.name), type_name(*.type_id).unwrap_or("?")
    )]
    PartialBlock {
        /// The tensor.
        name: String,
        /// Its ggml type.
        type_id: u32,
        /// Its first dimension.
        row: u64,
        /// The type's block size.
        block: u64,
    },
    /// A tensor offset that is not a multiple of the alignment.
    #[error(
        "tensor `{}` starts at data offset {offset}, not a multiple of the alignment {alignment}",
        shown(.name)
    )]
    MisalignedTensor {
        /// The tensor.
        name: String,
        /// Its offset, relative to the data section.
        offset: u64,
        /// The alignment.
        alignment: u64,
    },
    /// A tensor whose data does not lie inside the file.
    #[error(
        "truncated or corrupt: the data of tensor `{}` ({} of {count}) needs bytes {start}..{end}, but the file has only {file_size} bytes",
        shown(.name), .index + 1
    )]
    TensorPastEnd {
        /// The tensor.
        name: String,
        /// Its index among the tensor infos (0-based).
        index: u64,
        /// Number of tensors.
        count: u64,
        /// Absolute start of its data (saturated).
        start: u64,
        /// Absolute end of its data (saturated).
        end: u64,
        /// Size of the file.
        file_size: u64,
    },
    /// Tensors that overlap, leave gaps or are out of order.
    #[error(
        "tensor `{}` starts at data offset {offset}, but llama.cpp needs the tensors packed in order, so it must start at {expected}",
        shown(.name)
    )]
    TensorOutOfOrder {
        /// The tensor.
        name: String,
        /// Its offset, relative to the data section.
        offset: u64,
        /// The offset llama.cpp expects.
        expected: u64,
    },
    /// A required metadata key is absent.
    #[error("the metadata has no `{}`", shown(.key))]
    MissingKey {
        /// The key.
        key: String,
    },
    /// `general.architecture` is not in [`ARCHITECTURES`](super::ARCHITECTURES).
    #[error("architecture `{}` is not one llama.cpp knows", shown(.architecture))]
    UnknownArchitecture {
        /// The architecture found.
        architecture: String,
    },
    /// `general.architecture` is `clip`: a vision projector, not a language model.
    #[error("architecture `clip` is a vision projector (mmproj file), not a language model")]
    Projector,
    /// `<arch>.block_count` out of range.
    #[error("`{}` is {value}; it must be between 1 and {MAX_BLOCK_COUNT}", shown(.key))]
    BadBlockCount {
        /// The key.
        key: String,
        /// Its value.
        value: u64,
    },
    /// A hyperparameter value on which the pinned llama.cpp aborts (`GGML_ASSERT`) instead of
    /// returning an error.
    #[error("`{}` is {value}, but llama.cpp requires {rule}", shown(.key))]
    BadHyperparameter {
        /// The key.
        key: String,
        /// Its value (`absent` when missing).
        value: String,
        /// What llama.cpp requires.
        rule: String,
    },
    /// A block with no tensors at all.
    #[error(
        "block {block} has no tensors (no `blk.{block}.*`), although the metadata says there are {block_count} blocks"
    )]
    EmptyBlock {
        /// The block index.
        block: usize,
        /// `<arch>.block_count`.
        block_count: usize,
    },
    /// A tensor the architecture needs is absent.
    #[error("required tensor `{}` of a {} model is missing", shown(.name), shown(.architecture))]
    MissingTensor {
        /// The architecture.
        architecture: String,
        /// The tensor.
        name: String,
    },
}

/// The [`Problem`] for a failed `File::open`.
pub(super) fn open_problem(e: &io::Error) -> Problem {
    match e.kind() {
        ErrorKind::NotFound => Problem::NotFound,
        ErrorKind::PermissionDenied => Problem::PermissionDenied,
        ErrorKind::IsADirectory => Problem::IsDirectory,
        _ => io_problem("open", e),
    }
}

/// The [`Problem`] for an I/O failure while `action`ing the file.
pub(super) fn io_problem(action: &'static str, e: &io::Error) -> Problem {
    Problem::Io {
        action,
        message: one_line(&e.to_string()),
    }
}

/// Text from the file, for a message: one line, at most 100 characters.
pub(super) fn shown(s: &str) -> String {
    let mut out = one_line(&s.chars().take(100).collect::<String>());
    if s.chars().nth(100).is_some() {
        out.push('…');
    }
    out
}

/// Escapes control characters and line separators only (paths are shown in full).
pub(super) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || (c.is_whitespace() && c != ' ') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn legacy_hint(found: &[u8]) -> &'static str {
    // The pre-GGUF formats wrote their magic as a little-endian u32 ("ggml", "ggmf", "ggjt").
    match found {
        b"lmgg" | b"fmgg" | b"tjgg" => " (a pre-GGUF GGML file; convert it to GGUF)",
        _ => "",
    }
}

fn version_hint(version: u32) -> &'static str {
    match version {
        1 => " (GGUF v1 is obsolete; only versions 2 and 3 are supported)",
        _ => " (only versions 2 and 3 are supported)",
    }
}

fn type_id_text(id: u32) -> String {
    match type_name(id) {
        Some(name) => format!("ggml type {id} ({name}), which llama.cpp no longer supports"),
        None => format!("unknown ggml type {id}"),
    }
}
