//! Architecture, block count, hyperparameters and tensors.

use super::*;

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
    let b = Builder::llama(1).edit_tensor("output_norm.weight", |t| t.offset = Some(u64::MAX - 31));
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
    let b =
        Builder::llama(1).edit_tensor("output_norm.weight", |t| t.dims = vec![1 << 32, 1 << 32]);
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
