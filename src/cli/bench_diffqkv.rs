//! `sigma bench diffqkv`: the paper's attention-layer table, measured here.
//!
//! For each cached prefix, the median time of one decode step of a
//! Sigma-1.5B-shaped attention layer (32 Q / 4 K / 16 V heads of 64, AugQ
//! 3072 in q4_0) against its GQA twin (32 / 16 / 16, no AugQ), both on the
//! fused kernel with an f16 cache, and of Sigma with selective V (top-100).
//! The paper's H100 reductions are printed beside ours.
//!
//! `--device cuda[:N]` runs the same on a GPU with stock ggml ops (the
//! fused kernel is CPU code); `--attention stock` does so on the CPU.

use std::io::Write;

use crate::engine::attention::SelectV;
use crate::engine::attention_bench::{LayerBench, LayerShape};
use crate::engine::device::{self, DeviceRequest, GpuLayers, Need, Placement};
use crate::engine::ffi::ggml::Device;

/// The paper's measured reductions (one H100, FlashAttention-2, attention
/// layer only), by prefix.
const PAPER_H100: [(usize, f64); 4] = [(2048, 1.4), (4096, 18.0), (16384, 23.4), (32768, 25.3)];

/// Arguments of `sigma bench diffqkv`.
#[derive(clap::Args, Debug)]
pub struct DiffqkvArgs {
    /// CPU threads.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
    /// Timed steps per measurement (median reported).
    #[arg(long, value_name = "N", default_value_t = 9)]
    pub reps: usize,
    /// Largest prefix measured (2k, 4k, 16k, 32k, 64k up to this).
    #[arg(long, value_name = "N", default_value_t = 65536)]
    pub max_prefix: usize,
    /// V rows kept per query head for the selective-V column.
    #[arg(long, value_name = "K", default_value_t = 100)]
    pub select_v: usize,
    /// Print `{"rows": [...]}` as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where to run: cpu, cuda or cuda:N (auto: an idle GPU, else the CPU).
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: DeviceRequest,
    /// Take a GPU even when other processes keep it busy.
    #[arg(long)]
    pub allow_busy_gpu: bool,
    /// Attention on the CPU: the fused kernel or stock ggml ops (a GPU
    /// always uses stock ops).
    #[arg(long, value_enum, default_value = "fused")]
    pub attention: BenchAttention,
}

/// The attention a CPU run of the benchmark times.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchAttention {
    /// Sigma's fused decode kernel.
    Fused,
    /// Stock ggml ops (the GPU path).
    Stock,
}

/// One row of the table.
#[derive(serde::Serialize)]
struct Row {
    prefix: usize,
    gqa_ms: f64,
    sigma_ms: f64,
    reduction_pct: f64,
    select_v_ms: f64,
    select_v_speedup: f64,
    paper_h100_reduction_pct: Option<f64>,
}

/// Runs the benchmark; returns the exit code.
pub fn run(args: &DiffqkvArgs) -> anyhow::Result<i32> {
    let prefixes: Vec<usize> = [2048, 4096, 16384, 32768, 65536]
        .into_iter()
        .filter(|&p| p <= args.max_prefix)
        .collect();
    anyhow::ensure!(!prefixes.is_empty(), "--max-prefix must be at least 2048");
    let n_ctx = *prefixes.last().expect("non-empty");
    // both layers' caches (the twin's is the larger) and the AugQ weights
    let need = Need {
        model_bytes: (2 * n_ctx * LayerShape::GQA_TWIN.kv_bytes_per_token()) as u64 + (64 << 20),
        n_layer: 1,
        layers: GpuLayers::All,
    };
    let selection =
        device::select(args.device, need, args.allow_busy_gpu).map_err(anyhow::Error::msg)?;
    let gpu = match selection.placement {
        Placement::Cpu => None,
        Placement::Gpu { gpu, .. } => Device::gpus().get(gpu).copied(),
    };
    let stock = args.attention == BenchAttention::Stock || gpu.is_some();
    let mut gqa = LayerBench::new(LayerShape::GQA_TWIN, n_ctx, args.threads, gpu, stock)?;
    let mut sigma = LayerBench::new(LayerShape::SIGMA_1_5B, n_ctx, args.threads, gpu, stock)?;
    let kernel = if stock {
        "stock ggml ops"
    } else {
        "fused kernel"
    };
    let select = SelectV {
        top_k: args.select_v,
        renormalize: false,
    };
    let mut rows = Vec::new();
    for &prefix in &prefixes {
        let gqa_ms = gqa.step_ms(prefix, None, args.reps)?;
        let sigma_ms = sigma.step_ms(prefix, None, args.reps)?;
        let select_v_ms = sigma.step_ms(prefix, Some(select), args.reps)?;
        rows.push(Row {
            prefix,
            gqa_ms,
            sigma_ms,
            reduction_pct: 100.0 * (1.0 - sigma_ms / gqa_ms),
            select_v_ms,
            select_v_speedup: gqa_ms / select_v_ms,
            paper_h100_reduction_pct: PAPER_H100
                .iter()
                .find(|(p, _)| *p == prefix)
                .map(|(_, r)| *r),
        });
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "threads": args.threads,
                "device": selection.label,
                "attention": if stock { "stock" } else { "fused" },
                "rows": rows,
            })
        )?;
        return Ok(0);
    }
    writeln!(
        out,
        "one attention layer, one decode step, f16 cache, {kernel} on {selection}, {} threads; medians of {} steps",
        args.threads, args.reps
    )?;
    writeln!(
        out,
        "Sigma-1.5B: 32 Q / 4 K / 16 V heads x 64, AugQ 3072 (q4_0); GQA twin: 32 / 16 / 16, no AugQ"
    )?;
    writeln!(
        out,
        "{:>7} {:>9} {:>10} {:>10} {:>11} {:>13} {:>9}",
        "prefix", "GQA ms", "Sigma ms", "reduction", "paper H100", "Sigma top-100", "vs GQA"
    )?;
    for r in &rows {
        let paper = r
            .paper_h100_reduction_pct
            .map_or("-".to_string(), |p| format!("{p:.1}%"));
        writeln!(
            out,
            "{:>7} {:>9.2} {:>10.2} {:>9.1}% {:>11} {:>13.2} {:>8.2}x",
            r.prefix,
            r.gqa_ms,
            r.sigma_ms,
            r.reduction_pct,
            paper,
            r.select_v_ms,
            r.select_v_speedup
        )?;
    }
    Ok(0)
}
