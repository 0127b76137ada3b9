//! The fleet report: many nodes' one-line verdicts, grouped by finding
//! (`sigma fleet`).
//!
//! Operators ask "what is wrong where", so findings are grouped by stable id
//! across nodes ("xid-79 on 3 nodes: gpu-017 GPU 3, ..."), worst first, and
//! every node that gave no verdict is listed with the launcher's reason.

use std::collections::BTreeMap;
use std::io::{self, Write};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::verdict::{Verdict, cut};
use super::{EXIT_CRITICAL, EXIT_HEALTHY, EXIT_WARNING, Status};
use crate::checks::{Severity, printable};

/// Exit code of `sigma fleet` when no node is critical but some node gave
/// no verdict (unreachable, no sigma, timed out).
pub const EXIT_NO_ANSWER: i32 = 5;

/// What `sigma fleet --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetReport {
    /// Nodes per state.
    pub summary: FleetSummary,
    /// The fleet's worst state as an exit code: 4 if any node is critical,
    /// else 5 if any node gave no verdict, else 3 if any has warnings, else 0.
    pub exit_code: i32,
    /// Findings grouped by id across nodes, worst first, then most nodes.
    pub findings: Vec<FindingGroup>,
    /// Nodes that gave no verdict, with the reason.
    pub no_answer: Vec<NoAnswer>,
    /// Every node's verdict, by host name.
    pub nodes: Vec<Verdict>,
}

/// Nodes per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSummary {
    /// All nodes asked or heard from.
    pub nodes: usize,
    /// Healthy nodes.
    pub healthy: usize,
    /// Nodes whose worst finding is a warning.
    pub warning: usize,
    /// Nodes with a critical finding.
    pub critical: usize,
    /// Nodes that gave no verdict.
    pub no_answer: usize,
}

/// One finding id across the fleet.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindingGroup {
    /// The stable id (`xid-79`).
    pub id: String,
    /// The worst severity it has on any node.
    pub severity: Severity,
    /// The title on the first node it was seen on.
    pub title: String,
    /// Where it is: each node with the GPUs concerned, sorted by host.
    pub nodes: Vec<Place>,
}

/// A node where a finding holds, and on which GPUs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Place {
    /// Host name.
    pub host: String,
    /// GPU indexes (empty when the finding is node-wide).
    pub gpus: Vec<u32>,
    /// Those GPUs' UUIDs, when known.
    pub uuids: Vec<String>,
}

/// A node that gave no verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoAnswer {
    /// Host name as the launcher knows it.
    pub host: String,
    /// The launcher's reason (`command timeout`, `sigma: not found`, ...).
    pub reason: String,
}

impl FleetReport {
    /// Groups `verdicts` (one per host) and lists `no_answer`.
    pub fn new(verdicts: Vec<Verdict>, no_answer: Vec<NoAnswer>) -> FleetReport {
        let mut summary = FleetSummary {
            nodes: verdicts.len() + no_answer.len(),
            no_answer: no_answer.len(),
            ..FleetSummary::default()
        };
        let mut groups: BTreeMap<&str, FindingGroup> = BTreeMap::new();
        for verdict in &verdicts {
            match verdict.verdict {
                Status::Healthy => summary.healthy += 1,
                Status::Warning => summary.warning += 1,
                Status::Critical => summary.critical += 1,
            }
            for f in &verdict.findings {
                let group = groups.entry(&f.id).or_insert_with(|| FindingGroup {
                    id: f.id.clone(),
                    severity: f.severity,
                    title: f.title.clone(),
                    nodes: Vec::new(),
                });
                group.severity = group.severity.max(f.severity);
                // A node's findings are read together, so if this node is
                // in the group already it is the last place.
                let place = match group.nodes.last_mut() {
                    Some(p) if p.host == verdict.host => p,
                    _ => {
                        group.nodes.push(Place {
                            host: verdict.host.clone(),
                            gpus: Vec::new(),
                            uuids: Vec::new(),
                        });
                        group.nodes.last_mut().expect("just pushed")
                    }
                };
                if let Some(gpu) = f.gpu
                    && !place.gpus.contains(&gpu)
                {
                    place.gpus.push(gpu);
                    place.uuids.extend(f.uuid.clone());
                }
            }
        }
        let mut findings: Vec<FindingGroup> = groups.into_values().collect();
        for group in &mut findings {
            group.nodes.sort_by_cached_key(|n| natural(&n.host));
            for place in &mut group.nodes {
                place.gpus.sort_unstable();
            }
        }
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(b.nodes.len().cmp(&a.nodes.len()))
                .then(a.id.cmp(&b.id))
        });
        let exit_code = if summary.critical > 0 {
            EXIT_CRITICAL
        } else if summary.no_answer > 0 {
            EXIT_NO_ANSWER
        } else if summary.warning > 0 {
            EXIT_WARNING
        } else {
            EXIT_HEALTHY
        };
        let mut nodes = verdicts;
        nodes.sort_by_cached_key(|n| natural(&n.host));
        let mut no_answer = no_answer;
        no_answer.sort_by_cached_key(|n| natural(&n.host));
        FleetReport {
            summary,
            exit_code,
            findings,
            no_answer,
            nodes,
        }
    }
}

impl FindingGroup {
    /// `gpu-017 GPU 3, gpu-021 GPUs 0,1, gpu-044`, at most `max_nodes`
    /// nodes, then `and N more`.
    pub fn places(&self, max_nodes: usize) -> String {
        let mut parts: Vec<String> = self
            .nodes
            .iter()
            .take(max_nodes)
            .map(|p| match p.gpus.as_slice() {
                [] => p.host.clone(),
                [gpu] => format!("{} GPU {gpu}", p.host),
                gpus => {
                    let list: Vec<String> = gpus.iter().map(u32::to_string).collect();
                    format!("{} GPUs {}", p.host, list.join(","))
                }
            })
            .collect();
        if self.nodes.len() > max_nodes {
            parts.push(format!("and {} more", self.nodes.len() - max_nodes));
        }
        parts.join(", ")
    }
}

/// Writes the report as text: a summary line, one line per finding id,
/// then the nodes without a verdict.
pub fn render(out: &mut dyn Write, report: &FleetReport) -> io::Result<()> {
    let s = &report.summary;
    writeln!(
        out,
        "{} nodes: {} critical, {} warning, {} healthy, {} no answer",
        s.nodes, s.critical, s.warning, s.healthy, s.no_answer
    )?;
    if !report.findings.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<24} {:<8} {:>5}  TITLE",
            "FINDING", "SEVERITY", "NODES"
        )?;
        for group in &report.findings {
            // Everything here came from the nodes' lines: escaped.
            writeln!(
                out,
                "{:<24} {:<8} {:>5}  {}",
                printable(&group.id),
                group.severity.as_str(),
                group.nodes.len(),
                cut(&printable(&group.title), 40)
            )?;
            // As many places as fit an 80-column line.
            let places = (1..=group.nodes.len())
                .map(|n| group.places(n))
                .take_while(|line| line.chars().count() <= PLACES_WIDTH)
                .last()
                .unwrap_or_else(|| cut(&group.places(1), PLACES_WIDTH));
            writeln!(out, "    {}", printable(&places))?;
        }
    }
    if !report.no_answer.is_empty() {
        writeln!(out)?;
        writeln!(out, "NO ANSWER")?;
        let width = report
            .no_answer
            .iter()
            .map(|n| n.host.len())
            .max()
            .unwrap_or(0)
            .min(30);
        for node in &report.no_answer {
            writeln!(
                out,
                "{:<width$}  {}",
                printable(&node.host),
                cut(&printable(&node.reason), 100)
            )?;
        }
    }
    Ok(())
}

/// Width of the line listing a finding's places (80 columns, indented 4).
const PLACES_WIDTH: usize = 76;

/// Sort key that orders `gpu-9` before `gpu-10`: runs of digits compare as
/// numbers.
fn natural(host: &str) -> Vec<(String, u64)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut chars = host.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut digits = c.to_string();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                digits.push(d);
            }
            key.push((
                std::mem::take(&mut text),
                digits.parse().unwrap_or(u64::MAX),
            ));
        } else {
            text.push(c);
        }
    }
    key.push((text, 0));
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::verdict::sample as verdict;

    #[test]
    fn findings_group_by_id_across_nodes_worst_and_widest_first() {
        let report = FleetReport::new(
            vec![
                verdict("gpu-17", &[("xid-79", Severity::Critical, Some(3))]),
                verdict(
                    "gpu-3",
                    &[
                        ("xid-79", Severity::Critical, Some(0)),
                        ("xid-79", Severity::Critical, Some(5)),
                        ("persistence-off", Severity::Warning, None),
                    ],
                ),
                verdict("gpu-10", &[("persistence-off", Severity::Warning, None)]),
                verdict("gpu-11", &[("persistence-off", Severity::Warning, None)]),
                verdict("gpu-12", &[]),
            ],
            vec![NoAnswer {
                host: "gpu-99".into(),
                reason: "command timeout".into(),
            }],
        );
        assert_eq!(
            report.summary,
            FleetSummary {
                nodes: 6,
                healthy: 1,
                warning: 2,
                critical: 2,
                no_answer: 1
            }
        );
        assert_eq!(report.exit_code, EXIT_CRITICAL);
        let ids: Vec<&str> = report.findings.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["xid-79", "persistence-off"]);
        assert_eq!(report.findings[0].places(6), "gpu-3 GPUs 0,5, gpu-17 GPU 3");
        assert_eq!(
            report.findings[0].nodes[0].uuids,
            ["GPU-gpu-3-0", "GPU-gpu-3-5"]
        );
        assert_eq!(report.findings[1].places(2), "gpu-3, gpu-10, and 1 more");
        let hosts: Vec<&str> = report.nodes.iter().map(|v| v.host.as_str()).collect();
        assert_eq!(hosts, ["gpu-3", "gpu-10", "gpu-11", "gpu-12", "gpu-17"]);
    }

    #[test]
    fn the_exit_code_ranks_critical_then_no_answer_then_warning() {
        let warn = || verdict("a", &[("persistence-off", Severity::Warning, None)]);
        let gone = || NoAnswer {
            host: "b".into(),
            reason: "x".into(),
        };
        assert_eq!(
            FleetReport::new(vec![warn()], vec![]).exit_code,
            EXIT_WARNING
        );
        assert_eq!(
            FleetReport::new(vec![warn()], vec![gone()]).exit_code,
            EXIT_NO_ANSWER
        );
        assert_eq!(
            FleetReport::new(vec![verdict("c", &[])], vec![]).exit_code,
            EXIT_HEALTHY
        );
        assert_eq!(FleetReport::new(vec![], vec![]).summary.nodes, 0);
    }

    #[test]
    fn the_table_names_findings_places_and_silent_nodes() {
        let report = FleetReport::new(
            vec![verdict(
                "gpu-017",
                &[("xid-79", Severity::Critical, Some(3))],
            )],
            vec![NoAnswer {
                host: "gpu-063".into(),
                reason: "sh: 1: sigma: not found".into(),
            }],
        );
        let mut out = Vec::new();
        render(&mut out, &report).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("2 nodes: 1 critical, 0 warning, 0 healthy, 1 no answer\n"));
        assert!(
            text.contains(
                "xid-79                   critical     1  xid-79 title\n    gpu-017 GPU 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("NO ANSWER\ngpu-063  sh: 1: sigma: not found\n"),
            "{text}"
        );
    }
}
