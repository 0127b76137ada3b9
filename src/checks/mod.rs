//! Deterministic checks: rules over a [`Snapshot`] that produce [`Finding`]s.
//! No I/O, no model: the same snapshot always gives the same findings.
//!
//! # Rules
//! Each rule is a plain function `fn(&Snapshot) -> Vec<Finding>`, listed in
//! [`RULES`]; each module owns one family of them:
//!
//! | module | finding ids |
//! |---|---|
//! | `xid` | `xid-<N>` (meaning and first action from `assets/xid.toml`) |
//! | `presence` | `gpu-lost`, `gpu-missing-from-nvml` |
//! | `memory` | `ecc-uncorrected`, `remap-pending`, `remap-failed`, `retired-pages-pending` |
//! | `thermal` | `throttle-thermal`, `throttle-power`, `temperature-near-slowdown` |
//! | `pcie` | `pcie-link-degraded` |
//! | `processes` | `stuck-memory` |
//! | `config` | `persistence-off` |
//! | `host` | `host-memory-low`, `disk-full` |
//! | `amd` | `amd-ras-uncorrectable` |
//! | `sources` | `source-unavailable` |
//! | `untrusted` | `node-text-instructions`: process names or log lines that address an assistant |
//! | `facts` | `ib-port-down`, `dcgm-health`, `dcgm-diag-failed`: over what commands showed ([`run_on_facts`]) |
//!
//! Finding ids are a contract: simulated nodes and the copilot name them.
//!
//! # Conventions
//! - Only live GPUs are judged on their state: a lost GPU's values are
//!   missing, and `presence` reports the loss.
//! - Unknown values never trigger a rule; `sources` reports what was missing.
//! - Text from the node (process names, log messages) goes into evidence and
//!   titles escaped, never into commands. Commands are read-only argv.
//!
//! # Example
//! ```
//! # fn demo(snapshot: &sigma::probe::Snapshot) {
//! let findings = sigma::checks::run_all(snapshot);
//! let worst = sigma::checks::worst(&findings); // None on a clean node
//! # let _ = worst; }
//! ```

mod amd;
mod common;
mod config;
mod facts;
pub mod finding;
mod host;
mod memory;
mod pcie;
mod presence;
mod processes;
mod sources;
mod thermal;
mod untrusted;
pub mod xid;

#[cfg(test)]
mod testutil;

use std::cmp::Reverse;

pub use common::{inert_json, is_bidi_or_invisible, printable, truncate};
pub use facts::run_on_facts;
pub use finding::*;

use crate::probe::Snapshot;

/// A rule: reads a snapshot, returns its findings (none when healthy).
pub type Rule = fn(&Snapshot) -> Vec<Finding>;

/// Every rule, run in this order by [`run_all`].
pub const RULES: &[Rule] = &[
    xid::xid_events,
    presence::gpu_lost,
    presence::nvml_hung,
    presence::missing_from_nvml,
    memory::ecc_uncorrected,
    memory::remapped_rows,
    memory::retired_pages_pending,
    thermal::throttle_thermal,
    thermal::throttle_power,
    thermal::temperature_near_slowdown,
    pcie::link_degraded,
    processes::stuck_memory,
    config::persistence_off,
    host::memory_low,
    host::disk_full,
    amd::ras_uncorrectable,
    untrusted::instructions_in_node_text,
    sources::unavailable,
];

/// Runs every rule over `snapshot`. Findings come worst first, then by GPU
/// index (node-wide findings, with no GPU, after the per-GPU ones), then by
/// id, then by title, so the order is stable.
pub fn run_all(snapshot: &Snapshot) -> Vec<Finding> {
    let mut findings: Vec<Finding> = RULES.iter().flat_map(|rule| rule(snapshot)).collect();
    sort(&mut findings);
    findings
}

/// Runs every rule over `snapshot` (with `facts` already applied to it, see
/// `probe::interpret::apply`) and the fact rules over `facts`, in
/// [`run_all`]'s order.
pub fn run_with_facts(
    snapshot: &Snapshot,
    facts: &[crate::probe::interpret::Fact],
) -> Vec<Finding> {
    let mut findings = run_all(snapshot);
    findings.extend(run_on_facts(facts));
    sort(&mut findings);
    findings
}

/// Sorts findings in [`run_all`]'s order.
fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
}

/// Sort key of [`run_all`]'s order.
fn order_key(f: &Finding) -> (Reverse<Severity>, bool, Option<u32>, &str, &str) {
    (Reverse(f.severity), f.gpu.is_none(), f.gpu, &f.id, &f.title)
}

/// The worst severity among `findings`, `None` when there are none.
/// `sigma doctor` exits 4 on [`Severity::Critical`], 3 on
/// [`Severity::Warning`] and 0 otherwise: info findings do not change it.
pub fn worst(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}

#[cfg(test)]
mod tests {
    use super::testutil::{gpu, idle, node};
    use super::*;
    use crate::probe::{Disk, RemappedRows, Unavailable};

    fn finding(id: &str, severity: Severity, gpu: Option<u32>) -> Finding {
        Finding {
            id: id.into(),
            severity,
            gpu,
            title: id.into(),
            evidence: Default::default(),
            commands: Vec::new(),
            why: "test".into(),
        }
    }

    #[test]
    fn healthy_node_has_no_findings() {
        let snapshot = node(vec![gpu(0), idle(gpu(1))]);
        assert_eq!(run_all(&snapshot), Vec::new());
        assert_eq!(worst(&run_all(&snapshot)), None);
    }

    #[test]
    fn findings_are_sorted_by_severity_then_gpu_then_id() {
        let mut bad = gpu(1);
        bad.remapped_rows = Some(RemappedRows {
            pending: true,
            failure: true,
            ..Default::default()
        });
        let mut snapshot = node(vec![gpu(0), bad]);
        snapshot.gpus[0].persistence_mode = Some(false);
        snapshot.host.disks.push(Disk {
            mount: "/".into(),
            fs: Some("ext4".into()),
            total_bytes: 100,
            available_bytes: 1,
        });
        snapshot.unavailable.push(Unavailable {
            source: "rocm-smi".into(),
            reason: "not installed".into(),
        });
        let got: Vec<(String, Severity, Option<u32>)> = run_all(&snapshot)
            .into_iter()
            .map(|f| (f.id, f.severity, f.gpu))
            .collect();
        let want = vec![
            ("remap-failed".to_string(), Severity::Critical, Some(1)),
            ("disk-full".to_string(), Severity::Critical, None),
            ("remap-pending".to_string(), Severity::Warning, Some(1)),
            ("persistence-off".to_string(), Severity::Info, Some(0)),
            ("source-unavailable".to_string(), Severity::Info, None),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn order_is_severity_then_gpu_with_node_wide_last_then_id() {
        let mut findings = [
            finding("b", Severity::Warning, Some(0)),
            finding("node", Severity::Warning, None),
            finding("a", Severity::Warning, Some(0)),
            finding("c", Severity::Warning, Some(2)),
            finding("info", Severity::Info, Some(0)),
            finding("z", Severity::Warning, Some(1)),
            finding("crit", Severity::Critical, None),
        ];
        sort(&mut findings);
        let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["crit", "a", "b", "z", "c", "node", "info"]);
    }

    #[test]
    fn worst_is_the_highest_severity() {
        assert_eq!(worst(&[]), None);
        let info = finding("i", Severity::Info, None);
        let warning = finding("w", Severity::Warning, Some(0));
        let critical = finding("c", Severity::Critical, Some(1));
        assert_eq!(worst(std::slice::from_ref(&info)), Some(Severity::Info));
        assert_eq!(
            worst(&[info.clone(), warning.clone()]),
            Some(Severity::Warning)
        );
        assert_eq!(worst(&[warning, critical, info]), Some(Severity::Critical));
    }
}
