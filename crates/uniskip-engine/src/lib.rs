//! The only code that talks to llama.cpp, and the only `unsafe`.
//!
//! Data flows one way: text -> tokens ([`Model::tokenize`]) -> [`Session::decode`] under a
//! mask -> logits -> sampler -> streamed text ([`generate`], or [`Lanes`] step by step for
//! sequences that join and leave a running batch).

#[allow(unsafe_code)]
pub mod cpu;
mod error;
mod generate;
// The FFI modules: the only places `unsafe` is allowed (Cargo.toml denies it elsewhere).
#[allow(unsafe_code)]
pub mod hook;
mod kv;
mod lanes;
#[allow(unsafe_code)]
mod metadata;
mod model;
#[allow(unsafe_code)]
mod prune;
#[allow(unsafe_code)]
pub mod rpc;
mod sampling;
mod session;
pub mod speculative;
#[allow(unsafe_code)]
mod train;
mod utf8;

pub use error::{EngineError, Result};
pub use generate::{
    Generation, Piece, PrefillPolicy, Request, StopReason, generate, generate_forced,
};
pub use kv::SeqLedger;
pub use lanes::{LanePhase, LaneReport, LaneSpec, Lanes, SHARED_PREFILL_ROWS};
pub use llama_cpp_2::token::LlamaToken;
pub use metadata::{MetaValue, write_with_metadata};
pub use model::{
    ChatMessage, ContextOptions, Model, ModelOptions, Placement, VERIFIED_ARCHITECTURES,
};
pub use prune::write_pruned_model;
pub use sampling::{ForcedRow, Forcing, Observer, Sampling};
pub use session::{BatchToken, RepairStats, Session};
pub use speculative::{Drafter, Lossless, SpeculationStats};
pub use train::{Trainer, TrainerOptions, TrainingMask, WINDOW_QUANTUM, quantize, write_f32_model};
pub use utf8::Utf8Stream;
