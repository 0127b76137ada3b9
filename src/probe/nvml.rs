//! NVIDIA GPUs through NVML (`libnvidia-ml.so.1`, loaded at run time).
//!
//! [`probe_nvml`] starts NVML and reads every GPU into a [`Gpu`]. The reading
//! sits behind [`GpuSource`] so the assembly ([`collect`]) can be tested with
//! a fake: a node without the driver, with no GPU, with a lost GPU.
//!
//! A value the GPU does not support is `None`, silently; any other failure
//! of one value is `None` too (the checks compare against sysfs and the
//! kernel log). A GPU that NVML reports as lost is kept, marked `lost`, with
//! whatever address NVML still gave. A library that cannot start becomes one
//! [`Unavailable`] entry saying why and what to do.

use std::cell::Cell;
use std::fs;

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::enum_wrappers::device::{
    Clock, ComputeMode, EccCounter, MemoryError, RetirementCause, TemperatureSensor,
    TemperatureThreshold,
};
use nvml_wrapper::enum_wrappers::nv_link::ErrorCounter;
use nvml_wrapper::enums::device::{SampleValue, UsedGpuMemory};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::structs::device::FieldId;
use nvml_wrapper::sys_exports::field_id::{
    NVML_FI_DEV_MEMORY_TEMP, NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON,
};
use nvml_wrapper::{Device, Nvml, cuda_driver_version_major, cuda_driver_version_minor};

use super::{
    ClockEventReason, Ecc, Gpu, GpuFabric, GpuProcess, NvLink, NvidiaDriver, PcieLink,
    RemappedRows, RetiredPages, Unavailable,
};

/// Links NVML numbers per GPU (`NVML_NVLINK_MAX_LINKS` in `nvml.h` 12.x).
const MAX_NVLINKS: u32 = 18;
/// `nvmlDeviceGetMigMode` reports this when MIG is on (`NVML_DEVICE_MIG_ENABLE`).
const MIG_ENABLED: u32 = 1;
/// Bytes in a MiB.
const MIB: u64 = 1024 * 1024;

/// NVML's bitmask flag for each clock-event reason.
const REASON_FLAGS: [(ThrottleReasons, ClockEventReason); 9] = [
    (ThrottleReasons::GPU_IDLE, ClockEventReason::GpuIdle),
    (
        ThrottleReasons::APPLICATIONS_CLOCKS_SETTING,
        ClockEventReason::ApplicationsClocksSetting,
    ),
    (ThrottleReasons::SW_POWER_CAP, ClockEventReason::SwPowerCap),
    (ThrottleReasons::HW_SLOWDOWN, ClockEventReason::HwSlowdown),
    (ThrottleReasons::SYNC_BOOST, ClockEventReason::SyncBoost),
    (
        ThrottleReasons::SW_THERMAL_SLOWDOWN,
        ClockEventReason::SwThermalSlowdown,
    ),
    (
        ThrottleReasons::HW_THERMAL_SLOWDOWN,
        ClockEventReason::HwThermalSlowdown,
    ),
    (
        ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN,
        ClockEventReason::HwPowerBrakeSlowdown,
    ),
    (
        ThrottleReasons::DISPLAY_CLOCK_SETTING,
        ClockEventReason::DisplayClockSetting,
    ),
];

/// A GPU that could not be read at all.
#[derive(Debug)]
pub struct DeviceError {
    /// What NVML answered.
    pub error: NvmlError,
    /// The GPU's bus id, when NVML still gave it.
    pub pci_bus_id: Option<String>,
}

/// Where GPUs are read from: NVML on a live node, a fake in tests.
pub trait GpuSource {
    /// How many GPUs the driver reports.
    fn device_count(&self) -> Result<u32, NvmlError>;
    /// Versions of the driver stack.
    fn driver(&self) -> NvidiaDriver;
    /// Everything about GPU `index`.
    fn gpu(&self, index: u32) -> Result<Gpu, DeviceError>;
}

/// What NVML told about the node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NvmlReport {
    /// Driver versions, when NVML started.
    pub driver: Option<NvidiaDriver>,
    /// GPUs by index (lost ones included, marked).
    pub gpus: Vec<Gpu>,
    /// What could not be read, and why.
    pub unavailable: Vec<Unavailable>,
}

/// Starts NVML and reads every GPU. Never fails; see [`collect`].
pub fn probe_nvml() -> NvmlReport {
    collect(Nvml::init())
}

/// Assembles the report from a started source, or from the reason it did
/// not start. Zero GPUs is not a failure: the checks compare with the PCI
/// list.
pub fn collect<S: GpuSource>(source: Result<S, NvmlError>) -> NvmlReport {
    let mut report = NvmlReport::default();
    let source = match source {
        Ok(s) => s,
        Err(e) => {
            report.unavailable.push(unavailable(init_reason(&e)));
            return report;
        }
    };
    report.driver = Some(source.driver());
    let count = match source.device_count() {
        Ok(n) => n,
        Err(e) => {
            report.unavailable.push(unavailable(format!(
                "NVML started but cannot count GPUs: {e}; check `nvidia-smi` and `dmesg | grep NVRM`"
            )));
            return report;
        }
    };
    for index in 0..count {
        match source.gpu(index) {
            Ok(gpu) => report.gpus.push(gpu),
            Err(DeviceError {
                error: NvmlError::GpuLost,
                pci_bus_id,
            }) => report.gpus.push(Gpu {
                index,
                pci_bus_id: pci_bus_id.unwrap_or_default(),
                lost: true,
                ..Gpu::default()
            }),
            Err(DeviceError { error, .. }) => report.unavailable.push(unavailable(format!(
                "GPU {index} cannot be read through NVML: {error}; run `nvidia-smi -q -i {index}`"
            ))),
        }
    }
    report
}

/// An [`Unavailable`] entry for NVML.
fn unavailable(reason: String) -> Unavailable {
    Unavailable {
        source: "nvml".to_string(),
        reason,
    }
}

/// Why NVML did not start, and the fix, in one line.
pub fn init_reason(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(err) if !err.to_string().contains("No such file") => format!(
            "libnvidia-ml.so.1 cannot be loaded ({err}); reinstall the NVIDIA driver"
        ),
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
            "libnvidia-ml.so.1 not found: no NVIDIA driver installed (install the driver or run on a GPU node)"
                .to_string()
        }
        NvmlError::FailedToLoadSymbol(_) | NvmlError::FunctionNotFound => format!(
            "libnvidia-ml.so.1 lacks an NVML function ({e}); the driver is too old or damaged, reinstall it"
        ),
        NvmlError::DriverNotLoaded => "NVIDIA driver not loaded: libnvidia-ml is installed but the \
             kernel module is not (see `lsmod | grep nvidia` and `dmesg | grep NVRM`)"
            .to_string(),
        NvmlError::NoPermission => "NVML: permission denied talking to the driver; run as root or \
             check the permissions of /dev/nvidia*"
            .to_string(),
        NvmlError::LibRmVersionMismatch => "NVML library and kernel module versions differ (driver \
             upgraded without reboot?); reboot the node or reload the nvidia module"
            .to_string(),
        other => format!("NVML failed to start: {other}; run `nvidia-smi` to see the driver's view"),
    }
}

impl GpuSource for Nvml {
    fn device_count(&self) -> Result<u32, NvmlError> {
        Nvml::device_count(self)
    }

    fn driver(&self) -> NvidiaDriver {
        NvidiaDriver {
            driver_version: self.sys_driver_version().unwrap_or_default(),
            cuda_version: self.sys_cuda_driver_version().ok().map(|v| {
                format!(
                    "{}.{}",
                    cuda_driver_version_major(v),
                    cuda_driver_version_minor(v)
                )
            }),
            nvml_version: self.sys_nvml_version().ok(),
        }
    }

    fn gpu(&self, index: u32) -> Result<Gpu, DeviceError> {
        let device = self.device_by_index(index).map_err(|error| DeviceError {
            error,
            pci_bus_id: None,
        })?;
        read_gpu(self, &device, index)
    }
}

/// Turns per-value results into options, remembering whether any said the
/// GPU is lost.
#[derive(Default)]
struct Values {
    lost: Cell<bool>,
}

impl Values {
    /// The value, or `None` on any error (`NotSupported` included).
    fn get<T>(&self, r: Result<T, NvmlError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(NvmlError::GpuLost) => {
                self.lost.set(true);
                None
            }
            Err(_) => None,
        }
    }
}

/// Reads one GPU. Name and UUID answer on every working GPU, so their
/// failure fails the whole GPU; every other value is optional.
fn read_gpu(nvml: &Nvml, d: &Device, index: u32) -> Result<Gpu, DeviceError> {
    let bus = d.pci_info().ok().map(|p| p.bus_id);
    let fail = |error| DeviceError {
        error,
        pci_bus_id: bus.clone(),
    };
    let name = d.name().map_err(fail)?;
    let uuid = d.uuid().map_err(fail)?;
    let v = Values::default();
    let fields = v.get(d.field_values_for(&[
        FieldId(NVML_FI_DEV_MEMORY_TEMP),
        FieldId(NVML_FI_DEV_NVLINK_SPEED_MBPS_COMMON),
    ]));
    let field = |i: usize| -> Option<f64> {
        let sample = fields.as_ref()?.get(i)?.as_ref().ok()?;
        sample_number(sample.value.as_ref().ok()?)
    };
    let memory = v.get(d.memory_info());
    let power_range = v.get(d.power_management_limit_constraints());
    let utilization = v.get(d.utilization_rates());
    let mut gpu = Gpu {
        index,
        name,
        uuid,
        pci_bus_id: bus.clone().unwrap_or_default(),
        serial: v.get(d.serial()),
        vbios_version: v.get(d.vbios_version()),
        pstate: v
            .get(d.performance_state())
            .map(|p| p.as_c())
            .filter(|&n| n < 16)
            .map(|n| format!("P{n}")),
        fan_pct: v.get(d.fan_speed(0)),
        temperature_c: v.get(d.temperature(TemperatureSensor::Gpu)),
        temperature_slowdown_c: v.get(d.temperature_threshold(TemperatureThreshold::Slowdown)),
        temperature_shutdown_c: v.get(d.temperature_threshold(TemperatureThreshold::Shutdown)),
        memory_temperature_c: field(0).filter(|&t| t > 0.0).map(|t| t as u32),
        power_draw_w: v.get(d.power_usage()).map(milliwatts),
        power_limit_w: v.get(d.enforced_power_limit()).map(milliwatts),
        power_default_limit_w: v.get(d.power_management_limit_default()).map(milliwatts),
        power_min_limit_w: power_range.as_ref().map(|r| milliwatts(r.min_limit)),
        power_max_limit_w: power_range.as_ref().map(|r| milliwatts(r.max_limit)),
        clock_sm_mhz: v.get(d.clock_info(Clock::SM)),
        clock_sm_max_mhz: v.get(d.max_clock_info(Clock::SM)),
        clock_mem_mhz: v.get(d.clock_info(Clock::Memory)),
        clock_mem_max_mhz: v.get(d.max_clock_info(Clock::Memory)),
        utilization_gpu_pct: utilization.as_ref().map(|u| u.gpu),
        utilization_mem_pct: utilization.as_ref().map(|u| u.memory),
        memory_used_mib: memory.as_ref().map(|m| m.used / MIB),
        memory_total_mib: memory.as_ref().map(|m| m.total / MIB),
        ecc: read_ecc(&v, d),
        retired_pages: read_retired_pages(&v, d),
        remapped_rows: v.get(remapped_rows(nvml, d)),
        clock_event_reasons: v
            .get(d.current_throttle_reasons())
            .map(clock_event_reasons)
            .unwrap_or_default(),
        pcie: read_pcie(&v, d),
        persistence_mode: v.get(d.is_in_persistent_mode()),
        mig_mode: v.get(d.mig_mode()).map(|m| m.current == MIG_ENABLED),
        compute_mode: v
            .get(d.compute_mode())
            .map(|m| compute_mode_name(m).to_string()),
        processes: read_processes(&v, nvml, d),
        nvlinks: read_nvlinks(&v, d, field(1).map(|mbps| mbps / 1000.0)),
        fabric: v.get(fabric(nvml, d)).flatten(),
        lost: false,
    };
    gpu.lost = v.lost.get();
    Ok(gpu)
}

/// A field value as a number.
fn sample_number(v: &SampleValue) -> Option<f64> {
    match *v {
        SampleValue::F64(x) => Some(x),
        SampleValue::U32(x) => Some(f64::from(x)),
        SampleValue::U64(x) => Some(x as f64),
        SampleValue::I64(x) => Some(x as f64),
    }
}

/// NVML milliwatts to watts.
fn milliwatts(mw: u32) -> f64 {
    f64::from(mw) / 1000.0
}

/// The active reasons in an NVML clock-event bitmask, in nvidia-smi's order.
pub fn clock_event_reasons(mask: ThrottleReasons) -> Vec<ClockEventReason> {
    REASON_FLAGS
        .iter()
        .filter(|(flag, _)| mask.contains(*flag))
        .map(|&(_, reason)| reason)
        .collect()
}

/// Compute mode as nvidia-smi names it.
fn compute_mode_name(mode: ComputeMode) -> &'static str {
    match mode {
        ComputeMode::Default => "Default",
        ComputeMode::ExclusiveThread => "Exclusive_Thread",
        ComputeMode::Prohibited => "Prohibited",
        ComputeMode::ExclusiveProcess => "Exclusive_Process",
    }
}

/// ECC mode and totals; `None` when the GPU has no ECC.
fn read_ecc(v: &Values, d: &Device) -> Option<Ecc> {
    let mode = v.get(d.is_ecc_enabled())?;
    let count = |e, c| v.get(d.total_ecc_errors(e, c)).unwrap_or(0);
    Some(Ecc {
        enabled: mode.currently_enabled,
        corrected_volatile: count(MemoryError::Corrected, EccCounter::Volatile),
        uncorrected_volatile: count(MemoryError::Uncorrected, EccCounter::Volatile),
        corrected_aggregate: count(MemoryError::Corrected, EccCounter::Aggregate),
        uncorrected_aggregate: count(MemoryError::Uncorrected, EccCounter::Aggregate),
    })
}

/// Retired pages; `None` on GPUs without page retirement (Ampere and later
/// remap rows instead).
fn read_retired_pages(v: &Values, d: &Device) -> Option<RetiredPages> {
    let single = v.get(d.retired_pages(RetirementCause::MultipleSingleBitEccErrors))?;
    let double = v.get(d.retired_pages(RetirementCause::DoubleBitEccError))?;
    Some(RetiredPages {
        single_bit: single.len() as u64,
        double_bit: double.len() as u64,
        pending: v.get(d.are_pages_pending_retired()).unwrap_or(false),
    })
}

/// Remapped rows (Ampere and later). nvml-wrapper 0.13 does not wrap
/// `nvmlDeviceGetRemappedRows`, so this calls the loaded symbol directly,
/// after checking the library has it (drivers before R450 do not).
fn remapped_rows(nvml: &Nvml, d: &Device) -> Result<RemappedRows, NvmlError> {
    let sym = nvml
        .lib()
        .nvmlDeviceGetRemappedRows
        .as_ref()
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let (mut corr, mut unc, mut pending, mut failure) = (0u32, 0u32, 0u32, 0u32);
    // SAFETY: `sym` was resolved from the loaded NVML library with the
    // signature of nvml.h; the handle is valid while `d` (which borrows the
    // initialised `Nvml`) lives; the four out-pointers are live locals.
    let ret = unsafe { sym(d.handle(), &mut corr, &mut unc, &mut pending, &mut failure) };
    if ret != 0 {
        return Err(NvmlError::from(ret));
    }
    Ok(RemappedRows {
        correctable: u64::from(corr),
        uncorrectable: u64::from(unc),
        pending: pending != 0,
        failure: failure != 0,
    })
}

/// `nvmlGpuFabricInfo_t` from `nvml.h`, field for field (the wrapper does
/// not export the bindings' type).
#[repr(C)]
struct RawFabricInfo {
    cluster_uuid: [u8; 16],
    status: u32,
    clique_id: u32,
    state: u8,
}

/// NVLink fabric registration (Hopper and later). nvml-wrapper 0.13 does
/// not wrap `nvmlDeviceGetGpuFabricInfo`, so this calls the loaded symbol
/// directly, as [`remapped_rows`] does. `None` when the GPU has no fabric
/// (`NVML_GPU_FABRIC_STATE_NOT_SUPPORTED`).
fn fabric(nvml: &Nvml, d: &Device) -> Result<Option<GpuFabric>, NvmlError> {
    let sym = nvml
        .lib()
        .nvmlDeviceGetGpuFabricInfo
        .as_ref()
        .map_err(|e| NvmlError::FailedToLoadSymbol(e.to_string()))?;
    let mut info = RawFabricInfo {
        cluster_uuid: [0; 16],
        status: 0,
        clique_id: 0,
        state: 0,
    };
    // SAFETY: as in `remapped_rows`; `RawFabricInfo` has the layout of
    // `nvmlGpuFabricInfo_t` and outlives the call.
    let ret = unsafe { sym(d.handle(), (&raw mut info).cast()) };
    if ret != 0 {
        return Err(NvmlError::from(ret));
    }
    // NVML_GPU_FABRIC_STATE_*: 0 not supported, 1 not started, 2 in
    // progress, 3 completed; the status means something only once completed.
    let state = match info.state {
        1 => "Not Started",
        2 => "In Progress",
        3 => "Completed",
        _ => return Ok(None),
    };
    let status = (info.state == 3).then(|| match info.status {
        0 => "Success".to_string(),
        code => NvmlError::from(code).to_string(),
    });
    Ok(Some(GpuFabric {
        state: state.to_string(),
        status,
    }))
}

/// PCIe generation and width, current and maximum, plus the replay counter.
fn read_pcie(v: &Values, d: &Device) -> Option<PcieLink> {
    Some(PcieLink {
        gen_current: v.get(d.current_pcie_link_gen())?,
        gen_max: v.get(d.max_pcie_link_gen())?,
        width_current: v.get(d.current_pcie_link_width())?,
        width_max: v.get(d.max_pcie_link_width())?,
        replay_count: v.get(d.pcie_replay_counter()).map(u64::from),
    })
}

/// Compute processes with their names and memory.
fn read_processes(v: &Values, nvml: &Nvml, d: &Device) -> Vec<GpuProcess> {
    let procs = v.get(d.running_compute_processes()).unwrap_or_default();
    procs
        .into_iter()
        .map(|p| GpuProcess {
            pid: p.pid,
            name: process_name(p.pid)
                .or_else(|| nvml.sys_process_name(p.pid, 64).ok())
                .unwrap_or_else(|| "<unknown>".to_string()),
            used_memory_mib: match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => Some(b / MIB),
                UsedGpuMemory::Unavailable => None,
            },
        })
        .collect()
}

/// A process's command name from `/proc/PID/comm` (untrusted).
fn process_name(pid: u32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let name = comm.trim_end_matches('\n');
    (!name.is_empty()).then(|| name.to_string())
}

/// Every NVLink link the GPU has, with its error counters; `speed_gbps` is
/// the common link speed, given to active links.
fn read_nvlinks(v: &Values, d: &Device, speed_gbps: Option<f64>) -> Vec<NvLink> {
    let mut links = Vec::new();
    for link in 0..MAX_NVLINKS {
        let l = d.link_wrapper_for(link);
        // A link that does not exist answers NotSupported or InvalidArg.
        let Some(active) = v.get(l.is_active()) else {
            continue;
        };
        let count = |c| v.get(l.error_counter(c)).unwrap_or(0);
        links.push(NvLink {
            link,
            active,
            speed_gbps: speed_gbps.filter(|_| active),
            remote_pci_bus_id: if active {
                v.get(l.remote_pci_info()).map(|p| p.bus_id)
            } else {
                None
            },
            replay_errors: count(ErrorCounter::DlReplay),
            recovery_errors: count(ErrorCounter::DlRecovery),
            crc_flit_errors: count(ErrorCounter::DlCrcFlit),
            crc_data_errors: count(ErrorCounter::DlCrcData),
        });
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake node: a fixed driver and a result per GPU.
    struct Fake {
        count: Result<u32, fn() -> NvmlError>,
        gpus: Vec<fn(u32) -> Result<Gpu, DeviceError>>,
    }

    impl GpuSource for Fake {
        fn device_count(&self) -> Result<u32, NvmlError> {
            self.count.map_err(|f| f())
        }
        fn driver(&self) -> NvidiaDriver {
            NvidiaDriver {
                driver_version: "550.54.15".to_string(),
                cuda_version: Some("12.4".to_string()),
                nvml_version: Some("12.550.54.15".to_string()),
            }
        }
        fn gpu(&self, index: u32) -> Result<Gpu, DeviceError> {
            self.gpus[index as usize](index)
        }
    }

    fn healthy(index: u32) -> Result<Gpu, DeviceError> {
        Ok(Gpu {
            index,
            name: "NVIDIA H100 80GB HBM3".to_string(),
            uuid: format!("GPU-{index}"),
            pci_bus_id: "00000000:18:00.0".to_string(),
            ..Gpu::default()
        })
    }

    fn lost(_: u32) -> Result<Gpu, DeviceError> {
        Err(DeviceError {
            error: NvmlError::GpuLost,
            pci_bus_id: Some("00000000:3B:00.0".to_string()),
        })
    }

    fn denied(_: u32) -> Result<Gpu, DeviceError> {
        Err(DeviceError {
            error: NvmlError::NoPermission,
            pci_bus_id: None,
        })
    }

    #[test]
    fn missing_library_is_one_unavailable_entry() {
        let report = collect::<Fake>(Err(NvmlError::LibraryNotFound));
        assert_eq!(report.driver, None);
        assert!(report.gpus.is_empty());
        assert_eq!(
            report.unavailable,
            [Unavailable {
                source: "nvml".to_string(),
                reason: "libnvidia-ml.so.1 not found: no NVIDIA driver installed (install the driver or run on a GPU node)".to_string(),
            }]
        );
    }

    #[test]
    fn real_init_on_a_node_without_driver_fails_cleanly() {
        // This machine has no NVIDIA driver; on a GPU node NVML starts.
        let driver_present = std::path::Path::new("/proc/driver/nvidia/version").exists();
        let report = probe_nvml();
        if driver_present {
            assert!(report.driver.is_some(), "{:?}", report.unavailable);
        } else {
            assert_eq!(report.unavailable.len(), 1, "{:?}", report.unavailable);
            assert_eq!(report.unavailable[0].source, "nvml");
            assert!(report.gpus.is_empty());
        }
    }

    #[test]
    fn init_errors_name_their_fix() {
        assert!(init_reason(&NvmlError::DriverNotLoaded).starts_with("NVIDIA driver not loaded"));
        assert!(init_reason(&NvmlError::NoPermission).contains("run as root"));
        assert!(init_reason(&NvmlError::LibRmVersionMismatch).contains("reboot"));
        assert!(init_reason(&NvmlError::FunctionNotFound).contains("too old"));
        assert!(init_reason(&NvmlError::Unknown).starts_with("NVML failed to start"));
    }

    #[test]
    fn zero_devices_is_empty_not_unavailable() {
        let report = collect(Ok(Fake {
            count: Ok(0),
            gpus: vec![],
        }));
        assert_eq!(report.driver.unwrap().driver_version, "550.54.15");
        assert!(report.gpus.is_empty());
        assert!(report.unavailable.is_empty());
    }

    #[test]
    fn lost_gpu_is_kept_and_marked() {
        let report = collect(Ok(Fake {
            count: Ok(2),
            gpus: vec![healthy, lost],
        }));
        assert_eq!(report.gpus.len(), 2);
        assert!(!report.gpus[0].lost);
        let gone = &report.gpus[1];
        assert!(gone.lost);
        assert_eq!(
            (gone.index, gone.pci_bus_id.as_str()),
            (1, "00000000:3B:00.0")
        );
        assert!(report.unavailable.is_empty());
    }

    #[test]
    fn unreadable_gpu_is_reported_not_invented() {
        let report = collect(Ok(Fake {
            count: Ok(2),
            gpus: vec![denied, healthy],
        }));
        assert_eq!(report.gpus.len(), 1);
        assert_eq!(report.gpus[0].index, 1);
        assert_eq!(report.unavailable.len(), 1);
        assert!(
            report.unavailable[0]
                .reason
                .starts_with("GPU 0 cannot be read")
        );
    }

    #[test]
    fn failed_count_is_reported() {
        let report = collect(Ok(Fake {
            count: Err(|| NvmlError::Unknown),
            gpus: vec![],
        }));
        assert!(report.driver.is_some());
        assert!(report.unavailable[0].reason.contains("cannot count GPUs"));
    }

    #[test]
    fn clock_event_bitmask_maps_to_reasons() {
        let mask = ThrottleReasons::SW_POWER_CAP | ThrottleReasons::HW_THERMAL_SLOWDOWN;
        assert_eq!(
            clock_event_reasons(mask),
            [
                ClockEventReason::SwPowerCap,
                ClockEventReason::HwThermalSlowdown
            ]
        );
        assert!(clock_event_reasons(ThrottleReasons::NONE).is_empty());
        let all: Vec<ClockEventReason> = REASON_FLAGS.iter().map(|&(_, r)| r).collect();
        assert_eq!(all, ClockEventReason::ALL);
    }

    #[test]
    fn values_remember_a_lost_gpu() {
        let v = Values::default();
        assert_eq!(v.get::<u32>(Err(NvmlError::NotSupported)), None);
        assert!(!v.lost.get());
        assert_eq!(v.get::<u32>(Err(NvmlError::GpuLost)), None);
        assert!(v.lost.get());
    }
}
