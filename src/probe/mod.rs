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

use std::path::Path;
use std::thread;

use chrono::{SecondsFormat, Utc};

pub use snapshot::*;

/// Probes this machine. The sources run side by side (the host's CPU sample
/// needs a 200 ms pause); each one that fails, or even panics, leaves an
/// [`Unavailable`] entry instead.
pub fn probe_live() -> Snapshot {
    let taken_at = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let (host, nvml, pci, kernel_log) = thread::scope(|s| {
        let host = s.spawn(host::probe_host);
        let nvml = s.spawn(nvml::probe_nvml);
        let pci = s.spawn(probe_pci_and_amd);
        let kernel_log = s.spawn(|| kernel_log::read_kernel_log(&kernel_log::default_readers()));
        (host.join(), nvml.join(), pci.join(), kernel_log.join())
    });

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
    match nvml {
        Ok(report) => {
            snap.nvidia = report.driver;
            snap.gpus = report.gpus;
            snap.unavailable.extend(report.unavailable);
        }
        Err(_) => snap.unavailable.push(crashed("nvml")),
    }
    match pci {
        Ok((pci_gpus, amd_gpus, unavailable)) => {
            snap.pci_gpus = pci_gpus;
            snap.amd_gpus = amd_gpus;
            snap.unavailable.extend(unavailable);
        }
        Err(_) => snap.unavailable.push(crashed("pci")),
    }
    match kernel_log {
        Ok(Ok(log)) => {
            snap.xid_events = kernel_log::parse_xids(log.lines.iter().map(String::as_str));
            snap.kernel_log_source = Some(log.source);
        }
        Ok(Err(e)) => snap.unavailable.push(Unavailable {
            source: "kernel-log".to_string(),
            reason: e.to_string(),
        }),
        Err(_) => snap.unavailable.push(crashed("kernel-log")),
    }
    match host {
        Ok((host, unavailable)) => {
            snap.host = host;
            snap.unavailable.extend(unavailable);
        }
        Err(_) => snap.unavailable.push(crashed("host")),
    }
    snap
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

/// The entry for a source whose probe panicked (a bug in Sigma or a library).
fn crashed(source: &str) -> Unavailable {
    Unavailable {
        source: source.to_string(),
        reason: format!(
            "the {source} probe crashed; please report it with `RUST_BACKTRACE=1 sigma snapshot`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
