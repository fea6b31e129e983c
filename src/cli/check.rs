//! `uniskip check`: llama.cpp's tokenization of a GGUF against the model's original
//! `tokenizer.json`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;

use crate::engine::{Model, ModelOptions, Placement};
use crate::error::BadInput;
use crate::quality::Corpus;
use crate::tokcheck::{self, ReferenceError, Report};

/// Compare llama.cpp's tokenizer with the model's original tokenizer.json.
#[derive(Debug, Args)]
#[command(after_help = "A GGUF converted with a wrong or missing pre-tokenizer \
(tokenizer.ggml.pre) splits text differently from the model it came from, and perplexity, KL \
and top-1 measured on it mean little. This command tokenizes the same texts with llama.cpp \
(the GGUF's vocabulary, no BOS, special tokens in the text parsed) and with the Hugging Face \
tokenizers library on the original tokenizer.json: edge cases (leading, trailing and repeated \
whitespace, newlines, digits, accents, CJK, emoji, code, special tokens written in text, a \
rendered chat) and paragraphs spread over the corpus. It prints the GGUF's tokenizer \
metadata, whether the skip hook covers the architecture, the mismatch rate and the first \
differing texts. Exit status 0: identical on every text; 1: any text differs; 2: bad input.

Without --tokenizer it looks next to the model for <model stem>.tokenizer.json, then
tokenizer.json. For the catalog's gemma3 the catalog's gemma3-tokenizer is fetched on first use.

Example:
  uniskip check -m gemma3
  uniskip check -m model.gguf --tokenizer tokenizer.json --texts 500")]
pub struct CheckArgs {
    /// GGUF file, or a catalog name (`smollm2`, `gemma3`); default: smollm2.
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: Option<String>,
    /// The model's original tokenizer.json [default: next to the model].
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// Text whose paragraphs are compared: `shakespeare` (default) or a UTF-8 file or
    /// directory.
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<String>,
    /// Corpus paragraphs to compare, spread evenly over the text (0: edge cases only).
    #[arg(long, value_name = "N", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub texts: u32,
    /// Differing texts to show.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub examples: usize,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
}

/// Longest corpus paragraph compared, in characters.
const MAX_PARAGRAPH_CHARS: usize = 2000;

/// Runs `uniskip check`.
pub fn run(args: CheckArgs) -> Result<()> {
    let model_path = crate::models::ensure(args.model.as_deref(), crate::models::Progress::Stderr)?;
    let tokenizer_path = match &args.tokenizer {
        Some(p) => p.clone(),
        None => find_tokenizer(args.model.as_deref(), &model_path)?,
    };
    let reference =
        tokcheck::Reference::load(&tokenizer_path).map_err(|e| BadInput(e.to_string()))?;
    let model = Model::load(&model_path, &ModelOptions::default())
        .with_context(|| format!("loading {}", model_path.display()))?;
    let corpus = if args.texts == 0 {
        Vec::new()
    } else {
        let corpus = Corpus::load(args.corpus.as_deref())?;
        tokcheck::cases::corpus_cases(corpus.text(), args.texts as usize, MAX_PARAGRAPH_CHARS)
    };
    let cases = tokcheck::all_cases(&model, &reference, corpus);
    let facts = tokcheck::model_facts(&model)?;
    let report = tokcheck::compare(&model, &reference, facts, &cases, |_| {})?;
    // Which devices llama.cpp sees, and where `run` would put the blocks by default.
    let devices = Placement::devices()?;
    let placement = Placement::planned(-1, model.n_layer())?;
    if args.json {
        println!(
            "{}",
            to_json(&report, &model_path, &tokenizer_path, args.examples)
                .as_object()
                .cloned()
                .map(|mut o| {
                    o.insert("devices".into(), json!(devices));
                    o.insert("placement".into(), json!(placement));
                    serde_json::Value::Object(o)
                })
                .unwrap_or_default()
        );
    } else {
        println!("model: {}", model_path.display());
        println!("tokenizer: {}", tokenizer_path.display());
        println!("devices: {}", devices.join("; "));
        println!(
            "blocks run on (default --gpu-layers -1): {}",
            placement.describe()
        );
        print!("{}", report.render(args.examples));
    }
    if !report.mismatches.is_empty() {
        bail!(
            "llama.cpp and {} tokenize {} of {} texts differently",
            tokenizer_path.display(),
            report.mismatches.len(),
            report.texts
        );
    }
    Ok(())
}

/// The tokenizer beside the model; for a catalog model, its catalog tokenizer (fetched on
/// first use) when the catalog has one.
fn find_tokenizer(spec: Option<&str>, model_path: &std::path::Path) -> Result<PathBuf> {
    let name = spec.unwrap_or("smollm2");
    let catalog_tokenizer = format!("{name}-tokenizer");
    if crate::models::list()?
        .iter()
        .any(|l| l.entry.name == catalog_tokenizer)
    {
        return Ok(crate::models::ensure(
            Some(&catalog_tokenizer),
            crate::models::Progress::Stderr,
        )?);
    }
    tokcheck::find_next_to(model_path).map_err(|e| match e {
        ReferenceError::NotFound { model, tried, .. } => BadInput(
            ReferenceError::NotFound {
                model,
                tried,
                hint: if spec.is_none_or(|s| s == "smollm2") {
                    " (no package carries SmolLM2's tokenizer.json; the catalog has gemma3-tokenizer)".into()
                } else {
                    String::new()
                },
            }
            .to_string(),
        )
        .into(),
        other => BadInput(other.to_string()).into(),
    })
}

fn to_json(
    report: &Report,
    model: &std::path::Path,
    tokenizer: &std::path::Path,
    examples: usize,
) -> serde_json::Value {
    let f = &report.facts;
    json!({
        "model": model.display().to_string(),
        "tokenizer": tokenizer.display().to_string(),
        "architecture": f.architecture,
        "tokenizer_ggml_model": f.tokenizer_model,
        "tokenizer_ggml_pre": f.pre_tokenizer,
        "chat_template": f.chat_template,
        "hook_covers_architecture": f.hook_covers,
        "architecture_verified": f.verified,
        "texts": report.texts,
        "tokens": report.tokens,
        "mismatches": report.mismatches.len(),
        "mismatch_rate": report.mismatch_rate(),
        "examples": report.mismatches.iter().take(examples).map(|m| json!({
            "kind": m.case.kind,
            "text": m.case.text,
            "first_difference": m.first_difference,
            "llama_cpp": m.llama,
            "reference": m.reference,
        })).collect::<Vec<_>>(),
    })
}
