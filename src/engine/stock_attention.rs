//! Attention from stock ggml ops, correct for unequal K and V head counts:
//! the path that runs on any backend (CUDA included), with selective V.
//!
//! # Why not flash attention on CUDA
//!
//! ggml's CUDA flash-attention kernel indexes V heads by the K ratio
//! (query head `i` reads V head `i / (n_head / n_head_k)`), which is wrong
//! for DiffQKV, where K and V are grouped apart. These ops are ggml's own
//! kernels on every backend, and each grouping comes from `mul_mat`'s
//! broadcast: the product of an operand with `n` heads by one with `n_head`
//! heads maps query head `i` to operand head `i / (n_head / n)`, the paper's
//! `floor(i * n / n_head)`. Neither K nor V is expanded to the query head
//! count.
//!
//! # The ops
//!
//! 1. scores `(n_kv, n_tokens, n_head)` = K `(hd_k, n_kv, n_head_k)` x Q,
//!    accumulated in f32;
//! 2. `soft_max_ext` with the causal mask and the 1/sqrt(hd_k) scale;
//! 3. out `(hd_v, n_tokens, n_head)` = V transposed `(n_kv, hd_v, n_head_v)`
//!    x probabilities. The transpose is a copy of the visible V rows per
//!    step (llama.cpp's non-flash path avoids it with a transposed V cache;
//!    the cache here stays row-major, which the fused CPU kernel and prefix
//!    saving read).
//!
//! Selective V (one token): the softmax still covers every position; then
//! `top_k` picks each query head's largest weights, `get_rows` gathers
//! those weights and, per V head for the indices of its query heads, those
//! V rows, and a batched `mul_mat` combines them (optionally divided by
//! the kept weights' sum).

use super::attention::SelectV;
use super::ffi::ggml::{Graph, Tensor};

/// Attention of `q` `(hd_k, n_head, n_tokens)` over the visible cache rows
/// `k` `(hd_k, n_kv, n_head_k)` and `v` `(hd_v, n_kv, n_head_v)` (views as
/// [`crate::engine::kv_cache::KvCache::view`] gives them) under `mask`
/// `(n_kv, n_tokens)`, with score scale `scale`. Returns
/// `(hd_v, n_head, n_tokens)`, as flash attention does.
///
/// `select_v` applies to one token only; the caller decides whether it
/// pays off ([`SelectV::applies`]).
///
/// # Panics
/// If a head count does not divide `n_head`, or `select_v` is given for
/// more than one token.
pub fn attend<'g>(
    g: &Graph<'g>,
    q: Tensor<'g>,
    k: Tensor<'g>,
    v: Tensor<'g>,
    mask: Tensor<'g>,
    scale: f32,
    select_v: Option<SelectV>,
) -> Tensor<'g> {
    let [_, n_head, n_tokens, _] = q.ne();
    let [_, n_kv, n_head_k, _] = k.ne();
    let [hd_v, _, n_head_v, _] = v.ne();
    assert!(
        n_head % n_head_k == 0 && n_head % n_head_v == 0,
        "K ({n_head_k}) and V ({n_head_v}) head counts must divide the query heads ({n_head})"
    );

    // scores and probabilities: (n_kv, n_tokens, n_head)
    let q = g.permute(q, [0, 2, 1, 3]);
    let kq = g.named(g.mul_mat_f32_acc(k, q), "kq");
    let p = g.named(g.soft_max_ext(kq, mask, scale), "kq_soft_max");

    let out = match select_v {
        None => {
            // (hd_v, n_tokens, n_head), then heads before tokens
            let vt = g.cont(g.transpose(v));
            let out = g.mul_mat(vt, p);
            g.cont(g.permute(out, [0, 2, 1, 3]))
        }
        Some(sv) => {
            assert_eq!(
                n_tokens, 1,
                "selective V is a decode-step (one token) option"
            );
            let top = (sv.top_k as i64).clamp(1, n_kv);
            let group = n_head / n_head_v;
            let p = g.reshape(p, &[n_kv, n_head]);
            // each query head's kept positions: (top, n_head)
            let idx = g.named(g.top_k(p, top as usize), "select_v_idx");
            // their weights: (1, top, n_head)
            let w = g.get_rows(g.reshape(p, &[1, n_kv, n_head]), idx);
            // their V rows; query heads vh*group.. read V head vh, so the
            // indices of a V head's group are one row of (top*group, n_head_v)
            let rows = g.get_rows(v, g.reshape(idx, &[top * group, n_head_v]));
            let rows = g.reshape(rows, &[hd_v, top, n_head]);
            // (hd_v, 1, n_head) = rows^T (top, hd_v, n_head) x w (top, 1, n_head)
            let w = g.reshape(w, &[top, 1, n_head]);
            let out = g.mul_mat(g.cont(g.transpose(rows)), w);
            let out = if sv.renormalize {
                g.div(out, g.sum_rows(w))
            } else {
                out
            };
            g.reshape(out, &[hd_v, n_head, 1])
        }
    };
    g.named(out, "kqv_out")
}
