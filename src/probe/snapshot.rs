//! The [`Snapshot`] type: everything Sigma knows about a node at one instant.
//!
//! A snapshot is plain data (serde). The live probe fills it from NVML, sysfs,
//! the kernel log and `sysinfo`; a simulated node deserialises it from a TOML
//! file. Checks, the copilot and the front ends read nothing else.
//!
//! Every field that a source could not provide is `None` (or empty) and the
//! reason is recorded in [`Snapshot::unavailable`]: a missing value is never
//! silent. `docs/snapshot.schema.json` documents the JSON form.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the JSON document; bumped when a field changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything known about one node at one instant.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Version of this document's layout ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// When the snapshot was taken, RFC 3339 (UTC).
    pub taken_at: String,
    /// Where the data came from.
    pub source: Source,
    /// The host: OS, CPU, memory, disks, processes.
    pub host: Host,
    /// NVIDIA driver facts, when NVML answered.
    #[serde(default)]
    pub nvidia: Option<NvidiaDriver>,
    /// NVIDIA GPUs as NVML reports them, by NVML index.
    #[serde(default)]
    pub gpus: Vec<Gpu>,
    /// Every GPU-class PCI device of NVIDIA (10de) or AMD (1002), whether or
    /// not a driver reports it.
    #[serde(default)]
    pub pci_gpus: Vec<PciGpu>,
    /// AMD GPUs (sysfs presence, plus `rocm-smi`/`amd-smi` data when installed).
    #[serde(default)]
    pub amd_gpus: Vec<AmdGpu>,
    /// XID events parsed from the kernel log, oldest first.
    #[serde(default)]
    pub xid_events: Vec<XidEvent>,
    /// Which kernel log was read (`/dev/kmsg`, `journalctl -k`, `dmesg`).
    #[serde(default)]
    pub kernel_log_source: Option<String>,
    /// Sources that could not be read, each with the reason and the fix.
    #[serde(default)]
    pub unavailable: Vec<Unavailable>,
}

/// Where a snapshot came from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// Probed on this machine.
    #[default]
    Live,
    /// Loaded from a simulated node file.
    Simulated {
        /// The simulated node's name (file stem).
        name: String,
    },
}

/// A source of data that could not be read, and why.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Unavailable {
    /// Short name of the source: `nvml`, `kernel-log`, `pci`, `rocm-smi`, ...
    pub source: String,
    /// One line: what failed and what to do about it.
    pub reason: String,
}

impl Unavailable {
    /// How the reason of a source that missed the probe's deadline starts.
    pub const TIMED_OUT: &'static str = "timed out";

    /// The source missed the probe's deadline (it hung, rather than failed).
    pub fn timed_out(&self) -> bool {
        self.reason.starts_with(Self::TIMED_OUT)
    }
}

/// Facts about the NVIDIA driver stack.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NvidiaDriver {
    /// Kernel driver version, e.g. `550.54.15`.
    pub driver_version: String,
    /// Highest CUDA version the driver supports, e.g. `12.4`.
    #[serde(default)]
    pub cuda_version: Option<String>,
    /// NVML library version.
    #[serde(default)]
    pub nvml_version: Option<String>,
}

/// One NVIDIA GPU as NVML reports it. `None` means NVML did not provide the
/// value (not supported on this GPU, or the query failed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// NVML index (what `nvidia-smi -i` takes).
    pub index: u32,
    /// Product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// `GPU-...` UUID.
    pub uuid: String,
    /// PCI bus id as NVML prints it, e.g. `00000000:18:00.0`.
    pub pci_bus_id: String,
    /// NVML says the GPU is lost (`NVML_ERROR_GPU_IS_LOST`): it no longer
    /// answers, and every other value of this GPU is missing.
    #[serde(default)]
    pub lost: bool,
    /// Serial number of the board.
    #[serde(default)]
    pub serial: Option<String>,
    /// VBIOS version.
    #[serde(default)]
    pub vbios_version: Option<String>,
    /// Performance state, `P0`..`P12`.
    #[serde(default)]
    pub pstate: Option<String>,
    /// Fan speed in percent (absent on passively cooled boards).
    #[serde(default)]
    pub fan_pct: Option<u32>,
    /// Core temperature in °C.
    #[serde(default)]
    pub temperature_c: Option<u32>,
    /// Temperature at which the GPU starts to slow down, °C.
    #[serde(default)]
    pub temperature_slowdown_c: Option<u32>,
    /// Temperature at which the GPU shuts down, °C.
    #[serde(default)]
    pub temperature_shutdown_c: Option<u32>,
    /// HBM temperature in °C (data-centre parts).
    #[serde(default)]
    pub memory_temperature_c: Option<u32>,
    /// Power draw in watts.
    #[serde(default)]
    pub power_draw_w: Option<f64>,
    /// Enforced power limit in watts.
    #[serde(default)]
    pub power_limit_w: Option<f64>,
    /// Default power limit in watts.
    #[serde(default)]
    pub power_default_limit_w: Option<f64>,
    /// Lowest power limit that can be set, in watts.
    #[serde(default)]
    pub power_min_limit_w: Option<f64>,
    /// Highest power limit that can be set, in watts.
    #[serde(default)]
    pub power_max_limit_w: Option<f64>,
    /// Current SM clock, MHz.
    #[serde(default)]
    pub clock_sm_mhz: Option<u32>,
    /// Maximum SM clock, MHz.
    #[serde(default)]
    pub clock_sm_max_mhz: Option<u32>,
    /// Current memory clock, MHz.
    #[serde(default)]
    pub clock_mem_mhz: Option<u32>,
    /// Maximum memory clock, MHz.
    #[serde(default)]
    pub clock_mem_max_mhz: Option<u32>,
    /// GPU utilisation over the last sample period, percent.
    #[serde(default)]
    pub utilization_gpu_pct: Option<u32>,
    /// Memory-controller utilisation, percent.
    #[serde(default)]
    pub utilization_mem_pct: Option<u32>,
    /// Framebuffer memory in use, MiB.
    #[serde(default)]
    pub memory_used_mib: Option<u64>,
    /// Framebuffer memory in total, MiB.
    #[serde(default)]
    pub memory_total_mib: Option<u64>,
    /// ECC mode and error counters; `None` when the GPU has no ECC.
    #[serde(default)]
    pub ecc: Option<Ecc>,
    /// Retired pages (pre-Ampere parts).
    #[serde(default)]
    pub retired_pages: Option<RetiredPages>,
    /// Remapped rows (Ampere and later).
    #[serde(default)]
    pub remapped_rows: Option<RemappedRows>,
    /// Active clock-event (throttle) reasons; empty when none is active.
    #[serde(default)]
    pub clock_event_reasons: Vec<ClockEventReason>,
    /// PCIe link state.
    #[serde(default)]
    pub pcie: Option<PcieLink>,
    /// Persistence mode on or off.
    #[serde(default)]
    pub persistence_mode: Option<bool>,
    /// MIG mode (current) on or off; `None` where MIG is not supported.
    #[serde(default)]
    pub mig_mode: Option<bool>,
    /// Compute mode, as nvidia-smi names it (`Default`, `Exclusive_Process`, ...).
    #[serde(default)]
    pub compute_mode: Option<String>,
    /// Compute processes holding memory on this GPU.
    #[serde(default)]
    pub processes: Vec<GpuProcess>,
    /// NVLink links; empty when the GPU has none.
    #[serde(default)]
    pub nvlinks: Vec<NvLink>,
    /// NVLink fabric registration; `None` where the GPU has none (no
    /// NVSwitch fabric, or older than Hopper).
    #[serde(default)]
    pub fabric: Option<GpuFabric>,
}

/// ECC mode and error counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Ecc {
    /// ECC currently enabled.
    pub enabled: bool,
    /// Corrected (single-bit) errors since the last driver load.
    #[serde(default)]
    pub corrected_volatile: u64,
    /// Uncorrected (double-bit) errors since the last driver load.
    #[serde(default)]
    pub uncorrected_volatile: u64,
    /// Corrected errors over the GPU's lifetime.
    #[serde(default)]
    pub corrected_aggregate: u64,
    /// Uncorrected errors over the GPU's lifetime.
    #[serde(default)]
    pub uncorrected_aggregate: u64,
}

/// Pages retired after ECC errors (pre-Ampere).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetiredPages {
    /// Pages retired for multiple single-bit errors.
    pub single_bit: u64,
    /// Pages retired for double-bit errors.
    pub double_bit: u64,
    /// A retirement waits for the next driver reload or reset.
    pub pending: bool,
}

/// Rows remapped after memory errors (Ampere and later).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemappedRows {
    /// Rows remapped for correctable errors.
    pub correctable: u64,
    /// Rows remapped for uncorrectable errors.
    pub uncorrectable: u64,
    /// A remap waits for the next GPU reset.
    pub pending: bool,
    /// A remap failed: the GPU is an RMA candidate.
    pub failure: bool,
}

/// A GPU's registration with the NVLink fabric (NVSwitch systems, Hopper
/// and later): until it completes, the GPU cannot run CUDA work.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GpuFabric {
    /// Registration state as nvidia-smi names it: `Not Started`,
    /// `In Progress` or `Completed`.
    pub state: String,
    /// Its result once `Completed`: `Success` or the error.
    #[serde(default)]
    pub status: Option<String>,
}

/// A reason the GPU's clocks are held below their maximum, named as in
/// nvidia-smi's `clocks_event_reasons.*` query fields.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum ClockEventReason {
    /// Nothing is running.
    GpuIdle,
    /// Clocks set by `nvidia-smi -ac`.
    ApplicationsClocksSetting,
    /// Software power cap (power draw at the limit).
    SwPowerCap,
    /// Hardware slowdown (thermal or power brake).
    HwSlowdown,
    /// Sync boost with other GPUs.
    SyncBoost,
    /// Software thermal slowdown.
    SwThermalSlowdown,
    /// Hardware thermal slowdown.
    HwThermalSlowdown,
    /// Hardware power brake (external signal).
    HwPowerBrakeSlowdown,
    /// Display clock setting.
    DisplayClockSetting,
}

impl ClockEventReason {
    /// Every reason, in nvidia-smi's order.
    pub const ALL: [ClockEventReason; 9] = [
        Self::GpuIdle,
        Self::ApplicationsClocksSetting,
        Self::SwPowerCap,
        Self::HwSlowdown,
        Self::SyncBoost,
        Self::SwThermalSlowdown,
        Self::HwThermalSlowdown,
        Self::HwPowerBrakeSlowdown,
        Self::DisplayClockSetting,
    ];

    /// The suffix of the nvidia-smi query field (`clocks_event_reasons.<name>`).
    pub fn field_name(self) -> &'static str {
        match self {
            Self::GpuIdle => "gpu_idle",
            Self::ApplicationsClocksSetting => "applications_clocks_setting",
            Self::SwPowerCap => "sw_power_cap",
            Self::HwSlowdown => "hw_slowdown",
            Self::SyncBoost => "sync_boost",
            Self::SwThermalSlowdown => "sw_thermal_slowdown",
            Self::HwThermalSlowdown => "hw_thermal_slowdown",
            Self::HwPowerBrakeSlowdown => "hw_power_brake_slowdown",
            Self::DisplayClockSetting => "display_clock_setting",
        }
    }

    /// True for reasons that slow a busy GPU (everything but idle/app clocks/sync/display).
    pub fn is_throttle(self) -> bool {
        matches!(
            self,
            Self::SwPowerCap
                | Self::HwSlowdown
                | Self::SwThermalSlowdown
                | Self::HwThermalSlowdown
                | Self::HwPowerBrakeSlowdown
        )
    }
}

/// PCIe link generation and width, current against maximum.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PcieLink {
    /// Current link generation.
    pub gen_current: u32,
    /// Maximum generation the GPU and host together support.
    pub gen_max: u32,
    /// Current link width (lanes).
    pub width_current: u32,
    /// Maximum link width (lanes).
    pub width_max: u32,
    /// PCIe replay counter (link-level retransmissions).
    #[serde(default)]
    pub replay_count: Option<u64>,
}

/// A compute process holding GPU memory.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GpuProcess {
    /// Process id.
    pub pid: u32,
    /// Process name (untrusted text from the node).
    pub name: String,
    /// GPU memory used, MiB.
    #[serde(default)]
    pub used_memory_mib: Option<u64>,
}

/// One NVLink link and its error counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NvLink {
    /// Link number.
    pub link: u32,
    /// Link is up.
    pub active: bool,
    /// Link speed in GB/s, when up.
    #[serde(default)]
    pub speed_gbps: Option<f64>,
    /// PCI bus id of the remote end (GPU or NVSwitch).
    #[serde(default)]
    pub remote_pci_bus_id: Option<String>,
    /// Data-link replay errors.
    #[serde(default)]
    pub replay_errors: u64,
    /// Data-link recovery errors.
    #[serde(default)]
    pub recovery_errors: u64,
    /// CRC errors in flits.
    #[serde(default)]
    pub crc_flit_errors: u64,
    /// CRC errors in data.
    #[serde(default)]
    pub crc_data_errors: u64,
}

/// A GPU-class PCI device (vendor 10de or 1002) found in sysfs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PciGpu {
    /// Bus address as lspci prints it, e.g. `0000:18:00.0`.
    pub bdf: String,
    /// Vendor id, 4 hex digits (`10de`, `1002`).
    pub vendor_id: String,
    /// Device id, 4 hex digits.
    pub device_id: String,
    /// Revision; `ff` means the device no longer answers config reads.
    #[serde(default)]
    pub revision: Option<String>,
    /// Human name, when known.
    #[serde(default)]
    pub name: Option<String>,
    /// Kernel driver bound to the device (`nvidia`, `amdgpu`, `vfio-pci`).
    #[serde(default)]
    pub driver: Option<String>,
    /// Current link speed in GT/s.
    #[serde(default)]
    pub link_speed_gts: Option<f64>,
    /// Maximum link speed in GT/s.
    #[serde(default)]
    pub link_speed_max_gts: Option<f64>,
    /// Current link width.
    #[serde(default)]
    pub link_width: Option<u32>,
    /// Maximum link width.
    #[serde(default)]
    pub link_width_max: Option<u32>,
    /// NUMA node the device is attached to.
    #[serde(default)]
    pub numa_node: Option<i32>,
}

/// An AMD GPU.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AmdGpu {
    /// Index as rocm-smi numbers it.
    pub index: u32,
    /// PCI bus address.
    pub bdf: String,
    /// Product name, when known.
    #[serde(default)]
    pub name: Option<String>,
    /// Edge or junction temperature, °C.
    #[serde(default)]
    pub temperature_c: Option<f64>,
    /// Power draw, W.
    #[serde(default)]
    pub power_draw_w: Option<f64>,
    /// Power cap, W.
    #[serde(default)]
    pub power_cap_w: Option<f64>,
    /// GPU busy percent.
    #[serde(default)]
    pub utilization_pct: Option<u32>,
    /// VRAM used, MiB.
    #[serde(default)]
    pub memory_used_mib: Option<u64>,
    /// VRAM total, MiB.
    #[serde(default)]
    pub memory_total_mib: Option<u64>,
    /// Uncorrectable RAS errors, when reported.
    #[serde(default)]
    pub ras_uncorrectable: Option<u64>,
    /// Correctable RAS errors, when reported.
    #[serde(default)]
    pub ras_correctable: Option<u64>,
}

/// An XID event from the NVIDIA kernel driver.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct XidEvent {
    /// When it happened: RFC 3339 when the log gave wall time, else
    /// seconds since boot as written by the kernel (`1234.567890`).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// PCI address from the message (`0000:18:00`).
    pub pci_bus_id: String,
    /// The XID number.
    pub xid: u32,
    /// Process id named by the message, when any.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Process name named by the message, when any (untrusted).
    #[serde(default)]
    pub process_name: Option<String>,
    /// The message after the XID number (untrusted).
    pub message: String,
}

/// Facts about the host.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Host name.
    pub hostname: String,
    /// OS name and version, e.g. `Ubuntu 22.04.4 LTS`.
    #[serde(default)]
    pub os: Option<String>,
    /// Kernel release.
    #[serde(default)]
    pub kernel: Option<String>,
    /// Seconds since boot.
    #[serde(default)]
    pub uptime_s: u64,
    /// CPU model name.
    #[serde(default)]
    pub cpu_model: Option<String>,
    /// Logical CPUs.
    #[serde(default)]
    pub cpu_count: u32,
    /// Load averages over 1, 5 and 15 minutes.
    #[serde(default)]
    pub load_avg: [f64; 3],
    /// Total memory, bytes.
    #[serde(default)]
    pub memory_total_bytes: u64,
    /// Available memory (what new work can use), bytes.
    #[serde(default)]
    pub memory_available_bytes: u64,
    /// Total swap, bytes.
    #[serde(default)]
    pub swap_total_bytes: u64,
    /// Swap in use, bytes.
    #[serde(default)]
    pub swap_used_bytes: u64,
    /// Mounted file systems backed by disks.
    #[serde(default)]
    pub disks: Vec<Disk>,
    /// Processes using the most CPU, highest first.
    #[serde(default)]
    pub top_cpu: Vec<HostProcess>,
    /// Processes using the most memory, highest first.
    #[serde(default)]
    pub top_memory: Vec<HostProcess>,
}

/// A mounted file system.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Mount point.
    pub mount: String,
    /// File system type.
    #[serde(default)]
    pub fs: Option<String>,
    /// Size, bytes.
    pub total_bytes: u64,
    /// Free space available to unprivileged users, bytes.
    pub available_bytes: u64,
}

/// A host process.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostProcess {
    /// Process id.
    pub pid: u32,
    /// Process name (untrusted).
    pub name: String,
    /// CPU use in percent of one core.
    #[serde(default)]
    pub cpu_pct: f64,
    /// Resident memory, bytes.
    #[serde(default)]
    pub memory_bytes: u64,
}

impl Snapshot {
    /// The GPU with NVML index `index`, if any.
    pub fn gpu(&self, index: u32) -> Option<&Gpu> {
        self.gpus.iter().find(|g| g.index == index)
    }

    /// The NVML GPU whose PCI bus id names the same device as `bus_id`
    /// (formats differ between NVML, lspci and XID messages).
    pub fn gpu_by_bus_id(&self, bus_id: &str) -> Option<&Gpu> {
        let want = normalize_bus_id(bus_id);
        self.gpus
            .iter()
            .find(|g| normalize_bus_id(&g.pci_bus_id) == want)
    }

    /// The NVIDIA GPUs on the PCI bus, whether or not NVML lists them.
    pub fn nvidia_on_pci(&self) -> impl Iterator<Item = &PciGpu> {
        self.pci_gpus
            .iter()
            .filter(|p| p.vendor_id.eq_ignore_ascii_case(super::pci::VENDOR_NVIDIA))
    }

    /// The `nvml` source's entry when NVML missed the probe's deadline: the
    /// NVIDIA driver is hung, and everything that calls it hangs too.
    pub fn nvml_timed_out(&self) -> Option<&Unavailable> {
        self.unavailable
            .iter()
            .find(|u| u.source == "nvml" && u.timed_out())
    }

    /// When the node booted: `taken_at` less the uptime (`None` when
    /// `taken_at` is not an RFC 3339 time or the uptime is out of range).
    pub fn boot_time(&self) -> Option<DateTime<Utc>> {
        let taken = DateTime::parse_from_rfc3339(&self.taken_at).ok()?;
        let uptime = chrono::TimeDelta::try_seconds(i64::try_from(self.host.uptime_s).ok()?)?;
        taken.with_timezone(&Utc).checked_sub_signed(uptime)
    }
}

/// Canonical form of a PCI address for comparison: lower case, 4-digit
/// domain, no function. `00000000:18:00.0`, `0000:18:00.0` and `0000:18:00`
/// (XID messages) all give `0000:18:00`.
pub fn normalize_bus_id(bus_id: &str) -> String {
    let s = bus_id.trim().to_ascii_lowercase();
    let s = s.split('.').next().unwrap_or("");
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [domain, bus, dev] => {
            let d = u32::from_str_radix(domain, 16).unwrap_or(0);
            format!("{d:04x}:{bus}:{dev}")
        }
        [bus, dev] => format!("0000:{bus}:{dev}"),
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_normalize_across_formats() {
        assert_eq!(normalize_bus_id("00000000:18:00.0"), "0000:18:00");
        assert_eq!(normalize_bus_id("0000:18:00.0"), "0000:18:00");
        assert_eq!(normalize_bus_id("0000:18:00"), "0000:18:00");
        assert_eq!(normalize_bus_id("18:00.0"), "0000:18:00");
        assert_eq!(normalize_bus_id("0000:9A:00.0"), "0000:9a:00");
    }
}
