//! `uniskip rpc-server`: lend this machine's CPU to `--rpc` clients (llama.cpp's ggml-rpc).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::error::BadInput;

/// Serve this machine's CPU to `uniskip ... --rpc HOST:PORT` clients.
#[derive(Debug, Args)]
#[command(
    after_help = "Runs llama.cpp's RPC server (ggml-rpc) on this machine's CPU \
backend. A client started with --rpc HOST:PORT[,HOST:PORT...] keeps the token embeddings and \
builds every graph (so skipping works unchanged) and offloads the blocks to the servers, \
split by the memory each reports free. The server runs until it is stopped (Ctrl+C).

SECURITY: the protocol has no authentication and no encryption: anyone who can reach the \
port can run computations and read what is sent. The server listens on 127.0.0.1 unless \
--host says otherwise; use another host only on a network you trust.

Example (two machines, same uniskip build):
  gpu-box$ uniskip rpc-server --host 10.0.0.2 --port 50052
  laptop$  uniskip run --rpc 10.0.0.2:50052 -p \"Hello\""
)]
pub struct RpcServerArgs {
    /// Address to listen on; anything but loopback exposes the machine (see below).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 50052, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// CPU threads for the computations [default: all cores].
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Directory where the server caches tensors by hash, so a client that reconnects
    /// sends large weights only once [default: no cache].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// Runs `uniskip rpc-server` until it is stopped.
pub fn run(args: RpcServerArgs) -> Result<()> {
    let endpoint = if args.host.contains(':') && !args.host.starts_with('[') {
        format!("[{}]:{}", args.host, args.port)
    } else {
        format!("{}:{}", args.host, args.port)
    };
    let addr = crate::engine::rpc::parse_endpoint(&endpoint)?;
    if !is_loopback(addr.ip()) {
        eprintln!(
            "warning: listening on {endpoint}, reachable from other machines. The RPC protocol has \
             no authentication: anyone who reaches this port can use this machine. Run it only on a \
             network you trust."
        );
    }
    if let Some(dir) = &args.cache {
        std::fs::create_dir_all(dir)
            .map_err(|e| BadInput(format!("cannot use cache directory {}: {e}", dir.display())))?;
    }
    let threads = args.threads.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    eprintln!(
        "uniskip rpc-server: serving this machine's CPU ({threads} threads) on {endpoint}{}; Ctrl+C stops it",
        args.cache
            .as_ref()
            .map(|d| format!(", tensor cache {}", d.display()))
            .unwrap_or_default()
    );
    crate::engine::rpc::serve(&endpoint, args.cache.as_deref(), threads)?;
    Ok(())
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}
