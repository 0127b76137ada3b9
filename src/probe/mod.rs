//! The probe: reads the node's state into a [`Snapshot`].
//!
//! # Sources
//! - [`nvml`]: NVIDIA GPUs through NVML, loaded at run time (`libnvidia-ml.so.1`).
//! - [`pci`]: GPU-class PCI devices from `/sys/bus/pci/devices`.
//! - [`kernel_log`]: XID events from `/dev/kmsg`, `journalctl -k` or `dmesg`.
//! - [`amd`]: AMD GPUs from sysfs, `rocm-smi` / `amd-smi` when installed.
//! - [`host`]: OS, CPU, memory, disks and processes through `sysinfo`.
//! - [`command`]: the timed runner every external tool goes through.
//!
//! A source that cannot be read adds an [`Unavailable`] entry with the reason;
//! the probe itself never fails. The probe does not judge anything: that is
//! the job of `checks`.
//!
//! # Example
//! ```no_run
//! let snapshot = sigma::probe::probe_live();
//! println!("{}", serde_json::to_string_pretty(&snapshot).unwrap());
//! ```

pub mod amd;
pub mod command;
pub mod describe;
pub mod host;
pub mod interpret;
pub mod kernel_log;
pub mod nvml;
pub mod pci;
pub mod snapshot;

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};

pub use snapshot::*;

/// How long the whole probe may take. A source still running past it is
/// reported as timed out and left behind: a call hung in the GPU driver
/// cannot be cancelled, but it must not hold up `sigma doctor` (Slurm kills
/// a health check after 60 s; fleet runs have a per-node timeout).
pub const PROBE_DEADLINE: Duration = Duration::from_secs(8);

/// Probes this machine. The sources run side by side (the host's CPU sample
/// needs a 200 ms pause), each on its own thread; one that fails, panics or
/// misses [`PROBE_DEADLINE`] leaves an [`Unavailable`] entry instead.
pub fn probe_live() -> Snapshot {
    let taken_at = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let deadline = Instant::now() + PROBE_DEADLINE;
    let host = spawn_source(host::probe_host);
    let nvml = spawn_source(nvml::probe_nvml);
    let pci = spawn_source(probe_pci_and_amd);
    let kernel_log = spawn_source(|| kernel_log::read_kernel_log(&kernel_log::default_readers()));

    let mut snap = Snapshot {
        schema_version: SCHEMA_VERSION,
        taken_at,
        source: Source::Live,
        host: Host::default(),
        nvidia: None,
        gpus: Vec::new(),
        pci_gpus: Vec::new(),
        amd_gpus: Vec::new(),
        xid_events: Vec::new(),
        kernel_log_source: None,
        unavailable: Vec::new(),
    };
    match nvml.wait(deadline) {
        Ok(report) => {
            snap.nvidia = report.driver;
            snap.gpus = report.gpus;
            snap.unavailable.extend(report.unavailable);
        }
        Err(missed) => snap.unavailable.push(missed.entry("nvml")),
    }
    match pci.wait(deadline) {
        Ok((pci_gpus, amd_gpus, unavailable)) => {
            snap.pci_gpus = pci_gpus;
            snap.amd_gpus = amd_gpus;
            snap.unavailable.extend(unavailable);
        }
        Err(missed) => snap.unavailable.push(missed.entry("pci")),
    }
    match kernel_log.wait(deadline) {
        Ok(Ok(log)) => {
            snap.xid_events = kernel_log::parse_xids(log.lines.iter().map(String::as_str));
            snap.kernel_log_source = Some(log.source);
        }
        Ok(Err(e)) => snap.unavailable.push(Unavailable {
            source: "kernel-log".to_string(),
            reason: e.to_string(),
        }),
        Err(missed) => snap.unavailable.push(missed.entry("kernel-log")),
    }
    match host.wait(deadline) {
        Ok((host, unavailable)) => {
            snap.host = host;
            snap.unavailable.extend(unavailable);
        }
        Err(missed) => snap.unavailable.push(missed.entry("host")),
    }
    if snap.host.hostname.is_empty() {
        // Fleet views attribute a verdict by its host, even when the host
        // probe itself timed out.
        snap.host.hostname = sysinfo::System::host_name().unwrap_or_default();
    }
    snap
}

/// A probe source running on its own thread.
struct PendingSource<T>(mpsc::Receiver<thread::Result<T>>);

/// Why a source gave no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missed {
    /// It panicked (a bug in Sigma or a library), or its thread could not start.
    Crashed,
    /// It was still running at the deadline.
    TimedOut,
}

impl Missed {
    /// The snapshot's entry for `source`.
    fn entry(self, source: &str) -> Unavailable {
        let reason = match self {
            Missed::Crashed => format!(
                "the {source} probe crashed; please report it with `RUST_BACKTRACE=1 sigma snapshot`"
            ),
            Missed::TimedOut => format!(
                "{}: the {source} probe did not answer within {} s (a hung driver or tool); \
                 the rest of the node was still checked",
                Unavailable::TIMED_OUT,
                PROBE_DEADLINE.as_secs()
            ),
        };
        Unavailable {
            source: source.to_string(),
            reason,
        }
    }
}

/// Starts `probe` on a detached thread: one that hangs is abandoned at the
/// deadline, not joined.
fn spawn_source<T: Send + 'static>(probe: impl FnOnce() -> T + Send + 'static) -> PendingSource<T> {
    let (tx, rx) = mpsc::channel();
    // A failed spawn drops `tx`, which `wait` reads as a crash.
    let _ = thread::Builder::new()
        .name("sigma-probe".into())
        .spawn(move || {
            let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(probe)));
        });
    PendingSource(rx)
}

impl<T> PendingSource<T> {
    /// The source's result, or why there is none by `deadline`.
    fn wait(self, deadline: Instant) -> Result<T, Missed> {
        match self
            .0
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => Err(Missed::Crashed),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Missed::TimedOut),
        }
    }
}

/// The PCI list, then the AMD GPUs found in it.
fn probe_pci_and_amd() -> (Vec<PciGpu>, Vec<AmdGpu>, Vec<Unavailable>) {
    match pci::read_pci_gpus(Path::new(pci::SYSFS_PCI_DEVICES)) {
        Ok(pci_gpus) => {
            let (amd_gpus, unavailable) = amd::probe_amd(&pci_gpus);
            (pci_gpus, amd_gpus, unavailable)
        }
        Err(e) => (
            Vec::new(),
            Vec::new(),
            vec![Unavailable {
                source: "pci".to_string(),
                reason: e.to_string(),
            }],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_source_times_out_at_the_deadline_and_a_panic_is_a_crash() {
        let start = Instant::now();
        let hung = spawn_source(|| thread::sleep(Duration::from_secs(30)));
        assert_eq!(
            hung.wait(start + Duration::from_millis(200)),
            Err(Missed::TimedOut)
        );
        assert!(start.elapsed() < Duration::from_secs(2));
        let crashed = spawn_source(|| -> u32 { panic!("probe bug") });
        assert_eq!(
            crashed.wait(Instant::now() + Duration::from_secs(5)),
            Err(Missed::Crashed)
        );
        let fine = spawn_source(|| 7);
        assert_eq!(fine.wait(Instant::now() + Duration::from_secs(5)), Ok(7));
        let entry = Missed::TimedOut.entry("nvml");
        assert_eq!(entry.source, "nvml");
        assert!(entry.timed_out(), "{}", entry.reason);
    }

    #[test]
    fn live_probe_on_this_machine_is_complete_and_round_trips() {
        let snap = probe_live();
        assert_eq!(snap.schema_version, SCHEMA_VERSION);
        assert_eq!(snap.source, Source::Live);
        assert!(chrono::DateTime::parse_from_rfc3339(&snap.taken_at).is_ok());
        assert!(!snap.host.hostname.is_empty());
        assert!(snap.host.memory_total_bytes > 0);
        // Either the kernel log was read or the snapshot says why not.
        let log_unavailable = snap.unavailable.iter().any(|u| u.source == "kernel-log");
        assert_ne!(snap.kernel_log_source.is_some(), log_unavailable);
        // Likewise NVML.
        let nvml_unavailable = snap.unavailable.iter().any(|u| u.source == "nvml");
        assert!(snap.nvidia.is_some() || nvml_unavailable);
        assert!(snap.unavailable.iter().all(|u| !u.reason.is_empty()));
        let json = serde_json::to_string(&snap).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
    }
}
