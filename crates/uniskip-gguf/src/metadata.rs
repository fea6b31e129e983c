//! The metadata section: keys, value types, and values skipped without being held, except
//! the few the checks need.

use std::collections::HashMap;

use super::parser::{Parser, Where};
use super::problem::Problem;
use super::source::Source;
use super::tables::{
    DEFAULT_ALIGNMENT, FILE_WINDOW, MAX_ARRAY_DEPTH, MAX_ARRAY_ELEMENTS, MAX_ARRAY_LEN,
    MAX_KEY_LEN, MAX_METADATA_BYTES, MIN_NESTED_ARRAY_BYTES,
};

/// A metadata value, kept only as far as the checks need it.
#[derive(Clone, Copy)]
pub(super) enum Value {
    U32(u32),
    U64(u64),
    /// A string's position and length in the file (read later only if needed).
    Str {
        offset: u64,
        len: u64,
    },
    /// Any other type, by its GGUF type id.
    Other(u32),
}

impl Value {
    pub(super) fn type_name(self) -> &'static str {
        match self {
            Value::U32(_) => "u32",
            Value::U64(_) => "u64",
            Value::Str { .. } => "string",
            Value::Other(ty) => value_type_name(ty),
        }
    }
}

/// The name of GGUF value type `ty`, for messages.
fn value_type_name(ty: u32) -> &'static str {
    match ty {
        0 => "u8",
        1 => "i8",
        2 => "u16",
        3 => "i16",
        4 => "u32",
        5 => "i32",
        6 => "f32",
        7 => "bool",
        8 => "string",
        9 => "array",
        10 => "u64",
        11 => "i64",
        12 => "f64",
        _ => "unknown",
    }
}

/// Size of a fixed-size GGUF value type.
pub(super) fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// GGUF value type ids the parser treats specially.
pub(super) const TYPE_U32: u32 = 4;
pub(super) const TYPE_BOOL: u32 = 7;
pub(super) const TYPE_STRING: u32 = 8;
pub(super) const TYPE_ARRAY: u32 = 9;
pub(super) const TYPE_U64: u32 = 10;

impl<S: Source> Parser<'_, S> {
    /// Reads the `n_kv` metadata entries. Keys are kept (each costs what it occupies in the
    /// file); values are kept only as [`Value`]s, a few bytes each.
    pub(super) fn metadata(&mut self, n_kv: u64) -> Result<HashMap<String, Value>, Problem> {
        // Capacities are capped: growth is amortized, and claims are not trusted.
        let mut kv: HashMap<String, Value> = HashMap::with_capacity(n_kv.min(1024) as usize);
        for index in 0..n_kv {
            self.at = Where::Entry { index, count: n_kv };
            let key = self.name(
                || format!("the key of metadata entry {} of {n_kv}", index + 1),
                MAX_KEY_LEN,
                false,
            )?;
            if kv.contains_key(&key) {
                return Err(Problem::DuplicateKey { key });
            }
            self.at = Where::Value {
                index,
                count: n_kv,
                key: key.clone(),
            };
            let ty = self.u32()?;
            let value = self.value(ty, &key)?;
            if self.pos > MAX_METADATA_BYTES {
                return Err(Problem::MetadataTooLarge {
                    key,
                    end: self.pos,
                    limit: MAX_METADATA_BYTES,
                });
            }
            kv.insert(key, value);
        }
        Ok(kv)
    }

    /// Reads (or skips) one value of GGUF type `ty`.
    fn value(&mut self, ty: u32, key: &str) -> Result<Value, Problem> {
        Ok(match ty {
            TYPE_U32 => Value::U32(self.u32()?),
            TYPE_U64 => Value::U64(self.u64()?),
            TYPE_BOOL => {
                let value = self.u8()?;
                if value > 1 {
                    return Err(Problem::BadBool {
                        key: key.into(),
                        value,
                    });
                }
                Value::Other(ty)
            }
            TYPE_STRING => {
                let len = self.string_len()?;
                let offset = self.pos;
                self.skip(len)?;
                Value::Str { offset, len }
            }
            TYPE_ARRAY => {
                self.array_value(key, 1)?;
                Value::Other(ty)
            }
            _ => match fixed_size(ty) {
                Some(size) => {
                    self.skip(size)?;
                    Value::Other(ty)
                }
                None => {
                    return Err(Problem::BadValueType {
                        key: key.into(),
                        type_id: ty,
                    });
                }
            },
        })
    }

    /// Skips an array (element type, count, elements) at nesting level `depth` (1 = top).
    fn array_value(&mut self, key: &str, depth: u32) -> Result<(), Problem> {
        if depth > MAX_ARRAY_DEPTH {
            return Err(Problem::ArrayTooDeep { key: key.into() });
        }
        let elem = self.u32()?;
        let count = self.u64()?;
        let each = match (elem, fixed_size(elem)) {
            (TYPE_STRING, _) => 8,
            (TYPE_ARRAY, _) => MIN_NESTED_ARRAY_BYTES,
            (_, Some(size)) => size,
            (_, None) => {
                return Err(Problem::BadValueType {
                    key: key.into(),
                    type_id: elem,
                });
            }
        };
        self.room(count, each, "elements")?;
        if count > MAX_ARRAY_LEN {
            return Err(Problem::OverLimit {
                what: self.at.describe(),
                count,
                unit: "array elements",
                limit: MAX_ARRAY_LEN,
            });
        }
        // Counted before the elements are read: llama.cpp's cost grows with the count.
        self.array_elements += count; // each count <= MAX_ARRAY_LEN, and the sum stays small
        if self.array_elements > MAX_ARRAY_ELEMENTS {
            return Err(Problem::TooManyArrayElements {
                key: key.into(),
                count,
                total: self.array_elements,
                limit: MAX_ARRAY_ELEMENTS,
            });
        }
        self.nested_arrays |= elem == TYPE_ARRAY;
        match elem {
            TYPE_STRING => {
                for _ in 0..count {
                    let len = self.string_len()?;
                    self.skip(len)?;
                }
            }
            TYPE_ARRAY => {
                for _ in 0..count {
                    self.array_value(key, depth + 1)?;
                }
            }
            TYPE_BOOL => {
                // Read in window-sized chunks so a long bool array never needs a big buffer.
                let mut left = count;
                while left > 0 {
                    let chunk = left.min(FILE_WINDOW as u64);
                    if let Some(&value) = self.bytes(chunk)?.iter().find(|&&b| b > 1) {
                        return Err(Problem::BadBool {
                            key: key.into(),
                            value,
                        });
                    }
                    left -= chunk;
                }
            }
            // `room` checked `count * each` bytes remain, so this cannot overflow.
            _ => self.skip(count * each)?,
        }
        Ok(())
    }
}

/// The data alignment: `general.alignment` (a power of two, of type u32 as llama.cpp
/// requires), or the default.
pub(super) fn alignment(kv: &HashMap<String, Value>) -> Result<u64, Problem> {
    match kv.get("general.alignment") {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(&Value::U32(a)) if a.is_power_of_two() => Ok(u64::from(a)),
        Some(&Value::U32(a)) => Err(Problem::BadAlignment {
            alignment: u64::from(a),
        }),
        // llama.cpp accepts only u32 here.
        Some(other) => Err(Problem::WrongKeyType {
            key: "general.alignment".into(),
            expected: "u32",
            found: other.type_name(),
        }),
    }
}
