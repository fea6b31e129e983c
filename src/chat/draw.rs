//! State to widgets. Reads the state, never changes it.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph};

use super::layout::{Areas, areas, fit, input_cursor, input_rows, transcript_lines};
use super::state::{ReplyPhase, State};
use crate::skip::SpeedupMode;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, state: &State) {
    let area = frame.area();
    let a = areas(area, state);
    draw_transcript(frame, state, &a);
    draw_input(frame, state, &a);
    draw_status(frame, state, a.status);
    if state.help {
        draw_help(frame, area);
    }
}

fn draw_transcript(frame: &mut Frame, state: &State, a: &Areas) {
    let inner = a.transcript_inner();
    let lines = transcript_lines(state, inner.width);
    let height = usize::from(inner.height);
    let bottom = lines.len().saturating_sub(height);
    let top = state.scroll.unwrap_or(bottom).min(bottom);
    let mut block = Block::bordered()
        .border_type(BorderType::Rounded)
        .padding(ratatui::widgets::Padding::horizontal(1))
        .border_style(Style::new().fg(Color::DarkGray))
        .title(Span::styled(
            format!(" {} ", state.title()),
            Style::new().fg(Color::White).add_modifier(Modifier::BOLD),
        ));
    if top < bottom {
        block = block.title_bottom(Span::styled(
            format!(" ↓ {} more lines · PgDn ", bottom - top),
            Style::new().fg(Color::Yellow),
        ));
    }
    let visible: Vec<Line> = lines.into_iter().skip(top).take(height).collect();
    frame.render_widget(Paragraph::new(visible).block(block), a.transcript);
}

fn draw_input(frame: &mut Frame, state: &State, a: &Areas) {
    let inner = a.input_inner();
    let title = input_title(state);
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .padding(ratatui::widgets::Padding::horizontal(1))
        .border_style(Style::new().fg(Color::Cyan))
        .title(title);
    let text = state.input.text();
    let (row, column) = input_cursor(text, state.input.cursor(), inner.width);
    // Keep the cursor's row in view when the message is taller than the box.
    let offset = row.saturating_sub(usize::from(inner.height.max(1)) - 1);
    let lines: Vec<Line> = if text.is_empty() {
        vec![Line::styled(
            "Type a message; /help lists commands",
            Style::new().fg(Color::DarkGray),
        )]
    } else {
        input_rows(text, inner.width)
            .into_iter()
            .skip(offset)
            .take(usize::from(inner.height))
            .map(|(_, s)| Line::raw(s))
            .collect()
    };
    frame.render_widget(Paragraph::new(lines).block(block), a.input);
    if !state.help && inner.width > 0 && inner.height > 0 {
        frame.set_cursor_position(Position {
            x: inner.x + column.min(inner.width - 1),
            y: inner.y + (row - offset) as u16,
        });
    }
}

/// The input box's title: a hint just given, else what the engine is doing and the keys
/// that matter now.
pub fn input_title(state: &State) -> Line<'static> {
    let dim = Style::new().fg(Color::DarkGray);
    let busy = Style::new().fg(Color::Yellow);
    if let Some(flash) = &state.flash {
        return Line::from(Span::styled(format!(" {flash} "), busy));
    }
    let (what, style, keys) = match state.reply {
        _ if state.stopping => ("● stopping…".to_owned(), busy, ""),
        ReplyPhase::Streaming { tokens: 0 } => (
            "● reading the prompt".to_owned(),
            busy,
            " · Ctrl+C stops it · F1 keys ",
        ),
        ReplyPhase::Streaming { tokens } => (
            format!("● generating {tokens} tok"),
            Style::new().fg(Color::Green),
            " · Ctrl+C stops it · F1 keys ",
        ),
        ReplyPhase::Queued => (
            "● starting".to_owned(),
            busy,
            " · Ctrl+C stops it · F1 keys ",
        ),
        ReplyPhase::Idle if state.probing => (
            "● measuring speed".to_owned(),
            busy,
            " · Enter send · F1 keys ",
        ),
        ReplyPhase::Idle => (
            "message".to_owned(),
            dim,
            " · Enter send · Alt+Enter new line · F1 keys ",
        ),
    };
    Line::from(vec![
        Span::raw(" "),
        Span::styled(what, style),
        Span::styled(keys, dim),
    ])
}

/// The status lines, as text: speed, target and achieved, block map, settings.
pub fn status_lines(state: &State, width: u16) -> Vec<Line<'static>> {
    let width = usize::from(width);
    let dim = Style::new().fg(Color::DarkGray);
    let value = Style::new().fg(Color::White).add_modifier(Modifier::BOLD);

    // Speed now, and the full-depth speed it is compared with.
    let mut speed = vec![Span::styled("decode ", dim)];
    match state.decode_rate() {
        Some((rate, live)) => {
            speed.push(Span::styled(format!("{rate:.1} tok/s"), value));
            speed.push(Span::styled(
                if live { " live" } else { " last reply" },
                dim,
            ));
        }
        None => speed.push(Span::styled("—", value)),
    }
    speed.push(Span::styled(" · full depth ", dim));
    match (state.baseline, state.probing, state.probe_skipped) {
        (Some(b), _, _) => {
            speed.push(Span::styled(format!("{:.1} tok/s", b.tokens_per_s), value));
            speed.push(Span::styled(format!(" ({})", b.source.label()), dim));
        }
        (None, true, _) => speed.push(Span::styled("measuring…", Style::new().fg(Color::Yellow))),
        (None, false, true) => {
            speed.push(Span::styled("— (first full-depth reply)", dim));
        }
        (None, false, false) => speed.push(Span::styled("—", value)),
    }

    // Target and achieved speedups, on one scale.
    let target = state.controls.target();
    let achieved = state.achieved();
    let scale = [4.0, target.ceil(), achieved.unwrap_or(1.0).ceil()]
        .into_iter()
        .fold(f64::MIN, f64::max);
    let half = width / 2;
    let mut gauges = gauge("target   ", Some(target), scale, half, Color::Cyan);
    gauges.extend(gauge(
        "achieved ",
        achieved,
        scale,
        width - half,
        Color::Green,
    ));

    // One cell per block of the mask in use.
    let mut map = vec![
        Span::styled("blocks   ", dim),
        Span::styled(
            format!("{:>2}/{:<2} ", state.mask.n_active(), state.mask.n_layer()),
            value,
        ),
    ];
    for &kept in state.mask.as_slice() {
        map.push(if kept {
            Span::styled("█", Style::new().fg(Color::Green))
        } else {
            Span::styled("·", dim)
        });
    }
    if state.controls.plan().spec().depends_on_step() {
        map.push(Span::styled(format!(" step {}", state.step), dim));
    }

    // Settings and what keeping the cache exact has cost.
    let c = &state.controls;
    let mut settings = vec![
        Span::styled(c.strategy().name(), value),
        Span::styled(" · speedup ", dim),
        Span::styled(
            match c.mode() {
                SpeedupMode::Layers => "by blocks".to_owned(),
                SpeedupMode::Measured => format!("measured (max {:.2}x)", c.max_target()),
            },
            value,
        ),
        // Lossless decoding always prefills at full depth: it takes the prefill's place.
        Span::styled(
            if c.lossless.is_some() {
                " · lossless "
            } else {
                " · prefill "
            },
            dim,
        ),
        Span::styled(
            match (c.lossless, c.prefill) {
                (Some(d), _) => d.name(),
                (None, crate::engine::PrefillPolicy::Full) => "full",
                (None, crate::engine::PrefillPolicy::Masked) => "masked",
            },
            value,
        ),
        Span::styled(" · KV repair ", dim),
    ];
    let (total_tokens, total_ms) = state.repair_total;
    match state.last_reply.as_ref().filter(|s| s.repair_tokens > 0) {
        Some(s) => {
            settings.push(Span::styled(
                format!("{} tok {:.0} ms", s.repair_tokens, s.repair_ms),
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ));
            if total_tokens > s.repair_tokens {
                settings.push(Span::styled(
                    format!(" (all {total_tokens} tok {total_ms:.0} ms)"),
                    dim,
                ));
            }
        }
        None if total_tokens > 0 => settings.push(Span::styled(
            format!("{total_tokens} tok {total_ms:.0} ms so far"),
            value,
        )),
        None => settings.push(Span::styled("none", value)),
    }

    [speed, gauges, map, settings]
        .into_iter()
        .map(|spans| fit(spans, width))
        .collect()
}

/// The longest gauge bar, in cells.
const GAUGE_MAX: usize = 32;

/// `label 1.50x ━━━━──────` in `width` cells; the bar spans 1x..`scale`.
fn gauge(
    label: &'static str,
    speedup: Option<f64>,
    scale: f64,
    width: usize,
    color: Color,
) -> Vec<Span<'static>> {
    let number = match speedup {
        Some(s) => format!("{s:>5.2}x "),
        None => "    — ".to_owned(),
    };
    // Past a few dozen cells a longer bar says nothing more.
    let bar = width
        .saturating_sub(label.len() + number.chars().count() + 2)
        .min(GAUGE_MAX);
    let ratio = speedup.map_or(0.0, |s| ((s - 1.0) / (scale - 1.0)).clamp(0.0, 1.0));
    let filled = (ratio * bar as f64).round() as usize;
    vec![
        Span::styled(label, Style::new().fg(Color::DarkGray)),
        Span::styled(
            number,
            Style::new().fg(Color::White).add_modifier(Modifier::BOLD),
        ),
        Span::styled("━".repeat(filled), Style::new().fg(color)),
        Span::styled("─".repeat(bar - filled), Style::new().fg(Color::DarkGray)),
        Span::raw("  "),
    ]
}

fn draw_status(frame: &mut Frame, state: &State, area: Rect) {
    // One column of margin each side, lined up with the text inside the boxes above.
    let area = area.inner(ratatui::layout::Margin::new(1, 0));
    frame.render_widget(Paragraph::new(status_lines(state, area.width)), area);
}

/// The help overlay: the key table and the commands, as they dispatch.
fn draw_help(frame: &mut Frame, area: Rect) {
    let keys = super::keys::help_rows();
    let commands = super::commands::help_rows();
    let key_width = keys
        .iter()
        .chain(&commands)
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let key_style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    let row = |(k, d): &(String, &str)| {
        Line::from(vec![
            Span::styled(format!("{k:<key_width$}"), key_style),
            Span::raw(d.to_string()),
        ])
    };
    let mut lines: Vec<Line> = keys.iter().map(row).collect();
    lines.push(Line::default());
    lines.extend(commands.iter().map(row));
    let content_width = lines.iter().map(Line::width).max().unwrap_or(0) as u16;
    let width = (content_width + 4).min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(Style::new().fg(Color::Cyan))
        .title(" Keys and commands ")
        .title_bottom(Span::styled(
            " any key closes ",
            Style::new().fg(Color::DarkGray),
        ))
        .padding(ratatui::widgets::Padding::horizontal(1));
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(block), popup);
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;

    use super::*;
    use crate::chat::controls::SkipControls;
    use crate::chat::protocol::{Baseline, BaselineSource, ModelFacts, ReplyStats};
    use crate::chat::state::{Entry, State};
    use crate::skip::Mask;

    fn state(template: bool) -> State {
        let info = ModelFacts {
            name: "SmolLM2 135M Instruct".into(),
            architecture: "llama".into(),
            n_layer: 30,
            template,
            tuned: None,
            device: "CPU".into(),
        };
        State::new(info, SkipControls::for_tests(1.5), None, &[])
    }

    fn render(state: &State, w: u16, h: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| draw(f, state)).unwrap();
        rows(terminal.backend().buffer())
    }

    fn rows(buffer: &Buffer) -> Vec<String> {
        let area = buffer.area;
        (0..area.height)
            .map(|y| {
                (0..area.width)
                    .map(|x| buffer[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect()
    }

    fn busy_state() -> State {
        let mut s = state(true);
        s.baseline = Some(Baseline {
            tokens_per_s: 131.4,
            source: BaselineSource::Probe,
        });
        s.entries.push(Entry::User("Why is the sky blue?".into()));
        let stats = ReplyStats {
            prompt_tokens: 30,
            prefill_tok_s: 900.0,
            repair_tokens: 14,
            repair_ms: 12.0,
            stop: "max_tokens".into(),
            ..ReplyStats::fixture(24, 20, 181.2)
        };
        s.entries.push(Entry::Assistant {
            text: "Because air scatters blue light more than red light. ".repeat(12),
            stats: Some(stats.clone()),
        });
        s.repair_total = (14, 12.0);
        s.last_reply = Some(stats);
        s
    }

    #[test]
    fn the_status_area_shows_the_speeds_and_speedups_in_the_state() {
        let s = busy_state();
        let screen = render(&s, 80, 24).join("\n");
        assert!(screen.contains("decode 181.2 tok/s last reply"), "{screen}");
        assert!(
            screen.contains("full depth 131.4 tok/s (probe)"),
            "{screen}"
        );
        assert!(screen.contains("target    1.50x"), "{screen}");
        // 181.2 / 131.4
        assert!(screen.contains("achieved  1.38x"), "{screen}");
        assert!(screen.contains("KV repair 14 tok 12 ms"), "{screen}");
        assert!(
            screen.contains("unified · speedup by blocks · prefill full"),
            "{screen}"
        );
    }

    #[test]
    fn the_block_map_has_one_cell_per_block_of_the_mask() {
        let mut s = busy_state();
        s.mask = Mask::from_skip_list("1-9,25", 30).unwrap();
        let screen = render(&s, 80, 24);
        let map = screen
            .iter()
            .find(|l| l.starts_with(" blocks"))
            .expect("a block map row");
        let cells: String = map.chars().filter(|c| *c == '█' || *c == '·').collect();
        assert_eq!(cells, s.mask.to_string());
        assert!(map.contains("20/30"), "{map}");
    }

    #[test]
    fn the_gauges_fill_in_proportion_on_one_scale() {
        let s = busy_state();
        let status = status_lines(&s, 80);
        let gauges = status[1].to_string();
        let (target, achieved) = gauges.split_at(gauges.find("achieved").unwrap());
        let filled = |s: &str| s.chars().filter(|&c| c == '━').count();
        assert!(filled(target) > filled(achieved), "{gauges}");
        assert!(filled(achieved) > 0, "{gauges}");
    }

    #[test]
    fn layouts_at_80x24_and_200x60_keep_every_status_field_whole() {
        for (w, h) in [(80, 24), (200, 60)] {
            let s = busy_state();
            let screen = render(&s, w, h);
            assert_eq!(screen.len(), usize::from(h));
            let status = &screen[usize::from(h) - 4..];
            for line in status {
                assert!(!line.contains('…'), "cut at {w}x{h}: {line}");
            }
            // The title, the input box and the status all made it on screen.
            assert!(screen[0].contains("uniskip · SmolLM2"), "{}", screen[0]);
            assert!(screen.iter().any(|l| l.contains("Enter send")));
            assert!(status[2].starts_with(" blocks"));
        }
    }

    #[test]
    fn tiny_terminals_draw_without_panicking_and_keep_what_fits_legible() {
        let mut s = busy_state();
        s.input.insert("a message\nover two lines");
        for (w, h) in [(1, 1), (10, 4), (20, 8), (40, 12)] {
            s.help = w > 10;
            let screen = render(&s, w, h);
            if w >= 20 {
                // Something legible is still drawn, not an empty or garbled screen.
                assert!(
                    screen.iter().any(|l| l.chars().any(char::is_alphanumeric)),
                    "{w}x{h}: nothing legible\n{}",
                    screen.join("\n")
                );
            }
        }
        // Without the help, a 40-column screen keeps the title's start and the input box.
        s.help = false;
        let screen = render(&s, 40, 12);
        assert!(screen[0].contains("uniskip"), "{}", screen.join("\n"));
        assert!(
            screen.iter().any(|l| l.contains("message")),
            "{}",
            screen.join("\n")
        );
    }

    #[test]
    fn long_text_is_wrapped_inside_the_transcript_border() {
        let s = busy_state();
        let screen = render(&s, 80, 24);
        for line in &screen[1..12] {
            assert!(line.starts_with('│') && line.ends_with('│'), "{line}");
        }
    }

    #[test]
    fn a_tuned_file_says_what_it_was_tuned_for_in_the_title() {
        let mut s = state(true);
        s.info.tuned = Some("tuned for 1.5x".into());
        let screen = render(&s, 100, 24);
        assert!(screen[0].contains("· tuned for 1.5x"), "{}", screen[0]);
        assert!(!render(&state(true), 100, 24)[0].contains("tuned"));
    }

    #[test]
    fn a_model_without_a_template_says_so_in_the_title() {
        let screen = render(&state(false), 100, 24);
        assert!(
            screen[0].contains("no chat template: plain continuation"),
            "{}",
            screen[0]
        );
    }

    #[test]
    fn the_title_names_the_device_that_holds_the_blocks() {
        let mut s = state(true);
        assert!(render(&s, 100, 24)[0].contains("· CPU"));
        s.info.device = "CUDA0 30/30".into();
        let screen = render(&s, 120, 24);
        assert!(
            screen[0].contains("chat template · CUDA0 30/30"),
            "{}",
            screen[0]
        );
    }

    #[test]
    fn the_help_overlay_lists_keys_and_commands_and_fits_80x24() {
        let mut s = state(true);
        s.help = true;
        let screen = render(&s, 80, 24).join("\n");
        for needle in [
            "Ctrl+C",
            "Alt+Enter",
            "/save FILE",
            "/strategy NAME",
            "any key closes",
        ] {
            assert!(screen.contains(needle), "{needle} missing:\n{screen}");
        }
    }

    #[test]
    fn a_streaming_reply_shows_the_live_rate_and_a_cursor() {
        let mut s = state(true);
        s.entries.push(Entry::User("hi".into()));
        s.entries.push(Entry::Assistant {
            text: "Hello".into(),
            stats: None,
        });
        s.reply = ReplyPhase::Streaming { tokens: 5 };
        let t0 = std::time::Instant::now();
        for i in 0..5 {
            s.window.push(t0 + std::time::Duration::from_millis(5 * i));
        }
        let screen = render(&s, 80, 24).join("\n");
        assert!(screen.contains("Hello▌"), "{screen}");
        assert!(screen.contains("decode 200.0 tok/s live"), "{screen}");
        assert!(
            screen.contains("● generating 5 tok · Ctrl+C stops it"),
            "{screen}"
        );
    }
}
