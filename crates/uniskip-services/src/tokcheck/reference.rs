//! The reference tokenizer: the model's original `tokenizer.json`, run by the Hugging Face
//! `tokenizers` crate.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

/// Why the reference tokenizer cannot be used (all bad input: a path the user gave or
/// a file next to the model).
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// No `--tokenizer`, and no tokenizer file next to the model.
    #[error(
        "no tokenizer.json next to {} (looked for {}); pass --tokenizer FILE{}",
        model.display(),
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and "),
        hint
    )]
    NotFound {
        /// The GGUF file.
        model: PathBuf,
        /// The tokenizer files looked for.
        tried: Vec<PathBuf>,
        /// What else to try, appended to the message (may be empty).
        hint: String,
    },
    /// The file cannot be read or is not a tokenizer the crate understands.
    #[error("cannot load tokenizer {}: {reason}", path.display())]
    Broken {
        /// The tokenizer file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A loaded `tokenizer.json`.
pub struct Reference {
    tokenizer: Tokenizer,
    path: PathBuf,
}

impl Reference {
    /// Loads `path`.
    pub fn load(path: &Path) -> Result<Reference, ReferenceError> {
        let broken = |reason: String| ReferenceError::Broken {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(broken("no such file".into()));
        }
        let tokenizer = Tokenizer::from_file(path).map_err(|e| broken(e.to_string()))?;
        Ok(Reference {
            tokenizer,
            path: path.to_path_buf(),
        })
    }

    /// Where it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Token ids of `text`, without the BOS/EOS the post-processor would add; special
    /// tokens written in the text are matched, as llama.cpp does when it parses specials.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }

    /// The vocabulary entry of token `id`, as the file writes it.
    pub fn token_text(&self, id: u32) -> String {
        self.tokenizer
            .id_to_token(id)
            .unwrap_or_else(|| format!("<id {id}?>"))
    }

    /// The special tokens the file declares (added tokens marked special), in id order,
    /// leaving out placeholders such as `<unused12>`.
    pub fn special_tokens(&self) -> Vec<String> {
        let mut specials: Vec<(u32, String)> = self
            .tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special && !t.content.contains("unused") && t.content.len() > 1)
            .map(|(id, t)| (id, t.content))
            .collect();
        specials.sort();
        specials.into_iter().map(|(_, s)| s).collect()
    }
}

/// The tokenizer file for the GGUF at `model`: `<stem>.tokenizer.json` beside it, else
/// `tokenizer.json` in the same directory.
pub fn find_next_to(model: &Path) -> Result<PathBuf, ReferenceError> {
    let dir = model.parent().unwrap_or(Path::new("."));
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tried = vec![
        dir.join(format!("{stem}.tokenizer.json")),
        dir.join("tokenizer.json"),
    ];
    if let Some(found) = tried.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    Err(ReferenceError::NotFound {
        model: model.to_path_buf(),
        tried,
        hint: String::new(),
    })
}
