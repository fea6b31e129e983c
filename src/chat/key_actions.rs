//! What the keys do: one small function per binding of [`super::keys::KEYS`], each
//! taking the state and the key press and returning what must happen outside.

use crossterm::event::{KeyCode, KeyEvent};

use super::commands::submit;
use super::input::Input;
use super::protocol::Command;
use super::state::{Effect, State};
use crate::skip::SpeedupMode;

pub(super) fn stop_or_quit(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
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
    Vec::new()
}

pub(super) fn quit_or_delete(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    if state.input.is_empty() {
        state.quit = true;
    } else {
        state.input.delete();
    }
    Vec::new()
}

pub(super) fn quit(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    state.quit = true;
    Vec::new()
}

pub(super) fn arm_escape(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    state.escape_pending = true;
    state.flash = Some("Esc: press q to quit".into());
    Vec::new()
}

pub(super) fn show_help(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    state.help = true;
    Vec::new()
}

pub(super) fn redraw(_: &mut State, _: &KeyEvent) -> Vec<Effect> {
    vec![Effect::Redraw]
}

pub(super) fn new_line(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    edit(state, |i| i.insert("\n"))
}

pub(super) fn type_char(state: &mut State, key: &KeyEvent) -> Vec<Effect> {
    if let KeyCode::Char(c) = key.code {
        let mut buf = [0; 4];
        let s: &str = c.encode_utf8(&mut buf);
        edit(state, |i| i.insert(s));
    }
    Vec::new()
}

pub(super) fn send(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
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
    submit(state, &text)
}

pub(super) fn target_up(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    nudge(state, 1)
}

pub(super) fn target_down(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    nudge(state, -1)
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

pub(super) fn next_strategy(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    cycle_strategy(state, true)
}

pub(super) fn previous_strategy(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    cycle_strategy(state, false)
}

fn cycle_strategy(state: &mut State, forward: bool) -> Vec<Effect> {
    let mut c = state.controls.clone();
    c.cycle_strategy(forward);
    state.set_controls(c)
}

pub(super) fn toggle_lossless(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    lossless_on_off(state)
}

/// Lossless decoding on or off, from the next reply (Ctrl+O and `/lossless`).
pub(super) fn lossless_on_off(state: &mut State) -> Vec<Effect> {
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

pub(super) fn toggle_mode(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    let mut c = state.controls.clone();
    if c.mode() == SpeedupMode::Layers && c.cost().is_none() {
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

pub(super) fn page_up(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    let page = state.page_height().saturating_sub(1).max(1);
    state.scroll_by(-(page as isize));
    Vec::new()
}

pub(super) fn page_down(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    let page = state.page_height().saturating_sub(1).max(1);
    state.scroll_by(page as isize);
    Vec::new()
}

/// Up: an earlier message on an empty input (or while browsing them), else a line up.
pub(super) fn older(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    if state.input.is_empty() || state.history.browsing() {
        if let Some(text) = state.history.older() {
            let text = text.to_owned();
            state.input.set(&text);
        }
    } else {
        state.input.up();
    }
    Vec::new()
}

/// Down: a later message while browsing them (past the last, an empty input), else a
/// line down.
pub(super) fn newer(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    if !state.history.browsing() {
        state.input.down();
        return Vec::new();
    }
    match state.history.newer() {
        Some(text) => {
            let text = text.to_owned();
            state.input.set(&text);
        }
        None => {
            state.input.take();
        }
    }
    Vec::new()
}

pub(super) fn cursor_left(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    state.input.left();
    Vec::new()
}

pub(super) fn cursor_right(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    state.input.right();
    Vec::new()
}

pub(super) fn cursor_home(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    state.input.home();
    Vec::new()
}

pub(super) fn cursor_end(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    state.input.end();
    Vec::new()
}

pub(super) fn backspace(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    edit(state, Input::backspace)
}

pub(super) fn delete(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    edit(state, Input::delete)
}

pub(super) fn delete_word(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    edit(state, Input::delete_word)
}

pub(super) fn delete_to_line_start(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    edit(state, Input::delete_to_line_start)
}

pub(super) fn delete_to_line_end(state: &mut State, _: &KeyEvent) -> Vec<Effect> {
    edit(state, Input::delete_to_line_end)
}

/// Changes the input, which ends browsing the history.
fn edit(state: &mut State, f: impl FnOnce(&mut Input)) -> Vec<Effect> {
    state.history.stop_browsing();
    f(&mut state.input);
    Vec::new()
}
