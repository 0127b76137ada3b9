//! The Sigma architecture (DiffQKV attention with augmented Q) against an
//! independent reference.
//!
//! The reference below is a plain-Rust f32 forward pass written from the
//! formulas in `model/SIGMA-GGUF.md` (straight loops, no ggml, no engine
//! code): it reads the weights from the Hugging Face checkpoint our own
//! code writes (`write_dir`), while the engine runs the GGUF converted from
//! that checkpoint (`HfCheckpoint` + `write_gguf`). Random models with and
//! without AugQ and several Q/K/V head ratios must agree on every logit.
//!
//! Tolerances: f32 models, f32 KV cache: |ours - ref| <= 1e-4 * max|ref| per
//! position (f32 round-off from different summation orders is ~1e-6 of the
//! largest logit; 1e-4 leaves room and still catches any wrong head mapping,
//! which moves logits by tens of percent). q8_0 weights: 8e-2 (ggml
//! multiplies q8_0 weights by activations also rounded to 8-bit blocks, so
//! each product carries ~2 x 0.4% error, compounded over two blocks and an
//! f16 cache; measured worst 4.2e-2) plus the same greedy choice wherever
//! the reference's top-2 margin exceeds that error. f16 weights and cache:
//! 5e-3 (measured worst 2.1e-3).

mod common;

use common::reference::{Weights, reference, rel_err, tokenizer};

use std::path::Path;

use sigma::engine::attention::SelectV;
use sigma::engine::convert::hf::{HfCheckpoint, write_dir};
use sigma::engine::convert::tiny::TinyModel;
use sigma::engine::convert::{ConvertError, ModelConfig, write_gguf};
use sigma::engine::ffi::ggml::GgmlType;
use sigma::engine::ffi::gguf::GgufFile;
use sigma::engine::kv_cache::CacheTypes;
use sigma::engine::model::{Architecture, FusedDecode, LoadOptions, Model, StockAttention};
use sigma::engine::session::{Session, SessionOptions};

/// A Sigma config with `heads` = (q, k, v), head size 8 and AugQ `aug`.
fn config(heads: (usize, usize, usize), aug: usize) -> ModelConfig {
    let (n_head, n_head_k, n_head_v) = heads;
    ModelConfig {
        arch: Architecture::Sigma,
        n_vocab: 0,
        n_embd: 8 * n_head,
        n_layer: 2,
        n_ff: 96,
        n_head,
        n_head_k,
        n_head_v,
        head_dim: 8,
        head_dim_v: 8,
        n_aug_q: aug,
        rms_eps: 1e-5,
        rope_theta: 10_000.0,
        n_ctx: 256,
        tied_embeddings: true,
    }
}

/// Flash attention (no fused decode, no stock ops) on `cache` types.
fn flash(cache: CacheTypes) -> SessionOptions {
    SessionOptions {
        cache,
        fused_decode: None,
        stock_attention: None,
    }
}

/// Stock-op attention on `cache` types.
fn stock(cache: CacheTypes, select_v: Option<SelectV>) -> SessionOptions {
    SessionOptions {
        cache,
        fused_decode: None,
        stock_attention: Some(StockAttention { select_v }),
    }
}

/// Logits of the engine after each token, evaluating one token at a time.
fn engine_logits(gguf: &Path, tokens: &[u32], cache: CacheTypes) -> Vec<Vec<f32>> {
    engine_logits_with(gguf, tokens, flash(cache))
}

/// [`engine_logits`] with the session options `opts`.
fn engine_logits_with(gguf: &Path, tokens: &[u32], opts: SessionOptions) -> Vec<Vec<f32>> {
    let file = GgufFile::open(gguf).expect("open gguf");
    let model = Model::load(&file, &LoadOptions::threads(2)).expect("load");
    let mut s = Session::with_options(&model, 64, opts).expect("session");
    tokens
        .iter()
        .map(|&t| s.eval(&[t]).expect("eval").to_vec())
        .collect()
}

/// Last-position logits of the engine for `tokens` in one batch.
fn engine_batch(gguf: &Path, tokens: &[u32]) -> Vec<f32> {
    engine_batch_with(gguf, tokens, flash(F32_CACHE))
}

/// [`engine_batch`] with the session options `opts`.
fn engine_batch_with(gguf: &Path, tokens: &[u32], opts: SessionOptions) -> Vec<f32> {
    let file = GgufFile::open(gguf).expect("open gguf");
    let model = Model::load(&file, &LoadOptions::threads(2)).expect("load");
    let mut s = Session::with_options(&model, 64, opts).expect("session");
    s.eval(tokens).expect("eval").to_vec()
}

/// f32 K and V caches.
const F32_CACHE: CacheTypes = CacheTypes {
    k: GgmlType::F32,
    v: GgmlType::F32,
};

/// Sequences of 20 token ids, deterministic, spread over the vocabulary.
fn sequences(n_vocab: usize) -> Vec<Vec<u32>> {
    (0..3u64)
        .map(|s| {
            (0..20u64)
                .map(|i| ((s * 7919 + i * 104_729 + 13) % n_vocab as u64) as u32)
                .collect()
        })
        .collect()
}

/// Writes a random Sigma model as an HF checkpoint, converts it to `ty`,
/// and returns (checkpoint dir, gguf path).
fn make(
    dir: &Path,
    cfg: ModelConfig,
    seed: u64,
    ty: GgmlType,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let model = TinyModel::new(cfg, tokenizer(), seed).expect("tiny model");
    let hf = dir.join("hf");
    write_dir(&model, &hf).expect("write checkpoint");
    let ckpt = HfCheckpoint::open(&hf, None).expect("reopen checkpoint");
    let gguf = dir.join("model.gguf");
    write_gguf(&ckpt, ty, "test", &gguf).expect("convert");
    (hf, gguf)
}

#[test]
fn f32_sigma_models_match_the_reference_on_every_logit() {
    let f32_cache = CacheTypes {
        k: GgmlType::F32,
        v: GgmlType::F32,
    };
    for (heads, aug) in [
        ((8, 2, 4), 96),
        ((8, 2, 4), 0),
        ((8, 1, 8), 48),
        ((6, 3, 3), 0),
        ((6, 3, 3), 72),
        ((4, 4, 4), 32),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (hf, gguf) = make(tmp.path(), config(heads, aug), 7, GgmlType::F32);
        let w = Weights::read(&hf);
        let n_vocab = w.usize("vocab_size");
        let mut worst = 0.0f32;
        for seq in sequences(n_vocab) {
            let want = reference(&w, &seq);
            let got = engine_logits(&gguf, &seq, f32_cache);
            for (pos, (g, r)) in got.iter().zip(&want).enumerate() {
                let e = rel_err(g, r);
                worst = worst.max(e);
                assert!(
                    e <= 1e-4,
                    "heads {heads:?} aug {aug}: position {pos} off by {e:e}"
                );
            }
            // one batched prefill gives the same last position
            let batch = engine_batch(&gguf, &seq);
            let e = rel_err(&batch, want.last().unwrap());
            assert!(
                e <= 1e-4,
                "heads {heads:?} aug {aug}: batched prefill off by {e:e}"
            );
        }
        eprintln!("heads {heads:?} aug {aug}: worst relative error {worst:e}");
    }
}

#[test]
fn quantized_sigma_models_stay_close_to_the_reference() {
    for (ty, cache, tol) in [
        (GgmlType::F16, CacheTypes::default(), 5e-3),
        (GgmlType::Q8_0, CacheTypes::default(), 8e-2),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (hf, gguf) = make(tmp.path(), config((8, 2, 4), 96), 11, ty);
        let w = Weights::read(&hf);
        let seq = &sequences(w.usize("vocab_size"))[0];
        let want = reference(&w, seq);
        let got = engine_logits(&gguf, seq, cache);
        let mut worst = 0.0f32;
        for (pos, (g, r)) in got.iter().zip(&want).enumerate() {
            let e = rel_err(g, r);
            worst = worst.max(e);
            assert!(e <= tol, "{}: position {pos} off by {e:e}", ty.name());
            let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
            let mut sorted = r.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let scale = sorted[0].abs().max(sorted.last().unwrap().abs());
            if sorted[0] - sorted[1] > 2.0 * tol * scale {
                assert_eq!(
                    argmax(g),
                    argmax(r),
                    "{}: greedy choice at {pos}",
                    ty.name()
                );
            }
        }
        eprintln!("{}: worst relative error {worst:e}", ty.name());
    }
}

#[test]
fn diffqkv_and_gqa_paths_agree_on_an_equal_head_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (hf, sigma_gguf) = make(tmp.path(), config((8, 2, 2), 0), 3, GgmlType::F32);
    let as_llama = HfCheckpoint::open(&hf, Some(Architecture::Llama)).expect("open as llama");
    let llama_gguf = tmp.path().join("llama.gguf");
    write_gguf(&as_llama, GgmlType::F32, "test", &llama_gguf).expect("convert as llama");
    let arch = |p: &Path| -> String {
        GgufFile::open(p)
            .unwrap()
            .require("general.architecture")
            .unwrap()
    };
    assert_eq!(arch(&sigma_gguf), "sigma");
    assert_eq!(arch(&llama_gguf), "llama");
    let f32_cache = CacheTypes {
        k: GgmlType::F32,
        v: GgmlType::F32,
    };
    let seq = &sequences(1000)[1];
    let a = engine_logits(&sigma_gguf, seq, f32_cache);
    let b = engine_logits(&llama_gguf, seq, f32_cache);
    for (pos, (x, y)) in a.iter().zip(&b).enumerate() {
        let e = rel_err(x, y);
        assert!(e <= 1e-4, "position {pos}: sigma and llama differ by {e:e}");
    }
}

#[test]
fn model_info_reports_k_and_v_cache_bytes_apart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("tiny.gguf");
    let o = common::run(&[
        "model",
        "tiny",
        "--arch",
        "sigma",
        "--heads",
        "32,4,16",
        "--hidden",
        "256",
        "--head-dim",
        "16",
        "--aug-q",
        "384",
        "--layers",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let o = common::run(&["model", "info", "--json", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(info["arch"], "sigma");
    assert_eq!(info["n_head_k"], 4);
    assert_eq!(info["n_head_v"], 16);
    assert_eq!(info["query_aug_length"], 384);
    // 3 layers x heads x 16 values x 2 bytes (f16)
    assert_eq!(info["kv_k_bytes_per_token"], 3 * 4 * 16 * 2);
    assert_eq!(info["kv_v_bytes_per_token"], 3 * 16 * 16 * 2);
    let text = common::stdout(&common::run(&["model", "info", out.to_str().unwrap()]));
    assert!(text.contains("32 query, 4 key, 16 value"), "{text}");
    // and it runs end to end with the real tokenizer
    let o = common::run(&[
        "generate",
        "--model",
        out.to_str().unwrap(),
        "--greedy",
        "-n",
        "8",
        "--prompt",
        "nvidia-smi",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
}

#[test]
fn tiny_models_are_deterministic_for_a_seed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    for (name, seed) in [("a.gguf", "5"), ("b.gguf", "5"), ("c.gguf", "6")] {
        let o = common::run(&["model", "tiny", "--seed", seed, "--out", &path(name)]);
        assert!(o.status.success(), "{}", common::stderr(&o));
    }
    let read = |n: &str| std::fs::read(path(n)).unwrap();
    assert_eq!(read("a.gguf"), read("b.gguf"));
    assert_ne!(read("a.gguf"), read("c.gguf"));
    assert!(
        read("a.gguf").len() < 8 << 20,
        "the default tiny model stays a few MB"
    );
}

/// Edits `config.json` in `dir` with `f`.
fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

#[test]
fn bad_checkpoints_are_one_line_errors_naming_the_key_or_tensor() {
    let convert = |hf: &Path| -> ConvertError {
        match HfCheckpoint::open(hf, None) {
            Err(e) => e,
            Ok(c) => write_gguf(&c, GgmlType::F32, "t", &hf.join("out.gguf")).unwrap_err(),
        }
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (hf, _) = make(tmp.path(), config((8, 2, 4), 0), 1, GgmlType::F32);

    let mut errors = Vec::new();
    edit_config(&hf, |c| c["num_key_heads"] = 3.into());
    errors.push((convert(&hf).to_string(), ["num_key_heads", "must divide"]));
    edit_config(&hf, |c| {
        c["num_key_heads"] = 2.into();
        c["augmented_q_dim"] = 96.into();
    });
    errors.push((
        convert(&hf).to_string(),
        ["model.layers.0.self_attn.q_gate_proj.weight", "missing"],
    ));
    edit_config(&hf, |c| {
        c["augmented_q_dim"] = 0.into();
        c["num_value_heads"] = 8.into();
    });
    errors.push((
        convert(&hf).to_string(),
        ["model.layers.0.self_attn.v_proj.weight", "shape"],
    ));
    edit_config(&hf, |c| c["model_type"] = "mamba".into());
    errors.push((convert(&hf).to_string(), ["'mamba'", "sigma"]));
    for (e, needles) in &errors {
        assert!(needles.iter().all(|n| e.contains(n)), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    let o = common::run(&[
        "model",
        "convert",
        "--from",
        "/nonexistent",
        "--out",
        "/tmp/x.gguf",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = common::stderr(&o);
    assert!(
        err.contains("/nonexistent") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn fused_decode_matches_flash_attention_in_the_model() {
    let flash = SessionOptions {
        fused_decode: None,
        ..SessionOptions::default()
    };
    let fused = SessionOptions {
        fused_decode: Some(FusedDecode::default()),
        ..SessionOptions::default()
    };
    for heads in [(8, 2, 4), (8, 1, 8), (6, 3, 3), (4, 4, 4)] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (_, gguf) = make(tmp.path(), config(heads, 48), 5, GgmlType::F32);
        let seq = &sequences(1000)[2];
        let file = GgufFile::open(&gguf).expect("open gguf");
        let model = Model::load(&file, &LoadOptions::threads(2)).expect("load");
        let mut a = Session::with_options(&model, 64, flash).expect("session");
        let mut b = Session::with_options(&model, 64, fused).expect("session");
        for (pos, &t) in seq.iter().enumerate() {
            let x = a.eval(&[t]).expect("eval").to_vec();
            let y = b.eval(&[t]).expect("eval").to_vec();
            // without selective V the fused kernel rounds exactly as
            // flash attention does
            let e = rel_err(&y, &x);
            assert!(
                x.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                "heads {heads:?} position {pos}: fused vs flash {e:e}"
            );
        }
    }
}

#[test]
fn fused_decode_needs_f16_caches() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, gguf) = make(tmp.path(), config((8, 2, 4), 0), 5, GgmlType::F32);
    let file = GgufFile::open(&gguf).expect("open gguf");
    let model = Model::load(&file, &LoadOptions::threads(2)).expect("load");
    let opts = SessionOptions {
        cache: CacheTypes {
            k: GgmlType::Q8_0,
            v: GgmlType::F16,
        },
        fused_decode: Some(FusedDecode::default()),
        stock_attention: None,
    };
    let err = Session::with_options(&model, 64, opts)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("f16") && err.contains("q8_0"), "{err}");
}

/// Head ratios of the stock-attention tests: K and V grouped apart, one K
/// head for all, equal counts, and more K than V heads.
const STOCK_HEADS: [(usize, usize, usize); 5] =
    [(8, 2, 4), (8, 1, 8), (6, 3, 3), (4, 4, 4), (8, 4, 2)];

/// The stock-op path (the one that runs on CUDA) against the independent
/// f32 reference, decoding token by token and in one batched prefill.
/// Tolerance as for flash attention on f32: 1e-4 of the largest logit.
#[test]
fn stock_attention_matches_the_reference_on_every_logit() {
    for heads in STOCK_HEADS {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (hf, gguf) = make(tmp.path(), config(heads, 48), 7, GgmlType::F32);
        let w = Weights::read(&hf);
        let seq = &sequences(w.usize("vocab_size"))[0];
        let want = reference(&w, seq);
        let got = engine_logits_with(&gguf, seq, stock(F32_CACHE, None));
        let mut worst = 0.0f32;
        for (pos, (g, r)) in got.iter().zip(&want).enumerate() {
            let e = rel_err(g, r);
            worst = worst.max(e);
            assert!(e <= 1e-4, "heads {heads:?}: position {pos} off by {e:e}");
        }
        let batch = engine_batch_with(&gguf, seq, stock(F32_CACHE, None));
        let e = rel_err(&batch, want.last().unwrap());
        assert!(e <= 1e-4, "heads {heads:?}: batched prefill off by {e:e}");
        eprintln!("stock, heads {heads:?}: worst relative error {worst:e}");
    }
}

/// On the default f16 cache the stock path and flash attention round
/// differently (flash accumulates V in f16, stock rounds the probabilities
/// to f16 and accumulates in f32): within 5e-3 of the largest logit, as the
/// fused kernel is held to.
#[test]
fn stock_attention_matches_flash_attention_on_f16_caches() {
    for heads in STOCK_HEADS {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (_, gguf) = make(tmp.path(), config(heads, 48), 5, GgmlType::F32);
        let seq = &sequences(1000)[2];
        let a = engine_logits_with(&gguf, seq, flash(CacheTypes::default()));
        let b = engine_logits_with(&gguf, seq, stock(CacheTypes::default(), None));
        let mut worst = 0.0f32;
        for (pos, (x, y)) in a.iter().zip(&b).enumerate() {
            let e = rel_err(y, x);
            worst = worst.max(e);
            assert!(
                e <= 5e-3,
                "heads {heads:?} position {pos}: stock vs flash {e:e}"
            );
        }
        eprintln!("stock vs flash, heads {heads:?}: worst {worst:e}");
    }
}

/// Selective V from top_k and get_rows keeps the same rows as the fused
/// kernel's, with and without renormalising (2 kept rows of 16 or more
/// positions, so it applies from position 16 of the 20).
#[test]
fn stock_selective_v_matches_the_fused_kernel() {
    for renormalize in [false, true] {
        let sv = Some(SelectV {
            top_k: 2,
            renormalize,
        });
        for heads in [(8, 2, 4), (8, 4, 2), (4, 4, 4)] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let (_, gguf) = make(tmp.path(), config(heads, 0), 9, GgmlType::F32);
            let seq = &sequences(1000)[1];
            let fused = SessionOptions {
                cache: CacheTypes::default(),
                fused_decode: Some(FusedDecode { select_v: sv }),
                stock_attention: None,
            };
            let a = engine_logits_with(&gguf, seq, fused);
            let b = engine_logits_with(&gguf, seq, stock(CacheTypes::default(), sv));
            let full = engine_logits_with(&gguf, seq, stock(CacheTypes::default(), None));
            for (pos, (x, y)) in a.iter().zip(&b).enumerate() {
                let e = rel_err(y, x);
                assert!(
                    e <= 5e-3,
                    "heads {heads:?} renormalize {renormalize} position {pos}: {e:e}"
                );
            }
            // the selection is really applied from 16 positions on
            let last = seq.len() - 1;
            assert!(
                rel_err(&b[last], &full[last]) > 1e-4,
                "heads {heads:?}: selective V changed nothing"
            );
        }
    }
}

#[test]
fn stock_and_fused_are_one_choice() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, gguf) = make(tmp.path(), config((8, 2, 4), 0), 5, GgmlType::F32);
    let file = GgufFile::open(&gguf).expect("open gguf");
    let model = Model::load(&file, &LoadOptions::threads(2)).expect("load");
    let opts = SessionOptions {
        fused_decode: Some(FusedDecode::default()),
        ..stock(CacheTypes::default(), None)
    };
    let err = Session::with_options(&model, 64, opts)
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("choose one attention path"),
        "{err}"
    );
}

/// `sigma generate --attention stock` on a `sigma model tiny` model gives
/// the flash path's logits (--dump-logits), and the JSON names the device.
#[test]
fn generate_with_stock_attention_matches_flash_on_a_tiny_model() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tmp.path().join("tiny.gguf");
    let model = model.to_str().unwrap();
    let o = common::run(&["model", "tiny", "--type", "f16", "--out", model]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let logits = |attention: &str| -> Vec<f32> {
        let out = tmp.path().join(format!("{attention}.json"));
        let o = common::run(&[
            "generate",
            "--model",
            model,
            "--device",
            "cpu",
            "--attention",
            attention,
            "--greedy",
            "-n",
            "8",
            "--prompt",
            "nvidia-smi shows",
            "--json",
            "--dump-logits",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{attention}: {}", common::stderr(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(j["device"], "cpu", "{j}");
        assert_eq!(j["device_reason"], "asked for", "{j}");
        serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
    };
    let (a, b) = (logits("flash"), logits("stock"));
    let e = rel_err(&b, &a);
    assert!(e <= 5e-3, "stock vs flash through the CLI: {e:e}");
}

#[test]
fn bench_diffqkv_prints_the_documented_json() {
    let o = common::run(&[
        "bench",
        "diffqkv",
        "--json",
        "--max-prefix",
        "4096",
        "--min-steps",
        "6",
        "--max-steps",
        "6",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let rows = j["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    for (row, prefix) in rows.iter().zip([2048, 4096]) {
        assert_eq!(row["prefix"], prefix);
        for key in [
            "gqa_ms",
            "sigma_ms",
            "reduction_pct",
            "select_v_ms",
            "select_v_speedup",
        ] {
            let spread = &row[key];
            let [median, lo, hi] = ["median", "lo", "hi"].map(|k| spread[k].as_f64());
            assert!(median.is_some_and(f64::is_finite), "{key} in {row}");
            // six rounds are enough for a 95% interval of the median
            assert_eq!(spread["ci95"], true, "{key} in {row}");
            assert!(lo <= median && median <= hi, "{key} in {row}");
        }
        assert_eq!(row["steps"], 6);
        assert!(row["gqa_ms"]["median"].as_f64().unwrap() > 0.0);
    }
    for key in ["before", "after", "cores"] {
        assert!(j["load"][key].is_number(), "load.{key} in {j}");
    }
}

#[test]
fn bench_decodes_from_a_synthetic_long_cache_with_compressed_types() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("tiny.gguf");
    // head size 32: whole blocks of the quantised cache types
    let o = common::run(&[
        "model",
        "tiny",
        "--hidden",
        "256",
        "--heads",
        "8,2,4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    for extra in [
        &["--cache-type-k", "q4_0", "--cache-type-v", "q8_0"][..],
        &["--select-v", "100"][..],
    ] {
        let mut args = vec![
            "bench",
            "--model",
            out.to_str().unwrap(),
            "--context",
            "2048",
            "--synthetic-kv",
            "--gen-tokens",
            "4",
            "--runs",
            "1",
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = common::run(&args);
        assert!(o.status.success(), "{extra:?}: {}", common::stderr(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert!(j["ours"]["decode_tok_s"].as_f64().unwrap() > 0.0, "{j}");
        assert!(j["ours"]["prefill_tok_s"].is_null(), "{j}");
        // 2 layers x 2 K heads / 4 V heads x 32 values
        let (k, v) = (
            j["kv_k_bytes_per_token"].as_u64().unwrap(),
            j["kv_v_bytes_per_token"].as_u64().unwrap(),
        );
        if extra[0] == "--cache-type-k" {
            // q4_0: 18 bytes per 32 values; q8_0: 34
            assert_eq!((k, v), (2 * 2 * 18, 2 * 4 * 34), "{j}");
        } else {
            assert_eq!((k, v), (2 * 2 * 32 * 2, 2 * 4 * 32 * 2), "{j}");
        }
    }
}

#[test]
fn tiny_llama_and_qwen2_models_run_end_to_end() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for arch in ["llama", "qwen2"] {
        let out = tmp.path().join(format!("{arch}.gguf"));
        let out = out.to_str().unwrap();
        let o = common::run(&[
            "model", "tiny", "--arch", arch, "--heads", "8,2,2", "--out", out,
        ]);
        assert!(o.status.success(), "{arch}: {}", common::stderr(&o));
        let info = common::stdout(&common::run(&["model", "info", out]));
        assert!(info.contains(&format!("({arch})")), "{info}");
        let o = common::run(&[
            "generate", "--model", out, "--greedy", "-n", "4", "--prompt", "hi",
        ]);
        assert!(o.status.success(), "{arch}: {}", common::stderr(&o));
    }
}
