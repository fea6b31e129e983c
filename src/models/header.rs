//! What a GGUF file says about its model, read from the header alone (no weights loaded).

use std::path::Path;

/// The facts `uniskip plan` needs from a GGUF header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `general.architecture` (`llama`, `gemma3`, ...).
    pub architecture: String,
    /// `general.name`, when present.
    pub name: Option<String>,
    /// `<architecture>.block_count`: the number of transformer blocks.
    pub block_count: usize,
}

/// Why a header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The GGUF parser refused the file.
    #[error("{path}: not a readable GGUF file ({reason})")]
    Unreadable {
        /// The file.
        path: String,
        /// What the parser said.
        reason: String,
    },
    /// A key the header must have is missing or has the wrong type.
    #[error("{path}: the GGUF header has no {key}")]
    MissingKey {
        /// The file.
        path: String,
        /// The key looked for.
        key: String,
    },
}

impl HeaderError {
    /// Always the input's fault (exit code 2): the file is not a readable GGUF.
    pub fn is_user_error(&self) -> bool {
        true
    }
}

/// Reads the header of the GGUF file at `path`.
///
/// The file is first checked by [`validate_file`](super::validate_file): gguf-rs panics or
/// allocates without bound on some malformed files, so it only ever sees files whose
/// structure is known to be sound, and a panic inside it is still caught.
pub fn read_header(path: &Path) -> Result<Header, HeaderError> {
    let shown = path.display().to_string();
    let unreadable = |reason: String| HeaderError::Unreadable {
        path: shown.clone(),
        reason,
    };
    let summary = super::validate_file(path).map_err(|e| unreadable(e.problem.to_string()))?;
    let file = path
        .to_str()
        .ok_or_else(|| unreadable("the path is not valid UTF-8".into()))?;
    let parsed =
        std::panic::catch_unwind(|| gguf_rs::get_gguf_container(file).and_then(|mut c| c.decode()))
            .map_err(|_| unreadable("the GGUF parser panicked on this file".into()))?;
    let model = parsed.map_err(|e| unreadable(e.to_string()))?;
    let meta = model.metadata();
    let text = |key: &str| meta.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let missing = |key: String| HeaderError::MissingKey {
        path: shown.clone(),
        key,
    };
    let architecture =
        text("general.architecture").ok_or_else(|| missing("general.architecture".into()))?;
    let count_key = format!("{architecture}.block_count");
    let block_count = meta
        .get(&count_key)
        .and_then(|v| v.as_u64())
        .ok_or_else(|| missing(count_key.clone()))? as usize;
    // Two readers of one header must agree; if they do not, trust neither.
    if architecture != summary.architecture || block_count != summary.block_count {
        return Err(unreadable(format!(
            "readers disagree: {architecture}/{block_count} blocks vs {}/{} blocks",
            summary.architecture, summary.block_count
        )));
    }
    Ok(Header {
        name: text("general.name"),
        architecture,
        block_count,
    })
}
