//! Typed errors of the engine.

use std::path::PathBuf;

/// Everything that can go wrong between a model file and a stream of tokens.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// llama.cpp's backend could not be initialised.
    #[error("cannot initialise llama.cpp: {0}")]
    Backend(String),
    /// The file is not a model llama.cpp can safely load (checked before it sees it).
    #[error(transparent)]
    InvalidModel(#[from] uniskip_gguf::InvalidModel),
    /// The model file could not be loaded.
    #[error("cannot load model {path}: {reason}")]
    Load {
        /// The file given.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A context could not be created.
    #[error("cannot create a context ({0}); try a smaller --ctx or --batch")]
    Context(String),
    /// A mask does not fit the model.
    #[error("the mask has {got} entries but the model has {expected} blocks")]
    MaskLength {
        /// Blocks of the model.
        expected: usize,
        /// Entries in the mask.
        got: usize,
    },
    /// A mask that skips every block.
    #[error("the mask skips all {0} blocks; at least one block must be computed")]
    AllSkipped(usize),
    /// The architecture's graph builder has no skip hook.
    #[error("architecture `{0}` has no skip hook in its layer loop: it can only run at full depth")]
    NoHook(String),
    /// The prompt does not fit in the context.
    #[error(
        "the prompt has {tokens} tokens but the context holds {n_ctx}; use a larger --ctx or a shorter prompt"
    )]
    PromptTooLong {
        /// Prompt tokens (all sequences).
        tokens: usize,
        /// Context size.
        n_ctx: usize,
    },
    /// A batch larger than the context's batch size.
    #[error("a batch of {tokens} tokens exceeds the batch size {n_batch}")]
    BatchTooLarge {
        /// Tokens in the batch.
        tokens: usize,
        /// The context's batch size.
        n_batch: usize,
    },
    /// A sequence id outside the context's parallel sequences.
    #[error("sequence {seq} is outside the context's {n_seq} sequences")]
    BadSequence {
        /// The sequence asked for.
        seq: i32,
        /// Sequences the context was created with.
        n_seq: usize,
    },
    /// The draft model cannot draft for this model.
    #[error(
        "the draft model has a vocabulary of {draft} tokens but the model has {target}; \
         a draft model must share the model's vocabulary"
    )]
    DraftVocabulary {
        /// Tokens in the draft model's vocabulary.
        draft: usize,
        /// Tokens in the model's vocabulary.
        target: usize,
    },
    /// The model drafter was chosen without a draft model.
    #[error("the model drafter needs a draft model (--draft-model FILE)")]
    NoDraftModel,
    /// llama_decode failed.
    #[error("decode failed: {0}")]
    Decode(String),
    /// The chat template could not be applied.
    #[error("cannot apply the model's chat template: {0}")]
    Template(String),
    /// An RPC server given with --rpc cannot be used (malformed, unreachable, another
    /// protocol).
    #[error("{0}")]
    Rpc(String),
    /// The prompt could not be tokenized.
    #[error("cannot tokenize the prompt: {0}")]
    Tokenize(String),
    /// Teacher forcing was given fewer tokens than it is asked to take.
    #[error(
        "the forced text of sequence {seq} holds {tokens} tokens, fewer than the {max_tokens} asked for"
    )]
    ForcedTextShort {
        /// The sequence.
        seq: usize,
        /// Tokens its text holds.
        tokens: usize,
        /// Tokens the request takes.
        max_tokens: usize,
    },
}

impl EngineError {
    /// Whether the input is at fault (exit code 2): the model file, the prompt, the mask,
    /// an architecture without the hook. A failure while running is not (exit code 1).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            EngineError::Load { .. }
                | EngineError::InvalidModel(_)
                | EngineError::PromptTooLong { .. }
                | EngineError::MaskLength { .. }
                | EngineError::AllSkipped(_)
                | EngineError::NoHook(_)
                | EngineError::Tokenize(_)
                | EngineError::Template(_)
                | EngineError::Rpc(_)
                | EngineError::DraftVocabulary { .. }
        )
    }
}

/// Result type of the engine.
pub type Result<T> = std::result::Result<T, EngineError>;
