//! Rules over what commands showed that the snapshot has no field for:
//! `ib-port-down`, `dcgm-health` and `dcgm-diag-failed`.
//!
//! The probe reads GPUs, PCI, the kernel log and the host; an InfiniBand
//! port's state or a DCGM verdict arrives only as a [`Fact`] read from
//! `ibstat`, `ibv_devinfo` or `dcgmi` output (`probe::interpret`). These
//! rules judge those facts the way the others judge a snapshot, into the
//! same [`Finding`]s. Like every rule: no I/O, and the same facts always
//! give the same findings.

use super::common::{argv, evidence, untrusted};
use super::{Finding, Severity};
use crate::probe::interpret::Fact;

/// Every finding the facts support, in [`super::run_all`]'s order.
pub fn run_on_facts(facts: &[Fact]) -> Vec<Finding> {
    let mut findings = ib_ports_down(facts);
    findings.extend(dcgm_health(facts));
    findings.extend(dcgm_diag(facts));
    super::sort(&mut findings);
    findings
}

/// The last fact with `field` about `subject` (a later reading wins).
fn latest<'a>(facts: &'a [Fact], field: &str, subject: &str) -> Option<&'a Fact> {
    facts
        .iter()
        .rev()
        .find(|f| f.field == field && f.subject.as_deref() == Some(subject))
}

/// Rule: `ib-port-down` for each InfiniBand port whose state is not Active.
fn ib_ports_down(facts: &[Fact]) -> Vec<Finding> {
    let mut ports: Vec<&str> = facts
        .iter()
        .filter(|f| f.field == "ib.state")
        .filter_map(|f| f.subject.as_deref())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
        .into_iter()
        .filter_map(|port| {
            let state = latest(facts, "ib.state", port)?;
            if state.value.eq_ignore_ascii_case("active") {
                return None;
            }
            let physical = latest(facts, "ib.physical_state", port);
            let physical_text = physical.map_or(String::new(), |p| {
                format!(" (physical state {})", untrusted(&p.value))
            });
            let hca = port.split(' ').next().unwrap_or(port);
            Some(Finding {
                id: "ib-port-down".into(),
                severity: Severity::Warning,
                gpu: None,
                title: format!(
                    "InfiniBand {} is {}{physical_text}",
                    untrusted(port),
                    untrusted(&state.value)
                ),
                evidence: evidence([
                    ("port", untrusted(port)),
                    ("ib.state", untrusted(&state.value)),
                    (
                        "ib.physical_state",
                        physical.map_or("unknown".into(), |p| untrusted(&p.value)),
                    ),
                ]),
                commands: vec![argv(&["ibstat", hca]), argv(&["ibv_devinfo", "-d", hca])],
                why: "The port carries no traffic: multi-node jobs that use this rail fail or \
                      fall back to slower paths (NCCL over TCP). A physical state of Polling \
                      means no link partner answers: check the cable and transceiver at both \
                      ends and the switch port; Disabled means it was turned off on purpose."
                    .into(),
            })
        })
        .collect()
}

/// Rule: `dcgm-health` for each GPU (or the whole system) DCGM's health
/// watches did not call healthy.
fn dcgm_health(facts: &[Fact]) -> Vec<Finding> {
    let mut findings: Vec<Finding> = Vec::new();
    for f in facts.iter().filter(|f| f.field == "dcgm.health") {
        let verdict = f.value.to_ascii_lowercase();
        let severity = match verdict.as_str() {
            "healthy" | "pass" | "" => continue,
            "warning" | "warn" => Severity::Warning,
            _ => Severity::Critical,
        };
        // A GPU's overall verdict, or (when only a system line says it) its system.
        if f.gpu.is_none()
            && facts
                .iter()
                .any(|g| g.field == "dcgm.health" && g.gpu.is_some())
        {
            continue;
        }
        if f.subject.is_some()
            && facts
                .iter()
                .any(|g| g.field == "dcgm.health" && g.gpu == f.gpu && g.subject.is_none())
        {
            continue;
        }
        if findings.iter().any(|x| x.gpu == f.gpu) {
            continue;
        }
        let system = facts
            .iter()
            .filter(|g| g.field == "dcgm.health" && g.gpu == f.gpu && g.subject.is_some())
            .map(|g| {
                format!(
                    "{}: {}",
                    untrusted(g.subject.as_deref().unwrap_or("")),
                    untrusted(&g.value)
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let mut ev = evidence([("dcgm.health", untrusted(&f.value))]);
        if !system.is_empty() {
            ev.insert("systems".into(), system.clone());
        }
        let scope = f.gpu.map_or("the node".to_string(), |g| format!("GPU {g}"));
        findings.push(Finding {
            id: "dcgm-health".into(),
            severity,
            gpu: f.gpu,
            title: format!(
                "DCGM health {} for {scope}{}",
                untrusted(&f.value),
                if system.is_empty() {
                    String::new()
                } else {
                    format!(" ({system})")
                }
            ),
            evidence: ev,
            commands: vec![argv(&["dcgmi", "health", "-c"])],
            why: "DCGM's background health watches flagged this GPU: the system named is the \
                  one to look at (memory: ECC and row remapping; NVLink: link errors; PCIe: \
                  replays). Follow DCGM's own advice in the report before returning the GPU \
                  to service."
                .into(),
        });
    }
    findings
}

/// Rule: `dcgm-diag-failed` for each diagnostic test that failed.
fn dcgm_diag(facts: &[Fact]) -> Vec<Finding> {
    let failed: Vec<&Fact> = facts
        .iter()
        .filter(|f| f.field == "dcgm.diag" && f.value.eq_ignore_ascii_case("fail"))
        .collect();
    if failed.is_empty() {
        return Vec::new();
    }
    let tests: Vec<String> = failed
        .iter()
        .filter_map(|f| f.subject.as_deref().map(untrusted))
        .collect();
    vec![Finding {
        id: "dcgm-diag-failed".into(),
        severity: Severity::Critical,
        gpu: None,
        title: format!("DCGM diagnostic failed: {}", tests.join(", ")),
        evidence: evidence([("failed_tests", tests.join(", "))]),
        commands: vec![argv(&["dcgmi", "diag", "-r", "1"])],
        why: "A DCGM diagnostic test failed: the GPU named in its details is not fit for \
              work until the cause is fixed (the test's message says what to do, often a \
              reset for memory errors). Keep the node drained meanwhile."
            .into(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(gpu: Option<u32>, field: &str, value: &str, subject: Option<&str>) -> Fact {
        let f = Fact::new(gpu, field, value, None);
        match subject {
            Some(s) => f.about(s),
            None => f,
        }
    }

    #[test]
    fn a_port_that_is_not_active_is_a_finding_and_a_later_reading_wins() {
        let facts = [
            fact(None, "ib.state", "Active", Some("mlx5_0 port 1")),
            fact(None, "ib.state", "Down", Some("mlx5_3 port 1")),
            fact(None, "ib.physical_state", "Polling", Some("mlx5_3 port 1")),
        ];
        let found = run_on_facts(&facts);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "ib-port-down");
        assert_eq!(
            found[0].title,
            "InfiniBand mlx5_3 port 1 is Down (physical state Polling)"
        );
        assert_eq!(found[0].commands[0], ["ibstat", "mlx5_3"]);
        let mut recovered = facts.to_vec();
        recovered.push(fact(None, "ib.state", "Active", Some("mlx5_3 port 1")));
        assert!(run_on_facts(&recovered).is_empty());
    }

    #[test]
    fn dcgm_failures_name_the_gpu_and_the_system() {
        let facts = [
            fact(None, "dcgm.health", "Failure", None),
            fact(Some(6), "dcgm.health", "Failure", None),
            fact(Some(6), "dcgm.health", "Failure", Some("Memory system")),
            fact(None, "dcgm.diag", "Fail", Some("Page Retirement/Row Remap")),
            fact(None, "dcgm.diag", "Pass", Some("Inforom")),
        ];
        let found = run_on_facts(&facts);
        let ids: Vec<(&str, Option<u32>, Severity)> = found
            .iter()
            .map(|f| (f.id.as_str(), f.gpu, f.severity))
            .collect();
        assert_eq!(
            ids,
            [
                ("dcgm-health", Some(6), Severity::Critical),
                ("dcgm-diag-failed", None, Severity::Critical)
            ]
        );
        assert!(
            found[0].title.contains("Memory system: Failure"),
            "{}",
            found[0].title
        );
        assert!(run_on_facts(&[fact(None, "dcgm.health", "Healthy", None)]).is_empty());
    }
}
