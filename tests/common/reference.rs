//! An independent reference forward pass for the model tests.
//!
//! A plain-Rust f32 pass written from the formulas in `model/SIGMA-GGUF.md`
//! (straight loops, no ggml, no engine code), over Hugging Face tensor names
//! and `config.json` keys: DiffQKV head mapping, optional AugQ, optional
//! Q/K/V biases (Qwen2), NeoX RoPE.

use std::collections::HashMap;
use std::path::Path;

use safetensors::SafeTensors;
use sigma::engine::ffi::gguf::GgufFile;
use sigma::engine::registry::Registry;
use sigma::engine::tokenizer::TokenizerSpec;

/// The tiny default model's tokenizer (a real vocabulary).
pub fn tokenizer() -> TokenizerSpec {
    let registry = Registry::load().expect("registry");
    let path = registry
        .locate(Some(registry.tiny_model()), false)
        .expect("the tiny model is pulled (scripts/test.sh does it)");
    TokenizerSpec::from_gguf(&GgufFile::open(&path).expect("open")).expect("tokenizer")
}

/// Weights of a Hugging Face checkpoint, f32, by name.
pub struct Weights {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    config: serde_json::Value,
}

impl Weights {
    /// Weights from tensors by Hugging Face name (shape, row-major values)
    /// and a `config.json` value.
    pub fn new(
        tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
        config: serde_json::Value,
    ) -> Self {
        Self { tensors, config }
    }

    /// The checkpoint `write_dir` wrote to `dir`.
    pub fn read(dir: &Path) -> Self {
        let bytes = std::fs::read(dir.join("model.safetensors")).expect("safetensors");
        let st = SafeTensors::deserialize(&bytes).expect("parse");
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, v)| {
                let data = v
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (name, (v.shape().to_vec(), data))
            })
            .collect();
        let config = serde_json::from_str(
            &std::fs::read_to_string(dir.join("config.json")).expect("config"),
        )
        .expect("json");
        Self { tensors, config }
    }

    pub fn get(&self, name: &str) -> &[f32] {
        &self
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .1
    }

    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn usize(&self, key: &str) -> usize {
        self.config[key]
            .as_u64()
            .unwrap_or_else(|| panic!("config {key}")) as usize
    }
}

/// `W x + b` for the projection `name` (`.weight`, and `.bias` when the
/// checkpoint has one, as Qwen2's Q, K and V do).
fn linear(w: &Weights, name: &str, x: &[f32]) -> Vec<f32> {
    let mut y = matvec(w.get(&format!("{name}.weight")), x);
    if w.has(&format!("{name}.bias")) {
        y.iter_mut()
            .zip(w.get(&format!("{name}.bias")))
            .for_each(|(a, b)| *a += b);
    }
    y
}

/// `y = W x` for `W` of `rows x cols`, row-major (Hugging Face `[out, in]`).
fn matvec(w: &[f32], x: &[f32]) -> Vec<f32> {
    let cols = x.len();
    w.chunks_exact(cols)
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

fn rms_norm(x: &[f32], g: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(g).map(|(v, g)| v * s * g).collect()
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Rotate-half (NeoX) RoPE of every `d`-sized head of `x` at position `pos`.
fn rope(x: &mut [f32], d: usize, pos: usize, theta: f32) {
    for head in x.chunks_exact_mut(d) {
        for i in 0..d / 2 {
            let freq = theta.powf(-2.0 * i as f32 / d as f32);
            let (sin, cos) = (pos as f32 * freq).sin_cos();
            let (a, b) = (head[i], head[i + d / 2]);
            head[i] = a * cos - b * sin;
            head[i + d / 2] = a * sin + b * cos;
        }
    }
}

/// The reference forward pass: logits after each token of `tokens`.
pub fn reference(w: &Weights, tokens: &[u32]) -> Vec<Vec<f32>> {
    let n_embd = w.usize("hidden_size");
    let n_layer = w.usize("num_hidden_layers");
    let n_q = w.usize("num_attention_heads");
    let n_k = w.usize("num_key_heads");
    let n_v = w.usize("num_value_heads");
    let d = w.usize("head_dim");
    let eps = w.config["rms_norm_eps"].as_f64().unwrap() as f32;
    let theta = w.config["rope_theta"].as_f64().unwrap() as f32;
    let embd = w.get("model.embed_tokens.weight");
    let head_w = if w.has("lm_head.weight") {
        w.get("lm_head.weight")
    } else {
        embd
    };
    // per layer: cached K (n_k * d per position) and V (n_v * d per position)
    let mut k_cache: Vec<Vec<Vec<f32>>> = vec![Vec::new(); n_layer];
    let mut v_cache: Vec<Vec<Vec<f32>>> = vec![Vec::new(); n_layer];
    let mut out = Vec::new();
    for (pos, &tok) in tokens.iter().enumerate() {
        let t = tok as usize;
        let mut x = embd[t * n_embd..(t + 1) * n_embd].to_vec();
        for l in 0..n_layer {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            let h = rms_norm(&x, w.get(&p("input_layernorm.weight")), eps);
            let mut q = linear(w, &p("self_attn.q_proj"), &h);
            if w.has(&p("self_attn.q_gate_proj.weight")) {
                let gate = matvec(w.get(&p("self_attn.q_gate_proj.weight")), &q);
                let up = matvec(w.get(&p("self_attn.q_up_proj.weight")), &q);
                let hidden: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| silu(*g) * u).collect();
                q = matvec(w.get(&p("self_attn.q_down_proj.weight")), &hidden);
            }
            let mut k = linear(w, &p("self_attn.k_proj"), &h);
            let v = linear(w, &p("self_attn.v_proj"), &h);
            rope(&mut q, d, pos, theta);
            rope(&mut k, d, pos, theta);
            k_cache[l].push(k);
            v_cache[l].push(v);
            let mut attn = vec![0.0f32; n_q * d];
            for i in 0..n_q {
                let kh = i * n_k / n_q;
                let vh = i * n_v / n_q;
                let qi = &q[i * d..(i + 1) * d];
                let scores: Vec<f32> = k_cache[l]
                    .iter()
                    .map(|k| {
                        let kj = &k[kh * d..(kh + 1) * d];
                        qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() / (d as f32).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f32 = exps.iter().sum();
                for (j, e) in exps.iter().enumerate() {
                    let vj = &v_cache[l][j][vh * d..(vh + 1) * d];
                    for c in 0..d {
                        attn[i * d + c] += e / sum * vj[c];
                    }
                }
            }
            let o = matvec(w.get(&p("self_attn.o_proj.weight")), &attn);
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let h = rms_norm(&x, w.get(&p("post_attention_layernorm.weight")), eps);
            let gate = matvec(w.get(&p("mlp.gate_proj.weight")), &h);
            let up = matvec(w.get(&p("mlp.up_proj.weight")), &h);
            let act: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| silu(*g) * u).collect();
            let f = matvec(w.get(&p("mlp.down_proj.weight")), &act);
            x.iter_mut().zip(&f).for_each(|(a, b)| *a += b);
        }
        let h = rms_norm(&x, w.get("model.norm.weight"), eps);
        out.push(matvec(head_w, &h));
    }
    out
}

/// Largest |a - b| / max|b| over one position.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}
