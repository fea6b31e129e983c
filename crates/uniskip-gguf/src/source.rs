//! Where the parser's bytes come from: a buffer in memory, or a file read through a window.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use super::problem::{Problem, io_problem};

/// Random access to the bytes being validated.
pub(super) trait Source {
    /// Exactly `n` bytes at `offset`. Callers guarantee `offset + n` is within the length given
    /// to [`parse`](super::parser::parse), and keep `n` small (at most
    /// [`MAX_KEY_LEN`](super::tables::MAX_KEY_LEN) or a window-sized chunk).
    fn read(&mut self, offset: u64, n: usize) -> Result<&[u8], Problem>;
}

/// A whole file held in memory.
pub(super) struct SliceSource<'d>(pub(super) &'d [u8]);

impl Source for SliceSource<'_> {
    fn read(&mut self, offset: u64, n: usize) -> Result<&[u8], Problem> {
        usize::try_from(offset)
            .ok()
            .and_then(|start| self.0.get(start..start.checked_add(n)?))
            .ok_or(Problem::Io {
                action: "read",
                message: "read outside the buffer (a bug in the validator)".into(),
            })
    }
}

/// A file read through one window of `window` bytes, moved as the parser advances.
pub(super) struct FileSource {
    file: File,
    /// Length of the file when it was opened.
    len: u64,
    /// File offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
    window: usize,
}

impl FileSource {
    /// Reads `file`, of `len` bytes, through a window of `window` bytes.
    pub(super) fn new(file: File, len: u64, window: usize) -> FileSource {
        FileSource {
            file,
            len,
            start: 0,
            buf: Vec::new(),
            window,
        }
    }
}

impl Source for FileSource {
    fn read(&mut self, offset: u64, n: usize) -> Result<&[u8], Problem> {
        let hit = offset
            .checked_sub(self.start)
            .and_then(|from| usize::try_from(from).ok())
            .filter(|&from| from.checked_add(n).is_some_and(|end| end <= self.buf.len()));
        if let Some(from) = hit {
            return Ok(&self.buf[from..from + n]);
        }
        // Refill with a whole window (or `n` if larger), but not past the end of the file. If
        // the file shrank since it was opened, `read_exact` fails and that is reported as I/O.
        let left = self.len.saturating_sub(offset);
        let want = usize::try_from(left).map_or(self.window, |left| self.window.min(left));
        self.buf.clear();
        self.buf.resize(want.max(n), 0);
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut self.buf))
            .map_err(|e| io_problem("read", &e))?;
        self.start = offset;
        Ok(&self.buf[..n])
    }
}
