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
    /// Layers to offload to a GPU backend (0 = CPU only).
    pub gpu_layers: u32,
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
}

impl Model {
    /// Loads the GGUF file at `path`.
    pub fn load(path: &Path, options: &ModelOptions) -> Result<Model> {
        let _ = hook::revision();
        let backend = backend()?;
        // llama.cpp aborts or allocates without bound on some malformed files: check the
        // structure ourselves first, so a bad file is one clear error.
        crate::gguf::validate_file(path)?;
        let mut params = LlamaModelParams::default().with_n_gpu_layers(options.gpu_layers);
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
        Ok(Model {
            model,
            arch,
            name,
            n_layer,
            rpc_devices,
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
