//! The message being typed: a small multi-line editor, and the history of sent messages.

/// Multi-line text with a cursor (a byte offset, always on a character boundary).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Input {
    text: String,
    cursor: usize,
}

impl Input {
    /// The text typed so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether nothing is typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The cursor as a byte offset into [`Input::text`].
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Replaces the text, cursor at the end.
    pub fn set(&mut self, text: &str) {
        self.text = text.to_owned();
        self.cursor = self.text.len();
    }

    /// Empties the input and returns what it held.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    /// Inserts text at the cursor. Pasted line ends become newlines: terminals paste
    /// them as CR (the Enter key's byte), some as CR LF, some as LF.
    pub fn insert(&mut self, s: &str) {
        let clean: String = s
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .chars()
            .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
            .map(|c| if c == '\t' { ' ' } else { c })
            .collect();
        self.text.insert_str(self.cursor, &clean);
        self.cursor += clean.len();
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        if let Some(prev) = self.prev_boundary() {
            self.text.replace_range(prev..self.cursor, "");
            self.cursor = prev;
        }
    }

    /// Deletes the character under the cursor.
    pub fn delete(&mut self) {
        if let Some(next) = self.next_boundary() {
            self.text.replace_range(self.cursor..next, "");
        }
    }

    /// Deletes the word before the cursor (and the spaces after it).
    pub fn delete_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end_matches([' ', '\t']);
        let start = trimmed.rfind(|c: char| c.is_whitespace()).map_or(0, |i| {
            i + trimmed[i..].chars().next().map_or(1, char::len_utf8)
        });
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Deletes from the start of the cursor's line to the cursor.
    pub fn delete_to_line_start(&mut self) {
        let start = self.line_start();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Deletes from the cursor to the end of its line.
    pub fn delete_to_line_end(&mut self) {
        let end = self.line_end();
        self.text.replace_range(self.cursor..end, "");
    }

    /// Moves the cursor one character left.
    pub fn left(&mut self) {
        if let Some(p) = self.prev_boundary() {
            self.cursor = p;
        }
    }

    /// Moves the cursor one character right.
    pub fn right(&mut self) {
        if let Some(n) = self.next_boundary() {
            self.cursor = n;
        }
    }

    /// Moves the cursor to the start of its line.
    pub fn home(&mut self) {
        self.cursor = self.line_start();
    }

    /// Moves the cursor to the end of its line.
    pub fn end(&mut self) {
        self.cursor = self.line_end();
    }

    /// Moves the cursor one line up, keeping its column where the line is long enough.
    /// Returns false on the first line.
    pub fn up(&mut self) -> bool {
        let start = self.line_start();
        if start == 0 {
            return false;
        }
        let column = self.text[start..self.cursor].chars().count();
        let prev_start = self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1);
        self.cursor = offset_of_column(&self.text, prev_start, start - 1, column);
        true
    }

    /// Moves the cursor one line down. Returns false on the last line.
    pub fn down(&mut self) -> bool {
        let end = self.line_end();
        if end == self.text.len() {
            return false;
        }
        let column = self.text[self.line_start()..self.cursor].chars().count();
        let next_start = end + 1;
        let next_end = self.text[next_start..]
            .find('\n')
            .map_or(self.text.len(), |i| next_start + i);
        self.cursor = offset_of_column(&self.text, next_start, next_end, column);
        true
    }

    /// The cursor's line and column (in characters), both 0-based.
    pub fn line_and_column(&self) -> (usize, usize) {
        let before = &self.text[..self.cursor];
        let line = before.matches('\n').count();
        let column = before[self.line_start()..].chars().count();
        (line, column)
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i)
    }

    fn prev_boundary(&self) -> Option<usize> {
        self.text[..self.cursor]
            .char_indices()
            .next_back()
            .map(|(i, _)| i)
    }

    fn next_boundary(&self) -> Option<usize> {
        self.text[self.cursor..]
            .chars()
            .next()
            .map(|c| self.cursor + c.len_utf8())
    }
}

/// The byte offset of character `column` in `text[start..end]`, or `end` if shorter.
fn offset_of_column(text: &str, start: usize, end: usize, column: usize) -> usize {
    text[start..end]
        .char_indices()
        .nth(column)
        .map_or(end, |(i, _)| start + i)
}

/// Messages sent earlier, recalled with Up and Down on an empty input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    items: Vec<String>,
    /// The recalled item while browsing; `None` when not browsing.
    pos: Option<usize>,
}

impl History {
    /// Remembers a sent message (not twice in a row).
    pub fn push(&mut self, message: &str) {
        if self.items.last().map(String::as_str) != Some(message) {
            self.items.push(message.to_owned());
        }
        self.pos = None;
    }

    /// Whether an item is recalled into the input right now.
    pub fn browsing(&self) -> bool {
        self.pos.is_some()
    }

    /// Stops browsing (the recalled text was edited, or sent).
    pub fn stop_browsing(&mut self) {
        self.pos = None;
    }

    /// The next older message, if any.
    pub fn older(&mut self) -> Option<&str> {
        let next = match self.pos {
            None => self.items.len().checked_sub(1)?,
            Some(0) => 0,
            Some(p) => p - 1,
        };
        self.pos = Some(next);
        Some(&self.items[next])
    }

    /// The next newer message; `None` past the newest (browsing ends, the input empties).
    pub fn newer(&mut self) -> Option<&str> {
        let p = self.pos?;
        if p + 1 < self.items.len() {
            self.pos = Some(p + 1);
            Some(&self.items[p + 1])
        } else {
            self.pos = None;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> Input {
        let mut i = Input::default();
        i.insert(s);
        i
    }

    #[test]
    fn typing_and_deleting_respects_multibyte_characters() {
        let mut i = typed("héllo");
        i.left();
        i.left();
        i.left();
        i.backspace();
        assert_eq!(i.text(), "hllo");
        i.delete();
        assert_eq!(i.text(), "hlo");
        i.insert("é🦀");
        assert_eq!(i.text(), "hé🦀lo");
    }

    #[test]
    fn up_and_down_move_between_lines_keeping_the_column() {
        let mut i = typed("first line\nab\nthird");
        assert_eq!(i.line_and_column(), (2, 5));
        assert!(i.up());
        assert_eq!(i.line_and_column(), (1, 2));
        assert!(i.up());
        assert_eq!(i.line_and_column(), (0, 2));
        assert!(!i.up());
        assert!(i.down() && i.down());
        assert_eq!(i.line_and_column(), (2, 2));
        assert!(!i.down());
    }

    #[test]
    fn pasted_line_ends_become_newlines_and_controls_go() {
        let i = typed("a\r\nb\tc\u{7}\rd\ne");
        assert_eq!(i.text(), "a\nb c\nd\ne");
    }

    #[test]
    fn word_and_line_deletion() {
        let mut i = typed("one two  ");
        i.delete_word();
        assert_eq!(i.text(), "one ");
        let mut i = typed("keep\ndrop this");
        i.delete_to_line_start();
        assert_eq!(i.text(), "keep\n");
        let mut i = typed("ab\ncd");
        i.up();
        i.home();
        i.right();
        i.delete_to_line_end();
        assert_eq!(i.text(), "a\ncd");
    }

    #[test]
    fn history_walks_back_and_forth_and_ends_empty() {
        let mut h = History::default();
        h.push("one");
        h.push("two");
        h.push("two");
        assert_eq!(h.older(), Some("two"));
        assert_eq!(h.older(), Some("one"));
        assert_eq!(h.older(), Some("one"));
        assert_eq!(h.newer(), Some("two"));
        assert_eq!(h.newer(), None);
        assert!(!h.browsing());
    }
}
