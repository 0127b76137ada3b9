//! The engine's error type: one line naming the file, tensor or key at fault
//! and what to do about it.

use std::path::PathBuf;

use super::ffi::ggml::GgmlError;
use super::ffi::gguf::GgufError;

/// Why loading a model or running it failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The GGUF file could not be opened or its metadata read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// ggml could not allocate or compute.
    #[error(transparent)]
    Ggml(#[from] GgmlError),
    /// Tensor data could not be read from the file.
    #[error("cannot read tensor data of '{path}': {source}")]
    Read {
        /// The model file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `general.architecture` names a model family we have no graph for.
    #[error("'{path}' is a '{arch}' model; supported architectures: {supported}")]
    UnsupportedArchitecture {
        /// The model file.
        path: PathBuf,
        /// The architecture found.
        arch: String,
        /// Comma-separated list of supported architectures.
        supported: String,
    },
    /// A tensor is stored in a type the engine cannot load.
    #[error(
        "tensor '{tensor}' in '{path}' has type {ty}; supported types: {supported}; use a GGUF quantized to one of them"
    )]
    UnsupportedTensorType {
        /// The model file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its type name.
        ty: String,
        /// Comma-separated supported type names.
        supported: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("'{path}' has no tensor '{tensor}'; the file is incomplete or not a {arch} model")]
    MissingTensor {
        /// The model file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The architecture that needs it.
        arch: String,
    },
    /// A tensor has another shape than the hyper-parameters imply.
    #[error(
        "tensor '{tensor}' in '{path}' has shape {found:?}, expected {expected:?} from the model's hyper-parameters"
    )]
    TensorShape {
        /// The model file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Expected dims (ggml order).
        expected: Vec<i64>,
        /// Dims found.
        found: Vec<i64>,
    },
    /// A hyper-parameter is missing, zero or inconsistent.
    #[error("GGUF key '{key}' in '{path}' {problem}")]
    HyperParameter {
        /// The model file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong ("must be > 0", ...).
        problem: String,
    },
    /// The tokens do not fit in the context window.
    #[error(
        "{needed} tokens do not fit in the context of {n_ctx} ({used} already used); shorten the prompt or raise the context size"
    )]
    ContextFull {
        /// Positions requested by this call.
        needed: usize,
        /// Positions already filled.
        used: usize,
        /// Context size.
        n_ctx: usize,
    },
    /// A token id is outside the vocabulary.
    #[error("token id {token} is outside the vocabulary of {n_vocab} tokens")]
    TokenOutOfRange {
        /// The bad id.
        token: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
    /// A KV cache type cannot hold the model's heads.
    #[error(
        "cache type {ty} cannot hold {what} heads of {head_dim} values (not a whole number of its blocks); use f16, f32 or q8_0"
    )]
    CacheType {
        /// The cache type name.
        ty: String,
        /// "K" or "V".
        what: &'static str,
        /// The head size.
        head_dim: usize,
    },
    /// The fused decode attention was asked for with a non-f16 cache.
    #[error(
        "the fused decode attention (and --select-v) needs f16 K and V caches, not K {k} / V {v}; drop --select-v or use f16 caches"
    )]
    FusedNeedsF16 {
        /// K cache type.
        k: String,
        /// V cache type.
        v: String,
    },
    /// No tokens were given to evaluate.
    #[error("nothing to evaluate: the token list is empty; give a prompt")]
    EmptyInput,
    /// The rows asked for logits are not ascending indices into the batch.
    #[error(
        "bad output rows for a batch of {n_tokens} tokens: ask for at least one, ascending, each below {n_tokens}"
    )]
    BadOutputRows {
        /// Tokens in the batch.
        n_tokens: usize,
    },
    /// A GPU placement named a GPU ggml does not have.
    #[error("there is no GPU {index} to load the model on: {why}; use --device cpu")]
    NoGpu {
        /// ggml's GPU index.
        index: usize,
        /// Why there is none.
        why: String,
    },
    /// Both attention paths were asked for.
    #[error("choose one attention path: the fused decode op or stock ops, not both")]
    TwoAttentionPaths,
}
