//! The command line: one module per subcommand (`chat` and `serve` are apps of their own,
//! [`crate::chat`] and [`crate::serve`]); the flags they share are in [`crate::flags`].

pub mod bench;
pub mod bench_lossless;
pub mod calibrate;
pub mod check;
pub mod plan;
pub mod ppl;
mod ppl_lossless;
pub mod progress;
pub mod rpc_server;
pub mod run;
pub mod soak;
pub mod tune;

use clap::{Parser, Subcommand};

/// Run quantized GGUF models faster by skipping transformer blocks (Unified Layer Skipping).
///
/// Given a target speedup R, uniskip keeps floor(L/R) of the model's L blocks (always the
/// first and the last, the rest evenly spaced) for every generated token. The prompt runs
/// at full depth, so the K/V cache stays complete, and batching keeps working.
#[derive(Debug, Parser)]
#[command(name = "uniskip", version, about, long_about)]
pub struct Cli {
    /// What to do.
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
    /// Serve the model over HTTP with the OpenAI API; concurrent requests decode together.
    Serve(crate::serve::ServeArgs),
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
    /// Fine-tune a model for one skip mask and write it as a tuned GGUF.
    Tune(tune::TuneArgs),
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
    /// Catalog names (smollm2, gemma3, shakespeare, alice, gemma3-tokenizer) or `all`; default:
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
