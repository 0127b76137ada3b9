//! One decode step of attention over an f16 KV cache, as a fused CPU op,
//! with optional selective V fetching.
//!
//! Memory traffic is the whole cost of long-context decode, so each K head
//! and each V head is read from the cache once per step: the query heads
//! that share a K head are folded into rows (scores `[group, n_kv]` from one
//! pass over that K head), and the weights are regrouped by V head for the
//! value product (query head `i` reads K head `i * n_k / n_q` and V head
//! `i * n_v / n_q`, so K and V may group differently). Nothing is expanded
//! to the query head count.
//!
//! Selective V (the paper's training-free option): the softmax still covers
//! every cached key, but only the V rows of each query head's `top_k`
//! largest weights are read and combined, either with the kept
//! probabilities as they are or renormalised to sum to one.
//!
//! Work is split by "unit": the coarser of the K and V groupings, so a unit
//! owns whole K heads and whole V heads and threads never share a read.

use std::cell::RefCell;
use std::collections::BinaryHeap;

use super::ffi::ggml::{CustomIo, CustomOp, f16_to_f32};

/// Rows of K or V converted to f32 at a time.
const TILE: usize = 64;

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
    /// Score scale, 1/sqrt(head_dim_k).
    pub scale: f32,
    /// Selective V, when it applies at `n_kv`.
    pub select_v: Option<SelectV>,
}

thread_local! {
    /// Per-thread scratch: scores and a conversion tile.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    tile: Vec<f32>,
}

impl CustomOp for DecodeAttention {
    fn run(&self, io: &CustomIo<'_>, ith: usize, nth: usize) {
        let (q, k, v) = (io.src_f32(0), io.src_f16(1), io.src_f16(2));
        let units = self.n_head_k.min(self.n_head_v);
        SCRATCH.with_borrow_mut(|scratch| {
            for unit in (ith..units).step_by(nth) {
                let out = self.unit(unit, units, q, k, v, scratch);
                let first_head = unit * self.n_head / units;
                io.write(first_head * self.head_dim_v, &out);
            }
        });
    }
}

impl DecodeAttention {
    /// Attention output of the query heads of `unit` (of `units`), their
    /// `head_dim_v` values each, in head order.
    fn unit(
        &self,
        unit: usize,
        units: usize,
        q: &[f32],
        k: &[u16],
        v: &[u16],
        s: &mut Scratch,
    ) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { self.unit_avx2(unit, units, q, k, v, s) };
        }
        self.unit_body(unit, units, q, k, v, s)
    }

    /// [`Self::unit_body`] compiled for AVX2, so its loops use 8-wide vectors.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn unit_avx2(
        &self,
        unit: usize,
        units: usize,
        q: &[f32],
        k: &[u16],
        v: &[u16],
        s: &mut Scratch,
    ) -> Vec<f32> {
        self.unit_body(unit, units, q, k, v, s)
    }

    #[inline(always)]
    fn unit_body(
        &self,
        unit: usize,
        units: usize,
        q: &[f32],
        k: &[u16],
        v: &[u16],
        s: &mut Scratch,
    ) -> Vec<f32> {
        let (n_q, n_kv) = (self.n_head, self.n_kv);
        let (dk, dv) = (self.head_dim_k, self.head_dim_v);
        let heads = unit * n_q / units..(unit + 1) * n_q / units;
        let n_rows = heads.len();
        let k_stride = self.n_head_k * dk;
        let v_stride = self.n_head_v * dv;

        // scores [n_rows, n_kv]: one pass over each K head of the unit for
        // all the query heads that share it
        s.scores.clear();
        s.scores.resize(n_rows * n_kv, 0.0);
        s.tile.resize(TILE * dk.max(dv), 0.0);
        let k_groups = group_ranges(heads.clone(), self.n_head_k, n_q);
        for (kh, rows) in &k_groups {
            let kh = *kh;
            for t0 in (0..n_kv).step_by(TILE) {
                let t1 = (t0 + TILE).min(n_kv);
                load_tile(k, k_stride, kh, dk, t0..t1, &mut s.tile);
                for h in rows.clone() {
                    let r = h - heads.start;
                    let qh = &q[h * dk..(h + 1) * dk];
                    let out = &mut s.scores[r * n_kv + t0..r * n_kv + t1];
                    for (o, krow) in out.iter_mut().zip(s.tile.chunks_exact(dk)) {
                        *o = dot(qh, krow) * self.scale;
                    }
                }
            }
        }

        // softmax per row, unnormalised: exp(s - max); the sums divide later
        let sums: Vec<f32> = s
            .scores
            .chunks_exact_mut(n_kv)
            .map(|row| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for x in row.iter_mut() {
                    *x = exp_approx(*x - max);
                    sum += *x;
                }
                sum
            })
            .collect();

        let mut out = vec![0.0f32; n_rows * dv];
        match self.select_v.filter(|sv| sv.applies(n_kv)) {
            Some(sv) => {
                for r in 0..n_rows {
                    let h = heads.start + r;
                    let vh = h * self.n_head_v / n_q;
                    let row = &s.scores[r * n_kv..(r + 1) * n_kv];
                    let kept = top_k(row, sv.top_k);
                    let denom = if sv.renormalize {
                        kept.iter().map(|&t| row[t]).sum()
                    } else {
                        sums[r]
                    };
                    let acc = &mut out[r * dv..(r + 1) * dv];
                    let vrow = &mut s.tile[..dv];
                    for t in kept {
                        let at = t * v_stride + vh * dv;
                        f16_to_f32(&v[at..at + dv], vrow);
                        axpy(acc, row[t], vrow);
                    }
                    acc.iter_mut().for_each(|x| *x /= denom);
                }
            }
            None => {
                // one pass over each V head for the query heads that share it
                for (vh, rows) in group_ranges(heads.clone(), self.n_head_v, n_q) {
                    for t0 in (0..n_kv).step_by(TILE) {
                        let t1 = (t0 + TILE).min(n_kv);
                        load_tile(v, v_stride, vh, dv, t0..t1, &mut s.tile);
                        for h in rows.clone() {
                            let r = h - heads.start;
                            let acc = &mut out[r * dv..(r + 1) * dv];
                            let w = &s.scores[r * n_kv + t0..r * n_kv + t1];
                            for (&p, vrow) in w.iter().zip(s.tile.chunks_exact(dv)) {
                                axpy(acc, p, vrow);
                            }
                        }
                    }
                }
                for (r, acc) in out.chunks_exact_mut(dv).enumerate() {
                    acc.iter_mut().for_each(|x| *x /= sums[r]);
                }
            }
        }
        out
    }
}

/// Converts head `head` (of size `dim`) of cache rows `rows` (each
/// `stride` values) to f32, one row after another at the start of `tile`.
#[inline(always)]
fn load_tile(
    cache: &[u16],
    stride: usize,
    head: usize,
    dim: usize,
    rows: std::ops::Range<usize>,
    tile: &mut [f32],
) {
    for (i, t) in rows.enumerate() {
        let at = t * stride + head * dim;
        f16_to_f32(&cache[at..at + dim], &mut tile[i * dim..(i + 1) * dim]);
    }
}

/// The heads of one kind (`n_kind` of them: K or V) that the query heads in
/// `heads` read, each with the query heads reading it.
fn group_ranges(
    heads: std::ops::Range<usize>,
    n_kind: usize,
    n_q: usize,
) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut out: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    for h in heads {
        let g = h * n_kind / n_q;
        match out.last_mut() {
            Some((last, range)) if *last == g => range.end = h + 1,
            _ => out.push((g, h..h + 1)),
        }
    }
    out
}

/// Dot product with 8 independent partial sums (vectorisable).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
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

    /// Straight-loop attention of one decode step, with optional top-k V.
    fn naive(op: &DecodeAttention, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
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
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                        * op.scale
                })
                .collect();
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let p: Vec<f32> = s.iter().map(|x| (x - max).exp()).collect();
            let total: f32 = p.iter().sum();
            let mut order: Vec<usize> = (0..op.n_kv).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
            let (kept, denom) = match op.select_v.filter(|sv| sv.applies(op.n_kv)) {
                Some(sv) => {
                    let kept = &order[..sv.top_k];
                    let d = if sv.renormalize {
                        kept.iter().map(|&t| p[t]).sum()
                    } else {
                        total
                    };
                    (kept.to_vec(), d)
                }
                None => (order, total),
            };
            let mut o = vec![0.0; dv];
            for t in kept {
                let vr = &v[(t * op.n_head_v + vh) * dv..][..dv];
                o.iter_mut()
                    .zip(vr)
                    .for_each(|(a, x)| *a += p[t] / denom * x);
            }
            out.extend(o);
        }
        out
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

    #[test]
    fn fused_decode_matches_straight_loops() {
        for (n_head, n_head_k, n_head_v, select_v) in [
            (8, 2, 4, None),
            (8, 1, 8, None),
            (6, 3, 3, None),
            (4, 4, 4, None),
            (8, 4, 2, None),
            (
                8,
                2,
                4,
                Some(SelectV {
                    top_k: 10,
                    renormalize: false,
                }),
            ),
            (
                8,
                2,
                4,
                Some(SelectV {
                    top_k: 10,
                    renormalize: true,
                }),
            ),
        ] {
            let (dk, dv, n_kv) = (16, 8, 200);
            let op = DecodeAttention {
                n_head,
                n_head_k,
                n_head_v,
                head_dim_k: dk,
                head_dim_v: dv,
                n_kv,
                scale: 1.0 / (dk as f32).sqrt(),
                select_v,
            };
            let q = values(n_head * dk, 1);
            // f16-representable caches so both sides see the same values
            let round = |v: Vec<f32>| -> Vec<f32> {
                v.iter()
                    .map(|&x| half::f16::from_f32(x * 3.0).to_f32())
                    .collect()
            };
            let k = round(values(n_kv * n_head_k * dk, 2));
            let v = round(values(n_kv * n_head_v * dv, 3));
            let bits = |v: &[f32]| -> Vec<u16> {
                v.iter()
                    .map(|&x| half::f16::from_f32(x).to_bits())
                    .collect()
            };
            let (kb, vb) = (bits(&k), bits(&v));
            let units = n_head_k.min(n_head_v);
            let mut scratch = Scratch::default();
            let got: Vec<f32> = (0..units)
                .flat_map(|u| op.unit(u, units, &q, &kb, &vb, &mut scratch))
                .collect();
            let want = naive(&op, &q, &k, &v);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() < 1e-5,
                    "{n_head}/{n_head_k}/{n_head_v} {select_v:?}: [{i}] {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn groups_follow_the_paper_mapping() {
        // 8 query heads, 2 K heads: heads 0..4 read K 0, 4..8 read K 1
        assert_eq!(group_ranges(0..8, 2, 8), vec![(0, 0..4), (1, 4..8)]);
        // 6 query heads, 3 V heads
        assert_eq!(group_ranges(2..6, 3, 6), vec![(1, 2..4), (2, 4..6)]);
    }
}
