//! One decode step of attention over an f16 KV cache, as a fused CPU op:
//! exactly ggml's flash attention, or with selective V fetching.
//!
//! # Reading each K and V head once
//!
//! The query heads that share a K head are folded into rows: their scores
//! come from one pass over that K head, and the values are regrouped by V
//! head (query head `i` reads K head `i * n_k / n_q` and V head
//! `i * n_v / n_q`, so K and V may group differently). Nothing is expanded
//! to the query head count, converted twice or masked: the op reads only
//! the filled cache rows, straight from the cache.
//!
//! # Exact mode (full V)
//!
//! Without selective V the output is bit for bit what ggml's CPU flash
//! attention (`ggml_compute_forward_flash_attn_ext_f16` in the ggml of
//! `llama-cpp-sys-2` 0.1.161, in the CPU kernel variant that runs:
//! `ffi::cpu`) computes on the same cache with the same thread count, so
//! greedy decoding stays token-identical with llama.cpp:
//!
//! - q is rounded to f16 and each score is `ggml_vec_dot_f16` (four FMA
//!   accumulators of 8 lanes over blocks of 32 in the AVX2 build, of 16
//!   lanes over blocks of 64 in the AVX-512 ones; ggml's reduction for that
//!   width; the rest added in f64) times the scale;
//! - an online softmax over the positions in cache order keeps an f16
//!   accumulator: a new maximum rescales it by `expf(old - new)`
//!   (`ggml_vec_scale_f16`), otherwise the row weighs `expf(s - max)`; the
//!   accumulator takes `f16(fma(v, w, acc))` (`ggml_vec_mad_f16`) and the
//!   sum `fma(sum, rescale, w)` (gcc contracts ggml's `S*ms + vs`);
//! - the output is the accumulator times `1/sum`.
//!
//! From 512 positions in the graph (the padded `n_kv`) ggml cuts them into
//! one chunk per thread and merges the chunks' (max, sum, accumulator) in
//! chunk order, `out = fma(out, e_old, chunk * e_new)`; exact mode cuts and
//! merges the same chunks. The gain over ggml comes from the reads and
//! conversions saved above, never from cheaper arithmetic.
//!
//! # Selective V
//!
//! The paper's training-free option: the softmax still covers every cached
//! key, but only the V rows of each query head's `top_k` largest weights
//! are read and combined, in f32, either with the kept probabilities as
//! they are or renormalised to sum to one.
//!
//! # Work split
//!
//! Thread `i` of `n` takes query heads `i * n_q / n .. (i + 1) * n_q / n`:
//! whole groups when `n` divides the K and V head counts, and an even
//! share otherwise (a group cut between two threads is read by both).

use std::cell::RefCell;
use std::collections::BinaryHeap;
use std::ops::Range;

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::ffi::ggml::{CustomIo, CustomOp, f16_to_f32};

/// Rows of K or V converted to f32 at a time.
const TILE: usize = 64;

/// Graph positions from which ggml splits a one-token flash attention over
/// its threads by position (`use_split_kv_path` in ggml-cpu/ops.cpp).
const GGML_SPLIT_KV_MIN: usize = 512;

/// Selective V fetching settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectV {
    /// V rows kept per query head (the paper used 100).
    pub top_k: usize,
    /// Divide by the kept probabilities' sum instead of the full softmax's.
    pub renormalize: bool,
}

impl SelectV {
    /// Below this many cached positions per kept row the full product is
    /// used: selecting costs a pass over the weights, and reading all of V
    /// is then cheap anyway.
    pub const MIN_POSITIONS_PER_KEPT_ROW: usize = 8;

    /// Whether selection pays off at `n_kv` cached positions.
    pub fn applies(&self, n_kv: usize) -> bool {
        self.top_k > 0 && n_kv >= self.top_k * Self::MIN_POSITIONS_PER_KEPT_ROW
    }
}

/// Shapes and settings of one decode-step attention node.
///
/// Inputs (in order): q, f32 `[head_dim_k * n_head]`; the K cache, f16 rows
/// of `n_head_k * head_dim_k`; the V cache, f16 rows of `n_head_v *
/// head_dim_v`. Output: f32 `[head_dim_v * n_head]`. Only the first `n_kv`
/// cache rows are read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodeAttention {
    /// Query heads.
    pub n_head: usize,
    /// Key heads (divides `n_head`).
    pub n_head_k: usize,
    /// Value heads (divides `n_head`).
    pub n_head_v: usize,
    /// Query/key head size.
    pub head_dim_k: usize,
    /// Value head size.
    pub head_dim_v: usize,
    /// Cached positions to attend to (all visible: this is the newest token).
    pub n_kv: usize,
    /// Positions ggml's flash attention would span in the same graph (the
    /// padded `n_kv`, masked past `n_kv`): from 512 on ggml splits them over
    /// its threads, which changes the rounding exact mode reproduces.
    pub n_kv_graph: usize,
    /// Score scale, 1/sqrt(head_dim_k).
    pub scale: f32,
    /// Selective V, when it applies at `n_kv`.
    pub select_v: Option<SelectV>,
}

thread_local! {
    /// Per-thread scratch, reused from step to step.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Buffers of one thread's share; `rows` are its query heads.
#[derive(Default)]
struct Scratch {
    /// q rounded to f16: `[rows, head_dim_k]`.
    q_half: Vec<f16>,
    /// The same values as f32, for the dot products.
    q: Vec<f32>,
    /// Scores, then (selective V) unnormalised weights: `[rows, n_kv]`.
    scores: Vec<f32>,
    /// K or V rows converted to f32: `[TILE, head_dim]`.
    tile: Vec<f32>,
    /// Online softmax of the current chunk: each row's max score,
    max: Vec<f32>,
    /// its sum of weights,
    sum: Vec<f32>,
    /// and its f16 accumulator (bits), `[rows, head_dim_v]`.
    acc: Vec<u16>,
    /// One row's chunk accumulator as f32 (`head_dim_v`).
    part: Vec<f32>,
    /// Max of the chunks merged so far, per row (split steps),
    merged_max: Vec<f32>,
    /// and their merged sum.
    merged_sum: Vec<f32>,
    /// The output: `[rows, head_dim_v]`.
    out: Vec<f32>,
}

/// The node's inputs: q (f32) and the whole K and V caches (f16 bits).
#[derive(Clone, Copy)]
struct Inputs<'a> {
    /// `[n_head * head_dim_k]`.
    q: &'a [f32],
    /// Rows of `n_head_k * head_dim_k`.
    k: &'a [u16],
    /// Rows of `n_head_v * head_dim_v`.
    v: &'a [u16],
}

impl CustomOp for DecodeAttention {
    fn run(&self, io: &CustomIo<'_>, ith: usize, nth: usize) {
        let heads = ith * self.n_head / nth..(ith + 1) * self.n_head / nth;
        if heads.is_empty() {
            return;
        }
        let x = Inputs {
            q: io.src_f32(0),
            k: io.src_f16(1),
            v: io.src_f16(2),
        };
        SCRATCH.with_borrow_mut(|s| {
            self.heads(heads.clone(), nth, x, s);
            io.write(heads.start * self.head_dim_v, &s.out);
        });
    }
}

impl DecodeAttention {
    /// Attention output of the query heads `heads` into `s.out`
    /// (`head_dim_v` values each, in head order); `nth` threads share the
    /// node, which decides ggml's chunks.
    fn heads(&self, heads: Range<usize>, nth: usize, x: Inputs<'_>, s: &mut Scratch) {
        let order = DotOrder::of_ggml();
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = Avx2::detect(order) {
            // SAFETY: `avx2` exists, so the CPU has AVX2, FMA and F16C.
            return unsafe { self.heads_avx2(avx2, heads, nth, x, s) };
        }
        self.heads_with(Portable(order), heads, nth, x, s)
    }

    /// [`Self::heads_with`] compiled for AVX2, FMA and F16C, so the steps'
    /// intrinsics inline and `mul_add` is one instruction.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn heads_avx2(
        &self,
        avx2: Avx2,
        heads: Range<usize>,
        nth: usize,
        x: Inputs<'_>,
        s: &mut Scratch,
    ) {
        self.heads_with(avx2, heads, nth, x, s)
    }

    /// Scores of `heads`, then their values: exact, or selective.
    #[inline(always)]
    fn heads_with<S: Steps>(
        &self,
        st: S,
        heads: Range<usize>,
        nth: usize,
        x: Inputs<'_>,
        s: &mut Scratch,
    ) {
        let (n_q, n_kv) = (self.n_head, self.n_kv);
        let (dk, dv) = (self.head_dim_k, self.head_dim_v);
        let n_rows = heads.len();
        let k_stride = self.n_head_k * dk;

        // q as ggml's flash attention sees it: rounded to f16
        let q_rows = &x.q[heads.start * dk..heads.end * dk];
        s.q_half.resize(q_rows.len(), f16::ZERO);
        s.q_half.convert_from_f32_slice(q_rows);
        s.q.resize(q_rows.len(), 0.0);
        s.q_half.convert_to_f32_slice(&mut s.q);

        // scores [n_rows, n_kv]: one pass over each K head for all the
        // query heads that share it
        s.scores.clear();
        s.scores.resize(n_rows * n_kv, 0.0);
        s.tile.resize(TILE * dk.max(dv), 0.0);
        for (kh, rows) in group_ranges(heads.clone(), self.n_head_k, n_q) {
            for t0 in (0..n_kv).step_by(TILE) {
                let t1 = (t0 + TILE).min(n_kv);
                load_tile(st, x.k, k_stride, kh, dk, t0..t1, &mut s.tile);
                for h in rows.clone() {
                    let r = h - heads.start;
                    let qh = &s.q[r * dk..(r + 1) * dk];
                    let out = &mut s.scores[r * n_kv + t0..r * n_kv + t1];
                    for (o, krow) in out.iter_mut().zip(s.tile.chunks_exact(dk)) {
                        *o = st.dot(krow, qh) * self.scale;
                    }
                }
            }
        }

        s.out.clear();
        s.out.resize(n_rows * dv, 0.0);
        match self.select_v.filter(|sv| sv.applies(n_kv)) {
            Some(sv) => self.selected_values(st, sv, heads, x.v, s),
            None => self.exact_values(st, heads, nth, x.v, s),
        }
    }

    /// Full-V output of `heads` from the scores in `s`, rounded as ggml's
    /// flash attention rounds it (see the module doc).
    #[inline(always)]
    fn exact_values<S: Steps>(
        &self,
        st: S,
        heads: Range<usize>,
        nth: usize,
        v: &[u16],
        s: &mut Scratch,
    ) {
        let (n_kv, dv) = (self.n_kv, self.head_dim_v);
        let n_rows = heads.len();
        let v_stride = self.n_head_v * dv;
        let v_groups = group_ranges(heads.clone(), self.n_head_v, self.n_head);
        // ggml: one pass, or from 512 graph positions one chunk per thread;
        // chunks past the filled rows are all masked and add nothing
        let graph = self.n_kv_graph.max(n_kv);
        let split = graph >= GGML_SPLIT_KV_MIN;
        let chunk = if split { graph.div_ceil(nth) } else { graph }.max(1);
        s.part.resize(dv, 0.0);
        s.merged_max.clear();
        s.merged_max.resize(n_rows, f32::NEG_INFINITY);
        s.merged_sum.clear();
        s.merged_sum.resize(n_rows, 0.0);
        for c0 in (0..n_kv).step_by(chunk) {
            let c1 = (c0 + chunk).min(n_kv);
            s.max.clear();
            s.max.resize(n_rows, f32::NEG_INFINITY);
            s.sum.clear();
            s.sum.resize(n_rows, 0.0);
            s.acc.clear();
            s.acc.resize(n_rows * dv, 0);

            // online softmax over the chunk, each V row converted once for
            // the query heads that share it
            for (vh, rows) in &v_groups {
                for t0 in (c0..c1).step_by(TILE) {
                    let t1 = (t0 + TILE).min(c1);
                    load_tile(st, v, v_stride, *vh, dv, t0..t1, &mut s.tile);
                    for (t, vrow) in (t0..t1).zip(s.tile.chunks_exact(dv)) {
                        for h in rows.clone() {
                            let r = h - heads.start;
                            let x = s.scores[r * n_kv + t];
                            let acc = &mut s.acc[r * dv..(r + 1) * dv];
                            let (mut ms, mut vs) = (1.0f32, 1.0f32);
                            if x > s.max[r] {
                                ms = (s.max[r] - x).exp();
                                s.max[r] = x;
                                st.scale(acc, ms);
                            } else {
                                vs = (x - s.max[r]).exp();
                            }
                            st.mad(acc, vrow, vs);
                            s.sum[r] = s.sum[r].mul_add(ms, vs);
                        }
                    }
                }
            }

            for r in 0..n_rows {
                let acc = &s.acc[r * dv..(r + 1) * dv];
                let out = &mut s.out[r * dv..(r + 1) * dv];
                if !split {
                    let inv = if s.sum[r] == 0.0 { 0.0 } else { 1.0 / s.sum[r] };
                    st.widen(acc, out);
                    out.iter_mut().for_each(|x| *x *= inv);
                    continue;
                }
                // ggml_flash_attn_ext_reduce_partials, one chunk at a time
                if s.sum[r] == 0.0 {
                    continue;
                }
                st.widen(acc, &mut s.part);
                let (m_old, m) = (s.merged_max[r], s.max[r]);
                let m_new = m_old.max(m);
                let (e_old, e_new) = ((m_old - m_new).exp(), (m - m_new).exp());
                for (o, &p) in out.iter_mut().zip(&s.part) {
                    *o = o.mul_add(e_old, p * e_new);
                }
                s.merged_sum[r] = s.merged_sum[r].mul_add(e_old, s.sum[r] * e_new);
                s.merged_max[r] = m_new;
            }
        }
        if split {
            for (out, &sum) in s.out.chunks_exact_mut(dv).zip(&s.merged_sum) {
                if sum != 0.0 {
                    let inv = 1.0 / sum;
                    out.iter_mut().for_each(|x| *x *= inv);
                }
            }
        }
    }

    /// Selective-V output of `heads` from the scores in `s`: f32 softmax,
    /// then the V rows of each row's `top_k` largest weights.
    #[inline(always)]
    fn selected_values<S: Steps>(
        &self,
        st: S,
        sv: SelectV,
        heads: Range<usize>,
        v: &[u16],
        s: &mut Scratch,
    ) {
        let (n_kv, dv) = (self.n_kv, self.head_dim_v);
        let v_stride = self.n_head_v * dv;
        for (r, h) in heads.enumerate() {
            // softmax, unnormalised: exp(s - max); the sum divides later
            let row = &mut s.scores[r * n_kv..(r + 1) * n_kv];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for x in row.iter_mut() {
                *x = exp_approx(*x - max);
                sum += *x;
            }
            let kept = top_k(row, sv.top_k);
            let denom = if sv.renormalize {
                kept.iter().map(|&t| row[t]).sum()
            } else {
                sum
            };
            let vh = h * self.n_head_v / self.n_head;
            let acc = &mut s.out[r * dv..(r + 1) * dv];
            let vrow = &mut s.tile[..dv];
            for t in kept {
                let at = t * v_stride + vh * dv;
                st.widen(&v[at..at + dv], vrow);
                axpy(acc, row[t], vrow);
            }
            acc.iter_mut().for_each(|x| *x /= denom);
        }
    }
}

/// How wide ggml's vectors are in the CPU kernels that run, which decides
/// the order in which `ggml_vec_dot_f16` sums: four FMA accumulators of
/// `lanes` lanes over blocks of `4 * lanes`, added `(a0 + a2) + (a1 + a3)`,
/// then the lanes reduced as that build reduces them.
#[derive(Clone, Copy, Debug, PartialEq)]
enum DotOrder {
    /// AVX2: 8 lanes; halves added, then two horizontal adds.
    Lanes8,
    /// AVX-512: 16 lanes; halves added twice, then gcc's
    /// `_mm512_reduce_add_ps`: `(t0 + t2) + (t1 + t3)`.
    Lanes16,
}

impl DotOrder {
    /// The order of the ggml CPU kernels this process runs (`ffi::cpu`).
    fn of_ggml() -> Self {
        match super::ffi::cpu::chosen().map(|c| c.variant.vector_lanes) {
            Ok(16) => Self::Lanes16,
            _ => Self::Lanes8,
        }
    }

    /// f32 lanes per accumulator.
    fn lanes(self) -> usize {
        match self {
            Self::Lanes8 => 8,
            Self::Lanes16 => 16,
        }
    }
}

/// The vector steps of ggml's f16 flash attention, each rounding exactly as
/// ggml's build for AVX2/FMA/F16C or AVX-512 does.
trait Steps: Copy {
    /// f16 bits to f32 (exact).
    fn widen(self, src: &[u16], dst: &mut [f32]);
    /// `ggml_vec_dot_f16` of f16 values held as f32.
    fn dot(self, k: &[f32], q: &[f32]) -> f32;
    /// `acc = f16(acc * m)`, as `ggml_vec_scale_f16`.
    fn scale(self, acc: &mut [u16], m: f32);
    /// `acc = f16(fma(v, w, acc))`, as `ggml_vec_mad_f16`.
    fn mad(self, acc: &mut [u16], v: &[f32], w: f32);
}

/// The steps in plain Rust, for CPUs without AVX2/FMA/F16C.
#[derive(Clone, Copy)]
struct Portable(DotOrder);

impl Steps for Portable {
    fn widen(self, src: &[u16], dst: &mut [f32]) {
        f16_to_f32(src, dst);
    }

    fn dot(self, k: &[f32], q: &[f32]) -> f32 {
        let w = self.0.lanes();
        let body = k.len() - k.len() % (4 * w);
        let mut acc = [[0.0f32; 16]; 4];
        for (kb, qb) in k[..body].chunks_exact(4 * w).zip(q.chunks_exact(4 * w)) {
            for (j, a) in acc.iter_mut().enumerate() {
                for (l, x) in a[..w].iter_mut().enumerate() {
                    *x = kb[w * j + l].mul_add(qb[w * j + l], *x);
                }
            }
        }
        let v: [f32; 16] =
            std::array::from_fn(|l| (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]));
        let r = match self.0 {
            // GGML_F32x8_REDUCE: the two 4-lane halves added, then two
            // horizontal adds
            DotOrder::Lanes8 => {
                let h: [f32; 4] = std::array::from_fn(|l| v[l] + v[l + 4]);
                (h[0] + h[1]) + (h[2] + h[3])
            }
            // _mm512_reduce_add_ps: 8-lane halves, 4-lane halves, then
            // lanes two apart, then the last two
            DotOrder::Lanes16 => {
                let t3: [f32; 8] = std::array::from_fn(|l| v[l + 8] + v[l]);
                let t6: [f32; 4] = std::array::from_fn(|l| t3[l + 4] + t3[l]);
                (t6[0] + t6[2]) + (t6[1] + t6[3])
            }
        };
        dot_tail(r, k, q, body)
    }

    fn scale(self, acc: &mut [u16], m: f32) {
        scale_scalar(acc, m);
    }

    fn mad(self, acc: &mut [u16], v: &[f32], w: f32) {
        mad_scalar(acc, v, w);
    }
}

/// The steps with AVX2, FMA and F16C intrinsics (an AVX-512 build's 16-lane
/// sums kept as pairs of 8-lane registers: each lane's FMAs round alike); a
/// value proves the CPU has them.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Avx2(DotOrder);

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// The steps, if this CPU can run them.
    fn detect(order: DotOrder) -> Option<Self> {
        use std::arch::is_x86_feature_detected as has;
        (has!("avx2") && has!("fma") && has!("f16c")).then_some(Self(order))
    }
}

#[cfg(target_arch = "x86_64")]
impl Steps for Avx2 {
    #[inline(always)]
    fn widen(self, src: &[u16], dst: &mut [f32]) {
        use std::arch::x86_64::*;
        let n = src.len();
        assert_eq!(dst.len(), n);
        let body = n & !7;
        for i in (0..body).step_by(8) {
            // SAFETY: F16C (self exists); i + 8 <= n for both slices.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
        }
        for (d, &x) in dst[body..].iter_mut().zip(&src[body..]) {
            *d = f16::from_bits(x).to_f32();
        }
    }

    #[inline(always)]
    fn dot(self, k: &[f32], q: &[f32]) -> f32 {
        use std::arch::x86_64::*;
        let n = k.len();
        assert_eq!(q.len(), n);
        // Registers per accumulator: 1 (8 lanes) or 2 (16 lanes).
        let regs = self.0.lanes() / 8;
        let body = n - n % (32 * regs);
        // SAFETY: AVX2/FMA (self exists); loads stay below `body` <= n.
        let r = unsafe {
            let (kp, qp) = (k.as_ptr(), q.as_ptr());
            // acc[j][h]: accumulator j, lanes 8h..8h+8
            let mut acc = [[_mm256_setzero_ps(); 2]; 4];
            for i in (0..body).step_by(32 * regs) {
                for (j, a) in acc.iter_mut().enumerate() {
                    for (h, a) in a[..regs].iter_mut().enumerate() {
                        let at = i + 8 * (regs * j + h);
                        let (x, y) = (_mm256_loadu_ps(kp.add(at)), _mm256_loadu_ps(qp.add(at)));
                        *a = _mm256_fmadd_ps(x, y, *a);
                    }
                }
            }
            let v = |h: usize| {
                _mm256_add_ps(
                    _mm256_add_ps(acc[0][h], acc[2][h]),
                    _mm256_add_ps(acc[1][h], acc[3][h]),
                )
            };
            match self.0 {
                DotOrder::Lanes8 => {
                    let v = v(0);
                    let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                    let h = _mm_hadd_ps(h, h);
                    _mm_cvtss_f32(_mm_hadd_ps(h, h))
                }
                DotOrder::Lanes16 => {
                    let t3 = _mm256_add_ps(v(1), v(0));
                    let t6 = _mm_add_ps(_mm256_extractf128_ps::<1>(t3), _mm256_castps256_ps128(t3));
                    let t8 = _mm_add_ps(t6, _mm_movehl_ps(t6, t6));
                    _mm_cvtss_f32(t8) + _mm_cvtss_f32(_mm_shuffle_ps::<1>(t8, t8))
                }
            }
        };
        dot_tail(r, k, q, body)
    }

    #[inline(always)]
    fn scale(self, acc: &mut [u16], m: f32) {
        use std::arch::x86_64::*;
        let body = acc.len() & !7;
        // SAFETY: AVX/F16C (self exists); i + 8 <= body.
        unsafe {
            let mv = _mm256_set1_ps(m);
            for i in (0..body).step_by(8) {
                let p = acc.as_mut_ptr().add(i).cast::<__m128i>();
                let a = _mm256_cvtph_ps(_mm_loadu_si128(p));
                _mm_storeu_si128(p, _mm256_cvtps_ph::<0>(_mm256_mul_ps(a, mv)));
            }
        }
        scale_scalar(&mut acc[body..], m);
    }

    #[inline(always)]
    fn mad(self, acc: &mut [u16], v: &[f32], w: f32) {
        use std::arch::x86_64::*;
        let body = acc.len() & !7;
        assert_eq!(v.len(), acc.len());
        // SAFETY: FMA/F16C (self exists); i + 8 <= body for both slices.
        unsafe {
            let wv = _mm256_set1_ps(w);
            for i in (0..body).step_by(8) {
                let p = acc.as_mut_ptr().add(i).cast::<__m128i>();
                let a = _mm256_cvtph_ps(_mm_loadu_si128(p));
                let r = _mm256_fmadd_ps(_mm256_loadu_ps(v.as_ptr().add(i)), wv, a);
                _mm_storeu_si128(p, _mm256_cvtps_ph::<0>(r));
            }
        }
        mad_scalar(&mut acc[body..], &v[body..], w);
    }
}

/// `ggml_vec_dot_f16`'s end: the vector part `r`, then the products from
/// `from` on added in f64 (its `ggml_float`), rounded to f32 once.
#[inline(always)]
fn dot_tail(r: f32, k: &[f32], q: &[f32], from: usize) -> f32 {
    let mut sum = r as f64;
    for (x, y) in k[from..].iter().zip(&q[from..]) {
        sum += (x * y) as f64;
    }
    sum as f32
}

/// `acc = f16(acc * m)` element by element (ggml's vector body and scalar
/// rest round alike).
#[inline(always)]
fn scale_scalar(acc: &mut [u16], m: f32) {
    for a in acc {
        *a = f16::from_f32(f16::from_bits(*a).to_f32() * m).to_bits();
    }
}

/// `acc = f16(fma(v, w, acc))` element by element (gcc contracts ggml's
/// scalar rest into the same fma as its vector body).
#[inline(always)]
fn mad_scalar(acc: &mut [u16], v: &[f32], w: f32) {
    for (a, &x) in acc.iter_mut().zip(v) {
        *a = f16::from_f32(x.mul_add(w, f16::from_bits(*a).to_f32())).to_bits();
    }
}

/// Converts head `head` (of size `dim`) of cache rows `rows` (each
/// `stride` values) to f32, one row after another at the start of `tile`.
#[inline(always)]
fn load_tile<S: Steps>(
    st: S,
    cache: &[u16],
    stride: usize,
    head: usize,
    dim: usize,
    rows: Range<usize>,
    tile: &mut [f32],
) {
    for (i, t) in rows.enumerate() {
        let at = t * stride + head * dim;
        st.widen(&cache[at..at + dim], &mut tile[i * dim..(i + 1) * dim]);
    }
}

/// The heads of one kind (`n_kind` of them: K or V) that the query heads in
/// `heads` read, each with the query heads reading it.
fn group_ranges(heads: Range<usize>, n_kind: usize, n_q: usize) -> Vec<(usize, Range<usize>)> {
    let mut out: Vec<(usize, Range<usize>)> = Vec::new();
    for h in heads {
        let g = h * n_kind / n_q;
        match out.last_mut() {
            Some((last, range)) if *last == g => range.end = h + 1,
            _ => out.push((g, h..h + 1)),
        }
    }
    out
}

/// `acc += p * v`.
#[inline(always)]
fn axpy(acc: &mut [f32], p: f32, v: &[f32]) {
    for (a, x) in acc.iter_mut().zip(v) {
        *a += p * x;
    }
}

/// e^x for x <= 0 to a few 1e-6 relative error (f32 rounding of x log2 e
/// dominates), in plain arithmetic so the
/// loops around it vectorise: 2^(x log2 e) split into an integer power
/// (built in the exponent bits) and a polynomial on [-0.5, 0.5].
#[inline(always)]
fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let t = (x * LOG2E).max(-126.0);
    let n = (t + ROUND) - ROUND;
    let f = t - n;
    // 2^f = e^(f ln 2), Taylor to degree 6
    let y = f * std::f32::consts::LN_2;
    let p = 1.0
        + y * (1.0
            + y * (0.5
                + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0 + y * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Indices of the `k` largest values of `w` (all when there are fewer).
fn top_k(w: &[f32], k: usize) -> Vec<usize> {
    /// A weight ordered so the heap's top is the smallest kept one.
    #[derive(PartialEq)]
    struct Kept(f32, usize);
    impl Eq for Kept {}
    impl PartialOrd for Kept {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Kept {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            o.0.total_cmp(&self.0)
        }
    }
    let mut heap = BinaryHeap::with_capacity(k + 1);
    for (i, &x) in w.iter().enumerate() {
        if heap.len() < k {
            heap.push(Kept(x, i));
        } else if heap.peek().is_some_and(|m| x > m.0) {
            heap.pop();
            heap.push(Kept(x, i));
        }
    }
    heap.into_iter().map(|Kept(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ffi::ggml::{Backend, GgmlType, Graph, GraphAllocator, GraphScratch};

    #[test]
    fn exp_approx_is_close_to_exp() {
        for i in 0..2000 {
            let x = -(i as f32) * 0.05;
            let (a, b) = (exp_approx(x), x.exp());
            assert!((a - b).abs() <= 4e-6 * b + 1e-30, "x={x}: {a} vs {b}");
        }
    }

    #[test]
    fn top_k_keeps_the_largest() {
        let w = [0.1, 0.9, 0.3, 0.8, 0.05, 0.7];
        let mut got = top_k(&w, 3);
        got.sort();
        assert_eq!(got, vec![1, 3, 5]);
        assert_eq!(top_k(&w, 10).len(), 6);
    }

    #[test]
    fn groups_follow_the_paper_mapping() {
        // 8 query heads, 2 K heads: heads 0..4 read K 0, 4..8 read K 1
        assert_eq!(group_ranges(0..8, 2, 8), vec![(0, 0..4), (1, 4..8)]);
        // 6 query heads, 3 V heads
        assert_eq!(group_ranges(2..6, 3, 6), vec![(1, 2..4), (2, 4..6)]);
    }

    /// Random values in [-1, 1), deterministic.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// f16 bits of `v * scale`.
    fn f16_bits(v: &[f32], scale: f32) -> Vec<u16> {
        v.iter()
            .map(|&x| f16::from_f32(x * scale).to_bits())
            .collect()
    }

    /// One decode step's inputs: q (f32) and f16 K and V caches of `n_ctx`
    /// rows, the first `op.n_kv` of them filled.
    struct Step {
        op: DecodeAttention,
        q: Vec<f32>,
        k: Vec<u16>,
        v: Vec<u16>,
        n_ctx: usize,
    }

    impl Step {
        fn new(heads: (usize, usize, usize), dims: (usize, usize), kv: (usize, usize)) -> Self {
            let ((n_head, n_head_k, n_head_v), (dk, dv), (n_kv, n_kv_graph)) = (heads, dims, kv);
            let n_ctx = n_kv_graph + 3;
            let op = DecodeAttention {
                n_head,
                n_head_k,
                n_head_v,
                head_dim_k: dk,
                head_dim_v: dv,
                n_kv,
                n_kv_graph,
                scale: 1.0 / (dk as f32).sqrt(),
                select_v: None,
            };
            // scores of a few units, so the running maximum moves often
            let q = values(n_head * dk, 1).iter().map(|x| x * 2.0).collect();
            let k = f16_bits(&values(n_ctx * n_head_k * dk, 2), 3.0);
            let v = f16_bits(&values(n_ctx * n_head_v * dv, 3), 3.0);
            Self { op, q, k, v, n_ctx }
        }

        /// The op's output with `nth` threads taking turns, on `steps`.
        fn run_with<S: Steps>(&self, st: S, nth: usize) -> Vec<f32> {
            let mut out = Vec::new();
            let mut s = Scratch::default();
            for ith in 0..nth {
                let n = self.op.n_head;
                let heads = ith * n / nth..(ith + 1) * n / nth;
                if !heads.is_empty() {
                    let x = Inputs {
                        q: &self.q,
                        k: &self.k,
                        v: &self.v,
                    };
                    self.op.heads_with(st, heads, nth, x, &mut s);
                    out.extend_from_slice(&s.out);
                }
            }
            out
        }

        /// The op and ggml's flash attention on the same inputs, in one
        /// graph computed by `nth` threads: (ours, ggml's).
        fn against_ggml(&self, nth: usize) -> (Vec<f32>, Vec<f32>) {
            let op = self.op;
            let (dk, dv) = (op.head_dim_k, op.head_dim_v);
            let (nq, nk, nv) = (op.n_head as i64, op.n_head_k as i64, op.n_head_v as i64);
            let n_graph = op.n_kv_graph as i64;
            let backend = Backend::cpu(nth).unwrap();
            let mut scratch = GraphScratch::new(32);
            let mut alloc = GraphAllocator::new(&backend).unwrap();
            let g = Graph::new(&mut scratch);
            let q = g.input(GgmlType::F32, &[dk as i64, nq, 1], "q");
            let k = g.input(GgmlType::F16, &[dk as i64 * nk, self.n_ctx as i64], "k");
            let v = g.input(GgmlType::F16, &[dv as i64 * nv, self.n_ctx as i64], "v");
            let mask = g.input(GgmlType::F16, &[n_graph, 1], "mask");
            // the views and permutes the model's graph gives ggml
            let view = |c, d: usize, n: i64| {
                let head = 2 * d;
                let v = g.view_3d(c, [d as i64, n, n_graph], head, head * n as usize, 0);
                g.permute(v, [0, 2, 1, 3])
            };
            let flash = g.flash_attn(
                g.permute(q, [0, 2, 1, 3]),
                view(k, dk, nk),
                view(v, dv, nv),
                mask,
                op.scale,
            );
            let ours = g.custom([dv as i64 * nq, 1, 1, 1], &[q, k, v], Box::new(op));
            g.output(flash);
            g.output(ours);
            alloc.allocate(&g).unwrap();
            let bytes = |x: &[u16]| -> Vec<u8> { x.iter().flat_map(|b| b.to_le_bytes()).collect() };
            q.write_f32(&self.q).unwrap();
            k.write_bytes(&bytes(&self.k)).unwrap();
            v.write_bytes(&bytes(&self.v)).unwrap();
            let m: Vec<f32> = (0..op.n_kv_graph)
                .map(|t| if t < op.n_kv { 0.0 } else { f32::NEG_INFINITY })
                .collect();
            mask.write_f32_as_f16(&m, &mut Vec::new()).unwrap();
            backend.compute(&g).unwrap();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            ours.read_f32(&mut a).unwrap();
            flash.read_f32(&mut b).unwrap();
            (a, b)
        }
    }

    /// Index and values of the first element where `a` and `b` differ in bits.
    fn first_difference(a: &[f32], b: &[f32]) -> Option<(usize, f32, f32)> {
        assert_eq!(a.len(), b.len());
        (0..a.len())
            .find(|&i| a[i].to_bits() != b[i].to_bits())
            .map(|i| (i, a[i], b[i]))
    }

    /// Query/K/V heads, K/V head sizes, filled/graph positions, threads.
    type Case = ((usize, usize, usize), (usize, usize), (usize, usize), usize);

    /// Head counts, head sizes (with and without a rest past blocks of 32),
    /// one-pass and split position counts, 1 to 3 threads.
    const EXACT_CASES: [Case; 12] = [
        ((14, 2, 2), (64, 64), (200, 256), 1),
        ((14, 2, 2), (64, 64), (200, 256), 2),
        ((9, 3, 3), (64, 64), (300, 512), 2),
        ((9, 3, 3), (64, 64), (300, 512), 3),
        ((8, 2, 4), (64, 64), (600, 768), 2),
        ((8, 1, 8), (64, 64), (513, 768), 3),
        ((6, 3, 3), (40, 40), (100, 256), 2),
        ((4, 4, 4), (40, 24), (700, 768), 2),
        ((8, 2, 4), (72, 72), (1, 256), 1),
        ((8, 2, 2), (64, 64), (520, 1024), 3),
        ((4, 2, 2), (96, 96), (300, 512), 2),
        ((4, 1, 2), (128, 128), (260, 512), 2),
    ];

    #[test]
    fn exact_mode_matches_ggml_flash_attention_bit_for_bit() {
        eprintln!("cpu kernels {}", crate::engine::ffi::cpu::chosen().unwrap());
        for (heads, dims, kv, nth) in EXACT_CASES {
            let step = Step::new(heads, dims, kv);
            let (ours, ggml) = step.against_ggml(nth);
            assert_eq!(
                first_difference(&ours, &ggml),
                None,
                "{heads:?} {dims:?} {kv:?} {nth} threads: (index, ours, ggml)"
            );
        }
    }

    /// The same on every other CPU kernel variant this CPU supports (forced
    /// with `SIGMA_CPU_VARIANT` in a child process: a process chooses once).
    #[test]
    fn exact_mode_matches_ggml_on_every_cpu_variant_this_cpu_supports() {
        use crate::engine::ffi::cpu::{VARIANT_ENV, VARIANTS, chosen};
        let test = "engine::attention::tests::exact_mode_matches_ggml_flash_attention_bit_for_bit";
        let best = chosen().unwrap().variant.name;
        for v in VARIANTS
            .iter()
            .filter(|v| v.is_supported() && v.name != best)
        {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", test, "--nocapture"])
                .env(VARIANT_ENV, v.name)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "on {}:\n{text}", v.name);
            assert!(text.contains("1 passed"), "on {}:\n{text}", v.name);
            assert!(
                text.contains(&format!("cpu kernels {} (set by", v.name)),
                "{text}"
            );
        }
    }

    #[test]
    fn portable_steps_round_as_the_intrinsics_do() {
        for (heads, dims, kv, nth) in EXACT_CASES {
            let step = Step::new(heads, dims, kv);
            for order in [DotOrder::Lanes8, DotOrder::Lanes16] {
                let portable = step.run_with(Portable(order), nth);
                #[cfg(target_arch = "x86_64")]
                if let Some(avx2) = Avx2::detect(order) {
                    let fast = step.run_with(avx2, nth);
                    assert_eq!(
                        first_difference(&portable, &fast),
                        None,
                        "{order:?} {heads:?} {dims:?} {kv:?} {nth} threads"
                    );
                }
                if order == DotOrder::of_ggml() {
                    let (ours, _) = step.against_ggml(nth);
                    assert_eq!(first_difference(&portable, &ours), None);
                }
            }
        }
    }

    /// Straight-loop attention of one decode step with top-k V, on q
    /// rounded to f16 as the kernel scores it.
    fn naive_select_v(
        op: &DecodeAttention,
        sv: SelectV,
        q: &[f32],
        k: &[f32],
        v: &[f32],
    ) -> Vec<f32> {
        let (dk, dv) = (op.head_dim_k, op.head_dim_v);
        let mut out = Vec::new();
        for h in 0..op.n_head {
            let (kh, vh) = (h * op.n_head_k / op.n_head, h * op.n_head_v / op.n_head);
            let s: Vec<f32> = (0..op.n_kv)
                .map(|t| {
                    let kr = &k[(t * op.n_head_k + kh) * dk..][..dk];
                    q[h * dk..(h + 1) * dk]
                        .iter()
                        .zip(kr)
                        .map(|(a, b)| f16::from_f32(*a).to_f32() * b)
                        .sum::<f32>()
                        * op.scale
                })
                .collect();
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let p: Vec<f32> = s.iter().map(|x| (x - max).exp()).collect();
            let total: f32 = p.iter().sum();
            let mut order: Vec<usize> = (0..op.n_kv).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
            let kept = &order[..sv.top_k];
            let denom = if sv.renormalize {
                kept.iter().map(|&t| p[t]).sum()
            } else {
                total
            };
            let mut o = vec![0.0; dv];
            for &t in kept {
                let vr = &v[(t * op.n_head_v + vh) * dv..][..dv];
                o.iter_mut()
                    .zip(vr)
                    .for_each(|(a, x)| *a += p[t] / denom * x);
            }
            out.extend(o);
        }
        out
    }

    #[test]
    fn selective_v_matches_straight_loops() {
        for ((n_head, n_head_k, n_head_v), renormalize) in [
            ((8, 2, 4), false),
            ((8, 2, 4), true),
            ((6, 3, 3), false),
            ((8, 1, 8), true),
        ] {
            let (dk, dv, n_kv) = (16, 8, 200);
            let sv = SelectV {
                top_k: 10,
                renormalize,
            };
            let op = DecodeAttention {
                n_head,
                n_head_k,
                n_head_v,
                head_dim_k: dk,
                head_dim_v: dv,
                n_kv,
                n_kv_graph: 256,
                scale: 1.0 / (dk as f32).sqrt(),
                select_v: Some(sv),
            };
            let q = values(n_head * dk, 1);
            let (kb, vb) = (
                f16_bits(&values(n_kv * n_head_k * dk, 2), 3.0),
                f16_bits(&values(n_kv * n_head_v * dv, 3), 3.0),
            );
            let wide =
                |b: &[u16]| -> Vec<f32> { b.iter().map(|&x| f16::from_bits(x).to_f32()).collect() };
            let step = Step {
                op,
                q: q.clone(),
                k: kb.clone(),
                v: vb.clone(),
                n_ctx: n_kv,
            };
            let got = step.run_with(Portable(DotOrder::of_ggml()), 2);
            let want = naive_select_v(&op, sv, &q, &wide(&kb), &wide(&vb));
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() < 1e-5,
                    "{n_head}/{n_head_k}/{n_head_v} renormalize {renormalize}: [{i}] {a} vs {b}"
                );
            }
        }
    }
}
