//! The only code that talks to llama.cpp, and the only `unsafe`.
//!
//! Data flows one way: text -> tokens ([`Model::tokenize`]) -> [`Session::decode`] under a
//! mask -> logits -> sampler -> streamed text ([`generate`]).

pub mod cpu;
mod error;
mod generate;
pub mod hook;
mod kv;
mod model;
mod prune;
pub mod rpc;
mod session;

pub use error::{EngineError, Result};
pub use generate::{
    Generation, Piece, PrefillPolicy, Request, Sampling, StopReason, Utf8Stream, generate,
};
pub use kv::SeqLedger;
pub use llama_cpp_2::token::LlamaToken;
pub use model::{ChatMessage, ContextOptions, Model, ModelOptions, VERIFIED_ARCHITECTURES};
pub use prune::write_pruned_model;
pub use session::{BatchToken, RepairStats, Session};
