//! Command-line options shared by the commands that run the engine: KV cache
//! types (differential compression), the decode attention kernel and
//! selective V fetching.

use crate::engine::attention::SelectV;
use crate::engine::ffi::ggml::GgmlType;
use crate::engine::kv_cache::CacheTypes;
use crate::engine::model::FusedDecode;
use crate::engine::session::SessionOptions;

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
    /// Sigma's fused kernel: each K and V head read once per step, selective
    /// V possible (f16 caches).
    Fused,
}

/// KV cache and attention options.
#[derive(clap::Args, Debug, Clone)]
pub struct SessionArgs {
    /// Element type of the K cache (f16, q8_0, q4_0, f32).
    #[arg(long, value_name = "TYPE", default_value = "f16", value_parser = parse_cache_type)]
    pub cache_type_k: GgmlType,
    /// Element type of the V cache (f16, q8_0, q4_0, f32).
    #[arg(long, value_name = "TYPE", default_value = "f16", value_parser = parse_cache_type)]
    pub cache_type_v: GgmlType,
    /// Decode attention kernel [default: fused with --select-v, else flash].
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
    /// The session options these flags ask for.
    pub fn options(&self) -> anyhow::Result<SessionOptions> {
        let select_v = self.select_v.map(|top_k| SelectV {
            top_k,
            renormalize: self.select_v_renorm,
        });
        let kernel = self.attention.unwrap_or(if select_v.is_some() {
            AttentionKernel::Fused
        } else {
            AttentionKernel::Flash
        });
        anyhow::ensure!(
            select_v.is_none() || kernel == AttentionKernel::Fused,
            "--select-v needs --attention fused"
        );
        Ok(SessionOptions {
            cache: CacheTypes {
                k: self.cache_type_k,
                v: self.cache_type_v,
            },
            fused_decode: (kernel == AttentionKernel::Fused).then_some(FusedDecode { select_v }),
        })
    }
}
