//! The HTTP side: routes, the API key check, request validation, and turning the engine's
//! events into responses and server-sent event streams.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::error::ApiError;
use super::scheduler::{Event, Job, Msg, Status};
use super::wire::{ChatRequest, CompletionRequest, Content, Endpoint, Header, Prompt, Settings};
use crate::engine::{ChatMessage, LlamaToken, Model, Sampling};
use crate::flags::lossless::drafting_plan;
use crate::flags::{SamplingArgs, SkipArgs};
use crate::skip::{CostModel, Plan, Strategy};

/// What every handler shares.
pub struct AppState {
    /// The model (for tokenizing and the chat template; decoding is the engine's).
    pub model: Arc<Model>,
    /// The model's id in responses and `GET /v1/models`.
    pub model_id: String,
    /// Other names a request may give for the model (the file name, the catalog name).
    pub model_aliases: Vec<String>,
    /// The model file (for a calibration profile a request asks for).
    pub model_path: std::path::PathBuf,
    /// What a tuned model file says of its tuning: its own mask is the default plan.
    pub tuned: Option<crate::tune::TunedInfo>,
    /// The server's skip flags: every request's defaults.
    pub skip: SkipArgs,
    /// The server's sampling flags: every request's defaults.
    pub sampling: SamplingArgs,
    /// Whether requests decode losslessly unless they say otherwise.
    pub lossless: bool,
    /// The cost model (`--speedup-mode measured`).
    pub cost: Option<CostModel>,
    /// Cells each sequence may hold.
    pub slot_cells: usize,
    /// `--parallel`.
    pub parallel: usize,
    /// The whole context.
    pub n_ctx: usize,
    /// `--max-queue`.
    pub max_queue: usize,
    /// `--max-body`.
    pub max_body: usize,
    /// `--api-key`.
    pub api_key: Option<String>,
    /// The engine thread's mailbox.
    pub engine: Sender<Msg>,
    /// What the engine publishes.
    pub status: Arc<Status>,
    /// Set when shutting down: new requests are refused.
    pub closing: std::sync::atomic::AtomicBool,
    /// Numbers response ids.
    pub next_id: AtomicU64,
}

/// The router with every route, the API key check and the body limit.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_body;
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .fallback(|| async {
            ApiError::not_found("no such route (see GET /v1/models)", "not_found")
        })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Refuses a request without the API key, when the server has one.
async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| same_secret(g.as_bytes(), key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let s = &state.status;
    axum::Json(json!({
        "status": if state.closing.load(Ordering::Relaxed) { "shutting_down" } else { "ok" },
        "model": state.model_id,
        "slots": state.parallel,
        "slots_busy": s.busy.load(Ordering::Relaxed),
        "waiting": s.waiting.load(Ordering::Relaxed),
        "kv_cells": state.n_ctx,
        "kv_cells_used": s.cells_used.load(Ordering::Relaxed),
        "cells_per_sequence": state.slot_cells,
        "served": s.served.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": state.model_id,
            "object": "model",
            "created": 0,
            "owned_by": "uniskip",
            "n_layer": state.model.n_layer(),
            "context_per_sequence": state.slot_cells,
        }],
    }))
    .into_response()
}

/// Parses a JSON body: 413 over the limit, 400 for bad JSON or wrong types.
fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::too_large(limit));
        }
        Err(e) => return Err(ApiError::bad_request(format!("cannot read the body: {e}"))),
    };
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("the body does not fit the API: {e}")))
}

async fn chat(State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>) -> Response {
    let request: ChatRequest = match parse(body, state.max_body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = check_model(&state, &request.settings) {
        return e.into_response();
    }
    let text = match chat_prompt(&state, &request) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    serve(&state, Endpoint::Chat, &text, request.settings)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request: CompletionRequest = match parse(body, state.max_body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = check_model(&state, &request.settings) {
        return e.into_response();
    }
    let prompt = match request.prompt {
        Prompt::One(p) => p,
        Prompt::Many(mut v) if v.len() == 1 => v.remove(0),
        Prompt::Many(_) => {
            return ApiError::bad_request("one prompt per request is served")
                .param("prompt")
                .into_response();
        }
    };
    serve(&state, Endpoint::Completions, &prompt, request.settings)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The conversation rendered by the model's chat template.
fn chat_prompt(state: &AppState, request: &ChatRequest) -> Result<String, ApiError> {
    if request.messages.is_empty() {
        return Err(ApiError::bad_request("`messages` is empty").param("messages"));
    }
    if !state.model.has_chat_template() {
        return Err(ApiError::bad_request(format!(
            "{} has no chat template: use /v1/completions",
            state.model_id
        )));
    }
    let mut messages = Vec::with_capacity(request.messages.len());
    for (i, m) in request.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(ApiError::bad_request(format!(
                    "message {i} has role `{other}`; served roles: system, developer, user, assistant"
                ))
                .param(format!("messages[{i}].role")));
            }
        };
        let content = match &m.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    if p.kind != "text" {
                        return Err(ApiError::bad_request(format!(
                            "message {i} has a `{}` part; only text is served",
                            p.kind
                        ))
                        .param(format!("messages[{i}].content")));
                    }
                    text.push_str(p.text.as_deref().unwrap_or(""));
                }
                text
            }
        };
        if content.contains('\0') {
            return Err(
                ApiError::bad_request(format!("message {i} contains a NUL byte"))
                    .param(format!("messages[{i}].content")),
            );
        }
        messages.push(ChatMessage {
            role: role.into(),
            content,
        });
    }
    state
        .model
        .apply_chat_template(&messages)
        .map_err(|e| ApiError::bad_request(format!("the chat template failed: {e}")))
}

/// What a request asks for, checked.
struct Checked {
    tokens: Vec<LlamaToken>,
    max_tokens: usize,
    sampling: Sampling,
    plan: Plan,
    lossless: bool,
    stop: Vec<String>,
    stream: bool,
    include_usage: bool,
}

/// 404 unless the request names the served model (or names none).
fn check_model(state: &AppState, s: &Settings) -> Result<(), ApiError> {
    if let Some(name) = s.model.as_deref().filter(|m| !m.is_empty())
        && name != state.model_id
        && !state.model_aliases.iter().any(|a| a == name)
    {
        return Err(ApiError::not_found(
            format!(
                "the model `{name}` is not served here; this server serves `{}`",
                state.model_id
            ),
            "model_not_found",
        )
        .param("model"));
    }
    Ok(())
}

/// Checks one request's settings against the model and the server's defaults.
fn check(state: &AppState, prompt: &str, s: Settings) -> Result<Checked, ApiError> {
    if s.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("only n = 1 is served").param("n"));
    }
    if prompt.contains('\0') {
        return Err(ApiError::bad_request("the prompt contains a NUL byte").param("prompt"));
    }
    if prompt.is_empty() {
        return Err(ApiError::bad_request("the prompt is empty").param("prompt"));
    }
    let tokens = state
        .model
        .tokenize(prompt, true)
        .map_err(|e| ApiError::bad_request(format!("cannot tokenize the prompt: {e}")))?;
    if tokens.len() >= state.slot_cells {
        return Err(ApiError::bad_request(format!(
            "the prompt is {} tokens, and a sequence holds {} ({} context tokens shared by {} parallel sequences, --ctx / --parallel): shorten the prompt or raise --ctx",
            tokens.len(),
            state.slot_cells,
            state.n_ctx,
            state.parallel
        ))
        .code("context_length_exceeded")
        .param("messages"));
    }
    let room = state.slot_cells - tokens.len();
    let max_tokens = match s.max_completion_tokens.or(s.max_tokens) {
        Some(0) => {
            return Err(ApiError::bad_request("max_tokens must be at least 1").param("max_tokens"));
        }
        Some(n) => (n as usize).min(room),
        None => room,
    };
    let sampling = sampling(state, &s)?;
    let plan = plan(state, &s, max_tokens, sampling.seed)?;
    let lossless = s.lossless.unwrap_or(state.lossless);
    let plan = if lossless {
        drafting_plan(
            &skip_args(state, &s)?,
            plan,
            state.model.n_layer(),
            max_tokens,
            u64::from(sampling.seed),
        )
        .map_err(|e| ApiError::bad_request(format!("{e:#}")).param("speedup"))?
    } else {
        plan
    };
    let stop = s.stop.map(|s| s.into_vec()).unwrap_or_default();
    if stop.len() > 16 {
        return Err(ApiError::bad_request("at most 16 stop strings").param("stop"));
    }
    Ok(Checked {
        tokens,
        max_tokens,
        sampling,
        plan,
        lossless,
        stop,
        stream: s.stream.unwrap_or(false),
        include_usage: s.stream_options.is_some_and(|o| o.include_usage),
    })
}

/// The sampling settings: the request's, else the server's flags. Without a seed a
/// request gets a fresh one (so that sampled requests differ, as clients expect).
fn sampling(state: &AppState, s: &Settings) -> Result<Sampling, ApiError> {
    let mut sampling = state
        .sampling
        .sampling()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let check = |ok: bool, param: &str, range: &str| {
        if ok {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!("{param} must be {range}")).param(param))
        }
    };
    if let Some(t) = s.temperature {
        check(
            t.is_finite() && (0.0..=100.0).contains(&t),
            "temperature",
            "from 0 to 100",
        )?;
        sampling.temperature = t;
    }
    if let Some(p) = s.top_p {
        check(
            p.is_finite() && (0.0..=1.0).contains(&p),
            "top_p",
            "from 0 to 1",
        )?;
        sampling.top_p = p;
    }
    if let Some(p) = s.min_p {
        check(
            p.is_finite() && (0.0..=1.0).contains(&p),
            "min_p",
            "from 0 to 1",
        )?;
        sampling.min_p = p;
    }
    if let Some(k) = s.top_k {
        check(k >= 0, "top_k", "0 or more")?;
        sampling.top_k = k;
    }
    if let Some(r) = s.repeat_penalty {
        check(
            r.is_finite() && (0.01..=10.0).contains(&r),
            "repeat_penalty",
            "from 0.01 to 10",
        )?;
        sampling.repeat_penalty = r;
    }
    if let Some(i) = s.ignore_eos {
        sampling.ignore_eos = i;
    }
    sampling.seed = match s.seed {
        Some(seed) => u32::try_from(seed).map_err(|_| {
            ApiError::bad_request("seed must be from 0 to 4294967295").param("seed")
        })?,
        None => fresh_seed(state),
    };
    Ok(sampling)
}

fn fresh_seed(state: &AppState) -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ (state.next_id.load(Ordering::Relaxed) as u32).wrapping_mul(0x9E37_79B9)
}

/// The server's skip flags with the request's `speedup` and `strategy` in place.
fn skip_args(state: &AppState, s: &Settings) -> Result<SkipArgs, ApiError> {
    let mut skip = state.skip.clone();
    if let Some(r) = s.speedup {
        crate::flags::parse_speedup(&r.to_string())
            .map_err(|e| ApiError::bad_request(format!("speedup: {e}")).param("speedup"))?;
        skip.speedup = r;
        skip.skip_layers = None;
    }
    if let Some(name) = &s.strategy {
        let strategy: Strategy = name.parse().map_err(|e: crate::skip::ParseNameError| {
            ApiError::bad_request(format!("strategy: {e}")).param("strategy")
        })?;
        if strategy == Strategy::Manual {
            return Err(ApiError::bad_request(
                "strategy: manual masks are set with the server's --skip-layers",
            )
            .param("strategy"));
        }
        skip.strategy = strategy;
        skip.skip_layers = None;
    }
    Ok(skip)
}

/// The request's plan: the server's (a tuned file's own mask, unless overridden), or one
/// made from the request's `speedup` and `strategy`.
fn plan(state: &AppState, s: &Settings, max_tokens: usize, seed: u32) -> Result<Plan, ApiError> {
    let skip = skip_args(state, s)?;
    let bad = |e: anyhow::Error| {
        let causes: Vec<String> = e.chain().map(ToString::to_string).collect();
        ApiError::bad_request(causes.join(": ")).param(if s.strategy.is_some() {
            "strategy"
        } else {
            "speedup"
        })
    };
    if let Some(info) = state
        .tuned
        .as_ref()
        .filter(|_| !crate::flags::tuned::overrides_tuned(&skip))
    {
        return crate::flags::tuned::tuned_plan(
            info,
            state.model.n_layer(),
            max_tokens,
            u64::from(seed),
        )
        .map_err(bad);
    }
    let profile = skip
        .calibration_masks(Some(&state.model_path), None)
        .map_err(bad)?;
    skip.plan_with(
        state.model.n_layer(),
        max_tokens,
        u64::from(seed),
        state.cost.as_ref(),
        profile.as_deref(),
    )
    .map_err(bad)
}

/// Queues a checked request and answers it: one JSON object, or an event stream.
async fn serve(
    state: &Arc<AppState>,
    endpoint: Endpoint,
    prompt: &str,
    settings: Settings,
) -> Result<Response, ApiError> {
    let checked = check(state, prompt, settings)?;
    let (tx, rx) = unbounded_channel();
    let job = Job {
        prompt: checked.tokens,
        max_tokens: checked.max_tokens,
        sampling: checked.sampling,
        plan: checked.plan,
        prefill: state.skip.prefill,
        lossless: checked.lossless,
        stop: checked.stop,
        events: tx,
        queued_at: Instant::now(),
    };
    submit(state, job)?;
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = Header {
        endpoint,
        id: format!(
            "{}-{created:x}{n:06x}",
            match endpoint {
                Endpoint::Chat => "chatcmpl",
                Endpoint::Completions => "cmpl",
            }
        ),
        created,
        model: state.model_id.clone(),
    };
    if checked.stream {
        Ok(Sse::new(event_stream(header, rx, checked.include_usage))
            .keep_alive(KeepAlive::default())
            .into_response())
    } else {
        Ok(collect(header, rx).await)
    }
}

/// Sends a job to the engine unless too many wait already (503) or the server is closing.
fn submit(state: &AppState, job: Job) -> Result<(), ApiError> {
    if state.closing.load(Ordering::Relaxed) {
        return Err(ApiError::shutting_down());
    }
    let waiting = &state.status.waiting;
    let admitted = waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
        (w < state.max_queue).then_some(w + 1)
    });
    if let Err(w) = admitted {
        return Err(ApiError::busy(w, 1));
    }
    let sent = state.engine.send(Msg::Job(Box::new(job)));
    if sent.is_err() {
        waiting.fetch_sub(1, Ordering::AcqRel);
        return Err(ApiError::shutting_down());
    }
    Ok(())
}

/// Waits for the whole generation and answers it as one object.
async fn collect(header: Header, mut rx: UnboundedReceiver<Event>) -> Response {
    let mut text = String::new();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Text(t) => text.push_str(&t),
            Event::Done(summary) => {
                return axum::Json(header.response(&text, &summary)).into_response();
            }
            Event::Failed(m) => return ApiError::internal(m).into_response(),
        }
    }
    ApiError::internal("the engine stopped before the generation ended").into_response()
}

/// The chunks of a streamed response, ending with `[DONE]`.
fn event_stream(
    header: Header,
    rx: UnboundedReceiver<Event>,
    include_usage: bool,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let first = header.chunk(
        (header.endpoint == Endpoint::Chat).then_some(""),
        header.endpoint == Endpoint::Chat,
        None,
    );
    let data = |v: Value| SseEvent::default().data(v.to_string());
    let head = stream::iter((header.endpoint == Endpoint::Chat).then(|| Ok(data(first))));
    let body = stream::unfold(Some(rx), move |rx| {
        let header = header.clone();
        async move {
            let mut rx = rx?;
            let events: Vec<SseEvent> = match rx.recv().await {
                Some(Event::Text(t)) => {
                    let v = header.chunk(Some(&t), false, None);
                    return Some((vec![data(v)], Some(rx)));
                }
                Some(Event::Done(summary)) => {
                    let mut out = vec![data(header.chunk(
                        None,
                        false,
                        Some(summary.finish.openai()),
                    ))];
                    if include_usage {
                        out.push(data(header.usage_chunk(&summary)));
                    }
                    out
                }
                Some(Event::Failed(m)) => vec![data(ApiError::internal(m).body())],
                None => vec![data(
                    ApiError::internal("the engine stopped before the generation ended").body(),
                )],
            };
            let mut events = events;
            events.push(SseEvent::default().data("[DONE]"));
            Some((events, None))
        }
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok)));
    head.chain(body)
}
