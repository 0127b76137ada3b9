//! Hugging Face checkpoints: `config.json`, `*.safetensors`, `tokenizer.json`
//! and `tokenizer_config.json` in one directory.
//!
//! [`HfCheckpoint::open`] reads one for conversion; [`write_dir`] writes any
//! [`TensorSource`] in the same layout (f32), which is how the tests make a
//! Sigma checkpoint with our own code and round-trip it. The expected
//! `config.json` keys are listed in `model/SIGMA-GGUF.md`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ConvertError, HfTensor, ModelConfig, TensorSource};
use crate::engine::model::Architecture;
use crate::engine::tokenizer::{Tokenizer, TokenizerSpec};

/// Text tokenized both ways to find which pre-tokenizer family a
/// `tokenizer.json` uses: digits, contractions in both cases, runs of
/// spaces and newlines, code, punctuation and non-Latin scripts.
const PROBE: &str = "Hello world! I'LL see you're 12345 + 3.14159 == x\n\n\n  \t  fn main() {\n    println!(\"{}\", a_b);\n}\n   trailing   \nÜber café 你好 мир 🚀 don't DON'T ";

/// `config.json` as Hugging Face writes it (the keys we read).
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    num_key_heads: Option<usize>,
    num_value_heads: Option<usize>,
    head_dim: Option<usize>,
    augmented_q_dim: Option<usize>,
    rms_norm_eps: f32,
    rope_theta: Option<f32>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
}

/// The architecture named by `model_type`, unless overridden.
fn architecture(
    model_type: Option<&str>,
    forced: Option<Architecture>,
) -> Result<Architecture, ConvertError> {
    if let Some(a) = forced {
        return Ok(a);
    }
    let name = model_type.unwrap_or("");
    Architecture::from_gguf(name).ok_or_else(|| ConvertError::Config {
        key: "model_type".into(),
        problem: format!(
            "is '{name}'; supported: {} (or pass --arch)",
            Architecture::ALL.map(Architecture::gguf_name).join(", ")
        ),
    })
}

impl HfConfig {
    /// The normalised config for `arch`.
    fn normalise(&self, arch: Architecture) -> ModelConfig {
        let head_dim = self
            .head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1));
        let shared = self.num_key_value_heads.unwrap_or(self.num_attention_heads);
        ModelConfig {
            arch,
            n_vocab: self.vocab_size,
            n_embd: self.hidden_size,
            n_layer: self.num_hidden_layers,
            n_ff: self.intermediate_size,
            n_head: self.num_attention_heads,
            n_head_k: self.num_key_heads.unwrap_or(shared),
            n_head_v: self.num_value_heads.unwrap_or(shared),
            head_dim,
            head_dim_v: head_dim,
            n_aug_q: self.augmented_q_dim.unwrap_or(0),
            rms_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta.unwrap_or(10_000.0),
            n_ctx: self.max_position_embeddings.unwrap_or(4096),
            tied_embeddings: self.tie_word_embeddings.unwrap_or(false),
        }
    }
}

/// Reads and parses a JSON file.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConvertError> {
    let text = fs::read_to_string(path).map_err(|source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ConvertError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// A Hugging Face checkpoint directory, loaded for conversion.
pub struct HfCheckpoint {
    config: ModelConfig,
    tokenizer: TokenizerSpec,
    /// Each safetensors file's bytes.
    files: Vec<(PathBuf, Vec<u8>)>,
    /// Tensor name -> index into `files`.
    index: HashMap<String, usize>,
}

impl HfCheckpoint {
    /// Reads `dir`; `arch` overrides `config.json`'s `model_type` (for
    /// example to load a GQA checkpoint as Sigma).
    pub fn open(dir: &Path, arch: Option<Architecture>) -> Result<Self, ConvertError> {
        if !dir.is_dir() {
            return Err(ConvertError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not a directory; pass the checkpoint directory holding config.json",
                ),
            });
        }
        let raw: HfConfig = read_json(&dir.join("config.json"))?;
        let arch = architecture(raw.model_type.as_deref(), arch)?;
        let config = raw.normalise(arch);
        config.validate()?;

        let mut paths: Vec<PathBuf> = fs::read_dir(dir)
            .map_err(|source| ConvertError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(ConvertError::Safetensors {
                path: dir.to_path_buf(),
                problem: "no *.safetensors file in the directory".into(),
            });
        }
        let mut files = Vec::new();
        let mut index = HashMap::new();
        for path in paths {
            let bytes = fs::read(&path).map_err(|source| ConvertError::Io {
                path: path.clone(),
                source,
            })?;
            let st = SafeTensors::deserialize(&bytes).map_err(|e| ConvertError::Safetensors {
                path: path.clone(),
                problem: e.to_string(),
            })?;
            for name in st.names() {
                index.insert(name.to_string(), files.len());
            }
            files.push((path, bytes));
        }
        let tokenizer = read_tokenizer(dir, &raw)?;
        Ok(Self {
            config,
            tokenizer,
            files,
            index,
        })
    }
}

impl TensorSource for HfCheckpoint {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn tokenizer(&self) -> &TokenizerSpec {
        &self.tokenizer
    }

    fn tensor(&self, name: &str) -> Result<Option<HfTensor>, ConvertError> {
        let Some(&i) = self.index.get(name) else {
            return Ok(None);
        };
        let (path, bytes) = &self.files[i];
        let bad = |problem: String| ConvertError::Safetensors {
            path: path.clone(),
            problem,
        };
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let view = st.tensor(name).map_err(|e| bad(e.to_string()))?;
        Ok(Some(HfTensor {
            shape: view.shape().to_vec(),
            data: to_f32(&view).ok_or_else(|| {
                bad(format!(
                    "tensor '{name}' has dtype {:?}; supported: F32, F16, BF16",
                    view.dtype()
                ))
            })?,
        }))
    }
}

/// A tensor's values as f32, for the float dtypes checkpoints use.
fn to_f32(view: &TensorView<'_>) -> Option<Vec<f32>> {
    let data = view.data();
    let words = |n: usize| data.chunks_exact(n);
    Some(match view.dtype() {
        Dtype::F32 => words(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => words(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => words(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// A special token given as a string or as `{"content": ...}`.
fn token_content(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v.get("content")?.as_str())
}

/// An id given as a number or a list (the first one).
fn first_id(v: Option<&Value>) -> Option<u32> {
    let v = v?;
    v.as_u64()
        .or_else(|| v.as_array()?.first()?.as_u64())
        .and_then(|id| u32::try_from(id).ok())
}

/// Converts `tokenizer.json` (+ `tokenizer_config.json`) into GGUF terms.
fn read_tokenizer(dir: &Path, config: &HfConfig) -> Result<TokenizerSpec, ConvertError> {
    let path = dir.join("tokenizer.json");
    let json_text = fs::read_to_string(&path).map_err(|source| ConvertError::Io {
        path: path.clone(),
        source,
    })?;
    let tj: Value = serde_json::from_str(&json_text).map_err(|source| ConvertError::Json {
        path: path.clone(),
        source,
    })?;
    let bad = |what: &str| ConvertError::Tokenizer(format!("'{}': {what}", path.display()));
    let model = &tj["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(bad(
            "only byte-level BPE tokenizers (model.type = \"BPE\") are supported",
        ));
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| bad("model.vocab is not an object"))?;
    let mut by_id: Vec<(u32, String, i32)> = vocab
        .iter()
        .filter_map(|(t, id)| Some((u32::try_from(id.as_u64()?).ok()?, t.clone(), 1)))
        .collect();
    for added in tj["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(text)) = (added["id"].as_u64(), added["content"].as_str()) else {
            continue;
        };
        let ty = if added["special"].as_bool().unwrap_or(false) {
            3
        } else {
            4
        };
        let id = u32::try_from(id).map_err(|_| bad("an added token id is too large"))?;
        by_id.retain(|(i, _, _)| *i != id);
        by_id.push((id, text.to_string(), ty));
    }
    by_id.sort_by_key(|(id, _, _)| *id);
    let n = by_id.last().map_or(0, |(id, _, _)| *id as usize + 1);
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut token_types = vec![5; n];
    for (id, text, ty) in by_id {
        tokens[id as usize] = text;
        token_types[id as usize] = ty;
    }
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| bad("model.merges is not a list"))?
        .iter()
        .map(|m| match m {
            Value::String(s) => Some(s.clone()),
            Value::Array(pair) => Some(format!(
                "{} {}",
                pair.first()?.as_str()?,
                pair.get(1)?.as_str()?
            )),
            _ => None,
        })
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| bad("a merge is neither \"a b\" nor [\"a\", \"b\"]"))?;

    let tc_path = dir.join("tokenizer_config.json");
    let tc: Value = if tc_path.exists() {
        read_json(&tc_path)?
    } else {
        Value::Null
    };
    let id_of = |key: &str| -> Option<u32> {
        let text = token_content(tc.get(key)?)?;
        tokens.iter().position(|t| t == text).map(|i| i as u32)
    };
    let mut spec = TokenizerSpec {
        pre: String::new(),
        bos: id_of("bos_token").or_else(|| first_id(config.bos_token_id.as_ref())),
        eos: id_of("eos_token").or_else(|| first_id(config.eos_token_id.as_ref())),
        add_bos: tc["add_bos_token"].as_bool().unwrap_or(false),
        add_eos: tc["add_eos_token"].as_bool().unwrap_or(false),
        role_ids: Vec::new(),
        chat_template: tc["chat_template"].as_str().map(str::to_string),
        tokens,
        merges,
        token_types,
    };
    spec.pre = probe_pre(&json_text, &spec).map_err(|e| bad(&e))?;
    Ok(spec)
}

/// The pre-tokenizer family that makes our tokenizer agree with the
/// checkpoint's own on [`PROBE`] (names differ between the two worlds, so
/// behaviour decides, as llama.cpp's converter does with its hashes).
fn probe_pre(json_text: &str, spec: &TokenizerSpec) -> Result<String, String> {
    let theirs: tokenizers::Tokenizer = json_text
        .parse()
        .map_err(|e| format!("the tokenizers library cannot load it: {e}"))?;
    let want = theirs
        .encode_fast(PROBE, false)
        .map_err(|e| format!("cannot tokenize with it: {e}"))?
        .get_ids()
        .to_vec();
    let families = TokenizerSpec::pre_families();
    for family in &families {
        let candidate = TokenizerSpec {
            pre: (*family).to_string(),
            ..spec.clone()
        };
        let ours = Tokenizer::from_spec(&candidate).map_err(|e| e.to_string())?;
        if ours.encode(PROBE, false).map_err(|e| e.to_string())? == want {
            return Ok((*family).to_string());
        }
    }
    Err(format!(
        "its pre-tokenizer matches none of the families we reproduce ({})",
        families.join(", ")
    ))
}

/// Writes `src` as a Hugging Face checkpoint in `dir` (created if needed):
/// `config.json`, `model.safetensors` (f32), `tokenizer.json`,
/// `tokenizer_config.json`.
pub fn write_dir(src: &dyn TensorSource, dir: &Path) -> Result<(), ConvertError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConvertError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let c = src.config();
    let t = src.tokenizer();
    let mut config = json!({
        "model_type": c.arch.gguf_name(),
        "vocab_size": c.n_vocab,
        "hidden_size": c.n_embd,
        "intermediate_size": c.n_ff,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "head_dim": c.head_dim,
        "rms_norm_eps": c.rms_eps,
        "rope_theta": c.rope_theta,
        "max_position_embeddings": c.n_ctx,
        "tie_word_embeddings": c.tied_embeddings,
        "bos_token_id": t.bos,
        "eos_token_id": t.eos,
    });
    if c.arch == Architecture::Sigma {
        config["num_key_heads"] = json!(c.n_head_k);
        config["num_value_heads"] = json!(c.n_head_v);
        config["augmented_q_dim"] = json!(c.n_aug_q);
    } else {
        config["num_key_value_heads"] = json!(c.n_head_k);
    }
    let config_path = dir.join("config.json");
    fs::write(
        &config_path,
        serde_json::to_string_pretty(&config).unwrap_or_default(),
    )
    .map_err(io(&config_path))?;

    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for e in super::entries(c) {
        if let Some(t) = src.tensor(&e.hf)? {
            let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push((e.hf, t.shape, bytes));
        }
    }
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConvertError::Tokenizer(e.to_string()))?;
    let st_path = dir.join("model.safetensors");
    safetensors::tensor::serialize_to_file(views, None, &st_path).map_err(|e| {
        ConvertError::Safetensors {
            path: st_path.clone(),
            problem: e.to_string(),
        }
    })?;

    let tok = Tokenizer::from_spec(t)?;
    let tok_path = dir.join("tokenizer.json");
    fs::write(&tok_path, tok.to_hf_json()?).map_err(io(&tok_path))?;
    let name = |id: Option<u32>| id.and_then(|i| t.tokens.get(i as usize)).cloned();
    let tc = json!({
        "bos_token": name(t.bos),
        "eos_token": name(t.eos),
        "add_bos_token": t.add_bos,
        "add_eos_token": t.add_eos,
        "chat_template": t.chat_template,
    });
    let tc_path = dir.join("tokenizer_config.json");
    fs::write(
        &tc_path,
        serde_json::to_string_pretty(&tc).unwrap_or_default(),
    )
    .map_err(io(&tc_path))?;
    Ok(())
}
