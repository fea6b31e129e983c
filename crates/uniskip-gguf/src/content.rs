//! Content rules: what llama.cpp needs from a structurally sound file before it loads it
//! (a known architecture, a block count in range, hyperparameters it would assert on, and
//! the tensors of every block).

use std::collections::{HashMap, HashSet};

use super::metadata::Value;
use super::parser::Parser;
use super::problem::{Problem, shown};
use super::source::Source;
use super::tables::{
    ARCHITECTURES, MAX_BLOCK_COUNT, MAX_EXPERTS, MAX_SHOWN_VALUE, ROPE_SCALING_TYPES,
};

/// Per-block tensors (`blk.<i>.<part>.weight`) of the `llama` architecture, checked on
/// SmolLM2-135M and against the pinned `src/models/llama.cpp`. As there, `attn_q`, `attn_k` and
/// `attn_v` may be replaced by one fused `attn_qkv` (in every architecture below).
pub(super) const LLAMA_BLOCK: &[&str] = &[
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
];
/// The feed-forward of a dense `llama` block (`<arch>.expert_count` absent or 0).
pub(super) const LLAMA_DENSE_FFN: &[&str] = &["ffn_gate", "ffn_down", "ffn_up"];
/// The feed-forward of a mixture-of-experts `llama` block (Mixtral); `ffn_gate_exps` is
/// optional in llama.cpp.
pub(super) const LLAMA_MOE_FFN: &[&str] = &["ffn_gate_inp", "ffn_down_exps", "ffn_up_exps"];
/// Per-block tensors of the `gemma3` architecture, checked on Gemma 3 270M and against the
/// pinned `src/models/gemma3.cpp`.
pub(super) const GEMMA3_BLOCK: &[&str] = &[
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
/// What the content checks learn about a file.
pub(super) struct Content {
    /// `general.architecture`.
    pub(super) architecture: String,
    /// `general.name`, when it is a string.
    pub(super) name: Option<String>,
    /// `<architecture>.block_count`, in `1..=MAX_BLOCK_COUNT`.
    pub(super) block_count: usize,
}

/// Runs the content checks on the metadata `kv` and the tensor `names` of a file whose
/// structure is sound.
pub(super) fn check<S: Source>(
    p: &mut Parser<'_, S>,
    kv: &HashMap<String, Value>,
    names: &HashSet<String>,
) -> Result<Content, Problem> {
    let architecture = architecture(p, kv)?;
    let block_count = block_count(kv, &architecture)?;
    let name = match kv.get("general.name") {
        Some(&Value::Str { offset, len }) => Some(p.text(offset, len)?),
        _ => None,
    };
    let experts = check_hyperparameters(p, kv, &architecture, block_count as u64)?;
    check_tensors(names, &architecture, block_count, experts)?;
    Ok(Content {
        architecture,
        name,
        block_count,
    })
}

/// `general.architecture`: present, a string, and a language model llama.cpp knows.
fn architecture<S: Source>(
    p: &mut Parser<'_, S>,
    kv: &HashMap<String, Value>,
) -> Result<String, Problem> {
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
    Ok(architecture)
}

/// `<architecture>.block_count`: present, an unsigned integer, in `1..=MAX_BLOCK_COUNT`.
fn block_count(kv: &HashMap<String, Value>, architecture: &str) -> Result<usize, Problem> {
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
    Ok(block_count as usize) // <= MAX_BLOCK_COUNT
}

/// The tensors: `token_embd.weight`, at least one tensor in every block, and the full
/// per-block set of the architectures verified against real files.
fn check_tensors(
    names: &HashSet<String>,
    architecture: &str,
    block_count: usize,
    experts: u64,
) -> Result<(), Problem> {
    let missing = |name: String| Problem::MissingTensor {
        architecture: architecture.into(),
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
    let (per_block, ffn): (&[&str], &[&str]) = match architecture {
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
    Ok(())
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
