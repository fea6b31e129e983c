//! The tensor infos (name, shape, ggml type, offset) and the layout of the tensor data.
//! Tensor data itself is never read.

use std::collections::HashSet;

use super::parser::{Parser, Where};
use super::problem::Problem;
use super::source::Source;
use super::tables::{MAX_DIMS, MAX_TENSOR_NAME_LEN, type_layout};

/// One tensor, as its info in the file describes it (its data is not read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The name, such as `blk.0.attn_q.weight` (valid UTF-8, at most 63 bytes, no NUL).
    pub name: String,
    /// The dimensions, innermost first (`ne[0]` of ggml), one per dimension in the file.
    pub shape: Vec<u64>,
    /// The ggml type id (see [`type_layout`]).
    pub ggml_type: u32,
    /// Start of its data, relative to the data section.
    pub offset: u64,
    /// Bytes of its data.
    pub size: u64,
}

/// The tensor infos of a file, in file order, and their names.
pub(super) struct Tensors {
    pub(super) list: Vec<TensorInfo>,
    /// Every name, for the content checks.
    pub(super) names: HashSet<String>,
}

impl<S: Source> Parser<'_, S> {
    /// Reads the `n_tensors` tensor infos.
    pub(super) fn tensor_infos(&mut self, n_tensors: u64) -> Result<Tensors, Problem> {
        // Capacities are capped: growth is amortized, and claims are not trusted.
        let cap = n_tensors.min(1024) as usize;
        let mut tensors = Tensors {
            list: Vec::with_capacity(cap),
            names: HashSet::with_capacity(cap),
        };
        for index in 0..n_tensors {
            self.at = Where::Tensor {
                index,
                count: n_tensors,
                name: None,
            };
            let info = self.tensor_info(index, n_tensors, &tensors.names)?;
            tensors.names.insert(info.name.clone());
            tensors.list.push(info);
        }
        Ok(tensors)
    }

    /// Where the data section starts: the next multiple of the alignment.
    pub(super) fn data_offset(&mut self, alignment: u64, n_tensors: u64) -> Result<u64, Problem> {
        self.at = Where::Padding;
        match align_up(self.pos, alignment) {
            Some(start) if start <= self.len => Ok(start),
            _ if n_tensors == 0 => Ok(self.pos),
            _ => Err(self.truncated(alignment - self.pos % alignment)),
        }
    }

    /// Reads one tensor info (the parser's `at` names it).
    fn tensor_info(
        &mut self,
        index: u64,
        count: u64,
        names: &HashSet<String>,
    ) -> Result<TensorInfo, Problem> {
        let name = self.name(
            || format!("the name of tensor info {} of {count}", index + 1),
            MAX_TENSOR_NAME_LEN,
            true,
        )?;
        if names.contains(&name) {
            return Err(Problem::DuplicateTensor { name });
        }
        self.at = Where::Tensor {
            index,
            count,
            name: Some(name.clone()),
        };
        let n_dims = self.u32()?;
        if n_dims > MAX_DIMS {
            return Err(Problem::TooManyDims { name, n_dims });
        }
        let mut shape = [1u64; MAX_DIMS as usize];
        for dim in shape.iter_mut().take(n_dims as usize) {
            *dim = self.u64()?;
        }
        let overflow = |name: &str| Problem::ShapeOverflow {
            name: name.into(),
            shape: shape[..n_dims as usize].to_vec(),
        };
        // ggml keeps dimensions and element counts in int64_t.
        let elements = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64 && shape.iter().all(|&d| d <= i64::MAX as u64))
            .ok_or_else(|| overflow(&name))?;
        let type_id = self.u32()?;
        let (block, type_size) =
            type_layout(type_id).ok_or_else(|| Problem::UnknownTensorType {
                name: name.clone(),
                type_id,
            })?;
        // ggml requires whole blocks per row (`ne[0] % blck_size == 0`), not just in total.
        if shape[0] % block != 0 {
            return Err(Problem::PartialBlock {
                name,
                type_id,
                row: shape[0],
                block,
            });
        }
        let size = (elements / block)
            .checked_mul(type_size)
            .filter(|&s| s <= i64::MAX as u64)
            .ok_or_else(|| overflow(&name))?;
        let offset = self.u64()?;
        Ok(TensorInfo {
            name,
            shape: shape[..n_dims as usize].to_vec(),
            ggml_type: type_id,
            offset,
            size,
        })
    }
}
impl Tensors {
    /// Checks the tensor data: aligned, inside the file of `len` bytes, and packed in order as
    /// the pinned gguf.cpp requires (it refuses any tensor whose offset differs from the padded
    /// end of the previous one).
    pub(super) fn check_layout(
        &self,
        data_offset: u64,
        alignment: u64,
        len: u64,
    ) -> Result<(), Problem> {
        let count = self.list.len() as u64;
        let mut expected = 0u64;
        for (index, t) in (0u64..).zip(&self.list) {
            if t.offset % alignment != 0 {
                return Err(Problem::MisalignedTensor {
                    name: t.name.clone(),
                    offset: t.offset,
                    alignment,
                });
            }
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.size));
            if end.is_none_or(|end| end > len) {
                let start = data_offset.saturating_add(t.offset);
                return Err(Problem::TensorPastEnd {
                    name: t.name.clone(),
                    index,
                    count,
                    start,
                    end: start.saturating_add(t.size),
                    file_size: len,
                });
            }
            if t.offset != expected {
                return Err(Problem::TensorOutOfOrder {
                    name: t.name.clone(),
                    offset: t.offset,
                    expected,
                });
            }
            // Cannot overflow: `offset + size <= len` and the padding is below the alignment.
            expected = align_up(t.offset + t.size, alignment).unwrap_or(u64::MAX);
        }
        Ok(())
    }
}

/// Rounds `n` up to a multiple of `align` (a power of two); `None` on overflow.
fn align_up(n: u64, align: u64) -> Option<u64> {
    n.checked_add(align - 1).map(|m| m & !(align - 1))
}
