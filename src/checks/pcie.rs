//! PCIe link: `pcie-link-degraded` when a GPU's link runs below what the
//! GPU and host support.
//!
//! Width is judged at all times: GPUs keep their full width at idle, so a
//! narrow link means a bad slot, riser or seating. Generation is judged only
//! while the GPU is busy: idle GPUs drop to a lower generation to save power,
//! which is normal.

use super::common::{argv, evidence, is_busy, live_gpus, pci_slot, utilization};
use super::{Finding, Severity};
use crate::probe::Snapshot;

/// The nvidia-smi query of the link's generation and width, current and max.
const PCIE_QUERY: &str = "--query-gpu=pcie.link.gen.current,pcie.link.gen.max,\
                          pcie.link.width.current,pcie.link.width.max";

/// Rule: `pcie-link-degraded` (warning) for links below their maximum.
pub(super) fn link_degraded(snapshot: &Snapshot) -> Vec<Finding> {
    live_gpus(snapshot)
        .filter_map(|g| {
            let link = g.pcie.as_ref()?;
            let narrow = link.width_current < link.width_max;
            let slow = is_busy(g) && link.gen_current < link.gen_max;
            let (gen_now, gen_max) = (link.gen_current, link.gen_max);
            let (width_now, width_max) = (link.width_current, link.width_max);
            let (now, max) = match (narrow, slow) {
                (true, true) => (
                    format!("x{width_now} Gen{gen_now}"),
                    format!("x{width_max} Gen{gen_max}"),
                ),
                (true, false) => (format!("x{width_now}"), format!("x{width_max}")),
                (false, true) => (format!("Gen{gen_now}"), format!("Gen{gen_max}")),
                (false, false) => return None,
            };
            let when = if slow { " while busy" } else { "" };
            let title = format!("PCIe link at {now} (max {max}){when}");
            let mut commands = Vec::new();
            if let Some(slot) = pci_slot(&g.pci_bus_id) {
                commands.push(argv(&["lspci", "-vvv", "-s", &slot]));
            }
            commands.push(argv(&[
                "nvidia-smi",
                "-i",
                &g.index.to_string(),
                PCIE_QUERY,
                "--format=csv",
            ]));
            let mut ev = evidence([
                ("pcie.link.gen.current", link.gen_current.to_string()),
                ("pcie.link.gen.max", link.gen_max.to_string()),
                ("pcie.link.width.current", link.width_current.to_string()),
                ("pcie.link.width.max", link.width_max.to_string()),
                ("utilization.gpu", utilization(g)),
            ]);
            if let Some(replays) = link.replay_count {
                ev.insert("pcie.replay_counter".into(), replays.to_string());
            }
            Some(Finding {
                id: "pcie-link-degraded".into(),
                severity: Severity::Warning,
                gpu: Some(g.index),
                title,
                evidence: ev,
                commands,
                why: "The GPU's PCIe link trained below its capability, so host-to-GPU \
                      transfers (data loading, checkpoints, some collectives) are slower. \
                      Compare LnkSta with LnkCap in `lspci -vvv` and look for AER errors or \
                      'limited by' messages in the kernel log. Reseat the GPU or riser, \
                      check the slot and BIOS PCIe settings at the next maintenance; a link \
                      that keeps degrading points at the hardware."
                    .into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{gpu, idle, ids, node, run};
    use super::*;
    use crate::probe::PcieLink;

    fn link(gen_current: u32, width_current: u32) -> PcieLink {
        PcieLink {
            gen_current,
            gen_max: 5,
            width_current,
            width_max: 16,
            replay_count: None,
        }
    }

    #[test]
    fn narrow_link_is_flagged_even_at_idle() {
        let mut g = idle(gpu(2));
        g.pcie = Some(link(1, 8));
        let f = run(link_degraded, &node(vec![g]));
        assert_eq!(ids(&f), ["pcie-link-degraded"]);
        assert_eq!((f[0].severity, f[0].gpu), (Severity::Warning, Some(2)));
        assert_eq!(f[0].title, "PCIe link at x8 (max x16)");
        assert_eq!(f[0].commands[0], vec!["lspci", "-vvv", "-s", "0000:1a:00"]);
    }

    #[test]
    fn low_gen_is_flagged_only_while_busy() {
        let mut g = gpu(0);
        g.pcie = Some(link(3, 16));
        let f = run(link_degraded, &node(vec![g.clone()]));
        assert_eq!(f[0].title, "PCIe link at Gen3 (max Gen5) while busy");
        assert!(run(link_degraded, &node(vec![idle(g)])).is_empty());
    }

    #[test]
    fn both_degraded_name_both() {
        let mut g = gpu(0);
        g.pcie = Some(link(3, 8));
        let f = run(link_degraded, &node(vec![g]));
        assert_eq!(f[0].title, "PCIe link at x8 Gen3 (max x16 Gen5) while busy");
    }

    #[test]
    fn full_link_is_fine() {
        assert!(run(link_degraded, &node(vec![gpu(0), idle(gpu(1))])).is_empty());
    }
}
