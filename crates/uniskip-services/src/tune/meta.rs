//! The `uniskip.*` metadata a tuned GGUF carries, written by `uniskip tune` and read by the
//! commands that run a model, so that a tuned file applies its own mask by default.

use anyhow::{Context, Result, bail};

use uniskip_engine::{MetaValue, Model};
use uniskip_skip::Mask;

/// Prefix of every key uniskip writes.
pub const PREFIX: &str = "uniskip.";

/// What a tuned file says about its tuning.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TunedInfo {
    /// sha256 of the base model file (hex).
    pub base_sha256: String,
    /// The strategy the mask was planned with (`unified`, `early-exit`, `block`, ...).
    pub strategy: String,
    /// The target speedup R the mask was planned for.
    pub speedup: f64,
    /// Blocks of the model.
    pub block_count: usize,
    /// The blocks computed under the tuned mask (0-based, ascending).
    pub kept_blocks: Vec<usize>,
    /// For a mask that changes with the generated position (SkipDecode): the generated
    /// tokens its schedule spans, which replans it; `kept_blocks` is then the first
    /// generated token's mask. `None` for a static mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_len: Option<usize>,
    /// How training applied the mask (see [`super::Recipe`]).
    pub recipe: String,
    /// What the loss compared the model with (see [`super::Targets`]): `tokens` or
    /// `logits`.
    pub targets: String,
    /// Where the training text came from (`distill:<prompts>` or `corpus:<label>`).
    pub data: String,
    /// Tokens trained on (windows times window length).
    pub tokens_trained: u64,
    /// The mean training loss over the last steps (nats per token; with `logits` targets,
    /// the KL divergence from the base model).
    pub final_loss: f64,
    /// The peak learning rate.
    pub learning_rate: f64,
}

impl TunedInfo {
    /// The mask the file was tuned for.
    pub fn mask(&self) -> Result<Mask> {
        let mut active = vec![false; self.block_count];
        for &i in &self.kept_blocks {
            *active
                .get_mut(i)
                .with_context(|| format!("kept block {i} is outside 0-{}", self.block_count))? =
                true;
        }
        Ok(Mask::from_active(active)?)
    }

    /// The metadata entries to write.
    pub fn entries(&self) -> Vec<(String, MetaValue)> {
        let kept: Vec<String> = self.kept_blocks.iter().map(ToString::to_string).collect();
        let key = |k: &str| format!("{PREFIX}{k}");
        let mut entries = vec![
            (key("version"), MetaValue::U32(1)),
            (key("base_sha256"), MetaValue::Str(self.base_sha256.clone())),
            (key("strategy"), MetaValue::Str(self.strategy.clone())),
            (key("speedup"), MetaValue::F32(self.speedup as f32)),
            (key("block_count"), MetaValue::U32(self.block_count as u32)),
            (key("kept_blocks"), MetaValue::Str(kept.join(","))),
            (key("recipe"), MetaValue::Str(self.recipe.clone())),
            (key("targets"), MetaValue::Str(self.targets.clone())),
            (key("data"), MetaValue::Str(self.data.clone())),
            (key("tokens_trained"), MetaValue::U64(self.tokens_trained)),
            (key("final_loss"), MetaValue::F32(self.final_loss as f32)),
            (
                key("learning_rate"),
                MetaValue::F32(self.learning_rate as f32),
            ),
        ];
        if let Some(n) = self.planned_len {
            entries.push((key("planned_len"), MetaValue::U32(n as u32)));
        }
        entries
    }

    /// Reads the tuning metadata of a loaded model: `None` when it has none (an untuned
    /// file), an error when it has some that does not make sense.
    pub fn read(model: &Model) -> Result<Option<TunedInfo>> {
        let get = |k: &str| model.metadata(&format!("{PREFIX}{k}"));
        let Some(kept) = get("kept_blocks") else {
            return Ok(None);
        };
        let need = |k: &str| get(k).with_context(|| format!("the file has no {PREFIX}{k}"));
        let num = |k: &str| -> Result<f64> {
            let v = need(k)?;
            v.trim()
                .parse::<f64>()
                .with_context(|| format!("{PREFIX}{k} = `{v}` is not a number"))
        };
        let kept_blocks = kept
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<usize>()
                    .with_context(|| format!("{PREFIX}kept_blocks has `{s}`"))
            })
            .collect::<Result<Vec<_>>>()?;
        let block_count = num("block_count")? as usize;
        if block_count != model.n_layer() {
            bail!(
                "{PREFIX}block_count is {block_count} but the model has {} blocks",
                model.n_layer()
            );
        }
        let info = TunedInfo {
            base_sha256: need("base_sha256")?,
            strategy: need("strategy")?,
            speedup: num("speedup")?,
            block_count,
            kept_blocks,
            planned_len: match get("planned_len") {
                Some(_) => Some(num("planned_len")? as usize),
                None => None,
            },
            recipe: need("recipe")?,
            // Files written before soft targets existed trained on tokens.
            targets: get("targets").unwrap_or_else(|| "tokens".into()),
            data: get("data").unwrap_or_default(),
            tokens_trained: num("tokens_trained")? as u64,
            final_loss: num("final_loss")?,
            learning_rate: num("learning_rate").unwrap_or(f64::NAN),
        };
        info.mask()?;
        Ok(Some(info))
    }

    /// One line for people: `tuned for 1.5x (unified, 20 of 30 blocks, whole-window)`.
    pub fn describe(&self) -> String {
        format!(
            "tuned for {}x ({}, {} of {} blocks, recipe {}, {} targets, {} tokens)",
            trim_float(self.speedup),
            self.strategy,
            self.kept_blocks.len(),
            self.block_count,
            self.recipe,
            self.targets,
            self.tokens_trained
        )
    }
}

/// `1.5` for 1.5, `2` for 2.0: a speedup as people write it.
fn trim_float(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Reads the tuning metadata of a loaded model, as [`TunedInfo::read`], with the error
/// wrapped as bad input (the file is the user's).
pub fn read_tuned(model: &Model) -> Result<Option<TunedInfo>> {
    TunedInfo::read(model).map_err(|e| {
        anyhow::Error::new(uniskip_error::BadInput(format!(
            "the file's uniskip tuning metadata is unusable: {e:#}"
        )))
    })
}
