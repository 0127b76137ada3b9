//! GPU memory health: uncorrected ECC errors, row remapping (Ampere and
//! later) and page retirement (earlier parts).
//!
//! - `ecc-uncorrected`: critical when uncorrected errors happened since the
//!   driver loaded (volatile), warning when only the lifetime (aggregate)
//!   counter has them: a past event to check, not a live one.
//! - `remap-pending` (warning) and `remap-failed` (critical): a remap waits
//!   for a GPU reset; a failed remap makes the GPU an RMA candidate.
//! - `retired-pages-pending` (warning): a page retirement waits for a reset.

use std::collections::BTreeMap;

use super::common::{evidence, live_gpus, nvidia_smi_sections};
use super::{Finding, Severity};
use crate::probe::{Gpu, Snapshot};

/// The nvidia-smi report sections about memory errors.
const MEMORY_SECTIONS: &str = "ECC,PAGE_RETIREMENT,ROW_REMAPPER";

/// Rule: `ecc-uncorrected` for GPUs with uncorrected ECC errors.
pub(super) fn ecc_uncorrected(snapshot: &Snapshot) -> Vec<Finding> {
    live_gpus(snapshot)
        .filter_map(|g| {
            let ecc = g.ecc.as_ref()?;
            let ev = evidence([
                (
                    "ecc.errors.uncorrected.volatile.total",
                    ecc.uncorrected_volatile.to_string(),
                ),
                (
                    "ecc.errors.uncorrected.aggregate.total",
                    ecc.uncorrected_aggregate.to_string(),
                ),
                (
                    "ecc.errors.corrected.volatile.total",
                    ecc.corrected_volatile.to_string(),
                ),
            ]);
            let (severity, title, why) = if ecc.uncorrected_volatile > 0 {
                (
                    Severity::Critical,
                    format!(
                        "{} uncorrected ECC errors since driver load",
                        ecc.uncorrected_volatile
                    ),
                    "Uncorrectable memory errors happened since the driver loaded: data on \
                     this GPU was corrupted and the jobs using it were probably killed. \
                     Drain the GPU and reset it (or reboot) so row remapping / page \
                     retirement takes effect, then check the ECC counters and the remapper; \
                     recurring errors make it an RMA candidate.",
                )
            } else if ecc.uncorrected_aggregate > 0 {
                (
                    Severity::Warning,
                    format!(
                        "{} uncorrected ECC errors in the GPU's lifetime",
                        ecc.uncorrected_aggregate
                    ),
                    "The GPU had uncorrectable memory errors in the past, none since the \
                     driver loaded. Check that the affected rows were remapped or pages \
                     retired (nothing pending or failed) and watch for new errors; a GPU \
                     that keeps collecting them is an RMA candidate.",
                )
            } else {
                return None;
            };
            Some(memory_finding(
                g,
                "ecc-uncorrected",
                severity,
                &title,
                ev,
                why,
            ))
        })
        .collect()
}

/// Rule: `remap-pending` and `remap-failed` from the row remapper.
pub(super) fn remapped_rows(snapshot: &Snapshot) -> Vec<Finding> {
    let mut findings = Vec::new();
    for g in live_gpus(snapshot) {
        let Some(rows) = &g.remapped_rows else {
            continue;
        };
        let ev = || {
            evidence([
                ("remapped_rows.correctable", rows.correctable.to_string()),
                (
                    "remapped_rows.uncorrectable",
                    rows.uncorrectable.to_string(),
                ),
                ("remapped_rows.pending", rows.pending.to_string()),
                ("remapped_rows.failure", rows.failure.to_string()),
            ])
        };
        if rows.failure {
            findings.push(memory_finding(
                g,
                "remap-failed",
                Severity::Critical,
                "Row remapping failed: RMA candidate",
                ev(),
                "The GPU could not remap a failing memory row: it has run out of spare rows \
                 or the remap failed. Memory errors on it can no longer be repaired. Drain \
                 it, reset it to confirm, and if the failure remains open a support case: \
                 the GPU is an RMA candidate.",
            ));
        }
        if rows.pending {
            findings.push(memory_finding(
                g,
                "remap-pending",
                Severity::Warning,
                "Row remap pending: reset the GPU at the next drain",
                ev(),
                "A memory row was marked for remapping after an error, but the remap only \
                 takes effect when the GPU is reset. Until then the faulty row can still be \
                 hit. Drain the GPU at the next opportunity and reset it (or reboot the \
                 node).",
            ));
        }
    }
    findings
}

/// Rule: `retired-pages-pending` for pages waiting to be retired.
pub(super) fn retired_pages_pending(snapshot: &Snapshot) -> Vec<Finding> {
    live_gpus(snapshot)
        .filter_map(|g| {
            let pages = g.retired_pages.as_ref().filter(|p| p.pending)?;
            Some(memory_finding(
                g,
                "retired-pages-pending",
                Severity::Warning,
                "Page retirement pending: reset at the next drain",
                evidence([
                    (
                        "retired_pages.single_bit_ecc.count",
                        pages.single_bit.to_string(),
                    ),
                    (
                        "retired_pages.double_bit.count",
                        pages.double_bit.to_string(),
                    ),
                    ("retired_pages.pending", "true".into()),
                ]),
                "A memory page was marked for retirement after ECC errors, but it is retired \
                 only when the driver reloads or the GPU is reset. Drain the GPU at the next \
                 opportunity and reset it (or reboot the node).",
            ))
        })
        .collect()
}

/// A memory finding about `gpu` with the memory report as its command.
fn memory_finding(
    gpu: &Gpu,
    id: &str,
    severity: Severity,
    title: &str,
    evidence: BTreeMap<String, String>,
    why: &str,
) -> Finding {
    Finding {
        id: id.into(),
        severity,
        gpu: Some(gpu.index),
        title: title.into(),
        evidence,
        commands: vec![nvidia_smi_sections(gpu.index, MEMORY_SECTIONS)],
        why: why.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{gpu, ids, node, run};
    use super::*;
    use crate::probe::{Ecc, RemappedRows, RetiredPages};

    fn with_ecc(volatile: u64, aggregate: u64) -> Snapshot {
        let mut g = gpu(0);
        g.ecc = Some(Ecc {
            enabled: true,
            uncorrected_volatile: volatile,
            uncorrected_aggregate: aggregate,
            ..Ecc::default()
        });
        node(vec![g])
    }

    #[test]
    fn volatile_uncorrected_is_critical() {
        let f = run(ecc_uncorrected, &with_ecc(2, 2));
        assert_eq!(ids(&f), ["ecc-uncorrected"]);
        assert_eq!((f[0].severity, f[0].gpu), (Severity::Critical, Some(0)));
        assert_eq!(f[0].evidence["ecc.errors.uncorrected.volatile.total"], "2");
    }

    #[test]
    fn aggregate_only_is_a_warning() {
        let f = run(ecc_uncorrected, &with_ecc(0, 5));
        assert_eq!(ids(&f), ["ecc-uncorrected"]);
        assert_eq!(f[0].severity, Severity::Warning);
    }

    #[test]
    fn no_uncorrected_errors_no_finding() {
        assert!(run(ecc_uncorrected, &with_ecc(0, 0)).is_empty());
        let mut no_ecc = gpu(0);
        no_ecc.ecc = None;
        assert!(run(ecc_uncorrected, &node(vec![no_ecc])).is_empty());
    }

    #[test]
    fn lost_gpus_are_not_judged_on_stale_counters() {
        let mut snapshot = with_ecc(2, 2);
        snapshot.gpus[0].lost = true;
        assert!(run(ecc_uncorrected, &snapshot).is_empty());
    }

    #[test]
    fn pending_and_failed_remaps() {
        let mut g = gpu(3);
        g.remapped_rows = Some(RemappedRows {
            uncorrectable: 1,
            pending: true,
            ..RemappedRows::default()
        });
        let f = run(remapped_rows, &node(vec![g.clone()]));
        assert_eq!(ids(&f), ["remap-pending"]);
        assert_eq!((f[0].severity, f[0].gpu), (Severity::Warning, Some(3)));

        g.remapped_rows = Some(RemappedRows {
            uncorrectable: 512,
            failure: true,
            ..RemappedRows::default()
        });
        let f = run(remapped_rows, &node(vec![g]));
        assert_eq!(ids(&f), ["remap-failed"]);
        assert_eq!(f[0].severity, Severity::Critical);
        assert!(f[0].why.contains("RMA"));
    }

    #[test]
    fn remapped_rows_without_pending_or_failure_are_fine() {
        let mut g = gpu(0);
        g.remapped_rows = Some(RemappedRows {
            correctable: 3,
            uncorrectable: 1,
            ..RemappedRows::default()
        });
        assert!(run(remapped_rows, &node(vec![g])).is_empty());
    }

    #[test]
    fn pending_page_retirement_is_a_warning() {
        let mut g = gpu(0);
        g.retired_pages = Some(RetiredPages {
            single_bit: 1,
            double_bit: 1,
            pending: true,
        });
        let f = run(retired_pages_pending, &node(vec![g.clone()]));
        assert_eq!(ids(&f), ["retired-pages-pending"]);
        assert_eq!(f[0].severity, Severity::Warning);

        g.retired_pages = Some(RetiredPages {
            single_bit: 1,
            double_bit: 1,
            pending: false,
        });
        assert!(run(retired_pages_pending, &node(vec![g])).is_empty());
    }
}
