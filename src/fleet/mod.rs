//! Fleet mode: many nodes' verdicts, gathered through the launcher the site
//! already runs (pdsh, clush, srun, ssh), and Slurm's node actions.
//!
//! | module | owns |
//! |---|---|
//! | this one | [`Gather`]: reads launcher output line by line into a [`FleetReport`] |
//! | [`ask`] | questions about the fleet: nodes to drain, watch or reach, with per-node commands |
//! | [`launch`] | running `sigma doctor --json --compact` on nodes through a launcher, and `--install` |
//! | [`slurm`] | the health check's drain/resume decision and `scontrol` |
//!
//! The model never runs here: fleet modes are deterministic and bounded.
//!
//! [`FleetReport`]: crate::report::fleet::FleetReport

pub mod ask;
pub mod launch;
pub mod slurm;

use std::collections::{BTreeMap, HashSet};

use crate::report::fleet::{FleetReport, NoAnswer};
use crate::report::verdict::Verdict;

/// Collects one-line verdicts and launcher messages, host by host.
///
/// Lines come as nodes print them (`{...}`), prefixed as pdsh and clush
/// print them (`gpu-017: {...}`), or as the launcher's own messages on
/// standard error (`pdsh@head: gpu-063: command timeout`,
/// `clush: gpu-063: exited with exit code 127`, `gpu-063: sh: sigma: not
/// found`). A host that gave no verdict is reported with its last messages.
#[derive(Debug, Default)]
pub struct Gather {
    /// Hosts the launcher was asked to reach, in order (empty for `--from`).
    expected: Vec<String>,
    /// The same, for lookups.
    expected_set: HashSet<String>,
    /// Verdicts by host; a host that answers twice keeps its last answer.
    verdicts: BTreeMap<String, Verdict>,
    /// What the launcher or the node said about a host, in order.
    messages: BTreeMap<String, Vec<String>>,
    /// The launcher's own messages about no host in particular (`pdsh@head:
    /// Cannot specify -t with "-R exec"`): the reason when hosts are silent.
    general: Vec<String>,
}

/// How many of a host's messages its reason keeps (the last ones).
const REASON_MESSAGES: usize = 2;

impl Gather {
    /// A gathering that expects `hosts` (for `--from`, none: every host heard
    /// from counts).
    pub fn expecting(hosts: Vec<String>) -> Gather {
        Gather {
            expected_set: hosts.iter().cloned().collect(),
            expected: hosts,
            ..Gather::default()
        }
    }

    /// Reads one line of launcher output (standard output or error). Returns
    /// the host when the line was its verdict.
    pub fn feed(&mut self, line: &str) -> Option<String> {
        let line = line.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            return None;
        }
        // The launcher's own message: `pdsh@head: HOST: text`, `clush: HOST:
        // text`, `srun: error: HOST: task 0: text`.
        if let Some((launcher, rest)) = split_host(line)
            && (launcher.starts_with("pdsh@")
                || launcher.starts_with("pdcp@")
                || launcher == "clush"
                || launcher == "srun")
        {
            let rest = rest.strip_prefix("error: ").unwrap_or(rest);
            match split_host(rest) {
                Some((host, text)) => self.note(host, text),
                None => self.general.push(format!("{launcher}: {}", rest.trim())),
            }
            return None;
        }
        let (prefix, body) = match split_host(line) {
            Some((host, body)) if !line.starts_with('{') => (Some(host), body),
            _ => (None, line),
        };
        if body.starts_with('{') {
            match serde_json::from_str::<Verdict>(body) {
                Ok(mut verdict) => {
                    // The launcher's name for the node is the one the
                    // operator typed, so it wins over the node's own.
                    if let Some(host) = prefix {
                        verdict.host = host.to_string();
                    } else if !self.expected_set.contains(&verdict.host) {
                        // A node naming itself `gpu-017.cluster` when asked
                        // for as `gpu-017`.
                        let short = verdict.host.split('.').next().unwrap_or_default();
                        if self.expected_set.contains(short) {
                            verdict.host = short.to_string();
                        }
                    }
                    let host = verdict.host.clone();
                    self.verdicts.insert(host.clone(), verdict);
                    return Some(host);
                }
                Err(e) => {
                    if let Some(host) = prefix {
                        self.note(
                            host,
                            &format!(
                                "not a one-line verdict ({e}); is the sigma on the node older than this one?"
                            ),
                        );
                    }
                    return None;
                }
            }
        }
        if let Some(host) = prefix {
            self.note(host, body);
        }
        None
    }

    /// Records a reason for `host` that did not come as a line (a timeout,
    /// an ssh failure the fleet itself saw).
    pub fn note(&mut self, host: &str, text: &str) {
        let text: String = text
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(300)
            .collect();
        self.messages
            .entry(host.to_string())
            .or_default()
            .push(text);
    }

    /// Number of hosts with a verdict so far.
    pub fn answered(&self) -> usize {
        self.verdicts.len()
    }

    /// Whether `host` has given its verdict.
    pub fn has_verdict(&self, host: &str) -> bool {
        self.verdicts.contains_key(host)
    }

    /// The report: every verdict, and every expected or heard-from host
    /// without one, with its reason.
    pub fn finish(mut self) -> FleetReport {
        let mut silent: Vec<String> = self
            .expected
            .iter()
            .filter(|h| !self.verdicts.contains_key(*h))
            .cloned()
            .collect();
        for host in self.messages.keys() {
            if !self.verdicts.contains_key(host) && !silent.contains(host) {
                silent.push(host.clone());
            }
        }
        let no_answer = silent
            .into_iter()
            .map(|host| {
                let reason = match self.messages.remove(&host) {
                    Some(messages) => {
                        let skip = messages.len().saturating_sub(REASON_MESSAGES);
                        messages[skip..].join("; ")
                    }
                    None => match self.general.last() {
                        Some(said) => format!("no output; the launcher said {said}"),
                        None => "no output: the launcher said nothing about this host".to_string(),
                    },
                };
                NoAnswer { host, reason }
            })
            .collect();
        FleetReport::new(self.verdicts.into_values().collect(), no_answer)
    }
}

/// Splits `host: rest` where `host` has no blanks; `None` otherwise.
fn split_host(line: &str) -> Option<(&str, &str)> {
    let (host, rest) = line.split_once(": ")?;
    if host.is_empty() || host.contains(char::is_whitespace) || host.starts_with('{') {
        return None;
    }
    Some((host, rest.trim_start()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fleet::EXIT_NO_ANSWER;

    const VERDICT: &str = r#"{"host":"self-name","verdict":"critical","exit_code":4,"sigma":"0.1.0","time":"2026-12-07T00:00:00Z","findings":[{"id":"xid-79","severity":"critical","gpu":3,"uuid":"GPU-1","title":"XID 79"}]}"#;
    const HEALTHY: &str = r#"{"host":"n9","verdict":"healthy","exit_code":0,"sigma":"0.1.0","time":"t","findings":[]}"#;

    #[test]
    fn prefixed_bare_and_launcher_lines_are_attributed() {
        let mut gather = Gather::expecting(vec![
            "gpu-017".into(),
            "n9".into(),
            "gpu-063".into(),
            "gpu-064".into(),
            "gpu-065".into(),
        ]);
        assert_eq!(
            gather.feed(&format!("gpu-017: {VERDICT}")),
            Some("gpu-017".into())
        );
        assert_eq!(gather.feed(HEALTHY), Some("n9".into()));
        assert_eq!(gather.feed("gpu-063: sh: 1: sigma: not found"), None);
        gather.feed("pdsh@head: gpu-063: exec exited with exit code 127");
        gather.feed("pdsh@head: gpu-064: command timeout");
        gather.feed("sending signal 15 to gpu-064 [ssh] pid 28558");
        gather.feed("clush: gpu-066: exited with exit code 255");
        gather.feed("srun: error: gpu-017: task 0: Exited with exit code 4");
        gather.feed("srun: Job step aborted");
        assert_eq!(gather.answered(), 2);
        let report = gather.finish();
        assert_eq!(report.summary.critical, 1);
        assert_eq!(report.summary.healthy, 1);
        assert_eq!(report.summary.no_answer, 4);
        assert_eq!(report.exit_code, 4);
        assert_eq!(report.findings[0].places(5), "gpu-017 GPU 3");
        let reasons: Vec<(&str, &str)> = report
            .no_answer
            .iter()
            .map(|n| (n.host.as_str(), n.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "gpu-063",
                    "sh: 1: sigma: not found; exec exited with exit code 127"
                ),
                ("gpu-064", "command timeout"),
                // The launcher's last word about no host in particular.
                (
                    "gpu-065",
                    "no output; the launcher said srun: Job step aborted"
                ),
                ("gpu-066", "exited with exit code 255"),
            ]
        );
    }

    #[test]
    fn a_bare_verdict_from_a_fully_qualified_host_counts_for_its_short_name() {
        let mut gather = Gather::expecting(vec!["n9".into()]);
        assert_eq!(
            gather.feed(&HEALTHY.replace("\"n9\"", "\"n9.cluster.local\"")),
            Some("n9".into())
        );
        assert_eq!(gather.finish().summary.no_answer, 0);
    }

    #[test]
    fn a_launcher_failure_is_the_reason_for_silent_hosts() {
        let mut gather = Gather::expecting(vec!["n1".into()]);
        gather.feed(r#"pdsh@head: Cannot specify -t with "-R exec""#);
        let report = gather.finish();
        assert_eq!(
            report.no_answer[0].reason,
            r#"no output; the launcher said pdsh@head: Cannot specify -t with "-R exec""#
        );
    }

    #[test]
    fn a_multi_line_verdict_is_named_not_misread() {
        let mut gather = Gather::default();
        gather.feed("old-node: {");
        gather.feed("old-node:   \"status\": \"healthy\",");
        let report = gather.finish();
        assert_eq!(report.exit_code, EXIT_NO_ANSWER);
        assert!(
            report.no_answer[0]
                .reason
                .contains("not a one-line verdict")
        );
    }

    #[test]
    fn blank_and_crlf_lines_are_fine() {
        let mut gather = Gather::default();
        assert_eq!(gather.feed(""), None);
        assert_eq!(
            gather.feed(&format!("n1: {HEALTHY}\r\n")),
            Some("n1".into())
        );
        assert_eq!(gather.finish().exit_code, 0);
    }
}
