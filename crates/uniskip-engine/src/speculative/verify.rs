//! Verification: a drafted token against full depth's row of the verification batch.

use llama_cpp_2::token::LlamaToken;

use super::drafting::Draft;
use super::rule::{self, Dist, Verdict};
use crate::sampling::Picker;
use crate::session::Session;

/// Verifies drafted token `i` of `d` against full depth's row `row`.
pub(super) fn judge(
    picker: &mut Picker<'_>,
    session: &Session<'_>,
    row: usize,
    d: &Draft,
    i: usize,
    drafted: LlamaToken,
) -> Verdict {
    match picker.distribution(session, row) {
        // Greedy: full depth's own choice (recorded by the chain) either is the draft or
        // replaces it. (Teacher forcing: the text's token plays full depth's choice.)
        None => {
            let chosen = picker.pick_against(session, row, Some(drafted));
            if chosen == drafted {
                Verdict::Accept
            } else {
                Verdict::Replace(chosen.0)
            }
        }
        Some(p) => {
            let point;
            let q = match d.dists.get(i) {
                Some(q) => q,
                None => {
                    point = Dist::point(drafted.0);
                    &point
                }
            };
            let verdict = rule::verify(&p, q, drafted.0, picker.rng().expect("shaped picker"));
            picker.accept(match verdict {
                Verdict::Accept => drafted,
                Verdict::Replace(x) => LlamaToken(x),
            });
            verdict
        }
    }
}
