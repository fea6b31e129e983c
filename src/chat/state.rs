//! Everything the chat screen shows, and `update`: how key presses, engine events and
//! typed commands change it. Nothing here draws or does I/O; what must happen outside
//! (a command to the engine, a file to write) is returned as an [`Effect`].

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use super::controls::SkipControls;
use super::input::{History, Input};
use super::layout::{areas, transcript_lines};
use super::transcript::markdown;
use super::worker::{Baseline, BaselineSource, Command, Event, ModelInfo, ReplyStats};
use crate::engine::ChatMessage;
use crate::skip::{Mask, SpeedupMode};

/// Tokens in the moving window of the live decode speed.
pub const RATE_WINDOW: usize = 16;

/// Lines one mouse-wheel notch scrolls.
const WHEEL_LINES: usize = 3;

/// Fewest tokens a full-depth reply needs to serve as the full-depth speed.
const BASELINE_MIN_TOKENS: usize = 8;

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
    pub info: ModelInfo,
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
        info: ModelInfo,
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

    /// Decode speed over full-depth speed.
    pub fn achieved(&self) -> Option<f64> {
        let (rate, _) = self.decode_rate()?;
        let base = self.baseline?.tokens_per_s;
        (base > 0.0).then(|| rate / base)
    }

    /// The title of the conversation pane.
    pub fn title(&self) -> String {
        let framing = if self.info.template {
            "chat template"
        } else {
            "no chat template: plain continuation"
        };
        format!(
            "uniskip · {} · {} blocks · {framing}",
            self.info.name, self.info.n_layer
        )
    }

    /// Where the reply being generated is: the last reply without stats (notices may
    /// have arrived after it).
    fn streaming_index(&self) -> Option<usize> {
        self.entries
            .iter()
            .rposition(|e| matches!(e, Entry::Assistant { .. }))
            .filter(|&i| matches!(&self.entries[i], Entry::Assistant { stats: None, .. }))
    }

    fn streaming_reply(&mut self) -> Option<&mut String> {
        let i = self.streaming_index()?;
        match &mut self.entries[i] {
            Entry::Assistant { text, .. } => Some(text),
            _ => None,
        }
    }

    fn set_controls(&mut self, controls: SkipControls) -> Vec<Effect> {
        self.controls = controls;
        // The block map follows at once; the engine confirms from its next decode call.
        self.mask = self.controls.mask(self.step);
        vec![Effect::Controls(self.controls.clone())]
    }

    fn page_height(&self) -> usize {
        let area = Rect::new(0, 0, self.size.0, self.size.1);
        usize::from(areas(area, self).transcript_inner().height.max(1))
    }

    fn line_count(&self) -> usize {
        let area = Rect::new(0, 0, self.size.0, self.size.1);
        transcript_lines(self, areas(area, self).transcript_inner().width).len()
    }

    /// Scrolls by `lines` (negative: up). Scrolling to the end follows the stream again.
    fn scroll_by(&mut self, lines: isize) {
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
        Msg::Key(key) if key.kind != KeyEventKind::Release => on_key(state, key),
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
        Msg::Engine(event) => on_engine(state, event),
        Msg::Saved(path, result) => {
            match result {
                Ok(()) => state.notice(format!("saved to {}", path.display())),
                Err(e) => state.notice(format!("cannot save {}: {e}", path.display())),
            }
            Vec::new()
        }
    }
}

fn on_key(state: &mut State, key: KeyEvent) -> Vec<Effect> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let shift = key.modifiers.contains(KeyModifiers::SHIFT);
    state.flash = None;
    let escape_pending = std::mem::take(&mut state.escape_pending);
    if state.help {
        // Any key closes the help; Ctrl+C goes on to do its job as well.
        state.help = false;
        if !(ctrl && key.code == KeyCode::Char('c')) {
            return Vec::new();
        }
    }
    if escape_pending && key.code == KeyCode::Char('q') && !ctrl {
        state.quit = true;
        return Vec::new();
    }
    match key.code {
        KeyCode::Char('c') if ctrl => {
            if state.reply.is_active() {
                state.stopping = true;
                state.flash = Some("stopping the reply…".into());
                return vec![Effect::StopReply];
            }
            if state.input.is_empty() {
                state.quit = true;
            } else {
                state.input.take();
                state.history.stop_browsing();
                state.flash = Some("input cleared; Ctrl+C again quits".into());
            }
        }
        KeyCode::Char('d') if ctrl => {
            if state.input.is_empty() {
                state.quit = true;
            } else {
                state.input.delete();
            }
        }
        // Esc then q quits; typed quickly, terminals send the pair as Alt+q.
        KeyCode::Char('q') if alt => state.quit = true,
        KeyCode::Esc => {
            state.escape_pending = true;
            state.flash = Some("Esc: press q to quit".into());
        }
        KeyCode::F(1) => state.help = true,
        KeyCode::Char('?') if state.input.is_empty() => state.help = true,
        KeyCode::Enter if alt || shift => edit(state, |i| i.insert("\n")),
        KeyCode::Char('j') if ctrl => edit(state, |i| i.insert("\n")),
        KeyCode::Enter => {
            let text = state.input.text().to_owned();
            if text.trim().is_empty() {
                return Vec::new();
            }
            if state.reply.is_active() && !text.trim_start().starts_with('/') {
                state.flash = Some("a reply is on its way: wait, or Ctrl+C to stop it".into());
                return Vec::new();
            }
            state.input.take();
            state.history.push(text.trim_end());
            return submit(state, &text);
        }
        KeyCode::Right if ctrl => return nudge(state, 1),
        KeyCode::Left if ctrl => return nudge(state, -1),
        KeyCode::Char('+' | '=') if state.input.is_empty() && !ctrl && !alt => {
            return nudge(state, 1);
        }
        KeyCode::Char('-') if state.input.is_empty() && !ctrl && !alt => {
            return nudge(state, -1);
        }
        KeyCode::Tab | KeyCode::BackTab => {
            let mut c = state.controls.clone();
            c.cycle_strategy(key.code == KeyCode::Tab && !shift);
            return state.set_controls(c);
        }
        KeyCode::Char('t') if ctrl => return toggle_mode(state),
        KeyCode::Char('o') if ctrl => return toggle_lossless(state),
        KeyCode::Char('l') if ctrl => return vec![Effect::Redraw],
        KeyCode::PageUp => {
            let page = state.page_height().saturating_sub(1).max(1);
            state.scroll_by(-(page as isize));
        }
        KeyCode::PageDown => {
            let page = state.page_height().saturating_sub(1).max(1);
            state.scroll_by(page as isize);
        }
        KeyCode::Up => {
            if state.input.is_empty() || state.history.browsing() {
                if let Some(text) = state.history.older() {
                    let text = text.to_owned();
                    state.input.set(&text);
                }
            } else {
                state.input.up();
            }
        }
        KeyCode::Down => {
            if state.history.browsing() {
                match state.history.newer() {
                    Some(text) => {
                        let text = text.to_owned();
                        state.input.set(&text);
                    }
                    None => {
                        state.input.take();
                    }
                }
            } else {
                state.input.down();
            }
        }
        KeyCode::Left => state.input.left(),
        KeyCode::Right => state.input.right(),
        KeyCode::Home => state.input.home(),
        KeyCode::End => state.input.end(),
        KeyCode::Char('a') if ctrl => state.input.home(),
        KeyCode::Char('e') if ctrl => state.input.end(),
        KeyCode::Backspace => edit(state, Input::backspace),
        KeyCode::Delete => edit(state, Input::delete),
        KeyCode::Char('w') if ctrl => edit(state, Input::delete_word),
        KeyCode::Char('u') if ctrl => edit(state, Input::delete_to_line_start),
        KeyCode::Char('k') if ctrl => edit(state, Input::delete_to_line_end),
        KeyCode::Char(c) if !ctrl && !alt => {
            let mut buf = [0; 4];
            let s: &str = c.encode_utf8(&mut buf);
            edit(state, |i| i.insert(s));
        }
        _ => {}
    }
    Vec::new()
}

fn edit(state: &mut State, f: impl FnOnce(&mut Input)) {
    state.history.stop_browsing();
    f(&mut state.input);
}

fn nudge(state: &mut State, steps: i32) -> Vec<Effect> {
    let mut c = state.controls.clone();
    if !c.nudge_target(steps) {
        state.flash = Some(if steps > 0 {
            format!("{:.2}x is the highest target here", c.max_target())
        } else {
            "1.00x is full depth, the lowest target".to_owned()
        });
        return Vec::new();
    }
    state.set_controls(c)
}

/// Lossless decoding on or off, from the next reply.
fn toggle_lossless(state: &mut State) -> Vec<Effect> {
    let mut c = state.controls.clone();
    c.toggle_lossless();
    state.flash = Some(match c.lossless {
        Some(d) => format!(
            "lossless on ({} drafts, full depth verifies) from the next reply",
            d.name()
        ),
        None => "lossless off from the next reply".into(),
    });
    state.set_controls(c)
}

fn toggle_mode(state: &mut State) -> Vec<Effect> {
    let mut c = state.controls.clone();
    if c.mode == SpeedupMode::Layers && c.cost.is_none() {
        if state.measured_pending {
            return Vec::new();
        }
        state.measured_pending = true;
        state.flash = Some("measuring decode time for measured mode…".into());
        return vec![Effect::Engine(Command::Probe)];
    }
    state.measured_pending = false;
    match c.toggle_mode() {
        Ok(()) => state.set_controls(c),
        Err(e) => {
            state.flash = Some(e);
            Vec::new()
        }
    }
}

/// Handles a line the person entered: a command, or a message for the model.
pub fn submit(state: &mut State, text: &str) -> Vec<Effect> {
    let trimmed = text.trim();
    if let Some(command) = trimmed.strip_prefix('/')
        && !command.starts_with('/')
    {
        return run_command(state, command);
    }
    // A leading `//` sends a message that starts with `/`.
    let message = if trimmed.starts_with("//") {
        &text.trim_start()[1..]
    } else {
        text
    };
    // Control characters (a NUL from a pipe, say) mean nothing to a model; drop them.
    let message: String = message
        .trim_end()
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect();
    if message.trim().is_empty() {
        return Vec::new();
    }
    if state.reply.is_active() {
        state.flash = Some("a reply is on its way: wait, or Ctrl+C to stop it".into());
        return Vec::new();
    }
    state.entries.push(Entry::User(message.clone()));
    state.entries.push(Entry::Assistant {
        text: String::new(),
        stats: None,
    });
    state.reply = ReplyPhase::Queued;
    state.scroll = None;
    vec![Effect::Engine(Command::Send(message))]
}

fn run_command(state: &mut State, command: &str) -> Vec<Effect> {
    let (name, arg) = command
        .split_once(char::is_whitespace)
        .map_or((command, ""), |(n, a)| (n, a.trim()));
    match name {
        "reset" => {
            if state.reply.is_active() {
                state.flash = Some("stop the reply first (Ctrl+C), then /reset".into());
                return Vec::new();
            }
            let system = state.entries.iter().rev().find_map(|e| match e {
                Entry::System(s) => Some(s.clone()),
                _ => None,
            });
            state.entries.clear();
            if let Some(Some(s)) = system {
                state.entries.push(Entry::System(Some(s)));
            }
            state.scroll = None;
            state.notice("new conversation");
            vec![Effect::Engine(Command::Reset)]
        }
        "save" => {
            if arg.is_empty() {
                state.notice("usage: /save FILE (the conversation as Markdown)");
                return Vec::new();
            }
            let title = format!("Chat with {}", state.info.name);
            vec![Effect::Save {
                path: expand_home(arg),
                markdown: markdown(&title, &state.entries),
            }]
        }
        "system" => {
            let system = (!arg.is_empty()).then(|| arg.to_owned());
            state.entries.push(Entry::System(system.clone()));
            state.scroll = None;
            vec![Effect::Engine(Command::SetSystem(system))]
        }
        "speedup" => {
            let mut c = state.controls.clone();
            match arg
                .trim_end_matches(['x', 'X'])
                .parse::<f64>()
                .map_err(|_| format!("/speedup takes a number, e.g. /speedup 1.5 (got `{arg}`)"))
                .and_then(|r| c.set_target(r))
            {
                Ok(()) => state.set_controls(c),
                Err(e) => {
                    state.notice(e);
                    Vec::new()
                }
            }
        }
        "strategy" => {
            let mut c = state.controls.clone();
            match c.set_strategy(arg) {
                Ok(()) => state.set_controls(c),
                Err(e) => {
                    state.notice(e);
                    Vec::new()
                }
            }
        }
        "lossless" => toggle_lossless(state),
        "help" => {
            state.help = true;
            Vec::new()
        }
        "quit" | "exit" => {
            state.quit = true;
            Vec::new()
        }
        other => {
            state.notice(format!(
                "unknown command /{other}: try /reset /save /system /speedup /strategy /lossless /help \
                 /quit (start with // to send a message beginning with /)"
            ));
            Vec::new()
        }
    }
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn on_engine(state: &mut State, event: Event) -> Vec<Effect> {
    match event {
        Event::Probing => state.probing = true,
        Event::Baseline(b) => {
            // The quick probe ends here; the cost-model probe ends with its `Cost`.
            state.probing = false;
            state.baseline = Some(b);
        }
        Event::Cost(cost) => {
            state.probing = false;
            let mut c = state.controls.clone();
            c.cost = Some(cost);
            if std::mem::take(&mut state.measured_pending) {
                state.flash = None;
                if let Err(e) = c.toggle_mode() {
                    state.notice(e);
                }
            }
            return state.set_controls(c);
        }
        Event::ProbeFailed(e) => {
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
        Event::ReplyDone(stats) => {
            state.reply = ReplyPhase::Idle;
            if std::mem::take(&mut state.stopping) {
                state.flash = None;
            }
            state.repair_total.0 += stats.repair_tokens;
            state.repair_total.1 += stats.repair_ms;
            if state.baseline.is_none()
                && stats.full_depth()
                && stats.tokens >= BASELINE_MIN_TOKENS
                && stats.decode_tok_s > 0.0
            {
                state.baseline = Some(Baseline {
                    tokens_per_s: stats.decode_tok_s,
                    source: BaselineSource::FirstReply,
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
        Event::ReplyFailed(e) => {
            state.reply = ReplyPhase::Idle;
            state.stopping = false;
            if let Some(i) = state.streaming_index()
                && matches!(&state.entries[i], Entry::Assistant { text, .. } if text.is_empty())
            {
                state.entries.remove(i);
            }
            state.notice(e);
        }
        Event::Notice(text) => state.notice(text),
        Event::Failed(e) => {
            state.fatal = Some(e);
            state.quit = true;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::skip::{CostModel, Strategy};

    pub(crate) fn state() -> State {
        let info = ModelInfo {
            name: "Test Model".into(),
            architecture: "llama".into(),
            n_layer: 30,
            template: true,
        };
        State::new(info, SkipControls::for_tests(1.0), None, &[])
    }

    fn key(code: KeyCode) -> Msg {
        Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn ctrl(code: KeyCode) -> Msg {
        Msg::Key(KeyEvent::new(code, KeyModifiers::CONTROL))
    }

    fn typed(state: &mut State, text: &str) {
        for c in text.chars() {
            update(state, key(KeyCode::Char(c)));
        }
    }

    fn stats(tokens: usize, kept: usize, tok_s: f64) -> ReplyStats {
        ReplyStats {
            tokens,
            prompt_tokens: 10,
            prefill_tok_s: 100.0,
            decode_tok_s: tok_s,
            repair_tokens: 0,
            repair_ms: 0.0,
            stop: "end_of_generation".into(),
            n_layer: 30,
            kept_min: kept,
            kept_max: kept,
            target: 30.0 / kept as f64,
            strategy: "unified".into(),
            mode: "layers".into(),
            lossless_acceptance: None,
        }
    }

    #[test]
    fn enter_sends_the_message_to_the_engine_and_opens_a_reply() {
        let mut s = state();
        typed(&mut s, "hello");
        let effects = update(&mut s, key(KeyCode::Enter));
        assert_eq!(effects, [Effect::Engine(Command::Send("hello".into()))]);
        assert!(s.input.is_empty());
        assert_eq!(s.reply, ReplyPhase::Queued);
        assert_eq!(s.entries[0], Entry::User("hello".into()));
    }

    #[test]
    fn alt_enter_shift_enter_and_ctrl_j_insert_newlines_instead_of_sending() {
        let mut s = state();
        typed(&mut s, "a");
        for m in [KeyModifiers::ALT, KeyModifiers::SHIFT] {
            let effects = update(&mut s, Msg::Key(KeyEvent::new(KeyCode::Enter, m)));
            assert!(effects.is_empty());
        }
        update(&mut s, ctrl(KeyCode::Char('j')));
        assert_eq!(s.input.text(), "a\n\n\n");
    }

    #[test]
    fn streamed_pieces_append_to_the_reply_and_feed_the_live_rate() {
        let mut s = state();
        typed(&mut s, "hi");
        update(&mut s, key(KeyCode::Enter));
        update(&mut s, Msg::Engine(Event::ReplyStarted));
        let t0 = Instant::now();
        for (i, piece) in ["Hel", "lo", "!"].iter().enumerate() {
            update(
                &mut s,
                Msg::Engine(Event::Piece {
                    text: (*piece).into(),
                    at: t0 + Duration::from_millis(10 * i as u64),
                }),
            );
        }
        assert_eq!(s.reply, ReplyPhase::Streaming { tokens: 3 });
        let Some(Entry::Assistant { text, stats: None }) = s.entries.last() else {
            panic!("no streaming reply: {:?}", s.entries);
        };
        assert_eq!(text, "Hello!");
        let (rate, live) = s.decode_rate().unwrap();
        assert!(live && (rate - 100.0).abs() < 1e-6, "{rate}");
    }

    #[test]
    fn a_notice_arriving_mid_reply_does_not_take_the_reply_text() {
        let mut s = state();
        submit(&mut s, "hi");
        update(
            &mut s,
            Msg::Engine(Event::ProbeFailed("probe cut short".into())),
        );
        update(&mut s, Msg::Engine(Event::ReplyStarted));
        let at = Instant::now();
        update(
            &mut s,
            Msg::Engine(Event::Piece {
                text: "Hello".into(),
                at,
            }),
        );
        update(&mut s, Msg::Engine(Event::ReplyDone(stats(1, 30, 10.0))));
        assert!(matches!(
            &s.entries[1],
            Entry::Assistant { text, stats: Some(_) } if text == "Hello"
        ));
        assert_eq!(s.entries[2], Entry::Notice("probe cut short".into()));
    }

    #[test]
    fn reply_done_records_stats_and_counts_repairs() {
        let mut s = state();
        typed(&mut s, "hi");
        update(&mut s, key(KeyCode::Enter));
        update(&mut s, Msg::Engine(Event::ReplyStarted));
        let mut st = stats(20, 20, 180.0);
        st.repair_tokens = 14;
        st.repair_ms = 12.0;
        update(&mut s, Msg::Engine(Event::ReplyDone(st.clone())));
        assert_eq!(s.reply, ReplyPhase::Idle);
        assert_eq!(s.repair_total, (14, 12.0));
        assert_eq!(s.last_reply, Some(st));
        assert_eq!(s.decode_rate(), Some((180.0, false)));
    }

    #[test]
    fn the_first_full_depth_reply_gives_the_baseline_when_there_was_no_probe() {
        let mut s = state();
        update(&mut s, Msg::Engine(Event::ReplyDone(stats(20, 20, 180.0))));
        assert_eq!(s.baseline, None, "a skipped reply is no baseline");
        update(&mut s, Msg::Engine(Event::ReplyDone(stats(20, 30, 130.0))));
        assert_eq!(
            s.baseline,
            Some(Baseline {
                tokens_per_s: 130.0,
                source: BaselineSource::FirstReply
            })
        );
        update(&mut s, Msg::Engine(Event::ReplyDone(stats(20, 20, 180.0))));
        let achieved = s.achieved().unwrap();
        assert!((achieved - 180.0 / 130.0).abs() < 1e-9);
    }

    #[test]
    fn target_keys_change_the_target_and_the_block_map_at_once() {
        let mut s = state();
        assert!(s.mask.is_full());
        let effects = update(&mut s, ctrl(KeyCode::Right));
        assert_eq!(s.controls.target, 1.25);
        assert_eq!(s.mask.n_active(), 24);
        assert_eq!(effects, [Effect::Controls(s.controls.clone())]);
        update(&mut s, key(KeyCode::Char('+')));
        assert_eq!(s.controls.target, 1.5);
        assert_eq!(s.mask.n_active(), 20);
        update(&mut s, key(KeyCode::Char('-')));
        update(&mut s, ctrl(KeyCode::Left));
        assert!(s.mask.is_full());
    }

    #[test]
    fn plus_and_minus_type_into_a_non_empty_input() {
        let mut s = state();
        typed(&mut s, "2+2-1");
        assert_eq!(s.input.text(), "2+2-1");
        assert_eq!(s.controls.target, 1.0);
    }

    #[test]
    fn a_target_change_mid_reply_reaches_the_engine_without_stopping_it() {
        let mut s = state();
        typed(&mut s, "hi");
        update(&mut s, key(KeyCode::Enter));
        update(&mut s, Msg::Engine(Event::ReplyStarted));
        let effects = update(&mut s, ctrl(KeyCode::Right));
        assert!(matches!(effects[..], [Effect::Controls(_)]));
        assert!(s.reply.is_streaming());
    }

    #[test]
    fn tab_cycles_the_strategy_and_replans_the_map() {
        let mut s = state();
        update(&mut s, key(KeyCode::Char('+')));
        update(&mut s, key(KeyCode::Char('+')));
        update(&mut s, key(KeyCode::Tab));
        assert_eq!(s.controls.spec.strategy(), Strategy::EarlyExit);
        assert_eq!(s.mask.active_indices(), (0..20).collect::<Vec<_>>());
        update(
            &mut s,
            Msg::Key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)),
        );
        assert_eq!(s.controls.spec.strategy(), Strategy::Unified);
    }

    #[test]
    fn the_engine_reported_mask_replaces_the_planned_one() {
        let mut s = state();
        let mask = Mask::from_skip_list("3-5", 30).unwrap();
        update(
            &mut s,
            Msg::Engine(Event::Mask {
                mask: mask.clone(),
                step: 7,
            }),
        );
        assert_eq!((s.mask.clone(), s.step), (mask, 7));
    }

    #[test]
    fn the_probe_is_over_when_its_full_depth_speed_arrives() {
        let mut s = state();
        update(&mut s, Msg::Engine(Event::Probing));
        assert!(s.probing);
        let b = Baseline {
            tokens_per_s: 100.0,
            source: BaselineSource::Probe,
        };
        update(&mut s, Msg::Engine(Event::Baseline(b)));
        assert!(!s.probing);
        assert_eq!(s.baseline, Some(b));
    }

    #[test]
    fn measured_mode_waits_for_the_probe_then_turns_on() {
        let mut s = state();
        let effects = update(&mut s, ctrl(KeyCode::Char('t')));
        assert_eq!(effects, [Effect::Engine(Command::Probe)]);
        assert_eq!(s.controls.mode, SpeedupMode::Layers);
        let cost = CostModel {
            a_s: 0.003,
            b_s: 0.0001,
        };
        update(&mut s, Msg::Engine(Event::Cost(cost)));
        assert_eq!(s.controls.mode, SpeedupMode::Measured);
        update(&mut s, ctrl(KeyCode::Char('t')));
        assert_eq!(s.controls.mode, SpeedupMode::Layers);
    }

    #[test]
    fn ctrl_c_stops_a_reply_then_clears_the_input_then_quits() {
        let mut s = state();
        typed(&mut s, "hi");
        update(&mut s, key(KeyCode::Enter));
        assert_eq!(
            update(&mut s, ctrl(KeyCode::Char('c'))),
            [Effect::StopReply]
        );
        assert!(s.stopping && !s.quit);
        let mut st = stats(3, 30, 100.0);
        st.stop = "stopped".into();
        update(&mut s, Msg::Engine(Event::ReplyDone(st)));
        typed(&mut s, "draft");
        update(&mut s, ctrl(KeyCode::Char('c')));
        assert!(s.input.is_empty() && !s.quit);
        update(&mut s, ctrl(KeyCode::Char('c')));
        assert!(s.quit);
    }

    #[test]
    fn ctrl_d_on_an_empty_input_and_esc_then_q_quit() {
        let mut s = state();
        update(&mut s, ctrl(KeyCode::Char('d')));
        assert!(s.quit);
        let mut s = state();
        update(&mut s, key(KeyCode::Esc));
        assert!(!s.quit);
        update(&mut s, key(KeyCode::Char('q')));
        assert!(s.quit);
        let mut s = state();
        update(&mut s, key(KeyCode::Esc));
        update(&mut s, key(KeyCode::Char('x')));
        update(&mut s, key(KeyCode::Char('q')));
        assert!(!s.quit, "q after another key is just a letter");
        assert_eq!(s.input.text(), "xq");
    }

    #[test]
    fn f1_and_question_mark_show_help_and_any_key_closes_it() {
        let mut s = state();
        update(
            &mut s,
            Msg::Key(KeyEvent::new(KeyCode::F(1), KeyModifiers::NONE)),
        );
        assert!(s.help);
        update(&mut s, key(KeyCode::Char('x')));
        assert!(!s.help && s.input.is_empty());
        update(&mut s, key(KeyCode::Char('?')));
        assert!(s.help);
    }

    #[test]
    fn up_and_down_on_an_empty_input_walk_the_history() {
        let mut s = state();
        for m in ["first", "second"] {
            typed(&mut s, m);
            update(&mut s, key(KeyCode::Enter));
            update(&mut s, Msg::Engine(Event::ReplyDone(stats(3, 30, 100.0))));
        }
        update(&mut s, key(KeyCode::Up));
        assert_eq!(s.input.text(), "second");
        update(&mut s, key(KeyCode::Up));
        assert_eq!(s.input.text(), "first");
        update(&mut s, key(KeyCode::Down));
        assert_eq!(s.input.text(), "second");
        update(&mut s, key(KeyCode::Down));
        assert!(s.input.is_empty());
    }

    #[test]
    fn commands_change_settings_and_are_not_sent_to_the_model() {
        let mut s = state();
        let effects = submit(&mut s, "/speedup 1.5");
        assert_eq!(s.controls.target, 1.5);
        assert_eq!(effects, [Effect::Controls(s.controls.clone())]);
        submit(&mut s, "/strategy early-exit");
        assert_eq!(s.controls.spec.strategy(), Strategy::EarlyExit);
        let effects = submit(&mut s, "/system Be brief.");
        assert_eq!(
            effects,
            [Effect::Engine(Command::SetSystem(Some("Be brief.".into())))]
        );
        submit(&mut s, "/speedup 99");
        assert_eq!(s.controls.target, 1.5, "an unreachable target is refused");
        assert!(matches!(s.entries.last(), Some(Entry::Notice(n)) if n.contains("out of range")));
        assert!(!s.entries.iter().any(|e| matches!(e, Entry::User(_))));
    }

    #[test]
    fn reset_starts_over_keeping_the_system_prompt() {
        let mut s = state();
        submit(&mut s, "/system Be brief.");
        submit(&mut s, "hello");
        update(&mut s, Msg::Engine(Event::ReplyDone(stats(3, 30, 100.0))));
        let effects = submit(&mut s, "/reset");
        assert_eq!(effects, [Effect::Engine(Command::Reset)]);
        assert_eq!(s.entries[0], Entry::System(Some("Be brief.".into())));
        assert!(!s.entries.iter().any(|e| matches!(e, Entry::User(_))));
    }

    #[test]
    fn save_writes_the_conversation_as_markdown() {
        let mut s = state();
        submit(&mut s, "hello");
        let effects = submit(&mut s, "/save /tmp/chat.md");
        let [Effect::Save { path, markdown }] = &effects[..] else {
            panic!("{effects:?}");
        };
        assert_eq!(path, &PathBuf::from("/tmp/chat.md"));
        assert!(markdown.starts_with("# Chat with Test Model\n") && markdown.contains("hello"));
    }

    #[test]
    fn control_characters_are_dropped_from_messages() {
        let mut s = state();
        let effects = submit(&mut s, "a\0b\u{7}\tc");
        assert_eq!(effects, [Effect::Engine(Command::Send("ab\tc".into()))]);
        assert!(submit(&mut s, "\0\0").is_empty());
    }

    #[test]
    fn a_double_slash_sends_a_message_starting_with_a_slash() {
        let mut s = state();
        let effects = submit(&mut s, "//usr/bin is a directory");
        assert_eq!(
            effects,
            [Effect::Engine(Command::Send(
                "/usr/bin is a directory".into()
            ))]
        );
        let effects = submit(&mut s, "/usr/bin");
        assert!(effects.is_empty());
    }

    #[test]
    fn a_failed_reply_leaves_a_notice_and_no_empty_reply() {
        let mut s = state();
        submit(&mut s, "hello");
        update(&mut s, Msg::Engine(Event::ReplyFailed("too long".into())));
        assert_eq!(s.reply, ReplyPhase::Idle);
        assert_eq!(s.entries.last(), Some(&Entry::Notice("too long".into())));
    }

    #[test]
    fn scrolling_up_pins_the_view_and_scrolling_to_the_end_follows_again() {
        let mut s = state();
        s.size = (80, 24);
        for i in 0..40 {
            s.entries.push(Entry::User(format!("message {i}")));
        }
        update(&mut s, key(KeyCode::PageUp));
        let pinned = s.scroll.expect("pinned after PgUp");
        // New text below does not move the pinned view.
        s.entries.push(Entry::User("more".into()));
        assert_eq!(s.scroll, Some(pinned));
        update(
            &mut s,
            Msg::Mouse(MouseEvent {
                kind: MouseEventKind::ScrollUp,
                column: 0,
                row: 0,
                modifiers: KeyModifiers::NONE,
            }),
        );
        assert_eq!(s.scroll, Some(pinned - WHEEL_LINES));
        for _ in 0..5 {
            update(&mut s, key(KeyCode::PageDown));
        }
        assert_eq!(s.scroll, None);
    }

    #[test]
    fn a_fatal_engine_failure_quits_with_the_reason() {
        let mut s = state();
        update(&mut s, Msg::Engine(Event::Failed("boom".into())));
        assert!(s.quit);
        assert_eq!(s.fatal.as_deref(), Some("boom"));
    }
}
