//! `nvidia-smi topo -m` (the connection matrix with CPU and NUMA
//! affinity) and `topo -p2p CAP` (peer-to-peer status).

use std::fmt::Write as _;

use super::P2pCap;
use crate::probe::{Gpu, Snapshot, normalize_bus_id};

/// NUMA node of a GPU, from the matching PCI device.
fn numa(snap: &Snapshot, g: &Gpu) -> Option<i32> {
    let want = normalize_bus_id(&g.pci_bus_id);
    snap.pci_gpus
        .iter()
        .find(|p| normalize_bus_id(&p.bdf) == want)
        .and_then(|p| p.numa_node)
        .filter(|n| *n >= 0)
}

pub(super) fn topo(snap: &Snapshot, gpus: &[&Gpu]) -> String {
    let numas: Vec<Option<i32>> = gpus.iter().map(|g| numa(snap, g)).collect();
    let nodes = snap
        .pci_gpus
        .iter()
        .filter_map(|p| p.numa_node)
        .max()
        .map_or(1, |m| m.max(0) as u32 + 1);
    let per_node = (snap.host.cpu_count / nodes).max(1);
    let mut o = String::from("\t");
    for g in gpus {
        let _ = write!(o, "GPU{}\t", g.index);
    }
    o += "CPU Affinity\tNUMA Affinity\tGPU NUMA ID\n";
    for (i, a) in gpus.iter().enumerate() {
        let _ = write!(o, "GPU{}\t", a.index);
        for (j, b) in gpus.iter().enumerate() {
            let links = a.nvlinks.iter().filter(|l| l.active).count();
            let cell = if i == j {
                " X ".to_string()
            } else if links > 0 && on_nvlink(b) {
                format!("NV{links}")
            } else if numas[i].is_some() && numas[i] == numas[j] {
                "NODE".to_string()
            } else {
                "SYS".to_string()
            };
            let _ = write!(o, "{cell}\t");
        }
        let (cpus, node) = match numas[i] {
            Some(n) => {
                let first = n as u32 * per_node;
                (format!("{first}-{}", first + per_node - 1), n.to_string())
            }
            None => ("N/A".to_string(), "N/A".to_string()),
        };
        let _ = writeln!(o, "{cpus}\t{node}\t\tN/A");
    }
    o += "\nLegend:\n\n";
    for line in [
        "X    = Self",
        "SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)",
        "NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node",
        "PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)",
        "PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)",
        "PIX  = Connection traversing at most a single PCIe bridge",
        "NV#  = Connection traversing a bonded set of # NVLinks",
    ] {
        let _ = writeln!(o, "  {line}");
    }
    o
}

/// Whether a GPU has an active NVLink (and so reaches its peers over the
/// NVLink fabric, as `topo -m` draws it).
fn on_nvlink(g: &Gpu) -> bool {
    g.nvlinks.iter().any(|l| l.active)
}

/// `topo -p2p CAP`: the status of each GPU pair for one capability. Peers
/// on NVLink support every capability; over PCIe, peers in one NUMA node
/// support reads, writes and PCIe access but not NVLink or atomics, and
/// peers in different NUMA nodes meet a chipset that does not support P2P.
pub(super) fn p2p(snap: &Snapshot, gpus: &[&Gpu], cap: P2pCap) -> String {
    let numas: Vec<Option<i32>> = gpus.iter().map(|g| numa(snap, g)).collect();
    let mut o = String::from(" \t");
    for g in gpus {
        let _ = write!(o, "GPU{}\t", g.index);
    }
    o.push('\n');
    for (i, a) in gpus.iter().enumerate() {
        let _ = write!(o, " GPU{}\t", a.index);
        for (j, b) in gpus.iter().enumerate() {
            let same_node = numas[i].is_some() && numas[i] == numas[j];
            let cell = if i == j {
                "X"
            } else if on_nvlink(a) && on_nvlink(b) {
                "OK"
            } else {
                match cap {
                    P2pCap::Nvlink | P2pCap::Atomics => "NS",
                    _ if same_node => "OK",
                    _ => "CNS",
                }
            };
            let _ = write!(o, "{cell}\t");
        }
        o.push('\n');
    }
    o += "\nLegend:\n\n";
    for line in [
        "X    = Self",
        "OK   = Status Ok",
        "CNS  = Chipset not supported",
        "GNS  = GPU not supported",
        "TNS  = Topology not supported",
        "NS   = Not supported",
        "DR   = Disabled by regkey",
        "U    = Unknown",
    ] {
        let _ = writeln!(o, "  {line}");
    }
    o
}
