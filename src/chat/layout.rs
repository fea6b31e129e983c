//! Geometry and text shaping shared by update (scrolling needs line counts) and draw:
//! where each pane goes, and the transcript as wrapped, styled lines. Pure functions of
//! the state and the terminal size.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthChar;

use super::state::{Entry, State};

/// Rows of the status area.
pub const STATUS_ROWS: u16 = 4;

/// Where the panes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Areas {
    /// The conversation, border included.
    pub transcript: Rect,
    /// The message being typed, border included.
    pub input: Rect,
    /// The status lines.
    pub status: Rect,
}

impl Areas {
    /// The conversation's text area (inside the border and a column of padding each side).
    pub fn transcript_inner(&self) -> Rect {
        let r = inner(self.transcript);
        Rect {
            x: r.x.saturating_add(1),
            width: r.width.saturating_sub(2),
            ..r
        }
    }

    /// The input's text area (inside the border and a column of padding each side).
    pub fn input_inner(&self) -> Rect {
        let r = inner(self.input);
        Rect {
            x: r.x.saturating_add(1),
            width: r.width.saturating_sub(2),
            ..r
        }
    }
}

fn inner(r: Rect) -> Rect {
    Rect {
        x: r.x.saturating_add(1),
        y: r.y.saturating_add(1),
        width: r.width.saturating_sub(2),
        height: r.height.saturating_sub(2),
    }
}

/// Splits `area` into conversation, input and status. The input grows with its text up
/// to a quarter of the height (at least 1 row, at most 8); the conversation takes the rest.
pub fn areas(area: Rect, state: &State) -> Areas {
    let max_rows = (area.height / 4).clamp(1, 8);
    let text_rows = input_rows(state.input.text(), area.width.saturating_sub(4)).len() as u16;
    let input_height = text_rows.clamp(1, max_rows) + 2;
    let [transcript, input, status] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(input_height),
        Constraint::Length(STATUS_ROWS),
    ])
    .areas(area);
    Areas {
        transcript,
        input,
        status,
    }
}

/// The input's text hard-wrapped at `width` cells: (rows, each row's starting byte offset).
pub fn input_rows(text: &str, width: u16) -> Vec<(usize, String)> {
    let width = usize::from(width.max(1));
    let mut rows = Vec::new();
    let mut offset = 0;
    for line in text.split('\n') {
        let mut row = String::new();
        let mut row_start = offset;
        let mut used = 0;
        for (i, c) in line.char_indices() {
            let w = c.width().unwrap_or(0);
            if used + w > width {
                rows.push((row_start, std::mem::take(&mut row)));
                row_start = offset + i;
                used = 0;
            }
            row.push(c);
            used += w;
        }
        rows.push((row_start, row));
        offset += line.len() + 1;
    }
    rows
}

/// Where the cursor goes in [`input_rows`]: (row, column in cells).
pub fn input_cursor(text: &str, cursor: usize, width: u16) -> (usize, u16) {
    let rows = input_rows(text, width);
    // The last row starting at or before the cursor holds it.
    let row = rows
        .iter()
        .rposition(|(start, _)| *start <= cursor)
        .unwrap_or(0);
    let (start, s) = &rows[row];
    let column: usize = text[*start..cursor.min(start + s.len())]
        .chars()
        .map(|c| c.width().unwrap_or(0))
        .sum();
    (row, column as u16)
}

/// Word-wraps `text` at `width` cells: breaks at spaces, splits words longer than a line,
/// keeps the newlines and the indentation of each line.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for line in text.split('\n') {
        let mut current = String::new();
        let mut used = 0;
        for token in tokens(line) {
            let w: usize = token.chars().map(|c| c.width().unwrap_or(0)).sum();
            if token.starts_with(' ') {
                if used + w <= width {
                    current.push_str(token);
                    used += w;
                } else if used > 0 {
                    // The spaces end the line; they are not carried to the next.
                    out.push(std::mem::take(&mut current));
                    used = 0;
                }
                continue;
            }
            if used + w > width && used > 0 && w <= width {
                out.push(std::mem::take(&mut current).trim_end().to_owned());
                used = 0;
            }
            if used + w <= width {
                current.push_str(token);
                used += w;
                continue;
            }
            for c in token.chars() {
                let cw = c.width().unwrap_or(0);
                if used + cw > width && used > 0 {
                    out.push(std::mem::take(&mut current));
                    used = 0;
                }
                current.push(c);
                used += cw;
            }
        }
        out.push(current.trim_end().to_owned());
    }
    out
}

/// Splits a line into runs of spaces and runs of anything else.
fn tokens(line: &str) -> impl Iterator<Item = &str> {
    let mut rest = line;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let space = first == ' ';
        let end = rest
            .char_indices()
            .find(|&(_, c)| (c == ' ') != space)
            .map_or(rest.len(), |(i, _)| i);
        let (token, tail) = rest.split_at(end);
        rest = tail;
        Some(token)
    })
}

/// The cursor drawn at the end of a reply while it streams.
pub const STREAM_CURSOR: &str = "▌";

/// The conversation as wrapped, styled lines at `width` cells.
pub fn transcript_lines(state: &State, width: u16) -> Vec<Line<'static>> {
    let width = usize::from(width.max(1));
    let mut lines: Vec<Line<'static>> = Vec::new();
    let last = state
        .entries
        .iter()
        .rposition(|e| matches!(e, Entry::Assistant { .. }));
    for (i, entry) in state.entries.iter().enumerate() {
        if !lines.is_empty() {
            lines.push(Line::default());
        }
        match entry {
            Entry::User(text) => {
                lines.push(Line::styled("You", speaker(Color::Cyan)));
                lines.extend(wrap(text, width).into_iter().map(Line::raw));
            }
            Entry::Assistant { text, stats } => {
                lines.push(Line::styled("Model", speaker(Color::Green)));
                let streaming = Some(i) == last && stats.is_none() && state.reply.is_active();
                let body = if streaming {
                    if text.is_empty() && !state.reply.is_streaming() {
                        "…".to_owned()
                    } else {
                        format!("{text}{STREAM_CURSOR}")
                    }
                } else {
                    text.trim_end().to_owned()
                };
                lines.extend(wrap(&body, width).into_iter().map(Line::raw));
                if let Some(stats) = stats {
                    let style = Style::new().fg(Color::DarkGray);
                    lines.extend(
                        wrap(&format!("— {}", stats.summary()), width)
                            .into_iter()
                            .map(|l| Line::styled(l, style)),
                    );
                }
            }
            Entry::System(text) => {
                let style = Style::new().fg(Color::Magenta);
                let text = match text {
                    Some(t) => format!("System prompt: {t}"),
                    None => "System prompt removed.".to_owned(),
                };
                lines.extend(
                    wrap(&text, width)
                        .into_iter()
                        .map(|l| Line::styled(l, style)),
                );
            }
            Entry::Notice(text) => {
                let style = Style::new().fg(Color::Yellow);
                lines.extend(
                    wrap(&format!("· {text}"), width)
                        .into_iter()
                        .map(|l| Line::styled(l, style)),
                );
            }
        }
    }
    lines
}

fn speaker(color: Color) -> Style {
    Style::new().fg(color).add_modifier(Modifier::BOLD)
}

/// Spans padded or cut to exactly `width` cells (so nothing spills past its area).
pub fn fit(spans: Vec<Span<'static>>, width: usize) -> Line<'static> {
    let mut out = Vec::new();
    let mut used = 0;
    for span in spans {
        let w = span.width();
        if used + w <= width {
            used += w;
            out.push(span);
            continue;
        }
        let mut cut = String::new();
        for c in span.content.chars() {
            let cw = c.width().unwrap_or(0);
            if used + cw + 1 > width {
                break;
            }
            cut.push(c);
            used += cw;
        }
        if used < width {
            cut.push('…');
        }
        out.push(Span::styled(cut, span.style));
        break;
    }
    Line::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_at_spaces_and_keeps_newlines_and_indentation() {
        assert_eq!(wrap("the sky is blue", 7), ["the sky", "is blue"]);
        assert_eq!(wrap("a\n\n  b c", 10), ["a", "", "  b c"]);
        assert_eq!(wrap("", 5), [""]);
    }

    #[test]
    fn wrap_splits_words_longer_than_a_line_and_counts_wide_characters() {
        assert_eq!(wrap("abcdefgh ij", 3), ["abc", "def", "gh", "ij"]);
        assert_eq!(wrap("日本語です", 4), ["日本", "語で", "す"]);
    }

    #[test]
    fn no_wrapped_line_is_wider_than_the_width() {
        let text = "Lorem ipsum dolor sit amet,   consectetur adipiscing elit, sed do eiusmod \
                    tempor incididunt ut labore et dolore magna aliqua. Supercalifragilistic";
        for width in 1..40 {
            for line in wrap(text, width) {
                let w: usize = line.chars().map(|c| c.width().unwrap_or(0)).sum();
                assert!(w <= width, "{line:?} is wider than {width}");
            }
        }
    }

    #[test]
    fn input_rows_hard_wrap_and_the_cursor_follows() {
        let rows = input_rows("abcdef\ngh", 4);
        let texts: Vec<_> = rows.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(texts, ["abcd", "ef", "gh"]);
        assert_eq!(input_cursor("abcdef\ngh", 5, 4), (1, 1));
        assert_eq!(input_cursor("abcdef\ngh", 9, 4), (2, 2));
        assert_eq!(input_cursor("", 0, 4), (0, 0));
    }

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        let line = fit(vec![Span::raw("abc"), Span::raw("defgh")], 6);
        assert_eq!(line.to_string(), "abcde…");
        assert_eq!(fit(vec![Span::raw("ab")], 6).to_string(), "ab");
    }
}
