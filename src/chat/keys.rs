//! The keys of `uniskip chat`: one table, [`KEYS`], that the key handler matches presses
//! against and the help overlay (F1) lists, so the help says what the keys do.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::key_actions::*;
use super::state::{Effect, State};

/// What a binding does to the state when its chord is pressed.
type Action = fn(&mut State, &KeyEvent) -> Vec<Effect>;

/// A key with the modifiers it needs and must not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chord {
    /// The key; `None` stands for any character.
    code: Option<KeyCode>,
    /// Modifiers that must be held (the help writes them).
    with: KeyModifiers,
    /// Modifiers that must not be held.
    without: KeyModifiers,
    /// Only when the input is empty (otherwise the key types or edits).
    empty_input: bool,
}

/// How the help writes a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    /// As its chord, e.g. `Ctrl+T`.
    Chord,
    /// In words, for what is more than one key, e.g. `Esc q`.
    Text(&'static str),
    /// Not at all: another binding of its row stands for it.
    Hidden,
}

/// A chord and what it does.
pub struct Binding {
    chord: Chord,
    label: Label,
    action: Action,
}

/// A row of the help: the bindings it names and what they do.
pub struct KeyRow {
    /// What the keys do; `None` keeps the row out of the help (plain typing and editing).
    pub does: Option<&'static str>,
    /// The keys, matched in order.
    bindings: &'static [Binding],
    /// What the help adds after the keys that is not a key press (the mouse wheel).
    also: &'static str,
}

impl Chord {
    /// Whether `key` is this chord, for `state`.
    fn matches(&self, key: &KeyEvent, state: &State) -> bool {
        let code = match self.code {
            Some(code) => key.code == code,
            None => matches!(key.code, KeyCode::Char(_)),
        };
        code && key.modifiers.contains(self.with)
            && !key.modifiers.intersects(self.without)
            && (!self.empty_input || state.input.is_empty())
    }

    /// The chord as the help writes it, e.g. `Ctrl+→`, `Shift+Enter`, `?`.
    pub fn label(&self) -> String {
        let mut out = String::new();
        for (m, name) in [
            (KeyModifiers::CONTROL, "Ctrl+"),
            (KeyModifiers::ALT, "Alt+"),
            (KeyModifiers::SHIFT, "Shift+"),
        ] {
            if self.with.contains(m) {
                out.push_str(name);
            }
        }
        let modified = !self.with.is_empty();
        match self.code {
            Some(KeyCode::Char(c)) if modified => out.extend(c.to_uppercase()),
            Some(KeyCode::Char(c)) => out.push(c),
            Some(KeyCode::F(n)) => out.push_str(&format!("F{n}")),
            Some(code) => out.push_str(match code {
                KeyCode::Enter => "Enter",
                KeyCode::Esc => "Esc",
                KeyCode::Tab => "Tab",
                KeyCode::BackTab => "Shift+Tab",
                KeyCode::PageUp => "PgUp",
                KeyCode::PageDown => "PgDn",
                KeyCode::Up => "↑",
                KeyCode::Down => "↓",
                KeyCode::Left => "←",
                KeyCode::Right => "→",
                KeyCode::Home => "Home",
                KeyCode::End => "End",
                KeyCode::Backspace => "Backspace",
                KeyCode::Delete => "Del",
                _ => "?",
            }),
            None => out.push_str("any character"),
        }
        out
    }
}

impl KeyRow {
    /// The keys as the help writes them, e.g. `F1, ?`.
    pub fn keys(&self) -> String {
        let mut names: Vec<String> = self
            .bindings
            .iter()
            .filter_map(|b| match b.label {
                Label::Chord => Some(b.chord.label()),
                Label::Text(text) => Some(text.to_owned()),
                Label::Hidden => None,
            })
            .collect();
        if !self.also.is_empty() {
            names.push(self.also.to_owned());
        }
        names.join(", ")
    }
}

const NO_MODS: KeyModifiers = KeyModifiers::NONE;
const CTRL_OR_ALT: KeyModifiers = KeyModifiers::CONTROL.union(KeyModifiers::ALT);

/// `code` with any modifiers, except those more specific bindings claim.
const fn key(code: KeyCode, action: Action) -> Binding {
    bind(Some(code), NO_MODS, NO_MODS, action)
}

/// Ctrl and `c`.
const fn ctrl(c: char, action: Action) -> Binding {
    bind(
        Some(KeyCode::Char(c)),
        KeyModifiers::CONTROL,
        NO_MODS,
        action,
    )
}

const fn bind(
    code: Option<KeyCode>,
    with: KeyModifiers,
    without: KeyModifiers,
    action: Action,
) -> Binding {
    Binding {
        chord: Chord {
            code,
            with,
            without,
            empty_input: false,
        },
        label: Label::Chord,
        action,
    }
}

impl Binding {
    /// Also needs `mods` held.
    const fn with(mut self, mods: KeyModifiers) -> Binding {
        self.chord.with = mods;
        self
    }

    /// Not with `mods` held (a more specific binding has them).
    const fn without(mut self, mods: KeyModifiers) -> Binding {
        self.chord.without = mods;
        self
    }

    /// Only on an empty input, and without Ctrl or Alt (else the character is typed).
    const fn on_empty_input(mut self) -> Binding {
        self.chord.empty_input = true;
        self.chord.without = CTRL_OR_ALT;
        self
    }

    /// Only on an empty input, with any modifiers.
    const fn empty_only(mut self) -> Binding {
        self.chord.empty_input = true;
        self
    }

    const fn labelled(mut self, text: &'static str) -> Binding {
        self.label = Label::Text(text);
        self
    }

    const fn hidden(mut self) -> Binding {
        self.label = Label::Hidden;
        self
    }
}

const fn row(does: &'static str, bindings: &'static [Binding]) -> KeyRow {
    KeyRow {
        does: Some(does),
        bindings,
        also: "",
    }
}

/// Every key binding, in the order the help lists them. A press runs the first binding
/// that matches it; the chords are written so that at most one matches, but for typing
/// (last), which takes what nothing else does.
pub const KEYS: &[KeyRow] = &[
    row(
        "send the message",
        &[key(KeyCode::Enter, send).without(KeyModifiers::ALT.union(KeyModifiers::SHIFT))],
    ),
    row(
        "new line in the message",
        &[
            key(KeyCode::Enter, new_line).with(KeyModifiers::ALT),
            key(KeyCode::Enter, new_line).with(KeyModifiers::SHIFT),
            ctrl('j', new_line),
        ],
    ),
    row(
        "earlier messages (empty input), else lines",
        &[key(KeyCode::Up, older), key(KeyCode::Down, newer)],
    ),
    KeyRow {
        also: "wheel",
        ..row(
            "scroll the conversation",
            &[
                key(KeyCode::PageUp, page_up),
                key(KeyCode::PageDown, page_down),
            ],
        )
    },
    row(
        "target speedup ±0.25 (+ - on empty input)",
        &[
            key(KeyCode::Right, target_up).with(KeyModifiers::CONTROL),
            key(KeyCode::Left, target_down).with(KeyModifiers::CONTROL),
            key(KeyCode::Char('+'), target_up).on_empty_input(),
            // `=` is `+` without Shift on most layouts.
            key(KeyCode::Char('='), target_up).on_empty_input().hidden(),
            key(KeyCode::Char('-'), target_down).on_empty_input(),
        ],
    ),
    row(
        "next / previous skipping strategy",
        &[
            key(KeyCode::Tab, next_strategy).without(KeyModifiers::SHIFT),
            key(KeyCode::BackTab, previous_strategy),
            key(KeyCode::Tab, previous_strategy)
                .with(KeyModifiers::SHIFT)
                .hidden(),
        ],
    ),
    row(
        "target counts blocks / measured time",
        &[ctrl('t', toggle_mode)],
    ),
    row(
        "lossless decoding on / off (drafts checked by full depth)",
        &[ctrl('o', toggle_lossless)],
    ),
    row(
        "stop the reply; on an empty input, quit",
        &[ctrl('c', stop_or_quit)],
    ),
    row(
        "quit (Ctrl+D on an empty input)",
        &[
            ctrl('d', quit_or_delete),
            key(KeyCode::Esc, arm_escape).labelled("Esc q"),
            // Esc then q typed quickly: terminals send the pair as Alt+q.
            key(KeyCode::Char('q'), quit)
                .with(KeyModifiers::ALT)
                .hidden(),
        ],
    ),
    row(
        "this help (? on an empty input)",
        &[
            key(KeyCode::F(1), show_help),
            // Any modifiers: `?` often comes with Shift.
            bind(Some(KeyCode::Char('?')), NO_MODS, NO_MODS, show_help).empty_only(),
        ],
    ),
    row("redraw the screen", &[ctrl('l', redraw)]),
    row(
        "delete word / to line start / to line end",
        &[
            ctrl('w', delete_word),
            ctrl('u', delete_to_line_start),
            ctrl('k', delete_to_line_end),
        ],
    ),
    KeyRow {
        does: Some("select text (or start with --no-mouse)"),
        bindings: &[],
        also: "Shift+drag",
    },
    // Typing and moving in the message: what every text field does, so not listed.
    KeyRow {
        does: None,
        bindings: &[
            key(KeyCode::Left, cursor_left).without(KeyModifiers::CONTROL),
            key(KeyCode::Right, cursor_right).without(KeyModifiers::CONTROL),
            key(KeyCode::Home, cursor_home),
            key(KeyCode::End, cursor_end),
            ctrl('a', cursor_home),
            ctrl('e', cursor_end),
            key(KeyCode::Backspace, backspace),
            key(KeyCode::Delete, delete),
            bind(None, NO_MODS, CTRL_OR_ALT, type_char),
        ],
        also: "",
    },
];

/// The help's rows for the keys: keys, what they do.
pub fn help_rows() -> Vec<(String, &'static str)> {
    KEYS.iter()
        .filter_map(|r| r.does.map(|does| (r.keys(), does)))
        .collect()
}

/// Handles a key press: the help and a pending Esc first, then the first binding of
/// [`KEYS`] that matches.
pub fn on_key(state: &mut State, key: KeyEvent) -> Vec<Effect> {
    state.flash = None;
    let escape_pending = std::mem::take(&mut state.escape_pending);
    let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
    if state.help {
        // Any key closes the help; Ctrl+C goes on to do its job as well.
        state.help = false;
        if !ctrl_c {
            return Vec::new();
        }
    }
    if escape_pending
        && key.code == KeyCode::Char('q')
        && !key.modifiers.contains(KeyModifiers::CONTROL)
    {
        state.quit = true;
        return Vec::new();
    }
    let binding = KEYS
        .iter()
        .flat_map(|r| r.bindings)
        .find(|b| b.chord.matches(&key, state));
    match binding {
        Some(b) => (b.action)(state, &key),
        None => Vec::new(),
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
