//! Llama, Qwen2 and Sigma: one graph builder for the three.
//!
//! Qwen2 is llama with biases on the Q, K and V projections and NeoX RoPE
//! (see [`super::Architecture::rope_mode`]). Sigma is llama with DiffQKV
//! attention (K and V each with their own head count) and an optional
//! augmented-Q MLP, `q = W_down(silu(W_gate q) * (W_up q))`. The graph follows
//! llama.cpp's `llm_build_llama` op for op (RMSNorm, Q/K/V, RoPE, flash
//! attention on the KV cache, output projection, residual, RMSNorm, SwiGLU
//! FFN, residual), so greedy output matches llama.cpp token for token.
//!
//! Attention never expands K or V to the query head count: ggml's flash
//! attention maps query head `i` to K head `i / (n_head / n_head_k)` and V
//! head `i / (n_head / n_head_v)` as it reads them, which is the paper's
//! `floor(i * n_k / n_q)` and `floor(i * n_v / n_q)`. On a GPU (or when
//! asked) attention is built from stock ops instead
//! ([`crate::engine::stock_attention`]): ggml's CUDA flash-attention kernel
//! maps V heads by the K ratio.

use super::{Architecture, ForwardInputs, HParams};
use crate::engine::attention::DecodeAttention;
use crate::engine::error::EngineError;
use crate::engine::ffi::ggml::{Graph, Tensor};
use crate::engine::kv_cache::KvCache;
use crate::engine::stock_attention;
use crate::engine::weights::{WeightRef, Weights};

/// Whether `name` is a weight the graph multiplies as a matrix (these may be
/// stored in a repacked layout).
pub fn is_matmul_weight(name: &str) -> bool {
    const SUFFIXES: [&str; 10] = [
        ".attn_q.weight",
        ".attn_q_gate.weight",
        ".attn_q_up.weight",
        ".attn_q_down.weight",
        ".attn_k.weight",
        ".attn_v.weight",
        ".attn_output.weight",
        ".ffn_gate.weight",
        ".ffn_up.weight",
        ".ffn_down.weight",
    ];
    name == "output.weight"
        || (name.starts_with("blk.") && SUFFIXES.iter().any(|s| name.ends_with(s)))
}

/// Whether the weight `name` goes to the GPU when the blocks from `first`
/// on are offloaded: those blocks' tensors, and the output head (norm and
/// matrix) when every block is. The token embeddings stay on the CPU.
pub fn offloaded(name: &str, first: usize) -> bool {
    if name == "output.weight" || name == "output_norm.weight" {
        return first == 0;
    }
    name.strip_prefix("blk.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|il| il.parse::<usize>().ok())
        .is_some_and(|il| il >= first)
}

/// Weights of one transformer block (shapes in ggml order: ne0 first).
pub struct LayerWeights {
    /// `(n_embd)`
    attn_norm: WeightRef,
    /// `(n_embd, n_head * head_dim_k)`
    wq: WeightRef,
    /// Augmented Q (Sigma with `query_aug_length > 0`).
    aug_q: Option<AugQWeights>,
    /// `(n_embd, n_head_k * head_dim_k)`
    wk: WeightRef,
    /// `(n_embd, n_head_v * head_dim_v)`
    wv: WeightRef,
    /// `(n_head * head_dim_k)`, Qwen2 only
    bq: Option<WeightRef>,
    /// `(n_head_k * head_dim_k)`, Qwen2 only
    bk: Option<WeightRef>,
    /// `(n_head_v * head_dim_v)`, Qwen2 only
    bv: Option<WeightRef>,
    /// `(n_head * head_dim_v, n_embd)`
    wo: WeightRef,
    /// `(n_embd)`
    ffn_norm: WeightRef,
    /// `(n_embd, n_ff)`
    ffn_gate: WeightRef,
    /// `(n_embd, n_ff)`
    ffn_up: WeightRef,
    /// `(n_ff, n_embd)`
    ffn_down: WeightRef,
}

/// The augmented-Q MLP of one block.
pub struct AugQWeights {
    /// `(n_head * head_dim_k, n_aug_q)`
    gate: WeightRef,
    /// `(n_head * head_dim_k, n_aug_q)`
    up: WeightRef,
    /// `(n_aug_q, n_head * head_dim_k)`
    down: WeightRef,
}

/// All weights of a llama/qwen2/sigma model, named as in the GGUF file.
pub struct LlamaWeights {
    /// `(n_embd, n_vocab)`, read by row
    tok_embd: WeightRef,
    /// `(n_embd)`
    output_norm: WeightRef,
    /// `(n_embd, n_vocab)`; `token_embd.weight` when the embeddings are tied
    output: WeightRef,
    /// One per block.
    layers: Vec<LayerWeights>,
}

impl LlamaWeights {
    /// Finds every tensor the graph needs and checks its shape.
    pub fn bind(w: &Weights, hp: &HParams) -> Result<Self, EngineError> {
        let arch = hp.arch.gguf_name();
        let [n_embd, n_vocab, n_ff] = [hp.n_embd, hp.n_vocab, hp.n_ff].map(|n| n as i64);
        let n_q = (hp.n_head * hp.head_dim_k) as i64;
        let n_k = (hp.n_head_k * hp.head_dim_k) as i64;
        let n_v = (hp.n_head_v * hp.head_dim_v) as i64;
        let n_o = (hp.n_head * hp.head_dim_v) as i64;
        let tok_embd = w.require("token_embd.weight", &[n_embd, n_vocab], arch)?;
        let output = match w.optional("output.weight", &[n_embd, n_vocab], arch)? {
            Some(o) => o,
            None => tok_embd,
        };
        let bias = |name: &str, n: i64| -> Result<Option<WeightRef>, EngineError> {
            match hp.arch {
                Architecture::Qwen2 => w.require(name, &[n], arch).map(Some),
                Architecture::Llama | Architecture::Sigma => w.optional(name, &[n], arch),
            }
        };
        let n_aug = hp.n_aug_q as i64;
        let layers = (0..hp.n_layer)
            .map(|i| {
                let t = |s: &str| format!("blk.{i}.{s}");
                let aug_q = if n_aug > 0 {
                    Some(AugQWeights {
                        gate: w.require(&t("attn_q_gate.weight"), &[n_q, n_aug], arch)?,
                        up: w.require(&t("attn_q_up.weight"), &[n_q, n_aug], arch)?,
                        down: w.require(&t("attn_q_down.weight"), &[n_aug, n_q], arch)?,
                    })
                } else {
                    None
                };
                Ok(LayerWeights {
                    attn_norm: w.require(&t("attn_norm.weight"), &[n_embd], arch)?,
                    wq: w.require(&t("attn_q.weight"), &[n_embd, n_q], arch)?,
                    aug_q,
                    wk: w.require(&t("attn_k.weight"), &[n_embd, n_k], arch)?,
                    wv: w.require(&t("attn_v.weight"), &[n_embd, n_v], arch)?,
                    bq: bias(&t("attn_q.bias"), n_q)?,
                    bk: bias(&t("attn_k.bias"), n_k)?,
                    bv: bias(&t("attn_v.bias"), n_v)?,
                    wo: w.require(&t("attn_output.weight"), &[n_o, n_embd], arch)?,
                    ffn_norm: w.require(&t("ffn_norm.weight"), &[n_embd], arch)?,
                    ffn_gate: w.require(&t("ffn_gate.weight"), &[n_embd, n_ff], arch)?,
                    ffn_up: w.require(&t("ffn_up.weight"), &[n_embd, n_ff], arch)?,
                    ffn_down: w.require(&t("ffn_down.weight"), &[n_ff, n_embd], arch)?,
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        Ok(Self {
            tok_embd,
            output_norm: w.require("output_norm.weight", &[n_embd], arch)?,
            output,
            layers,
        })
    }
}

/// `W x + b` for an optional bias.
fn linear<'g>(g: &Graph<'g>, w: Tensor<'g>, b: Option<Tensor<'g>>, x: Tensor<'g>) -> Tensor<'g> {
    let y = g.mul_mat(w, x);
    match b {
        Some(b) => g.add(y, b),
        None => y,
    }
}

/// Builds one forward pass over `inp.tokens` (see [`super::Model::forward`]).
pub fn forward<'g>(
    g: &Graph<'g>,
    wts: &'g Weights,
    lw: &LlamaWeights,
    hp: &HParams,
    kv: &'g KvCache,
    inp: &ForwardInputs<'g>,
) -> Tensor<'g> {
    let w = |r: WeightRef| wts.get(r);
    let [n_tokens, ..] = inp.tokens.ne();
    let (n_head, n_head_k) = (hp.n_head as i64, hp.n_head_k as i64);
    let (hd_k, hd_v) = (hp.head_dim_k as i64, hp.head_dim_v as i64);
    let n_rot = hp.n_rot as i32;
    let mode = hp.arch.rope_mode();
    let kq_scale = 1.0 / (hd_k as f32).sqrt();
    let eps = hp.rms_eps;

    // token embeddings: (n_embd, n_tokens)
    let mut x = g.named(g.get_rows(w(lw.tok_embd), inp.tokens), "inp_embd");
    for (il, l) in lw.layers.iter().enumerate() {
        let residual = x;

        // attention norm
        let cur = g.mul(g.rms_norm(x, eps), w(l.attn_norm));

        // Q, K, V projections: (head_dim, n_heads, n_tokens)
        let mut q = linear(g, w(l.wq), l.bq.map(w), cur);
        if let Some(a) = &l.aug_q {
            // augmented Q: (n_aug_q, n_tokens) hidden, back to (n_head * hd_k, n_tokens)
            let hidden = g.swiglu(g.mul_mat(w(a.gate), q), g.mul_mat(w(a.up), q));
            q = g.mul_mat(w(a.down), hidden);
        }
        let k = linear(g, w(l.wk), l.bk.map(w), cur);
        let v = linear(g, w(l.wv), l.bv.map(w), cur);
        let q = g.reshape(q, &[hd_k, n_head, n_tokens]);
        let k = g.reshape(k, &[hd_k, n_head_k, n_tokens]);

        // rotary position embedding on Q and K
        let q = g.named(
            g.rope(q, inp.positions, n_rot, mode, &hp.rope),
            &format!("Qcur-{il}"),
        );
        let k = g.named(
            g.rope(k, inp.positions, n_rot, mode, &hp.rope),
            &format!("Kcur-{il}"),
        );

        // store the new K and V rows in the cache, then view the visible part
        let k_all = g.set_rows(
            kv.k(il),
            g.reshape(k, &[hd_k * n_head_k, n_tokens]),
            inp.kv_rows,
        );
        let v_all = g.set_rows(kv.v(il), v, inp.kv_rows);
        let k_seen = kv.view(g, k_all, il, true, inp.n_kv);
        let v_seen = kv.view(g, v_all, il, false, inp.n_kv);

        // attention: softmax(q k^T / sqrt(d) + mask) v -> (head_dim_v, n_head, n_tokens)
        let att = match inp.fused_decode.filter(|_| n_tokens == 1) {
            Some(fused) => {
                let op = DecodeAttention {
                    n_head: hp.n_head,
                    n_head_k: hp.n_head_k,
                    n_head_v: hp.n_head_v,
                    head_dim_k: hp.head_dim_k,
                    head_dim_v: hp.head_dim_v,
                    n_kv: inp.n_filled,
                    n_kv_graph: inp.n_kv,
                    scale: kq_scale,
                    select_v: fused.select_v,
                };
                g.custom([hd_v * n_head, 1, 1, 1], &[q, k_all, v_all], Box::new(op))
            }
            None => match inp.stock_attention {
                // stock ops: correct for unequal K and V heads on any backend
                Some(stock) => {
                    let select_v = stock
                        .select_v
                        .filter(|sv| n_tokens == 1 && sv.applies(inp.n_filled));
                    stock_attention::attend(g, q, k_seen, v_seen, inp.mask, kq_scale, select_v)
                }
                None => {
                    let q = g.permute(q, [0, 2, 1, 3]);
                    g.flash_attn(q, k_seen, v_seen, inp.mask, kq_scale)
                }
            },
        };
        let att = g.reshape(att, &[hd_v * n_head, n_tokens]);
        let mut cur = g.named(g.mul_mat(w(l.wo), att), &format!("attn_out-{il}"));

        // after the last block only the asked tokens matter: (n_embd, n_out)
        let mut residual = residual;
        if il + 1 == lw.layers.len() && n_tokens > 1 {
            cur = g.get_rows(cur, inp.out_rows);
            residual = g.get_rows(residual, inp.out_rows);
        }
        x = g.add(cur, residual);

        // feed-forward: down(silu(gate(h)) * up(h))
        let h = g.mul(g.rms_norm(x, eps), w(l.ffn_norm));
        let gate = g.mul_mat(w(l.ffn_gate), h);
        let up = g.mul_mat(w(l.ffn_up), h);
        let ffn = g.mul_mat(w(l.ffn_down), g.swiglu(gate, up));
        x = g.named(g.add(ffn, x), &format!("l_out-{il}"));
    }

    // final norm and language-model head: (n_vocab, n_out)
    let x = g.mul(g.rms_norm(x, eps), w(lw.output_norm));
    g.named(g.mul_mat(w(lw.output), x), "result_output")
}
