//! `sigma bench diffqkv`: the paper's attention-layer table, measured here.
//!
//! For each cached prefix, the median time of one decode step of a
//! Sigma-1.5B-shaped attention layer (32 Q / 4 K / 16 V heads of 64, AugQ
//! 3072 in q4_0) against its GQA twin (32 / 16 / 16, no AugQ), both on the
//! fused kernel with an f16 cache, and of Sigma with selective V (top-100).
//! The paper's H100 reductions are printed beside ours.
//!
//! On a shared machine a step's time moves with the load, so the three
//! variants are timed in rounds, one step each, in a rotating order, and
//! each round gives its own reduction and speed-up (paired ratios: a slow
//! moment slows all three alike). Rounds go on until the 95% confidence
//! intervals of both medians are within `--target` (or `--max-steps`),
//! and every figure is printed with its interval and the load average.
//!
//! `--device cuda[:N]` runs the same on a GPU with stock ggml ops (the
//! fused kernel is CPU code); `--attention stock` does so on the CPU.

use std::io::Write;

use super::bench_stats::{Load, Spread};
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
    /// Fewest timed rounds per prefix (one step of each variant a round).
    #[arg(long, value_name = "N", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub min_steps: u64,
    /// Most timed rounds per prefix.
    #[arg(long, value_name = "N", default_value_t = 151,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_steps: u64,
    /// Stop a prefix when the reduction's 95% interval is within this many
    /// points of its median and the speed-up's within this many percent.
    #[arg(long, value_name = "PCT", default_value_t = 2.0)]
    pub target: f64,
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

/// One row of the table: medians with their 95% intervals.
#[derive(serde::Serialize)]
struct Row {
    prefix: usize,
    /// Timed rounds.
    steps: usize,
    gqa_ms: Spread,
    sigma_ms: Spread,
    /// Median of the rounds' `1 - sigma / gqa`, in percent.
    reduction_pct: Spread,
    select_v_ms: Spread,
    /// Median of the rounds' `gqa / select_v`.
    select_v_speedup: Spread,
    paper_h100_reduction_pct: Option<f64>,
}

/// The three variants timed in one round.
#[derive(Clone, Copy)]
enum Variant {
    Gqa,
    Sigma,
    SelectV,
}

/// Times `prefix` in rounds until the paired ratios are tight enough.
fn measure(
    gqa: &mut LayerBench,
    sigma: &mut LayerBench,
    select: SelectV,
    prefix: usize,
    args: &DiffqkvArgs,
) -> anyhow::Result<Row> {
    const ORDER: [Variant; 3] = [Variant::Gqa, Variant::Sigma, Variant::SelectV];
    let mut step = |v: Variant| match v {
        Variant::Gqa => gqa.step_ms(prefix, None),
        Variant::Sigma => sigma.step_ms(prefix, None),
        Variant::SelectV => sigma.step_ms(prefix, Some(select)),
    };
    for v in ORDER {
        step(v)?; // warm-up
    }
    let (mut g, mut s, mut sv) = (Vec::new(), Vec::new(), Vec::new());
    let (mut reduction, mut speedup) = (Vec::new(), Vec::new());
    for round in 0..args.max_steps as usize {
        for i in 0..3 {
            let v = ORDER[(round + i) % 3];
            let ms = step(v)?;
            match v {
                Variant::Gqa => g.push(ms),
                Variant::Sigma => s.push(ms),
                Variant::SelectV => sv.push(ms),
            }
        }
        reduction.push(100.0 * (1.0 - s[round] / g[round]));
        speedup.push(g[round] / sv[round]);
        if round + 1 >= args.min_steps as usize {
            let r = Spread::of(&reduction);
            let x = Spread::of(&speedup);
            if r.ci95
                && (r.hi - r.lo) / 2.0 <= args.target
                && 100.0 * x.relative_half_width() <= args.target
            {
                break;
            }
        }
    }
    Ok(Row {
        prefix,
        steps: g.len(),
        gqa_ms: Spread::of(&g),
        sigma_ms: Spread::of(&s),
        reduction_pct: Spread::of(&reduction),
        select_v_ms: Spread::of(&sv),
        select_v_speedup: Spread::of(&speedup),
        paper_h100_reduction_pct: PAPER_H100
            .iter()
            .find(|(p, _)| *p == prefix)
            .map(|(_, r)| *r),
    })
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
    anyhow::ensure!(
        args.min_steps <= args.max_steps,
        "--min-steps must not exceed --max-steps"
    );
    let load = Load::start();
    let mut rows = Vec::new();
    for &prefix in &prefixes {
        rows.push(measure(&mut gqa, &mut sigma, select, prefix, args)?);
    }
    let load = load.finish();
    let cpu = crate::engine::ffi::cpu::chosen()?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "threads": args.threads,
                "device": selection.label,
                "cpu_kernels": cpu.variant.name,
                "cpu_kernels_reason": cpu.reason,
                "attention": if stock { "stock" } else { "fused" },
                "load": load,
                "busy": load.busy(),
                "rows": rows,
            })
        )?;
        return Ok(0);
    }
    writeln!(
        out,
        "one attention layer, one decode step, f16 cache, {kernel} on {selection}, {} threads",
        args.threads
    )?;
    writeln!(
        out,
        "Sigma-1.5B: 32 Q / 4 K / 16 V heads x 64, AugQ 3072 (q4_0); GQA twin: 32 / 16 / 16, no AugQ"
    )?;
    writeln!(
        out,
        "medians of interleaved rounds [95% confidence interval]; reduction and speed-up are \
         medians of each round's own ratio"
    )?;
    writeln!(out, "cpu kernels {cpu}")?;
    writeln!(out, "{load}")?;
    writeln!(
        out,
        "{:>7} {:>6} {:>8} {:>9} {:>22} {:>11} {:>13} {:>22}",
        "prefix",
        "steps",
        "GQA ms",
        "Sigma ms",
        "reduction",
        "paper H100",
        "Sigma top-100",
        "top-100 vs GQA"
    )?;
    for r in &rows {
        let paper = r
            .paper_h100_reduction_pct
            .map_or("-".to_string(), |p| format!("{p:.1}%"));
        let reduction = format!(
            "{:.1}% {}",
            r.reduction_pct.median,
            r.reduction_pct.interval(1)
        );
        let speedup = format!(
            "{:.2}x {}",
            r.select_v_speedup.median,
            r.select_v_speedup.interval(2)
        );
        writeln!(
            out,
            "{:>7} {:>6} {:>8.2} {:>9.2} {:>22} {:>11} {:>13.2} {:>22}",
            r.prefix,
            r.steps,
            r.gqa_ms.median,
            r.sigma_ms.median,
            reduction,
            paper,
            r.select_v_ms.median,
            speedup
        )?;
    }
    Ok(0)
}
