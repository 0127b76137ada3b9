//! `sigma model retrofit`: a GQA model (qwen2, llama) rewritten as a Sigma
//! model with fewer K heads than V heads (DiffQKV).
//!
//! V heads, V weights, FFN, norms and embeddings are copied byte for byte.
//! Each block's K heads are merged in groups (`n_kv / k_heads` old heads per
//! new head) by a map that commutes with RoPE: per frequency pair `f` (dims
//! `f` and `f + d/2` in NeoX order), a pair of K head `j` is a complex number
//! `z_jf`, the merged head is `c_f = sum_j w_jf z_jf`, and query head `h`
//! gets a complex scalar `a_hf` folded into its `W_q` rows and q bias, so that
//! `Re(a_hf q_hf conj(c_f))` stands for `Re(q_hf conj(z_(g(h))f))`. Any
//! complex scalar per pair commutes with RoPE's rotations, so the merge is
//! exact wherever the merged heads are complex multiples of each other.
//!
//! The merge comes from one of:
//! - [`Merge::Mean`]: mean pooling (the GQA paper), `a = 1`;
//! - [`Merge::Weights`]: the best rank-1 complex merge of the K weights per
//!   pair (the top eigenvector of the heads' complex Gram matrix), fitted on
//!   the weights alone, deterministic and data-free;
//! - a fitted delta (`model/retrofit/fit.py`): merged `W_k`, K bias and the
//!   scalars, fitted on calibration activations and refined per block. The
//!   delta names its base by SHA-256.
//!
//! The new `W_q` and `W_k` are written as q8_0 (no lower than the base's K
//! and Q types of the shipped models; `--type` overrides), biases as f32.
//! llama files store Q and K rows permuted for pairwise RoPE; Sigma uses
//! NeoX pairs, so those rows are permuted back.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use super::ConvertError;
use crate::engine::ffi::ggml::GgmlType;
use crate::engine::ffi::gguf::{GgufFile, GgufWriter, TensorInfo};

/// How the K heads are merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// Mean pooling of each group's heads.
    Mean,
    /// RoPE-exact complex merge fitted on the weights alone.
    Weights,
    /// A fitted delta file.
    Delta(PathBuf),
}

/// What to make.
#[derive(Debug, Clone)]
pub struct RetrofitOptions {
    /// K heads of the result (must divide the base's KV heads and be fewer).
    pub k_heads: usize,
    /// Where the merge comes from.
    pub merge: Merge,
    /// Encoding of the rewritten `W_q` and `W_k`.
    pub ty: GgmlType,
}

/// The shapes of the written model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retrofitted {
    /// The base's architecture (`qwen2` or `llama`).
    pub base_arch: String,
    /// Query heads.
    pub n_head: usize,
    /// K heads after the merge.
    pub n_head_k: usize,
    /// V heads (the base's KV heads).
    pub n_head_v: usize,
}

/// The base model's attention shapes.
struct Shapes {
    arch: String,
    n_layer: usize,
    n_embd: usize,
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
}

/// One block's merged K projection and query scalars, NeoX pairing.
struct BlockMerge {
    /// `(k_heads d) x n_embd`, row-major.
    wk: Vec<f32>,
    /// `k_heads d`, when the base has a K bias.
    bk: Option<Vec<f32>>,
    /// Per query head: `d/2` real parts, then `d/2` imaginary parts.
    rot: Vec<f32>,
}

fn bad(key: &str, problem: impl Into<String>) -> ConvertError {
    ConvertError::Config {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// Writes the retrofit of the GGUF at `base` to `out`; returns its shapes.
/// Nothing is left at `out` when it fails.
pub fn retrofit(
    base: &Path,
    opts: &RetrofitOptions,
    out: &Path,
) -> Result<Retrofitted, ConvertError> {
    let gguf = GgufFile::open(base)?;
    let shapes = read_shapes(&gguf)?;
    let Shapes {
        n_head,
        n_head_kv,
        head_dim: d,
        ..
    } = shapes;
    let k = opts.k_heads;
    if k == 0 || k >= n_head_kv {
        return Err(bad(
            "--k-heads",
            format!(
                "is {k}; it must be at least 1 and fewer than the model's {n_head_kv} KV heads"
            ),
        ));
    }
    if !n_head_kv.is_multiple_of(k) {
        return Err(bad(
            "--k-heads",
            format!(
                "is {k}; it must divide the model's {n_head_kv} KV heads (and so its {n_head} query heads)"
            ),
        ));
    }
    if d % 2 != 0 {
        return Err(bad("head size", format!("is {d}; RoPE needs it even")));
    }
    let reader = Reader::new(&gguf)?;
    // every block's merge, before anything is written (a bad delta fails here)
    let merges = match &opts.merge {
        Merge::Delta(path) => read_delta(path, base, &shapes, k)?,
        merge => (0..shapes.n_layer)
            .map(|il| block_merge(&reader, &shapes, il, k, merge))
            .collect::<Result<_, _>>()?,
    };
    let mut w = GgufWriter::new(gguf.tensors().len());
    w.copy_keys(&gguf);
    rename_keys(&mut w, &gguf, &shapes, k)?;
    let name = gguf
        .get::<String>("general.name")?
        .unwrap_or_else(|| shapes.arch.clone());
    w.set_str(
        "general.name",
        &format!(
            "{name}, DiffQKV retrofit with {k} K head{}",
            if k == 1 { "" } else { "s" }
        ),
    );
    w.set_str("sigma.retrofit.base_arch", &shapes.arch);
    w.set_str(
        "sigma.retrofit.merge",
        match &opts.merge {
            Merge::Mean => "mean",
            Merge::Weights => "weights",
            Merge::Delta(_) => "delta",
        },
    );
    for t in gguf.tensors() {
        let (block, what) = split_name(&t.name);
        let llama = shapes.arch == "llama";
        match (block, what) {
            (Some(il), "attn_k.weight") => {
                let m = merges.get(il).ok_or_else(|| {
                    bad(
                        "block_count",
                        format!("is {}, but the file has block {il}", shapes.n_layer),
                    )
                })?;
                let ne = [shapes.n_embd as i64, (k * d) as i64];
                let bytes = opts.ty.quantize(&m.wk, shapes.n_embd)?;
                w.add_tensor(&t.name, opts.ty, &ne, bytes)?;
                if let Some(bk) = &m.bk {
                    let name = format!("blk.{il}.attn_k.bias");
                    w.add_tensor(&name, GgmlType::F32, &[bk.len() as i64], f32_bytes(bk))?;
                }
                let mut wq = reader.f32(
                    &format!("blk.{il}.attn_q.weight"),
                    &[shapes.n_embd, n_head * d],
                )?;
                if llama {
                    unpermute_rows(&mut wq, n_head, shapes.n_embd);
                }
                rotate_rows(&mut wq, &m.rot, d, shapes.n_embd);
                let ne = [shapes.n_embd as i64, (n_head * d) as i64];
                let name = format!("blk.{il}.attn_q.weight");
                w.add_tensor(&name, opts.ty, &ne, opts.ty.quantize(&wq, shapes.n_embd)?)?;
                if reader.find(&format!("blk.{il}.attn_q.bias")).is_some() {
                    let mut bq = reader.f32(&format!("blk.{il}.attn_q.bias"), &[n_head * d])?;
                    if llama {
                        unpermute_rows(&mut bq, n_head, 1);
                    }
                    rotate_rows(&mut bq, &m.rot, d, 1);
                    let name = format!("blk.{il}.attn_q.bias");
                    w.add_tensor(&name, GgmlType::F32, &[bq.len() as i64], f32_bytes(&bq))?;
                }
            }
            // written with attn_k.weight above
            (Some(_), "attn_k.bias" | "attn_q.weight" | "attn_q.bias") => {}
            _ => {
                let ty = GgmlType(t.ggml_type);
                let ne: Vec<i64> = t.shape.iter().map(|&n| n as i64).collect();
                w.add_tensor(&t.name, ty, &ne, reader.bytes(&t)?)?;
            }
        }
    }
    w.write(out)?;
    Ok(Retrofitted {
        base_arch: shapes.arch,
        n_head,
        n_head_k: k,
        n_head_v: n_head_kv,
    })
}

/// The base's architecture and attention shapes; qwen2 and llama only.
fn read_shapes(gguf: &GgufFile) -> Result<Shapes, ConvertError> {
    let arch: String = gguf.require("general.architecture")?;
    if arch != "qwen2" && arch != "llama" {
        return Err(ConvertError::Config {
            key: "general.architecture".into(),
            problem: format!("is '{arch}'; only GQA models (qwen2, llama) can be retrofitted"),
        });
    }
    let u = |key: &str| -> Result<usize, ConvertError> {
        Ok(gguf.require::<u32>(&format!("{arch}.{key}"))? as usize)
    };
    let (n_embd, n_head) = (u("embedding_length")?, u("attention.head_count")?);
    let head_dim = match gguf.get::<u32>(&format!("{arch}.attention.key_length"))? {
        Some(d) => d as usize,
        None => n_embd / n_head.max(1),
    };
    Ok(Shapes {
        n_layer: u("block_count")?,
        n_head_kv: u("attention.head_count_kv")?,
        arch,
        n_embd,
        n_head,
        head_dim,
    })
}

/// Moves the base's `{arch}.*` keys to `sigma.*` and sets the head counts.
fn rename_keys(
    w: &mut GgufWriter,
    gguf: &GgufFile,
    s: &Shapes,
    k_heads: usize,
) -> Result<(), ConvertError> {
    let prefix = format!("{}.", s.arch);
    for key in gguf.keys() {
        if let Some(rest) = key.strip_prefix(&prefix) {
            w.rename_key(&key, &format!("sigma.{rest}"));
        }
    }
    w.remove_key("sigma.attention.head_count_kv");
    w.set_str("general.architecture", "sigma");
    w.set_u32("sigma.attention.head_count_k", k_heads as u32);
    w.set_u32("sigma.attention.head_count_v", s.n_head_kv as u32);
    w.set_u32("sigma.attention.key_length", s.head_dim as u32);
    w.set_u32("sigma.attention.value_length", s.head_dim as u32);
    Ok(())
}

/// `blk.N.rest` -> (Some(N), rest); other names -> (None, name).
fn split_name(name: &str) -> (Option<usize>, &str) {
    name.strip_prefix("blk.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(n, rest)| n.parse().ok().map(|n| (Some(n), rest)))
        .unwrap_or((None, name))
}

/// Reads tensors of a GGUF file, checking they lie inside it.
struct Reader<'a> {
    gguf: &'a GgufFile,
    file: File,
    infos: Vec<TensorInfo>,
}

impl<'a> Reader<'a> {
    fn new(gguf: &'a GgufFile) -> Result<Self, ConvertError> {
        let file = File::open(gguf.path()).map_err(|source| ConvertError::Io {
            path: gguf.path().to_path_buf(),
            source,
        })?;
        Ok(Self {
            gguf,
            file,
            infos: gguf.tensors(),
        })
    }

    fn find(&self, name: &str) -> Option<&TensorInfo> {
        self.infos.iter().find(|t| t.name == name)
    }

    /// The raw bytes of tensor `t`.
    fn bytes(&self, t: &TensorInfo) -> Result<Vec<u8>, ConvertError> {
        let start = self.gguf.data_offset() + t.offset;
        if start + t.size > self.gguf.file_size() {
            return Err(ConvertError::Io {
                path: self.gguf.path().to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file is truncated: tensor '{}' ends at byte {} of {}; download it again",
                        t.name,
                        start + t.size,
                        self.gguf.file_size()
                    ),
                ),
            });
        }
        let mut buf = vec![0u8; t.size as usize];
        self.file
            .read_exact_at(&mut buf, start)
            .map_err(|source| ConvertError::Io {
                path: self.gguf.path().to_path_buf(),
                source,
            })?;
        Ok(buf)
    }

    /// Tensor `name` decoded to f32, checked to have `shape` (ggml order).
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ConvertError> {
        let t = self.find(name).ok_or_else(|| ConvertError::MissingTensor {
            name: name.to_string(),
            arch: "retrofit",
        })?;
        let want: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
        if t.shape != want {
            return Err(ConvertError::TensorShape {
                name: name.to_string(),
                found: t.shape.iter().map(|&n| n as usize).collect(),
                expected: shape.to_vec(),
            });
        }
        Ok(GgmlType(t.ggml_type).dequantize(&self.bytes(t)?, shape[0])?)
    }
}

/// Every block's merge from the fitted delta at `path`, checked against the
/// base (its SHA-256), the K head count and every shape.
fn read_delta(
    path: &Path,
    base: &Path,
    s: &Shapes,
    k: usize,
) -> Result<Vec<BlockMerge>, ConvertError> {
    let gguf = GgufFile::open(path)?;
    let key = |name: &str| format!("sigma_delta.{name}");
    let want: String = gguf.require(&key("base_sha256"))?;
    let got = sha256(base)?;
    if want != got {
        return Err(bad(
            "delta",
            format!(
                "'{}' was fitted on a base with sha256 {want}, but '{}' has {got}; pass the base it was made from",
                path.display(),
                base.display()
            ),
        ));
    }
    let heads: u32 = gguf.require(&key("head_count_k"))?;
    if heads as usize != k {
        return Err(bad(
            "--k-heads",
            format!("is {k}, but the delta was fitted for {heads} K heads"),
        ));
    }
    let reader = Reader::new(&gguf)?;
    let d = s.head_dim;
    (0..s.n_layer)
        .map(|il| {
            let t = |n: &str| format!("blk.{il}.{n}");
            let bk = match reader.find(&t("attn_k.bias")) {
                Some(_) => Some(reader.f32(&t("attn_k.bias"), &[k * d])?),
                None => None,
            };
            Ok(BlockMerge {
                wk: reader.f32(&t("attn_k.weight"), &[s.n_embd, k * d])?,
                bk,
                rot: reader.f32(&t("attn_q_rot"), &[d / 2, 2, s.n_head])?,
            })
        })
        .collect()
}

/// SHA-256 of a file, lowercase hex.
fn sha256(path: &Path) -> Result<String, ConvertError> {
    crate::engine::registry::hash_file(path).map_err(|source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The data-free merge (mean or weights) of block `il`.
fn block_merge(
    reader: &Reader<'_>,
    s: &Shapes,
    il: usize,
    k: usize,
    merge: &Merge,
) -> Result<BlockMerge, ConvertError> {
    let (d, n_embd, n_kv, n_q) = (s.head_dim, s.n_embd, s.n_head_kv, s.n_head);
    let mut wk = reader.f32(&format!("blk.{il}.attn_k.weight"), &[n_embd, n_kv * d])?;
    let mut bk = match reader.find(&format!("blk.{il}.attn_k.bias")) {
        Some(_) => Some(reader.f32(&format!("blk.{il}.attn_k.bias"), &[n_kv * d])?),
        None => None,
    };
    if s.arch == "llama" {
        unpermute_rows(&mut wk, n_kv, n_embd);
        if let Some(b) = bk.as_mut() {
            unpermute_rows(b, n_kv, 1);
        }
    }
    let per = n_kv / k;
    let half = d / 2;
    // complex weight of old head j for pair f, and the query scalar of j
    let mut w = vec![(0f64, 0f64); n_kv * half];
    let mut a = vec![(1f64, 0f64); n_kv * half];
    for m in 0..k {
        let group: Vec<usize> = (m * per..(m + 1) * per).collect();
        for f in 0..half {
            let v = match merge {
                Merge::Mean => vec![(1.0 / per as f64, 0.0); per],
                _ => top_eigenvector(&gram(&wk, &group, f, d, n_embd)),
            };
            for (gi, &j) in group.iter().enumerate() {
                w[j * half + f] = v[gi];
                a[j * half + f] = match merge {
                    Merge::Mean => (1.0, 0.0),
                    _ => v[gi],
                };
            }
        }
    }
    // merged rows: c_f = sum_j w_jf (row_jf + i row_j(f+half))
    let combine = |src: &[f32], cols: usize| -> Vec<f32> {
        let mut out = vec![0f32; k * d * cols];
        for m in 0..k {
            for f in 0..half {
                for c in 0..cols {
                    let (mut re, mut im) = (0f64, 0f64);
                    for j in m * per..(m + 1) * per {
                        let (wr, wi) = w[j * half + f];
                        let x = f64::from(src[(j * d + f) * cols + c]);
                        let y = f64::from(src[(j * d + f + half) * cols + c]);
                        re += wr * x - wi * y;
                        im += wr * y + wi * x;
                    }
                    out[(m * d + f) * cols + c] = re as f32;
                    out[(m * d + f + half) * cols + c] = im as f32;
                }
            }
        }
        out
    };
    let rot = (0..n_q)
        .flat_map(|h| {
            let j = h * n_kv / n_q;
            let a = &a[j * half..(j + 1) * half];
            a.iter()
                .map(|z| z.0 as f32)
                .chain(a.iter().map(|z| z.1 as f32))
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(BlockMerge {
        wk: combine(&wk, n_embd),
        bk: bk.map(|b| combine(&b, 1)),
        rot,
    })
}

/// `G_jk = sum_e conj(Z_j[e]) Z_k[e]` over the group's heads for pair `f`,
/// with `Z_j = row_jf + i row_j(f+d/2)` of the K weights.
fn gram(wk: &[f32], group: &[usize], f: usize, d: usize, n_embd: usize) -> Vec<Vec<(f64, f64)>> {
    let row = |j: usize, r: usize| &wk[(j * d + r) * n_embd..(j * d + r + 1) * n_embd];
    group
        .iter()
        .map(|&j| {
            group
                .iter()
                .map(|&l| {
                    let (xr, xi, yr, yi) =
                        (row(j, f), row(j, f + d / 2), row(l, f), row(l, f + d / 2));
                    (0..n_embd).fold((0.0, 0.0), |(re, im), e| {
                        let (a, b) = (f64::from(xr[e]), f64::from(xi[e]));
                        let (c, dd) = (f64::from(yr[e]), f64::from(yi[e]));
                        // conj(a + ib) (c + i dd)
                        (re + a * c + b * dd, im + a * dd - b * c)
                    })
                })
                .collect()
        })
        .collect()
}

/// The unit top eigenvector of a Hermitian positive semi-definite matrix,
/// by power iteration (the matrices are a few rows).
fn top_eigenvector(g: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let n = g.len();
    let mut v: Vec<(f64, f64)> = (0..n).map(|i| (1.0 + i as f64 * 1e-3, 0.0)).collect();
    for _ in 0..200 {
        let mut next = vec![(0f64, 0f64); n];
        for (i, row) in g.iter().enumerate() {
            for (j, &(a, b)) in row.iter().enumerate() {
                let (c, d) = v[j];
                next[i].0 += a * c - b * d;
                next[i].1 += a * d + b * c;
            }
        }
        let norm = next.iter().map(|(a, b)| a * a + b * b).sum::<f64>().sqrt();
        if norm == 0.0 {
            break;
        }
        v = next
            .into_iter()
            .map(|(a, b)| (a / norm, b / norm))
            .collect();
    }
    v
}

/// Undoes llama.cpp's Q/K row permutation for pairwise RoPE, per head:
/// row `2i + s` becomes row `s d/2 + i` (NeoX halves).
fn unpermute_rows(x: &mut [f32], n_heads: usize, cols: usize) {
    let d = x.len() / cols / n_heads;
    let src = x.to_vec();
    for h in 0..n_heads {
        for i in 0..d / 2 {
            for s in 0..2 {
                let from = (h * d + 2 * i + s) * cols;
                let to = (h * d + s * d / 2 + i) * cols;
                x[to..to + cols].copy_from_slice(&src[from..from + cols]);
            }
        }
    }
}

/// Multiplies each query head's pair `f` (rows `f`, `f + d/2`) by its
/// complex scalar `rot` (per head: `d/2` real parts, then imaginary parts).
fn rotate_rows(x: &mut [f32], rot: &[f32], d: usize, cols: usize) {
    let half = d / 2;
    for (h, r) in rot.chunks_exact(d).enumerate() {
        for f in 0..half {
            let (ar, ai) = (r[f], r[half + f]);
            let (lo, hi) = ((h * d + f) * cols, (h * d + f + half) * cols);
            for c in 0..cols {
                let (re, im) = (x[lo + c], x[hi + c]);
                x[lo + c] = ar * re - ai * im;
                x[hi + c] = ar * im + ai * re;
            }
        }
    }
}

/// f32 values as little-endian bytes.
fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
