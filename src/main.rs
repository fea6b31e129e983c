//! The `uniskip` binary.

use std::process::ExitCode;

use clap::Parser;
use uniskip::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => uniskip::cli::run::run(args),
        Command::Chat(args) => uniskip::chat::run(args),
        Command::Serve(args) => uniskip::serve::run(args),
        Command::Plan(args) => uniskip::cli::plan::run(args),
        Command::Soak(args) => uniskip::cli::soak::run(args),
        Command::Bench(args) => uniskip::cli::bench::run(args),
        Command::Ppl(args) => uniskip::cli::ppl::run(args),
        Command::Calibrate(args) => uniskip::cli::calibrate::run(args),
        Command::Tune(args) => uniskip::cli::tune::run(args),
        Command::Fetch(args) => uniskip::cli::fetch(args),
        Command::Check(args) => uniskip::cli::check::run(args),
        Command::RpcServer(args) => uniskip::cli::rpc_server::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            let causes: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("error: {}", causes.join(": "));
            ExitCode::from(uniskip::error::exit_code(&e))
        }
    }
}
