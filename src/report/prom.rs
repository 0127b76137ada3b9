//! The doctor report as Prometheus metrics: the text node_exporter's
//! textfile collector reads (`sigma doctor --prom-out DIR`) and `sigma
//! exporter` serves.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sigma_node_health` | gauge | 0 healthy, 1 warning, 2 critical |
//! | `sigma_finding` | gauge | `id`, `severity`, `gpu` (absent when node-wide); 1 per finding |
//! | `sigma_xid_total` | counter | `gpu` (NVML index, else the bus id), `xid`: events in the kernel log read |
//! | `sigma_source_unavailable` | gauge | `source`: 1 per probe source that could not be read |
//! | `sigma_last_run_timestamp_seconds` | gauge | when the node was probed |
//!
//! No sample carries a timestamp: the textfile collector rejects them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{DoctorReport, Status};

/// The report in the Prometheus text exposition format (version 0.0.4).
pub fn metrics(report: &DoctorReport) -> String {
    let snapshot = &report.snapshot;
    let mut out = String::new();
    let health = match report.status {
        Status::Healthy => 0,
        Status::Warning => 1,
        Status::Critical => 2,
    };
    family(
        &mut out,
        "sigma_node_health",
        "gauge",
        "Node health from sigma doctor: 0 healthy, 1 warning, 2 critical.",
    );
    let _ = writeln!(out, "sigma_node_health {health}");

    family(
        &mut out,
        "sigma_finding",
        "gauge",
        "A finding of sigma doctor, 1 while it holds.",
    );
    // Two findings can share id and GPU (one per bus id of a GPU gone from
    // NVML); a series must appear once.
    let mut findings = BTreeMap::new();
    for f in &report.findings {
        let mut labels = vec![
            ("id", f.id.clone()),
            ("severity", f.severity.as_str().into()),
        ];
        if let Some(gpu) = f.gpu {
            labels.push(("gpu", gpu.to_string()));
        }
        findings.insert(label_set(&labels), ());
    }
    for labels in findings.keys() {
        let _ = writeln!(out, "sigma_finding{labels} 1");
    }

    family(
        &mut out,
        "sigma_xid_total",
        "counter",
        "NVIDIA XID events in the kernel log Sigma read, by GPU and XID.",
    );
    let mut xids: BTreeMap<(String, u32), u64> = BTreeMap::new();
    for event in &snapshot.xid_events {
        let gpu = snapshot
            .gpu_by_bus_id(&event.pci_bus_id)
            .map(|g| g.index.to_string())
            .unwrap_or_else(|| crate::probe::normalize_bus_id(&event.pci_bus_id));
        *xids.entry((gpu, event.xid)).or_default() += 1;
    }
    for ((gpu, xid), count) in &xids {
        let labels = label_set(&[("gpu", gpu.clone()), ("xid", xid.to_string())]);
        let _ = writeln!(out, "sigma_xid_total{labels} {count}");
    }

    family(
        &mut out,
        "sigma_source_unavailable",
        "gauge",
        "A probe source Sigma could not read (timed out, missing, denied).",
    );
    let sources: std::collections::BTreeSet<&str> = snapshot
        .unavailable
        .iter()
        .map(|u| u.source.as_str())
        .collect();
    for source in sources {
        let labels = label_set(&[("source", source.to_string())]);
        let _ = writeln!(out, "sigma_source_unavailable{labels} 1");
    }

    family(
        &mut out,
        "sigma_last_run_timestamp_seconds",
        "gauge",
        "When sigma doctor probed the node, seconds since the epoch.",
    );
    let when = chrono::DateTime::parse_from_rfc3339(&snapshot.taken_at)
        .map(|t| t.timestamp())
        .unwrap_or_else(|_| chrono::Utc::now().timestamp());
    let _ = writeln!(out, "sigma_last_run_timestamp_seconds {when}");
    out
}

/// `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// `{a="x",b="y"}`, values escaped as the format requires.
fn label_set(labels: &[(&str, String)]) -> String {
    let body: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sim: &str) -> DoctorReport {
        DoctorReport::new(crate::sim::load(sim).unwrap().snapshot)
    }

    #[test]
    fn a_critical_node_exports_its_health_findings_and_xids() {
        let text = metrics(&report("h100x8-xid79"));
        assert!(text.contains("\nsigma_node_health 2\n"), "{text}");
        let finding = text
            .lines()
            .find(|l| l.starts_with("sigma_finding{id=\"xid-79\""))
            .expect("the xid finding is a series");
        assert!(finding.contains("severity=\"critical\"") && finding.contains("gpu=\""));
        assert!(
            text.lines()
                .any(|l| l.starts_with("sigma_xid_total{") && l.contains("xid=\"79\""))
        );
        assert!(text.contains("# TYPE sigma_xid_total counter"));
    }

    #[test]
    fn no_sample_has_a_timestamp() {
        for sim in crate::sim::list() {
            let text = metrics(&report(&sim.name));
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                // name{labels} value: a third field would be a timestamp.
                let after_labels = line.rsplit_once('}').map_or(line, |(_, rest)| rest);
                let fields = after_labels.split_whitespace().count();
                let expected = if line.contains('}') { 1 } else { 2 };
                assert_eq!(fields, expected, "{}: {line}", sim.name);
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            label_set(&[("id", "a\"b\\c\nd".into())]),
            r#"{id="a\"b\\c\nd"}"#
        );
    }
}
