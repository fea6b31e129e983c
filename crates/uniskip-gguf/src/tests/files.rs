//! Real model files, and paths that are not model files.

use super::*;

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
