//! Where a model runs: `--device auto|cpu|cuda[:N]` and `--gpu-layers
//! N|all`, resolved against the GPUs ggml can use and what NVML says about
//! their load.
//!
//! # Rules
//!
//! - `cpu`: the CPU, always.
//! - `cuda[:N]`: GPU `N` (default 0) in ggml's CUDA order, or a one-line
//!   error saying why not and what to do: no GPU backend in this build, no
//!   usable GPU, too little free memory, or a busy GPU.
//! - `auto` (the default): the first GPU that is idle and has room for the
//!   model; otherwise the CPU. The choice and its reason are reported
//!   ([`Selection`]): `sigma model info --device` prints them.
//!
//! A GPU counts as busy, and is refused unless `allow_busy` is set, when
//! other processes hold more than [`BusyLimits::max_used_pct`] of its
//! memory or keep it more than [`BusyLimits::max_util_pct`] utilised: the
//! copilot must not starve the workload it is diagnosing.
//!
//! # Example
//!
//! ```
//! use sigma::engine::device::{DeviceRequest, GpuLayers};
//! assert_eq!("cuda:1".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cuda(Some(1)));
//! assert_eq!("all".parse::<GpuLayers>().unwrap(), GpuLayers::All);
//! ```

use std::fmt;
use std::str::FromStr;

use super::error::EngineError;
use super::ffi::ggml::Device;
use super::ffi::gguf::GgufFile;
use super::kv_cache::{CacheTypes, KvLayout};
use super::model::HParams;

/// Bytes in a GiB, for messages.
const GIB: f64 = (1u64 << 30) as f64;

/// Memory kept free on a GPU beyond the model's weights and cache: the
/// compute buffers and the CUDA context.
pub const GPU_HEADROOM_BYTES: u64 = 768 << 20;

/// What `--device` asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceRequest {
    /// A free GPU if there is one, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA GPU (ggml's index; 0 when not given).
    Cuda(Option<usize>),
}

impl FromStr for DeviceRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid device '{s}', expected auto, cpu, cuda or cuda:N");
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(None)),
            other => match other.split_once(':') {
                Some(("cuda" | "gpu", n)) => {
                    n.parse().map(|n| Self::Cuda(Some(n))).map_err(|_| bad())
                }
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(None) => f.write_str("cuda"),
            Self::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

/// How many transformer blocks go to the GPU (`--gpu-layers`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GpuLayers {
    /// Every block and the output head.
    #[default]
    All,
    /// The last `n` blocks (the output head too when that is all of them);
    /// the rest run on the CPU.
    Count(usize),
}

impl FromStr for GpuLayers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        s.parse()
            .map(Self::Count)
            .map_err(|_| format!("invalid layer count '{s}', expected a number or 'all'"))
    }
}

impl GpuLayers {
    /// The first block on the GPU for a model of `n_layer` blocks (blocks
    /// `first..n_layer` are offloaded; `n_layer` means none).
    pub fn first_gpu_layer(self, n_layer: usize) -> usize {
        match self {
            Self::All => 0,
            Self::Count(n) => n_layer - n.min(n_layer),
        }
    }

    /// Fraction of the blocks offloaded.
    fn fraction(self, n_layer: usize) -> f64 {
        let first = self.first_gpu_layer(n_layer);
        if n_layer == 0 {
            return 1.0;
        }
        (n_layer - first) as f64 / n_layer as f64
    }
}

/// Where the model's tensors live and its graphs run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// All on the CPU.
    #[default]
    Cpu,
    /// Blocks per `layers` on GPU `gpu` (an index into [`Device::gpus`]),
    /// the rest and the token embeddings on the CPU.
    Gpu {
        /// ggml's GPU index.
        gpu: usize,
        /// Blocks offloaded.
        layers: GpuLayers,
    },
}

/// Thresholds above which a GPU is someone else's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BusyLimits {
    /// Percent of the memory other processes may hold.
    pub max_used_pct: u32,
    /// Percent utilisation tolerated.
    pub max_util_pct: u32,
}

impl Default for BusyLimits {
    /// 10% of memory, 10% utilisation: a driver's own reservation and a
    /// monitoring agent pass, a training job does not.
    fn default() -> Self {
        Self {
            max_used_pct: 10,
            max_util_pct: 10,
        }
    }
}

/// One GPU as the selection sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuState {
    /// ggml's index (`cuda:N`).
    pub index: usize,
    /// Product name.
    pub name: String,
    /// Free memory in bytes (CUDA's count).
    pub free_bytes: u64,
    /// Total memory in bytes.
    pub total_bytes: u64,
    /// Utilisation in percent, from NVML (`None` when NVML could not tell).
    pub util_pct: Option<u32>,
    /// Compute processes on the GPU, from NVML.
    pub processes: usize,
}

impl GpuState {
    /// Why the GPU is busy under `limits`, if it is.
    fn busy(&self, limits: BusyLimits) -> Option<String> {
        let used = self.total_bytes.saturating_sub(self.free_bytes);
        let used_pct = (used * 100).checked_div(self.total_bytes).unwrap_or(0);
        let mut why = Vec::new();
        if used_pct > u64::from(limits.max_used_pct) {
            let procs = match self.processes {
                0 => String::new(),
                1 => " by 1 process".to_string(),
                n => format!(" by {n} processes"),
            };
            why.push(format!(
                "{:.1} of {:.0} GiB in use{procs}",
                used as f64 / GIB,
                self.total_bytes as f64 / GIB
            ));
        }
        if let Some(u) = self.util_pct.filter(|&u| u > limits.max_util_pct) {
            why.push(format!("{u}% utilised"));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }

    /// `cuda:N (name)`.
    fn label(&self) -> String {
        format!("cuda:{} ({})", self.index, self.name)
    }
}

/// What the model needs, to check a GPU's free memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Need {
    /// Weights and KV cache of the whole model, in bytes.
    pub model_bytes: u64,
    /// Transformer blocks (to scale by `--gpu-layers`).
    pub n_layer: usize,
    /// Blocks to offload.
    pub layers: GpuLayers,
}

impl Need {
    /// Bytes the GPU must have free.
    fn gpu_bytes(&self) -> u64 {
        (self.model_bytes as f64 * self.layers.fraction(self.n_layer)) as u64 + GPU_HEADROOM_BYTES
    }
}

impl Need {
    /// What the model in `gguf` needs with `cache` types at `n_ctx`
    /// positions: its file's weights plus its KV cache.
    pub fn for_model(
        gguf: &GgufFile,
        cache: CacheTypes,
        n_ctx: usize,
        layers: GpuLayers,
    ) -> Result<Self, EngineError> {
        let hp = HParams::from_gguf(gguf)?;
        let weights = std::fs::metadata(gguf.path()).map_or(0, |m| m.len());
        let row = |l: KvLayout| l.ty.row_size(l.head_dim as i64).unwrap_or(0) * l.n_head;
        let kv_per_token: usize = hp
            .kv_layouts(cache)
            .into_iter()
            .map(|(k, v)| row(k) + row(v))
            .sum();
        Ok(Self {
            model_bytes: weights + (kv_per_token * n_ctx) as u64,
            n_layer: hp.n_layer,
            layers,
        })
    }
}

/// The choice and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// Where the model goes.
    pub placement: Placement,
    /// `cpu` or `cuda:N (name)`.
    pub label: String,
    /// Why, in a few words (`auto: GPU 0 is busy (93% utilised)`).
    pub reason: String,
    /// Why `auto` fell back to the CPU, in two or three words for a status
    /// line (`no GPU`, `GPU busy`).
    pub fallback: Option<&'static str>,
}

impl Selection {
    /// Which device, and why when `auto` fell back to the CPU, short
    /// enough for a status line: `cuda:0`, `cpu`, `cpu (GPU busy)`.
    pub fn short(&self) -> String {
        let device = match self.placement {
            Placement::Cpu => "cpu".to_string(),
            Placement::Gpu { gpu, .. } => format!("cuda:{gpu}"),
        };
        match self.fallback {
            Some(why) => format!("{device} ({why})"),
            None => device,
        }
    }
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.label, self.reason)
    }
}

/// Why the GPU backend offers no device: the build, or the runtime.
pub fn no_gpu_reason() -> String {
    if !cfg!(feature = "cuda") {
        return "this sigma was built without the `cuda` feature".to_string();
    }
    match Device::gpu_unavailable_reason() {
        // the CUDA runtime's words for a missing driver as well as an old one
        Some(why) if why.contains("driver version is insufficient") => format!(
            "CUDA found no usable GPU ({why}: no NVIDIA driver, or one older than CUDA 13's r580)"
        ),
        Some(why) => format!("CUDA found no usable GPU ({why})"),
        None => "CUDA found no GPU".to_string(),
    }
}

/// The fix for [`no_gpu_reason`], for `--device cuda` errors.
fn no_gpu_fix() -> &'static str {
    if cfg!(feature = "cuda") {
        "check `nvidia-smi`, or use --device cpu"
    } else {
        "build with `--features cuda` (README, Development), or use --device cpu"
    }
}

/// Decides where to run from the GPUs' states (`gpus`; `no_gpu` says why
/// the list is empty). Pure: [`select`] gathers the states.
pub fn decide(
    request: DeviceRequest,
    gpus: &[GpuState],
    no_gpu: &str,
    need: Need,
    limits: BusyLimits,
    allow_busy: bool,
) -> Result<Selection, String> {
    let cpu = |reason: String, fallback| Selection {
        placement: Placement::Cpu,
        label: "cpu".to_string(),
        reason,
        fallback,
    };
    let fits = |g: &GpuState| g.free_bytes >= need.gpu_bytes();
    let room = |g: &GpuState| {
        format!(
            "{:.1} GiB free, the model needs {:.1} GiB",
            g.free_bytes as f64 / GIB,
            need.gpu_bytes() as f64 / GIB
        )
    };
    let take = |g: &GpuState, how: &str| Selection {
        placement: Placement::Gpu {
            gpu: g.index,
            layers: need.layers,
        },
        label: g.label(),
        reason: format!("{how}: {}", room(g)),
        fallback: None,
    };
    match request {
        DeviceRequest::Cpu => Ok(cpu("asked for".to_string(), None)),
        DeviceRequest::Cuda(n) => {
            let n = n.unwrap_or(0);
            if gpus.is_empty() {
                return Err(format!("--device {request}: {no_gpu}; {}", no_gpu_fix()));
            }
            let g = gpus.iter().find(|g| g.index == n).ok_or_else(|| {
                format!(
                    "--device {request}: there is no CUDA GPU {n} (found {}); pick one of cuda:0..cuda:{}",
                    gpus.len(),
                    gpus.len() - 1
                )
            })?;
            if let Some(busy) = g.busy(limits).filter(|_| !allow_busy) {
                return Err(format!(
                    "--device {request}: GPU {n} is busy ({busy}) and sigma does not compete with the workload it diagnoses; pass --allow-busy-gpu to use it anyway, or --device cpu"
                ));
            }
            if !fits(g) {
                return Err(format!(
                    "--device {request}: GPU {n} has too little memory ({}); use --gpu-layers with fewer layers, a smaller --ctx, or --device cpu",
                    room(g)
                ));
            }
            Ok(take(g, "asked for"))
        }
        DeviceRequest::Auto => {
            if gpus.is_empty() {
                return Ok(cpu(format!("auto: {no_gpu}"), Some("no GPU")));
            }
            let (mut refused, mut any_busy) = (Vec::new(), false);
            for g in gpus {
                match g.busy(limits).filter(|_| !allow_busy) {
                    Some(busy) => {
                        any_busy = true;
                        refused.push(format!("GPU {} is busy ({busy})", g.index));
                    }
                    None if !fits(g) => {
                        refused.push(format!("GPU {} is too small ({})", g.index, room(g)))
                    }
                    None => return Ok(take(g, "auto")),
                }
            }
            let fallback = if any_busy {
                "GPU busy"
            } else {
                "GPU too small"
            };
            Ok(cpu(format!("auto: {}", refused.join("; ")), Some(fallback)))
        }
    }
}

/// NVML's view of one GPU, matched to ggml's by PCI bus id.
fn nvml_load(
    report: &crate::probe::nvml::NvmlReport,
    bus_id: Option<&str>,
) -> (Option<u32>, usize) {
    let Some(bus) = bus_id.and_then(parse_bus_id) else {
        return (None, 0);
    };
    report
        .gpus
        .iter()
        .find(|g| parse_bus_id(&g.pci_bus_id) == Some(bus))
        .map_or((None, 0), |g| (g.utilization_gpu_pct, g.processes.len()))
}

/// A PCI bus id as (domain, bus, device, function): NVML writes an 8-digit
/// domain (`00000000:18:00.0`), CUDA a 4-digit one.
fn parse_bus_id(s: &str) -> Option<(u32, u32, u32, u32)> {
    let mut parts = s.trim().split(':');
    let (domain, bus, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let (dev, func) = rest.split_once('.')?;
    let hex = |x: &str| u32::from_str_radix(x, 16).ok();
    Some((hex(domain)?, hex(bus)?, hex(dev)?, hex(func)?))
}

/// The GPUs ggml can use, with NVML's load (read only when there is a GPU).
pub fn gpu_states() -> Vec<GpuState> {
    let devices = Device::gpus();
    if devices.is_empty() {
        return Vec::new();
    }
    let report = crate::probe::nvml::probe_nvml();
    devices
        .iter()
        .enumerate()
        .map(|(index, d)| {
            let (free, total) = d.memory();
            let (util_pct, processes) = nvml_load(&report, d.pci_bus_id().as_deref());
            GpuState {
                index,
                name: d.description(),
                free_bytes: free as u64,
                total_bytes: total as u64,
                util_pct,
                processes,
            }
        })
        .collect()
}

/// Where the user asked the model to run: `--device`, `--gpu-layers` and
/// `--allow-busy-gpu` together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceChoice {
    /// The device asked for.
    pub request: DeviceRequest,
    /// Blocks on the GPU.
    pub layers: GpuLayers,
    /// Take a GPU even when other processes keep it busy.
    pub allow_busy: bool,
}

impl DeviceChoice {
    /// Decides where the model in `gguf` runs with a `cache` of `n_ctx`
    /// positions ([`select`]).
    pub fn select_for(
        self,
        gguf: &GgufFile,
        cache: CacheTypes,
        n_ctx: usize,
    ) -> anyhow::Result<Selection> {
        let need = Need::for_model(gguf, cache, n_ctx, self.layers)?;
        select(self.request, need, self.allow_busy).map_err(anyhow::Error::msg)
    }
}

/// Decides where to run on this machine (see the module doc).
pub fn select(request: DeviceRequest, need: Need, allow_busy: bool) -> Result<Selection, String> {
    if request == DeviceRequest::Cpu {
        return decide(request, &[], "", need, BusyLimits::default(), allow_busy);
    }
    let gpus = gpu_states();
    let no_gpu = if gpus.is_empty() {
        no_gpu_reason()
    } else {
        String::new()
    };
    decide(
        request,
        &gpus,
        &no_gpu,
        need,
        BusyLimits::default(),
        allow_busy,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1 << 30;

    fn gpu(index: usize, free: u64, util: u32, processes: usize) -> GpuState {
        GpuState {
            index,
            name: "NVIDIA H200".into(),
            free_bytes: free,
            total_bytes: 140 * GB,
            util_pct: Some(util),
            processes,
        }
    }

    fn need() -> Need {
        Need {
            model_bytes: 4 * GB,
            n_layer: 26,
            layers: GpuLayers::All,
        }
    }

    fn run(request: &str, gpus: &[GpuState]) -> Result<Selection, String> {
        let no_gpu = "this sigma was built without the `cuda` feature";
        decide(
            request.parse().unwrap(),
            gpus,
            no_gpu,
            need(),
            BusyLimits::default(),
            false,
        )
    }

    #[test]
    fn requests_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!("AUTO".parse(), Ok(DeviceRequest::Auto));
        assert_eq!("cuda".parse(), Ok(DeviceRequest::Cuda(None)));
        assert_eq!("cuda:3".parse(), Ok(DeviceRequest::Cuda(Some(3))));
        assert_eq!(
            "tpu".parse::<DeviceRequest>().unwrap_err(),
            "invalid device 'tpu', expected auto, cpu, cuda or cuda:N"
        );
        assert_eq!("12".parse(), Ok(GpuLayers::Count(12)));
        assert!("most".parse::<GpuLayers>().unwrap_err().contains("'most'"));
    }

    #[test]
    fn auto_takes_an_idle_gpu_with_room() {
        let s = run("auto", &[gpu(0, 139 * GB, 0, 0)]).unwrap();
        assert_eq!(
            s.placement,
            Placement::Gpu {
                gpu: 0,
                layers: GpuLayers::All
            }
        );
        assert_eq!(s.label, "cuda:0 (NVIDIA H200)");
        assert_eq!(s.short(), "cuda:0");
        assert!(s.reason.starts_with("auto: 139.0 GiB free"), "{s}");
    }

    #[test]
    fn auto_without_a_gpu_says_why_it_runs_on_the_cpu() {
        let s = run("auto", &[]).unwrap();
        assert_eq!(s.placement, Placement::Cpu);
        assert_eq!(s.short(), "cpu (no GPU)");
        assert_eq!(
            s.to_string(),
            "cpu (auto: this sigma was built without the `cuda` feature)"
        );
    }

    #[test]
    fn auto_skips_busy_and_small_gpus() {
        let small = GpuState {
            total_bytes: 3 * GB,
            ..gpu(1, 3 * GB, 0, 0)
        };
        let gpus = [gpu(0, 20 * GB, 95, 2), small, gpu(2, 139 * GB, 0, 0)];
        assert_eq!(
            run("auto", &gpus).unwrap().placement,
            Placement::Gpu {
                gpu: 2,
                layers: GpuLayers::All
            }
        );
        let s = run("auto", &gpus[..2]).unwrap();
        assert_eq!(s.placement, Placement::Cpu);
        assert!(
            s.reason
                .contains("GPU 0 is busy (120.0 of 140 GiB in use by 2 processes, 95% utilised)"),
            "{s}"
        );
        assert!(s.reason.contains("GPU 1 is too small"), "{s}");
        assert_eq!(s.short(), "cpu (GPU busy)");
    }

    #[test]
    fn cuda_without_a_gpu_is_one_line_naming_the_fix() {
        let e = run("cuda", &[]).unwrap_err();
        assert!(!e.contains('\n'));
        assert!(
            e.starts_with("--device cuda: this sigma was built without"),
            "{e}"
        );
        assert!(e.contains("--device cpu"), "{e}");
    }

    #[test]
    fn a_busy_gpu_is_refused_unless_allowed() {
        let gpus = [gpu(0, 139 * GB, 60, 1)];
        let e = run("cuda:0", &gpus).unwrap_err();
        assert!(
            e.contains("GPU 0 is busy (60% utilised)") && e.contains("--allow-busy-gpu"),
            "{e}"
        );
        let s = decide(
            DeviceRequest::Cuda(Some(0)),
            &gpus,
            "",
            need(),
            BusyLimits::default(),
            true,
        );
        assert!(s.is_ok());
        assert!(run("cuda:1", &gpus).unwrap_err().contains("no CUDA GPU 1"));
    }

    #[test]
    fn partial_offload_needs_its_share_of_memory() {
        let need = Need {
            layers: GpuLayers::Count(13),
            ..need()
        };
        assert_eq!(need.gpu_bytes(), 2 * GB + GPU_HEADROOM_BYTES);
        assert_eq!(GpuLayers::Count(13).first_gpu_layer(26), 13);
        assert_eq!(GpuLayers::Count(99).first_gpu_layer(26), 0);
    }

    #[test]
    fn bus_ids_match_across_nvml_and_cuda_spellings() {
        assert_eq!(
            parse_bus_id("00000000:18:00.0"),
            parse_bus_id("0000:18:00.0")
        );
        assert_ne!(parse_bus_id("0000:19:00.0"), parse_bus_id("0000:18:00.0"));
        assert_eq!(parse_bus_id("nonsense"), None);
    }
}
