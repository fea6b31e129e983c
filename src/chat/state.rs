//! Everything the chat screen shows, and `update`: the one entry point for what happens
//! to it. Key presses go to [`super::keys`], typed lines to [`super::commands`], engine
//! reports to [`super::events`]. Nothing here draws or does I/O; what must happen outside
//! (a command to the engine, a file to write) is returned as an [`Effect`].

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use crossterm::event::{KeyEvent, KeyEventKind, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use super::controls::SkipControls;
use super::input::{History, Input};
use super::layout::{areas, transcript_lines};
use super::protocol::{Baseline, Command, Event, ModelFacts, ReplyStats};
use super::{events, keys};
use crate::engine::ChatMessage;
use crate::skip::Mask;

/// Tokens in the moving window of the live decode speed.
pub const RATE_WINDOW: usize = 16;

/// Lines one mouse-wheel notch scrolls.
pub(super) const WHEEL_LINES: usize = 3;

/// One item of the conversation as shown.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// A message the person sent.
    User(String),
    /// A reply; `stats` is `None` while it streams.
    Assistant {
        /// The text so far.
        text: String,
        /// What it cost, once done.
        stats: Option<ReplyStats>,
    },
    /// The system prompt was set (or removed).
    System(Option<String>),
    /// A note from uniskip itself (not part of the conversation, not saved).
    Notice(String),
}

/// Where the current reply is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplyPhase {
    /// No reply pending.
    #[default]
    Idle,
    /// Sent; the engine has not started it (the probe may be running).
    Queued,
    /// Tokens are streaming.
    Streaming {
        /// Tokens so far.
        tokens: usize,
    },
}

impl ReplyPhase {
    /// Whether a reply is queued or streaming.
    pub fn is_active(self) -> bool {
        self != ReplyPhase::Idle
    }

    /// Whether tokens are streaming.
    pub fn is_streaming(self) -> bool {
        matches!(self, ReplyPhase::Streaming { .. })
    }
}

/// The times of the last few generated tokens, for the live decode speed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateWindow {
    times: VecDeque<Instant>,
}

impl RateWindow {
    /// Records a token produced at `at`.
    pub fn push(&mut self, at: Instant) {
        if self.times.len() == RATE_WINDOW {
            self.times.pop_front();
        }
        self.times.push_back(at);
    }

    /// Forgets every token (a new reply: its first token waited for the prompt).
    pub fn clear(&mut self) {
        self.times.clear();
    }

    /// Tokens per second over the window, once it holds two tokens.
    pub fn rate(&self) -> Option<f64> {
        let (first, last) = (self.times.front()?, self.times.back()?);
        let span = last.duration_since(*first).as_secs_f64();
        (self.times.len() >= 2 && span > 0.0).then(|| (self.times.len() - 1) as f64 / span)
    }
}

/// The whole state of the chat screen.
#[derive(Clone, Debug)]
pub struct State {
    /// The model.
    pub info: ModelFacts,
    /// The conversation as shown.
    pub entries: Vec<Entry>,
    /// The message being typed.
    pub input: Input,
    /// Messages sent earlier.
    pub history: History,
    /// The first transcript line shown when the person scrolled up; `None` follows the end.
    pub scroll: Option<usize>,
    /// The skip settings.
    pub controls: SkipControls,
    /// The mask in use (reported by the engine) or, right after a change, the one planned.
    pub mask: Mask,
    /// The decode step of the current reply the mask is for.
    pub step: usize,
    /// Whether the decode-speed probe is running.
    pub probing: bool,
    /// Whether the start-up probe was skipped (the full-depth speed then comes from the
    /// first full-depth reply).
    pub probe_skipped: bool,
    /// Where the current reply is.
    pub reply: ReplyPhase,
    /// Whether stopping the reply was asked for.
    pub stopping: bool,
    /// The last tokens' times.
    pub window: RateWindow,
    /// Full-depth decode speed.
    pub baseline: Option<Baseline>,
    /// The last finished reply.
    pub last_reply: Option<ReplyStats>,
    /// K/V repairs so far: tokens re-run, milliseconds.
    pub repair_total: (u64, f64),
    /// Measured mode was asked for; it turns on when the probe's cost model arrives.
    pub measured_pending: bool,
    /// Whether the key help is shown.
    pub help: bool,
    /// Esc was pressed: `q` now quits.
    pub escape_pending: bool,
    /// A short hint shown until the next key.
    pub flash: Option<String>,
    /// The terminal's size (columns, rows).
    pub size: (u16, u16),
    /// The transcript file.
    pub transcript: Option<PathBuf>,
    /// The person asked to quit.
    pub quit: bool,
    /// Why the chat cannot go on (the engine failed).
    pub fatal: Option<String>,
}

/// Something that happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    /// A key press.
    Key(KeyEvent),
    /// A mouse event (the wheel scrolls).
    Mouse(MouseEvent),
    /// Text pasted into the terminal.
    Paste(String),
    /// The terminal's new size (columns, rows).
    Resize(u16, u16),
    /// A report from the engine thread.
    Engine(Event),
    /// The result of writing a `/save` file.
    Saved(PathBuf, Result<(), String>),
}

/// What must happen outside the state.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// A command for the engine thread.
    Engine(Command),
    /// Stop the reply being generated.
    StopReply,
    /// The skip settings changed: the engine uses them from its next decode call.
    Controls(SkipControls),
    /// Write the conversation, as Markdown, to a file.
    Save {
        /// Where.
        path: PathBuf,
        /// What.
        markdown: String,
    },
    /// Clear and redraw the whole screen.
    Redraw,
}

impl State {
    /// A new chat on `info` with `controls`, showing a resumed conversation if any.
    pub fn new(
        info: ModelFacts,
        controls: SkipControls,
        system: Option<String>,
        resumed: &[(ChatMessage, Option<ReplyStats>)],
    ) -> State {
        let mut entries = Vec::new();
        let mut history = History::default();
        if system.is_some() {
            entries.push(Entry::System(system));
        }
        for (m, stats) in resumed {
            if m.role == "user" {
                history.push(&m.content);
                entries.push(Entry::User(m.content.clone()));
            } else {
                entries.push(Entry::Assistant {
                    text: m.content.clone(),
                    stats: stats.clone(),
                });
            }
        }
        let mask = controls.mask(0);
        State {
            info,
            entries,
            input: Input::default(),
            history,
            scroll: None,
            controls,
            mask,
            step: 0,
            probing: false,
            probe_skipped: false,
            reply: ReplyPhase::Idle,
            stopping: false,
            window: RateWindow::default(),
            baseline: None,
            last_reply: None,
            repair_total: (0, 0.0),
            measured_pending: false,
            help: false,
            escape_pending: false,
            flash: None,
            size: (80, 24),
            transcript: None,
            quit: false,
            fatal: None,
        }
    }

    /// Adds a note from uniskip to the conversation view.
    pub fn notice(&mut self, text: impl Into<String>) {
        self.entries.push(Entry::Notice(text.into()));
    }

    /// The live decode speed while a reply streams, else the last reply's.
    pub fn decode_rate(&self) -> Option<(f64, bool)> {
        if self.reply.is_streaming()
            && let Some(r) = self.window.rate()
        {
            return Some((r, true));
        }
        self.last_reply
            .as_ref()
            .filter(|s| s.tokens > 1 && s.decode_tok_s > 0.0)
            .map(|s| (s.decode_tok_s, false))
    }

    /// Decode speed over full-depth speed: while a reply streams, against the baseline;
    /// after it, against [`State::reference_for`] that reply.
    pub fn achieved(&self) -> Option<f64> {
        let (rate, live) = self.decode_rate()?;
        let base = match (&self.last_reply, live) {
            (Some(stats), false) => self.reference_for(stats)?.0,
            _ => self.baseline?.tokens_per_s,
        };
        (base > 0.0).then(|| rate / base)
    }

    /// What a finished reply's speed is compared with, and where that figure comes from: a
    /// lossless reply's own full-depth steps (same context, same load), else the baseline.
    pub fn reference_for(&self, stats: &ReplyStats) -> Option<(f64, &'static str)> {
        match stats.full_depth_tok_s {
            Some(t) if t > 0.0 => Some((t, "its own full-depth steps")),
            _ => self
                .baseline
                .filter(|b| b.tokens_per_s > 0.0)
                .map(|b| (b.tokens_per_s, b.source.label())),
        }
    }

    /// The title of the conversation pane.
    pub fn title(&self) -> String {
        let framing = if self.info.template {
            "chat template"
        } else {
            "no chat template: plain continuation"
        };
        let tuned = self
            .info
            .tuned
            .as_ref()
            .map_or(String::new(), |t| format!(" · {t}"));
        // The device last: a narrow terminal cuts it before the framing.
        format!(
            "uniskip · {} · {} blocks · {framing}{tuned} · {}",
            self.info.name, self.info.n_layer, self.info.device
        )
    }

    /// Where the reply being generated is: the last reply without stats (notices may
    /// have arrived after it).
    pub(super) fn streaming_index(&self) -> Option<usize> {
        self.entries
            .iter()
            .rposition(|e| matches!(e, Entry::Assistant { .. }))
            .filter(|&i| matches!(&self.entries[i], Entry::Assistant { stats: None, .. }))
    }

    /// The text of the reply being generated.
    pub(super) fn streaming_reply(&mut self) -> Option<&mut String> {
        let i = self.streaming_index()?;
        match &mut self.entries[i] {
            Entry::Assistant { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Takes new skip settings: the block map follows at once, the engine from its next
    /// decode call.
    pub(super) fn set_controls(&mut self, controls: SkipControls) -> Vec<Effect> {
        self.controls = controls;
        self.mask = self.controls.mask(self.step);
        vec![Effect::Controls(self.controls.clone())]
    }

    /// Transcript lines that fit the view.
    pub(super) fn page_height(&self) -> usize {
        let area = Rect::new(0, 0, self.size.0, self.size.1);
        usize::from(areas(area, self).transcript_inner().height.max(1))
    }

    fn line_count(&self) -> usize {
        let area = Rect::new(0, 0, self.size.0, self.size.1);
        transcript_lines(self, areas(area, self).transcript_inner().width).len()
    }

    /// Scrolls by `lines` (negative: up). Scrolling to the end follows the stream again.
    pub(super) fn scroll_by(&mut self, lines: isize) {
        let height = self.page_height();
        let bottom = self.line_count().saturating_sub(height);
        let top = self.scroll.unwrap_or(bottom).min(bottom);
        let next = top.saturating_add_signed(lines).min(bottom);
        self.scroll = (next < bottom).then_some(next);
    }
}

/// Applies `msg` to `state`; returns what must happen outside.
pub fn update(state: &mut State, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Key(key) if key.kind != KeyEventKind::Release => keys::on_key(state, key),
        Msg::Key(_) => Vec::new(),
        Msg::Mouse(mouse) => {
            match mouse.kind {
                MouseEventKind::ScrollUp => state.scroll_by(-(WHEEL_LINES as isize)),
                MouseEventKind::ScrollDown => state.scroll_by(WHEEL_LINES as isize),
                _ => {}
            }
            Vec::new()
        }
        Msg::Paste(text) => {
            state.help = false;
            state.history.stop_browsing();
            state.input.insert(&text);
            Vec::new()
        }
        Msg::Resize(w, h) => {
            state.size = (w, h);
            Vec::new()
        }
        Msg::Engine(event) => events::on_event(state, event),
        Msg::Saved(path, result) => {
            match result {
                Ok(()) => state.notice(format!("saved to {}", path.display())),
                Err(e) => state.notice(format!("cannot save {}: {e}", path.display())),
            }
            Vec::new()
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
