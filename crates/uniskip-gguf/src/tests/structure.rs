//! The header and the metadata section.

use super::*;

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
