//! `sigma model`: list, pull, inspect and locate models.

use std::path::PathBuf;

use anyhow::Context as _;
use indicatif::HumanBytes;

use crate::engine::ffi::gguf::GgufFile;
use crate::engine::info::ModelInfo;
use crate::engine::registry::{Registry, Resolved};

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
    },
    /// Print the path of a downloaded model.
    Path {
        /// A model name from `sigma model list`.
        name: String,
    },
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
        ModelCommand::Info { model, json } => info(&registry, &model, json),
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
    println!(
        "{:<22} {:>10}  {:<7} {:<6} {:<10} DESCRIPTION",
        "NAME", "SIZE", "QUANT", "ARCH", "STATUS"
    );
    for m in registry.models() {
        let name = if m.name == registry.default_model() {
            format!("{} *", m.name)
        } else {
            m.name.clone()
        };
        let status = if registry.is_cached(m) {
            "downloaded"
        } else {
            "-"
        };
        println!(
            "{:<22} {:>10}  {:<7} {:<6} {:<10} {}",
            name,
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

/// `sigma model info`.
fn info(registry: &Registry, spec: &str, json: bool) -> anyhow::Result<i32> {
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
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
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
        format!("{} query, {} key/value", info.n_head, info.n_head_kv),
    );
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
