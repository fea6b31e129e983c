//! Flags shared by the apps that load a model and generate (the commands and the chat).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
pub mod lossless;
pub mod setup;
pub mod tuned;

use clap::Args;
use clap::builder::TypedValueParser as _;

use crate::engine::{ContextOptions, ModelOptions, PrefillPolicy, Sampling};
use crate::quality::{Corpus, WindowShape};
use crate::skip::{CostModel, Mask, Plan, PlanSettings, SpeedupMode, Strategy};

/// Which model to load and how to run it.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// GGUF file, or a catalog name (`smollm2`, `gemma3`); default: smollm2, fetched on
    /// first use.
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: Option<String>,
    /// CPU threads [default: all cores].
    #[arg(short = 't', long, value_name = "T", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Context size in tokens (all sequences together).
    #[arg(short = 'c', long = "ctx", value_name = "C", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(16..=262_144))]
    pub ctx: u32,
    /// Layers to offload to a GPU: -1 = all (as llama.cpp does), 0 = keep everything on the
    /// CPU. Needs a GPU backend: `just cuda` builds CUDA's beside the binary, or build with
    /// --features cuda, metal or vulkan; without one everything runs on the CPU.
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-1..=100_000))]
    pub gpu_layers: i32,
    /// Offload every block to these `uniskip rpc-server`s (HOST:PORT, comma-separated),
    /// split by their free memory as llama.cpp does. Trusted networks only: the protocol
    /// has no authentication.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',', value_parser = parse_rpc_endpoint)]
    pub rpc: Vec<String>,
}

/// Checks one `--rpc` endpoint's form (HOST:PORT); whether a server answers is checked
/// when the model loads.
fn parse_rpc_endpoint(s: &str) -> std::result::Result<String, String> {
    let s = s.trim();
    crate::engine::rpc::parse_endpoint(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

impl ModelArgs {
    /// The model file to load: a path, a catalog name, or the default model.
    pub fn resolve(&self) -> Result<PathBuf> {
        Ok(crate::models::ensure(
            self.model.as_deref(),
            crate::models::Progress::Stderr,
        )?)
    }

    /// Refuses a context larger than the model was trained for: its positions mean nothing
    /// past that, and the K/V cache would be allocated for nothing.
    pub fn check_context(&self, model: &crate::engine::Model) -> Result<()> {
        let trained = model.n_ctx_train();
        if self.ctx as usize > trained {
            return Err(crate::error::BadInput(format!(
                "--ctx {} is larger than the {trained} tokens {} was trained on; use --ctx {trained} or less",
                self.ctx,
                model.name()
            ))
            .into());
        }
        Ok(())
    }

    /// Options for loading the model.
    pub fn model_options(&self) -> ModelOptions {
        ModelOptions {
            gpu_layers: self.gpu_layers,
            rpc: self.rpc.clone(),
        }
    }

    /// Options for a context with `n_seq` parallel sequences.
    pub fn context_options(&self, n_seq: u32) -> ContextOptions {
        let mut options = ContextOptions {
            n_ctx: self.ctx,
            n_seq,
            ..ContextOptions::default()
        };
        if let Some(t) = self.threads {
            options.threads = i32::from(t);
        }
        options.n_batch = options.n_batch.min(self.ctx);
        options
    }
}

/// Which blocks to skip.
#[derive(Debug, Clone, Args)]
pub struct SkipArgs {
    /// Target speedup R >= 1: keep floor(L/R) of the model's L blocks (1 = full depth).
    #[arg(short = 's', long, value_name = "R", default_value_t = 1.0, value_parser = parse_speedup)]
    pub speedup: f64,
    /// How the kept blocks are placed: unified (the paper: first and last kept, the rest
    /// evenly spaced), early-exit, skipdecode, block, random, calibrated (from the model's
    /// `uniskip calibrate` profile).
    #[arg(long, value_name = "S", default_value = "unified", value_parser = parse_strategy)]
    pub strategy: Strategy,
    /// Skip exactly these blocks instead, e.g. `10-19,22` (0-based, inclusive ranges).
    #[arg(long, value_name = "LIST", conflicts_with_all = ["speedup", "strategy", "speedup_mode"])]
    pub skip_layers: Option<String>,
    /// How R becomes a block count: layers (the paper: keep floor(L/R)) or measured (probe
    /// decode time per block on this machine and keep as many blocks as reach R in time).
    #[arg(long, value_name = "MODE", default_value = "layers", value_parser = parse_mode)]
    pub speedup_mode: SpeedupMode,
    /// Which blocks the prompt runs through: full (all; the paper's rule) or masked.
    #[arg(long, value_name = "P", default_value = "full", value_parser = prefill_parser())]
    pub prefill: PrefillPolicy,
}

/// `full` or `masked`, listed in `--help` and in the error for anything else.
fn prefill_parser() -> impl clap::builder::TypedValueParser<Value = PrefillPolicy> {
    clap::builder::PossibleValuesParser::new(["full", "masked"]).map(|s| match s.as_str() {
        "masked" => PrefillPolicy::Masked,
        _ => PrefillPolicy::Full,
    })
}

fn parse_mode(s: &str) -> std::result::Result<SpeedupMode, String> {
    s.parse()
        .map_err(|e: crate::skip::ParseNameError| e.to_string())
}

fn parse_strategy(s: &str) -> std::result::Result<Strategy, String> {
    let strategy: Strategy = s
        .parse()
        .map_err(|e: crate::skip::ParseNameError| e.to_string())?;
    if strategy == Strategy::Manual {
        return Err("use --skip-layers LIST to name the skipped blocks".into());
    }
    Ok(strategy)
}

impl SkipArgs {
    /// The masks of the model's calibration profile when `--strategy calibrated` asks for
    /// them (`explicit` file, else the model's cached one, checked against the model file's
    /// sha256); `None` for the other strategies. Without a model file (`plan --layers`)
    /// there is no profile to load.
    pub fn calibration_masks(
        &self,
        model_path: Option<&Path>,
        explicit: Option<&Path>,
    ) -> Result<Option<Vec<Mask>>> {
        if self.strategy != Strategy::Calibrated || self.skip_layers.is_some() {
            return Ok(None);
        }
        let Some(path) = model_path else {
            return Err(crate::error::BadInput(
                "--strategy calibrated needs a model's calibration profile: give -m MODEL \
                 instead of --layers, or use `uniskip ppl` or `uniskip bench` to compare it"
                    .into(),
            )
            .into());
        };
        let sha = crate::models::file_sha256(path)?;
        let found = crate::calibrate::require_profile(&sha, explicit, path)?;
        Ok(Some(found.profile.masks()))
    }

    /// The plan settings these flags ask for, with SkipDecode's ramp length
    /// `planned_len`, the random strategy's `seed`, the cost model that `--speedup-mode
    /// measured` needs and the masks of the model's calibration profile (if loaded).
    pub fn settings(
        &self,
        n_layer: usize,
        planned_len: usize,
        seed: u64,
        cost: Option<&CostModel>,
        profile: Option<&[Mask]>,
    ) -> Result<PlanSettings> {
        if let Some(list) = &self.skip_layers {
            let mask = Mask::from_skip_list(list, n_layer)
                .with_context(|| format!("--skip-layers {list}"))?;
            return Ok(PlanSettings {
                planned_len,
                seed,
                ..PlanSettings::manual(mask)
            });
        }
        Ok(PlanSettings {
            strategy: self.strategy,
            target: self.speedup,
            mode: self.speedup_mode,
            cost: cost.copied(),
            seed,
            planned_len,
            profile: profile.map(<[Mask]>::to_vec),
            manual: None,
        })
    }

    /// Plans for a model with `n_layer` blocks in `layers` mode; `planned_len` is
    /// SkipDecode's ramp length, `seed` the random strategy's seed. `--speedup-mode
    /// measured` and the calibrated strategy need [`SkipArgs::plan_with`].
    pub fn plan(&self, n_layer: usize, planned_len: usize, seed: u64) -> Result<Plan> {
        self.plan_with(n_layer, planned_len, seed, None, None)
    }

    /// Like [`SkipArgs::plan`], with the cost model that `--speedup-mode measured` needs
    /// and the masks of the model's calibration profile (if one was loaded).
    pub fn plan_with(
        &self,
        n_layer: usize,
        planned_len: usize,
        seed: u64,
        cost: Option<&CostModel>,
        profile: Option<&[Mask]>,
    ) -> Result<Plan> {
        let settings = self.settings(n_layer, planned_len, seed, cost, profile)?;
        Plan::new(settings, n_layer).with_context(|| match &self.skip_layers {
            Some(list) => format!("--skip-layers {list}"),
            None => format!("--speedup {}", self.speedup),
        })
    }
}

/// The text a quality measurement reads, and how it is cut into windows.
///
/// The defaults are those of `ppl` and `bench`; `calibrate` lowers them with `mut_arg`.
#[derive(Debug, Clone, Args)]
pub struct CorpusArgs {
    /// Text: a catalog text, `shakespeare` (default) or `alice` (Alice's Adventures in
    /// Wonderland, never trained on by `uniskip tune`), fetched on first use; or a UTF-8
    /// file or directory of .txt files.
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<String>,
    /// Windows in the slice.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub windows: u32,
    /// Prefix tokens per window (full depth).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub prefix: u32,
    /// Continuation tokens per window (scored; under the mask where one applies).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub continuation: u32,
}

impl CorpusArgs {
    /// How each window is cut.
    pub fn shape(&self) -> WindowShape {
        WindowShape {
            prefix: self.prefix as usize,
            continuation: self.continuation as usize,
        }
    }

    /// Loads the text.
    pub fn load(&self) -> Result<Corpus> {
        Corpus::load(self.corpus.as_deref())
    }
}

/// Sampling flags.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy (deterministic).
    #[arg(long = "temp", value_name = "T", default_value_t = 0.0, value_parser = float_in(0.0, 100.0))]
    pub temperature: f32,
    /// Keep the K most likely tokens (0 = off).
    #[arg(long, value_name = "K", default_value_t = 40, value_parser = clap::value_parser!(i32).range(0..))]
    pub top_k: i32,
    /// Nucleus sampling: keep tokens up to this cumulative probability (1 = off).
    #[arg(long, value_name = "P", default_value_t = 0.95, value_parser = float_in(0.0, 1.0))]
    pub top_p: f32,
    /// Drop tokens below this fraction of the best token's probability (0 = off).
    #[arg(long, value_name = "P", default_value_t = 0.05, value_parser = float_in(0.0, 1.0))]
    pub min_p: f32,
    /// Penalty on recently generated tokens (1 = off).
    #[arg(long, value_name = "X", default_value_t = 1.0, value_parser = float_in(0.01, 10.0))]
    pub repeat_penalty: f32,
    /// Random seed.
    #[arg(long, value_name = "S", default_value_t = 42)]
    pub seed: u32,
    /// Never stop at end of text: decode exactly -n tokens (for measurements).
    #[arg(long)]
    pub ignore_eos: bool,
}

impl SamplingArgs {
    /// The engine's sampling settings (flag values were range-checked by clap).
    pub fn sampling(&self) -> Result<Sampling> {
        Ok(Sampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed,
            ignore_eos: self.ignore_eos,
        })
    }
}

/// A float flag parser that accepts finite values in `[lo, hi]` and says the range.
fn float_in(lo: f32, hi: f32) -> impl Fn(&str) -> std::result::Result<f32, String> + Clone {
    move |s: &str| {
        let x: f32 = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number"))?;
        if x.is_finite() && (lo..=hi).contains(&x) {
            Ok(x)
        } else {
            Err(format!(
                "{s} is out of range: expected a number from {lo} to {hi}"
            ))
        }
    }
}

/// Parses a target speedup: a finite number >= 1 (the upper bound depends on the model and
/// is checked once its block count is known).
pub fn parse_speedup(s: &str) -> std::result::Result<f64, String> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number; give a speedup such as 1.5"))?;
    if !r.is_finite() || r < 1.0 {
        return Err(format!(
            "{s} is out of range: a speedup is a number >= 1 (1 = full depth) and at most half the model's block count"
        ));
    }
    Ok(r)
}
