//! Prompt-lookup drafting: when the last few tokens occurred before (in the prompt or the
//! text so far), propose what followed them then. It costs no model call, and wins when a
//! reply quotes its input: edits, extraction, lists repeated with a change.

/// Longest n-gram matched first: a longer match predicts its continuation better.
pub const MAX_NGRAM: usize = 4;
/// Shortest n-gram that may match: single tokens match too often by chance.
pub const MIN_NGRAM: usize = 2;

/// Up to `max` tokens that followed the latest earlier occurrence of the longest suffix of
/// `history` (between [`MAX_NGRAM`] and [`MIN_NGRAM`] tokens long). Empty when nothing
/// matches.
pub fn draft(history: &[i32], max: usize) -> Vec<i32> {
    if max == 0 {
        return Vec::new();
    }
    let len = history.len();
    for n in (MIN_NGRAM..=MAX_NGRAM.min(len.saturating_sub(1))).rev() {
        let suffix = &history[len - n..];
        // Latest occurrence that ends before the suffix itself, with at least one token
        // after it.
        let found = (0..len - n)
            .rev()
            .find(|&start| &history[start..start + n] == suffix);
        if let Some(start) = found {
            let from = start + n;
            let to = (from + max).min(len);
            return history[from..to].to_vec();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_bigram_proposes_what_followed_it() {
        // "a b c d ... a b" -> "c d"
        let h = [1, 2, 3, 4, 9, 9, 1, 2];
        assert_eq!(draft(&h, 2), vec![3, 4]);
        assert_eq!(draft(&h, 10), vec![3, 4, 9, 9, 1, 2]);
    }

    #[test]
    fn the_longest_and_latest_match_wins() {
        // Suffix [5, 1, 2]: matches at 3..6 (followed by 7), while [1, 2] alone also
        // matches later at 7..9 (followed by 8).
        let h = [0, 0, 0, 5, 1, 2, 7, 1, 2, 8, 5, 1, 2];
        assert_eq!(draft(&h, 1), vec![7]);
        let h = [1, 2, 3, 0, 1, 2, 4, 0, 1, 2];
        assert_eq!(draft(&h, 1), vec![4]);
    }

    #[test]
    fn nothing_matches_in_new_text() {
        assert!(draft(&[1, 2, 3, 4, 5], 4).is_empty());
        assert!(draft(&[], 4).is_empty());
        assert!(draft(&[1, 2, 1, 2], 0).is_empty());
    }
}
