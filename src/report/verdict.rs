//! The one-line verdict: `sigma doctor --json --compact`, what fleet tools
//! collect from every node.
//!
//! pdsh and clush prefix every line a node prints with `host: `, so a
//! node's answer must be exactly one line to be attributed. The verdict
//! names the host, the state, the Sigma version, when the node was probed,
//! each finding by its stable id (with GPU index and UUID), and the probe
//! sources that could not be read (a hung NVML is `timed out` there, not a
//! hung doctor). Readers accept unknown fields, so nodes running a newer
//! Sigma still aggregate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DoctorReport, Status};
use crate::checks::Severity;
use crate::probe::Unavailable;

/// What `sigma doctor --json --compact` prints, on one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verdict {
    /// The node's host name, as it names itself.
    pub host: String,
    /// `healthy`, `warning` or `critical`.
    pub verdict: Status,
    /// `sigma doctor`'s exit code: 0 healthy, 3 warnings, 4 critical.
    pub exit_code: i32,
    /// The Sigma version that judged the node.
    pub sigma: String,
    /// When the node was probed (RFC 3339, UTC).
    pub time: String,
    /// Findings, worst first.
    pub findings: Vec<VerdictFinding>,
    /// Probe sources that could not be read, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<Unavailable>,
}

/// One finding in a [`Verdict`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VerdictFinding {
    /// The rule's stable id (`xid-79`, `remap-pending`, `throttle-thermal`).
    pub id: String,
    /// How bad it is.
    pub severity: Severity,
    /// NVML (or rocm-smi) index of the GPU concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
    /// UUID of that GPU, when the probe read one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// One line for humans.
    pub title: String,
    /// The read-only command the rule suggests first, as a shell line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl Verdict {
    /// The verdict of a doctor report.
    pub fn of(report: &DoctorReport) -> Verdict {
        let snapshot = &report.snapshot;
        let findings = report
            .findings
            .iter()
            .map(|f| VerdictFinding {
                id: f.id.clone(),
                severity: f.severity,
                gpu: f.gpu,
                uuid: f.gpu.and_then(|index| {
                    snapshot
                        .gpus
                        .iter()
                        .find(|g| g.index == index)
                        .map(|g| g.uuid.clone())
                }),
                title: f.title.clone(),
                next: f.commands.first().map(shell_words::join),
            })
            .collect();
        Verdict {
            host: snapshot.host.hostname.clone(),
            verdict: report.status,
            exit_code: report.exit_code,
            sigma: env!("CARGO_PKG_VERSION").to_string(),
            time: snapshot.taken_at.clone(),
            findings,
            unavailable: snapshot.unavailable.clone(),
        }
    }

    /// The verdict as one line of JSON (no newline): every control, bidi
    /// and invisible character is escaped, so text from the node can
    /// neither break the line nor act on a terminal.
    pub fn to_line(&self) -> String {
        let line = serde_json::to_string(self).expect("a verdict always serializes");
        crate::checks::inert_json(&line).into_owned()
    }

    /// The worst finding at or above `floor`, if any.
    pub fn top(&self, floor: Severity) -> Option<&VerdictFinding> {
        // The first of the worst: the checks order findings worst first.
        self.findings
            .iter()
            .filter(|f| f.severity >= floor)
            .min_by_key(|f| std::cmp::Reverse(f.severity))
    }
}

impl VerdictFinding {
    /// `xid-79 gpu3: title`, cut to at most `max` bytes at a character
    /// boundary: the one line node-problem-detector shows (it keeps 80
    /// bytes by default and would split a character).
    pub fn headline(&self, max: usize) -> String {
        let line = match self.gpu {
            Some(gpu) => format!("{} gpu{gpu}: {}", self.id, self.title),
            None => format!("{}: {}", self.id, self.title),
        };
        // Titles may quote the node (process names): one line, no control
        // characters.
        let line: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        cut_bytes(&line, max)
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with `...`
/// when cut.
pub fn cut_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// `text` cut to at most `max` characters, with `...` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(3);
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(&"...".chars().take(max - keep).collect::<String>());
    out
}

/// A verdict for unit tests: `host` with `findings` as (id, severity,
/// GPU); the state and exit code follow the worst finding.
#[cfg(test)]
pub(crate) fn sample(host: &str, findings: &[(&str, Severity, Option<u32>)]) -> Verdict {
    let (verdict, exit_code) = match findings.iter().map(|f| f.1).max() {
        Some(Severity::Critical) => (Status::Critical, 4),
        Some(Severity::Warning) => (Status::Warning, 3),
        _ => (Status::Healthy, 0),
    };
    Verdict {
        host: host.into(),
        verdict,
        exit_code,
        sigma: "0.1.0".into(),
        time: "2026-12-07T00:00:00Z".into(),
        findings: findings
            .iter()
            .map(|(id, severity, gpu)| VerdictFinding {
                id: id.to_string(),
                severity: *severity,
                gpu: *gpu,
                uuid: gpu.map(|g| format!("GPU-{host}-{g}")),
                title: format!("{id} title"),
                next: None,
            })
            .collect(),
        unavailable: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sim: &str) -> DoctorReport {
        DoctorReport::new(crate::sim::load(sim).unwrap().snapshot)
    }

    #[test]
    fn the_line_is_one_line_and_reads_back() {
        for sim in crate::sim::list() {
            let sim = sim.name.as_str();
            let verdict = Verdict::of(&report(sim));
            let line = verdict.to_line();
            assert!(!line.contains('\n'), "{sim}: {line}");
            let back: Verdict = serde_json::from_str(&line).unwrap();
            assert_eq!(back, verdict, "{sim}");
        }
    }

    #[test]
    fn findings_carry_the_gpu_index_and_uuid() {
        let verdict = Verdict::of(&report("h100x8-xid79"));
        assert_eq!(verdict.verdict, Status::Critical);
        assert_eq!(verdict.exit_code, 4);
        let xid = verdict.findings.iter().find(|f| f.id == "xid-79").unwrap();
        let gpu = xid.gpu.expect("xid 79 names its GPU");
        let snapshot = crate::sim::load("h100x8-xid79").unwrap().snapshot;
        let uuid = &snapshot.gpus.iter().find(|g| g.index == gpu).unwrap().uuid;
        assert_eq!(xid.uuid.as_ref(), Some(uuid));
        assert_eq!(verdict.host, snapshot.host.hostname);
        // The first of the worst findings, in the checks' order.
        assert_eq!(verdict.top(Severity::Critical).unwrap().id, "gpu-lost");
    }

    #[test]
    fn a_newer_sigmas_extra_fields_are_accepted() {
        let line = r#"{"host":"n1","verdict":"healthy","exit_code":0,"sigma":"9.0.0","time":"t","findings":[],"new_field":1}"#;
        let verdict: Verdict = serde_json::from_str(line).unwrap();
        assert_eq!(verdict.host, "n1");
        assert!(verdict.top(Severity::Warning).is_none());
    }

    #[test]
    fn headlines_are_cut_and_single_line() {
        let f = VerdictFinding {
            id: "xid-79".into(),
            severity: Severity::Critical,
            gpu: Some(3),
            uuid: None,
            next: None,
            title: "GPU has fallen off the bus\nreboot now ".repeat(5),
        };
        let line = f.headline(80);
        assert_eq!(line.chars().count(), 80);
        assert!(line.starts_with("xid-79 gpu3: GPU has fallen off the bus reboot"));
        assert!(line.ends_with("..."));
        let wide = VerdictFinding {
            title: "процесс ".repeat(20),
            ..f.clone()
        };
        let line = wide.headline(80);
        assert!(line.len() <= 80 && line.ends_with("..."), "{line}");
        assert_eq!(cut("short", 80), "short");
        assert_eq!(cut("ab", 1), ".");
    }
}
