//! Tables mirrored from the pinned llama.cpp and ggml, and the limits the parser enforces.
//!
//! Update the mirrors together with the `llama-cpp-sys-2` pin: a test compares
//! [`ARCHITECTURES`] with the vendored sources when they are present.

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
pub(super) const MAX_EXPERTS: u64 = 1024;
/// The rope scaling types llama.cpp knows; it aborts on any other `<arch>.rope.scaling.type`.
pub(super) const ROPE_SCALING_TYPES: &[&str] = &["none", "linear", "yarn", "longrope"];

/// Data alignment when `general.alignment` is absent (`GGUF_DEFAULT_ALIGNMENT`).
pub(super) const DEFAULT_ALIGNMENT: u64 = 32;
/// llama.cpp's `GGUF_MAX_STRING_LENGTH` and `GGUF_MAX_ARRAY_ELEMENTS`: it refuses more.
pub(super) const MAX_STRING_LEN: u64 = 1 << 30;
pub(super) const MAX_ARRAY_LEN: u64 = 1 << 30;
/// The GGUF specification limits keys to 65535 bytes; it also bounds what a key costs to read.
pub(super) const MAX_KEY_LEN: u64 = 65535;
/// `GGML_MAX_NAME` is 64 including the NUL terminator; llama.cpp refuses longer names.
pub(super) const MAX_TENSOR_NAME_LEN: u64 = 63;
/// `GGML_MAX_DIMS`.
pub(super) const MAX_DIMS: u32 = 4;
/// How deep arrays of arrays may nest. The pinned llama.cpp refuses any nesting, but the format
/// allows it; a small limit keeps the recursion bounded.
pub(super) const MAX_ARRAY_DEPTH: u32 = 3;
/// A header item that needs more bytes than this cannot come from a truncated real file: the
/// count or length itself is corrupt.
pub(super) const ABSURD: u128 = 1 << 40;
/// How much of `general.architecture` / `general.name` is read: longer values are not
/// architectures, and names are only shown.
pub(super) const MAX_SHOWN_VALUE: u64 = 256;
/// Read window of [`validate_file`](super::validate_file): the header is read in pieces of this size.
pub(super) const FILE_WINDOW: usize = 64 * 1024;

// ---- limits of our own, so that memory stays bounded on any file ------------------------
//
// The format and llama.cpp allow far more than real models need, and llama.cpp's cost grows
// with counts, not only with bytes: it keeps every metadata entry and tensor info in structures
// of a few hundred bytes each, and when it loads a model it formats every metadata array as
// text (`gguf_kv_to_str`, several bytes per element, copied more than once). Real models stay
// far below these limits (Gemma 3 270M: 33 keys, 236 tensors, 786,436 array elements in 6.5 MB
// of metadata; SmolLM2: 33 keys, 272 tensors, 147,205 elements in 1.8 MB); a file above one is
// refused, by name.

/// At most this many metadata entries.
pub const MAX_KV_COUNT: u64 = 1 << 16;
/// At most this many tensors.
pub const MAX_TENSOR_COUNT: u64 = 1 << 16;
/// At most this many elements in all metadata arrays together (nested ones included).
pub const MAX_ARRAY_ELEMENTS: u64 = 1 << 22;
/// At most this many bytes of metadata (from the start of the file to the tensor infos).
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

/// Smallest possible metadata entry: key length (8), a 1-byte key, value type (4), 1-byte value.
pub(super) const MIN_KV_BYTES: u64 = 14;
/// Smallest possible tensor info: name length (8), `n_dims` (4), type (4), offset (8).
pub(super) const MIN_TENSOR_INFO_BYTES: u64 = 24;
/// Smallest possible array element that is itself an array: element type (4) and count (8).
pub(super) const MIN_NESTED_ARRAY_BYTES: u64 = 12;

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
pub(super) fn type_name(id: u32) -> Option<&'static str> {
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
