//! Block lists such as `10-19,22`, the text form of `--skip-layers`.
//!
//! A list names the blocks to SKIP: single indices and inclusive ranges,
//! separated by commas. Overlaps are allowed (the list is a set), because
//! rejecting `3-5,5` would only annoy someone pasting ranges together.

use super::{Mask, MaskError};

/// Why a block list could not be read or turned into a mask.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayerListError {
    /// Nothing was given; an empty list is more likely a mistake than a wish
    /// for no skipping (omit the option for that).
    #[error("the block list is empty; give indices or ranges such as `10-19,22`")]
    Empty,
    /// An item is neither `N` nor `A-B` with non-negative integers.
    #[error("cannot read `{item}` in the block list: expected an index `N` or a range `A-B`")]
    Syntax {
        /// The offending comma-separated item, trimmed.
        item: String,
    },
    /// A range runs downwards.
    #[error("range `{start}-{end}` is reversed; write it as `{end}-{start}`")]
    Reversed {
        /// First number of the range as written.
        start: usize,
        /// Second number of the range as written.
        end: usize,
    },
    /// An index is past the last block.
    #[error("block {index} does not exist: this model has {n_layer} blocks (0 to {last})", last = n_layer.saturating_sub(1))]
    OutOfRange {
        /// The index as written.
        index: usize,
        /// Number of blocks in the model.
        n_layer: usize,
    },
    /// The list skips every block.
    #[error(transparent)]
    Mask(#[from] MaskError),
}

impl LayerListError {
    /// Always the input's fault (exit code 2): the block list is malformed.
    pub fn is_user_error(&self) -> bool {
        true
    }
}

/// Reads a block list (`10-19,22`) for an `n_layer`-block model and returns
/// the listed indices, ascending and without duplicates.
pub fn parse_layer_list(list: &str, n_layer: usize) -> Result<Vec<usize>, LayerListError> {
    if list.trim().is_empty() {
        return Err(LayerListError::Empty);
    }
    let mut listed = vec![false; n_layer];
    for item in list.split(',') {
        let item = item.trim();
        let (start, end) = parse_item(item)?;
        if start > end {
            return Err(LayerListError::Reversed { start, end });
        }
        if end >= n_layer {
            // Report the first index that falls outside, the one to fix.
            let index = start.max(n_layer);
            return Err(LayerListError::OutOfRange { index, n_layer });
        }
        listed[start..=end].fill(true);
    }
    Ok(listed
        .iter()
        .enumerate()
        .filter_map(|(i, &l)| l.then_some(i))
        .collect())
}

/// Splits one item into an inclusive `(start, end)` pair.
fn parse_item(item: &str) -> Result<(usize, usize), LayerListError> {
    let syntax = || LayerListError::Syntax {
        item: item.to_owned(),
    };
    // `str::parse::<usize>` accepts a leading `+`; a block list should not.
    let number = |s: &str| {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        s.parse::<usize>().map_err(|_| syntax())
    };
    match item.split_once('-') {
        None => number(item).map(|n| (n, n)),
        Some((a, b)) => Ok((number(a)?, number(b)?)),
    }
}

impl Mask {
    /// The mask for `--skip-layers`: every block listed in `list` is skipped,
    /// all others computed. Fails on bad syntax, indices past `n_layer - 1`,
    /// reversed ranges, or a list that skips every block.
    pub fn from_skip_list(list: &str, n_layer: usize) -> Result<Mask, LayerListError> {
        let mut active = vec![true; n_layer];
        for i in parse_layer_list(list, n_layer)? {
            active[i] = false;
        }
        Ok(Mask::from_active(active)?)
    }

    /// The skipped blocks as a compact list (`10-19,22`), the inverse of
    /// [`Mask::from_skip_list`]; empty when nothing is skipped.
    pub fn to_skip_list(&self) -> String {
        let mut runs: Vec<String> = Vec::new();
        let mut i = 0;
        let n = self.n_layer();
        while i < n {
            if self.is_active(i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < n && !self.is_active(i) {
                i += 1;
            }
            let end = i - 1;
            runs.push(if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            });
        }
        runs.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn skip_list_skips_exactly_the_listed_blocks() {
        let m = Mask::from_skip_list("10-19,22", 30).unwrap();
        let expected: Vec<usize> = (10..=19).chain([22]).collect();
        assert_eq!(m.skipped_indices(), expected);
        assert_eq!(m.n_layer(), 30);
        assert_eq!(m.n_active(), 30 - 11);
    }

    #[test]
    fn whitespace_and_overlaps_are_accepted() {
        assert_eq!(
            parse_layer_list(" 3 - 5 , 5,4 ", 10).unwrap(),
            vec![3, 4, 5]
        );
    }

    #[test]
    fn index_past_the_last_block_is_out_of_range() {
        assert_eq!(
            parse_layer_list("31", 30),
            Err(LayerListError::OutOfRange {
                index: 31,
                n_layer: 30
            })
        );
        // A range reaching past the end reports the first missing block.
        assert_eq!(
            parse_layer_list("25-40", 30),
            Err(LayerListError::OutOfRange {
                index: 30,
                n_layer: 30
            })
        );
        let msg = parse_layer_list("30", 30).unwrap_err().to_string();
        assert!(msg.contains("0 to 29"), "{msg}");
    }

    #[test]
    fn reversed_range_is_refused() {
        assert_eq!(
            parse_layer_list("5-3", 30),
            Err(LayerListError::Reversed { start: 5, end: 3 })
        );
    }

    #[test]
    fn bad_syntax_is_refused() {
        for bad in ["abc", "1,,2", "3-", "-3", "1-2-3", "+4", "1.5", "4,"] {
            assert!(
                matches!(
                    parse_layer_list(bad, 30),
                    Err(LayerListError::Syntax { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn empty_list_is_refused() {
        assert_eq!(parse_layer_list("", 30), Err(LayerListError::Empty));
        assert_eq!(parse_layer_list("  ", 30), Err(LayerListError::Empty));
    }

    #[test]
    fn skipping_every_block_is_refused() {
        assert_eq!(
            Mask::from_skip_list("0-3", 4),
            Err(LayerListError::Mask(MaskError::AllSkipped { n_layer: 4 }))
        );
    }

    proptest! {
        #[test]
        fn to_skip_list_round_trips(
            active in prop::collection::vec(any::<bool>(), 1..64)
                .prop_filter("not all skipped", |v| v.contains(&true))
        ) {
            let mask = Mask::from_active(active).unwrap();
            let list = mask.to_skip_list();
            if mask.is_full() {
                prop_assert_eq!(list, "");
            } else {
                prop_assert_eq!(Mask::from_skip_list(&list, mask.n_layer()).unwrap(), mask);
            }
        }
    }
}
