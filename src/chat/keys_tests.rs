//! The key table: every chord it lists reaches its own binding, and the help and the
//! README list the same keys.

use super::*;
use crate::chat::controls::SkipControls;
use crate::chat::protocol::ModelFacts;

fn state() -> State {
    let info = ModelFacts {
        name: "Test Model".into(),
        architecture: "llama".into(),
        n_layer: 30,
        template: true,
        tuned: None,
        device: "CPU".into(),
    };
    State::new(info, SkipControls::for_tests(1.0), None, &[])
}

#[test]
fn every_chord_of_the_table_reaches_its_own_binding() {
    let s = state();
    let bindings: Vec<&Binding> = KEYS.iter().flat_map(|r| r.bindings).collect();
    for b in &bindings {
        let Some(code) = b.chord.code else { continue };
        let press = KeyEvent::new(code, b.chord.with);
        let first = bindings
            .iter()
            .find(|other| other.chord.matches(&press, &s))
            .expect("a binding for its own chord");
        assert_eq!(
            first.chord,
            b.chord,
            "{} is taken by {}",
            b.chord.label(),
            first.chord.label()
        );
    }
}

#[test]
fn the_help_names_each_key_as_it_is_pressed() {
    let rows = help_rows();
    let keys_of = |does: &str| {
        rows.iter()
            .find(|(_, d)| *d == does)
            .map(|(k, _)| k.as_str())
            .unwrap_or_else(|| panic!("no help row for {does}"))
    };
    assert_eq!(keys_of("send the message"), "Enter");
    assert_eq!(
        keys_of("new line in the message"),
        "Alt+Enter, Shift+Enter, Ctrl+J"
    );
    assert_eq!(keys_of("this help (? on an empty input)"), "F1, ?");
    assert_eq!(
        keys_of("target speedup ±0.25 (+ - on empty input)"),
        "Ctrl+→, Ctrl+←, +, -"
    );
    assert_eq!(keys_of("quit (Ctrl+D on an empty input)"), "Ctrl+D, Esc q");
}

#[test]
fn the_readme_key_table_lists_the_help_rows() {
    let readme = include_str!("../../README.md");
    for (keys, does) in help_rows() {
        let line = format!("| {keys} | {does} |");
        assert!(readme.contains(&line), "README.md lacks the row\n{line}");
    }
}
