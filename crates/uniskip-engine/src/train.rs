//! Fine-tuning through llama.cpp's own training API (`llama_opt_init`, `llama_opt_epoch`).
//!
//! llama-cpp-2 wraps none of it, so this file holds the raw calls. The training graph is
//! built by the same model builders as a decode, on the calling thread, so the skip mask
//! set with [`MaskGuard`] around `llama_opt_epoch` applies in training exactly as in
//! inference: a skipped block is absent from the forward graph, and so from the backward.
//!
//! Facts this rests on (llama.cpp as pinned):
//! - training works on F32 weights only (`llama_set_param` ignores other types), so a
//!   quantized model is first written as F32 ([`write_f32_model`]);
//! - weights are updated in place, so the model is loaded without mmap (a mapping is
//!   read-only);
//! - the context size is padded to a multiple of 256, and the K and V projections get
//!   gradients only when the micro-batch is the whole context: one window is one step;
//! - `opt_init` overwrites the model's training context length with the window (a saved
//!   file carries it; the caller restores the original value in the metadata);
//! - the token embedding is never trainable (it is tied to the output head in SmolLM2).

use std::cell::Cell;
use std::ffi::{CStr, CString, c_void};
use std::path::Path;
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use super::error::{EngineError, Result};
use super::hook::{MaskGuard, RowMaskGuard, SoftLabelGuard, TrainingGuard};

/// llama.cpp pads a context to this many tokens: a training window is a multiple of it.
pub const WINDOW_QUANTUM: u32 = 256;

/// Which blocks each position of a training window runs through, and where the loss is
/// taken.
#[derive(Debug, Clone, Copy)]
pub enum TrainingMask<'a> {
    /// Every block, every position (llama.cpp's own path); loss everywhere.
    Full,
    /// The whole window under one mask (`active[i] != 0` computes block `i`), loss
    /// everywhere: static pruning plus healing. The block is absent from the graph.
    Window(&'a [u8]),
    /// The first `prefix` positions at full depth, the rest under `mask`, and the loss on
    /// the rest only: the prompt/continuation recipe. Every block is computed and each row
    /// keeps or discards it (the per-position blend of the hook); the prefix rows' logits
    /// are zero, so their loss is the constant `ln(n_vocab)` and gives no gradient, and
    /// the reported loss is the continuation's mean alone.
    Prefix {
        /// The continuation's mask; it must compute block 0.
        mask: &'a [u8],
        /// Positions run at full depth (at least 1, less than the window).
        prefix: usize,
    },
    /// As [`TrainingMask::Prefix`], with a mask per continuation step (a schedule whose depth
    /// changes with the generated position, as SkipDecode's): step `j` after the prefix runs
    /// under row `min(j, rows - 1)` of `masks`, rows of `n_layer` bytes one after the other.
    Schedule {
        /// The continuation's masks, one row per step; each must compute block 0.
        masks: &'a [u8],
        /// Positions run at full depth (at least 1, less than the window).
        prefix: usize,
    },
}

/// How a [`Trainer`] is set up.
#[derive(Debug, Clone)]
pub struct TrainerOptions {
    /// Tokens per training window (a multiple of [`WINDOW_QUANTUM`]).
    pub window: u32,
    /// CPU threads.
    pub threads: i32,
    /// Blocks whose tensors are trained (the others stay frozen).
    pub trainable_blocks: Vec<usize>,
    /// Whether the final norm before the output head is trained too.
    pub train_output_norm: bool,
    /// Layers on the GPU, as [`super::ModelOptions::gpu_layers`] (negative: all; without a
    /// GPU backend everything stays on the CPU): the training graphs run where inference's do.
    pub gpu_layers: i32,
}

/// Optimizer settings read by llama.cpp before each optimizer step.
struct OptState {
    lr: Cell<f32>,
    weight_decay: f32,
}

/// Which tensors are trainable, read by llama.cpp's parameter filter during `opt_init`.
struct FilterState {
    blocks: Vec<usize>,
    output_norm: bool,
}

/// A model loaded for training, with a context whose optimizer is initialised (AdamW).
pub struct Trainer {
    model: NonNull<sys::llama_model>,
    ctx: NonNull<sys::llama_context>,
    opt: Box<OptState>,
    _filter: Box<FilterState>,
    window: usize,
    n_layer: usize,
    n_vocab: usize,
}

// SAFETY (for the callbacks below): llama.cpp calls them on the thread running
// `llama_opt_init`/`llama_opt_epoch`, with the userdata pointers this file passed, which
// point into boxes the `Trainer` owns for its whole life.

unsafe extern "C" fn optimizer_params(ud: *mut c_void) -> sys::ggml_opt_optimizer_params {
    // SAFETY: `ud` is the `OptState` box of a live `Trainer` (see above).
    let state = unsafe { &*(ud as *const OptState) };
    // SAFETY: a pure function of llama.cpp returning constants.
    let mut p = unsafe { sys::ggml_opt_get_default_optimizer_params(std::ptr::null_mut()) };
    p.adamw.alpha = state.lr.get();
    p.adamw.wd = state.weight_decay;
    p.sgd.alpha = state.lr.get();
    p.sgd.wd = state.weight_decay;
    p
}

unsafe extern "C" fn param_filter(tensor: *const sys::ggml_tensor, ud: *mut c_void) -> bool {
    // SAFETY: `ud` is the `FilterState` box of the `Trainer` being built (see above);
    // `tensor` is a live model tensor with a NUL-terminated name.
    let (state, name) = unsafe {
        (
            &*(ud as *const FilterState),
            CStr::from_ptr((*tensor).name.as_ptr()),
        )
    };
    is_trainable(&name.to_string_lossy(), &state.blocks, state.output_norm)
}

/// Whether the tensor named `name` is trained: tensors of the listed blocks
/// (`blk.N.*`), and the output norm when asked.
fn is_trainable(name: &str, blocks: &[usize], output_norm: bool) -> bool {
    if let Some(rest) = name.strip_prefix("blk.") {
        let index = rest.split('.').next().and_then(|n| n.parse::<usize>().ok());
        return index.is_some_and(|i| blocks.contains(&i));
    }
    output_norm && name == "output_norm.weight"
}

fn c_path(path: &Path) -> Result<CString> {
    path.to_str()
        .and_then(|s| CString::new(s).ok())
        .ok_or_else(|| EngineError::Load {
            path: path.to_path_buf(),
            reason: "the path is not valid UTF-8 without NUL".into(),
        })
}

/// Writes `src` (any type llama.cpp reads) as an all-F32 model at `dst`, the form training
/// needs.
pub fn write_f32_model(src: &Path, dst: &Path, threads: i32) -> Result<()> {
    quantize(src, dst, sys::LLAMA_FTYPE_ALL_F32 as i32, threads)
}

/// Writes `src` at `dst` quantized to llama.cpp file type `ftype` (the `general.file_type`
/// numbering; 0 = all F32), with llama.cpp's own choice of per-tensor types.
pub fn quantize(src: &Path, dst: &Path, ftype: i32, threads: i32) -> Result<()> {
    uniskip_gguf::validate_file(src)?;
    let (src_c, dst_c) = (c_path(src)?, c_path(dst)?);
    super::model::ensure_backend()?;
    // SAFETY: default params from llama.cpp, then plain fields set; the C strings outlive
    // the call, which only reads them.
    let status = unsafe {
        let mut params = sys::llama_model_quantize_default_params();
        params.ftype = ftype as sys::llama_ftype;
        params.allow_requantize = true;
        params.nthread = threads;
        sys::llama_model_quantize(src_c.as_ptr(), dst_c.as_ptr(), &params)
    };
    if status != 0 {
        return Err(EngineError::Load {
            path: src.to_path_buf(),
            reason: format!("llama.cpp could not write it as file type {ftype} (status {status})"),
        });
    }
    Ok(())
}

impl Trainer {
    /// Loads the F32 model at `path` (see [`write_f32_model`]) and initialises AdamW on the
    /// tensors `options` names.
    pub fn load(path: &Path, options: &TrainerOptions) -> Result<Trainer> {
        let _ = super::hook::revision();
        super::model::ensure_backend()?;
        uniskip_gguf::validate_file(path)?;
        if options.window == 0 || !options.window.is_multiple_of(WINDOW_QUANTUM) {
            return Err(EngineError::Context(format!(
                "a training window must be a positive multiple of {WINDOW_QUANTUM} tokens, not {}",
                options.window
            )));
        }
        let path_c = c_path(path)?;
        // SAFETY: default params, plain fields set; the path outlives the call.
        let model = unsafe {
            let mut params = sys::llama_model_default_params();
            params.n_gpu_layers = options.gpu_layers;
            // Weights are updated in place: a read-only mapping would fault.
            params.load_mode = sys::LLAMA_LOAD_MODE_NONE;
            sys::llama_model_load_from_file(path_c.as_ptr(), params)
        };
        let model = NonNull::new(model).ok_or_else(|| EngineError::Load {
            path: path.to_path_buf(),
            reason: "llama.cpp could not load it for training".into(),
        })?;
        // SAFETY: `model` is live; these read constants.
        let (n_layer, n_vocab) = unsafe {
            (
                sys::llama_model_n_layer(model.as_ptr()) as usize,
                sys::llama_vocab_n_tokens(sys::llama_model_get_vocab(model.as_ptr())) as usize,
            )
        };
        // SAFETY: default params, plain fields set; the model is live.
        let ctx = unsafe {
            let mut params = sys::llama_context_default_params();
            params.n_ctx = options.window;
            params.n_batch = options.window;
            params.n_ubatch = options.window;
            params.n_seq_max = 1;
            params.n_threads = options.threads;
            params.n_threads_batch = options.threads;
            // No backward pass for flash attention; an F32 cache as upstream's example does.
            params.flash_attn_type = sys::LLAMA_FLASH_ATTN_TYPE_DISABLED;
            params.type_k = sys::GGML_TYPE_F32;
            params.type_v = sys::GGML_TYPE_F32;
            params.no_perf = true;
            sys::llama_init_from_model(model.as_ptr(), params)
        };
        let Some(ctx) = NonNull::new(ctx) else {
            // SAFETY: the model is live, owned here, and used by nothing else.
            unsafe { sys::llama_model_free(model.as_ptr()) };
            return Err(EngineError::Context(
                "llama.cpp could not create a training context".into(),
            ));
        };
        // From here `trainer` owns model and context: Drop frees them.
        let trainer = Trainer {
            model,
            ctx,
            opt: Box::new(OptState {
                lr: Cell::new(1e-5),
                weight_decay: 0.0,
            }),
            _filter: Box::new(FilterState {
                blocks: options.trainable_blocks.clone(),
                output_norm: options.train_output_norm,
            }),
            window: options.window as usize,
            n_layer,
            n_vocab,
        };
        // SAFETY: context and model are live; the userdata pointers point into boxes the
        // trainer owns; the callbacks match llama.cpp's signatures.
        unsafe {
            let params = sys::llama_opt_params {
                n_ctx_train: 0,
                param_filter: Some(param_filter),
                param_filter_ud: &*trainer._filter as *const FilterState as *mut c_void,
                get_opt_pars: Some(optimizer_params),
                get_opt_pars_ud: &*trainer.opt as *const OptState as *mut c_void,
                optimizer_type: sys::GGML_OPT_OPTIMIZER_TYPE_ADAMW,
            };
            sys::llama_opt_init(trainer.ctx.as_ptr(), trainer.model.as_ptr(), params);
        }
        Ok(trainer)
    }

    /// Tokens per window.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Blocks of the model.
    pub fn n_layer(&self) -> usize {
        self.n_layer
    }

    /// Sets the learning rate of the next optimizer steps.
    pub fn set_learning_rate(&self, lr: f32) {
        self.opt.lr.set(lr);
    }

    /// One optimizer step on one window of `window() + 1` tokens (inputs and the next
    /// tokens they predict) under `mask`. Returns the window's mean cross-entropy (over the
    /// rows the loss is taken on) before the step.
    pub fn step(&mut self, tokens: &[i32], mask: TrainingMask<'_>) -> Result<f64> {
        self.run(&[tokens], mask, true, None)
    }

    /// One optimizer step on one window of `window() + 1` tokens under `mask`, with the
    /// loss taken against whole distributions instead of the next tokens: `probs` holds one
    /// distribution over the vocabulary per window position (`window() * n_vocab` floats,
    /// each row summing to 1), the target for the row at that position (knowledge
    /// distillation). Returns the mean KL divergence of the model from those distributions
    /// over the rows the loss is taken on (the cross-entropy minus their entropy), before
    /// the step.
    pub fn step_towards(
        &mut self,
        tokens: &[i32],
        mask: TrainingMask<'_>,
        probs: &[f32],
    ) -> Result<f64> {
        if probs.len() != self.window * self.n_vocab {
            return Err(EngineError::Decode(format!(
                "soft labels for a window hold {} x {} probabilities, not {}",
                self.window,
                self.n_vocab,
                probs.len()
            )));
        }
        self.run(&[tokens], mask, true, Some(probs))
    }

    /// Vocabulary size of the model.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Mean cross-entropy over `windows` (each `window() + 1` tokens) under `mask`, without
    /// training.
    pub fn evaluate(&mut self, windows: &[&[i32]], mask: TrainingMask<'_>) -> Result<f64> {
        self.run(windows, mask, false, None)
    }

    /// Checks `mask` against the model and the window; returns the rows of per-position
    /// masks and the first loss row for [`TrainingMask::Prefix`].
    fn check_mask(&self, mask: TrainingMask<'_>) -> Result<Option<(Vec<u8>, usize)>> {
        let (m, prefix) = match mask {
            TrainingMask::Full => return Ok(None),
            TrainingMask::Window(m) => (m, None),
            TrainingMask::Prefix { mask: m, prefix } => (m, Some(prefix)),
            TrainingMask::Schedule { masks, prefix } => (masks, Some(prefix)),
        };
        if m.is_empty() || !m.len().is_multiple_of(self.n_layer) {
            return Err(EngineError::MaskLength {
                expected: self.n_layer,
                got: m.len(),
            });
        }
        let schedule = matches!(mask, TrainingMask::Schedule { .. });
        if !schedule && m.len() != self.n_layer {
            return Err(EngineError::MaskLength {
                expected: self.n_layer,
                got: m.len(),
            });
        }
        if m.chunks_exact(self.n_layer)
            .any(|row| row.iter().all(|&b| b == 0))
        {
            return Err(EngineError::AllSkipped(self.n_layer));
        }
        let Some(prefix) = prefix else {
            return Ok(None);
        };
        if prefix == 0 || prefix >= self.window {
            return Err(EngineError::Context(format!(
                "the full-depth prefix must be 1 to {} tokens, not {prefix}",
                self.window - 1
            )));
        }
        if m.chunks_exact(self.n_layer).any(|row| row[0] == 0) {
            return Err(EngineError::Context(
                "the prompt/continuation recipe needs block 0 kept: it blends every later block with its input".into(),
            ));
        }
        let mut rows = vec![1u8; prefix * self.n_layer];
        rows.extend_from_slice(m);
        Ok(Some((rows, prefix)))
    }

    fn run(
        &mut self,
        windows: &[&[i32]],
        mask: TrainingMask<'_>,
        train: bool,
        soft: Option<&[f32]>,
    ) -> Result<f64> {
        let n = self.window;
        if windows.is_empty() {
            return Err(EngineError::Decode(
                "no window to train or evaluate on".into(),
            ));
        }
        for w in windows {
            if w.len() != n + 1 {
                return Err(EngineError::Decode(format!(
                    "a training window holds {} tokens, not {}",
                    n + 1,
                    w.len()
                )));
            }
            if let Some(&bad) = w.iter().find(|&&t| t < 0 || t as usize >= self.n_vocab) {
                return Err(EngineError::Tokenize(format!(
                    "token {bad} is outside the vocabulary of {}",
                    self.n_vocab
                )));
            }
        }
        let rows = self.check_mask(mask)?;
        let ndata = windows.len() as i64;
        // SAFETY: the dataset's tensors are host memory of exactly ndata * n i32 each; they
        // are filled before the epoch reads them and freed after. Context and model are
        // live; the mask guard holds for the whole epoch, on this thread.
        unsafe {
            let dataset = sys::ggml_opt_dataset_init(
                sys::GGML_TYPE_I32,
                sys::GGML_TYPE_I32,
                n as i64,
                n as i64,
                ndata,
                1,
            );
            let data = (*sys::ggml_opt_dataset_data(dataset)).data as *mut i32;
            let labels = (*sys::ggml_opt_dataset_labels(dataset)).data as *mut i32;
            for (i, w) in windows.iter().enumerate() {
                std::ptr::copy_nonoverlapping(w.as_ptr(), data.add(i * n), n);
                std::ptr::copy_nonoverlapping(w[1..].as_ptr(), labels.add(i * n), n);
            }
            let result = sys::ggml_opt_result_init();
            super::hook::take_blended();
            super::hook::take_soft_rows();
            {
                let _soft = soft.map(|p| SoftLabelGuard::set(p, self.n_vocab));
                let _training = TrainingGuard::set();
                let block_mask = match mask {
                    TrainingMask::Window(m) => Some(m),
                    _ => None,
                };
                let _mask = MaskGuard::set(block_mask);
                let _rows = rows
                    .as_ref()
                    .map(|(r, first)| RowMaskGuard::set(r, self.n_layer, Some(*first)));
                let (train_result, eval_result, split) = if train {
                    (result, std::ptr::null_mut(), ndata)
                } else {
                    (std::ptr::null_mut(), result, 0)
                };
                sys::llama_opt_epoch(
                    self.ctx.as_ptr(),
                    dataset,
                    train_result,
                    eval_result,
                    split,
                    None,
                    None,
                );
            }
            let mut loss = 0f64;
            sys::ggml_opt_result_loss(result, &mut loss, std::ptr::null_mut());
            sys::ggml_opt_result_free(result);
            sys::ggml_opt_dataset_free(dataset);
            let blended = super::hook::take_blended();
            let soft_rows = super::hook::take_soft_rows();
            if soft.is_some() && soft_rows != (windows.len() * n) as u64 {
                return Err(EngineError::Context(format!(
                    "soft labels replaced {soft_rows} of {} label rows: this llama.cpp does not carry the soft-label edit",
                    windows.len() * n
                )));
            }
            let first_loss_row = rows.as_ref().map_or(0, |(_, prefix)| *prefix);
            if let Some((_, prefix)) = rows {
                // Every window's graph must blend every block, or some rows ran blocks their
                // mask skips.
                if blended < (windows.len() * self.n_layer) as u64 {
                    return Err(EngineError::Context(format!(
                        "this architecture's blocks do not end where the per-position blend applies ({blended} of {} blocks blended): use the whole-window recipe",
                        windows.len() * self.n_layer
                    )));
                }
                loss = continuation_loss(loss, n, prefix, self.n_vocab);
            }
            if let Some(p) = soft {
                loss -= mean_entropy(&p[first_loss_row * self.n_vocab..], self.n_vocab);
            }
            if !loss.is_finite() {
                return Err(EngineError::Decode(format!(
                    "the training loss is {loss}: the learning rate is too high, or llama.cpp could not run the window"
                )));
            }
            Ok(loss)
        }
    }

    /// Writes the model with its current weights (F32) to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let path_c = c_path(path)?;
        // SAFETY: the model is live; the path outlives the call.
        unsafe { sys::llama_model_save_to_file(self.model.as_ptr(), path_c.as_ptr()) };
        if !path.is_file() {
            return Err(EngineError::Decode(format!(
                "llama.cpp did not write {}",
                path.display()
            )));
        }
        Ok(())
    }
}

/// The mean cross-entropy over the continuation rows, from llama.cpp's mean over all `n`
/// rows when the first `prefix` rows had all-zero logits (each contributing `ln(n_vocab)`).
fn continuation_loss(mean_all: f64, n: usize, prefix: usize, n_vocab: usize) -> f64 {
    (mean_all * n as f64 - prefix as f64 * (n_vocab as f64).ln()) / (n - prefix) as f64
}

/// Mean entropy (nats) of the distributions in `probs`, rows of `n_vocab` probabilities.
fn mean_entropy(probs: &[f32], n_vocab: usize) -> f64 {
    let rows = probs.chunks_exact(n_vocab);
    let n = rows.len().max(1);
    let total: f64 = rows
        .map(|row| {
            row.iter()
                .filter(|&&p| p > 0.0)
                .map(|&p| -(p as f64) * (p as f64).ln())
                .sum::<f64>()
        })
        .sum();
    total / n as f64
}

impl Drop for Trainer {
    fn drop(&mut self) {
        // SAFETY: both were created by this trainer and are freed once, context first.
        unsafe {
            sys::llama_free(self.ctx.as_ptr());
            sys::llama_model_free(self.model.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{continuation_loss, is_trainable, mean_entropy};

    #[test]
    fn mean_entropy_is_ln_n_for_uniform_rows_and_zero_for_one_hot_rows() {
        let uniform = [0.25f32; 4];
        let one_hot = [0.0f32, 1.0, 0.0, 0.0];
        let rows: Vec<f32> = uniform.iter().chain(one_hot.iter()).copied().collect();
        assert!((mean_entropy(&uniform, 4) - (4f64).ln()).abs() < 1e-6);
        assert!(mean_entropy(&one_hot, 4).abs() < 1e-12);
        assert!((mean_entropy(&rows, 4) - (4f64).ln() / 2.0).abs() < 1e-6);
    }

    #[test]
    fn the_continuation_loss_removes_the_constant_prefix_rows() {
        // 4 rows: 1 prefix row at ln(8), 3 continuation rows averaging 2.0.
        let mean_all = ((8f64).ln() + 3.0 * 2.0) / 4.0;
        assert!((continuation_loss(mean_all, 4, 1, 8) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn only_the_named_blocks_and_the_output_norm_are_trainable() {
        let blocks = [0, 2, 29];
        assert!(is_trainable("blk.0.attn_q.weight", &blocks, false));
        assert!(is_trainable("blk.29.ffn_down.weight", &blocks, false));
        assert!(!is_trainable("blk.1.attn_q.weight", &blocks, false));
        assert!(!is_trainable("blk.20.attn_q.weight", &blocks, false));
        assert!(!is_trainable("token_embd.weight", &blocks, true));
        assert!(!is_trainable("output_norm.weight", &blocks, false));
        assert!(is_trainable("output_norm.weight", &blocks, true));
    }
}
