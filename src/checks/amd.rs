//! AMD GPUs: `amd-ras-uncorrectable` (critical) when RAS reports
//! uncorrectable errors. Kept modest: the snapshot has no slowdown
//! threshold for AMD parts and does not say whether its temperature is the
//! edge or the junction sensor, so temperature is not judged.

use super::common::{argv, dmesg, evidence, untrusted};
use super::{Finding, Severity};
use crate::probe::Snapshot;

/// Rule: `amd-ras-uncorrectable` per AMD GPU with uncorrectable RAS errors.
/// AMD GPUs have no NVML index, so the finding names the GPU in its title.
pub(super) fn ras_uncorrectable(snapshot: &Snapshot) -> Vec<Finding> {
    snapshot
        .amd_gpus
        .iter()
        .filter_map(|g| {
            let count = g.ras_uncorrectable.filter(|&n| n > 0)?;
            Some(Finding {
                id: "amd-ras-uncorrectable".into(),
                severity: Severity::Critical,
                gpu: None,
                title: format!("AMD GPU {}: {count} uncorrectable RAS errors", g.index),
                evidence: evidence([
                    ("amd_gpu", g.index.to_string()),
                    ("pci_bus_id", untrusted(&g.bdf)),
                    ("ras_uncorrectable", count.to_string()),
                    (
                        "ras_correctable",
                        g.ras_correctable
                            .map_or_else(|| "unknown".into(), |n| n.to_string()),
                    ),
                ]),
                commands: vec![argv(&["rocm-smi", "--showras"]), dmesg()],
                why: "The GPU's RAS reports uncorrectable errors (memory or another block): \
                      data was corrupted and affected jobs likely failed. Drain the GPU, see \
                      which block reports them (`rocm-smi --showras`) and the amdgpu \
                      messages in the kernel log, then reset the GPU or reboot; errors that \
                      return make it an RMA candidate."
                    .into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{node, run};
    use super::*;
    use crate::probe::AmdGpu;

    fn amd(uncorrectable: Option<u64>) -> AmdGpu {
        AmdGpu {
            index: 1,
            bdf: "0000:c1:00.0".into(),
            ras_uncorrectable: uncorrectable,
            ..AmdGpu::default()
        }
    }

    #[test]
    fn uncorrectable_ras_errors_are_critical() {
        let mut snapshot = node(vec![]);
        snapshot.amd_gpus = vec![amd(Some(3))];
        let f = run(ras_uncorrectable, &snapshot);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].id.as_str(), f[0].severity),
            ("amd-ras-uncorrectable", Severity::Critical)
        );
        assert_eq!(f[0].title, "AMD GPU 1: 3 uncorrectable RAS errors");
    }

    #[test]
    fn zero_or_unknown_ras_is_fine() {
        let mut snapshot = node(vec![]);
        snapshot.amd_gpus = vec![amd(Some(0)), amd(None)];
        assert!(run(ras_uncorrectable, &snapshot).is_empty());
    }
}
