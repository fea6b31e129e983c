//! Writing a tuning run's results: the tuned file in the output type (whole, or pruned to
//! the kept blocks) and the F32 copy, each with the tuning metadata.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::TuneSettings;
use super::meta::TunedInfo;
use uniskip_engine::{MetaValue, Model, quantize, write_pruned_model, write_with_metadata};

/// String metadata of the base file that a tuned file carries over (llama.cpp's model
/// writer drops them).
const CARRIED_STRINGS: &[&str] = &[
    "tokenizer.chat_template",
    "general.name",
    "general.basename",
    "general.finetune",
    "general.size_label",
    "general.license",
    "general.organization",
];

/// Writes the tuned file (quantized to `file_type`) and, when asked, the F32 copy; both
/// carry the tuning metadata and the base model's training context length (training
/// overwrote it with the window). Returns the F32 copy's path.
pub(super) fn write_outputs(
    settings: &TuneSettings,
    base: &Model,
    tuned: &TunedInfo,
    final_f32: &Path,
    file_type: i32,
) -> Result<Option<PathBuf>> {
    let mut entries = tuned.entries();
    // llama.cpp's model writer keeps the tokenizer but not the chat template nor the
    // descriptive general.* strings: a tuned instruct model must still chat.
    for key in CARRIED_STRINGS {
        if let Some(value) = base.metadata(key) {
            entries.push(((*key).into(), MetaValue::Str(value)));
        }
    }
    entries.push((
        format!("{}.context_length", base.architecture()),
        MetaValue::U32(base.n_ctx_train() as u32),
    ));
    let dir = final_f32.parent().unwrap_or(Path::new("."));
    let source = if file_type == 0 {
        final_f32.to_path_buf()
    } else {
        let q = dir.join("tuned-quantized.gguf");
        quantize(final_f32, &q, file_type, settings.threads)?;
        q
    };
    let tmp_out = dir.join("out.gguf.tmp");
    if settings.prune {
        let pruned = dir.join("tuned-pruned.gguf");
        write_pruned_model(&source, &pruned, &settings.plan.mask(1).skipped_indices())?;
        let k = tuned.kept_blocks.len();
        let pruned_info = TunedInfo {
            block_count: k,
            kept_blocks: (0..k).collect(),
            ..tuned.clone()
        };
        let mut pruned_entries = pruned_info.entries();
        pruned_entries.push((
            format!("{}pruned_from_blocks", super::meta::PREFIX),
            MetaValue::Str(format!(
                "{} of {}: {}",
                k,
                tuned.block_count,
                settings.plan.mask(1).to_skip_list()
            )),
        ));
        // The carried strings and the context length, after the tuning entries.
        pruned_entries.extend_from_slice(&entries[tuned.entries().len()..]);
        write_with_metadata(&pruned, &tmp_out, &pruned_entries)?;
    } else {
        write_with_metadata(&source, &tmp_out, &entries)?;
    }
    move_file(&tmp_out, &settings.out)?;
    if !settings.also_f32 {
        return Ok(None);
    }
    let f32_path = f32_path_for(&settings.out);
    let tmp = dir.join("out-f32.gguf.tmp");
    write_with_metadata(final_f32, &tmp, &entries)?;
    move_file(&tmp, &f32_path)?;
    Ok(Some(f32_path))
}

/// `OUT.gguf` -> `OUT.f32.gguf`.
pub fn f32_path_for(out: &Path) -> PathBuf {
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}.f32.gguf"))
}

fn move_file(from: &Path, to: &Path) -> Result<()> {
    if std::fs::rename(from, to).is_err() {
        std::fs::copy(from, to).with_context(|| format!("writing {}", to.display()))?;
        let _ = std::fs::remove_file(from);
    }
    Ok(())
}
