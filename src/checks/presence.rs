//! Presence: is every NVIDIA GPU on the PCI bus reachable through NVML?
//!
//! - `gpu-lost`: NVML lists the GPU but says it is lost.
//! - `nvml-hung`: NVML did not answer within the probe's deadline (a hung
//!   driver); the GPUs it could not list are then not reported as missing.
//! - `gpu-missing-from-nvml`: an NVIDIA GPU on PCI that NVML does not list.
//!   When NVML lists none of them (NVML unavailable, driver not loaded) this
//!   is one node-wide finding rather than one per GPU. A device bound to
//!   another driver (`vfio-pci` for pass-through, `nouveau`) is expected to
//!   be invisible to NVML and is only an info.
//!
//! XID 79 and these findings describe one failure from two sides: the XID is
//! what happened, these say the state now. Both are reported; a presence
//! finding whose device also has XID 79 events names `xid-79` in its
//! `see_also` evidence, so a reader (or the copilot) can merge them.

use std::collections::BTreeMap;

use super::common::{argv, bug_report, dmesg, evidence, lspci_device, untrusted};
use super::{Finding, Severity};
use crate::probe::{PciGpu, Snapshot, normalize_bus_id};

/// The XID that means a GPU fell off the bus.
const XID_FELL_OFF_BUS: u32 = 79;

/// Rule: `gpu-lost`, critical, for each GPU NVML reports as lost.
pub(super) fn gpu_lost(snapshot: &Snapshot) -> Vec<Finding> {
    snapshot
        .gpus
        .iter()
        .filter(|g| g.lost)
        .map(|g| {
            let mut ev = evidence([
                ("pci_bus_id", untrusted(&g.pci_bus_id)),
                ("name", untrusted(&g.name)),
                ("nvml", "GPU_IS_LOST".into()),
            ]);
            add_pci_and_xid_evidence(snapshot, &g.pci_bus_id, &mut ev);
            Finding {
                id: "gpu-lost".into(),
                severity: Severity::Critical,
                gpu: Some(g.index),
                title: "GPU is lost: NVML can no longer reach it".into(),
                evidence: ev,
                commands: vec![lspci_device(&g.pci_bus_id), bug_report(), dmesg()],
                why: "NVML reports the GPU as lost: it stopped answering, typically after \
                      XID 79 (fallen off the bus) or a fatal firmware error. Nothing can run \
                      on it, and a GPU reset rarely brings it back. Collect \
                      `nvidia-bug-report.sh --safe-mode` first, then drain and reboot the \
                      node; if it happens again, suspect the GPU, its riser or its power and \
                      open a support case."
                    .into(),
            }
        })
        .collect()
}

/// Rule: `gpu-missing-from-nvml` for NVIDIA GPUs on PCI that NVML does not
/// list: critical, or info when another driver owns the device on purpose.
pub(super) fn missing_from_nvml(snapshot: &Snapshot) -> Vec<Finding> {
    let missing: Vec<&PciGpu> = snapshot
        .nvidia_on_pci()
        .filter(|p| snapshot.gpu_by_bus_id(&p.bdf).is_none())
        .collect();
    let (elsewhere, unclaimed): (Vec<&PciGpu>, Vec<&PciGpu>) = missing
        .into_iter()
        .partition(|p| p.driver.as_deref().is_some_and(|d| d != "nvidia"));

    let mut findings: Vec<Finding> = elsewhere.into_iter().map(bound_elsewhere).collect();
    if snapshot.nvml_timed_out().is_some() {
        // NVML never answered: it listed nothing, so nothing is missing from
        // it; `nvml-hung` reports the node.
    } else if snapshot.gpus.is_empty() && !unclaimed.is_empty() {
        findings.push(no_gpu_in_nvml(snapshot, &unclaimed));
    } else {
        findings.extend(unclaimed.into_iter().map(|p| one_missing(snapshot, p)));
    }
    findings
}

/// Rule: `nvml-hung`, critical, when NVML did not answer within the probe's
/// deadline: calls into the NVIDIA driver block, so `nvidia-smi`, DCGM and
/// every CUDA job on the node hang with it.
pub(super) fn nvml_hung(snapshot: &Snapshot) -> Vec<Finding> {
    let Some(nvml) = snapshot.nvml_timed_out() else {
        return Vec::new();
    };
    let nvidia_pci = snapshot.nvidia_on_pci().count();
    let mut ev = evidence([
        ("nvml", untrusted(&nvml.reason)),
        ("nvidia_pci_gpus", nvidia_pci.to_string()),
    ]);
    let mut xids: Vec<String> = Vec::new();
    for e in &snapshot.xid_events {
        let seen = format!("XID {} on {}", e.xid, untrusted(&e.pci_bus_id));
        if !xids.contains(&seen) {
            xids.push(seen);
        }
    }
    if !xids.is_empty() {
        ev.insert("xids".into(), xids.join(", "));
    }
    vec![Finding {
        id: "nvml-hung".into(),
        severity: Severity::Critical,
        gpu: None,
        title: "NVML did not answer: the NVIDIA driver is hung".into(),
        evidence: ev,
        commands: vec![dmesg(), bug_report()],
        why: "NVML calls did not return within the probe's deadline: they are blocked inside \
              the NVIDIA driver, so `nvidia-smi`, DCGM and every CUDA call on this node hang \
              the same way, and running jobs are stuck. It usually follows a GPU firmware \
              (GSP) timeout, XID 119 or 120, or a GPU fallen off the bus, XID 79: the kernel \
              log names the GPU. Do not run nvidia-smi without a time limit. Collect \
              `nvidia-bug-report.sh --safe-mode`, drain the node and reboot it: a GPU reset \
              needs a driver that answers. If it recurs, check the driver version against \
              NVIDIA's known GSP issues."
            .into(),
    }]
}

/// NVML sees no GPU at all although NVIDIA GPUs are on PCI: the driver is
/// not loaded or not working. One finding for the node.
fn no_gpu_in_nvml(snapshot: &Snapshot, devices: &[&PciGpu]) -> Finding {
    let bdfs: Vec<String> = devices.iter().map(|p| untrusted(&p.bdf)).collect();
    let drivers: Vec<String> = devices
        .iter()
        .map(|p| p.driver.as_deref().map_or_else(|| "none".into(), untrusted))
        .collect();
    let mut ev = evidence([
        ("nvidia_pci_gpus", devices.len().to_string()),
        ("bus_ids", bdfs.join(", ")),
        ("drivers", drivers.join(", ")),
        ("nvml_gpus", "0".into()),
    ]);
    if let Some(u) = snapshot.unavailable.iter().find(|u| u.source == "nvml") {
        ev.insert("nvml".into(), untrusted(&u.reason));
    }
    let count = devices.len();
    let plural = if count == 1 { "" } else { "s" };
    Finding {
        id: "gpu-missing-from-nvml".into(),
        severity: Severity::Critical,
        gpu: None,
        title: format!("{count} NVIDIA GPU{plural} on PCI, none visible to NVML"),
        evidence: ev,
        commands: vec![
            argv(&["lspci", "-nnk", "-d", "10de:"]),
            argv(&["cat", "/proc/driver/nvidia/version"]),
            dmesg(),
        ],
        why: "NVIDIA GPUs are on the PCI bus but NVML reports none: the NVIDIA driver is not \
              loaded, failed to initialise, or does not match the user-space libraries. \
              Nothing can use these GPUs. Check which kernel driver is in use (`lspci \
              -nnk`), whether the module is loaded (/proc/driver/nvidia/version) and the \
              kernel log for NVRM errors; then reinstall or reload the driver, or reboot \
              after a driver upgrade."
            .into(),
    }
}

/// One NVIDIA GPU on PCI that NVML does not list while it lists others.
fn one_missing(snapshot: &Snapshot, device: &PciGpu) -> Finding {
    let mut ev = evidence([
        ("pci_bus_id", untrusted(&device.bdf)),
        ("device_id", untrusted(&device.device_id)),
        (
            "driver",
            device
                .driver
                .as_deref()
                .map_or_else(|| "none".into(), untrusted),
        ),
        ("nvml_gpus", snapshot.gpus.len().to_string()),
    ]);
    add_pci_and_xid_evidence(snapshot, &device.bdf, &mut ev);
    let gone = is_gone(device);
    let mut why = String::from(
        "NVML lists the other GPUs but not this one: it failed to initialise or stopped \
         answering, so nothing can use it. ",
    );
    if gone {
        why.push_str(
            "Its PCI revision reads ff: it no longer answers config reads (fallen off the bus). ",
        );
    }
    why.push_str(
        "Collect `nvidia-bug-report.sh --safe-mode` first, read the kernel log for NVRM and \
         XID messages, then drain and reboot the node; if it stays missing, the GPU or its \
         slot is suspect: open a support case.",
    );
    Finding {
        id: "gpu-missing-from-nvml".into(),
        severity: Severity::Critical,
        gpu: None,
        title: format!(
            "GPU {} on PCI is not visible to NVML",
            short_bdf(&device.bdf)
        ),
        evidence: ev,
        commands: vec![lspci_device(&device.bdf), bug_report(), dmesg()],
        why,
    }
}

/// An NVIDIA GPU bound to a driver other than `nvidia`: NVML cannot see it,
/// which is expected for pass-through (`vfio-pci`) or `nouveau`.
fn bound_elsewhere(device: &PciGpu) -> Finding {
    let driver = device.driver.as_deref().map_or_else(String::new, untrusted);
    Finding {
        id: "gpu-missing-from-nvml".into(),
        severity: Severity::Info,
        gpu: None,
        title: format!("GPU {} is bound to another driver", short_bdf(&device.bdf)),
        evidence: evidence([
            ("pci_bus_id", untrusted(&device.bdf)),
            ("device_id", untrusted(&device.device_id)),
            ("driver", driver),
        ]),
        commands: vec![lspci_device(&device.bdf)],
        why: "This NVIDIA GPU is bound to a driver other than `nvidia` (vfio-pci when it is \
              passed through to a virtual machine), so NVML on this host cannot see it. \
              Expected if that was intended; otherwise rebind it to the nvidia driver."
            .into(),
    }
}

/// Adds the PCI revision of the device at `bus_id` and, when the kernel log
/// has XID 79 for it, `see_also: xid-79`.
fn add_pci_and_xid_evidence(snapshot: &Snapshot, bus_id: &str, ev: &mut BTreeMap<String, String>) {
    let want = normalize_bus_id(bus_id);
    let pci = snapshot
        .pci_gpus
        .iter()
        .find(|p| normalize_bus_id(&p.bdf) == want);
    if let Some(rev) = pci.and_then(|p| p.revision.as_deref()) {
        ev.insert("pci_revision".into(), untrusted(rev));
    }
    let fell_off = snapshot
        .xid_events
        .iter()
        .any(|e| e.xid == XID_FELL_OFF_BUS && normalize_bus_id(&e.pci_bus_id) == want);
    if fell_off {
        ev.insert("see_also".into(), format!("xid-{XID_FELL_OFF_BUS}"));
    }
}

/// The device reads revision `ff`: config space returns all ones.
fn is_gone(device: &PciGpu) -> bool {
    device
        .revision
        .as_deref()
        .is_some_and(|r| r.eq_ignore_ascii_case("ff"))
}

/// A bus id short enough for a title.
fn short_bdf(bdf: &str) -> String {
    untrusted(&bdf.chars().take(16).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{gpu, ids, node, run};
    use super::*;
    use crate::probe::{Unavailable, XidEvent};

    fn pci(index: u32, driver: Option<&str>) -> PciGpu {
        PciGpu {
            bdf: format!("0000:{:02x}:00.0", 0x18 + index),
            vendor_id: "10de".into(),
            device_id: "2330".into(),
            revision: Some("a1".into()),
            driver: driver.map(str::to_string),
            ..PciGpu::default()
        }
    }

    #[test]
    fn lost_gpu_is_critical_and_cross_references_xid_79() {
        let mut lost = gpu(1);
        lost.lost = true;
        let mut snapshot = node(vec![gpu(0), lost]);
        snapshot.xid_events.push(XidEvent {
            pci_bus_id: "0000:19:00".into(),
            xid: 79,
            message: "GPU has fallen off the bus.".into(),
            ..XidEvent::default()
        });
        let mut p = pci(1, Some("nvidia"));
        p.revision = Some("ff".into());
        snapshot.pci_gpus = vec![pci(0, Some("nvidia")), p];
        let findings = run(gpu_lost, &snapshot);
        assert_eq!(ids(&findings), ["gpu-lost"]);
        let f = &findings[0];
        assert_eq!((f.severity, f.gpu), (Severity::Critical, Some(1)));
        assert_eq!(f.evidence["see_also"], "xid-79");
        assert_eq!(f.evidence["pci_revision"], "ff");
        assert_eq!(f.commands[1], vec!["nvidia-bug-report.sh", "--safe-mode"]);
        // Listed by NVML, so not "missing" too.
        assert!(run(missing_from_nvml, &snapshot).is_empty());
    }

    #[test]
    fn healthy_gpus_are_neither_lost_nor_missing() {
        let mut snapshot = node(vec![gpu(0), gpu(1)]);
        snapshot.pci_gpus = vec![pci(0, Some("nvidia")), pci(1, Some("nvidia"))];
        assert!(run(gpu_lost, &snapshot).is_empty());
        assert!(run(missing_from_nvml, &snapshot).is_empty());
    }

    #[test]
    fn gpu_on_pci_but_not_in_nvml_is_critical() {
        let mut snapshot = node(vec![gpu(0)]);
        let mut p = pci(1, Some("nvidia"));
        p.revision = Some("ff".into());
        snapshot.pci_gpus = vec![pci(0, Some("nvidia")), p];
        let findings = run(missing_from_nvml, &snapshot);
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(
            (f.id.as_str(), f.severity, f.gpu),
            ("gpu-missing-from-nvml", Severity::Critical, None)
        );
        assert_eq!(f.evidence["pci_bus_id"], "0000:19:00.0");
        assert_eq!(f.title, "GPU 0000:19:00.0 on PCI is not visible to NVML");
        assert!(f.why.contains("fallen off the bus"));
        assert_eq!(f.commands[0], vec!["lspci", "-nnk", "-s", "0000:19:00"]);
    }

    #[test]
    fn no_nvml_with_nvidia_gpus_on_pci_is_one_node_finding() {
        let mut snapshot = node(vec![]);
        snapshot.pci_gpus = vec![pci(0, None), pci(1, None), pci(2, None)];
        snapshot.unavailable.push(Unavailable {
            source: "nvml".into(),
            reason: "libnvidia-ml.so.1 not found: install the NVIDIA driver".into(),
        });
        let findings = run(missing_from_nvml, &snapshot);
        assert_eq!(ids(&findings), ["gpu-missing-from-nvml"]);
        let f = &findings[0];
        assert_eq!((f.severity, f.gpu), (Severity::Critical, None));
        assert_eq!(f.title, "3 NVIDIA GPUs on PCI, none visible to NVML");
        assert_eq!(f.evidence["drivers"], "none, none, none");
        assert!(f.evidence["nvml"].contains("libnvidia-ml"));
    }

    #[test]
    fn nvml_past_the_deadline_is_a_hung_driver_not_missing_gpus() {
        let mut snapshot = node(vec![]);
        snapshot.pci_gpus = (0..8).map(|i| pci(i, Some("nvidia"))).collect();
        snapshot.xid_events.push(XidEvent {
            pci_bus_id: "0000:1b:00".into(),
            xid: 119,
            message: "Timeout after 6s of waiting for RPC response from GPU3 GSP!".into(),
            ..XidEvent::default()
        });
        snapshot.unavailable.push(Unavailable {
            source: "nvml".into(),
            reason: format!(
                "{}: the nvml probe did not answer within 8 s",
                Unavailable::TIMED_OUT
            ),
        });
        let findings = run(nvml_hung, &snapshot);
        assert_eq!(ids(&findings), ["nvml-hung"]);
        let f = &findings[0];
        assert_eq!((f.severity, f.gpu), (Severity::Critical, None));
        assert_eq!(f.evidence["nvidia_pci_gpus"], "8");
        assert_eq!(f.evidence["xids"], "XID 119 on 0000:1b:00");
        assert!(
            f.commands.iter().all(|c| c[0] != "nvidia-smi"),
            "{:?}",
            f.commands
        );
        // The GPUs NVML could not list are not "missing": one finding.
        assert!(run(missing_from_nvml, &snapshot).is_empty());

        // NVML that failed at once (no driver) is not a hang.
        snapshot.unavailable[0].reason = "libnvidia-ml.so.1 not found".into();
        assert!(run(nvml_hung, &snapshot).is_empty());
        assert_eq!(
            ids(&run(missing_from_nvml, &snapshot)),
            ["gpu-missing-from-nvml"]
        );
    }

    #[test]
    fn no_nvml_and_no_nvidia_gpus_is_silent() {
        let mut snapshot = node(vec![]);
        snapshot.pci_gpus = vec![PciGpu {
            vendor_id: "1002".into(),
            bdf: "0000:03:00.0".into(),
            ..PciGpu::default()
        }];
        assert!(run(missing_from_nvml, &snapshot).is_empty());
    }

    #[test]
    fn passthrough_gpu_is_info() {
        let mut snapshot = node(vec![gpu(0)]);
        snapshot.pci_gpus = vec![pci(0, Some("nvidia")), pci(1, Some("vfio-pci"))];
        let findings = run(missing_from_nvml, &snapshot);
        assert_eq!(ids(&findings), ["gpu-missing-from-nvml"]);
        assert_eq!(findings[0].severity, Severity::Info);
        assert_eq!(findings[0].evidence["driver"], "vfio-pci");
    }
}
