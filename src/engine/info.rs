//! A model's vital statistics, read from its GGUF header (`sigma model info`).
//!
//! Shapes come from the `{arch}.*` hyper-parameter keys; the quantisation
//! mix from the tensor directory; the KV-cache cost per token is computed
//! for f16 K and V separately, each from its own head count and head size
//! (`{arch}.attention.key_length` and `value_length` may differ; DiffQKV
//! files give `head_count_k` and `head_count_v` apart; head counts may vary
//! by layer). Works for any architecture, including ones the engine
//! cannot run, so users can inspect a file before trying it.

use serde::Serialize;

use crate::engine::ffi::gguf::{GgufError, GgufFile, Scalar, Value};

/// Bytes per element of an f16 cache entry.
const F16_BYTES: u64 = 2;

/// Tensors of one ggml type: how many and how large.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeShare {
    /// ggml type name (`q4_K`, `f32`, ...).
    pub ggml_type: String,
    /// Number of tensors.
    pub tensors: usize,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// What `sigma model info` shows about a GGUF model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// The file.
    pub path: String,
    /// Size on disk in bytes.
    pub file_size: u64,
    /// `general.name`, if set.
    pub name: Option<String>,
    /// `general.architecture`.
    pub arch: String,
    /// Transformer blocks.
    pub n_layer: u64,
    /// Hidden size.
    pub n_embd: u64,
    /// Query heads.
    pub n_head: u64,
    /// Key heads (the largest if they vary by layer).
    pub n_head_k: u64,
    /// Value heads (the largest if they vary by layer); differs from the key
    /// heads for DiffQKV (`sigma`) models.
    pub n_head_v: u64,
    /// Augmented-Q width (`sigma` only; 0 = none).
    pub query_aug_length: u64,
    /// Size of one key head.
    pub head_dim_k: u64,
    /// Size of one value head.
    pub head_dim_v: u64,
    /// Feed-forward hidden size (the largest if it varies by layer).
    pub n_ff: u64,
    /// Vocabulary size.
    pub n_vocab: u64,
    /// Training context length.
    pub context_length: u64,
    /// Whether the file carries a chat template.
    pub chat_template: bool,
    /// Number of tensors.
    pub tensors: usize,
    /// Tensors grouped by type, largest share first.
    pub quant_mix: Vec<TypeShare>,
    /// f16 K-cache bytes per token, all layers.
    pub kv_k_bytes_per_token: u64,
    /// f16 V-cache bytes per token, all layers.
    pub kv_v_bytes_per_token: u64,
}

impl ModelInfo {
    /// Reads the summary of `gguf`.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, GgufError> {
        let arch: String = gguf.require("general.architecture")?;
        let key = |k: &str| format!("{arch}.{k}");
        let n_layer: u64 = gguf.require(&key("block_count"))?;
        if n_layer > MAX_LAYERS {
            return Err(GgufError::BadValue {
                path: gguf.path().to_path_buf(),
                key: key("block_count"),
                problem: too_many_layers(n_layer),
            });
        }
        let n_embd: u64 = gguf.require(&key("embedding_length"))?;
        let n_head = per_layer(gguf, &key("attention.head_count"), n_layer)?
            .and_then(|v| v.into_iter().max())
            .ok_or_else(|| missing(gguf, &key("attention.head_count")))?;
        let kv = per_layer(gguf, &key("attention.head_count_kv"), n_layer)?
            .unwrap_or_else(|| vec![n_head; n_layer as usize]);
        // DiffQKV files store K and V head counts apart.
        let k_heads =
            per_layer(gguf, &key("attention.head_count_k"), n_layer)?.unwrap_or_else(|| kv.clone());
        let v_heads =
            per_layer(gguf, &key("attention.head_count_v"), n_layer)?.unwrap_or_else(|| kv.clone());
        let default_dim = n_embd.checked_div(n_head).unwrap_or(0);
        let head_dim_k = gguf
            .get(&key("attention.key_length"))?
            .unwrap_or(default_dim);
        let head_dim_v = gguf
            .get(&key("attention.value_length"))?
            .unwrap_or(default_dim);
        let query_aug_length = gguf.get(&key("attention.query_aug_length"))?.unwrap_or(0);
        let n_ff = per_layer(gguf, &key("feed_forward_length"), n_layer)?
            .and_then(|v| v.into_iter().max())
            .unwrap_or(0);
        let n_vocab = match gguf.get::<u64>(&key("vocab_size"))? {
            Some(n) => n,
            None => gguf
                .get::<Vec<String>>("tokenizer.ggml.tokens")?
                .map_or(0, |t| t.len() as u64),
        };

        let context_length = gguf.get(&key("context_length"))?.unwrap_or(0);

        let tensors = gguf.tensors();
        let mut quant_mix: Vec<TypeShare> = Vec::new();
        for t in &tensors {
            match quant_mix.iter_mut().find(|s| s.ggml_type == t.type_name) {
                Some(share) => {
                    share.tensors += 1;
                    share.bytes += t.size;
                }
                None => quant_mix.push(TypeShare {
                    ggml_type: t.type_name.clone(),
                    tensors: 1,
                    bytes: t.size,
                }),
            }
        }
        quant_mix.sort_by_key(|s| std::cmp::Reverse(s.bytes));

        Ok(Self {
            path: gguf.path().display().to_string(),
            file_size: gguf.file_size(),
            name: gguf.get("general.name")?,
            arch,
            n_layer,
            n_embd,
            n_head,
            n_head_k: k_heads.iter().copied().max().unwrap_or(0),
            n_head_v: v_heads.iter().copied().max().unwrap_or(0),
            query_aug_length,
            head_dim_k,
            head_dim_v,
            n_ff,
            n_vocab,
            context_length,
            chat_template: gguf.has("tokenizer.chat_template"),
            tensors: tensors.len(),
            quant_mix,
            kv_k_bytes_per_token: F16_BYTES * k_heads.iter().sum::<u64>() * head_dim_k,
            kv_v_bytes_per_token: F16_BYTES * v_heads.iter().sum::<u64>() * head_dim_v,
        })
    }

    /// f16 K plus V cache bytes per token.
    pub fn kv_bytes_per_token(&self) -> u64 {
        self.kv_k_bytes_per_token + self.kv_v_bytes_per_token
    }
}

/// The most blocks a model file may declare: far past any model's (the
/// largest have about 130), and a damaged or hostile count above it would
/// otherwise size per-layer tables and caches.
pub const MAX_LAYERS: u64 = 4096;

/// What is wrong with a block count above [`MAX_LAYERS`].
pub fn too_many_layers(n_layer: u64) -> String {
    format!(
        "declares {n_layer} blocks, more than the {MAX_LAYERS} any model has: the file is damaged, download it again"
    )
}

/// The error for a missing required key.
fn missing(gguf: &GgufFile, key: &str) -> GgufError {
    GgufError::MissingKey {
        path: gguf.path().to_path_buf(),
        key: key.to_string(),
    }
}

/// A per-layer hyper-parameter stored either once for all layers or as one
/// value per layer; `None` when absent.
fn per_layer(gguf: &GgufFile, key: &str, n_layer: u64) -> Result<Option<Vec<u64>>, GgufError> {
    let wrong = |found: String| GgufError::WrongType {
        path: gguf.path().to_path_buf(),
        key: key.to_string(),
        expected: "a count or an array of counts",
        found,
    };
    let count = |s: &Scalar| match s {
        Scalar::Int(v) => u64::try_from(*v).ok(),
        _ => None,
    };
    match gguf.get::<Value>(key)? {
        None => Ok(None),
        Some(Value::Scalar(s)) => count(&s)
            .map(|v| Some(vec![v; n_layer as usize]))
            .ok_or_else(|| wrong(format!("{s:?}"))),
        Some(Value::Array(items)) => items
            .iter()
            .map(count)
            .collect::<Option<Vec<u64>>>()
            .map(Some)
            .ok_or_else(|| wrong(format!("an array of {} items", items.len()))),
    }
}
