//! A loaded GGUF model: weights, vocabulary, chat template, and the facts the planner needs.

use std::{num::NonZeroU32, path::Path, sync::OnceLock};

use llama_cpp_2::{
    context::params::LlamaContextParams,
    llama_backend::LlamaBackend,
    model::{LlamaChatMessage, LlamaModel, params::LlamaModelParams},
    token::LlamaToken,
};

use super::error::{EngineError, Result};
use super::hook;
use super::session::Session;

/// Architectures whose skipping is verified by this crate's tests on real models.
pub const VERIFIED_ARCHITECTURES: &[&str] = &["llama", "gemma3"];

/// `n_gpu_layers` meaning "all of them" when a model goes to RPC servers.
const RPC_ALL_LAYERS: u32 = 9999;

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// Layers to offload to a GPU backend: 0 = CPU only, negative = all of them (llama.cpp's
    /// own default). Without a GPU backend every layer stays on the CPU whatever this says.
    pub gpu_layers: i32,
    /// RPC servers (`host:port`) to offload every block to, split as llama.cpp splits them;
    /// empty: run here.
    pub rpc: Vec<String>,
}

/// How to create a context (a KV cache and its compute buffers).
#[derive(Debug, Clone, Copy)]
pub struct ContextOptions {
    /// Context size in tokens, shared by all sequences.
    pub n_ctx: u32,
    /// Largest number of tokens one decode call may take.
    pub n_batch: u32,
    /// Parallel sequences.
    pub n_seq: u32,
    /// CPU threads for decoding and for prompt processing.
    pub threads: i32,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            n_ctx: 4096,
            n_batch: 512,
            n_seq: 1,
            threads: std::thread::available_parallelism()
                .map(|n| n.get() as i32)
                .unwrap_or(2),
        }
    }
}

/// One chat message, as the chat template sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the message.
    pub content: String,
}

/// llama.cpp's process-wide backend, initialised once with its logging silenced (our errors
/// carry the context instead; `UNISKIP_LLAMA_LOG=1` keeps llama.cpp's log on stderr).
fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            super::cpu::load_backends().map_err(|e| e.to_string())?;
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("UNISKIP_LLAMA_LOG").is_none() {
                backend.void_logs();
            }
            Ok(backend)
        })
        .as_ref()
        .map_err(|e| EngineError::Backend(e.clone()))
}

/// Initialises llama.cpp's backend if nothing did yet.
pub(crate) fn ensure_backend() -> Result<()> {
    backend().map(|_| ())
}

/// A model loaded through llama.cpp, with the hook revision checked.
pub struct Model {
    model: LlamaModel,
    arch: String,
    name: String,
    n_layer: usize,
    rpc_devices: Vec<super::rpc::RpcDevice>,
    placement: Placement,
}

/// Where a loaded model's blocks run: the device that holds them and how many it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    /// The backend holding the offloaded blocks (`CUDA`, `Vulkan`, `Metal`, `RPC`), or `CPU`.
    pub backend: String,
    /// The device's name and description (`CUDA0 (NVIDIA H200)`), or the CPU code in use.
    pub device: String,
    /// Blocks on that device (0 when everything runs on the CPU).
    pub gpu_blocks: usize,
    /// Blocks in the model.
    pub n_layer: usize,
    /// Whether the output head runs on the device too (llama.cpp offloads it last).
    pub output_on_device: bool,
}

impl Placement {
    /// What llama.cpp does with `gpu_layers` (negative: all) for a model of `n_layer` blocks:
    /// it offloads the last blocks, then the output head, to the first GPU device when there
    /// is one; to the RPC servers when the model went there.
    fn of(gpu_layers: i32, n_layer: usize, rpc: &[super::rpc::RpcDevice]) -> Placement {
        if !rpc.is_empty() {
            return Placement {
                backend: "RPC".into(),
                device: format!("{} RPC server(s)", rpc.len()),
                gpu_blocks: n_layer,
                n_layer,
                output_on_device: true,
            };
        }
        let gpu = llama_cpp_2::list_llama_ggml_backend_devices()
            .into_iter()
            .find(|d| {
                matches!(
                    d.device_type,
                    llama_cpp_2::LlamaBackendDeviceType::Gpu
                        | llama_cpp_2::LlamaBackendDeviceType::IntegratedGpu
                )
            });
        let asked = usize::try_from(gpu_layers).unwrap_or(usize::MAX);
        match gpu {
            Some(dev) if asked > 0 => Placement {
                backend: dev.backend.clone(),
                device: format!("{} ({})", dev.name, dev.description),
                gpu_blocks: asked.min(n_layer),
                n_layer,
                output_on_device: asked > n_layer,
            },
            _ => Placement {
                backend: "CPU".into(),
                device: format!("CPU ({})", super::cpu::variant()),
                gpu_blocks: 0,
                n_layer,
                output_on_device: false,
            },
        }
    }

    /// Where a model of `n_layer` blocks loaded here with `gpu_layers` (negative: all) would
    /// run.
    pub fn planned(gpu_layers: i32, n_layer: usize) -> Result<Placement> {
        backend()?;
        Ok(Placement::of(gpu_layers, n_layer, &[]))
    }

    /// Every device llama.cpp can use here, one line each: `CPU: ...`, `CUDA0: NVIDIA H200,
    /// 139.8 GiB free of 139.8`.
    pub fn devices() -> Result<Vec<String>> {
        backend()?;
        Ok(llama_cpp_2::list_llama_ggml_backend_devices()
            .into_iter()
            .map(|d| {
                let gib = |b: usize| b as f64 / f64::from(1u32 << 30);
                format!(
                    "{} ({}): {}, {:.1} GiB free of {:.1}",
                    d.name,
                    d.backend,
                    d.description,
                    gib(d.memory_free),
                    gib(d.memory_total)
                )
            })
            .collect())
    }

    /// One line for summaries and titles: `CUDA0 (NVIDIA H200), 30/30 blocks` or
    /// `CPU (haswell)`.
    pub fn describe(&self) -> String {
        if self.gpu_blocks == 0 {
            self.device.clone()
        } else {
            format!(
                "{}, {}/{} blocks{}",
                self.device,
                self.gpu_blocks,
                self.n_layer,
                if self.output_on_device {
                    " + output"
                } else {
                    ""
                }
            )
        }
    }

    /// A few characters for narrow places (the chat's title): `CPU` or `CUDA0 30/30`.
    pub fn short(&self) -> String {
        if self.gpu_blocks == 0 {
            "CPU".into()
        } else {
            let name = self.device.split(' ').next().unwrap_or(&self.backend);
            format!("{name} {}/{}", self.gpu_blocks, self.n_layer)
        }
    }

    /// Said when lossless decoding runs here: off the CPU, a verification batch's rows are
    /// not computed exactly as one-token steps are (measured on CUDA), so its text is full
    /// depth's only up to near-ties.
    pub fn lossless_warning(&self) -> Option<String> {
        (self.gpu_blocks > 0).then(|| {
            format!(
                "warning: lossless decoding on {} is not bit-exact: its kernels compute a batch's rows differently from one-token steps, so the text can part from full depth's at near-ties (exact on the CPU: --gpu-layers 0)",
                self.backend
            )
        })
    }

    /// A short tag for cache keys: `cpu`, or the backend and block count (`cuda30`).
    pub fn tag(&self) -> String {
        if self.gpu_blocks == 0 {
            "cpu".into()
        } else {
            format!("{}{}", self.backend.to_lowercase(), self.gpu_blocks)
        }
    }
}

impl Model {
    /// Loads the GGUF file at `path`.
    pub fn load(path: &Path, options: &ModelOptions) -> Result<Model> {
        let _ = hook::revision();
        let backend = backend()?;
        // llama.cpp aborts or allocates without bound on some malformed files: check the
        // structure ourselves first, so a bad file is one clear error.
        uniskip_gguf::validate_file(path)?;
        let gpu_layers = u32::try_from(options.gpu_layers).unwrap_or(u32::MAX);
        let mut params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        let rpc_devices = if options.rpc.is_empty() {
            Vec::new()
        } else {
            super::rpc::connect(&options.rpc)?
        };
        if !rpc_devices.is_empty() {
            // Every block on the servers (the token embeddings stay here, as in llama.cpp).
            params = params
                .with_n_gpu_layers(RPC_ALL_LAYERS)
                .with_devices(&super::rpc::device_indices(&rpc_devices))
                .map_err(|e| EngineError::Rpc(format!("cannot select the RPC devices: {e}")))?;
        }
        let model =
            LlamaModel::load_from_file(backend, path, &params).map_err(|e| EngineError::Load {
                path: path.to_path_buf(),
                reason: format!("{e} (not a GGUF model llama.cpp can read?)"),
            })?;
        let arch = model
            .meta_val_str("general.architecture")
            .unwrap_or_else(|_| "unknown".into());
        let name = model.meta_val_str("general.name").unwrap_or_else(|_| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let n_layer = model.n_layer() as usize;
        let placement = Placement::of(options.gpu_layers, n_layer, &rpc_devices);
        Ok(Model {
            model,
            arch,
            name,
            n_layer,
            rpc_devices,
            placement,
        })
    }

    /// The RPC servers holding this model's blocks (empty when it runs here).
    pub fn rpc_devices(&self) -> &[super::rpc::RpcDevice] {
        &self.rpc_devices
    }

    /// One line per RPC server: the blocks it holds (empty when the model runs here).
    pub fn rpc_split(&self) -> Vec<String> {
        super::rpc::describe_split(&self.rpc_devices, self.n_layer)
    }

    /// Where the model's blocks run.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The number of blocks (L).
    pub fn n_layer(&self) -> usize {
        self.n_layer
    }

    /// The context length the model was trained with.
    pub fn n_ctx_train(&self) -> usize {
        self.model.n_ctx_train() as usize
    }

    /// The GGUF architecture name (`llama`, `gemma3`, ...).
    pub fn architecture(&self) -> &str {
        &self.arch
    }

    /// The model's name from its metadata.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of metadata key `key` as text (numbers formatted), if the file has it.
    pub fn metadata(&self, key: &str) -> Option<String> {
        self.model.meta_val_str(key).ok()
    }

    /// Parameters of the model (all tensors).
    pub fn n_params(&self) -> u64 {
        self.model.n_params()
    }

    /// The vocabulary size (length of a logits row).
    pub fn n_vocab(&self) -> usize {
        self.model.n_vocab() as usize
    }

    /// A warning to show once when skipping on an architecture no test verifies.
    pub fn unverified_warning(&self) -> Option<String> {
        (!VERIFIED_ARCHITECTURES.contains(&self.arch.as_str())).then(|| {
            format!(
                "warning: skipping on architecture `{}` is not verified by uniskip's tests (verified: {})",
                self.arch,
                VERIFIED_ARCHITECTURES.join(", ")
            )
        })
    }

    /// Tokenizes `text` with the model's tokenizer, adding BOS when the model wants it, and
    /// parsing special tokens (chat templates emit them as text).
    pub fn tokenize(&self, text: &str, add_bos: bool) -> Result<Vec<LlamaToken>> {
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(text.as_bytes(), add_bos && vocab.should_add_bos(), true);
        if tokens.is_empty() && !text.is_empty() {
            return Err(EngineError::Tokenize("no tokens produced".into()));
        }
        Ok(tokens)
    }

    /// The bytes a token stands for (may be part of a UTF-8 character).
    pub fn token_bytes(&self, token: LlamaToken) -> Vec<u8> {
        self.model.vocab().token_to_piece(token, false, None)
    }

    /// True for end-of-generation tokens (EOS, EOT, ...).
    pub fn is_end_of_generation(&self, token: LlamaToken) -> bool {
        self.model.vocab().is_eog(token)
    }

    /// Every end-of-generation token of the vocabulary.
    pub fn end_of_generation_tokens(&self) -> Vec<LlamaToken> {
        (0..self.n_vocab() as i32)
            .map(LlamaToken)
            .filter(|&t| self.is_end_of_generation(t))
            .collect()
    }

    /// True when the model carries a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.model.chat_template(None).is_ok()
    }

    /// Renders `messages` with the model's own chat template, ending with the assistant's
    /// turn opened. Errors when the model has no template.
    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String> {
        let template = self
            .model
            .chat_template(None)
            .map_err(|e| EngineError::Template(e.to_string()))?;
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| EngineError::Template(e.to_string()))?;
        self.model
            .apply_chat_template(&template, &chat, true)
            .map_err(|e| EngineError::Template(e.to_string()))
    }

    /// Creates a session (context + K/V ledger) on this model.
    pub fn session(&self, options: &ContextOptions) -> Result<Session<'_>> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(options.n_ctx.max(1)))
            .with_n_batch(options.n_batch)
            .with_n_ubatch(options.n_batch)
            .with_n_seq_max(options.n_seq.max(1))
            .with_n_threads(options.threads)
            .with_n_threads_batch(options.threads)
            // One cache shared by all sequences, and a full sliding-window cache: a repair
            // may re-run positions a window-sized cache has already evicted.
            .with_kv_unified(true)
            .with_swa_full(true);
        // Counted afresh: `Session::new` reads what creating this context consulted.
        super::hook::take_consulted();
        let ctx = self
            .model
            .new_context(backend()?, params)
            .map_err(|e| EngineError::Context(e.to_string()))?;
        Ok(Session::new(self, ctx, options))
    }
}
