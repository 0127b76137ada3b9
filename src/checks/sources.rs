//! Sources: `source-unavailable` (info) for each source the probe could not
//! read, with its reason, so a clean report is never mistaken for a complete
//! one. Always info: a missing source is not a fault of the node. When a
//! missing source hides a real problem (NVML missing while NVIDIA GPUs sit
//! on the PCI bus), another rule reports that problem (`presence`); NVML that
//! missed the probe's deadline is `nvml-hung` (critical) and not repeated
//! here.

use super::common::{evidence, quoted, untrusted};
use super::{Finding, Severity};
use crate::probe::Snapshot;

/// Rule: one `source-unavailable` info per unreadable source, but for a
/// hung NVML.
pub(super) fn unavailable(snapshot: &Snapshot) -> Vec<Finding> {
    snapshot
        .unavailable
        .iter()
        .filter(|u| Some(*u) != snapshot.nvml_timed_out())
        .map(|u| Finding {
            id: "source-unavailable".into(),
            severity: Severity::Info,
            gpu: None,
            title: format!("Could not read {}", quoted(&u.source, 32)),
            evidence: evidence([
                ("source", untrusted(&u.source)),
                ("reason", untrusted(&u.reason)),
            ]),
            commands: Vec::new(),
            why: "Sigma could not read this source; the reason says why and what to do. The \
                  checks that need it were skipped, so this report can miss problems it \
                  would otherwise show."
                .into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{node, run};
    use super::*;
    use crate::probe::Unavailable;

    #[test]
    fn each_unavailable_source_is_an_info() {
        let mut snapshot = node(vec![]);
        snapshot.unavailable = vec![
            Unavailable {
                source: "nvml".into(),
                reason: "libnvidia-ml.so.1 not found.".into(),
            },
            Unavailable {
                source: "kernel-log".into(),
                reason: "permission denied.".into(),
            },
        ];
        let f = run(unavailable, &snapshot);
        assert_eq!(f.len(), 2);
        assert!(
            f.iter()
                .all(|f| f.id == "source-unavailable" && f.severity == Severity::Info)
        );
        assert_eq!(f[0].title, "Could not read \"nvml\"");
        assert_eq!(f[1].evidence["reason"], "permission denied.");
    }

    #[test]
    fn a_hung_nvml_is_left_to_nvml_hung_but_other_timeouts_are_infos() {
        let timed_out = |source: &str| Unavailable {
            source: source.into(),
            reason: format!(
                "{}: the {source} probe did not answer",
                Unavailable::TIMED_OUT
            ),
        };
        let mut snapshot = node(vec![]);
        snapshot.unavailable = vec![timed_out("nvml"), timed_out("kernel-log")];
        let f = run(unavailable, &snapshot);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].evidence["source"], "kernel-log");
    }

    #[test]
    fn all_sources_read_no_finding() {
        assert!(run(unavailable, &node(vec![])).is_empty());
    }
}
