//! One tuning run, from a base model file to a tuned file, with checkpoints.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::cache;
use super::checkpoint::{self, Fingerprint, State};
use super::data::{self, DataSource};
use super::eval::{Prefix, Reference};
use super::meta::TunedInfo;
use super::output::write_outputs;
use super::teacher::Teacher;
use super::{Recipe, Targets};
use crate::quality::{Corpus, QualitySummary};
use uniskip_engine::{Model, ModelOptions, Trainer, TrainerOptions, TrainingMask, write_f32_model};
use uniskip_error::BadInput;
use uniskip_skip::Plan;

impl TuneSettings {
    /// How every model of the run is loaded: where its blocks go.
    fn model_options(&self) -> ModelOptions {
        ModelOptions {
            gpu_layers: self.gpu_layers,
            ..ModelOptions::default()
        }
    }
}

/// What to tune and how.
#[derive(Debug, Clone)]
pub struct TuneSettings {
    /// The base model file.
    pub model: PathBuf,
    /// The masks to tune for: one for a static strategy, one per generated token for a
    /// schedule (SkipDecode), numbered as generation numbers its steps.
    pub plan: Plan,
    /// The strategy name the mask was planned with.
    pub strategy: String,
    /// The target speedup the mask was planned for.
    pub speedup: f64,
    /// Tokens to train on (rounded up to whole windows).
    pub train_tokens: usize,
    /// Tokens per training window (a multiple of 256).
    pub window: usize,
    /// Where the training text comes from.
    pub source: DataSource,
    /// The corpus (`None`: Shakespeare): prompts for distillation, the text otherwise, and
    /// the held-out windows in both cases.
    pub corpus: Option<String>,
    /// The tuned file to write.
    pub out: PathBuf,
    /// llama.cpp file type of the output (`None`: the base file's).
    pub file_type: Option<i32>,
    /// Also write the F32 weights (all blocks), next to `out`.
    pub also_f32: bool,
    /// Write only the kept blocks into `out` (a smaller model plain llama.cpp runs at the
    /// tuned speed with no mask).
    pub prune: bool,
    /// Continue the interrupted run whose checkpoint sits next to `out`.
    pub resume: bool,
    /// CPU threads.
    pub threads: i32,
    /// Layers on the GPU (negative: all), for training and for every model it loads.
    pub gpu_layers: i32,
    /// Peak learning rate (AdamW).
    pub learning_rate: f64,
    /// Held-out windows evaluated before and after.
    pub eval_windows: usize,
    /// Seed of the distillation sampler.
    pub seed: u32,
    /// How windows meet the mask.
    pub recipe: Recipe,
    /// What the loss compares the model with.
    pub targets: Targets,
}

/// Progress of a run, for a progress display.
#[derive(Debug, Clone)]
pub enum Event {
    /// A phase begins (one line for people).
    Phase(String),
    /// Training windows written so far.
    Data {
        /// Written.
        done: usize,
        /// Wanted.
        total: usize,
    },
    /// An optimizer step finished.
    Step {
        /// Steps done.
        step: usize,
        /// Steps planned.
        steps: usize,
        /// This step's training loss.
        loss: f64,
        /// Training tokens per second so far (this run).
        tokens_per_s: f64,
        /// Seconds left at that rate.
        eta_s: f64,
    },
}

/// What a finished run measured and wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The tuned file.
    pub out: PathBuf,
    /// The F32 copy, when asked for.
    pub out_f32: Option<PathBuf>,
    /// What the file says about its tuning.
    pub tuned: TunedInfo,
    /// llama.cpp file type written.
    pub file_type: i32,
    /// Training loss of every step.
    pub losses: Vec<f64>,
    /// Held-out cross-entropy under the mask (whole window masked) before training.
    pub eval_loss_before: f64,
    /// The same after training.
    pub eval_loss_after: f64,
    /// Held-out quality against the base model at full depth: untuned, prompt masked.
    pub untuned_masked_prefix: QualitySummary,
    /// Untuned, prompt at full depth (the paper's inference rule).
    pub untuned_full_prefix: QualitySummary,
    /// Tuned file, prompt masked (as trained).
    pub tuned_masked_prefix: QualitySummary,
    /// Tuned file, prompt at full depth.
    pub tuned_full_prefix: QualitySummary,
    /// The F32 copy (`--f32`), prompt at full depth: against `tuned_full_prefix`, what
    /// writing the tuned weights in the output type costs.
    pub tuned_f32_full_prefix: Option<QualitySummary>,
    /// Training tokens per second (this run's steps).
    pub train_tokens_per_s: f64,
    /// Seconds of training (all runs of a resumed tuning together).
    pub train_seconds: f64,
    /// Peak resident memory of the process, bytes (0 where unknown).
    pub peak_rss_bytes: u64,
    /// The memory estimate checked before starting, bytes.
    pub memory_estimate_bytes: u64,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Trained and written.
    Finished(Box<Report>),
    /// Stopped by a request; the checkpoint holds `step` steps.
    Interrupted {
        /// Steps done and saved.
        step: usize,
        /// The checkpoint directory.
        dir: PathBuf,
    },
}

/// Architectures whose training graph llama.cpp can differentiate, each checked by a test
/// (Gemma 3 through the composed GEGLU of training graphs). ggml aborts the process on an
/// operation without a backward pass (the fused GEGLU, GELU, tanh, ...), so anything else
/// is refused before llama.cpp sees it.
const TRAINABLE_ARCHITECTURES: &[&str] = &["llama", "gemma3"];

/// Windows of the quality evaluation: a prompt and a scored continuation.
const QUALITY_PREFIX: usize = 32;
/// Scored tokens of each quality window.
pub const QUALITY_CONTINUATION: usize = 64;

/// Bytes the F32 training state of a model with `n_params` parameters needs: weights,
/// gradients and AdamW's two moments (16 bytes per parameter), plus the output head's
/// activations for one window (logits, their gradient and softmax) and a margin.
pub fn memory_estimate(n_params: u64, n_vocab: usize, window: usize) -> u64 {
    16 * n_params + 4 * 4 * (n_vocab * window) as u64 + (512 << 20)
}

fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// The learning rate of step `step` of `steps`: linear warm-up over the first tenth (at
/// most 20 steps), then cosine decay to a tenth of the peak.
fn learning_rate(peak: f64, step: usize, steps: usize) -> f64 {
    let warmup = (steps / 10).clamp(1, 20);
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (steps - warmup).max(1) as f64;
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
}

fn data_label(settings: &TuneSettings) -> String {
    let corpus = settings.corpus.as_deref().unwrap_or("shakespeare");
    match settings.source {
        DataSource::Distill => format!("distill:{corpus}"),
        DataSource::Corpus => format!("corpus:{corpus}"),
    }
}

fn bad(message: String) -> anyhow::Error {
    anyhow::Error::new(BadInput(message))
}

/// Tunes `settings.model` for `settings.plan`. `stop` is read after every step (and while
/// writing the training text): when set, the run saves a checkpoint and returns
/// [`Outcome::Interrupted`].
pub fn tune(
    settings: &TuneSettings,
    stop: &AtomicBool,
    on_event: &mut dyn FnMut(Event),
) -> Result<Outcome> {
    let base = Model::load(&settings.model, &settings.model_options())?;
    if !TRAINABLE_ARCHITECTURES.contains(&base.architecture()) {
        return Err(bad(format!(
            "{} is a {} model, and llama.cpp's training (as pinned) may lack a backward pass for an operation its graph uses; tune trains {} models",
            settings.model.display(),
            base.architecture(),
            TRAINABLE_ARCHITECTURES.join(", ")
        )));
    }
    let n_layer = base.n_layer();
    if settings.plan.n_layer() != n_layer {
        bail!(
            "the mask has {} blocks, the model {n_layer}",
            settings.plan.n_layer()
        );
    }
    // The mask of the first generated token: the mask for a static strategy.
    let mask = settings.plan.mask(1).clone();
    if settings.plan.varies() && settings.recipe != Recipe::Prefix {
        return Err(bad(
            "a mask that changes with the generated position (SkipDecode) is trained with the prefix recipe only: drop --recipe whole-window and --prune".into(),
        ));
    }
    if settings.prune && settings.recipe == Recipe::Prefix {
        return Err(bad(
            "--prune writes a file without the skipped blocks, so its prompt cannot run at full depth as the prefix recipe trains it: use --recipe whole-window with --prune".into(),
        ));
    }
    if super::read_tuned(&base)?.is_some() {
        return Err(bad(format!(
            "{} is already a tuned file: tune its base model instead",
            settings.model.display()
        )));
    }
    let window = settings.window;
    let steps = settings.train_tokens.div_ceil(window);
    let estimate = memory_estimate(base.n_params(), base.n_vocab(), window);
    if let Some(avail) = available_memory()
        && estimate > avail
    {
        return Err(bad(format!(
            "training {} in F32 needs about {:.1} GiB (16 bytes per parameter plus activations) but {:.1} GiB is available; use a smaller model",
            base.name(),
            estimate as f64 / (1u64 << 30) as f64,
            avail as f64 / (1u64 << 30) as f64
        )));
    }
    on_event(Event::Phase("hashing the base model".into()));
    let base_sha256 = crate::models::file_sha256(&settings.model)?;
    let fingerprint = Fingerprint {
        base_sha256: base_sha256.clone(),
        strategy: settings.strategy.clone(),
        speedup: settings.speedup,
        kept_blocks: mask.active_indices(),
        data: data_label(settings),
        steps,
        window,
        learning_rate: settings.learning_rate,
        recipe: settings.recipe,
        targets: settings.targets,
    };
    let dir = checkpoint::dir_for(&settings.out);
    let weights = checkpoint::weights(&dir);
    let existing = checkpoint::load(&dir)?;
    let corpus = Corpus::load(settings.corpus.as_deref())?;
    let mut state = match (settings.resume, existing) {
        (true, None) => {
            return Err(bad(format!(
                "--resume: no checkpoint at {} (Ctrl+C during a tuning run writes one)",
                dir.display()
            )));
        }
        (true, Some(state)) => {
            if state.fingerprint != fingerprint {
                return Err(bad(format!(
                    "--resume: the checkpoint at {} was made with other settings ({:?}); give the same flags, or delete it",
                    dir.display(),
                    state.fingerprint
                )));
            }
            on_event(Event::Phase(format!(
                "resuming at step {} of {steps} from {}",
                state.step,
                dir.display()
            )));
            state
        }
        (false, Some(_)) => {
            return Err(bad(format!(
                "an interrupted run left a checkpoint at {}: add --resume to continue it, or delete it",
                dir.display()
            )));
        }
        (false, None) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            on_event(Event::Phase(format!(
                "writing {steps} training windows of {window} tokens ({})",
                data_label(settings)
            )));
            let label = data_label(settings);
            let key = cache::Key {
                base_sha256: &base_sha256,
                data: &label,
                n: steps,
                len: window + 1,
                seed: settings.seed,
            };
            let kept = match settings.source {
                DataSource::Distill => cache::load(&key)?,
                DataSource::Corpus => None,
            };
            let windows = match kept {
                Some(w) => {
                    on_event(Event::Phase(format!(
                        "reusing the distilled text of an earlier run ({})",
                        key.path()?.display()
                    )));
                    Ok(w)
                }
                None => data::training_windows(
                    &base,
                    &corpus,
                    &settings.source,
                    steps,
                    window + 1,
                    settings.threads,
                    settings.seed,
                    &mut |done, total| on_event(Event::Data { done, total }),
                    &|| stop.load(Ordering::Relaxed),
                ),
            };
            let windows = match windows {
                Ok(w) => w,
                Err(e) if stop.load(Ordering::Relaxed) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e.context("interrupted before training began; nothing to resume"));
                }
                Err(e) => return Err(e),
            };
            if settings.source == DataSource::Distill && !windows.is_empty() {
                // Best effort: a cache that cannot be written only costs the next run time.
                if let Err(e) = cache::save(&key, &windows) {
                    on_event(Event::Phase(format!(
                        "not keeping the distilled text: {e:#}"
                    )));
                }
            }
            on_event(Event::Phase("writing the base model as F32".into()));
            write_f32_model(&settings.model, &weights, settings.threads)?;
            State {
                fingerprint,
                step: 0,
                losses: Vec::new(),
                eval_loss_before: f64::NAN,
                windows,
                train_seconds: 0.0,
            }
        }
    };
    let eval_windows = data::evaluation_windows(&base, &corpus, settings.eval_windows, window + 1)?;
    let eval_refs: Vec<&[i32]> = eval_windows.iter().map(Vec::as_slice).collect();
    let bytes = continuation_masks(&settings.plan, window - super::data::DISTILL_PROMPT_TOKENS);
    let training_mask = if settings.plan.varies() {
        TrainingMask::Schedule {
            masks: &bytes,
            prefix: super::data::DISTILL_PROMPT_TOKENS,
        }
    } else {
        settings.recipe.training_mask(&bytes)
    };

    let mut trainer = Trainer::load(
        &weights,
        &TrainerOptions {
            window: window as u32,
            threads: settings.threads,
            trainable_blocks: trained_blocks(&settings.plan),
            train_output_norm: true,
            gpu_layers: settings.gpu_layers,
        },
    )?;
    if state.step == 0 {
        on_event(Event::Phase("held-out loss under the mask, before".into()));
        state.eval_loss_before = trainer.evaluate(&eval_refs, training_mask)?;
    }
    let mut teacher = match settings.targets {
        Targets::Logits => Some(Teacher::new(&base, window, settings.threads)?),
        Targets::Tokens => None,
    };
    on_event(Event::Phase(format!(
        "training {} of {n_layer} blocks under the mask ({} recipe, {} targets), {steps} steps of {window} tokens",
        trained_blocks(&settings.plan).len(),
        settings.recipe.name(),
        settings.targets.name()
    )));
    let started = Instant::now();
    let first = state.step;
    while state.step < steps {
        let step = state.step;
        trainer.set_learning_rate(learning_rate(settings.learning_rate, step, steps) as f32);
        let tokens = &state.windows[step % state.windows.len()];
        let loss = match teacher.as_mut() {
            Some(t) => {
                let probs = t.distributions(tokens)?;
                trainer.step_towards(tokens, training_mask, &probs)?
            }
            None => trainer.step(tokens, training_mask)?,
        };
        state.losses.push(loss);
        state.step += 1;
        let elapsed = started.elapsed().as_secs_f64();
        let done = (state.step - first) as f64;
        let tokens_per_s = done * window as f64 / elapsed.max(1e-9);
        on_event(Event::Step {
            step: state.step,
            steps,
            loss,
            tokens_per_s,
            eta_s: (steps - state.step) as f64 * elapsed / done,
        });
        if stop.load(Ordering::Relaxed) && state.step < steps {
            state.train_seconds += started.elapsed().as_secs_f64();
            save_checkpoint(&trainer, &dir, &state)?;
            return Ok(Outcome::Interrupted {
                step: state.step,
                dir,
            });
        }
    }
    let run_seconds = started.elapsed().as_secs_f64();
    state.train_seconds += run_seconds;
    let train_tokens_per_s = ((steps - first) * window) as f64 / run_seconds.max(1e-9);
    on_event(Event::Phase("held-out loss under the mask, after".into()));
    let eval_loss_after = trainer.evaluate(&eval_refs, training_mask)?;
    let final_f32 = dir.join("tuned-f32.gguf");
    trainer.save(&final_f32)?;
    drop(trainer);
    drop(teacher);

    let tail = &state.losses[state.losses.len().saturating_sub(10)..];
    let tuned = TunedInfo {
        base_sha256,
        strategy: settings.strategy.clone(),
        speedup: settings.speedup,
        block_count: n_layer,
        kept_blocks: mask.active_indices(),
        planned_len: settings
            .plan
            .varies()
            .then_some(settings.plan.settings().planned_len),
        recipe: settings.recipe.name().into(),
        targets: settings.targets.name().into(),
        data: data_label(settings),
        tokens_trained: (steps * window) as u64,
        // NaN when nothing was trained.
        final_loss: tail.iter().sum::<f64>() / tail.len() as f64,
        learning_rate: settings.learning_rate,
    };
    let file_type = match settings.file_type {
        Some(t) => t,
        None => base
            .metadata("general.file_type")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
    };
    let out_f32 = write_outputs(settings, &base, &tuned, &final_f32, file_type)?;

    on_event(Event::Phase(
        "held-out quality against the base model".into(),
    ));
    let quality_windows = data::evaluation_windows(
        &base,
        &corpus,
        settings.eval_windows,
        QUALITY_PREFIX + QUALITY_CONTINUATION + 1,
    )?;
    let reference = Reference::new(&base, quality_windows, QUALITY_PREFIX, settings.threads)?;
    let plan = &settings.plan;
    let untuned_masked_prefix = reference.score(&base, plan, Prefix::Masked, settings.threads)?;
    let untuned_full_prefix = reference.score(&base, plan, Prefix::Full, settings.threads)?;
    let tuned_model = Model::load(&settings.out, &settings.model_options())?;
    // A pruned file holds only the kept blocks: all of them run.
    let tuned_plan = if settings.prune {
        Plan::full(tuned_model.n_layer())
    } else {
        plan.clone()
    };
    let tuned_masked_prefix =
        reference.score(&tuned_model, &tuned_plan, Prefix::Masked, settings.threads)?;
    let tuned_full_prefix =
        reference.score(&tuned_model, &tuned_plan, Prefix::Full, settings.threads)?;
    drop(tuned_model);
    let tuned_f32_full_prefix = match &out_f32 {
        Some(path) => {
            let f32_model = Model::load(path, &settings.model_options())?;
            Some(reference.score(&f32_model, plan, Prefix::Full, settings.threads)?)
        }
        None => None,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Outcome::Finished(Box::new(Report {
        out: settings.out.clone(),
        out_f32,
        tuned,
        file_type,
        losses: state.losses,
        eval_loss_before: state.eval_loss_before,
        eval_loss_after,
        untuned_masked_prefix,
        untuned_full_prefix,
        tuned_masked_prefix,
        tuned_full_prefix,
        tuned_f32_full_prefix,
        train_tokens_per_s,
        train_seconds: state.train_seconds,
        peak_rss_bytes: peak_rss(),
        memory_estimate_bytes: estimate,
    })))
}

/// The masks of continuation steps `0..steps` (step `j` is generation's step `j + 1`), row
/// after row; one row when the plan does not vary.
fn continuation_masks(plan: &Plan, steps: usize) -> Vec<u8> {
    if !plan.varies() {
        return plan.mask(1).as_bytes();
    }
    (0..steps)
        .flat_map(|j| plan.mask(j + 1).as_bytes())
        .collect()
}

/// Every block some step of `plan` computes: the blocks training updates.
fn trained_blocks(plan: &Plan) -> Vec<usize> {
    (0..plan.n_layer())
        .filter(|&i| plan.distinct_masks().iter().any(|m| m.is_active(i)))
        .collect()
}

fn save_checkpoint(trainer: &Trainer, dir: &Path, state: &State) -> Result<()> {
    let weights = checkpoint::weights(dir);
    let tmp = dir.join("weights-f32.gguf.tmp");
    trainer.save(&tmp)?;
    std::fs::rename(&tmp, &weights).with_context(|| format!("writing {}", weights.display()))?;
    checkpoint::save(dir, state)
}

#[cfg(test)]
mod tests {
    use super::{learning_rate, memory_estimate};

    #[test]
    fn learning_rate_warms_up_then_decays_to_a_tenth() {
        let peak = 1e-4;
        assert!((learning_rate(peak, 0, 100) - 1e-5).abs() < 1e-12);
        assert!((learning_rate(peak, 9, 100) - peak).abs() < 1e-12);
        assert!((learning_rate(peak, 10, 100) - peak).abs() < 1e-12);
        assert!((learning_rate(peak, 99, 100) - 0.1 * peak).abs() < 1e-6);
        assert!(learning_rate(peak, 50, 100) < peak);
    }

    #[test]
    fn memory_estimate_counts_sixteen_bytes_per_parameter() {
        // SmolLM2-135M: about 2.2 GB of training state plus activations and margin.
        let e = memory_estimate(134_515_008, 49_152, 256);
        assert!(e > 2_150_000_000 && e < 3_500_000_000, "{e}");
    }
}
