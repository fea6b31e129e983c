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
//! Tensor data is never read. Memory use is bounded by the header bytes actually present in the
//! file (keys, tensor names, one 64 KiB read window), never by a count the file claims.
//!
//! The module is self-contained (std and `thiserror` only) so that the fuzz crate in `fuzz/`
//! can include it by path without building llama.cpp.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The `general.architecture` names llama.cpp accepts.
///
/// Mirrors `LLM_ARCH_NAMES` in `src/llama-arch.cpp` of the llama.cpp pinned by
/// `llama-cpp-sys-2 = "=0.1.161"`, without its `(unknown)` placeholder; update it together with
/// that pin. `clip` is in the table but is refused separately: it names a vision projector, which
/// llama.cpp will not load as a main model.
pub const ARCHITECTURES: &[&str] = &[
    "clip",
    "llama",
    "llama4",
    "deci",
    "falcon",
    "grok",
    "gpt2",
    "gptj",
    "gptneox",
    "mpt",
    "baichuan",
    "starcoder",
    "refact",
    "bert",
    "modern-bert",
    "nomic-bert",
    "nomic-bert-moe",
    "neo-bert",
    "jina-bert-v2",
    "jina-bert-v3",
    "eurobert",
    "bloom",
    "stablelm",
    "qwen",
    "qwen2",
    "qwen2moe",
    "qwen2vl",
    "qwen3",
    "qwen3moe",
    "qwen3next",
    "qwen3vl",
    "qwen3vlmoe",
    "qwen35",
    "qwen35moe",
    "clef",
    "qwen4exp",
    "phi2",
    "phi3",
    "phimoe",
    "plamo",
    "plamo2",
    "plamo3",
    "codeshell",
    "orion",
    "internlm2",
    "minicpm",
    "minicpm3",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3n",
    "gemma4",
    "gemma4-assistant",
    "gemma-embedding",
    "starcoder2",
    "mamba",
    "mamba2",
    "maple",
    "jamba",
    "falcon-h1",
    "xverse",
    "command-r",
    "cohere2",
    "cohere2moe",
    "dbrx",
    "olmo",
    "olmo2",
    "olmoe",
    "muse-glimmer",
    "openelm",
    "arctic",
    "deepseek",
    "deepseek2",
    "deepseek2-ocr",
    "deepseek32",
    "deepseek4",
    "chatglm",
    "glm4",
    "glm4moe",
    "glm-dsa",
    "bitnet",
    "t5",
    "t5encoder",
    "jais",
    "jais2",
    "nemotron",
    "nemotron_h",
    "nemotron_h_moe",
    "exaone",
    "exaone4",
    "exaone-moe",
    "rwkv6",
    "rwkv6qwen2",
    "rwkv7",
    "arwkv7",
    "granite",
    "granitemoe",
    "granitehybrid",
    "graniteswitch",
    "granite_swa",
    "chameleon",
    "wavtokenizer-dec",
    "plm",
    "bailingmoe",
    "bailingmoe2",
    "bailingmoe3",
    "dots1",
    "dots3note",
    "arcee",
    "afmoe",
    "laguna",
    "ernie4_5",
    "ernie4_5-moe",
    "hunyuan-moe",
    "hunyuan-dense",
    "hunyuan_vl",
    "hy_v3",
    "hy_v4",
    "smollm3",
    "gpt-oss",
    "lfm2",
    "lfm2moe",
    "dream",
    "smallthinker",
    "llada",
    "llada-moe",
    "seed_oss",
    "grovemoe",
    "apertus",
    "minimax-01",
    "hrm_text",
    "minimax-m2",
    "minimax-m3",
    "cogvlm",
    "rnd1",
    "pangu-embedded",
    "mistral3",
    "eagle3",
    "dflash",
    "mistral4",
    "paddleocr",
    "mimo2",
    "step35",
    "spark2_5",
    "llama-embed",
    "maincoder",
    "kimi-linear",
    "kimi-k3",
    "glm5-next",
    "talkie",
    "mellum",
    "nanbeige",
    "qwen3tts",
    "pockettts",
];

/// The largest `<arch>.block_count` accepted: `LLAMA_MAX_LAYERS` of the pinned llama.cpp, which
/// aborts (`GGML_ASSERT`) on more.
pub const MAX_BLOCK_COUNT: u64 = 512;
/// `LLAMA_MAX_EXPERTS` of the pinned llama.cpp, which aborts on more.
const MAX_EXPERTS: u64 = 1024;
/// The rope scaling types llama.cpp knows; it aborts on any other `<arch>.rope.scaling.type`.
const ROPE_SCALING_TYPES: &[&str] = &["none", "linear", "yarn", "longrope"];

/// Data alignment when `general.alignment` is absent (`GGUF_DEFAULT_ALIGNMENT`).
const DEFAULT_ALIGNMENT: u64 = 32;
/// llama.cpp's `GGUF_MAX_STRING_LENGTH` and `GGUF_MAX_ARRAY_ELEMENTS`: it refuses more.
const MAX_STRING_LEN: u64 = 1 << 30;
const MAX_ARRAY_LEN: u64 = 1 << 30;
/// The GGUF specification limits keys to 65535 bytes; it also bounds what a key costs to read.
const MAX_KEY_LEN: u64 = 65535;
/// `GGML_MAX_NAME` is 64 including the NUL terminator; llama.cpp refuses longer names.
const MAX_TENSOR_NAME_LEN: u64 = 63;
/// `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// How deep arrays of arrays may nest. The pinned llama.cpp refuses any nesting, but the format
/// allows it; a small limit keeps the recursion bounded.
const MAX_ARRAY_DEPTH: u32 = 3;
/// A header item that needs more bytes than this cannot come from a truncated real file: the
/// count or length itself is corrupt.
const ABSURD: u128 = 1 << 40;
/// How much of `general.architecture` / `general.name` is read: longer values are not
/// architectures, and names are only shown.
const MAX_SHOWN_VALUE: u64 = 256;
/// Read window of [`validate_file`]: the header is read in pieces of this size.
const FILE_WINDOW: usize = 64 * 1024;

/// Smallest possible metadata entry: key length (8), a 1-byte key, value type (4), 1-byte value.
const MIN_KV_BYTES: u64 = 14;
/// Smallest possible tensor info: name length (8), `n_dims` (4), type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 24;
/// Smallest possible array element that is itself an array: element type (4) and count (8).
const MIN_NESTED_ARRAY_BYTES: u64 = 12;

/// Per-block tensors (`blk.<i>.<part>.weight`) of the `llama` architecture, checked on
/// SmolLM2-135M and against the pinned `src/models/llama.cpp`. As there, `attn_q`, `attn_k` and
/// `attn_v` may be replaced by one fused `attn_qkv` (in every architecture below).
const LLAMA_BLOCK: &[&str] = &[
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
];
/// The feed-forward of a dense `llama` block (`<arch>.expert_count` absent or 0).
const LLAMA_DENSE_FFN: &[&str] = &["ffn_gate", "ffn_down", "ffn_up"];
/// The feed-forward of a mixture-of-experts `llama` block (Mixtral); `ffn_gate_exps` is
/// optional in llama.cpp.
const LLAMA_MOE_FFN: &[&str] = &["ffn_gate_inp", "ffn_down_exps", "ffn_up_exps"];
/// Per-block tensors of the `gemma3` architecture, checked on Gemma 3 270M and against the
/// pinned `src/models/gemma3.cpp`.
const GEMMA3_BLOCK: &[&str] = &[
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "attn_q_norm",
    "attn_k_norm",
    "post_attention_norm",
    "ffn_norm",
    "ffn_gate",
    "ffn_down",
    "ffn_up",
    "post_ffw_norm",
];

/// The layout of ggml tensor type `id`: `(elements per block, bytes per block)`.
///
/// Mirrors `ggml_blck_size` / `ggml_type_size` of the pinned ggml for every type a GGUF file
/// may hold. `None` for ids ggml does not define or no longer supports in GGUF files (4, 5 and
/// 31..=33, 36..=38 were removed; such tensors have block size 0 and llama.cpp refuses them).
pub fn type_layout(id: u32) -> Option<(u64, u64)> {
    Some(match id {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        16 => (256, 66),  // IQ2_XXS
        17 => (256, 74),  // IQ2_XS
        18 => (256, 98),  // IQ3_XXS
        19 => (256, 50),  // IQ1_S
        20 => (32, 18),   // IQ4_NL
        21 => (256, 110), // IQ3_S
        22 => (256, 82),  // IQ2_S
        23 => (256, 136), // IQ4_XS
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        29 => (256, 56),  // IQ1_M
        30 => (1, 2),     // BF16
        34 => (256, 54),  // TQ1_0
        35 => (256, 66),  // TQ2_0
        39 => (32, 17),   // MXFP4
        40 => (64, 36),   // NVFP4
        41 => (128, 18),  // Q1_0
        42 => (64, 18),   // Q2_0
        _ => return None,
    })
}

/// The ggml name of tensor type `id`, including removed ones (for messages).
fn type_name(id: u32) -> Option<&'static str> {
    Some(match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_2",
        5 => "Q4_3",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        31 => "Q4_0_4_4",
        32 => "Q4_0_4_8",
        33 => "Q4_0_8_8",
        34 => "TQ1_0",
        35 => "TQ2_0",
        36 => "IQ4_NL_4_4",
        37 => "IQ4_NL_4_8",
        38 => "IQ4_NL_8_8",
        39 => "MXFP4",
        40 => "NVFP4",
        41 => "Q1_0",
        42 => "Q2_0",
        _ => return None,
    })
}

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
}

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
    /// A count or length above a fixed limit (of llama.cpp or of the GGUF specification).
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
    /// `general.architecture` is not in [`ARCHITECTURES`].
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
    let mut src = FileSource {
        file,
        len: meta.len(),
        start: 0,
        buf: Vec::new(),
        window: FILE_WINDOW,
    };
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

/// The [`Problem`] for a failed `File::open`.
fn open_problem(e: &io::Error) -> Problem {
    match e.kind() {
        ErrorKind::NotFound => Problem::NotFound,
        ErrorKind::PermissionDenied => Problem::PermissionDenied,
        ErrorKind::IsADirectory => Problem::IsDirectory,
        _ => io_problem("open", e),
    }
}

fn io_problem(action: &'static str, e: &io::Error) -> Problem {
    Problem::Io {
        action,
        message: one_line(&e.to_string()),
    }
}

/// Text from the file, for a message: one line, at most 100 characters.
fn shown(s: &str) -> String {
    let mut out = one_line(&s.chars().take(100).collect::<String>());
    if s.chars().nth(100).is_some() {
        out.push('…');
    }
    out
}

/// Escapes control characters and line separators only (paths are shown in full).
fn one_line(s: &str) -> String {
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

/// Random access to the bytes being validated.
trait Source {
    /// Exactly `n` bytes at `offset`. Callers guarantee `offset + n` is within the length given
    /// to [`parse`], and keep `n` small (at most [`MAX_KEY_LEN`] or a bool chunk).
    fn read(&mut self, offset: u64, n: usize) -> Result<&[u8], Problem>;
}

struct SliceSource<'d>(&'d [u8]);

impl Source for SliceSource<'_> {
    fn read(&mut self, offset: u64, n: usize) -> Result<&[u8], Problem> {
        usize::try_from(offset)
            .ok()
            .and_then(|start| self.0.get(start..start.checked_add(n)?))
            .ok_or(Problem::Io {
                action: "read",
                message: "read outside the buffer (a bug in the validator)".into(),
            })
    }
}

/// A file read through one window of `window` bytes, moved as the parser advances.
struct FileSource {
    file: File,
    /// Length of the file when it was opened.
    len: u64,
    /// File offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
    window: usize,
}

impl Source for FileSource {
    fn read(&mut self, offset: u64, n: usize) -> Result<&[u8], Problem> {
        let hit = offset
            .checked_sub(self.start)
            .and_then(|from| usize::try_from(from).ok())
            .filter(|&from| from.checked_add(n).is_some_and(|end| end <= self.buf.len()));
        if let Some(from) = hit {
            return Ok(&self.buf[from..from + n]);
        }
        // Refill with a whole window (or `n` if larger), but not past the end of the file. If
        // the file shrank since it was opened, `read_exact` fails and that is reported as I/O.
        let left = self.len.saturating_sub(offset);
        let want = usize::try_from(left).map_or(self.window, |left| self.window.min(left));
        self.buf.clear();
        self.buf.resize(want.max(n), 0);
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut self.buf))
            .map_err(|e| io_problem("read", &e))?;
        self.start = offset;
        Ok(&self.buf[..n])
    }
}

/// Where the parser is, for messages. Built only from data already read.
enum Where {
    Magic,
    Header,
    /// Everything the header announces.
    Sections {
        n_kv: u64,
        n_tensors: u64,
    },
    Entry {
        index: u64,
        count: u64,
    },
    Value {
        index: u64,
        count: u64,
        key: String,
    },
    Tensor {
        index: u64,
        count: u64,
        name: Option<String>,
    },
    Padding,
}

impl Where {
    fn describe(&self) -> String {
        match self {
            Where::Magic => "the magic number".into(),
            Where::Header => "the header".into(),
            Where::Sections { n_kv, n_tensors } => format!(
                "the {n_kv} metadata entries and {n_tensors} tensor infos the header announces"
            ),
            Where::Entry { index, count } => format!("metadata entry {} of {count}", index + 1),
            Where::Value { index, count, key } => format!(
                "the value of metadata key `{}` (entry {} of {count})",
                shown(key),
                index + 1
            ),
            Where::Tensor { index, count, name } => match name {
                Some(name) => format!("tensor info {} of {count} (`{}`)", index + 1, shown(name)),
                None => format!("tensor info {} of {count}", index + 1),
            },
            Where::Padding => "the padding before the tensor data".into(),
        }
    }
}

/// A metadata value, kept only as far as the checks need it.
#[derive(Clone, Copy)]
enum Value {
    U32(u32),
    U64(u64),
    /// A string's position and length in the file (read later only if needed).
    Str {
        offset: u64,
        len: u64,
    },
    /// Any other type, by its GGUF type id.
    Other(u32),
}

impl Value {
    fn type_name(self) -> &'static str {
        match self {
            Value::U32(_) => "u32",
            Value::U64(_) => "u64",
            Value::Str { .. } => "string",
            Value::Other(ty) => value_type_name(ty),
        }
    }
}

fn value_type_name(ty: u32) -> &'static str {
    match ty {
        0 => "u8",
        1 => "i8",
        2 => "u16",
        3 => "i16",
        4 => "u32",
        5 => "i32",
        6 => "f32",
        7 => "bool",
        8 => "string",
        9 => "array",
        10 => "u64",
        11 => "i64",
        12 => "f64",
        _ => "unknown",
    }
}

/// Size of a fixed-size GGUF value type.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

const TYPE_U32: u32 = 4;
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;
const TYPE_U64: u32 = 10;

struct TensorInfo {
    name: String,
    offset: u64,
    size: u64,
}

struct Parser<'s, S: Source> {
    src: &'s mut S,
    /// Next byte to read. Invariant: `pos <= len`.
    pos: u64,
    len: u64,
    at: Where,
}

impl<S: Source> Parser<'_, S> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn truncated(&self, need: u64) -> Problem {
        Problem::Truncated {
            what: self.at.describe(),
            offset: self.pos,
            need,
            file_size: self.len,
        }
    }

    /// The next `n` bytes (`n` small: see [`Source::read`]).
    fn bytes(&mut self, n: u64) -> Result<&[u8], Problem> {
        if n > self.remaining() {
            return Err(self.truncated(n));
        }
        let start = self.pos;
        self.pos += n;
        // `n <= remaining`, so it fits in memory-sized integers whenever a read is possible.
        let n = usize::try_from(n).map_err(|_| self.truncated(n))?;
        self.src.read(start, n)
    }

    fn skip(&mut self, n: u64) -> Result<(), Problem> {
        if n > self.remaining() {
            return Err(self.truncated(n));
        }
        self.pos += n;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Problem> {
        let bytes = self.bytes(N as u64)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Problem> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Problem> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Problem> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Checks that `count` items of at least `each` bytes can follow, before iterating over them.
    fn room(&self, count: u64, each: u64, unit: &'static str) -> Result<(), Problem> {
        self.not_absurd(count, each, unit)?;
        // Fits in u64: `not_absurd` passed, so it is at most the remaining bytes or `ABSURD`.
        let need = count * each;
        if need > self.remaining() {
            return Err(self.truncated(need));
        }
        Ok(())
    }

    /// Refuses `count` items of at least `each` bytes when they cannot fit in what follows and
    /// are too many for any real file: the count is corrupt rather than the file truncated.
    fn not_absurd(&self, count: u64, each: u64, unit: &'static str) -> Result<(), Problem> {
        let need = u128::from(count) * u128::from(each);
        if need > u128::from(self.remaining()) && need > ABSURD {
            return Err(Problem::ImpossibleCount {
                what: self.at.describe(),
                count,
                unit,
                each,
                remaining: self.remaining(),
            });
        }
        Ok(())
    }

    /// Reads a string length and checks the string can follow.
    fn string_len(&mut self) -> Result<u64, Problem> {
        let len = self.u64()?;
        if len > self.remaining() {
            return Err(if u128::from(len) > ABSURD {
                Problem::ImpossibleLength {
                    what: self.at.describe(),
                    len,
                    remaining: self.remaining(),
                }
            } else {
                self.truncated(len)
            });
        }
        if len > MAX_STRING_LEN {
            return Err(Problem::OverLimit {
                what: self.at.describe(),
                count: len,
                unit: "bytes in a string",
                limit: MAX_STRING_LEN,
            });
        }
        Ok(len)
    }

    /// Reads a key or tensor name of at most `limit` bytes: non-empty (keys only), UTF-8, no NUL.
    fn name(
        &mut self,
        what: impl Fn() -> String,
        limit: u64,
        allow_empty: bool,
    ) -> Result<String, Problem> {
        let len = self.string_len()?;
        if len > limit {
            return Err(Problem::OverLimit {
                what: what(),
                count: len,
                unit: "bytes",
                limit,
            });
        }
        if len == 0 && !allow_empty {
            return Err(Problem::BadText {
                what: what(),
                reason: "is empty",
            });
        }
        let bytes = self.bytes(len)?;
        if bytes.contains(&0) {
            return Err(Problem::BadText {
                what: what(),
                reason: "contains a NUL byte",
            });
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(Problem::BadText {
                what: what(),
                reason: "is not valid UTF-8",
            }),
        }
    }

    /// Reads (or skips) one value of GGUF type `ty`.
    fn value(&mut self, ty: u32, key: &str) -> Result<Value, Problem> {
        Ok(match ty {
            TYPE_U32 => Value::U32(self.u32()?),
            TYPE_U64 => Value::U64(self.u64()?),
            TYPE_BOOL => {
                let value = self.u8()?;
                if value > 1 {
                    return Err(Problem::BadBool {
                        key: key.into(),
                        value,
                    });
                }
                Value::Other(ty)
            }
            TYPE_STRING => {
                let len = self.string_len()?;
                let offset = self.pos;
                self.skip(len)?;
                Value::Str { offset, len }
            }
            TYPE_ARRAY => {
                self.array_value(key, 1)?;
                Value::Other(ty)
            }
            _ => match fixed_size(ty) {
                Some(size) => {
                    self.skip(size)?;
                    Value::Other(ty)
                }
                None => {
                    return Err(Problem::BadValueType {
                        key: key.into(),
                        type_id: ty,
                    });
                }
            },
        })
    }

    /// Skips an array (element type, count, elements) at nesting level `depth` (1 = top).
    fn array_value(&mut self, key: &str, depth: u32) -> Result<(), Problem> {
        if depth > MAX_ARRAY_DEPTH {
            return Err(Problem::ArrayTooDeep { key: key.into() });
        }
        let elem = self.u32()?;
        let count = self.u64()?;
        let each = match (elem, fixed_size(elem)) {
            (TYPE_STRING, _) => 8,
            (TYPE_ARRAY, _) => MIN_NESTED_ARRAY_BYTES,
            (_, Some(size)) => size,
            (_, None) => {
                return Err(Problem::BadValueType {
                    key: key.into(),
                    type_id: elem,
                });
            }
        };
        self.room(count, each, "elements")?;
        if count > MAX_ARRAY_LEN {
            return Err(Problem::OverLimit {
                what: self.at.describe(),
                count,
                unit: "array elements",
                limit: MAX_ARRAY_LEN,
            });
        }
        match elem {
            TYPE_STRING => {
                for _ in 0..count {
                    let len = self.string_len()?;
                    self.skip(len)?;
                }
            }
            TYPE_ARRAY => {
                for _ in 0..count {
                    self.array_value(key, depth + 1)?;
                }
            }
            TYPE_BOOL => {
                // Read in window-sized chunks so a long bool array never needs a big buffer.
                let mut left = count;
                while left > 0 {
                    let chunk = left.min(FILE_WINDOW as u64);
                    if let Some(&value) = self.bytes(chunk)?.iter().find(|&&b| b > 1) {
                        return Err(Problem::BadBool {
                            key: key.into(),
                            value,
                        });
                    }
                    left -= chunk;
                }
            }
            // `room` checked `count * each` bytes remain, so this cannot overflow.
            _ => self.skip(count * each)?,
        }
        Ok(())
    }

    /// Reads up to [`MAX_SHOWN_VALUE`] bytes of a string value recorded earlier, lossily decoded.
    fn text(&mut self, offset: u64, len: u64) -> Result<String, Problem> {
        let n = len.min(MAX_SHOWN_VALUE) as usize;
        let bytes = self.src.read(offset, n)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Reads one tensor info (the parser's `at` names it).
    fn tensor_info(
        &mut self,
        index: u64,
        count: u64,
        names: &HashSet<String>,
    ) -> Result<TensorInfo, Problem> {
        let name = self.name(
            || format!("the name of tensor info {} of {count}", index + 1),
            MAX_TENSOR_NAME_LEN,
            true,
        )?;
        if names.contains(&name) {
            return Err(Problem::DuplicateTensor { name });
        }
        self.at = Where::Tensor {
            index,
            count,
            name: Some(name.clone()),
        };
        let n_dims = self.u32()?;
        if n_dims > MAX_DIMS {
            return Err(Problem::TooManyDims { name, n_dims });
        }
        let mut shape = [1u64; MAX_DIMS as usize];
        for dim in shape.iter_mut().take(n_dims as usize) {
            *dim = self.u64()?;
        }
        let overflow = |name: &str| Problem::ShapeOverflow {
            name: name.into(),
            shape: shape[..n_dims as usize].to_vec(),
        };
        // ggml keeps dimensions and element counts in int64_t.
        let elements = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64 && shape.iter().all(|&d| d <= i64::MAX as u64))
            .ok_or_else(|| overflow(&name))?;
        let type_id = self.u32()?;
        let (block, type_size) =
            type_layout(type_id).ok_or_else(|| Problem::UnknownTensorType {
                name: name.clone(),
                type_id,
            })?;
        // ggml requires whole blocks per row (`ne[0] % blck_size == 0`), not just in total.
        if shape[0] % block != 0 {
            return Err(Problem::PartialBlock {
                name,
                type_id,
                row: shape[0],
                block,
            });
        }
        let size = (elements / block)
            .checked_mul(type_size)
            .filter(|&s| s <= i64::MAX as u64)
            .ok_or_else(|| overflow(&name))?;
        let offset = self.u64()?;
        Ok(TensorInfo { name, offset, size })
    }
}

/// Rounds `n` up to a multiple of `align` (a power of two); `None` on overflow.
fn align_up(n: u64, align: u64) -> Option<u64> {
    n.checked_add(align - 1).map(|m| m & !(align - 1))
}

/// The block index of a `blk.<i>.<rest>` tensor name.
fn block_index(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("blk.")?;
    let (digits, _) = rest.split_once('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Checks the hyperparameters on which the pinned llama.cpp aborts rather than failing
/// (`GGML_ASSERT`s in `llama_model_base::load_hparams`); returns the expert count.
///
/// llama.cpp reads these keys only when they are exactly `u32` (or a string for the rope type)
/// and throws a catchable error for other types, so only those are checked. A per-layer
/// `expert_used_count` array is not checked.
fn check_hyperparameters<S: Source>(
    p: &mut Parser<'_, S>,
    kv: &HashMap<String, Value>,
    arch: &str,
    block_count: u64,
) -> Result<u64, Problem> {
    let u32_key = |suffix: &str| {
        let key = format!("{arch}.{suffix}");
        let value = match kv.get(&key) {
            Some(&Value::U32(v)) => Some(u64::from(v)),
            _ => None,
        };
        (key, value)
    };
    let bad = |(key, value): &(String, Option<u64>), rule: String| Problem::BadHyperparameter {
        key: key.clone(),
        value: value.map_or_else(|| "absent".into(), |v| v.to_string()),
        rule,
    };
    let experts = u32_key("expert_count");
    let used = u32_key("expert_used_count");
    let groups = u32_key("expert_group_count");
    let groups_used = u32_key("expert_group_used_count");
    let n_expert = experts.1.unwrap_or(0);
    let n_used = used.1.unwrap_or(0);
    let n_groups = groups.1.unwrap_or(0);
    let n_groups_used = groups_used.1.unwrap_or(0);
    if n_expert > MAX_EXPERTS {
        return Err(bad(&experts, format!("at most {MAX_EXPERTS}")));
    }
    if n_expert > 0 {
        if n_used == 0 || n_used > n_expert {
            return Err(bad(&used, format!("1 to {n_expert} (the expert count)")));
        }
        if n_groups >= n_expert {
            return Err(bad(
                &groups,
                format!("less than {n_expert} (the expert count)"),
            ));
        }
        if n_groups > 1 {
            if n_expert % n_groups != 0 {
                return Err(bad(
                    &groups,
                    format!("a divisor of {n_expert} (the expert count)"),
                ));
            }
            if n_groups_used == 0 || n_groups_used >= n_groups {
                return Err(bad(
                    &groups_used,
                    format!("1 to {} (below the group count)", n_groups - 1),
                ));
            }
        }
    } else {
        if n_used != 0 {
            return Err(bad(&used, "0 when the model has no experts".into()));
        }
        if n_groups != 0 {
            return Err(bad(&groups, "0 when the model has no experts".into()));
        }
    }
    let nextn = u32_key("nextn_predict_layers");
    if nextn.1.unwrap_or(0) > block_count {
        return Err(bad(
            &nextn,
            format!("at most {block_count} (the block count)"),
        ));
    }
    let rope_key = format!("{arch}.rope.scaling.type");
    if let Some(&Value::Str { offset, len }) = kv.get(&rope_key) {
        let rope = p.text(offset, len)?;
        if len > MAX_SHOWN_VALUE || !ROPE_SCALING_TYPES.contains(&rope.as_str()) {
            return Err(Problem::BadHyperparameter {
                key: rope_key,
                value: format!("`{}`", shown(&rope)),
                rule: format!("one of {}", ROPE_SCALING_TYPES.join(", ")),
            });
        }
    }
    Ok(n_expert)
}

/// Validates a GGUF file of `len` bytes read through `src`.
fn parse<S: Source>(src: &mut S, len: u64) -> Result<Summary, Problem> {
    if len == 0 {
        return Err(Problem::Empty);
    }
    let mut p = Parser {
        src,
        pos: 0,
        len,
        at: Where::Magic,
    };

    // Magic: a short file that does not even start like "GGUF" is "not GGUF", not "truncated".
    let head = p.bytes(len.min(4))?.to_vec();
    if head[..] != b"GGUF"[..head.len()] {
        return Err(Problem::NotGguf { found: head });
    }
    if head.len() < 4 {
        p.pos = 0;
        return Err(p.truncated(4));
    }

    p.at = Where::Header;
    let version = p.u32()?;
    // A big-endian v2/v3 file reads as 0x02000000/0x03000000: the low half is zero (the same
    // test llama.cpp uses).
    if version != 0 && version & 0xFFFF == 0 {
        return Err(Problem::BigEndian { raw: version });
    }
    if version != 2 && version != 3 {
        return Err(Problem::UnsupportedVersion { version });
    }
    let n_tensors = p.u64()?;
    let n_kv = p.u64()?;
    // Absurd counts first (each named), then whether both sections can fit at all.
    p.not_absurd(n_kv, MIN_KV_BYTES, "metadata entries")?;
    p.not_absurd(n_tensors, MIN_TENSOR_INFO_BYTES, "tensor infos")?;
    let need = n_kv * MIN_KV_BYTES + n_tensors * MIN_TENSOR_INFO_BYTES; // both <= ABSURD
    if need > p.remaining() {
        p.at = Where::Sections { n_kv, n_tensors };
        return Err(p.truncated(need));
    }

    // Metadata. Capacities are capped: growth is amortized, and claims are not trusted.
    let mut kv: HashMap<String, Value> = HashMap::with_capacity(n_kv.min(1024) as usize);
    for index in 0..n_kv {
        p.at = Where::Entry { index, count: n_kv };
        let key = p.name(
            || format!("the key of metadata entry {} of {n_kv}", index + 1),
            MAX_KEY_LEN,
            false,
        )?;
        if kv.contains_key(&key) {
            return Err(Problem::DuplicateKey { key });
        }
        p.at = Where::Value {
            index,
            count: n_kv,
            key: key.clone(),
        };
        let ty = p.u32()?;
        let value = p.value(ty, &key)?;
        kv.insert(key, value);
    }

    let alignment = match kv.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(&Value::U32(a)) if a.is_power_of_two() => u64::from(a),
        Some(&Value::U32(a)) => {
            return Err(Problem::BadAlignment {
                alignment: u64::from(a),
            });
        }
        // llama.cpp accepts only u32 here.
        Some(other) => {
            return Err(Problem::WrongKeyType {
                key: "general.alignment".into(),
                expected: "u32",
                found: other.type_name(),
            });
        }
    };

    // Tensor infos.
    let tensor_info_offset = p.pos;
    let mut names: HashSet<String> = HashSet::with_capacity(n_tensors.min(1024) as usize);
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors.min(1024) as usize);
    for index in 0..n_tensors {
        p.at = Where::Tensor {
            index,
            count: n_tensors,
            name: None,
        };
        let info = p.tensor_info(index, n_tensors, &names)?;
        names.insert(info.name.clone());
        tensors.push(info);
    }

    // The data section starts at the next multiple of the alignment.
    p.at = Where::Padding;
    let data_offset = match align_up(p.pos, alignment) {
        Some(start) if start <= len => start,
        _ if n_tensors == 0 => p.pos,
        _ => return Err(p.truncated(alignment - p.pos % alignment)),
    };

    // Tensor data: aligned, inside the file, and packed in order as the pinned gguf.cpp requires
    // (it refuses any tensor whose offset differs from the padded end of the previous one).
    let mut expected = 0u64;
    for (index, t) in (0u64..).zip(&tensors) {
        if t.offset % alignment != 0 {
            return Err(Problem::MisalignedTensor {
                name: t.name.clone(),
                offset: t.offset,
                alignment,
            });
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.size));
        if end.is_none_or(|end| end > len) {
            let start = data_offset.saturating_add(t.offset);
            return Err(Problem::TensorPastEnd {
                name: t.name.clone(),
                index,
                count: n_tensors,
                start,
                end: start.saturating_add(t.size),
                file_size: len,
            });
        }
        if t.offset != expected {
            return Err(Problem::TensorOutOfOrder {
                name: t.name.clone(),
                offset: t.offset,
                expected,
            });
        }
        // Cannot overflow: `offset + size <= len` and the padding is below the alignment.
        expected = align_up(t.offset + t.size, alignment).unwrap_or(u64::MAX);
    }

    // Content: architecture and block count.
    let architecture = match kv.get("general.architecture") {
        None => {
            return Err(Problem::MissingKey {
                key: "general.architecture".into(),
            });
        }
        Some(&Value::Str { offset, len }) => {
            let mut arch = p.text(offset, len)?;
            if len > MAX_SHOWN_VALUE {
                arch.push('…');
            }
            arch
        }
        Some(other) => {
            return Err(Problem::WrongKeyType {
                key: "general.architecture".into(),
                expected: "string",
                found: other.type_name(),
            });
        }
    };
    if architecture == "clip" {
        return Err(Problem::Projector);
    }
    if !ARCHITECTURES.contains(&architecture.as_str()) {
        return Err(Problem::UnknownArchitecture { architecture });
    }
    let count_key = format!("{architecture}.block_count");
    let block_count = match kv.get(&count_key) {
        None => return Err(Problem::MissingKey { key: count_key }),
        Some(&Value::U32(n)) => u64::from(n),
        Some(&Value::U64(n)) => n,
        Some(other) => {
            return Err(Problem::WrongKeyType {
                key: count_key,
                expected: "u32 or u64",
                found: other.type_name(),
            });
        }
    };
    if !(1..=MAX_BLOCK_COUNT).contains(&block_count) {
        return Err(Problem::BadBlockCount {
            key: count_key,
            value: block_count,
        });
    }
    let block_count = block_count as usize; // <= MAX_BLOCK_COUNT
    let name = match kv.get("general.name") {
        Some(&Value::Str { offset, len }) => Some(p.text(offset, len)?),
        _ => None,
    };
    let experts = check_hyperparameters(&mut p, &kv, &architecture, block_count as u64)?;

    // Content: tensors.
    let missing = |name: String| Problem::MissingTensor {
        architecture: architecture.clone(),
        name,
    };
    if !names.contains("token_embd.weight") {
        return Err(missing("token_embd.weight".into()));
    }
    let mut seen = vec![false; block_count];
    for i in names.iter().filter_map(|n| block_index(n)) {
        if let Some(slot) = seen.get_mut(i) {
            *slot = true;
        }
    }
    if let Some(block) = seen.iter().position(|&s| !s) {
        return Err(Problem::EmptyBlock { block, block_count });
    }
    let (per_block, ffn): (&[&str], &[&str]) = match architecture.as_str() {
        "llama" if experts > 0 => (LLAMA_BLOCK, LLAMA_MOE_FFN),
        "llama" => (LLAMA_BLOCK, LLAMA_DENSE_FFN),
        "gemma3" => (GEMMA3_BLOCK, &[]),
        _ => (&[], &[]),
    };
    if !per_block.is_empty() {
        if !names.contains("output_norm.weight") {
            return Err(missing("output_norm.weight".into()));
        }
        for block in 0..block_count {
            let fused = names.contains(&format!("blk.{block}.attn_qkv.weight"));
            for part in per_block.iter().chain(ffn) {
                if fused && matches!(*part, "attn_q" | "attn_k" | "attn_v") {
                    continue;
                }
                let tensor = format!("blk.{block}.{part}.weight");
                if !names.contains(&tensor) {
                    return Err(missing(tensor));
                }
            }
        }
    }

    Ok(Summary {
        version,
        architecture,
        name,
        block_count,
        n_tensors,
        n_kv,
        alignment,
        tensor_info_offset,
        data_offset,
        file_size: len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // ---- helpers -------------------------------------------------------------------------

    /// A temporary path, removed (file or directory) when dropped.
    struct Temp(PathBuf);

    impl Temp {
        fn new(tag: &str) -> Temp {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("uniskip-validate-{}-{n}-{tag}", std::process::id());
            Temp(std::env::temp_dir().join(name))
        }

        fn with_bytes(tag: &str, bytes: &[u8]) -> Temp {
            let t = Temp::new(tag);
            fs::write(&t.0, bytes).expect("write temp file");
            t
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
            let _ = fs::remove_dir(&self.0);
        }
    }

    /// The cached catalog model `file`, located like `uniskip::models` does.
    fn real_model(file: &str) -> PathBuf {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = var("UNISKIP_MODELS")
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("uniskip/models")))
            .or_else(|| var("HOME").map(|d| d.join(".cache/uniskip/models")))
            .expect("no cache directory: set UNISKIP_MODELS or HOME");
        let path = dir.join(file);
        assert!(
            path.is_file(),
            "{} is missing (the tests need the catalog models: run `just model` first)",
            path.display()
        );
        path
    }

    fn smollm2() -> PathBuf {
        real_model("SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    fn gemma3() -> PathBuf {
        real_model("gemma-3-270m-q4_k_m.gguf")
    }

    /// Validates `bytes` both in memory and as a file (through a tiny read window, to exercise
    /// the window logic), checks both agree and the file message is one line naming the file.
    fn refuse(bytes: &[u8]) -> Problem {
        let problem = validate_bytes(bytes).expect_err("the bytes must be refused");
        let file = Temp::with_bytes("case.gguf", bytes);
        let err = validate_file(&file.0).expect_err("the file must be refused");
        assert_eq!(err.problem, problem, "file and bytes disagree");
        assert_one_line(&err, &file.0);
        let mut small = FileSource {
            file: File::open(&file.0).unwrap(),
            len: bytes.len() as u64,
            start: 0,
            buf: Vec::new(),
            window: 7,
        };
        assert_eq!(parse(&mut small, bytes.len() as u64), Err(problem.clone()));
        problem
    }

    fn assert_one_line(err: &InvalidModel, path: &Path) {
        let msg = err.to_string();
        let prefix = format!("{}: ", path.display());
        assert!(msg.starts_with(&prefix), "`{msg}` does not name the file");
        assert!(
            !msg.contains('\n') && !msg.contains('\r'),
            "`{msg}` is not one line"
        );
        assert!(msg.len() > prefix.len() + 5, "`{msg}` says nothing");
    }

    fn string(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    fn le32(v: u32) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }

    fn le64(v: u64) -> Vec<u8> {
        v.to_le_bytes().to_vec()
    }

    struct Tensor {
        name: Vec<u8>,
        dims: Vec<u64>,
        ty: u32,
        /// `None`: the next packed offset.
        offset: Option<u64>,
    }

    /// Builds small GGUF files; the defaults make a valid one.
    struct Builder {
        version: u32,
        kv: Vec<(Vec<u8>, u32, Vec<u8>)>,
        tensors: Vec<Tensor>,
        /// Layout alignment (add a `general.alignment` key to change the file's).
        alignment: u64,
        /// Overrides of the header counts.
        n_kv: Option<u64>,
        n_tensors: Option<u64>,
    }

    impl Builder {
        fn empty() -> Builder {
            Builder {
                version: 3,
                kv: Vec::new(),
                tensors: Vec::new(),
                alignment: 32,
                n_kv: None,
                n_tensors: None,
            }
        }

        /// An architecture without a per-block tensor list: one small tensor per block.
        fn generic(arch: &str, blocks: u32) -> Builder {
            let mut b = Builder::empty()
                .kv_str("general.architecture", arch)
                .kv(&format!("{arch}.block_count"), TYPE_U32, le32(blocks))
                .tensor("token_embd.weight", &[8, 4], 0);
            for i in 0..blocks {
                b = b.tensor(&format!("blk.{i}.attn_norm.weight"), &[8], 0);
            }
            b
        }

        /// A complete `llama` model with tiny F32 tensors.
        fn llama(blocks: u32) -> Builder {
            let mut b = Builder::empty()
                .kv_str("general.architecture", "llama")
                .kv_str("general.name", "tiny")
                .kv("llama.block_count", TYPE_U32, le32(blocks))
                .tensor("token_embd.weight", &[8, 4], 0)
                .tensor("output_norm.weight", &[8], 0);
            for i in 0..blocks {
                for part in LLAMA_BLOCK.iter().chain(LLAMA_DENSE_FFN) {
                    b = b.tensor(&format!("blk.{i}.{part}.weight"), &[8], 0);
                }
            }
            b
        }

        fn kv(mut self, key: &str, ty: u32, value: Vec<u8>) -> Builder {
            self.kv.push((key.as_bytes().to_vec(), ty, value));
            self
        }

        fn kv_str(self, key: &str, value: &str) -> Builder {
            self.kv(key, TYPE_STRING, string(value.as_bytes()))
        }

        fn without_kv(mut self, key: &str) -> Builder {
            self.kv.retain(|(k, _, _)| k != key.as_bytes());
            self
        }

        fn tensor(mut self, name: &str, dims: &[u64], ty: u32) -> Builder {
            self.tensors.push(Tensor {
                name: name.as_bytes().to_vec(),
                dims: dims.to_vec(),
                ty,
                offset: None,
            });
            self
        }

        fn without_tensor(mut self, name: &str) -> Builder {
            self.tensors.retain(|t| t.name != name.as_bytes());
            self
        }

        fn edit_tensor(mut self, name: &str, edit: impl FnOnce(&mut Tensor)) -> Builder {
            edit(
                self.tensors
                    .iter_mut()
                    .find(|t| t.name == name.as_bytes())
                    .expect("tensor exists"),
            );
            self
        }

        fn build(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(le32(self.version));
            out.extend(le64(self.n_tensors.unwrap_or(self.tensors.len() as u64)));
            out.extend(le64(self.n_kv.unwrap_or(self.kv.len() as u64)));
            for (key, ty, value) in &self.kv {
                out.extend(string(key));
                out.extend(le32(*ty));
                out.extend(value);
            }
            let mut next = 0u64;
            for t in &self.tensors {
                let elements = t.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
                let size = match (type_layout(t.ty), elements) {
                    (Some((block, size)), Some(n)) => (n / block).checked_mul(size).unwrap_or(0),
                    _ => 0, // the validator refuses these; their size does not matter
                };
                out.extend(string(&t.name));
                out.extend(le32(t.dims.len() as u32));
                for &d in &t.dims {
                    out.extend(le64(d));
                }
                out.extend(le32(t.ty));
                out.extend(le64(t.offset.unwrap_or(next)));
                next = (next + size).div_ceil(self.alignment) * self.alignment;
            }
            let start = (out.len() as u64).div_ceil(self.alignment) * self.alignment;
            out.resize((start + next) as usize, 0);
            out
        }
    }

    /// The position of `needle` in `hay` (for corrupting a built buffer at a known field).
    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len())
            .position(|w| w == needle)
            .expect("needle present")
    }

    /// A copy of the first `len` bytes of `path`.
    fn truncated_copy(path: &Path, len: u64) -> Temp {
        let t = Temp::new("truncated.gguf");
        let mut src = File::open(path).unwrap().take(len);
        let mut dst = File::create(&t.0).unwrap();
        io::copy(&mut src, &mut dst).unwrap();
        t
    }

    // ---- real files ------------------------------------------------------------------------

    #[test]
    fn smollm2_validates_as_llama_with_30_blocks() {
        let s = validate_file(&smollm2()).expect("SmolLM2 is valid");
        assert_eq!(s.architecture, "llama");
        assert_eq!(s.block_count, 30);
        assert_eq!((s.version, s.n_tensors, s.n_kv), (3, 272, 33));
        assert_eq!(s.alignment, 32);
        assert_eq!(s.data_offset % 32, 0);
        assert_eq!(s.name.as_deref(), Some("Smollm2 135M 8k Lc100K Mix1 Ep2"));
        assert!(s.tensor_info_offset < s.data_offset && s.data_offset < s.file_size);
    }

    #[test]
    fn gemma3_validates_as_gemma3_with_18_blocks() {
        let s = validate_file(&gemma3()).expect("Gemma 3 is valid");
        assert_eq!(s.architecture, "gemma3");
        assert_eq!(s.block_count, 18);
        assert_eq!((s.version, s.n_tensors), (3, 236));
    }

    #[test]
    fn validate_bytes_agrees_with_validate_file_on_smollm2() {
        let path = smollm2();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(validate_bytes(&bytes), Ok(validate_file(&path).unwrap()));
    }

    #[test]
    fn smollm2_truncated_anywhere_is_reported_as_truncated() {
        let path = smollm2();
        let s = validate_file(&path).unwrap();
        let infos = s.tensor_info_offset;
        let data = s.data_offset;
        let cases: &[(u64, &str)] = &[
            (2, "the magic number"),
            (10, "the header"),
            (23, "the header"),
            (
                500,
                "the 33 metadata entries and 272 tensor infos the header announces",
            ),
            (infos / 2, "metadata"),
            (infos - 1, "metadata"),
            (infos + (data - infos) / 2, "tensor info"),
            (data - 1, "tensor info"),
            (
                data + 1000,
                "the data of tensor `token_embd.weight` (1 of 272)",
            ),
            (
                s.file_size - 1,
                "the data of tensor `output_norm.weight` (272 of 272)",
            ),
        ];
        for &(len, what) in cases {
            let copy = truncated_copy(&path, len);
            let err = validate_file(&copy.0).expect_err("a truncated file is refused");
            assert_one_line(&err, &copy.0);
            let msg = err.to_string();
            match &err.problem {
                Problem::Truncated { file_size, .. } => assert_eq!(*file_size, len),
                Problem::TensorPastEnd { file_size, .. } => assert_eq!(*file_size, len),
                other => panic!("cut at {len}: expected truncation, got {other:?}"),
            }
            assert!(msg.contains(what), "cut at {len}: `{msg}` lacks `{what}`");
            assert!(msg.contains("truncated"), "cut at {len}: `{msg}`");
        }
    }

    #[test]
    fn truncation_message_names_the_tensor_info_and_offsets() {
        let path = smollm2();
        let s = validate_file(&path).unwrap();
        let copy = truncated_copy(&path, s.tensor_info_offset + 40);
        let msg = validate_file(&copy.0).unwrap_err().to_string();
        let expected = format!(
            "{}: truncated: the file ends inside tensor info 1 of 272 (`token_embd.weight`)",
            copy.0.display()
        );
        assert!(msg.starts_with(&expected), "{msg}");
        assert!(msg.contains(&format!("the file has {} bytes", s.tensor_info_offset + 40)));
    }

    // ---- files that are not model files ------------------------------------------------------

    #[test]
    fn empty_file_is_refused_as_empty() {
        assert_eq!(refuse(b""), Problem::Empty);
    }

    #[test]
    fn text_file_is_refused_as_not_gguf() {
        let p = refuse(b"hello, this is a text file\n");
        assert_eq!(
            p,
            Problem::NotGguf {
                found: b"hell".to_vec()
            }
        );
        assert_eq!(
            p.to_string(),
            "not a GGUF file: it starts with \"hell\" instead of \"GGUF\""
        );
        assert!(matches!(refuse(b"hi\n"), Problem::NotGguf { .. }));
        assert!(matches!(refuse(b"GG"), Problem::Truncated { .. }));
    }

    #[test]
    fn legacy_ggml_file_is_named_as_such() {
        let msg = refuse(b"tjgg\x03\x00\x00\x00").to_string();
        assert!(msg.contains("pre-GGUF"), "{msg}");
    }

    #[test]
    fn missing_file_is_refused_as_not_found() {
        let t = Temp::new("missing.gguf");
        let err = validate_file(&t.0).unwrap_err();
        assert_eq!(err.problem, Problem::NotFound);
        assert_one_line(&err, &t.0);
    }

    #[test]
    fn directory_is_refused_as_directory() {
        let t = Temp::new("dir.gguf");
        fs::create_dir(&t.0).unwrap();
        let err = validate_file(&t.0).unwrap_err();
        assert_eq!(err.problem, Problem::IsDirectory);
        assert_one_line(&err, &t.0);
    }

    #[cfg(unix)]
    #[test]
    fn unreadable_file_is_refused_as_permission_denied() {
        use std::os::unix::fs::PermissionsExt;
        // Mapping of the error itself, which holds whoever runs the test.
        let denied = io::Error::from(ErrorKind::PermissionDenied);
        assert_eq!(open_problem(&denied), Problem::PermissionDenied);
        let t = Temp::with_bytes("unreadable.gguf", &Builder::llama(1).build());
        fs::set_permissions(&t.0, fs::Permissions::from_mode(0o000)).unwrap();
        if File::open(&t.0).is_ok() {
            // root (CAP_DAC_OVERRIDE) reads anything: the permission check cannot fail here.
            eprintln!("note: running with privileges that ignore file modes; skipped the check");
            return;
        }
        let err = validate_file(&t.0).unwrap_err();
        assert_eq!(err.problem, Problem::PermissionDenied);
        assert_one_line(&err, &t.0);
    }

    #[cfg(unix)]
    #[test]
    fn special_file_is_refused_without_reading_it() {
        let err = validate_file(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(err.problem, Problem::NotRegularFile);
        // Opening a FIFO with no writer would block: it must be refused before that.
        let fifo = Temp::new("fifo.gguf");
        let made = std::process::Command::new("mkfifo").arg(&fifo.0).status();
        if made.is_ok_and(|s| s.success()) {
            let err = validate_file(&fifo.0).unwrap_err();
            assert_eq!(err.problem, Problem::NotRegularFile);
        } else {
            eprintln!("note: mkfifo unavailable; skipped the FIFO case");
        }
    }

    #[test]
    fn path_with_a_newline_is_shown_on_one_line() {
        let t = Temp::new("two\nlines.gguf");
        let msg = validate_file(&t.0).unwrap_err().to_string();
        assert!(!msg.contains('\n') && msg.contains("two\\nlines"), "{msg}");
    }

    // ---- header -------------------------------------------------------------------------------

    #[test]
    fn small_built_models_are_valid() {
        let s = validate_bytes(&Builder::llama(2).build()).expect("valid");
        assert_eq!((s.architecture.as_str(), s.block_count), ("llama", 2));
        assert_eq!(s.name.as_deref(), Some("tiny"));
        let mut v2 = Builder::generic("gpt2", 3);
        v2.version = 2;
        assert_eq!(validate_bytes(&v2.build()).unwrap().version, 2);
        let s = validate_bytes(
            &Builder::generic("qwen2", 1)
                .kv("qwen2.block_count", TYPE_U64, le64(1))
                .without_kv("qwen2.block_count")
                .kv("qwen2.block_count", TYPE_U64, le64(1))
                .build(),
        )
        .unwrap();
        assert_eq!(s.block_count, 1);
    }

    #[test]
    fn flipped_magic_is_not_gguf() {
        let mut b = Builder::llama(1).build();
        b[1] ^= 0x20;
        assert_eq!(
            refuse(&b),
            Problem::NotGguf {
                found: b"GgUF".to_vec()
            }
        );
    }

    #[test]
    fn flipped_version_is_refused_with_the_version() {
        for (version, expect) in [
            (1, "GGUF v1 is obsolete"),
            (0, "version 0 is not supported"),
            (4, "version 4 is not supported"),
            (0x0300_0000, "big-endian"),
        ] {
            let mut b = Builder::llama(1);
            b.version = version;
            let msg = refuse(&b.build()).to_string();
            assert!(msg.contains(expect), "version {version:#x}: {msg}");
        }
    }

    #[test]
    fn flipped_counts_are_refused() {
        let good = Builder::llama(1).build();
        // High bytes of n_tensors (offset 8..16) and n_kv (16..24): absurd counts.
        for at in [15, 23] {
            let mut b = good.clone();
            b[at] ^= 0x10;
            assert!(
                matches!(refuse(&b), Problem::ImpossibleCount { .. }),
                "byte {at}"
            );
        }
        // Low bytes: plausible counts that do not match the file.
        for at in [8, 16] {
            let mut b = good.clone();
            b[at] ^= 0x01;
            refuse(&b);
        }
    }

    #[test]
    fn absurd_tensor_count_is_refused_before_reading() {
        let mut b = Builder::llama(1);
        b.n_tensors = Some(1 << 60);
        let p = refuse(&b.build());
        assert!(
            matches!(p, Problem::ImpossibleCount { count, unit: "tensor infos", .. } if count == 1 << 60),
            "{p:?}"
        );
        assert!(
            p.to_string()
                .starts_with("the header claims 1152921504606846976 tensor infos")
        );
    }

    #[test]
    fn absurd_kv_count_is_refused_before_reading() {
        let mut b = Builder::llama(1);
        b.n_kv = Some(1 << 60);
        let p = refuse(&b.build());
        assert!(
            matches!(p, Problem::ImpossibleCount { count, unit: "metadata entries", .. } if count == 1 << 60),
            "{p:?}"
        );
    }

    #[test]
    fn absurd_string_lengths_are_refused() {
        // In a value.
        let good = Builder::llama(1).build();
        let mut b = good.clone();
        let at = find(&b, &string(b"tiny"));
        b[at..at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
        let p = refuse(&b);
        assert!(
            matches!(p, Problem::ImpossibleLength { len, .. } if len == 1 << 62),
            "{p:?}"
        );
        assert!(p.to_string().contains("`general.name`"), "{p}");
        // In a key.
        let mut b = good.clone();
        b[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(matches!(refuse(&b), Problem::ImpossibleLength { .. }));
        // In a tensor name.
        let mut b = good;
        let at = find(&b, &string(b"token_embd.weight"));
        b[at..at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
        let p = refuse(&b);
        assert!(matches!(p, Problem::ImpossibleLength { .. }), "{p:?}");
        assert!(p.to_string().contains("tensor info 1 of"), "{p}");
    }

    #[test]
    fn absurd_array_count_is_refused_before_reading() {
        for elem in [0, TYPE_STRING, TYPE_ARRAY] {
            let mut value = le32(elem);
            value.extend(le64(1 << 61));
            let b = Builder::llama(1).kv("tokenizer.ggml.tokens", TYPE_ARRAY, value);
            let p = refuse(&b.build());
            assert!(
                matches!(p, Problem::ImpossibleCount { count, unit: "elements", .. } if count == 1 << 61),
                "{p:?}"
            );
            assert!(p.to_string().contains("`tokenizer.ggml.tokens`"), "{p}");
        }
    }

    // ---- metadata -----------------------------------------------------------------------------

    #[test]
    fn arrays_of_every_type_and_nested_arrays_are_accepted() {
        let mut b = Builder::llama(1);
        for ty in [0u32, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12] {
            let size = fixed_size(ty).unwrap();
            let mut value = le32(ty);
            value.extend(le64(3));
            value.extend(vec![1u8; (3 * size) as usize]);
            b = b.kv(&format!("test.array{ty}"), TYPE_ARRAY, value);
        }
        let mut strings = le32(TYPE_STRING);
        strings.extend(le64(2));
        strings.extend(string(b"a"));
        strings.extend(string(b""));
        // [[ "a", "" ]] : an array of one array of strings.
        let mut nested = le32(TYPE_ARRAY);
        nested.extend(le64(1));
        nested.extend(&strings);
        b = b
            .kv("test.strings", TYPE_ARRAY, strings)
            .kv("test.nested", TYPE_ARRAY, nested);
        validate_bytes(&b.build()).expect("valid");
    }

    #[test]
    fn arrays_nested_too_deep_are_refused() {
        let mut value = le32(0);
        value.extend(le64(0));
        for _ in 0..MAX_ARRAY_DEPTH {
            let mut outer = le32(TYPE_ARRAY);
            outer.extend(le64(1));
            outer.extend(value);
            value = outer;
        }
        let b = Builder::llama(1).kv("test.deep", TYPE_ARRAY, value);
        assert_eq!(
            refuse(&b.build()),
            Problem::ArrayTooDeep {
                key: "test.deep".into()
            }
        );
    }

    #[test]
    fn duplicate_key_is_refused() {
        let b = Builder::llama(1).kv_str("general.name", "again");
        assert_eq!(
            refuse(&b.build()),
            Problem::DuplicateKey {
                key: "general.name".into()
            }
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        for (key, reason) in [
            (&b""[..], "is empty"),
            (b"a\0b", "contains a NUL byte"),
            (b"\xff\xfe", "is not valid UTF-8"),
        ] {
            let mut b = Builder::llama(1);
            b.kv.push((key.to_vec(), TYPE_U32, le32(0)));
            let p = refuse(&b.build());
            assert!(
                matches!(&p, Problem::BadText { reason: r, .. } if *r == reason),
                "{p:?}"
            );
            assert!(
                p.to_string().contains("the key of metadata entry 4 of 4"),
                "{p}"
            );
        }
        let mut b = Builder::llama(1);
        b.kv.push((vec![b'k'; 70000], TYPE_U32, le32(0)));
        assert!(matches!(
            refuse(&b.build()),
            Problem::OverLimit { count: 70000, .. }
        ));
    }

    #[test]
    fn bad_value_types_and_bools_are_refused() {
        let b = Builder::llama(1).kv("test.x", 13, le32(0));
        assert!(matches!(
            refuse(&b.build()),
            Problem::BadValueType { type_id: 13, .. }
        ));
        let mut value = le32(99);
        value.extend(le64(1));
        let b = Builder::llama(1).kv("test.x", TYPE_ARRAY, value);
        assert!(matches!(
            refuse(&b.build()),
            Problem::BadValueType { type_id: 99, .. }
        ));
        let b = Builder::llama(1).kv("test.flag", TYPE_BOOL, vec![2]);
        assert!(matches!(
            refuse(&b.build()),
            Problem::BadBool { value: 2, .. }
        ));
        let mut value = le32(TYPE_BOOL);
        value.extend(le64(3));
        value.extend([0, 1, 7]);
        let b = Builder::llama(1).kv("test.flags", TYPE_ARRAY, value);
        assert!(matches!(
            refuse(&b.build()),
            Problem::BadBool { value: 7, .. }
        ));
    }

    #[test]
    fn bad_alignment_is_refused() {
        for a in [0u32, 3, 48] {
            let b = Builder::llama(1).kv("general.alignment", TYPE_U32, le32(a));
            assert_eq!(
                refuse(&b.build()),
                Problem::BadAlignment {
                    alignment: u64::from(a)
                }
            );
        }
        let b = Builder::llama(1).kv("general.alignment", TYPE_U64, le64(32));
        assert!(matches!(refuse(&b.build()), Problem::WrongKeyType { .. }));
    }

    #[test]
    fn other_alignments_are_honoured() {
        let mut b = Builder::llama(1).kv("general.alignment", TYPE_U32, le32(64));
        b.alignment = 64;
        let s = validate_bytes(&b.build()).expect("valid");
        assert_eq!((s.alignment, s.data_offset % 64), (64, 0));
    }

    // ---- architecture and block count ---------------------------------------------------------

    #[test]
    fn unknown_architecture_is_refused() {
        let b = Builder::generic("llama9000", 1);
        assert_eq!(
            refuse(&b.build()),
            Problem::UnknownArchitecture {
                architecture: "llama9000".into()
            }
        );
        let b = Builder::generic("clip", 1);
        assert_eq!(refuse(&b.build()), Problem::Projector);
    }

    #[test]
    fn missing_or_mistyped_architecture_is_refused() {
        let b = Builder::llama(1).without_kv("general.architecture");
        assert_eq!(
            refuse(&b.build()),
            Problem::MissingKey {
                key: "general.architecture".into()
            }
        );
        let b = Builder::llama(1).without_kv("general.architecture").kv(
            "general.architecture",
            TYPE_U32,
            le32(1),
        );
        assert!(matches!(
            refuse(&b.build()),
            Problem::WrongKeyType { found: "u32", .. }
        ));
    }

    #[test]
    fn missing_block_count_is_refused() {
        let b = Builder::llama(1).without_kv("llama.block_count");
        let p = refuse(&b.build());
        assert_eq!(
            p,
            Problem::MissingKey {
                key: "llama.block_count".into()
            }
        );
        assert_eq!(p.to_string(), "the metadata has no `llama.block_count`");
    }

    #[test]
    fn out_of_range_or_mistyped_block_count_is_refused() {
        for n in [0, 513] {
            let b = Builder::generic("gpt2", 1)
                .without_kv("gpt2.block_count")
                .kv("gpt2.block_count", TYPE_U32, le32(n));
            assert!(matches!(refuse(&b.build()), Problem::BadBlockCount { .. }));
        }
        let b = Builder::generic("gpt2", 1)
            .without_kv("gpt2.block_count")
            .kv_str("gpt2.block_count", "1");
        assert!(matches!(refuse(&b.build()), Problem::WrongKeyType { .. }));
    }

    // ---- tensors ------------------------------------------------------------------------------

    #[test]
    fn missing_required_tensor_is_refused() {
        let b = Builder::llama(2).without_tensor("blk.1.attn_q.weight");
        let p = refuse(&b.build());
        assert_eq!(
            p,
            Problem::MissingTensor {
                architecture: "llama".into(),
                name: "blk.1.attn_q.weight".into()
            }
        );
        assert_eq!(
            p.to_string(),
            "required tensor `blk.1.attn_q.weight` of a llama model is missing"
        );
        let b = Builder::llama(1).without_tensor("output_norm.weight");
        assert!(matches!(refuse(&b.build()), Problem::MissingTensor { .. }));
        let b = Builder::generic("gpt2", 1).without_tensor("token_embd.weight");
        assert!(matches!(refuse(&b.build()), Problem::MissingTensor { .. }));
    }

    #[test]
    fn fused_qkv_and_mixture_of_experts_llama_models_are_accepted() {
        let mut b = Builder::llama(2);
        for i in 0..2 {
            for part in ["attn_q", "attn_k", "attn_v"] {
                b = b.without_tensor(&format!("blk.{i}.{part}.weight"));
            }
            b = b.tensor(&format!("blk.{i}.attn_qkv.weight"), &[8], 0);
        }
        validate_bytes(&b.build()).expect("fused q/k/v is valid");
        let mut b = Builder::llama(2)
            .kv("llama.expert_count", TYPE_U32, le32(8))
            .kv("llama.expert_used_count", TYPE_U32, le32(2));
        for i in 0..2 {
            for part in LLAMA_DENSE_FFN {
                b = b.without_tensor(&format!("blk.{i}.{part}.weight"));
            }
            for part in LLAMA_MOE_FFN {
                b = b.tensor(&format!("blk.{i}.{part}.weight"), &[8], 0);
            }
        }
        validate_bytes(&b.build()).expect("a Mixtral-style llama is valid");
        let b = b.without_tensor("blk.1.ffn_up_exps.weight");
        assert!(matches!(refuse(&b.build()), Problem::MissingTensor { .. }));
    }

    #[test]
    fn hyperparameters_llama_cpp_asserts_on_are_refused() {
        let with = |pairs: &[(&str, u32)]| {
            let mut b = Builder::generic("qwen2", 2);
            for (k, v) in pairs {
                b = b.kv(&format!("qwen2.{k}"), TYPE_U32, le32(*v));
            }
            b.build()
        };
        let refused = |pairs: &[(&str, u32)], key: &str| {
            let p = refuse(&with(pairs));
            assert!(
                matches!(&p, Problem::BadHyperparameter { key: k, .. } if k == &format!("qwen2.{key}")),
                "{pairs:?}: {p:?}"
            );
        };
        validate_bytes(&with(&[("expert_count", 8), ("expert_used_count", 2)])).expect("valid");
        validate_bytes(&with(&[
            ("expert_count", 8),
            ("expert_used_count", 2),
            ("expert_group_count", 4),
            ("expert_group_used_count", 2),
        ]))
        .expect("valid");
        refused(
            &[("expert_count", 1025), ("expert_used_count", 1)],
            "expert_count",
        );
        refused(&[("expert_count", 8)], "expert_used_count");
        refused(
            &[("expert_count", 8), ("expert_used_count", 9)],
            "expert_used_count",
        );
        refused(&[("expert_used_count", 1)], "expert_used_count");
        refused(&[("expert_group_count", 2)], "expert_group_count");
        let groups = [("expert_count", 8), ("expert_used_count", 2)];
        refused(
            &[groups[0], groups[1], ("expert_group_count", 8)],
            "expert_group_count",
        );
        refused(
            &[groups[0], groups[1], ("expert_group_count", 3)],
            "expert_group_count",
        );
        refused(
            &[groups[0], groups[1], ("expert_group_count", 4)],
            "expert_group_used_count",
        );
        refused(&[("nextn_predict_layers", 3)], "nextn_predict_layers");
        let b = Builder::generic("qwen2", 1).kv_str("qwen2.rope.scaling.type", "bogus");
        let p = refuse(&b.build());
        assert_eq!(
            p.to_string(),
            "`qwen2.rope.scaling.type` is `bogus`, but llama.cpp requires one of none, linear, yarn, longrope"
        );
        let b = Builder::generic("qwen2", 1).kv_str("qwen2.rope.scaling.type", "yarn");
        validate_bytes(&b.build()).expect("valid");
    }

    #[test]
    fn block_without_tensors_is_refused() {
        let b = Builder::generic("gpt2", 3).without_tensor("blk.1.attn_norm.weight");
        assert_eq!(
            refuse(&b.build()),
            Problem::EmptyBlock {
                block: 1,
                block_count: 3
            }
        );
    }

    #[test]
    fn tensor_past_the_end_is_refused() {
        let b = Builder::llama(1).edit_tensor("output_norm.weight", |t| t.offset = Some(1 << 20));
        let p = refuse(&b.build());
        assert!(matches!(&p, Problem::TensorPastEnd { name, .. } if name == "output_norm.weight"));
        let b =
            Builder::llama(1).edit_tensor("output_norm.weight", |t| t.offset = Some(u64::MAX - 31));
        assert!(matches!(refuse(&b.build()), Problem::TensorPastEnd { .. }));
    }

    #[test]
    fn misaligned_offset_is_refused() {
        let b = Builder::llama(1).edit_tensor("output_norm.weight", |t| t.offset = Some(129));
        assert_eq!(
            refuse(&b.build()),
            Problem::MisalignedTensor {
                name: "output_norm.weight".into(),
                offset: 129,
                alignment: 32
            }
        );
    }

    #[test]
    fn overlapping_tensors_are_refused() {
        let b = Builder::llama(1).edit_tensor("output_norm.weight", |t| t.offset = Some(0));
        assert!(matches!(
            refuse(&b.build()),
            Problem::TensorOutOfOrder {
                offset: 0,
                expected: 128,
                ..
            }
        ));
    }

    #[test]
    fn unknown_tensor_type_is_refused() {
        let b = Builder::llama(1).edit_tensor("output_norm.weight", |t| t.ty = 200);
        let p = refuse(&b.build());
        assert_eq!(
            p,
            Problem::UnknownTensorType {
                name: "output_norm.weight".into(),
                type_id: 200
            }
        );
        assert_eq!(
            p.to_string(),
            "tensor `output_norm.weight` has unknown ggml type 200"
        );
        let b = Builder::llama(1).edit_tensor("output_norm.weight", |t| t.ty = 31);
        assert!(refuse(&b.build()).to_string().contains("Q4_0_4_4"));
    }

    #[test]
    fn bad_shapes_are_refused() {
        let b = Builder::llama(1).edit_tensor("output_norm.weight", |t| t.dims = vec![1; 5]);
        assert!(matches!(
            refuse(&b.build()),
            Problem::TooManyDims { n_dims: 5, .. }
        ));
        let b = Builder::llama(1)
            .edit_tensor("output_norm.weight", |t| t.dims = vec![1 << 32, 1 << 32]);
        assert!(matches!(refuse(&b.build()), Problem::ShapeOverflow { .. }));
        let b = Builder::llama(1).edit_tensor("output_norm.weight", |t| t.dims = vec![1 << 63]);
        assert!(matches!(refuse(&b.build()), Problem::ShapeOverflow { .. }));
        // Q4_0 needs rows of whole 32-element blocks.
        let b = Builder::llama(1).edit_tensor("output_norm.weight", |t| {
            t.dims = vec![16, 2];
            t.ty = 2;
        });
        assert!(matches!(
            refuse(&b.build()),
            Problem::PartialBlock {
                row: 16,
                block: 32,
                ..
            }
        ));
    }

    #[test]
    fn bad_tensor_names_are_refused() {
        let b = Builder::llama(1).tensor("blk.0.attn_norm.weight", &[8], 0);
        assert!(matches!(
            refuse(&b.build()),
            Problem::DuplicateTensor { .. }
        ));
        let long = "x".repeat(64);
        let b = Builder::llama(1).tensor(&long, &[8], 0);
        assert!(matches!(
            refuse(&b.build()),
            Problem::OverLimit {
                count: 64,
                limit: 63,
                ..
            }
        ));
        let mut b = Builder::llama(1);
        b.tensors[0].name = b"token_embd.weight\0x".to_vec();
        assert!(matches!(refuse(&b.build()), Problem::BadText { .. }));
    }

    #[test]
    fn hostile_text_in_messages_stays_on_one_line() {
        let arch = format!("evil\narch{}", "y".repeat(500));
        let p = refuse(&Builder::generic(&arch, 1).build());
        let msg = p.to_string();
        assert!(
            !msg.contains('\n') && msg.contains("evil\\narch") && msg.len() < 200,
            "{msg}"
        );
    }

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

    /// Checks [`ARCHITECTURES`] against the pinned llama.cpp source when the cargo registry has
    /// it (it does wherever the main crate was built).
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
        let Some(source) = source else {
            eprintln!("note: llama-arch.cpp of llama-cpp-sys-2 0.1.161 not found; skipped");
            return;
        };
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

    // ---- robustness ---------------------------------------------------------------------------

    /// xorshift64*: a tiny deterministic generator, so the test needs no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn random_flips_and_truncations_never_panic() {
        let mut nested = le32(TYPE_ARRAY);
        nested.extend(le64(2));
        for _ in 0..2 {
            nested.extend(le32(TYPE_STRING));
            nested.extend(le64(1));
            nested.extend(string(b"tok"));
        }
        let good = Builder::llama(2)
            .kv("test.nested", TYPE_ARRAY, nested)
            .kv("test.flag", TYPE_BOOL, vec![1])
            .build();
        validate_bytes(&good).expect("the seed is valid");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut refused = 0;
        for round in 0..30_000 {
            let mut b = good.clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(b.len());
                match rng.below(4) {
                    0 => b[at] ^= 1 << rng.below(8),
                    1 => b[at] = 0xff,
                    2 => b[at] = rng.next() as u8,
                    _ => b.truncate(at.max(1)),
                }
            }
            if let Err(p) = validate_bytes(&b) {
                refused += 1;
                let msg = p.to_string();
                assert!(!msg.contains('\n'), "round {round}: {msg}");
            }
        }
        assert!(refused > 20_000, "only {refused} of 30000 mutants refused");
    }
}
