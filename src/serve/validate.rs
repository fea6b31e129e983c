//! Requests checked before they reach the engine: the model named, the prompt rendered and
//! measured against the context, and the sampling, skip and drafting settings turned into
//! what the engine runs. Each refusal is an OpenAI error object naming the bad field.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::ApiError;
use super::routes::AppState;
use super::wire::{ChatRequest, Content, Settings};
use crate::engine::{ChatMessage, LlamaToken, Sampling};
use crate::flags::SkipArgs;
use crate::flags::setup::PlanInputs;
use crate::skip::{Plan, Strategy};

/// The conversation rendered by the model's chat template.
pub(super) fn chat_prompt(state: &AppState, request: &ChatRequest) -> Result<String, ApiError> {
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
pub(super) struct Checked {
    pub(super) tokens: Vec<LlamaToken>,
    pub(super) max_tokens: usize,
    pub(super) sampling: Sampling,
    pub(super) plan: Plan,
    pub(super) lossless: bool,
    pub(super) stop: Vec<String>,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
}

/// 404 unless the request names the served model (or names none).
pub(super) fn check_model(state: &AppState, s: &Settings) -> Result<(), ApiError> {
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
pub(super) fn check(state: &AppState, prompt: &str, s: Settings) -> Result<Checked, ApiError> {
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
    let plan = if lossless { plan.for_drafting() } else { plan };
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
pub(super) fn sampling(state: &AppState, s: &Settings) -> Result<Sampling, ApiError> {
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

pub(super) fn fresh_seed(state: &AppState) -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ (state.next_id.load(Ordering::Relaxed) as u32).wrapping_mul(0x9E37_79B9)
}

/// The server's skip flags with the request's `speedup` and `strategy` in place.
pub(super) fn skip_args(state: &AppState, s: &Settings) -> Result<SkipArgs, ApiError> {
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
pub(super) fn plan(
    state: &AppState,
    s: &Settings,
    max_tokens: usize,
    seed: u32,
) -> Result<Plan, ApiError> {
    let skip = skip_args(state, s)?;
    let bad = |e: anyhow::Error| {
        let causes: Vec<String> = e.chain().map(ToString::to_string).collect();
        ApiError::bad_request(causes.join(": ")).param(if s.strategy.is_some() {
            "strategy"
        } else {
            "speedup"
        })
    };
    crate::flags::setup::plan_for(
        &state.model_path,
        state.model.n_layer(),
        state.tuned.as_ref(),
        &skip,
        PlanInputs {
            planned_len: max_tokens,
            seed: u64::from(seed),
            cost: state.cost.as_ref(),
            profile: None,
        },
    )
    .map_err(bad)
}
