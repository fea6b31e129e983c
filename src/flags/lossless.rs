//! Flags of lossless decoding (`--lossless` and its drafters), shared by `run` and `chat`.

use anyhow::Result;
use clap::Args;

use super::ModelArgs;
use crate::engine::speculative::{DRAFT_MAX_DEFAULT, DRAFT_MAX_LIMIT};
use crate::engine::{Drafter, Lossless, Model};
use crate::error::BadInput;
use crate::skip::Mask;

/// Lossless decoding: a cheap drafter proposes tokens, full depth checks them in one batch.
#[derive(Debug, Clone, Args)]
pub struct LosslessArgs {
    /// Lossless decoding: drafts (the model under the skip mask, n-grams from the prompt)
    /// are checked by full depth in one batch, and only what full depth would have produced
    /// is kept. The output is full depth's, token for token (greedy) or in distribution
    /// (sampling); `--speedup`/`--strategy` then choose the drafting mask (default 2x).
    /// Drafting pauses itself when it does not pay; what it costs on this machine is kept
    /// between runs, so a drafter that cannot pay here does not draft at all.
    #[arg(long)]
    pub lossless: bool,
    /// Who drafts: `mask` (the model under the skip mask), `lookup` (n-grams copied from
    /// the prompt and the text so far; free, wins when the reply quotes its input),
    /// `mask+lookup` (lookup where it matches, else the mask), `model` (--draft-model).
    /// Default: mask+lookup, or model with --draft-model.
    #[arg(long, value_name = "D", requires = "lossless", value_parser = drafter_parser())]
    pub drafter: Option<Drafter>,
    /// Most tokens drafted per round; the length adapts to the measured acceptance below
    /// it.
    #[arg(long, value_name = "K", default_value_t = DRAFT_MAX_DEFAULT as u32,
          value_parser = clap::value_parser!(u32).range(1..=DRAFT_MAX_LIMIT as i64),
          requires = "lossless")]
    pub draft_max: u32,
    /// A second GGUF (path or catalog name) with the same vocabulary to draft with: at full
    /// depth, or under its own mask when it is a file from `uniskip tune`.
    #[arg(long, value_name = "FILE", requires = "lossless")]
    pub draft_model: Option<String>,
}

impl LosslessArgs {
    /// The drafter to use (`None` without `--lossless`).
    pub fn drafter(&self) -> Result<Option<Drafter>> {
        if !self.lossless {
            return Ok(None);
        }
        match (self.drafter, &self.draft_model) {
            (Some(Drafter::Model), None) => Err(BadInput(
                "--drafter model needs a draft model: add --draft-model FILE".into(),
            )
            .into()),
            (Some(d), Some(_)) if d != Drafter::Model => Err(BadInput(format!(
                "--draft-model drafts only with --drafter model, not {}",
                d.name()
            ))
            .into()),
            (Some(d), _) => Ok(Some(d)),
            (None, Some(_)) => Ok(Some(Drafter::Model)),
            (None, None) => Ok(Some(Drafter::default())),
        }
    }

    /// Loads the draft model when the drafter needs one, with the mask it drafts under (a
    /// tuned file's own mask, else none).
    pub fn load_draft_model(&self, model_args: &ModelArgs) -> Result<Option<DraftModel>> {
        let Some(name) = self.draft_model.as_deref().filter(|_| self.lossless) else {
            return Ok(None);
        };
        let path = crate::models::ensure(Some(name), crate::models::Progress::Stderr)?;
        let model = Model::load(&path, &model_args.model_options())?;
        let mask = match crate::tune::read_tuned(&model)? {
            Some(info) if info.planned_len.is_some() => {
                return Err(BadInput(format!(
                    "--draft-model {name}: it is tuned for a schedule that changes with the position ({}), and a draft model drafts under one mask",
                    info.strategy
                ))
                .into());
            }
            Some(info) => Some(info.mask()?),
            None => None,
        };
        Ok(Some(DraftModel { model, mask }))
    }

    /// The engine's settings, with `draft` the loaded draft model.
    pub fn config<'a>(
        &self,
        model_args: &ModelArgs,
        n_seq: u32,
        draft: Option<&'a DraftModel>,
    ) -> Result<Option<Lossless<'a>>> {
        let Some(drafter) = self.drafter()? else {
            return Ok(None);
        };
        Ok(Some(Lossless {
            drafter,
            draft_max: self.draft_max as usize,
            draft_model: draft.map(|d| (&d.model, model_args.context_options(n_seq))),
            draft_mask: draft.and_then(|d| d.mask.as_ref()),
            costs: None,
        }))
    }
}

/// A draft model and the mask it drafts under.
pub struct DraftModel {
    /// The model.
    pub model: Model,
    /// Its tuned mask (`None`: every block).
    pub mask: Option<Mask>,
}

/// The drafter names, listed in `--help` and in the error for anything else.
fn drafter_parser() -> impl clap::builder::TypedValueParser<Value = Drafter> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["mask", "lookup", "mask+lookup", "model"]).map(|s| {
        match s.as_str() {
            "mask" => Drafter::Mask,
            "lookup" => Drafter::Lookup,
            "model" => Drafter::Model,
            _ => Drafter::MaskLookup,
        }
    })
}
