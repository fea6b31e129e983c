//! How the engine thread's reports change the chat state: probes, streamed pieces, masks,
//! finished and failed replies.

use super::protocol::{Baseline, BaselineSource, Event, ReplyStats};
use super::state::{Effect, Entry, ReplyPhase, State};
use crate::skip::CostModel;

/// Fewest tokens a full-depth reply needs to serve as the full-depth speed.
const BASELINE_MIN_TOKENS: usize = 8;

/// Applies one engine report to `state`.
pub fn on_event(state: &mut State, event: Event) -> Vec<Effect> {
    match event {
        Event::Probing => state.probing = true,
        Event::Baseline(b) => {
            // The quick probe ends here; the cost-model probe ends with its `Cost`.
            state.probing = false;
            state.baseline = Some(b);
        }
        Event::Cost(cost) => return cost_model(state, cost),
        Event::ProbeFailed(e) => probe_failed(state, e),
        Event::Transcript(path) => {
            // A resumed conversation has already said which file it goes on in.
            let told = state
                .entries
                .iter()
                .any(|e| matches!(e, Entry::Notice(n) if n.contains(&*path.to_string_lossy())));
            if !told {
                state.notice(format!("transcript: {}", path.display()));
            }
            state.transcript = Some(path);
        }
        Event::ReplyStarted => {
            state.reply = ReplyPhase::Streaming { tokens: 0 };
            state.window.clear();
            state.step = 0;
        }
        Event::Piece { text, at } => {
            if let ReplyPhase::Streaming { tokens } = &mut state.reply {
                *tokens += 1;
            }
            state.window.push(at);
            if let Some(reply) = state.streaming_reply() {
                reply.push_str(&text);
            }
        }
        Event::Mask { mask, step } => {
            state.mask = mask;
            state.step = step;
        }
        Event::ReplyDone(stats) => reply_done(state, stats),
        Event::ReplyFailed(e) => reply_failed(state, e),
        Event::Notice(text) => state.notice(text),
        Event::Failed(e) => {
            state.fatal = Some(e);
            state.quit = true;
        }
    }
    Vec::new()
}

/// The cost-model probe's fit arrived: measured mode is available, and turns on if it
/// was asked for.
fn cost_model(state: &mut State, cost: CostModel) -> Vec<Effect> {
    state.probing = false;
    let mut c = state.controls.clone();
    c.set_cost(cost);
    if std::mem::take(&mut state.measured_pending) {
        state.flash = None;
        if let Err(e) = c.toggle_mode() {
            state.notice(e);
        }
    }
    state.set_controls(c)
}

fn probe_failed(state: &mut State, e: String) {
    state.probing = false;
    // Without a probe, the first full-depth reply gives the full-depth speed.
    state.probe_skipped = state.baseline.is_none();
    if std::mem::take(&mut state.measured_pending) {
        state.flash = None;
        state.notice(format!("measured mode is not available: {e}"));
    } else {
        state.notice(e);
    }
}

fn reply_done(state: &mut State, stats: ReplyStats) {
    state.reply = ReplyPhase::Idle;
    if std::mem::take(&mut state.stopping) {
        state.flash = None;
    }
    state.repair_total.0 += stats.repair_tokens;
    state.repair_total.1 += stats.repair_ms;
    if stats.full_depth() && stats.tokens >= BASELINE_MIN_TOKENS && stats.decode_tok_s > 0.0 {
        state.baseline = Some(Baseline {
            tokens_per_s: stats.decode_tok_s,
            source: BaselineSource::LastReply,
        });
    }
    if let Some(i) = state.streaming_index()
        && let Entry::Assistant { stats: slot, .. } = &mut state.entries[i]
    {
        *slot = Some(stats.clone());
    }
    state.last_reply = Some(stats);
    // Between replies the block map shows what the next reply starts with.
    state.step = 0;
    state.mask = state.controls.mask(0);
}

fn reply_failed(state: &mut State, e: String) {
    state.reply = ReplyPhase::Idle;
    state.stopping = false;
    if let Some(i) = state.streaming_index()
        && matches!(&state.entries[i], Entry::Assistant { text, .. } if text.is_empty())
    {
        state.entries.remove(i);
    }
    state.notice(e);
}
