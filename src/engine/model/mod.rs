//! Model hyper-parameters and the loaded model.
//!
//! [`HParams::from_gguf`] reads the `{arch}.*` keys of a GGUF file and checks
//! them; [`Model::load`] loads the weights and picks the graph builder of the
//! architecture. An architecture without a builder is an error that lists
//! the supported ones.
//!
//! # Example
//!
//! ```no_run
//! use sigma::engine::ffi::gguf::GgufFile;
//! use sigma::engine::model::{LoadOptions, Model};
//! let gguf = GgufFile::open("model.gguf".as_ref())?;
//! let model = Model::load(&gguf, &LoadOptions::threads(2))?;
//! println!("{} layers", model.hparams().n_layer);
//! # Ok::<(), sigma::engine::EngineError>(())
//! ```

pub mod llama;

use std::path::Path;

use super::attention::SelectV;
use super::device::Placement;
use super::error::EngineError;
use super::ffi::ggml::{Backend, Device, Graph, RopeParams, Tensor};
use super::ffi::gguf::GgufFile;
use super::kv_cache::{CacheTypes, KvCache, KvLayout};
use super::weights::{GpuWeights, Weights};

/// A model family with a graph builder here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// Llama (and SmolLM2, Mistral-style dense models).
    Llama,
    /// Qwen2 / Qwen2.5: llama with Q/K/V biases and NeoX RoPE.
    Qwen2,
    /// Sigma: DiffQKV attention (separate K and V head counts) with an
    /// optional augmented-Q MLP (`model/SIGMA-GGUF.md`).
    Sigma,
}

impl Architecture {
    /// Every supported architecture.
    pub const ALL: [Self; 3] = [Self::Llama, Self::Qwen2, Self::Sigma];

    /// The `general.architecture` value.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Sigma => "sigma",
        }
    }

    /// The architecture named `name` in GGUF, if supported.
    pub fn from_gguf(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.gguf_name() == name)
    }

    /// ggml's RoPE mode for the architecture, as llama.cpp uses it:
    /// llama's converter permutes Q/K rows so the normal (adjacent pairs)
    /// mode applies; Qwen2 and Sigma keep HF's layout and rotate halves (NeoX).
    pub fn rope_mode(self) -> i32 {
        match self {
            Self::Llama => 0,
            Self::Qwen2 | Self::Sigma => 2,
        }
    }

    fn supported_list() -> String {
        Self::ALL.map(Self::gguf_name).join(", ")
    }
}

/// Hyper-parameters of a dense decoder-only transformer.
#[derive(Clone, Debug, PartialEq)]
pub struct HParams {
    /// Model family.
    pub arch: Architecture,
    /// Vocabulary size (rows of the token embedding).
    pub n_vocab: usize,
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
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
    /// Value heads (equal to key heads for llama/qwen2; separate for DiffQKV).
    pub n_head_v: usize,
    /// Width of the augmented-Q MLP (Sigma only; 0 = none).
    pub n_aug_q: usize,
    /// Size of one query/key head.
    pub head_dim_k: usize,
    /// Size of one value head.
    pub head_dim_v: usize,
    /// Rotated dimensions per head.
    pub n_rot: usize,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE settings.
    pub rope: RopeParams,
}

/// Reads `key` as a positive count.
fn count(gguf: &GgufFile, key: &str, default: Option<usize>) -> Result<usize, EngineError> {
    let v: Option<u64> = gguf.get(key)?;
    let v = match (v, default) {
        (Some(v), _) => usize::try_from(v).unwrap_or(0),
        (None, Some(d)) => d,
        (None, None) => gguf.require::<u64>(key).map(|_| 0)?,
    };
    if v == 0 {
        return Err(EngineError::HyperParameter {
            path: gguf.path().to_path_buf(),
            key: key.to_owned(),
            problem: "must be greater than 0".into(),
        });
    }
    Ok(v)
}

impl HParams {
    /// Reads and checks the hyper-parameters of `gguf`.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, EngineError> {
        let path = gguf.path();
        let arch_name: String = gguf.require("general.architecture")?;
        let arch = Architecture::from_gguf(&arch_name).ok_or_else(|| {
            EngineError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                arch: arch_name.clone(),
                supported: Architecture::supported_list(),
            }
        })?;
        let a = arch_name.as_str();
        let n_embd = count(gguf, &format!("{a}.embedding_length"), None)?;
        let n_head = count(gguf, &format!("{a}.attention.head_count"), None)?;
        // DiffQKV stores K and V head counts apart; GQA models share one.
        let (n_head_k, n_head_v) = if arch == Architecture::Sigma {
            (
                count(gguf, &format!("{a}.attention.head_count_k"), None)?,
                count(gguf, &format!("{a}.attention.head_count_v"), None)?,
            )
        } else {
            let n = count(gguf, &format!("{a}.attention.head_count_kv"), Some(n_head))?;
            (n, n)
        };
        let head_dim_k = count(
            gguf,
            &format!("{a}.attention.key_length"),
            Some(n_embd / n_head.max(1)),
        )?;
        let head_dim_v = count(
            gguf,
            &format!("{a}.attention.value_length"),
            Some(head_dim_k),
        )?;
        let n_rot = count(gguf, &format!("{a}.rope.dimension_count"), Some(head_dim_k))?;
        let n_ctx_train = count(gguf, &format!("{a}.context_length"), None)?;
        let n_aug_q = match gguf.get::<u64>(&format!("{a}.attention.query_aug_length"))? {
            Some(w) if arch == Architecture::Sigma => usize::try_from(w).unwrap_or(0),
            _ => 0,
        };
        let bad = |key: String, problem: String| EngineError::HyperParameter {
            path: path.to_path_buf(),
            key,
            problem,
        };
        let n_layer = count(gguf, &format!("{a}.block_count"), None)?;
        if n_layer as u64 > crate::engine::info::MAX_LAYERS {
            return Err(bad(
                format!("{a}.block_count"),
                crate::engine::info::too_many_layers(n_layer as u64),
            ));
        }
        let (k_key, v_key) = if arch == Architecture::Sigma {
            ("head_count_k", "head_count_v")
        } else {
            ("head_count_kv", "head_count_kv")
        };
        for (key, n) in [(k_key, n_head_k), (v_key, n_head_v)] {
            if n_head % n != 0 {
                return Err(bad(
                    format!("{a}.attention.{key}"),
                    format!("({n}) must divide the query head count {n_head}"),
                ));
            }
        }
        if n_rot != head_dim_k {
            return Err(bad(
                format!("{a}.rope.dimension_count"),
                format!("({n_rot}) must equal the key head size {head_dim_k}"),
            ));
        }
        if arch != Architecture::Sigma && head_dim_k != head_dim_v {
            return Err(bad(
                format!("{a}.attention.value_length"),
                format!("({head_dim_v}) must equal the key head size ({head_dim_k}) for {a}"),
            ));
        }
        let scaling: Option<String> = gguf.get(&format!("{a}.rope.scaling.type"))?;
        let freq_scale = match scaling.as_deref() {
            None | Some("none") => 1.0,
            Some("linear") => {
                let factor: f32 = gguf
                    .get(&format!("{a}.rope.scaling.factor"))?
                    .unwrap_or(1.0);
                if factor > 0.0 { 1.0 / factor } else { 1.0 }
            }
            Some(other) => {
                return Err(bad(
                    format!("{a}.rope.scaling.type"),
                    format!("is '{other}'; supported: none, linear"),
                ));
            }
        };
        let rms_eps: f32 = gguf.require(&format!("{a}.attention.layer_norm_rms_epsilon"))?;
        let freq_base: f32 = gguf
            .get(&format!("{a}.rope.freq_base"))?
            .unwrap_or(10_000.0);
        let n_vocab = gguf
            .tensors()
            .iter()
            .find(|t| t.name == "token_embd.weight")
            .and_then(|t| t.shape.get(1).copied())
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| EngineError::MissingTensor {
                path: path.to_path_buf(),
                tensor: "token_embd.weight".into(),
                arch: arch_name.clone(),
            })?;
        Ok(Self {
            arch,
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_ff: count(gguf, &format!("{a}.feed_forward_length"), None)?,
            n_head,
            n_head_k,
            n_head_v,
            n_aug_q,
            head_dim_k,
            head_dim_v,
            n_rot,
            rms_eps,
            rope: RopeParams {
                n_ctx_orig: i32::try_from(n_ctx_train).unwrap_or(i32::MAX),
                freq_base,
                freq_scale,
                ext_factor: 0.0,
                attn_factor: 1.0,
                beta_fast: 32.0,
                beta_slow: 1.0,
            },
        })
    }

    /// The KV cache layout of every layer: K and V each with its own head
    /// count, head size and element type.
    pub fn kv_layouts(&self, types: CacheTypes) -> Vec<(KvLayout, KvLayout)> {
        let k = KvLayout {
            n_head: self.n_head_k,
            head_dim: self.head_dim_k,
            ty: types.k,
        };
        let v = KvLayout {
            n_head: self.n_head_v,
            head_dim: self.head_dim_v,
            ty: types.v,
        };
        vec![(k, v); self.n_layer]
    }
}

/// Options for [`Model::load`].
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// CPU threads for graph computation.
    pub n_threads: usize,
    /// Store the matrix weights the CPU backend can repack in its repacked
    /// layout, as llama.cpp does (faster products). Its kernels compute a
    /// token differently by how many share its batch (groups of four, then
    /// one at a time), so a batch-invariant session needs them off
    /// ([`Session::set_batch_invariant`](super::session::Session::set_batch_invariant)).
    pub repacked_weights: bool,
}

impl LoadOptions {
    /// `n_threads` CPU threads, repacked weights.
    pub fn threads(n_threads: usize) -> LoadOptions {
        LoadOptions {
            n_threads,
            repacked_weights: true,
        }
    }
}

/// The per-call inputs of a forward pass, already placed in the graph.
pub struct ForwardInputs<'g> {
    /// Token ids, i32 `[n_tokens]`.
    pub tokens: Tensor<'g>,
    /// Positions, i32 `[n_tokens]`.
    pub positions: Tensor<'g>,
    /// KV cache rows to write, i64 `[n_tokens]`.
    pub kv_rows: Tensor<'g>,
    /// The tokens whose logits are wanted, i32 `[n_out]` (indices into
    /// `tokens`, ascending): only they go through the last block's
    /// feed-forward and the output head.
    pub out_rows: Tensor<'g>,
    /// Causal mask, f16 `[n_kv, n_tokens]`: 0 where a token may attend, -inf elsewhere.
    pub mask: Tensor<'g>,
    /// Cache positions visible to attention (padded; the mask hides the
    /// rows past the filled ones).
    pub n_kv: usize,
    /// Cache positions filled once this batch is written (unpadded).
    pub n_filled: usize,
    /// The fused decode-step attention (f16 caches, one token), if chosen.
    pub fused_decode: Option<FusedDecode>,
    /// Attention from stock ops (any backend), if chosen; otherwise flash
    /// attention for every token the fused op does not take.
    pub stock_attention: Option<StockAttention>,
}

/// Settings of the fused decode-step attention ([`crate::engine::attention`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FusedDecode {
    /// Selective V fetching.
    pub select_v: Option<SelectV>,
}

/// Settings of attention built from stock ggml ops
/// ([`crate::engine::stock_attention`]): the path on a GPU, where neither
/// the fused CPU op nor flash attention (with unequal K and V heads) fits.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StockAttention {
    /// Selective V fetching on decode steps.
    pub select_v: Option<SelectV>,
}

/// The graph builder of each architecture.
enum Blocks {
    Llama(llama::LlamaWeights),
}

/// A loaded model: backends, weights, hyper-parameters and graph builder.
pub struct Model {
    backend: Backend,
    /// The GPU's backend and the first block on it (the blocks from there
    /// on, their KV cache, and the output head when all blocks are there).
    gpu: Option<(Backend, usize)>,
    placement: Placement,
    weights: Weights,
    hparams: HParams,
    blocks: Blocks,
}

impl Model {
    /// Loads the model in `gguf` onto the CPU backend.
    pub fn load(gguf: &GgufFile, opts: &LoadOptions) -> Result<Self, EngineError> {
        Self::load_on(gguf, opts, Placement::Cpu)
    }

    /// Loads the model in `gguf` as `placement` says: blocks offloaded to a
    /// GPU keep their weights and KV cache there, the token embeddings stay
    /// on the CPU (read by row), and the output head goes to the GPU with
    /// the last block (a copy of the embeddings when they are tied).
    pub fn load_on(
        gguf: &GgufFile,
        opts: &LoadOptions,
        placement: Placement,
    ) -> Result<Self, EngineError> {
        let hparams = HParams::from_gguf(gguf)?;
        let backend = Backend::cpu(opts.n_threads)?;
        let gpu = match placement {
            Placement::Cpu => None,
            Placement::Gpu { gpu, layers } => {
                let device =
                    Device::gpus()
                        .get(gpu)
                        .copied()
                        .ok_or_else(|| EngineError::NoGpu {
                            index: gpu,
                            why: super::device::no_gpu_reason(),
                        })?;
                let first = layers.first_gpu_layer(hparams.n_layer);
                Some((Backend::gpu(device)?, first))
            }
        };
        let weights = match &gpu {
            None => Weights::load(
                gguf,
                &backend,
                None,
                &llama::is_matmul_weight,
                opts.repacked_weights,
            )?,
            Some((gpu_backend, first)) => {
                let first = *first;
                let holds = move |name: &str| llama::offloaded(name, first);
                let tied = !gguf.tensors().iter().any(|t| t.name == "output.weight");
                let copies = if first == 0 && tied {
                    vec![("token_embd.weight".into(), "output.weight".into())]
                } else {
                    Vec::new()
                };
                let g = GpuWeights {
                    backend: gpu_backend,
                    holds: &holds,
                    copies,
                };
                Weights::load(
                    gguf,
                    &backend,
                    Some(&g),
                    &llama::is_matmul_weight,
                    opts.repacked_weights,
                )?
            }
        };
        let blocks = match hparams.arch {
            Architecture::Llama | Architecture::Qwen2 | Architecture::Sigma => {
                Blocks::Llama(llama::LlamaWeights::bind(&weights, &hparams)?)
            }
        };
        Ok(Self {
            backend,
            gpu,
            placement,
            weights,
            hparams,
            blocks,
        })
    }

    /// Where the model runs.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// The GPU's backend and the first block on it, if any block is there.
    pub fn gpu(&self) -> Option<(&Backend, usize)> {
        self.gpu
            .as_ref()
            .filter(|(_, first)| *first < self.hparams.n_layer)
            .map(|(b, first)| (b, *first))
    }

    /// The backends graphs run on, the GPU's first.
    pub fn backends(&self) -> Vec<&Backend> {
        match &self.gpu {
            Some((gpu, _)) => vec![gpu, &self.backend],
            None => vec![&self.backend],
        }
    }

    /// The hyper-parameters.
    pub fn hparams(&self) -> &HParams {
        &self.hparams
    }

    /// The CPU backend (every model has one: embeddings, blocks not
    /// offloaded).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The loaded weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        self.weights.path()
    }

    /// Upper bound of graph nodes for one forward pass.
    pub fn max_graph_nodes(&self) -> usize {
        64 + 40 * self.hparams.n_layer
    }

    /// Adds one forward pass to `g`: writes K/V of the new tokens into `kv`
    /// and returns the logits of the `inp.out_rows` tokens, f32
    /// `[n_vocab, n_out]`.
    pub fn forward<'g>(
        &'g self,
        g: &Graph<'g>,
        kv: &'g KvCache,
        inp: &ForwardInputs<'g>,
    ) -> Tensor<'g> {
        match &self.blocks {
            Blocks::Llama(w) => llama::forward(g, &self.weights, w, &self.hparams, kv, inp),
        }
    }
}
