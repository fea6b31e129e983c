//! The limits that keep memory bounded: each refusal names what crossed it, and real-sized
//! files pass. Also the figures a valid file's summary reports.

use super::*;

/// An array value of `count` elements of GGUF type `elem` (fixed size `size`), all zero.
fn zero_array(elem: u32, size: usize, count: u64) -> Vec<u8> {
    let mut value = le32(elem);
    value.extend(le64(count));
    value.resize(value.len() + size * count as usize, 0);
    value
}

#[test]
fn header_counts_above_the_limits_are_refused_before_reading() {
    for (kv, limit, unit) in [
        (true, MAX_KV_COUNT, "metadata entries"),
        (false, MAX_TENSOR_COUNT, "tensor infos"),
    ] {
        let mut b = Builder::llama(1);
        if kv {
            b.n_kv = Some(limit + 1);
        } else {
            b.n_tensors = Some(limit + 1);
        }
        // Room for every claimed item, so the count is plausible and only the limit is hit.
        let mut bytes = b.build();
        bytes.resize(bytes.len() + (limit as usize + 1) * 24, 0);
        let p = refuse(&bytes);
        assert_eq!(
            p,
            Problem::OverLimit {
                what: "the header".into(),
                count: limit + 1,
                unit,
                limit,
            }
        );
    }
}

#[test]
fn metadata_arrays_above_the_element_limit_are_refused_naming_the_key() {
    let half = MAX_ARRAY_ELEMENTS / 2;
    let b = Builder::llama(1)
        .kv("test.first", TYPE_ARRAY, zero_array(0, 1, half))
        .kv("test.second", TYPE_ARRAY, zero_array(0, 1, half + 1));
    let p = refuse(&b.build());
    assert_eq!(
        p,
        Problem::TooManyArrayElements {
            key: "test.second".into(),
            count: half + 1,
            total: MAX_ARRAY_ELEMENTS + 1,
            limit: MAX_ARRAY_ELEMENTS,
        }
    );
    let msg = p.to_string();
    assert!(
        msg.contains("`test.second`") && msg.contains(&format!("{}", half + 1)),
        "{msg}"
    );
}

#[test]
fn metadata_arrays_up_to_the_element_limit_are_accepted_and_counted() {
    let half = MAX_ARRAY_ELEMENTS / 2;
    let b = Builder::llama(1)
        .kv("test.first", TYPE_ARRAY, zero_array(0, 1, half))
        .kv("test.second", TYPE_ARRAY, zero_array(TYPE_U32, 4, half));
    let s = validate_bytes(&b.build()).expect("at the limit is valid");
    assert_eq!(s.array_elements, MAX_ARRAY_ELEMENTS);
    assert!(!s.nested_arrays);
}

#[test]
fn metadata_larger_than_the_limit_is_refused_naming_the_key() {
    let mut text = vec![b'x'; MAX_METADATA_BYTES as usize];
    let b = Builder::llama(1).kv("test.essay", TYPE_STRING, string(&text));
    let p = refuse(&b.build());
    assert!(
        matches!(&p, Problem::MetadataTooLarge { key, end, limit }
            if key == "test.essay" && *end > MAX_METADATA_BYTES && *limit == MAX_METADATA_BYTES),
        "{p:?}"
    );
    // Just under the limit passes.
    text.truncate(MAX_METADATA_BYTES as usize - 4096);
    let b = Builder::llama(1).kv("test.essay", TYPE_STRING, string(&text));
    validate_bytes(&b.build()).expect("under the limit is valid");
}

#[test]
fn the_summary_lists_every_tensor_with_its_shape_and_type() {
    let b = Builder::llama(1).tensor("extra.weight", &[64, 3], 2);
    let s = validate_bytes(&b.build()).expect("valid");
    assert_eq!(s.tensors.len() as u64, s.n_tensors);
    let names: Vec<&str> = s.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names[..2], ["token_embd.weight", "output_norm.weight"]);
    let extra = s.tensors.last().unwrap();
    assert_eq!(
        (extra.name.as_str(), extra.shape.as_slice(), extra.ggml_type),
        ("extra.weight", &[64, 3][..], 2)
    );
    // Q4_0: 18 bytes per 32 elements.
    assert_eq!(extra.size, 64 * 3 / 32 * 18);
}

#[test]
fn real_models_are_far_below_every_limit() {
    for path in [smollm2(), gemma3()] {
        let s = validate_file(&path).expect("valid");
        assert!(s.n_kv * 100 < MAX_KV_COUNT, "{s:?}");
        assert!(s.n_tensors * 100 < MAX_TENSOR_COUNT);
        assert!(
            s.array_elements * 4 < MAX_ARRAY_ELEMENTS,
            "{}",
            s.array_elements
        );
        assert!(
            s.tensor_info_offset * 8 < MAX_METADATA_BYTES,
            "{}",
            s.tensor_info_offset
        );
        eprintln!(
            "{}: {} keys, {} tensors, {} array elements, {} bytes of metadata",
            path.display(),
            s.n_kv,
            s.n_tensors,
            s.array_elements,
            s.tensor_info_offset
        );
    }
}
