//! Integration tests on the real models, in one test binary: each binary links llama.cpp,
//! so one binary links it once. Every module is one area of behaviour.

mod common;

mod bench_cli;
mod bounded_memory;
mod cache_layout;
mod calibrate;
mod chat;
mod cli;
mod gemma3;
mod graph_slots;
mod hook_oracles;
mod hostile_input;
mod interrupt;
mod lanes;
mod layers;
mod lossless;
mod lossless_ppl;
mod measured_mode;
mod quality;
mod rpc;
mod serve;
mod setup_check;
mod soak;
mod tokcheck;
mod tune;
mod tune_gemma3;
mod tune_logits;
mod tune_schedule;
mod tuned_files;
