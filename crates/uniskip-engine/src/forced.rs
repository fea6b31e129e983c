//! Teacher-forced generation: the decoding loop of [`super::generate`], with every token
//! taken from a given text instead of chosen, so a text is scored from the very logits
//! generation computes (with lossless decoding, verification's rows).

use std::ops::ControlFlow;

use llama_cpp_2::token::LlamaToken;

use super::error::{EngineError, Result};
use super::generate::{Generation, Piece, Request, decode_loop};
use super::session::Session;
use super::speculative::Observer;
use uniskip_skip::Mask;

/// Teacher forcing: every sequence takes the tokens of a given text instead of choosing
/// (the first from the prompt's logits), and `observe` sees each row that predicted one.
pub struct Forcing<'a> {
    /// Per sequence, the tokens to take, at least the request's `max_tokens` each.
    pub texts: &'a [Vec<LlamaToken>],
    /// Sees every row that predicted a token of a text.
    pub observe: &'a Observer<'a>,
}

/// [`generate`] with every token taken from `forcing`'s texts instead of chosen: the same
/// loop, plain or lossless, so that a text can be scored from the very logits generation
/// computes (with `--lossless`, verification's rows). A drafted token is kept when it
/// equals the text's.
pub fn generate_forced(
    session: &mut Session<'_>,
    request: &Request<'_>,
    forcing: &Forcing<'_>,
    mask_for_step: &mut dyn FnMut(usize) -> Mask,
    on_piece: &mut dyn FnMut(Piece<'_>) -> ControlFlow<()>,
) -> Result<Generation> {
    let short = (0..request.prompts.len()).find(|&seq| {
        forcing
            .texts
            .get(seq)
            .is_none_or(|t| t.len() < request.max_tokens)
    });
    if let Some(seq) = short {
        return Err(EngineError::ForcedTextShort {
            seq,
            tokens: forcing.texts.get(seq).map_or(0, Vec::len),
            max_tokens: request.max_tokens,
        });
    }
    decode_loop(session, request, Some(forcing), mask_for_step, on_piece)
}
