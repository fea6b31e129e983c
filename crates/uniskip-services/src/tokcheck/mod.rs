//! Checks a GGUF model's tokenizer (llama.cpp's, from the file's metadata) against the
//! model's original `tokenizer.json` (run by the Hugging Face `tokenizers` crate).
//!
//! A GGUF converted with a wrong or missing pre-tokenizer (`tokenizer.ggml.pre`) tokenizes
//! differently from the model it came from, and every quality number measured on it is
//! off. Both tokenizers run on the same texts — edge cases where pre-tokenizers differ, and
//! a slice of a corpus — without BOS/EOS, special tokens in the text parsed by both; any
//! text whose token ids differ is a mismatch.

pub mod cases;
mod reference;

use std::fmt::Write as _;

use uniskip_engine::{ContextOptions, Model};

pub use cases::Case;
pub use reference::{Reference, ReferenceError, find_next_to};

/// One text the two tokenizers split differently.
#[derive(Debug, Clone)]
pub struct Mismatch {
    /// The text and its kind.
    pub case: Case,
    /// llama.cpp's token ids.
    pub llama: Vec<u32>,
    /// The reference tokenizer's token ids.
    pub reference: Vec<u32>,
    /// Index of the first token that differs.
    pub first_difference: usize,
    /// llama.cpp's tokens from a little before the first difference, as text.
    pub llama_pieces: Vec<String>,
    /// The reference's tokens from the same place, as its vocabulary writes them.
    pub reference_pieces: Vec<String>,
}

/// What the GGUF says about its tokenizer, and whether skipping works on it.
#[derive(Debug, Clone)]
pub struct ModelFacts {
    /// `general.architecture`.
    pub architecture: String,
    /// `tokenizer.ggml.model` (`gpt2`, `llama`, ...).
    pub tokenizer_model: Option<String>,
    /// `tokenizer.ggml.pre`: the pre-tokenizer llama.cpp applies (None: the default).
    pub pre_tokenizer: Option<String>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
    /// Whether the architecture's graph builder consults the skip hook.
    pub hook_covers: bool,
    /// Whether uniskip's tests verify skipping on this architecture.
    pub verified: bool,
}

/// The outcome of a check.
#[derive(Debug, Clone)]
pub struct Report {
    /// The GGUF's tokenizer metadata.
    pub facts: ModelFacts,
    /// Texts compared.
    pub texts: usize,
    /// Tokens llama.cpp produced over all texts.
    pub tokens: usize,
    /// Every text that tokenized differently.
    pub mismatches: Vec<Mismatch>,
}

impl Report {
    /// The fraction of texts that tokenized differently.
    pub fn mismatch_rate(&self) -> f64 {
        if self.texts == 0 {
            0.0
        } else {
            self.mismatches.len() as f64 / self.texts as f64
        }
    }

    /// Human-readable report showing the first `examples` mismatches.
    pub fn render(&self, examples: usize) -> String {
        let f = &self.facts;
        let mut out = String::new();
        let none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
        let _ = writeln!(out, "architecture: {}", f.architecture);
        let _ = writeln!(
            out,
            "tokenizer.ggml.model: {}, tokenizer.ggml.pre: {}",
            none(&f.tokenizer_model),
            none(&f.pre_tokenizer)
        );
        let template = match &f.chat_template {
            None => "(none)".to_string(),
            Some(t) => format!("{} chars, begins {}", t.chars().count(), quote(t, 60)),
        };
        let _ = writeln!(out, "chat template: {template}");
        let hook = match (f.hook_covers, f.verified) {
            (true, true) => "covers this architecture (skipping verified by uniskip's tests)",
            (true, false) => "covers this architecture (skipping not verified by uniskip's tests)",
            (false, _) => "does not cover this architecture: only full depth can run",
        };
        let _ = writeln!(out, "skip hook: {hook}");
        let _ = writeln!(
            out,
            "compared {} texts ({} tokens): {} differ, mismatch rate {:.1}%",
            self.texts,
            self.tokens,
            self.mismatches.len(),
            100.0 * self.mismatch_rate()
        );
        for m in self.mismatches.iter().take(examples) {
            let _ = writeln!(
                out,
                "  [{}] {}\n    first difference at token {} (llama.cpp {} tokens, reference {})\n    llama.cpp: {}\n    reference: {}",
                m.case.kind,
                quote(&m.case.text, 100),
                m.first_difference,
                m.llama.len(),
                m.reference.len(),
                m.llama_pieces.join(" | "),
                m.reference_pieces.join(" | "),
            );
        }
        if self.mismatches.len() > examples {
            let _ = writeln!(out, "  ... and {} more", self.mismatches.len() - examples);
        }
        out
    }
}

/// Tokens shown before the first difference, for context.
const CONTEXT_TOKENS: usize = 2;
/// Tokens shown from the first difference on.
const SHOWN_TOKENS: usize = 6;

/// Reads the model's tokenizer metadata and whether the hook covers its architecture
/// (a small context is created: its graph reservation consults the hook).
pub fn model_facts(model: &Model) -> uniskip_engine::Result<ModelFacts> {
    let session = model.session(&ContextOptions {
        n_ctx: 64,
        n_batch: 32,
        n_seq: 1,
        threads: 1,
    })?;
    let arch = model.architecture().to_string();
    Ok(ModelFacts {
        verified: uniskip_engine::VERIFIED_ARCHITECTURES.contains(&arch.as_str()),
        architecture: arch,
        tokenizer_model: model.metadata("tokenizer.ggml.model"),
        pre_tokenizer: model.metadata("tokenizer.ggml.pre"),
        chat_template: model.metadata("tokenizer.chat_template"),
        hook_covers: session.hook_covers_model(),
    })
}

/// The texts to compare on: the edge cases, special tokens the reference declares written
/// into text, a chat rendered with the model's template when it has one, and `corpus`.
pub fn all_cases(model: &Model, reference: &Reference, corpus: Vec<Case>) -> Vec<Case> {
    let mut texts = cases::edge_cases();
    texts.extend(cases::special_token_cases(&reference.special_tokens()));
    if model.has_chat_template() {
        let chat = [
            uniskip_engine::ChatMessage {
                role: "system".into(),
                content: "You are terse.".into(),
            },
            uniskip_engine::ChatMessage {
                role: "user".into(),
                content: "What is 2 + 2?".into(),
            },
        ];
        if let Ok(text) = model.apply_chat_template(&chat) {
            texts.push(Case {
                kind: "chat template",
                text,
            });
        }
    }
    texts.extend(corpus);
    texts
}

/// Tokenizes every case with llama.cpp (no BOS, specials parsed) and with the reference,
/// and collects the texts whose ids differ. `progress` is called after each text.
pub fn compare(
    model: &Model,
    reference: &Reference,
    facts: ModelFacts,
    cases: &[Case],
    mut progress: impl FnMut(usize),
) -> anyhow::Result<Report> {
    let mut mismatches = Vec::new();
    let mut tokens = 0;
    for (i, case) in cases.iter().enumerate() {
        let llama: Vec<u32> = if case.text.is_empty() {
            Vec::new()
        } else {
            model
                .tokenize(&case.text, false)?
                .iter()
                .map(|t| t.0 as u32)
                .collect()
        };
        let theirs = reference.encode(&case.text).map_err(|e| {
            anyhow::anyhow!(
                "the reference tokenizer failed on {}: {e}",
                quote(&case.text, 40)
            )
        })?;
        tokens += llama.len();
        if llama != theirs {
            mismatches.push(describe(model, reference, case, llama, theirs));
        }
        progress(i + 1);
    }
    Ok(Report {
        facts,
        texts: cases.len(),
        tokens,
        mismatches,
    })
}

fn describe(
    model: &Model,
    reference: &Reference,
    case: &Case,
    llama: Vec<u32>,
    theirs: Vec<u32>,
) -> Mismatch {
    let first = llama
        .iter()
        .zip(&theirs)
        .position(|(a, b)| a != b)
        .unwrap_or(llama.len().min(theirs.len()));
    let from = first.saturating_sub(CONTEXT_TOKENS);
    let shown = SHOWN_TOKENS + CONTEXT_TOKENS;
    let window = |ids: &[u32]| -> Vec<u32> { ids.iter().skip(from).take(shown).copied().collect() };
    let llama_pieces = window(&llama)
        .into_iter()
        .map(|id| {
            let bytes = model.token_bytes(uniskip_engine::LlamaToken(id as i32));
            format!("{id}:{}", quote(&String::from_utf8_lossy(&bytes), 20))
        })
        .collect();
    let reference_pieces = window(&theirs)
        .into_iter()
        .map(|id| format!("{id}:{}", quote(&reference.token_text(id), 20)))
        .collect();
    Mismatch {
        case: case.clone(),
        llama,
        reference: theirs,
        first_difference: first,
        llama_pieces,
        reference_pieces,
    }
}

/// `text` quoted with escapes (newlines, tabs visible), cut to `max` characters.
fn quote(text: &str, max: usize) -> String {
    let n = text.chars().count();
    let cut: String = text.chars().take(max).collect();
    let mut q = format!("{cut:?}");
    if n > max {
        q.push('…');
    }
    q
}
