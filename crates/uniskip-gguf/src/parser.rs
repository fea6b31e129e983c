//! The parser: a cursor over the source that checks every length before it reads, and
//! [`parse`], which runs the validation steps in file order.

use super::Summary;
use super::problem::{Problem, shown};
use super::source::Source;
use super::tables::{
    ABSURD, MAX_KV_COUNT, MAX_SHOWN_VALUE, MAX_STRING_LEN, MAX_TENSOR_COUNT, MIN_KV_BYTES,
    MIN_TENSOR_INFO_BYTES,
};

/// Validates a GGUF file of `len` bytes read through `src`: the structure in file order
/// (magic, header, metadata, tensor infos, data layout), then the content llama.cpp needs.
pub(super) fn parse<S: Source>(src: &mut S, len: u64) -> Result<Summary, Problem> {
    if len == 0 {
        return Err(Problem::Empty);
    }
    let mut p = Parser {
        src,
        pos: 0,
        len,
        at: Where::Magic,
        array_elements: 0,
        nested_arrays: false,
    };
    p.magic()?;
    let (version, n_tensors, n_kv) = p.header()?;
    let kv = p.metadata(n_kv)?;
    let alignment = super::metadata::alignment(&kv)?;
    let tensor_info_offset = p.pos;
    let tensors = p.tensor_infos(n_tensors)?;
    let data_offset = p.data_offset(alignment, n_tensors)?;
    tensors.check_layout(data_offset, alignment, len)?;
    let content = super::content::check(&mut p, &kv, &tensors.names)?;
    Ok(Summary {
        tensors: tensors.list,
        array_elements: p.array_elements,
        nested_arrays: p.nested_arrays,
        version,
        architecture: content.architecture,
        name: content.name,
        block_count: content.block_count,
        n_tensors,
        n_kv,
        alignment,
        tensor_info_offset,
        data_offset,
        file_size: len,
    })
}

/// Where the parser is, for messages. Built only from data already read.
pub(super) enum Where {
    Magic,
    Header,
    /// Everything the header announces.
    Sections {
        n_kv: u64,
        n_tensors: u64,
    },
    Entry {
        index: u64,
        count: u64,
    },
    Value {
        index: u64,
        count: u64,
        key: String,
    },
    Tensor {
        index: u64,
        count: u64,
        name: Option<String>,
    },
    Padding,
}

impl Where {
    pub(super) fn describe(&self) -> String {
        match self {
            Where::Magic => "the magic number".into(),
            Where::Header => "the header".into(),
            Where::Sections { n_kv, n_tensors } => format!(
                "the {n_kv} metadata entries and {n_tensors} tensor infos the header announces"
            ),
            Where::Entry { index, count } => format!("metadata entry {} of {count}", index + 1),
            Where::Value { index, count, key } => format!(
                "the value of metadata key `{}` (entry {} of {count})",
                shown(key),
                index + 1
            ),
            Where::Tensor { index, count, name } => match name {
                Some(name) => format!("tensor info {} of {count} (`{}`)", index + 1, shown(name)),
                None => format!("tensor info {} of {count}", index + 1),
            },
            Where::Padding => "the padding before the tensor data".into(),
        }
    }
}

/// A cursor over the bytes being validated.
pub(super) struct Parser<'s, S: Source> {
    pub(super) src: &'s mut S,
    /// Next byte to read. Invariant: `pos <= len`.
    pub(super) pos: u64,
    pub(super) len: u64,
    pub(super) at: Where,
    /// Elements of the metadata arrays read so far, nested ones included.
    pub(super) array_elements: u64,
    /// Whether a metadata array holds arrays.
    pub(super) nested_arrays: bool,
}

impl<S: Source> Parser<'_, S> {
    pub(super) fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    pub(super) fn truncated(&self, need: u64) -> Problem {
        Problem::Truncated {
            what: self.at.describe(),
            offset: self.pos,
            need,
            file_size: self.len,
        }
    }

    /// The next `n` bytes (`n` small: see [`Source::read`]).
    pub(super) fn bytes(&mut self, n: u64) -> Result<&[u8], Problem> {
        if n > self.remaining() {
            return Err(self.truncated(n));
        }
        let start = self.pos;
        self.pos += n;
        // `n <= remaining`, so it fits in memory-sized integers whenever a read is possible.
        let n = usize::try_from(n).map_err(|_| self.truncated(n))?;
        self.src.read(start, n)
    }

    pub(super) fn skip(&mut self, n: u64) -> Result<(), Problem> {
        if n > self.remaining() {
            return Err(self.truncated(n));
        }
        self.pos += n;
        Ok(())
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], Problem> {
        let bytes = self.bytes(N as u64)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8, Problem> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn u32(&mut self) -> Result<u32, Problem> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(super) fn u64(&mut self) -> Result<u64, Problem> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Checks that `count` items of at least `each` bytes can follow, before iterating over them.
    pub(super) fn room(&self, count: u64, each: u64, unit: &'static str) -> Result<(), Problem> {
        self.not_absurd(count, each, unit)?;
        // Fits in u64: `not_absurd` passed, so it is at most the remaining bytes or `ABSURD`.
        let need = count * each;
        if need > self.remaining() {
            return Err(self.truncated(need));
        }
        Ok(())
    }

    /// Refuses `count` items of at least `each` bytes when they cannot fit in what follows and
    /// are too many for any real file: the count is corrupt rather than the file truncated.
    pub(super) fn not_absurd(
        &self,
        count: u64,
        each: u64,
        unit: &'static str,
    ) -> Result<(), Problem> {
        let need = u128::from(count) * u128::from(each);
        if need > u128::from(self.remaining()) && need > ABSURD {
            return Err(Problem::ImpossibleCount {
                what: self.at.describe(),
                count,
                unit,
                each,
                remaining: self.remaining(),
            });
        }
        Ok(())
    }

    /// Reads a string length and checks the string can follow.
    pub(super) fn string_len(&mut self) -> Result<u64, Problem> {
        let len = self.u64()?;
        if len > self.remaining() {
            return Err(if u128::from(len) > ABSURD {
                Problem::ImpossibleLength {
                    what: self.at.describe(),
                    len,
                    remaining: self.remaining(),
                }
            } else {
                self.truncated(len)
            });
        }
        if len > MAX_STRING_LEN {
            return Err(Problem::OverLimit {
                what: self.at.describe(),
                count: len,
                unit: "bytes in a string",
                limit: MAX_STRING_LEN,
            });
        }
        Ok(len)
    }

    /// Reads a key or tensor name of at most `limit` bytes: non-empty (keys only), UTF-8, no NUL.
    pub(super) fn name(
        &mut self,
        what: impl Fn() -> String,
        limit: u64,
        allow_empty: bool,
    ) -> Result<String, Problem> {
        let len = self.string_len()?;
        if len > limit {
            return Err(Problem::OverLimit {
                what: what(),
                count: len,
                unit: "bytes",
                limit,
            });
        }
        if len == 0 && !allow_empty {
            return Err(Problem::BadText {
                what: what(),
                reason: "is empty",
            });
        }
        let bytes = self.bytes(len)?;
        if bytes.contains(&0) {
            return Err(Problem::BadText {
                what: what(),
                reason: "contains a NUL byte",
            });
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(Problem::BadText {
                what: what(),
                reason: "is not valid UTF-8",
            }),
        }
    }

    /// Reads up to [`MAX_SHOWN_VALUE`] bytes of a string value recorded earlier, lossily decoded.
    pub(super) fn text(&mut self, offset: u64, len: u64) -> Result<String, Problem> {
        let n = len.min(MAX_SHOWN_VALUE) as usize;
        let bytes = self.src.read(offset, n)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Checks the magic. A short file that does not even start like "GGUF" is "not GGUF",
    /// not "truncated".
    fn magic(&mut self) -> Result<(), Problem> {
        let head = self.bytes(self.len.min(4))?.to_vec();
        if head[..] != b"GGUF"[..head.len()] {
            return Err(Problem::NotGguf { found: head });
        }
        if head.len() < 4 {
            self.pos = 0;
            return Err(self.truncated(4));
        }
        Ok(())
    }

    /// Reads the version and the two counts; returns `(version, n_tensors, n_kv)`.
    fn header(&mut self) -> Result<(u32, u64, u64), Problem> {
        self.at = Where::Header;
        let version = self.u32()?;
        // A big-endian v2/v3 file reads as 0x02000000/0x03000000: the low half is zero (the
        // same test llama.cpp uses).
        if version != 0 && version & 0xFFFF == 0 {
            return Err(Problem::BigEndian { raw: version });
        }
        if version != 2 && version != 3 {
            return Err(Problem::UnsupportedVersion { version });
        }
        let n_tensors = self.u64()?;
        let n_kv = self.u64()?;
        // Absurd counts first (each named), then whether both sections can fit at all.
        self.not_absurd(n_kv, MIN_KV_BYTES, "metadata entries")?;
        self.not_absurd(n_tensors, MIN_TENSOR_INFO_BYTES, "tensor infos")?;
        let need = n_kv * MIN_KV_BYTES + n_tensors * MIN_TENSOR_INFO_BYTES; // both <= ABSURD
        if need > self.remaining() {
            self.at = Where::Sections { n_kv, n_tensors };
            return Err(self.truncated(need));
        }
        for (count, unit, limit) in [
            (n_kv, "metadata entries", MAX_KV_COUNT),
            (n_tensors, "tensor infos", MAX_TENSOR_COUNT),
        ] {
            if count > limit {
                return Err(Problem::OverLimit {
                    what: "the header".into(),
                    count,
                    unit,
                    limit,
                });
            }
        }
        Ok((version, n_tensors, n_kv))
    }
}
