//! Unit tests of the GGUF validator: helpers that build small files, and the cases by area.

mod content;
mod differential;
mod files;
mod limits;
mod robustness;
mod structure;
mod tables;

use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::content::{LLAMA_BLOCK, LLAMA_DENSE_FFN, LLAMA_MOE_FFN};
use super::metadata::{TYPE_ARRAY, TYPE_BOOL, TYPE_STRING, TYPE_U32, TYPE_U64, fixed_size};
use super::tables::MAX_ARRAY_DEPTH;
use super::*;

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
    let mut small = FileSource::new(File::open(&file.0).unwrap(), bytes.len() as u64, 7);
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
