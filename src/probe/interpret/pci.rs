//! `lspci` output read back into facts: each device's revision (`rev ff`:
//! it no longer answers), and with `-vv`/`-vvv` its link capability
//! (`LnkCap`) against its link status (`LnkSta`).
//!
//! Facts are about the PCI device (`subject` = its address, `0000:3d:00.0`)
//! and, when it is an NVIDIA GPU the snapshot knows, about that GPU too.

use std::sync::LazyLock;

use regex::Regex;

use super::{Command, Fact};
use crate::probe::{Snapshot, normalize_bus_id};

/// Reads `lspci` output.
pub fn read(command: &Command<'_>, text: &str) -> Vec<Fact> {
    static DEVICE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^((?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s.*?(?:\(rev ([0-9a-fA-F]{2})\))?(?:\s*\(prog-if.*)?$")
            .expect("valid regex")
    });
    static LINK: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(LnkCap|LnkSta):.*?Speed ([0-9.]+)GT/s[^,]*, Width x(\d+)")
            .expect("valid regex")
    });
    let mut facts = Vec::new();
    let mut device: Option<(String, Option<u32>)> = None;
    for line in text.lines() {
        if let Some(c) = DEVICE.captures(line) {
            let bdf = full_bdf(&c[1]);
            let gpu = command.gpu_of(&bdf);
            if let Some(rev) = c.get(2) {
                facts.push(Fact::new(gpu, "pci.revision", rev.as_str(), None).about(bdf.clone()));
            }
            device = Some((bdf, gpu));
            continue;
        }
        let Some((bdf, gpu)) = &device else {
            continue;
        };
        if let Some(c) = LINK.captures(line.trim()) {
            let (speed, width) = match &c[1] {
                "LnkCap" => ("pci.link.speed.max", "pci.link.width.max"),
                _ => ("pci.link.speed", "pci.link.width"),
            };
            facts.push(Fact::new(*gpu, speed, &c[2], Some("GT/s")).about(bdf.clone()));
            facts.push(Fact::new(*gpu, width, &c[3], Some("x")).about(bdf.clone()));
            if c[1] == *"LnkSta" && line.contains("downgraded") {
                facts.push(Fact::new(*gpu, "pci.link.downgraded", "Yes", None).about(bdf.clone()));
            }
        }
    }
    facts
}

/// `3d:00.0` -> `0000:3d:00.0`.
fn full_bdf(address: &str) -> String {
    let lower = address.to_ascii_lowercase();
    if lower.matches(':').count() == 1 {
        format!("0000:{lower}")
    } else {
        lower
    }
}

/// Writes a PCI fact into the snapshot's PCI device of that address.
pub fn apply(snapshot: &mut Snapshot, fact: &Fact) {
    if !fact.field.starts_with("pci.") || fact.field == "pci.bus_id" {
        return;
    }
    let Some(bdf) = fact.subject.as_deref() else {
        return;
    };
    let want = normalize_bus_id(bdf);
    let Some(p) = snapshot
        .pci_gpus
        .iter_mut()
        .find(|p| normalize_bus_id(&p.bdf) == want)
    else {
        return;
    };
    let n = fact.number();
    match fact.field.as_str() {
        "pci.revision" => p.revision = Some(fact.value.to_ascii_lowercase()),
        "pci.link.speed" => p.link_speed_gts = n.or(p.link_speed_gts),
        "pci.link.speed.max" => p.link_speed_max_gts = n.or(p.link_speed_max_gts),
        "pci.link.width" => p.link_width = width(n).or(p.link_width),
        "pci.link.width.max" => p.link_width_max = width(n).or(p.link_width_max),
        _ => {}
    }
}

fn width(n: Option<f64>) -> Option<u32> {
    n.filter(|w| *w >= 0.0 && *w <= 64.0).map(|w| w as u32)
}

#[cfg(test)]
mod tests {
    use super::super::{Ended, read as read_output};
    use super::*;
    use crate::sim;

    fn read_on(name: &str, line: &str) -> Vec<Fact> {
        let node = sim::load(name).expect("node");
        let argv: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let out = node.run(&argv);
        read_output(
            &[argv],
            &out.stdout,
            Ended::Exited(out.exit_code),
            &node.snapshot,
        )
        .facts
    }

    #[test]
    fn a_downgraded_link_and_a_lost_device_are_read() {
        let facts = read_on("l40s-pcie-degraded", "lspci -vvv -s 0000:3d:00");
        let get = |field: &str| {
            facts
                .iter()
                .find(|f| f.field == field)
                .map(|f| (f.value.as_str(), f.subject.as_deref()))
        };
        assert_eq!(get("pci.link.speed"), Some(("2.5", Some("0000:3d:00.0"))));
        assert_eq!(
            get("pci.link.speed.max"),
            Some(("16", Some("0000:3d:00.0")))
        );
        assert_eq!(get("pci.link.width"), Some(("8", Some("0000:3d:00.0"))));
        assert_eq!(get("pci.link.downgraded").map(|v| v.0), Some("Yes"));
        let node = sim::load("l40s-pcie-degraded").expect("node");
        let gpu = node.snapshot.gpu_by_bus_id("0000:3d:00.0").map(|g| g.index);
        assert!(gpu.is_some());
        assert!(facts.iter().all(|f| f.gpu == gpu), "{facts:?}");

        let lost = read_on("h100x8-xid79", "lspci -nn -d 10de:");
        let rev = lost
            .iter()
            .find(|f| f.field == "pci.revision" && f.value == "ff")
            .expect("rev ff");
        assert_eq!(rev.gpu, Some(3));
        assert_eq!(rev.subject.as_deref(), Some("0000:5d:00.0"));
    }

    #[test]
    fn applied_link_facts_reach_the_pci_device() {
        let node = sim::load("l40s-pcie-degraded").expect("node");
        let mut snap = node.snapshot.clone();
        for p in snap.pci_gpus.iter_mut().filter(|p| p.bdf == "0000:3d:00.0") {
            p.link_speed_gts = None;
            p.link_width = None;
        }
        let facts = read_on("l40s-pcie-degraded", "lspci -vvv -s 0000:3d:00");
        super::super::apply(&mut snap, &facts);
        assert_eq!(snap.pci_gpus, node.snapshot.pci_gpus);
    }
}
