//! The conversation as the engine thread keeps it: the messages, the system prompt, the
//! transcript file they are appended to, and how one reply is generated from them.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use super::controls::SkipControls;
use super::protocol::{Event, ModelFacts, ReplyStats};
use super::transcript::{self, Record, TranscriptWriter};
use super::worker::{Shared, WorkerSetup};
use crate::engine::{
    ChatMessage, Generation, LlamaToken, Model, Request, Session, StopReason, generate,
};
use crate::measure::draft_costs;
use crate::skip::Mask;

/// The conversation as the engine keeps it, and the file it is appended to.
pub(super) struct Conversation {
    facts: ModelFacts,
    system: Option<String>,
    messages: Vec<ChatMessage>,
    transcript: Option<TranscriptWriter>,
    /// Replies asked for so far (numbered like [`super::worker::Worker::stop_reply`]
    /// numbers them).
    replies: u64,
}

/// What the decode steps of one reply used: the last settings read, the depth range.
struct DepthTrack {
    controls: SkipControls,
    last_mask: Option<Mask>,
    kept_min: usize,
    kept_max: usize,
}

impl Conversation {
    /// A conversation on `model` that goes on from `messages` (empty for a new one).
    pub(super) fn new(
        model: &Model,
        system: Option<String>,
        messages: Vec<ChatMessage>,
        transcript: Option<TranscriptWriter>,
    ) -> Conversation {
        Conversation {
            facts: ModelFacts::of(model),
            system,
            messages,
            transcript,
            replies: 0,
        }
    }

    /// The transcript file being appended to, if any.
    pub(super) fn transcript_path(&self) -> Option<&Path> {
        self.transcript.as_ref().map(TranscriptWriter::path)
    }

    /// Sets (or, with `None`, removes) the system prompt from the next turn on.
    pub(super) fn set_system(&mut self, system: Option<String>, shared: &Shared) {
        self.system = system.clone();
        self.record(
            shared,
            &Record::System {
                time: transcript::now(),
                content: system,
            },
        );
    }

    /// Forgets the messages and starts a new transcript file in `chats_dir` (the system
    /// prompt stays).
    pub(super) fn restart(&mut self, chats_dir: &Path, shared: &Shared) {
        self.messages.clear();
        let start = Record::Start {
            version: transcript::FORMAT_VERSION,
            time: transcript::now(),
            model: self.facts.name.clone(),
            template: self.facts.template,
        };
        match TranscriptWriter::create(chats_dir, &start) {
            Ok(t) => {
                shared.send(Event::Transcript(t.path().to_path_buf()));
                self.transcript = Some(t);
            }
            Err(e) => {
                shared.send(Event::Notice(format!(
                    "{e:#}; this conversation is not saved"
                )));
                self.transcript = None;
            }
        }
        if let Some(system) = self.system.clone() {
            self.record(
                shared,
                &Record::System {
                    time: transcript::now(),
                    content: Some(system),
                },
            );
        }
    }

    /// Adds the user's `text`, generates the reply (streaming it as events) and records
    /// both. A message that cannot be answered leaves the conversation as it was.
    pub(super) fn reply(
        &mut self,
        session: &mut Session<'_>,
        setup: &WorkerSetup,
        shared: &Shared,
        text: String,
    ) {
        self.replies += 1;
        let id = self.replies;
        self.messages.push(ChatMessage {
            role: "user".into(),
            content: text.clone(),
        });
        let tokens = match self.prompt_tokens(session) {
            Ok(t) => t,
            Err(e) => {
                self.messages.pop();
                return shared.send(Event::ReplyFailed(e));
            }
        };
        self.record(shared, &message_record("user", text, None));
        shared.send(Event::ReplyStarted);

        let prompts = std::slice::from_ref(&tokens);
        let (result, track) = stream_reply(session, setup, shared, id, prompts);
        let generation = match result {
            Ok(g) => g,
            Err(e) => {
                // No reply: the next turn must not follow two user messages in a row (some
                // chat templates refuse that). The transcript keeps what was asked.
                self.messages.pop();
                return shared.send(Event::ReplyFailed(e.to_string()));
            }
        };
        let stats = reply_stats(&generation, &track, session.model().n_layer());
        let content = generation.texts.into_iter().next().unwrap_or_default();
        self.messages.push(ChatMessage {
            role: "assistant".into(),
            content: content.clone(),
        });
        self.record(
            shared,
            &message_record("assistant", content, Some(stats.clone())),
        );
        shared.send(Event::ReplyDone(stats));
    }

    /// Appends `record` to the transcript; a write that fails ends the saving (and says so)
    /// rather than the chat.
    fn record(&mut self, shared: &Shared, record: &Record) {
        if let Some(t) = &mut self.transcript
            && let Err(e) = t.append(record)
        {
            shared.send(Event::Notice(format!(
                "{e:#}; the conversation is no longer saved"
            )));
            self.transcript = None;
        }
    }

    /// The whole conversation as the prompt text of the next reply.
    fn prompt(&self, model: &Model) -> Result<String, String> {
        if !self.facts.template {
            return Ok(continuation_text(self.system.as_deref(), &self.messages));
        }
        let mut messages = Vec::with_capacity(self.messages.len() + 1);
        if let Some(system) = &self.system {
            messages.push(ChatMessage {
                role: "system".into(),
                content: system.clone(),
            });
        }
        messages.extend(self.messages.iter().cloned());
        model
            .apply_chat_template(&messages)
            .map_err(|e| e.to_string())
    }

    /// The prompt as tokens, if it leaves room in the context for a reply.
    fn prompt_tokens(&self, session: &Session<'_>) -> Result<Vec<LlamaToken>, String> {
        let model = session.model();
        let tokens = self
            .prompt(model)
            .and_then(|p| model.tokenize(&p, true).map_err(|e| e.to_string()))?;
        if tokens.len() + 1 >= session.n_ctx() {
            return Err(format!(
                "the conversation is {} tokens and no longer fits the {}-token context: \
                 /reset starts a new one (or start with a larger --ctx)",
                tokens.len(),
                session.n_ctx()
            ));
        }
        Ok(tokens)
    }
}

/// Generates reply number `id` to `prompts` (one), streaming pieces and mask changes as events
/// and reading the skip settings before every decode call.
fn stream_reply(
    session: &mut Session<'_>,
    setup: &WorkerSetup,
    shared: &Shared,
    id: u64,
    prompts: &[Vec<LlamaToken>],
) -> (crate::engine::Result<Generation>, DepthTrack) {
    let start_controls = shared.controls();
    let prefill = start_controls.prefill;
    let mut track = DepthTrack {
        controls: start_controls,
        last_mask: None,
        kept_min: usize::MAX,
        kept_max: 0,
    };
    let stop_asked = || shared.stop_asked(id);
    // What earlier replies and runs measured drafting to cost here; this reply adds to it.
    let threads = setup.context.threads;
    let n_seq = setup.context.n_seq.max(1);
    let draft_costs = draft_costs::Kept::load(&setup.model_path, session.model(), threads, n_seq);
    let lossless = track.controls.lossless.is_some();
    let result = generate(
        session,
        &Request {
            prompts,
            max_tokens: setup.max_tokens,
            prefill,
            sampling: &setup.sampling,
            interrupt: Some(&stop_asked),
            lossless: track
                .controls
                .lossless
                .map(|drafter| crate::engine::Lossless {
                    drafter,
                    draft_max: track.controls.draft_max,
                    draft_model: None,
                    draft_mask: None,
                    costs: Some(draft_costs.cell()),
                }),
        },
        &mut |step| {
            // Read the latest settings before every decode call: a change made while
            // the reply streams applies from the next token.
            let lossless = track.controls.lossless.is_some();
            track.controls = shared.controls();
            // Lossless decoding keeps its setting for the whole reply; the mask drafts.
            let mask = if lossless {
                track.controls.draft_mask(step)
            } else {
                track.controls.mask(step)
            };
            track.kept_min = track.kept_min.min(mask.n_active());
            track.kept_max = track.kept_max.max(mask.n_active());
            if track.last_mask.as_ref() != Some(&mask) {
                shared.send(Event::Mask {
                    mask: mask.clone(),
                    step,
                });
                track.last_mask = Some(mask.clone());
            }
            mask
        },
        &mut |piece| {
            shared.send(Event::Piece {
                text: piece.text.to_owned(),
                at: Instant::now(),
            });
            if stop_asked() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    );
    if lossless {
        draft_costs.store();
    }
    (result, track)
}

/// What a finished reply cost, with the settings it ended under.
fn reply_stats(generation: &Generation, track: &DepthTrack, n_layer: usize) -> ReplyStats {
    ReplyStats {
        tokens: generation.generated_tokens,
        prompt_tokens: generation.prompt_tokens,
        prefill_tok_s: generation.prefill_tokens_per_s(),
        decode_tok_s: generation.decode_tokens_per_s(),
        repair_tokens: generation.repair_tokens,
        repair_ms: generation.repair_time.as_secs_f64() * 1e3,
        stop: stop_name(generation.stop.first().copied()),
        n_layer,
        kept_min: track.kept_min.min(track.kept_max),
        kept_max: track.kept_max,
        target: track.controls.target(),
        strategy: track.controls.strategy().name().into(),
        mode: track.controls.mode().name().into(),
        lossless_acceptance: generation.speculation.as_ref().map(|s| s.acceptance_rate()),
        full_depth_tok_s: generation
            .speculation
            .as_ref()
            .and_then(|s| s.plain_tokens_per_s),
    }
}

fn message_record(role: &str, content: String, stats: Option<ReplyStats>) -> Record {
    Record::Message {
        time: transcript::now(),
        role: role.into(),
        content,
        stats,
    }
}

/// How a reply ended, in the engine's own serialized name (`end_of_generation`,
/// `max_tokens`, ...), so the transcript and `uniskip run --json` spell it alike.
fn stop_name(stop: Option<StopReason>) -> String {
    stop.and_then(|s| serde_json::to_value(s).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "none".into())
}

/// A conversation as one continuing text, for a model without a chat template: each
/// message follows the last, a user message on a new line unless the text already ends
/// with white space.
pub fn continuation_text(system: Option<&str>, messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    if let Some(system) = system.filter(|s| !s.is_empty()) {
        out.push_str(system);
        if !system.ends_with(char::is_whitespace) {
            out.push_str("\n\n");
        }
    }
    for m in messages {
        if m.role == "user" && !out.is_empty() && !out.ends_with(char::is_whitespace) {
            out.push('\n');
        }
        out.push_str(&m.content);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn continuation_text_runs_messages_on_and_starts_user_turns_on_a_new_line() {
        let messages = [
            msg("user", "Once upon a time"),
            msg("assistant", " there was a king"),
            msg("user", "The end."),
        ];
        assert_eq!(
            continuation_text(None, &messages),
            "Once upon a time there was a king\nThe end."
        );
        assert_eq!(
            continuation_text(Some("A fairy tale."), &messages[..1]),
            "A fairy tale.\n\nOnce upon a time"
        );
    }

    #[test]
    fn stop_names_are_the_engines_serialized_names() {
        assert_eq!(
            stop_name(Some(StopReason::EndOfGeneration)),
            "end_of_generation"
        );
        assert_eq!(stop_name(Some(StopReason::MaxTokens)), "max_tokens");
        assert_eq!(stop_name(Some(StopReason::ContextFull)), "context_full");
        assert_eq!(stop_name(Some(StopReason::Stopped)), "stopped");
        assert_eq!(stop_name(None), "none");
    }
}
