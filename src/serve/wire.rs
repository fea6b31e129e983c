//! The OpenAI wire format: the request bodies the server reads and the response objects and
//! stream chunks it writes, with uniskip's extension fields.

use serde::Deserialize;
use serde_json::{Value, json};

use super::protocol::Summary;

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// The stop strings as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` before `[DONE]`.
    #[serde(default)]
    pub include_usage: bool,
}

/// The generation settings both endpoints share, OpenAI's and uniskip's extensions.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Settings {
    /// The model's id (see `GET /v1/models`).
    #[serde(default)]
    pub model: Option<String>,
    /// Most tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens` (chat).
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// Temperature (0: greedy).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling threshold.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Seed of the random choice.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Choices to generate (only 1 is served).
    #[serde(default)]
    pub n: Option<u32>,
    /// Extension: the target speedup of this request.
    #[serde(default)]
    pub speedup: Option<f64>,
    /// Extension: the skipping strategy of this request.
    #[serde(default)]
    pub strategy: Option<String>,
    /// Extension: lossless decoding for this request.
    #[serde(default)]
    pub lossless: Option<bool>,
    /// Extension: keep the k most likely tokens (0: off).
    #[serde(default)]
    pub top_k: Option<i32>,
    /// Extension: min-p threshold.
    #[serde(default)]
    pub min_p: Option<f32>,
    /// Extension: repetition penalty (1: off).
    #[serde(default)]
    pub repeat_penalty: Option<f32>,
    /// Extension: never stop at the end of text (for measurements).
    #[serde(default)]
    pub ignore_eos: Option<bool>,
}

/// A message's content: text, or a list of parts of which the text ones are read.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts (`{"type": "text", "text": ...}`).
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct Part {
    /// The part's type; only `text` is served.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default)]
    pub text: Option<String>,
}

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` (`developer` is read as `system`).
    pub role: String,
    /// Its content (`null` reads as empty).
    #[serde(default)]
    pub content: Option<Content>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// The generation settings.
    #[serde(flatten)]
    pub settings: Settings,
}

/// A completion prompt: one string, or a list holding one.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One prompt.
    One(String),
    /// A list of prompts (one is served).
    Many(Vec<String>),
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The text to continue.
    pub prompt: Prompt,
    /// The generation settings.
    #[serde(flatten)]
    pub settings: Settings,
}

/// Which endpoint a response is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
}

/// The fixed parts of one response: its id, time and model.
#[derive(Debug, Clone)]
pub struct Header {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// `chatcmpl-...` or `cmpl-...`.
    pub id: String,
    /// Unix time of the request.
    pub created: u64,
    /// The model id.
    pub model: String,
}

impl Header {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completions, _) => "text_completion",
        }
    }

    /// The whole response of a request that did not stream.
    pub fn response(&self, text: &str, summary: &Summary) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": summary.finish.openai(),
            }),
            Endpoint::Completions => json!({
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": summary.finish.openai(),
            }),
        };
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage(summary),
            "uniskip": extension(summary),
        })
    }

    /// A stream chunk carrying `text` (chat: with the role on the first chunk) or the end.
    pub fn chunk(&self, text: Option<&str>, role: bool, finish: Option<&str>) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
            Endpoint::Completions => json!({
                "index": 0,
                "text": text.unwrap_or(""),
                "logprobs": null,
                "finish_reason": finish,
            }),
        };
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        })
    }

    /// The last chunk of a stream with `stream_options.include_usage`: no choices, the
    /// usage and the extension object.
    pub fn usage_chunk(&self, summary: &Summary) -> Value {
        json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage(summary),
            "uniskip": extension(summary),
        })
    }
}

/// OpenAI's `usage` object.
pub fn usage(s: &Summary) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "total_tokens": s.prompt_tokens + s.completion_tokens,
    })
}

/// The `uniskip` extension object: what the request ran under and what it achieved.
pub fn extension(s: &Summary) -> Value {
    let achieved = if s.full_depth_tokens_per_s > 0.0 && s.decode_tokens_per_s > 0.0 {
        Some(s.decode_tokens_per_s / s.full_depth_tokens_per_s)
    } else {
        None
    };
    let spec = s.speculation.as_ref();
    json!({
        "n_layer": s.n_layer,
        "active_blocks": s.active_blocks,
        "mean_active_blocks": s.mean_active_blocks,
        "strategy": s.strategy,
        "target_speedup": s.target_speedup,
        "decode_tokens_per_s": s.decode_tokens_per_s,
        "prefill_tokens_per_s": s.prefill_tokens_per_s,
        "full_depth_tokens_per_s": s.full_depth_tokens_per_s,
        "achieved_speedup": achieved,
        "lossless": spec.is_some(),
        "drafter": spec.map(|x| x.drafter.name()),
        "draft_tokens": spec.map(|x| x.draft_tokens),
        "accepted_tokens": spec.map(|x| x.accepted_tokens),
        "acceptance_rate": spec.map(|x| x.acceptance_rate()),
        "stop_reason": s.finish.name(),
        "queue_ms": s.queue_time.as_secs_f64() * 1e3,
    })
}
