//! Writing GGUF models: from a Hugging Face checkpoint (`sigma model convert`)
//! or from random weights (`sigma model tiny`).
//!
//! Both go through one path: a [`TensorSource`] yields each weight as f32 by
//! its Hugging Face name, with the normalised [`ModelConfig`];
//! [`write_gguf`] checks every shape against the config, renames the tensors
//! to GGUF's names, encodes them with ggml's own quantization routines and
//! writes the file with the tokenizer embedded. The Sigma format is described
//! in `model/SIGMA-GGUF.md`.

pub mod hf;
pub mod retrofit;
pub mod tiny;

use std::path::{Path, PathBuf};

use super::ffi::ggml::{GgmlError, GgmlType};
use super::ffi::gguf::{GgufError, GgufWriter};
use super::model::Architecture;
use super::tokenizer::{TokenizerError, TokenizerSpec};

/// Why a model could not be converted or generated.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A file could not be read or written.
    #[error("cannot access '{path}': {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("'{path}' is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A configuration value is missing or inconsistent.
    #[error("config '{key}' {problem}")]
    Config {
        /// The `config.json` key (or command-line option).
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("tensor '{name}' is missing from the checkpoint; it is required for a {arch} model")]
    MissingTensor {
        /// Hugging Face tensor name.
        name: String,
        /// The architecture.
        arch: &'static str,
    },
    /// A tensor's shape disagrees with the config.
    #[error("tensor '{name}' has shape {found:?}, but config.json implies {expected:?}")]
    TensorShape {
        /// Hugging Face tensor name.
        name: String,
        /// Shape from the config (Hugging Face order: rows, columns).
        expected: Vec<usize>,
        /// Shape in the checkpoint.
        found: Vec<usize>,
    },
    /// A safetensors file could not be parsed or holds an unsupported dtype.
    #[error("safetensors '{path}': {problem}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The tokenizer could not be converted.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// ggml could not encode a tensor.
    #[error(transparent)]
    Ggml(#[from] GgmlError),
    /// The GGUF file could not be read or written.
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

impl From<TokenizerError> for ConvertError {
    fn from(e: TokenizerError) -> Self {
        Self::Tokenizer(e.to_string())
    }
}

/// The hyper-parameters of a model to write, normalised from `config.json`
/// or from `sigma model tiny`'s options.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Architecture written to `general.architecture`.
    pub arch: Architecture,
    /// Vocabulary size (rows of the embedding).
    pub n_vocab: usize,
    /// Hidden size.
    pub n_embd: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// FFN inner size.
    pub n_ff: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key heads.
    pub n_head_k: usize,
    /// Value heads (equal to key heads unless Sigma).
    pub n_head_v: usize,
    /// Query/key head size.
    pub head_dim: usize,
    /// Value head size.
    pub head_dim_v: usize,
    /// Augmented-Q width (Sigma only; 0 = none).
    pub n_aug_q: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// Training context length.
    pub n_ctx: usize,
    /// Whether the output projection is the embedding (no `lm_head`).
    pub tied_embeddings: bool,
}

impl ModelConfig {
    /// Checks that head counts divide and widths are positive.
    pub fn validate(&self) -> Result<(), ConvertError> {
        let bad = |key: &str, problem: String| ConvertError::Config {
            key: key.into(),
            problem,
        };
        for (key, v) in [
            ("vocab_size", self.n_vocab),
            ("hidden_size", self.n_embd),
            ("num_hidden_layers", self.n_layer),
            ("intermediate_size", self.n_ff),
            ("num_attention_heads", self.n_head),
            ("head_dim", self.head_dim),
        ] {
            if v == 0 {
                return Err(bad(key, "must be greater than 0".into()));
            }
        }
        let (k_key, v_key) = self.kv_head_keys();
        for (key, n) in [(k_key, self.n_head_k), (v_key, self.n_head_v)] {
            if n == 0 || !self.n_head.is_multiple_of(n) {
                return Err(bad(
                    key,
                    format!("({n}) must divide num_attention_heads ({})", self.n_head),
                ));
            }
        }
        if self.arch != Architecture::Sigma && (self.n_head_k != self.n_head_v || self.n_aug_q > 0)
        {
            return Err(bad(
                "architecture",
                format!(
                    "{} needs equal key and value heads and no augmented Q; convert as sigma",
                    self.arch.gguf_name()
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(bad(
                "head_dim",
                format!("({}) must be even for RoPE", self.head_dim),
            ));
        }
        Ok(())
    }

    /// The `config.json` keys holding the K and V head counts.
    fn kv_head_keys(&self) -> (&'static str, &'static str) {
        match self.arch {
            Architecture::Sigma => ("num_key_heads", "num_value_heads"),
            _ => ("num_key_value_heads", "num_key_value_heads"),
        }
    }
}

/// A weight as f32 in Hugging Face layout: `shape` is `[rows, columns]`
/// (out, in) for matrices, `[n]` for vectors; `data` is row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Where the weights come from.
pub trait TensorSource {
    /// The model's hyper-parameters.
    fn config(&self) -> &ModelConfig;
    /// The tokenizer to embed.
    fn tokenizer(&self) -> &TokenizerSpec;
    /// The weight named `name` (Hugging Face naming), if present.
    fn tensor(&self, name: &str) -> Result<Option<HfTensor>, ConvertError>;
}

/// One weight to write: its Hugging Face name, GGUF name and expected shape.
struct Entry {
    hf: String,
    gguf: String,
    shape: Vec<usize>,
    required: bool,
}

/// Every weight of a model with `c`, in file order.
fn entries(c: &ModelConfig) -> Vec<Entry> {
    let n_q = c.n_head * c.head_dim;
    let n_k = c.n_head_k * c.head_dim;
    let n_v = c.n_head_v * c.head_dim_v;
    let n_o = c.n_head * c.head_dim_v;
    let e = |hf: String, gguf: &str, shape: Vec<usize>| Entry {
        hf,
        gguf: gguf.to_string(),
        shape,
        required: true,
    };
    let mut out = vec![
        e(
            "model.embed_tokens.weight".into(),
            "token_embd.weight",
            vec![c.n_vocab, c.n_embd],
        ),
        e(
            "model.norm.weight".into(),
            "output_norm.weight",
            vec![c.n_embd],
        ),
    ];
    if !c.tied_embeddings {
        out.push(e(
            "lm_head.weight".into(),
            "output.weight",
            vec![c.n_vocab, c.n_embd],
        ));
    }
    for i in 0..c.n_layer {
        let hf = |s: &str| format!("model.layers.{i}.{s}");
        let gg = |s: &str| format!("blk.{i}.{s}");
        let mut layer = |hf_name: &str, gguf_name: &str, shape: Vec<usize>, required: bool| {
            out.push(Entry {
                hf: hf(hf_name),
                gguf: gg(gguf_name),
                shape,
                required,
            });
        };
        layer(
            "input_layernorm.weight",
            "attn_norm.weight",
            vec![c.n_embd],
            true,
        );
        layer(
            "self_attn.q_proj.weight",
            "attn_q.weight",
            vec![n_q, c.n_embd],
            true,
        );
        if c.n_aug_q > 0 {
            layer(
                "self_attn.q_gate_proj.weight",
                "attn_q_gate.weight",
                vec![c.n_aug_q, n_q],
                true,
            );
            layer(
                "self_attn.q_up_proj.weight",
                "attn_q_up.weight",
                vec![c.n_aug_q, n_q],
                true,
            );
            layer(
                "self_attn.q_down_proj.weight",
                "attn_q_down.weight",
                vec![n_q, c.n_aug_q],
                true,
            );
        }
        layer(
            "self_attn.k_proj.weight",
            "attn_k.weight",
            vec![n_k, c.n_embd],
            true,
        );
        layer(
            "self_attn.v_proj.weight",
            "attn_v.weight",
            vec![n_v, c.n_embd],
            true,
        );
        let qwen2 = c.arch == Architecture::Qwen2;
        layer("self_attn.q_proj.bias", "attn_q.bias", vec![n_q], qwen2);
        layer("self_attn.k_proj.bias", "attn_k.bias", vec![n_k], qwen2);
        layer("self_attn.v_proj.bias", "attn_v.bias", vec![n_v], qwen2);
        layer(
            "self_attn.o_proj.weight",
            "attn_output.weight",
            vec![c.n_embd, n_o],
            true,
        );
        layer(
            "post_attention_layernorm.weight",
            "ffn_norm.weight",
            vec![c.n_embd],
            true,
        );
        layer(
            "mlp.gate_proj.weight",
            "ffn_gate.weight",
            vec![c.n_ff, c.n_embd],
            true,
        );
        layer(
            "mlp.up_proj.weight",
            "ffn_up.weight",
            vec![c.n_ff, c.n_embd],
            true,
        );
        layer(
            "mlp.down_proj.weight",
            "ffn_down.weight",
            vec![c.n_embd, c.n_ff],
            true,
        );
    }
    out
}

/// Reorders the rows of a Q or K projection so llama's adjacent-pair RoPE
/// (the mode llama.cpp uses for `llama` files) rotates the same pairs as
/// Hugging Face's rotate-half: within each head, rows `[0..d/2, d/2..d]`
/// are interleaved. The same permutation as llama.cpp's converter.
fn permute_for_llama_rope(t: &mut HfTensor, n_head: usize) {
    let (rows, cols) = (t.shape[0], t.shape.get(1).copied().unwrap_or(1));
    let head = rows / n_head;
    let half = head / 2;
    let src = t.data.clone();
    for h in 0..n_head {
        for i in 0..half {
            for (part, dst_row) in [(0, 2 * i), (1, 2 * i + 1)] {
                let from = (h * head + part * half + i) * cols;
                let to = (h * head + dst_row) * cols;
                t.data[to..to + cols].copy_from_slice(&src[from..from + cols]);
            }
        }
    }
}

/// Writes the model `src` describes to `out` as GGUF, matrices encoded as
/// `ty` (vectors stay f32; a matrix whose rows do not fill whole blocks of
/// `ty` is stored as f16).
pub fn write_gguf(
    src: &dyn TensorSource,
    ty: GgmlType,
    name: &str,
    out: &Path,
) -> Result<(), ConvertError> {
    let c = src.config();
    c.validate()?;
    let entries = entries(c);
    let mut w = GgufWriter::new(entries.len());
    write_metadata(&mut w, c, name);
    write_tokenizer(&mut w, src.tokenizer(), c.n_vocab)?;
    let arch = c.arch.gguf_name();
    for e in &entries {
        let Some(mut t) = src.tensor(&e.hf)? else {
            if e.required {
                return Err(ConvertError::MissingTensor {
                    name: e.hf.clone(),
                    arch,
                });
            }
            continue;
        };
        if t.shape != e.shape {
            return Err(ConvertError::TensorShape {
                name: e.hf.clone(),
                expected: e.shape.clone(),
                found: t.shape,
            });
        }
        if c.arch == Architecture::Llama {
            if e.gguf.ends_with("attn_q.weight") || e.gguf.ends_with("attn_q.bias") {
                permute_for_llama_rope(&mut t, c.n_head);
            } else if e.gguf.ends_with("attn_k.weight") || e.gguf.ends_with("attn_k.bias") {
                permute_for_llama_rope(&mut t, c.n_head_k);
            }
        }
        let row = *t.shape.last().expect("shapes have a dimension");
        let tensor_ty = if t.shape.len() == 1 {
            GgmlType::F32
        } else if ty.row_size(row as i64).is_some() {
            ty
        } else {
            GgmlType::F16
        };
        let bytes = tensor_ty.quantize(&t.data, row)?;
        // ggml lists dims innermost first.
        let ne: Vec<i64> = t.shape.iter().rev().map(|&d| d as i64).collect();
        w.add_tensor(&e.gguf, tensor_ty, &ne, bytes)?;
    }
    Ok(w.write(out)?)
}

/// The `general.*` and `{arch}.*` keys.
fn write_metadata(w: &mut GgufWriter, c: &ModelConfig, name: &str) {
    let a = c.arch.gguf_name();
    let u = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    w.set_str("general.architecture", a);
    w.set_str("general.name", name);
    w.set_u32("general.quantization_version", 2);
    w.set_u32(&format!("{a}.context_length"), u(c.n_ctx));
    w.set_u32(&format!("{a}.embedding_length"), u(c.n_embd));
    w.set_u32(&format!("{a}.block_count"), u(c.n_layer));
    w.set_u32(&format!("{a}.feed_forward_length"), u(c.n_ff));
    w.set_u32(&format!("{a}.attention.head_count"), u(c.n_head));
    if c.arch == Architecture::Sigma {
        w.set_u32(&format!("{a}.attention.head_count_k"), u(c.n_head_k));
        w.set_u32(&format!("{a}.attention.head_count_v"), u(c.n_head_v));
        if c.n_aug_q > 0 {
            w.set_u32(&format!("{a}.attention.query_aug_length"), u(c.n_aug_q));
        }
    } else {
        w.set_u32(&format!("{a}.attention.head_count_kv"), u(c.n_head_k));
        w.set_u32(&format!("{a}.rope.dimension_count"), u(c.head_dim));
    }
    w.set_u32(&format!("{a}.attention.key_length"), u(c.head_dim));
    w.set_u32(&format!("{a}.attention.value_length"), u(c.head_dim_v));
    w.set_f32(&format!("{a}.attention.layer_norm_rms_epsilon"), c.rms_eps);
    w.set_f32(&format!("{a}.rope.freq_base"), c.rope_theta);
}

/// The `tokenizer.*` keys, the vocabulary padded to the embedding's rows.
fn write_tokenizer(
    w: &mut GgufWriter,
    t: &TokenizerSpec,
    n_vocab: usize,
) -> Result<(), ConvertError> {
    /// `token_type` of padding entries (llama.cpp's UNUSED).
    const TOKEN_TYPE_UNUSED: i32 = 5;
    if t.tokens.len() > n_vocab {
        return Err(ConvertError::Config {
            key: "vocab_size".into(),
            problem: format!(
                "({n_vocab}) is smaller than the tokenizer's {} tokens",
                t.tokens.len()
            ),
        });
    }
    let mut tokens = t.tokens.clone();
    let mut types = t.token_types.clone();
    for i in tokens.len()..n_vocab {
        tokens.push(format!("[PAD{i}]"));
        types.push(TOKEN_TYPE_UNUSED);
    }
    w.set_str("tokenizer.ggml.model", "gpt2");
    w.set_str("tokenizer.ggml.pre", &t.pre);
    w.set_str_array("tokenizer.ggml.tokens", &tokens);
    w.set_i32_array("tokenizer.ggml.token_type", &types);
    w.set_str_array("tokenizer.ggml.merges", &t.merges);
    if let Some(id) = t.bos {
        w.set_u32("tokenizer.ggml.bos_token_id", id);
    }
    if let Some(id) = t.eos {
        w.set_u32("tokenizer.ggml.eos_token_id", id);
    }
    w.set_bool("tokenizer.ggml.add_bos_token", t.add_bos);
    w.set_bool("tokenizer.ggml.add_eos_token", t.add_eos);
    for (key, id) in &t.role_ids {
        w.set_u32(key, *id);
    }
    if let Some(template) = &t.chat_template {
        w.set_str("tokenizer.chat_template", template);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_permutation_interleaves_halves_per_head() {
        // 2 heads of size 4, one column: rows [a0 a1 b0 b1 | c0 c1 d0 d1]
        let mut t = HfTensor {
            shape: vec![8, 1],
            data: vec![0., 1., 2., 3., 10., 11., 12., 13.],
        };
        permute_for_llama_rope(&mut t, 2);
        assert_eq!(t.data, vec![0., 2., 1., 3., 10., 12., 11., 13.]);
    }
}
