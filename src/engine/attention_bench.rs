//! The paper's attention-layer experiment on this machine: one decode step of
//! one attention layer (writing the new K and V rows into the cache, AugQ
//! for Sigma, attention over the cached prefix), Sigma shapes against their
//! GQA twin, with a synthetic KV cache (`sigma bench diffqkv`).
//!
//! Both shapes run the same kernel, so the difference is the cache traffic
//! DiffQKV saves minus the AugQ MLP it adds: on the CPU the fused kernel
//! ([`super::attention`]), which reads each K and V head once per step; on
//! a GPU (or when asked) stock ggml ops ([`super::stock_attention`]).

use std::time::Instant;

use super::attention::{DecodeAttention, SelectV};
use super::error::EngineError;
use super::ffi::ggml::{
    Backend, Device, GgmlType, Graph, GraphAllocator, GraphScratch, TensorArena, TensorId,
};
use super::stock_attention;

/// Shapes of one attention layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerShape {
    /// Query heads.
    pub n_head: usize,
    /// Key heads.
    pub n_head_k: usize,
    /// Value heads.
    pub n_head_v: usize,
    /// Head size (Q, K and V).
    pub head_dim: usize,
    /// Augmented-Q width (0 = none).
    pub n_aug_q: usize,
}

impl LayerShape {
    /// Sigma-1.5B (paper Table 14): 32 Q, 4 K, 16 V heads of 64, AugQ 3072.
    pub const SIGMA_1_5B: Self = Self {
        n_head: 32,
        n_head_k: 4,
        n_head_v: 16,
        head_dim: 64,
        n_aug_q: 3072,
    };
    /// Its GQA twin: 32 Q, 16 K and V heads, no AugQ.
    pub const GQA_TWIN: Self = Self {
        n_head: 32,
        n_head_k: 16,
        n_head_v: 16,
        head_dim: 64,
        n_aug_q: 0,
    };

    /// f16 cache bytes per position (K + V).
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * (self.n_head_k + self.n_head_v) * self.head_dim
    }
}

/// The AugQ matrices, stored as in a q4_0 model.
const AUG_Q_TYPE: GgmlType = GgmlType::Q4_0;

/// One layer's cache and weights, ready to time decode steps.
pub struct LayerBench {
    shape: LayerShape,
    backend: Backend,
    arena: TensorArena,
    k: TensorId,
    v: TensorId,
    aug: Option<[TensorId; 3]>,
    alloc: GraphAllocator,
    scratch: GraphScratch,
    n_ctx: usize,
    /// Attend with stock ops instead of the fused CPU kernel.
    stock: bool,
}

/// Deterministic pseudo-random values in [-1, 1).
fn noise(n: usize, seed: u64) -> impl Iterator<Item = f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

impl LayerBench {
    /// A layer of `shape` whose cache holds `n_ctx` positions of random
    /// values (and random AugQ weights), on `threads` CPU threads, or on
    /// `gpu`. A GPU always attends with stock ops; the CPU does with
    /// `stock`, else with the fused kernel.
    pub fn new(
        shape: LayerShape,
        n_ctx: usize,
        threads: usize,
        gpu: Option<Device>,
        stock: bool,
    ) -> Result<Self, EngineError> {
        let backend = match gpu {
            Some(device) => Backend::gpu(device)?,
            None => Backend::cpu(threads)?,
        };
        let stock = stock || gpu.is_some();
        let d = shape.head_dim;
        let n_q = (shape.n_head * d) as i64;
        let mut arena = TensorArena::new(5);
        let k = arena.add(
            GgmlType::F16,
            &[(shape.n_head_k * d) as i64, n_ctx as i64],
            "k",
        )?;
        let v = arena.add(
            GgmlType::F16,
            &[(shape.n_head_v * d) as i64, n_ctx as i64],
            "v",
        )?;
        let aug = if shape.n_aug_q > 0 {
            let w = shape.n_aug_q as i64;
            Some([
                arena.add(AUG_Q_TYPE, &[n_q, w], "aug_gate")?,
                arena.add(AUG_Q_TYPE, &[n_q, w], "aug_up")?,
                arena.add(AUG_Q_TYPE, &[w, n_q], "aug_down")?,
            ])
        } else {
            None
        };
        arena.allocate(backend.buffer_type(), "attention bench", false)?;
        for (i, id) in [k, v].into_iter().enumerate() {
            let t = arena.get(id);
            let bits: Vec<u8> = noise(t.nbytes() / 2, i as u64 + 1)
                .flat_map(|x| half::f16::from_f32(x).to_le_bytes())
                .collect();
            t.write_bytes(&bits)?;
        }
        for (i, id) in aug.into_iter().flatten().enumerate() {
            let t = arena.get(id);
            let [cols, rows, ..] = t.ne();
            let values: Vec<f32> = noise((cols * rows) as usize, 10 + i as u64)
                .map(|x| x * 0.05)
                .collect();
            t.write_bytes(&AUG_Q_TYPE.quantize(&values, cols as usize)?)?;
        }
        Ok(Self {
            shape,
            alloc: GraphAllocator::new(&backend)?,
            scratch: GraphScratch::new(64),
            backend,
            arena,
            k,
            v,
            aug,
            n_ctx,
            stock,
        })
    }

    /// Milliseconds of one decode step at `n_kv` cached positions (the new
    /// token's K and V are written at row `n_kv - 1`). The caller repeats,
    /// interleaves and summarises: a first step warms the caches.
    pub fn step_ms(&mut self, n_kv: usize, select_v: Option<SelectV>) -> Result<f64, EngineError> {
        let s = self.shape;
        let d = s.head_dim;
        let n_kv = n_kv.clamp(1, self.n_ctx);
        let q_in: Vec<f32> = noise(s.n_head * d, 3).collect();
        let k_new: Vec<f32> = noise(s.n_head_k * d, 4).collect();
        let v_new: Vec<f32> = noise(s.n_head_v * d, 5).collect();
        let g = Graph::new(&mut self.scratch);
        let q = g.input(GgmlType::F32, &[(s.n_head * d) as i64, 1], "q");
        let kn = g.input(GgmlType::F32, &[(s.n_head_k * d) as i64, 1], "k_new");
        let vn = g.input(GgmlType::F32, &[(s.n_head_v * d) as i64, 1], "v_new");
        let row = g.input(GgmlType::I64, &[1], "row");
        let k_all = g.set_rows(self.arena.get(self.k), kn, row);
        let v_all = g.set_rows(self.arena.get(self.v), vn, row);
        let q_used = match self.aug {
            Some([gate, up, down]) => {
                let [gate, up, down] = [gate, up, down].map(|id| self.arena.get(id));
                let hidden = g.swiglu(g.mul_mat(gate, q), g.mul_mat(up, q));
                g.mul_mat(down, hidden)
            }
            None => q,
        };
        let scale = 1.0 / (d as f32).sqrt();
        let mask = g.input(GgmlType::F16, &[n_kv as i64, 1], "mask");
        let out = if self.stock {
            // the cache rows as (d, n_kv, heads), as KvCache::view gives them
            let view = |t, heads: usize| {
                let head_bytes = d * 2;
                let v = g.view_3d(
                    t,
                    [d as i64, heads as i64, n_kv as i64],
                    head_bytes,
                    head_bytes * heads,
                    0,
                );
                g.permute(v, [0, 2, 1, 3])
            };
            let q3 = g.reshape(q_used, &[d as i64, s.n_head as i64, 1]);
            let select_v = select_v.filter(|sv| sv.applies(n_kv));
            let (k, v) = (view(k_all, s.n_head_k), view(v_all, s.n_head_v));
            stock_attention::attend(&g, q3, k, v, mask, scale, select_v)
        } else {
            let op = DecodeAttention {
                n_head: s.n_head,
                n_head_k: s.n_head_k,
                n_head_v: s.n_head_v,
                head_dim_k: d,
                head_dim_v: d,
                n_kv,
                n_kv_graph: n_kv,
                scale,
                select_v,
            };
            g.custom(
                [(s.n_head * d) as i64, 1, 1, 1],
                &[q_used, k_all, v_all],
                Box::new(op),
            )
        };
        g.output(out);
        self.alloc.allocate(&g)?;
        if self.stock {
            // every cached position is visible to the new token
            mask.write_f32_as_f16(&vec![0.0; n_kv], &mut Vec::new())?;
        }
        q.write_f32(&q_in)?;
        kn.write_f32(&k_new)?;
        vn.write_f32(&v_new)?;
        row.write_i64(&[n_kv as i64 - 1])?;
        let t0 = Instant::now();
        self.backend.compute(&g)?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    }
}
