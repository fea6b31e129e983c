//! The HTTP side: routes, the API key check, and turning the engine's
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
use super::protocol::{Event, Job, Msg, Status};
use super::validate::{chat_prompt, check, check_model};
use super::wire::{ChatRequest, CompletionRequest, Endpoint, Header, Prompt, Settings};
use crate::engine::Model;
use crate::flags::{SamplingArgs, SkipArgs};
use crate::skip::CostModel;

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
