//! `update` as the person and the engine drive it: keys, typed commands, engine events.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyModifiers};

use super::*;
use crate::chat::commands::submit;
use crate::chat::protocol::BaselineSource;
use crate::skip::{CostModel, SpeedupMode, Strategy};

pub(crate) fn state() -> State {
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
    ReplyStats::fixture(tokens, kept, tok_s)
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
fn every_full_depth_reply_becomes_the_baseline_and_reads_one_x() {
    let mut s = state();
    update(&mut s, Msg::Engine(Event::ReplyDone(stats(20, 20, 180.0))));
    assert_eq!(s.baseline, None, "a skipped reply is no baseline");
    update(&mut s, Msg::Engine(Event::ReplyDone(stats(20, 30, 130.0))));
    assert_eq!(
        s.baseline,
        Some(Baseline {
            tokens_per_s: 130.0,
            source: BaselineSource::LastReply
        })
    );
    assert!((s.achieved().unwrap() - 1.0).abs() < 1e-9);
    update(&mut s, Msg::Engine(Event::ReplyDone(stats(20, 20, 180.0))));
    let achieved = s.achieved().unwrap();
    assert!((achieved - 180.0 / 130.0).abs() < 1e-9);
    // A later full-depth reply (a longer context, slower) replaces it.
    update(&mut s, Msg::Engine(Event::ReplyDone(stats(20, 30, 110.0))));
    assert_eq!(s.baseline.unwrap().tokens_per_s, 110.0);
    assert!((s.achieved().unwrap() - 1.0).abs() < 1e-9);
}

#[test]
fn a_lossless_reply_is_compared_with_its_own_full_depth_steps() {
    let mut s = state();
    update(
        &mut s,
        Msg::Engine(Event::Baseline(Baseline {
            tokens_per_s: 128.0,
            source: BaselineSource::Probe,
        })),
    );
    // A lossless reply at 90 tok/s whose plain steps ran at 96 tok/s: it lost 6%.
    let mut st = stats(20, 30, 90.0);
    st.lossless_acceptance = Some(0.4);
    st.full_depth_tok_s = Some(96.0);
    update(&mut s, Msg::Engine(Event::ReplyDone(st)));
    assert!((s.achieved().unwrap() - 90.0 / 96.0).abs() < 1e-9);
}

#[test]
fn target_keys_change_the_target_and_the_block_map_at_once() {
    let mut s = state();
    assert!(s.mask.is_full());
    let effects = update(&mut s, ctrl(KeyCode::Right));
    assert_eq!(s.controls.target(), 1.25);
    assert_eq!(s.mask.n_active(), 24);
    assert_eq!(effects, [Effect::Controls(s.controls.clone())]);
    update(&mut s, key(KeyCode::Char('+')));
    assert_eq!(s.controls.target(), 1.5);
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
    assert_eq!(s.controls.target(), 1.0);
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
    assert_eq!(s.controls.strategy(), Strategy::EarlyExit);
    assert_eq!(s.mask.active_indices(), (0..20).collect::<Vec<_>>());
    update(
        &mut s,
        Msg::Key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)),
    );
    assert_eq!(s.controls.strategy(), Strategy::Unified);
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
    assert_eq!(s.controls.mode(), SpeedupMode::Layers);
    let cost = CostModel {
        a_s: 0.003,
        b_s: 0.0001,
    };
    update(&mut s, Msg::Engine(Event::Cost(cost)));
    assert_eq!(s.controls.mode(), SpeedupMode::Measured);
    update(&mut s, ctrl(KeyCode::Char('t')));
    assert_eq!(s.controls.mode(), SpeedupMode::Layers);
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
    assert_eq!(s.controls.target(), 1.5);
    assert_eq!(effects, [Effect::Controls(s.controls.clone())]);
    submit(&mut s, "/strategy early-exit");
    assert_eq!(s.controls.strategy(), Strategy::EarlyExit);
    let effects = submit(&mut s, "/system Be brief.");
    assert_eq!(
        effects,
        [Effect::Engine(Command::SetSystem(Some("Be brief.".into())))]
    );
    submit(&mut s, "/speedup 99");
    assert_eq!(s.controls.target(), 1.5, "an unreachable target is refused");
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
