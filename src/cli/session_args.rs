//! Command-line options shared by the commands that run the engine: the
//! copilot's (`--run`, `--model`, `--rounds`, `--threads`), the device
//! (`--device`, `--gpu-layers`), KV cache types (differential compression),
//! the decode attention kernel and selective V fetching.

use anyhow::Context as _;

use crate::copilot::approval::RunMode;
use crate::engine::attention::SelectV;
use crate::engine::device::{DeviceChoice, DeviceRequest, GpuLayers, Selection};
use crate::engine::ffi::ggml::GgmlType;
use crate::engine::ffi::gguf::GgufFile;
use crate::engine::kv_cache::CacheTypes;
use crate::engine::model::{FusedDecode, LoadOptions, Model, StockAttention};
use crate::engine::session::SessionOptions;
use crate::guard::Limits;
use crate::session::ConsultOptions;

/// Cache element types offered on the command line.
const CACHE_TYPES: [&str; 4] = ["f16", "q8_0", "q4_0", "f32"];

/// Parses a KV cache type.
fn parse_cache_type(s: &str) -> Result<GgmlType, String> {
    CACHE_TYPES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(s))
        .and_then(|t| GgmlType::from_name(t))
        .ok_or_else(|| {
            format!(
                "unknown cache type '{s}'; use one of {}",
                CACHE_TYPES.join(", ")
            )
        })
}

/// The decode attention kernel.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// ggml's flash attention (any cache type).
    Flash,
    /// Sigma's fused kernel (f16 caches): each K and V head read once per
    /// step, rounding exactly as flash does; selective V possible.
    Fused,
    /// Stock ggml ops (scores, softmax, value product): any backend, K and V
    /// head counts apart, selective V possible; the only kernel on a GPU.
    Stock,
}

/// Where the model runs: every command that loads one takes these flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DeviceArgs {
    /// Where the model runs: auto (an idle GPU with room, else the CPU),
    /// cpu, cuda or cuda:N.
    #[arg(long, value_name = "DEVICE", default_value = "auto")]
    pub device: DeviceRequest,
    /// Transformer blocks on the GPU: all, or the last N (the rest run on
    /// the CPU).
    #[arg(long, value_name = "N|all", default_value = "all")]
    pub gpu_layers: GpuLayers,
    /// Take a GPU even when other processes keep its memory or compute busy.
    #[arg(long)]
    pub allow_busy_gpu: bool,
}

impl DeviceArgs {
    /// The choice these flags make.
    pub fn choice(&self) -> DeviceChoice {
        DeviceChoice {
            request: self.device,
            layers: self.gpu_layers,
            allow_busy: self.allow_busy_gpu,
        }
    }
}

/// `--command-timeout`: how long each command Sigma runs may take.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandTimeoutArg {
    /// Seconds each command Sigma runs may take before it and everything it
    /// started are killed (1 to 3600; `dcgmi diag -r 3` needs minutes).
    #[arg(long = "command-timeout", value_name = "SECS",
          default_value_t = Limits::DEFAULT_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub secs: u64,
}

impl Default for CommandTimeoutArg {
    fn default() -> Self {
        Self {
            secs: Limits::DEFAULT_TIMEOUT_SECS,
        }
    }
}

impl CommandTimeoutArg {
    /// The executor's limits with this timeout.
    pub fn limits(self) -> Limits {
        Limits::with_timeout_secs(self.secs)
    }
}

/// Answers per question unless `--rounds` says otherwise.
const DEFAULT_ROUNDS: u8 = 3;

/// How the copilot is asked (`sigma ask`, `sigma doctor --explain`): the
/// model, and which proposed commands run.
#[derive(Debug, clap::Args)]
pub struct CopilotArgs {
    /// Which proposed commands run: never (propose only), safe (read-only
    /// ones without asking), confirm (ask for each on the terminal).
    #[arg(long = "run", value_enum, value_name = "MODE", default_value_t = RunMode::Never)]
    pub run: RunMode,

    /// The model that answers (a name from `sigma model list` or a .gguf
    /// file); the default model, pulled on first use, when absent.
    #[arg(long, value_name = "NAME|PATH")]
    pub model: Option<String>,

    /// Most answers: after commands run, their output goes back to the model
    /// (1 to 10).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ROUNDS,
          value_parser = clap::value_parser!(u8).range(1..=10))]
    pub rounds: u8,

    /// CPU threads for the model.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub command_timeout: CommandTimeoutArg,

    #[command(flatten)]
    pub device: DeviceArgs,
}

impl CopilotArgs {
    /// Whether every flag has its default value (none was given, or only
    /// with its default).
    pub fn is_default(&self) -> bool {
        self.run == RunMode::Never
            && self.model.is_none()
            && self.rounds == DEFAULT_ROUNDS
            && self.threads.is_none()
            && self.command_timeout == CommandTimeoutArg::default()
            && self.device.choice() == DeviceChoice::default()
    }

    /// What these flags ask of [`crate::session::consult`].
    pub fn options(&self) -> ConsultOptions {
        ConsultOptions {
            model: self.model.clone(),
            threads: self.threads,
            device: self.device.choice(),
            run_mode: self.run,
            rounds: self.rounds.into(),
            limits: self.command_timeout.limits(),
        }
    }
}

/// Device, KV cache and attention options.
#[derive(clap::Args, Debug, Clone)]
pub struct SessionArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Element type of the K cache (f16, q8_0, q4_0, f32).
    #[arg(long, value_name = "TYPE", default_value = "f16", value_parser = parse_cache_type)]
    pub cache_type_k: GgmlType,
    /// Element type of the V cache (f16, q8_0, q4_0, f32).
    #[arg(long, value_name = "TYPE", default_value = "f16", value_parser = parse_cache_type)]
    pub cache_type_v: GgmlType,
    /// Decode attention kernel [default: stock on a GPU; on the CPU fused on
    /// f16 caches, else flash].
    #[arg(long, value_enum)]
    pub attention: Option<AttentionKernel>,
    /// Selective V: read only the V rows of each query head's K largest
    /// attention weights (the paper used 100; skipped below 8 K positions).
    #[arg(long, value_name = "K")]
    pub select_v: Option<usize>,
    /// With --select-v, renormalise the kept weights to sum to one.
    #[arg(long, requires = "select_v")]
    pub select_v_renorm: bool,
}

impl SessionArgs {
    /// Chooses the device for the model in `gguf` at a context of `n_ctx`
    /// positions (see [`crate::engine::device`]).
    pub fn select_device(&self, gguf: &GgufFile, n_ctx: usize) -> anyhow::Result<Selection> {
        let cache = CacheTypes {
            k: self.cache_type_k,
            v: self.cache_type_v,
        };
        self.device.choice().select_for(gguf, cache, n_ctx)
    }

    /// Loads the model in `gguf` on the device these flags choose, with
    /// `n_threads` CPU threads; returns it with the choice.
    pub fn load_model(
        &self,
        gguf: &GgufFile,
        n_threads: usize,
        n_ctx: usize,
    ) -> anyhow::Result<(Model, Selection)> {
        let selection = self.select_device(gguf, n_ctx)?;
        let model = Model::load_on(gguf, &LoadOptions::threads(n_threads), selection.placement)
            .with_context(|| format!("loading the model on {}", selection.label))?;
        Ok((model, selection))
    }

    /// The session options these flags ask for, for a model whose blocks
    /// run on a GPU when `on_gpu` (only stock attention runs there).
    pub fn options(&self, on_gpu: bool) -> anyhow::Result<SessionOptions> {
        let select_v = self.select_v.map(|top_k| SelectV {
            top_k,
            renormalize: self.select_v_renorm,
        });
        let cache = CacheTypes {
            k: self.cache_type_k,
            v: self.cache_type_v,
        };
        if let (true, Some(AttentionKernel::Flash | AttentionKernel::Fused)) =
            (on_gpu, self.attention)
        {
            anyhow::bail!(
                "--attention flash and fused do not run on a GPU (fused is CPU code; ggml's CUDA flash attention maps V heads by the K ratio); use --attention stock (the default there) or --device cpu"
            );
        }
        // the fused kernel reads f16 caches only (--select-v then reports that)
        let kernel = self.attention.unwrap_or(if on_gpu {
            AttentionKernel::Stock
        } else if cache == CacheTypes::default() || select_v.is_some() {
            AttentionKernel::Fused
        } else {
            AttentionKernel::Flash
        });
        anyhow::ensure!(
            select_v.is_none() || kernel != AttentionKernel::Flash,
            "--select-v needs --attention fused or stock"
        );
        Ok(SessionOptions {
            cache,
            fused_decode: (kernel == AttentionKernel::Fused).then_some(FusedDecode { select_v }),
            stock_attention: (kernel == AttentionKernel::Stock)
                .then_some(StockAttention { select_v }),
        })
    }
}
