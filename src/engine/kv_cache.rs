//! The KV cache: per layer one K tensor and one V tensor.
//!
//! K and V each have their own [`KvLayout`] (head count, head size, element
//! type), so a layer may store, say, 4 K heads beside 16 V heads (DiffQKV).
//! Nothing here assumes the two are alike.
//!
//! Layers whose blocks run on a GPU keep their K and V in the GPU's memory
//! (`gpu` in [`KvCache::new`]), the others in the CPU's.
//!
//! Each tensor is 2-D: one row of `n_head * head_dim` values per position,
//! `n_ctx` rows. New rows are written inside the graph (`set_rows`); attention
//! reads the first `n_kv` rows through [`KvCache::view`].
//!
//! # Reset
//!
//! [`KvCache::reset`] only sets the fill level back to 0: rows past the fill
//! level are never visible (the causal mask hides them), so old data need not
//! be erased.

use super::error::EngineError;
use super::ffi::ggml::{Backend, GgmlError, GgmlType, Graph, Tensor, TensorArena, TensorId};

/// Shape and type of one cache tensor (K or V) of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    /// Number of heads stored.
    pub n_head: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Element type (f16 by default).
    pub ty: GgmlType,
}

/// Element types of the K and V caches, chosen apart (differential
/// compression: K and V tolerate quantisation differently).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheTypes {
    /// K cache type.
    pub k: GgmlType,
    /// V cache type.
    pub v: GgmlType,
}

impl Default for CacheTypes {
    /// f16 for both, as llama.cpp.
    fn default() -> Self {
        Self {
            k: GgmlType::F16,
            v: GgmlType::F16,
        }
    }
}

impl KvLayout {
    /// Values per position (row width).
    pub fn row_len(&self) -> usize {
        self.n_head * self.head_dim
    }
}

/// Cache tensors of one layer.
struct Layer {
    /// In the GPU arena (else the CPU one).
    on_gpu: bool,
    k: TensorId,
    v: TensorId,
    k_layout: KvLayout,
    v_layout: KvLayout,
}

/// The KV cache of one sequence.
pub struct KvCache {
    arena: TensorArena,
    gpu_arena: TensorArena,
    layers: Vec<Layer>,
    n_ctx: usize,
    used: usize,
}

impl KvCache {
    /// A cache of `n_ctx` positions with the given (K, V) layout per layer,
    /// in `backend`'s memory, or for the layers from `gpu.1` on in the
    /// memory of the GPU backend `gpu.0`; zeroed.
    pub fn new(
        backend: &Backend,
        gpu: Option<(&Backend, usize)>,
        layouts: &[(KvLayout, KvLayout)],
        n_ctx: usize,
    ) -> Result<Self, EngineError> {
        let mut cpu_arena = TensorArena::new(2 * layouts.len());
        let mut gpu_arena = TensorArena::new(2 * layouts.len());
        let mut layers = Vec::with_capacity(layouts.len());
        for (il, &(k_layout, v_layout)) in layouts.iter().enumerate() {
            let on_gpu = gpu.is_some_and(|(_, first)| il >= first);
            let arena = if on_gpu {
                &mut gpu_arena
            } else {
                &mut cpu_arena
            };
            for (what, l) in [("K", k_layout), ("V", v_layout)] {
                if l.ty.row_size(l.head_dim as i64).is_none() {
                    return Err(EngineError::CacheType {
                        ty: l.ty.name(),
                        what,
                        head_dim: l.head_dim,
                    });
                }
            }
            let k = arena.add(
                k_layout.ty,
                &[k_layout.row_len() as i64, n_ctx as i64],
                &format!("cache_k_l{il}"),
            )?;
            let v = arena.add(
                v_layout.ty,
                &[v_layout.row_len() as i64, n_ctx as i64],
                &format!("cache_v_l{il}"),
            )?;
            layers.push(Layer {
                on_gpu,
                k,
                v,
                k_layout,
                v_layout,
            });
        }
        cpu_arena.allocate(backend.buffer_type(), "KV cache", false)?;
        cpu_arena.clear();
        if let Some((gpu, _)) = gpu {
            gpu_arena.allocate(gpu.buffer_type(), "KV cache on the GPU", false)?;
            gpu_arena.clear();
        }
        Ok(Self {
            arena: cpu_arena,
            gpu_arena,
            layers,
            n_ctx,
            used: 0,
        })
    }

    /// Positions the cache holds.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Positions filled so far.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Marks `n` more positions as filled (after their graph ran).
    pub fn advance(&mut self, n: usize) {
        self.used = (self.used + n).min(self.n_ctx);
    }

    /// Forgets every position from `n` on, keeping the first `n` (a cached
    /// prompt prefix). The rows stay in memory and are overwritten later.
    pub fn truncate(&mut self, n: usize) {
        self.used = self.used.min(n);
    }

    /// Forgets every position (see the module doc).
    pub fn reset(&mut self) {
        self.used = 0;
    }

    /// The arena holding layer `il`.
    fn arena_of(&self, il: usize) -> &TensorArena {
        if self.layers[il].on_gpu {
            &self.gpu_arena
        } else {
            &self.arena
        }
    }

    /// K tensor of layer `il`: `(n_head_k * head_dim_k, n_ctx)`.
    pub fn k(&self, il: usize) -> Tensor<'_> {
        self.arena_of(il).get(self.layers[il].k)
    }

    /// V tensor of layer `il`: `(n_head_v * head_dim_v, n_ctx)`.
    pub fn v(&self, il: usize) -> Tensor<'_> {
        self.arena_of(il).get(self.layers[il].v)
    }

    /// K and V layouts of layer `il`.
    pub fn layouts(&self, il: usize) -> (KvLayout, KvLayout) {
        (self.layers[il].k_layout, self.layers[il].v_layout)
    }

    /// The first `n_kv` positions of `cache` (layer `il`'s K tensor, or the
    /// result of writing into it, when `is_k`; else V) as
    /// `(head_dim, n_kv, n_head)`, the layout attention reads.
    pub fn view<'g>(
        &self,
        g: &Graph<'g>,
        cache: Tensor<'g>,
        il: usize,
        is_k: bool,
        n_kv: usize,
    ) -> Tensor<'g> {
        let (kl, vl) = self.layouts(il);
        let l = if is_k { kl } else { vl };
        let head_bytes =
            l.ty.row_size(l.head_dim as i64)
                .expect("cache head size fits its block type");
        let row_bytes = head_bytes * l.n_head;
        let v = g.view_3d(
            cache,
            [l.head_dim as i64, l.n_head as i64, n_kv as i64],
            head_bytes,
            row_bytes,
            0,
        );
        g.permute(v, [0, 2, 1, 3])
    }

    /// Bytes of one position's row in layer `il`'s K and V tensors.
    fn row_bytes(&self, il: usize) -> (usize, usize) {
        let (kl, vl) = self.layouts(il);
        let bytes = |l: KvLayout| {
            l.ty.row_size(l.head_dim as i64)
                .expect("cache head size fits its block type")
                * l.n_head
        };
        (bytes(kl), bytes(vl))
    }

    /// The first `n` positions of every layer's K and V, as bytes
    /// (K of layer 0, V of layer 0, K of layer 1, ...): a prompt prefix to
    /// save. Positions are rows, so a prefix is a leading byte range.
    pub fn export_prefix(&self, n: usize) -> Result<Vec<u8>, GgmlError> {
        let n = n.min(self.used);
        let mut out = Vec::new();
        for il in 0..self.layers.len() {
            let (kb, vb) = self.row_bytes(il);
            out.extend(self.k(il).read_range(0, n * kb)?);
            out.extend(self.v(il).read_range(0, n * vb)?);
        }
        Ok(out)
    }

    /// Bytes [`export_prefix`](Self::export_prefix) gives for `n` positions.
    pub fn prefix_bytes(&self, n: usize) -> usize {
        (0..self.layers.len())
            .map(|il| {
                let (kb, vb) = self.row_bytes(il);
                n * (kb + vb)
            })
            .sum()
    }

    /// Restores `n` positions exported by [`export_prefix`](Self::export_prefix)
    /// and marks them filled; `data` must be exactly that size.
    pub fn import_prefix(&mut self, n: usize, data: &[u8]) -> Result<(), GgmlError> {
        if n > self.n_ctx || data.len() != self.prefix_bytes(n) {
            return Err(GgmlError::SizeMismatch {
                name: "kv prefix".into(),
                expected: self.prefix_bytes(n.min(self.n_ctx)),
                got: data.len(),
            });
        }
        let mut at = 0;
        for il in 0..self.layers.len() {
            let (kb, vb) = self.row_bytes(il);
            self.k(il).write_range(0, &data[at..at + n * kb])?;
            at += n * kb;
            self.v(il).write_range(0, &data[at..at + n * vb])?;
            at += n * vb;
        }
        self.used = n;
        Ok(())
    }

    /// Fills the first `n` positions of every layer with deterministic
    /// pseudo-random values (unit-scale, in each layer's cache type) and
    /// marks them used: a long context for decode benchmarks without a long
    /// prefill.
    pub fn fill_synthetic(&mut self, n: usize, seed: u64) -> Result<(), GgmlError> {
        let n = n.min(self.n_ctx);
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        for il in 0..self.layers.len() {
            let (kl, vl) = self.layouts(il);
            for (layout, tensor) in [(kl, self.k(il)), (vl, self.v(il))] {
                let row = layout.row_len();
                let values: Vec<f32> = (0..n * row).map(|_| next()).collect();
                let bytes = layout.ty.quantize(&values, layout.head_dim)?;
                tensor.write_range(0, &bytes)?;
            }
        }
        self.used = n;
        Ok(())
    }

    /// Bytes of memory the cache holds (CPU and GPU).
    pub fn size_bytes(&self) -> usize {
        self.arena.size_bytes() + self.gpu_arena.size_bytes()
    }
}
