//! `uniskip serve`: an OpenAI-compatible HTTP server on one model, with concurrent requests
//! decoded together in one batch under a shared skip mask (docs/SERVE.md).
//!
//! - [`routes`]: the HTTP side (axum): routes, the API key, validation, responses and
//!   event streams.
//! - [`wire`]: the OpenAI request and response shapes, and uniskip's extension fields.
//! - [`scheduler`]: the engine thread that owns the session and runs every request step by
//!   step (continuous batching).
//! - [`stop`]: stop strings.
//! - [`error`]: errors as OpenAI error objects with their status.

pub mod error;
pub mod protocol;
pub mod routes;
pub mod scheduler;
pub mod stop;
mod validate;
pub mod wire;

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::error::BadInput;
use crate::flags::lossless::LosslessArgs;
use crate::flags::setup::{PlanInputs, RunSetup};
use crate::flags::{ModelArgs, SamplingArgs, SkipArgs};
use crate::skip::SpeedupMode;
use protocol::{Msg, Status};
use scheduler::EngineSetup;

/// Most parallel sequences: from 64 rows on, llama.cpp's CPU attention takes another path
/// that rounds differently from one-row steps (docs/DESIGN.md section 2, edit 5), so a
/// batch of 64 or more sequences would no longer give each one its solo text.
pub const PARALLEL_MAX: u32 = 63;

/// How long connections may stay open after Ctrl+C or SIGTERM ended the generations.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serve the model over HTTP with the OpenAI API; concurrent requests decode together.
#[derive(Debug, Args)]
#[command(
    long_about = "Serve the model over HTTP with the OpenAI API (POST /v1/chat/completions, \
POST /v1/completions, GET /v1/models, GET /health), so editors, agents and the `openai` \
client libraries can use it unchanged.

Up to --parallel requests decode together: one engine thread owns the model's context, and \
every step decodes the waiting token of each running request in one batch per skip mask. A \
request joins the batch at a step boundary (its prompt read in chunks between decode \
steps) and leaves it when done; its cells are freed at once, also when its client \
disconnects. The context is shared: each sequence holds --ctx / --parallel tokens.

The skip, sampling and lossless flags are every request's defaults; a request may set \
`speedup`, `strategy` and `lossless` (and `top_k`, `min_p`, `repeat_penalty`, `ignore_eos`) \
as extra fields of its body. Responses carry `usage` and a `uniskip` object (blocks, \
decode tokens/s, target and achieved speedup, lossless acceptance). Details: docs/SERVE.md.",
    after_help = "Examples:
  uniskip serve                                   # the default model on 127.0.0.1:8080
  uniskip serve -m smollm2 --parallel 8 --speedup 1.25
  uniskip serve --host 0.0.0.0 --api-key \"$KEY\"   # reachable from other machines
  curl -s localhost:8080/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{\"model\": \"smollm2\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"speedup\": 1.5}'"
)]
pub struct ServeArgs {
    /// The model and how to run it.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on. The default, 127.0.0.1, is this machine only; any other
    /// address without --api-key gets a loud warning.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1", value_parser = parse_host)]
    pub host: IpAddr,
    /// Port to listen on (0: any free port; the address is printed on stdout).
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Requests decoded together (sequences sharing the context).
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=PARALLEL_MAX as i64))]
    pub parallel: u32,
    /// Require `Authorization: Bearer KEY` on every request (401 otherwise).
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Most requests waiting for a free sequence; more are refused with 503 and
    /// Retry-After.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_queue: usize,
    /// Largest request body in bytes; larger ones are refused with 413.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_body: usize,
    /// The model's id in responses and `GET /v1/models` [default: the -m name, or the file
    /// name without .gguf].
    #[arg(long, value_name = "ID")]
    pub model_id: Option<String>,
    /// Which blocks to skip (every request's default).
    #[command(flatten)]
    pub skip: SkipArgs,
    /// How tokens are drawn (every request's default; `temperature` and `top_p` of a
    /// request replace them, and a request without `seed` gets a fresh one).
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Lossless decoding (every request's default; a request's `lossless` replaces it).
    #[command(flatten)]
    pub lossless: LosslessArgs,
}

/// `localhost` or an IP address.
fn parse_host(s: &str) -> std::result::Result<IpAddr, String> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    s.parse()
        .map_err(|_| format!("`{s}` is not an IP address (e.g. 127.0.0.1, ::1, 0.0.0.0)"))
}

/// The model's id: `--model-id`, else the -m name as given when it is not a path, else
/// the file's name without `.gguf`.
fn model_id(args: &ServeArgs, path: &std::path::Path) -> String {
    if let Some(id) = &args.model_id {
        return id.clone();
    }
    let stem = || {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    };
    match args.model.model.as_deref() {
        None => "smollm2".into(),
        Some(m) if !m.contains('/') && !m.ends_with(".gguf") => m.to_string(),
        Some(_) => stem(),
    }
}

/// Runs `uniskip serve` until Ctrl+C or SIGTERM.
pub fn run(args: ServeArgs) -> Result<()> {
    if args.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
        return Err(BadInput("--api-key is empty".into()).into());
    }
    if args.max_queue == 0 {
        return Err(BadInput("--max-queue must be at least 1".into()).into());
    }
    let setup = RunSetup::load(&args.model, &args.skip, &args.lossless)?;
    args.model.check_context(&setup.model)?;
    // The server's default plan must be valid before anyone asks for it.
    let inputs = PlanInputs {
        planned_len: 16,
        ..PlanInputs::default()
    };
    let probe_plan = setup
        .plan(&args.skip, inputs)
        .or_else(|e| match args.skip.speedup_mode {
            // Measured mode needs the engine's probe first.
            SpeedupMode::Measured => Ok(crate::skip::Plan::full(setup.model.n_layer())),
            _ => Err(e),
        })?;
    if let Some(notice) = setup.tuned_notice() {
        eprintln!("{notice}");
    }
    let RunSetup {
        path, model, tuned, ..
    } = setup;
    let model = Arc::new(model);
    let parallel = args.parallel;
    let context = args.model.context_options(parallel);
    let slot_cells = context.n_ctx as usize / parallel as usize;
    if slot_cells < 16 {
        return Err(BadInput(format!(
            "--ctx {} shared by --parallel {parallel} leaves {slot_cells} tokens per sequence; raise --ctx",
            context.n_ctx
        ))
        .into());
    }
    let id = model_id(&args, &path);
    let mut aliases = vec![model.name().to_string()];
    if let Some(name) = path.file_name() {
        aliases.push(name.to_string_lossy().into_owned());
    }
    if let Some(stem) = path.file_stem() {
        aliases.push(stem.to_string_lossy().into_owned());
    }
    if let Some(m) = &args.model.model {
        aliases.push(m.clone());
    }
    if let Some(w) = model.unverified_warning().filter(|_| !probe_plan.is_full()) {
        eprintln!("{w}");
    }
    let lossless_args = LosslessArgs {
        lossless: true,
        ..args.lossless.clone()
    };
    if let Some(w) = model.placement().lossless_warning() {
        eprintln!("{w} (for requests with lossless decoding)");
    }

    let status = Arc::new(Status::default());
    let (engine, handle, ready) = scheduler::spawn(
        EngineSetup {
            model: model.clone(),
            model_path: path.clone(),
            model_args: args.model.clone(),
            context,
            slot_cells,
            lossless: lossless_args,
            measure_cost: args.skip.speedup_mode == SpeedupMode::Measured,
        },
        status.clone(),
    )?;
    let state = Arc::new(routes::AppState {
        tuned,
        model: model.clone(),
        model_id: id.clone(),
        model_aliases: aliases,
        model_path: path.clone(),
        skip: args.skip.clone(),
        sampling: args.sampling.clone(),
        lossless: args.lossless.lossless,
        cost: ready.cost,
        slot_cells,
        parallel: parallel as usize,
        n_ctx: context.n_ctx as usize,
        max_queue: args.max_queue,
        max_body: args.max_body,
        api_key: args.api_key.clone(),
        engine: engine.clone(),
        status,
        closing: AtomicBool::new(false),
        next_id: AtomicU64::new(0),
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("uniskip-http")
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let addr = SocketAddr::new(args.host, args.port);
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr().context("reading the bound address")?;
        if !args.host.is_loopback() && args.api_key.is_none() {
            eprintln!(
                "WARNING: listening on {bound} WITHOUT an API key: anyone who can reach this \
                 address can use the model. Give --api-key KEY, or bind 127.0.0.1."
            );
        }
        eprintln!(
            "{id}: {} blocks, {} tokens of context ({slot_cells} per sequence), {parallel} parallel; full depth {:.1} tok/s on {}",
            model.n_layer(),
            context.n_ctx,
            ready.full_depth_tokens_per_s,
            model.placement().describe(),
        );
        // The line scripts and tests wait for, on stdout (a closed stdout is no reason to
        // stop serving).
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "listening on http://{bound}");
        let _ = stdout.flush();
        let shutdown_state = state.clone();
        let shutdown_engine = engine.clone();
        let (signalled_tx, mut signalled) = tokio::sync::watch::channel(false);
        let server = axum::serve(listener, routes::router(state)).with_graceful_shutdown(
            async move {
                shutdown_signal().await;
                eprintln!("shutting down: no new requests; ending the running ones");
                shutdown_state.closing.store(true, Ordering::Relaxed);
                // Running streams get their last chunk and [DONE]; waiting requests a 503.
                let _ = shutdown_engine.send(Msg::Shutdown);
                let _ = signalled_tx.send(true);
            },
        );
        // A client that keeps its connection open after its answer is not waited for
        // long.
        let deadline = async move {
            let _ = signalled.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            r = server => r.context("serving HTTP"),
            () = deadline => Ok(()),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = engine.send(Msg::Shutdown);
    drop(engine);
    let _ = handle.join();
    served
}

/// Resolves on Ctrl+C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
