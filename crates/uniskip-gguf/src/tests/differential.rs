//! Differential tests: gguf-rs, a GGUF parser written independently of this one, reads every
//! file the validator accepts the same way: the same architecture, block count, tensor names,
//! shapes, types and offsets. Where gguf-rs itself cannot be trusted, the comparison says why
//! and skips that file only.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::*;

/// Metadata array elements gguf-rs is trusted with. It holds every element of a non-tokenizer
/// array as a JSON value, about 63 bytes each: a 60,000,000-element array costs gigabytes.
const GGUF_RS_MAX_ELEMENTS: u64 = 1 << 20;

/// Why gguf-rs 0.1.8 cannot be trusted on a file the validator accepted, judged from the
/// validator's figures alone (gguf-rs must not even run on such a file).
fn untrusted(s: &Summary) -> Option<String> {
    if let Some(t) = s.tensors.iter().find(|t| t.ggml_type >= 40) {
        return Some(format!(
            "tensor `{}` is of ggml type {}: gguf-rs panics on type 40 (`unreachable!`) and \
             refuses the types after it",
            t.name, t.ggml_type
        ));
    }
    if s.nested_arrays {
        return Some("a metadata array holds arrays, which gguf-rs does not read".into());
    }
    if s.array_elements > GGUF_RS_MAX_ELEMENTS {
        return Some(format!(
            "{} metadata array elements: gguf-rs holds about 63 bytes per element",
            s.array_elements
        ));
    }
    None
}

/// Reads `bytes` with gguf-rs (a panic is caught and reported).
fn gguf_rs(bytes: &[u8]) -> Result<gguf_rs::GGUFModel, String> {
    let body = bytes.get(4..).ok_or("shorter than the magic")?.to_vec();
    catch_unwind(AssertUnwindSafe(|| {
        // 0: tokenizer arrays are read but not kept (the comparison does not need them).
        gguf_rs::GGUFContainer::new(gguf_rs::ByteOrder::LE, Box::new(Cursor::new(body)), 0)
            .decode()
            .map_err(|e| e.to_string())
    }))
    .map_err(|_| "gguf-rs panicked".to_string())?
}

/// Checks that gguf-rs reads `bytes` as the validator's summary `s` says.
fn agree(bytes: &[u8], s: &Summary) -> Result<(), String> {
    let model = gguf_rs(bytes)?;
    let meta = model.metadata();
    let arch = meta.get("general.architecture").and_then(|v| v.as_str());
    if arch != Some(s.architecture.as_str()) {
        return Err(format!(
            "architecture: gguf-rs {arch:?}, validator {}",
            s.architecture
        ));
    }
    let count_key = format!("{}.block_count", s.architecture);
    let blocks = meta.get(&count_key).and_then(|v| v.as_u64());
    if blocks != Some(s.block_count as u64) {
        return Err(format!(
            "block count: gguf-rs {blocks:?}, validator {}",
            s.block_count
        ));
    }
    let theirs: Vec<(&str, &[u64], u32, u64)> = model
        .tensors()
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice(), t.kind, t.offset))
        .collect();
    let ours: Vec<(&str, &[u64], u32, u64)> = s
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice(), t.ggml_type, t.offset))
        .collect();
    if theirs != ours {
        let at = theirs.iter().zip(&ours).position(|(a, b)| a != b);
        return Err(format!(
            "tensors: {} vs {} infos, first difference at {at:?}: gguf-rs {:?}, validator {:?}",
            theirs.len(),
            ours.len(),
            at.and_then(|i| theirs.get(i)),
            at.and_then(|i| ours.get(i)),
        ));
    }
    // gguf-rs honours only alignments that are multiples of 8.
    if s.alignment.is_multiple_of(8) && model.data_offset() != s.data_offset {
        return Err(format!(
            "data offset: gguf-rs {}, validator {}",
            model.data_offset(),
            s.data_offset
        ));
    }
    Ok(())
}

/// Tallies of a differential run.
#[derive(Default, Debug)]
struct Tally {
    compared: usize,
    skipped: usize,
    refused: usize,
}

impl Tally {
    /// Compares the two parsers on `bytes` when the validator accepts it and gguf-rs can be
    /// trusted with it; panics, naming `what`, when they disagree.
    fn check(&mut self, what: &str, bytes: &[u8]) {
        let Ok(s) = validate_bytes(bytes) else {
            self.refused += 1;
            return;
        };
        if let Some(why) = untrusted(&s) {
            eprintln!("{what}: not compared with gguf-rs: {why}");
            self.skipped += 1;
            return;
        }
        if let Err(e) = agree(bytes, &s) {
            panic!("{what}: gguf-rs and the validator disagree: {e}");
        }
        self.compared += 1;
    }
}

/// Small valid files of every shape the builder makes.
fn built_files() -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        ("llama 1 block".into(), Builder::llama(1).build()),
        ("llama 3 blocks".into(), Builder::llama(3).build()),
        ("gpt2 2 blocks".into(), Builder::generic("gpt2", 2).build()),
        (
            "qwen2 u64 block count".into(),
            Builder::generic("qwen2", 1)
                .without_kv("qwen2.block_count")
                .kv("qwen2.block_count", TYPE_U64, le64(1))
                .build(),
        ),
        (
            "quantized tensors".into(),
            Builder::llama(1)
                .tensor("extra.q4_0.weight", &[64, 3], 2)
                .tensor("extra.q6_k.weight", &[256, 2, 2], 14)
                .tensor("extra.bf16.weight", &[3, 1, 1, 5], 30)
                .build(),
        ),
    ];
    let mut v2 = Builder::llama(2);
    v2.version = 2;
    files.push(("version 2".into(), v2.build()));
    let mut aligned = Builder::llama(2).kv("general.alignment", TYPE_U32, le32(64));
    aligned.alignment = 64;
    files.push(("alignment 64".into(), aligned.build()));
    let mut arrays = Builder::llama(1);
    for ty in [0u32, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12] {
        let size = fixed_size(ty).unwrap();
        let mut value = le32(ty);
        value.extend(le64(3));
        value.extend(vec![1u8; (3 * size) as usize]);
        arrays = arrays.kv(&format!("test.array{ty}"), TYPE_ARRAY, value);
    }
    let mut strings = le32(TYPE_STRING);
    strings.extend(le64(2));
    strings.extend(string(b"a"));
    strings.extend(string(b""));
    files.push((
        "arrays of every type".into(),
        arrays
            .kv("tokenizer.ggml.tokens", TYPE_ARRAY, strings)
            .build(),
    ));
    files
}

#[test]
fn gguf_rs_agrees_with_the_validator_on_every_built_file() {
    let mut tally = Tally::default();
    for (what, bytes) in built_files() {
        tally.check(&what, &bytes);
    }
    assert_eq!(
        (tally.compared, tally.skipped, tally.refused),
        (8, 0, 0),
        "{tally:?}"
    );
}

#[test]
fn gguf_rs_agrees_with_the_validator_on_the_real_models() {
    for path in [smollm2(), gemma3()] {
        let bytes = fs::read(&path).unwrap();
        let s = validate_bytes(&bytes).expect("valid");
        assert_eq!(untrusted(&s), None, "{}", path.display());
        agree(&bytes, &s).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn gguf_rs_agrees_with_the_validator_on_every_accepted_mutant() {
    // Mutants of a valid file that the validator still accepts (a changed value, a flipped bit
    // in a name or a dimension) are the interesting cases: both parsers must still agree.
    let seeds: Vec<Vec<u8>> = built_files().into_iter().map(|(_, b)| b).collect();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut tally = Tally::default();
    for round in 0..20_000 {
        let mut b = seeds[round % seeds.len()].clone();
        for _ in 0..=next() % 2 {
            let at = (next() % b.len() as u64) as usize;
            b[at] ^= 1 << (next() % 8);
        }
        tally.check(&format!("mutant {round}"), &b);
    }
    eprintln!("{tally:?}");
    assert!(
        tally.compared > 1_000,
        "too few accepted mutants: {tally:?}"
    );
}

/// The fuzz corpus (`fuzz/corpus/validate`, made by `fuzz/seed.sh` and grown by fuzzing), or
/// the directory in `UNISKIP_FUZZ_CORPUS`. It is not committed: `just test` seeds it first,
/// and without it the test fails saying how to make it.
#[test]
fn gguf_rs_agrees_with_the_validator_on_the_fuzz_corpus() {
    let dir = std::env::var_os("UNISKIP_FUZZ_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/validate")
        });
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "no fuzz corpus at {} ({e}): run `bash fuzz/seed.sh` (just test does), or set UNISKIP_FUZZ_CORPUS",
            dir.display()
        )
    });
    let mut tally = Tally::default();
    for entry in entries {
        let path = entry.unwrap().path();
        tally.check(&path.display().to_string(), &fs::read(&path).unwrap());
    }
    eprintln!("fuzz corpus {}: {tally:?}", dir.display());
    assert!(
        tally.compared > 0,
        "no file of the corpus compared: {tally:?}"
    );
}

#[test]
fn the_files_gguf_rs_is_not_trusted_with_are_the_ones_it_fails_on() {
    // Type 40: the validator accepts it (the pinned llama.cpp loads it); gguf-rs panics.
    let b = Builder::llama(1).tensor("extra.weight", &[64], 40).build();
    let s = validate_bytes(&b).expect("valid");
    assert!(untrusted(&s).unwrap().contains("type 40"));
    assert_eq!(gguf_rs(&b).err().as_deref(), Some("gguf-rs panicked"));
    // Nested arrays: gguf-rs refuses them.
    let mut nested = le32(TYPE_ARRAY);
    nested.extend(le64(1));
    nested.extend(le32(TYPE_U32));
    nested.extend(le64(1));
    nested.extend(le32(7));
    let b = Builder::llama(1)
        .kv("test.nested", TYPE_ARRAY, nested)
        .build();
    let s = validate_bytes(&b).expect("valid");
    assert!(untrusted(&s).unwrap().contains("arrays"));
    assert!(gguf_rs(&b).is_err());
    // Memory: past the element budget the file is skipped (its cost is not measured here).
    let mut big = le32(0);
    big.extend(le64(GGUF_RS_MAX_ELEMENTS + 1));
    big.resize(big.len() + GGUF_RS_MAX_ELEMENTS as usize + 1, 0);
    let b = Builder::llama(1).kv("test.big", TYPE_ARRAY, big).build();
    let s = validate_bytes(&b).expect("valid");
    assert!(untrusted(&s).unwrap().contains("63 bytes per element"));
}
