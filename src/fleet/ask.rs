//! Questions about a fleet (`sigma fleet ... --ask`): answered from the
//! aggregated report, with node names and per-node commands the guard has
//! validated.
//!
//! The answer is the checks' own reading of every node, ranked: nodes to
//! drain (a critical finding), nodes to watch (warnings), nodes to reach
//! first (no verdict). A question naming a finding ("which nodes have XID
//! 79?", "ECC") or a node narrows it to those. Each node to drain gets the
//! read-only command its worst finding names, to confirm before acting;
//! nothing runs without a per-node confirmation (the front end asks).
//! No language model is involved: the report is already the diagnosis, and
//! a fleet answer must name exactly the nodes the checks found.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::checks::Severity;
use crate::copilot::Proposal;
use crate::report::Status;
use crate::report::fleet::FleetReport;
use crate::report::verdict::{Verdict, VerdictFinding};

/// Most nodes named one by one in a list (the rest are counted).
const LISTED: usize = 12;

/// A fleet answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetAnswer {
    /// The answer in prose: which nodes, why, what to do.
    pub answer: String,
    /// Commands to confirm the worst findings, one node each.
    pub proposals: Vec<NodeProposal>,
}

/// A validated command for one node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeProposal {
    /// The node it is for.
    pub host: String,
    /// The command, what it is for, and the guard's verdict.
    #[serde(flatten)]
    pub proposal: Proposal,
}

/// Answers `question` from `report`.
pub fn answer(report: &FleetReport, question: &str) -> FleetAnswer {
    let scope = Scope::of(report, question);
    let in_scope = |v: &&Verdict| scope.keeps_node(&v.host);
    let worst = |v: &Verdict, floor: Severity| {
        v.findings
            .iter()
            .filter(|f| f.severity >= floor && scope.keeps_finding(&f.id))
            .min_by_key(|f| std::cmp::Reverse(f.severity))
            .cloned()
    };
    let drain: Vec<&Verdict> = report
        .nodes
        .iter()
        .filter(in_scope)
        .filter(|v| v.verdict == Status::Critical && worst(v, Severity::Critical).is_some())
        .collect();
    let watch: Vec<&Verdict> = report
        .nodes
        .iter()
        .filter(in_scope)
        .filter(|v| v.verdict != Status::Healthy && worst(v, Severity::Warning).is_some())
        .filter(|v| !drain.iter().any(|d| d.host == v.host))
        .collect();
    let silent: Vec<_> = report
        .no_answer
        .iter()
        .filter(|n| scope.keeps_node(&n.host) && scope.findings.is_empty())
        .collect();

    let mut text = String::new();
    if let Some(what) = &scope.named {
        let _ = writeln!(text, "Looking at {what}.");
    }
    if drain.is_empty() {
        let _ = writeln!(
            text,
            "No node needs draining: no critical finding{}.",
            scope.suffix()
        );
    } else {
        let header = format!(
            "Drain {} node{} (critical findings):",
            drain.len(),
            plural(drain.len())
        );
        let lines = drain
            .iter()
            .filter_map(|v| Some(place(v, &worst(v, Severity::Critical)?)));
        list(&mut text, &header, lines, drain.len());
        let hosts: Vec<&str> = drain.iter().map(|v| v.host.as_str()).collect();
        let _ = writeln!(
            text,
            "Confirm with the command below on each, then drain them from the scheduler, e.g. \
             `scontrol update NodeName={} State=DRAIN Reason=\"sigma: critical GPU finding\"` \
             (or let `sigma slurm health-check` do it per node).",
            hosts.join(",")
        );
    }
    if !watch.is_empty() {
        let header = format!(
            "Watch {} node{} with warnings (no drain needed yet):",
            watch.len(),
            plural(watch.len())
        );
        let lines = watch
            .iter()
            .filter_map(|v| Some(place(v, &worst(v, Severity::Warning)?)));
        list(&mut text, &header, lines, watch.len());
    }
    if !silent.is_empty() {
        let header = format!(
            "{} node{} gave no verdict; reach {} first (down, no sigma, or hung):",
            silent.len(),
            plural(silent.len()),
            if silent.len() == 1 { "it" } else { "them" }
        );
        let lines = silent.iter().map(|n| format!("{}: {}", n.host, n.reason));
        list(&mut text, &header, lines, silent.len());
    }

    let proposals = drain
        .iter()
        .filter_map(|v| {
            let f = worst(v, Severity::Critical)?;
            let command = f.next.clone()?;
            Some(NodeProposal {
                host: v.host.clone(),
                proposal: Proposal::new(command, format!("confirm {} on {}", f.id, v.host)),
            })
        })
        .take(LISTED)
        .collect();
    FleetAnswer {
        answer: text.trim_end().to_string(),
        proposals,
    }
}

/// What a question narrows the answer to.
#[derive(Debug, Default)]
struct Scope {
    /// Finding ids the question names (empty: all).
    findings: BTreeSet<String>,
    /// Hosts the question names (empty: all).
    hosts: BTreeSet<String>,
    /// How the narrowing reads, for the answer's first line.
    named: Option<String>,
}

impl Scope {
    /// The finding ids and hosts `question` names, among those in `report`.
    fn of(report: &FleetReport, question: &str) -> Scope {
        let q = question.to_lowercase();
        let words: Vec<&str> = q
            .split(|c: char| !c.is_alphanumeric() && c != '-' && c != '.')
            .filter(|w| !w.is_empty())
            .collect();
        let mut scope = Scope::default();
        let hosts = report
            .nodes
            .iter()
            .map(|v| v.host.as_str())
            .chain(report.no_answer.iter().map(|n| n.host.as_str()));
        for host in hosts {
            if words.contains(&host.to_lowercase().as_str()) {
                scope.hosts.insert(host.to_string());
            }
        }
        for group in &report.findings {
            if names_finding(&q, &words, &group.id) {
                scope.findings.insert(group.id.clone());
            }
        }
        let mut named: Vec<String> = scope.findings.iter().cloned().collect();
        named.extend(scope.hosts.iter().cloned());
        if !named.is_empty() {
            scope.named = Some(named.join(", "));
        }
        scope
    }

    fn keeps_node(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.contains(host)
    }

    fn keeps_finding(&self, id: &str) -> bool {
        self.findings.is_empty() || self.findings.contains(id)
    }

    /// ` for xid-79` when narrowed to findings.
    fn suffix(&self) -> String {
        match &self.named {
            Some(what) => format!(" for {what}"),
            None => String::new(),
        }
    }
}

/// Whether the question names finding `id`: `xid-79` as `xid 79` or
/// `xid79`, or a word of the id that is specific (`ecc`, `thermal`,
/// `remap`, `pcie`), not a generic one (`gpu`, `missing`).
fn names_finding(question: &str, words: &[&str], id: &str) -> bool {
    if let Some(n) = id.strip_prefix("xid-") {
        return question.contains(&format!("xid {n}"))
            || question.contains(&format!("xid-{n}"))
            || question.contains(&format!("xid{n}"));
    }
    const GENERIC: [&str; 12] = [
        "gpu", "node", "source", "from", "near", "missing", "nvml", "low", "off", "host", "text",
        "health",
    ];
    words.contains(&id)
        || id
            .split('-')
            .filter(|part| part.len() > 2 && !GENERIC.contains(part))
            .any(|part| words.contains(&part))
}

/// `gpu-017 GPU 3: xid-79 (XID 79: GPU has fallen off the bus)`.
fn place(node: &Verdict, f: &VerdictFinding) -> String {
    match f.gpu {
        Some(gpu) => format!("{} GPU {gpu}: {} ({})", node.host, f.id, f.title),
        None => format!("{}: {} ({})", node.host, f.id, f.title),
    }
}

/// `header`, then the first [`LISTED`] of `lines` as a list, then how many
/// more there are (of `n` in all).
fn list(text: &mut String, header: &str, lines: impl Iterator<Item = String>, n: usize) {
    let _ = writeln!(text, "{header}");
    for line in lines.take(LISTED) {
        let _ = writeln!(text, "- {line}");
    }
    if n > LISTED {
        let _ = writeln!(
            text,
            "- and {} more (sigma fleet --json lists them all)",
            n - LISTED
        );
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::DoctorReport;
    use crate::report::fleet::NoAnswer;

    fn fleet() -> FleetReport {
        let verdict = |sim: &str, host: &str| {
            let mut v = Verdict::of(&DoctorReport::new(crate::sim::load(sim).unwrap().snapshot));
            v.host = host.into();
            v
        };
        FleetReport::new(
            vec![
                verdict("h100x8-xid79", "gpu-017"),
                verdict("a100x8-ecc-dbe", "gpu-021"),
                verdict("h100x8-thermal-throttle", "gpu-004"),
                verdict("h100x8-healthy", "gpu-001"),
            ],
            vec![NoAnswer {
                host: "gpu-063".into(),
                reason: "command timeout".into(),
            }],
        )
    }

    #[test]
    fn drain_names_the_critical_nodes_with_a_validated_command_each() {
        let a = answer(&fleet(), "which nodes should I drain?");
        assert!(
            a.answer
                .starts_with("Drain 2 nodes (critical findings):\n- gpu-017 GPU 3"),
            "{}",
            a.answer
        );
        assert!(a.answer.contains("- gpu-021 GPU 6"), "{}", a.answer);
        assert!(
            a.answer.contains("Watch 1 node with warnings"),
            "{}",
            a.answer
        );
        assert!(
            a.answer.contains("gpu-004 GPU 2: throttle-thermal"),
            "{}",
            a.answer
        );
        assert!(
            a.answer.contains("- gpu-063: command timeout"),
            "{}",
            a.answer
        );
        assert!(
            !a.answer.contains("gpu-001"),
            "healthy nodes are not listed"
        );
        let hosts: Vec<&str> = a.proposals.iter().map(|p| p.host.as_str()).collect();
        assert_eq!(hosts, ["gpu-017", "gpu-021"]);
        for p in &a.proposals {
            assert!(p.proposal.verdict.is_allowed(), "{:?}", p.proposal.verdict);
            assert_eq!(
                p.proposal.verdict.tier,
                crate::guard::Tier::ReadOnly,
                "{}",
                p.proposal.command
            );
        }
    }

    #[test]
    fn a_named_finding_or_node_narrows_the_answer() {
        let a = answer(&fleet(), "Which nodes have XID 79?");
        assert!(
            a.answer.starts_with("Looking at xid-79.\nDrain 1 node"),
            "{}",
            a.answer
        );
        assert!(
            !a.answer.contains("gpu-021") && !a.answer.contains("gpu-063"),
            "{}",
            a.answer
        );
        let a = answer(&fleet(), "any ECC trouble?");
        assert!(
            a.answer.contains("gpu-021") && !a.answer.contains("gpu-017"),
            "{}",
            a.answer
        );
        let a = answer(&fleet(), "what about gpu-004?");
        assert!(a.answer.contains("No node needs draining"), "{}", a.answer);
        assert!(a.answer.contains("gpu-004 GPU 2"), "{}", a.answer);
    }
}
