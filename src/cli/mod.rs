//! The command line: one module per subcommand, shared flags in [`args`].

pub mod args;
pub mod bench;
pub mod calibrate;
pub mod check;
pub mod plan;
pub mod ppl;
pub mod progress;
pub mod rpc_server;
pub mod run;
pub mod soak;

/// The text every speed probe decodes after (the same everywhere, so runs compare).
pub const PROBE_PROMPT: &str =
    "The history of the printing press begins in the fifteenth century, when";

use clap::{Parser, Subcommand};

/// Run quantized GGUF models faster by skipping transformer blocks (Unified Layer Skipping).
///
/// Given a target speedup R, uniskip keeps floor(L/R) of the model's L blocks (always the
/// first and the last, the rest evenly spaced) for every generated token. The prompt runs
/// at full depth, so the K/V cache stays complete, and batching keeps working.
#[derive(Debug, Parser)]
#[command(name = "uniskip", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate text from a prompt, skipping blocks.
    Run(run::RunArgs),
    /// Chat in the terminal, changing the target speedup as it runs.
    Chat(crate::chat::ChatArgs),
    /// Show which blocks a target keeps, without running the model.
    Plan(plan::PlanArgs),
    /// Speed and quality of every strategy at every target, side by side.
    Bench(bench::BenchArgs),
    /// Perplexity and divergence from full depth of one configuration (teacher-forced).
    Ppl(ppl::PplArgs),
    /// Find, per kept count, the blocks whose skipping costs the least; cache the profile.
    Calibrate(calibrate::CalibrateArgs),
    /// Long run with random mask changes: oracles and memory checked at checkpoints.
    Soak(soak::SoakArgs),
    /// Download a catalog model (or all) into the local cache.
    Fetch(FetchArgs),
    /// Compare llama.cpp's tokenizer with the model's original tokenizer.json.
    Check(check::CheckArgs),
    /// Serve this machine's CPU to `--rpc` clients (trusted networks only).
    RpcServer(rpc_server::RpcServerArgs),
}

/// `uniskip fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Catalog names (smollm2, gemma3, shakespeare, gemma3-tokenizer) or `all`; default:
    /// smollm2.
    pub names: Vec<String>,
    /// List the catalog and what is cached instead.
    #[arg(long)]
    pub list: bool,
}

/// Runs `uniskip fetch`.
pub fn fetch(args: FetchArgs) -> anyhow::Result<()> {
    use crate::models;
    if args.list {
        for entry in models::list()? {
            println!("{entry}");
        }
        return Ok(());
    }
    let names: Vec<String> = if args.names.is_empty() {
        vec!["smollm2".into()]
    } else if args.names.iter().any(|n| n == "all") {
        models::list()?
            .into_iter()
            .map(|l| l.entry.name.clone())
            .collect()
    } else {
        args.names.clone()
    };
    for name in names {
        let path = models::fetch(&name, models::Progress::Stderr)?;
        println!("{name}: {}", path.display());
    }
    Ok(())
}

/// An error in what the user gave (a flag value, a prompt, a model file): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// The exit code for an error: 2 when the input was wrong (flags, prompt, model file),
/// 1 when running it failed (a download, the disk, llama.cpp at work).
pub fn exit_code(error: &anyhow::Error) -> u8 {
    use crate::engine::EngineError;
    let bad_input = error.chain().any(|cause| {
        cause.is::<BadInput>()
            // A name or path that is not a model; not a download or disk that failed.
            || matches!(
                cause.downcast_ref::<crate::models::ModelError>(),
                Some(
                    crate::models::ModelError::Unknown { .. }
                        | crate::models::ModelError::NotFound { .. }
                        | crate::models::ModelError::Missing { .. }
                )
            )
            || cause.is::<crate::models::HeaderError>()
            || cause.is::<crate::models::InvalidModel>()
            || cause.is::<crate::skip::PlanError>()
            || cause.is::<crate::skip::CostError>()
            || cause.is::<crate::skip::LayerListError>()
            || matches!(
                cause.downcast_ref::<EngineError>(),
                Some(
                    EngineError::Load { .. }
                        | EngineError::InvalidModel(_)
                        | EngineError::PromptTooLong { .. }
                        | EngineError::MaskLength { .. }
                        | EngineError::AllSkipped(_)
                        | EngineError::NoHook(_)
                        | EngineError::Tokenize(_)
                        | EngineError::Template(_)
                        | EngineError::Rpc(_)
                )
            )
    });
    if bad_input { 2 } else { 1 }
}

/// Parses a target speedup: a finite number >= 1 (the upper bound depends on the model and
/// is checked once its block count is known).
pub fn parse_speedup(s: &str) -> std::result::Result<f64, String> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number; give a speedup such as 1.5"))?;
    if !r.is_finite() || r < 1.0 {
        return Err(format!(
            "{s} is out of range: a speedup is a number >= 1 (1 = full depth) and at most half the model's block count"
        ));
    }
    Ok(r)
}
