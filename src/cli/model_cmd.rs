//! `sigma model`: list, pull, inspect, locate, convert and generate models.

use std::path::PathBuf;

use anyhow::Context as _;
use indicatif::HumanBytes;

use crate::engine::convert::hf::{HfCheckpoint, write_dir};
use crate::engine::convert::retrofit::{Merge, RetrofitOptions, retrofit};
use crate::engine::convert::tiny::TinyModel;
use crate::engine::convert::{ModelConfig, write_gguf};
use crate::engine::device::{self, DeviceRequest, GpuLayers, Need};
use crate::engine::ffi::ggml::GgmlType;
use crate::engine::ffi::gguf::GgufFile;
use crate::engine::info::ModelInfo;
use crate::engine::kv_cache::CacheTypes;
use crate::engine::model::Architecture;
use crate::engine::registry::{Registry, Resolved};
use crate::engine::tokenizer::TokenizerSpec;

/// Arguments of `sigma model`.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Directory pulled models live in [default: ~/.cache/sigma/models].
    #[arg(long, env = "SIGMA_MODELS_DIR", global = true, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: ModelCommand,
}

/// The `sigma model` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// List the known models and whether each is downloaded.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download a model into the cache and verify it (no-op when present).
    Pull {
        /// A model name from `sigma model list`.
        name: String,
    },
    /// Show a model's architecture, shapes, quantisation and KV-cache cost.
    Info {
        /// A model name or the path of a .gguf file.
        model: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also say where the model would run and why (auto when given
        /// without a value; as `--device` of generate and bench).
        #[arg(long, value_name = "DEVICE", num_args = 0..=1, default_missing_value = "auto")]
        device: Option<DeviceRequest>,
        /// With --device: the context the memory check assumes.
        #[arg(long, value_name = "N", default_value_t = 4096, requires = "device")]
        ctx: usize,
        /// With --device: blocks on the GPU (all, or the last N).
        #[arg(long, value_name = "N|all", default_value = "all", requires = "device")]
        gpu_layers: GpuLayers,
        /// With --device: take a GPU even when others keep it busy.
        #[arg(long, requires = "device")]
        allow_busy_gpu: bool,
    },
    /// Print the path of a downloaded model.
    Path {
        /// A model name from `sigma model list`.
        name: String,
    },
    /// Convert a Hugging Face checkpoint (Sigma, Llama or Qwen2) to GGUF.
    Convert {
        /// Checkpoint directory: config.json, *.safetensors, tokenizer.json.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The GGUF file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Encoding of the weight matrices.
        #[arg(long = "type", default_value = "f16", value_parser = parse_type)]
        ty: GgmlType,
        /// Architecture to write, overriding config.json's model_type.
        #[arg(long, value_parser = parse_arch)]
        arch: Option<Architecture>,
    },
    /// Rewrite a GQA model (qwen2, llama) as a Sigma model with fewer K heads
    /// than V heads (DiffQKV): K heads merged by a RoPE-exact complex map,
    /// everything else copied (model/SIGMA-GGUF.md, "Retrofits").
    Retrofit {
        /// The base model: a name from `sigma model list` or a GGUF file.
        #[arg(long, value_name = "NAME|PATH")]
        from: String,
        /// K heads of the result (fewer than the base's KV heads, dividing them).
        #[arg(long, value_name = "N")]
        k_heads: usize,
        /// The GGUF file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A fitted delta (model/retrofit/fit.py) to apply instead of a
        /// data-free merge.
        #[arg(long, value_name = "FILE", conflicts_with = "merge")]
        delta: Option<PathBuf>,
        /// Data-free merge: mean pooling, or the RoPE-exact complex merge
        /// fitted on the K weights.
        #[arg(long, value_enum, default_value = "weights")]
        merge: DataFreeMerge,
        /// Encoding of the rewritten Q and K projections.
        #[arg(long = "type", default_value = "q8_0", value_parser = parse_type)]
        ty: GgmlType,
    },
    /// Make a small random-weight model (deterministic for a seed) that runs
    /// end to end with the tiny default model's tokenizer.
    Tiny {
        /// Architecture.
        #[arg(long, default_value = "sigma", value_parser = parse_arch)]
        arch: Architecture,
        /// The GGUF file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Also write the model as a Hugging Face checkpoint (f32) here.
        #[arg(long, value_name = "DIR")]
        hf_dir: Option<PathBuf>,
        /// Random seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Encoding of the weight matrices.
        #[arg(long = "type", default_value = "q8_0", value_parser = parse_type)]
        ty: GgmlType,
        /// Transformer blocks.
        #[arg(long, default_value_t = 2)]
        layers: usize,
        /// Hidden size.
        #[arg(long, default_value_t = 64)]
        hidden: usize,
        /// Query, key and value head counts (key = value for llama/qwen2).
        #[arg(long, default_value = "8,2,4", value_parser = parse_heads)]
        heads: [usize; 3],
        /// Head size [default: hidden / query heads].
        #[arg(long)]
        head_dim: Option<usize>,
        /// Augmented-Q width (sigma only; 0 = none).
        #[arg(long, default_value_t = 96)]
        aug_q: usize,
        /// FFN inner size.
        #[arg(long, default_value_t = 128)]
        ff: usize,
        /// Context length recorded in the file.
        #[arg(long, default_value_t = 4096)]
        ctx: usize,
        /// Take the tokenizer from this GGUF (any model, a tiny one made
        /// here will do) instead of the tiny default model, which may need
        /// a download.
        #[arg(long, value_name = "FILE")]
        vocab: Option<PathBuf>,
    },
}

/// The merges `sigma model retrofit` can do without a fitted delta.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DataFreeMerge {
    /// Mean pooling of each group's K heads.
    Mean,
    /// RoPE-exact complex merge fitted on the K weights.
    Weights,
}

/// Parses a ggml type name (`f32`, `f16`, `q8_0`, `q4_0`, `q4_k`).
fn parse_type(s: &str) -> Result<GgmlType, String> {
    GgmlType::from_name(s)
        .ok_or_else(|| format!("unknown type '{s}'; try f32, f16, q8_0, q4_0, q4_k"))
}

/// Parses an architecture name.
fn parse_arch(s: &str) -> Result<Architecture, String> {
    Architecture::from_gguf(s).ok_or_else(|| {
        format!(
            "unknown architecture '{s}'; supported: {}",
            Architecture::ALL.map(Architecture::gguf_name).join(", ")
        )
    })
}

/// Parses `Q,K,V` head counts.
fn parse_heads(s: &str) -> Result<[usize; 3], String> {
    let parts: Vec<usize> = s
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("'{s}' is not Q,K,V head counts such as 8,2,4"))?;
    <[usize; 3]>::try_from(parts)
        .map_err(|_| format!("'{s}' is not three counts Q,K,V such as 8,2,4"))
}

/// Runs `sigma model`; returns the exit code.
pub fn run(args: ModelArgs) -> anyhow::Result<i32> {
    let registry = match args.models_dir {
        Some(dir) => Registry::with_cache_dir(dir)?,
        None => Registry::load()?,
    };
    match args.command {
        ModelCommand::List { json } => list(&registry, json),
        ModelCommand::Pull { name } => {
            let path = registry.pull(&name, true)?;
            println!("{}", path.display());
            Ok(0)
        }
        ModelCommand::Info {
            model,
            json,
            device,
            ctx,
            gpu_layers,
            allow_busy_gpu,
        } => {
            let device = device.map(|request| DeviceQuery {
                request,
                ctx,
                layers: gpu_layers,
                allow_busy: allow_busy_gpu,
            });
            info(&registry, &model, json, device)
        }
        ModelCommand::Convert {
            from,
            out,
            ty,
            arch,
        } => {
            let checkpoint = HfCheckpoint::open(&from, arch)?;
            let name = from
                .file_name()
                .map_or("converted".into(), |n| n.to_string_lossy().into_owned());
            write_gguf(&checkpoint, ty, &name, &out)?;
            println!("{}", out.display());
            Ok(0)
        }
        ModelCommand::Retrofit {
            from,
            k_heads,
            out,
            delta,
            merge,
            ty,
        } => {
            let base = registry.locate(Some(&from), true)?;
            let merge = match (delta, merge) {
                (Some(path), _) => Merge::Delta(path),
                (None, DataFreeMerge::Mean) => Merge::Mean,
                (None, DataFreeMerge::Weights) => Merge::Weights,
            };
            let r = retrofit(&base, &RetrofitOptions { k_heads, merge, ty }, &out)?;
            eprintln!(
                "{} retrofitted: {} query, {} key, {} value heads",
                r.base_arch, r.n_head, r.n_head_k, r.n_head_v
            );
            println!("{}", out.display());
            Ok(0)
        }
        ModelCommand::Tiny {
            arch,
            out,
            hf_dir,
            seed,
            ty,
            layers,
            hidden,
            heads: [n_head, n_head_k, n_head_v],
            head_dim,
            aug_q,
            ff,
            ctx,
            vocab,
        } => {
            let head_dim = head_dim.unwrap_or(hidden / n_head.max(1));
            let is_sigma = arch == Architecture::Sigma;
            let config = ModelConfig {
                arch,
                n_vocab: 0,
                n_embd: hidden,
                n_layer: layers,
                n_ff: ff,
                n_head,
                n_head_k,
                n_head_v: if is_sigma { n_head_v } else { n_head_k },
                head_dim,
                head_dim_v: head_dim,
                n_aug_q: if is_sigma { aug_q } else { 0 },
                rms_eps: 1e-5,
                rope_theta: 10_000.0,
                n_ctx: ctx,
                tied_embeddings: true,
            };
            let vocab = match vocab {
                Some(file) => file,
                None => registry.locate(Some(registry.tiny_model()), true)?,
            };
            let tokenizer = TokenizerSpec::from_gguf(&GgufFile::open(&vocab)?)?;
            let model = TinyModel::new(config, tokenizer, seed)?;
            let name = format!("tiny-{}-seed{seed}", arch.gguf_name());
            write_gguf(&model, ty, &name, &out)?;
            if let Some(dir) = hf_dir {
                write_dir(&model, &dir)?;
            }
            println!("{}", out.display());
            Ok(0)
        }
        ModelCommand::Path { name } => {
            let entry = registry.find(&name)?;
            let path = registry.cached_path(entry);
            anyhow::ensure!(
                registry.is_cached(entry),
                "model '{name}' is not downloaded; run `sigma model pull {name}`"
            );
            println!("{}", path.display());
            Ok(0)
        }
    }
}

/// `sigma model list`.
fn list(registry: &Registry, json: bool) -> anyhow::Result<i32> {
    if json {
        let models: Vec<serde_json::Value> = registry
            .models()
            .iter()
            .map(|m| {
                serde_json::json!({
                    "name": m.name,
                    "file": m.file,
                    "size": m.size,
                    "sha256": m.sha256,
                    "arch": m.arch,
                    "quant": m.quant,
                    "description": m.description,
                    "default": m.name == registry.default_model(),
                    "downloaded": registry.is_cached(m),
                    "path": registry.cached_path(m),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&models)?);
        return Ok(0);
    }
    let name_of = |m: &crate::engine::registry::ModelEntry| {
        if m.name == registry.default_model() {
            format!("{} *", m.name)
        } else {
            m.name.clone()
        }
    };
    // columns as wide as their longest entry
    let width = |f: &dyn Fn(&crate::engine::registry::ModelEntry) -> usize, title: &str| {
        registry
            .models()
            .iter()
            .map(f)
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let wn = width(&|m| name_of(m).len(), "NAME");
    let wq = width(&|m| m.quant.len(), "QUANT");
    let wa = width(&|m| m.arch.len(), "ARCH");
    println!(
        "{:<wn$} {:>10}  {:<wq$} {:<wa$} {:<10} DESCRIPTION",
        "NAME", "SIZE", "QUANT", "ARCH", "STATUS"
    );
    for m in registry.models() {
        let status = if registry.is_cached(m) {
            "downloaded"
        } else {
            "-"
        };
        println!(
            "{:<wn$} {:>10}  {:<wq$} {:<wa$} {:<10} {}",
            name_of(m),
            HumanBytes(m.size).to_string(),
            m.quant,
            m.arch,
            status,
            m.description
        );
    }
    println!("(* default; cache: {})", registry.cache_dir().display());
    Ok(0)
}

/// What `sigma model info --device` asks.
struct DeviceQuery {
    request: DeviceRequest,
    ctx: usize,
    layers: GpuLayers,
    allow_busy: bool,
}

/// `sigma model info`.
fn info(
    registry: &Registry,
    spec: &str,
    json: bool,
    device: Option<DeviceQuery>,
) -> anyhow::Result<i32> {
    let resolved = registry.resolve(spec)?;
    if let Resolved::Known(entry, path) = &resolved {
        anyhow::ensure!(
            path.exists(),
            "model '{}' is not downloaded; run `sigma model pull {}`",
            entry.name,
            entry.name
        );
    }
    let gguf = GgufFile::open(resolved.path())?;
    let info = ModelInfo::from_gguf(&gguf)
        .with_context(|| format!("reading the header of '{}'", resolved.path().display()))?;
    let selection = match device {
        Some(q) => {
            let need = Need::for_model(&gguf, CacheTypes::default(), q.ctx, q.layers)?;
            Some(device::select(q.request, need, q.allow_busy).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    if json {
        let mut j = serde_json::to_value(&info)?;
        if let Some(s) = &selection {
            j["device"] = serde_json::json!({ "label": s.label, "reason": s.reason });
            j["cpu_kernels"] = match crate::engine::ffi::cpu::chosen() {
                Ok(c) => serde_json::json!({ "variant": c.variant.name, "reason": c.reason }),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
        }
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(0);
    }
    let row = |k: &str, v: String| println!("{k:<16} {v}");
    row(
        "file",
        format!("{} ({})", info.path, HumanBytes(info.file_size)),
    );
    row(
        "model",
        format!(
            "{} ({})",
            info.name.as_deref().unwrap_or("unnamed"),
            info.arch
        ),
    );
    row("layers", info.n_layer.to_string());
    row("hidden", info.n_embd.to_string());
    row(
        "heads",
        format!(
            "{} query, {} key, {} value",
            info.n_head, info.n_head_k, info.n_head_v
        ),
    );
    if info.query_aug_length > 0 {
        row("augmented Q", info.query_aug_length.to_string());
    }
    row(
        "head dim",
        format!("{} key, {} value", info.head_dim_k, info.head_dim_v),
    );
    row("ffn", info.n_ff.to_string());
    row("vocab", info.n_vocab.to_string());
    row("context", info.context_length.to_string());
    row(
        "chat template",
        if info.chat_template { "yes" } else { "no" }.to_string(),
    );
    row(
        "kv cache (f16)",
        format!(
            "K {} + V {} = {} per token; {} at {} tokens",
            HumanBytes(info.kv_k_bytes_per_token),
            HumanBytes(info.kv_v_bytes_per_token),
            HumanBytes(info.kv_bytes_per_token()),
            HumanBytes(info.kv_bytes_per_token() * info.context_length),
            info.context_length
        ),
    );
    if let Some(s) = &selection {
        row("device", s.to_string());
        row(
            "cpu kernels",
            match crate::engine::ffi::cpu::chosen() {
                Ok(c) => c.to_string(),
                Err(e) => format!("none: {e}"),
            },
        );
    }
    row("tensors", info.tensors.to_string());
    for share in &info.quant_mix {
        row(
            "",
            format!(
                "{:<6} {:>4} tensors {:>10}",
                share.ggml_type,
                share.tensors,
                HumanBytes(share.bytes).to_string()
            ),
        );
    }
    Ok(0)
}
