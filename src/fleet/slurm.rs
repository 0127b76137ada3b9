//! Slurm: the health check drains its own node on a critical finding and
//! resumes only the drains it made.
//!
//! A drain Sigma sets has the reason `sigma: <id> gpu<N>`; an operator's
//! drain has any other reason and is never touched, neither resumed nor
//! re-labelled. The node's state comes from `sinfo`, changes go through
//! `scontrol update`, each under a time limit (Slurm kills a
//! `HealthCheckProgram` after 60 s).

use std::time::Duration;

use anyhow::Context;

use crate::checks::Severity;
use crate::probe::command;
use crate::report::verdict::Verdict;

/// Every drain reason Sigma sets starts with this.
pub const REASON_PREFIX: &str = "sigma:";

/// Limit on each `sinfo` / `scontrol` call.
const SLURM_TIMEOUT: Duration = Duration::from_secs(15);

/// The node as Slurm sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Slurm's state name (`idle`, `drained`, `draining`, `mixed`...).
    pub state: String,
    /// The drain or down reason, when there is one.
    pub reason: Option<String>,
}

impl NodeState {
    /// Whether the node is drained or draining.
    pub fn is_drained(&self) -> bool {
        self.state.contains("drain")
    }
}

/// What the health check does to its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Drain with this reason.
    Drain(String),
    /// Resume a drain Sigma made earlier (its reason).
    Resume(String),
    /// Nothing, and why.
    Leave(String),
}

/// Decides the action from the verdict and the node's state.
pub fn decide(verdict: &Verdict, node: &NodeState) -> Action {
    let ours = node
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with(REASON_PREFIX));
    match verdict.top(Severity::Critical) {
        Some(top) => {
            let reason = match top.gpu {
                Some(gpu) => format!("{REASON_PREFIX} {} gpu{gpu}", top.id),
                None => format!("{REASON_PREFIX} {}", top.id),
            };
            if !node.is_drained() {
                Action::Drain(reason)
            } else if ours {
                Action::Leave(format!(
                    "already drained by Sigma: {}",
                    node.reason.as_deref().unwrap_or("")
                ))
            } else {
                Action::Leave(format!(
                    "already drained by an operator ({}); left as it is",
                    node.reason.as_deref().unwrap_or("no reason")
                ))
            }
        }
        None if node.is_drained() && ours => {
            Action::Resume(node.reason.clone().unwrap_or_default())
        }
        None if node.is_drained() => Action::Leave(format!(
            "no critical finding, but the drain is an operator's ({}); left as it is",
            node.reason.as_deref().unwrap_or("no reason")
        )),
        None => Action::Leave("no critical finding; the node stays in service".into()),
    }
}

/// Reads the node's state with `sinfo -h -N -n NODE -o '%T|%E'`.
pub fn node_state(node: &str) -> anyhow::Result<NodeState> {
    let out = command::run(
        "sinfo",
        &["-h", "-N", "-n", node, "-o", "%T|%E"],
        SLURM_TIMEOUT,
    )
    .context("cannot read the node's state from sinfo; is slurmctld reachable?")?;
    let line = out
        .stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("Slurm does not know a node named {node}; pass --node NAME"))?;
    let (state, reason) = line.split_once('|').unwrap_or((line, ""));
    let reason = reason.trim();
    Ok(NodeState {
        state: state
            .trim()
            .trim_end_matches(['*', '~', '#', '!', '%', '$', '@', '^', '-'])
            .to_string(),
        reason: (!reason.is_empty() && reason != "none").then(|| reason.to_string()),
    })
}

/// The `scontrol` arguments that carry out `action` on `node` (none for
/// [`Action::Leave`]).
pub fn scontrol_args(node: &str, action: &Action) -> Option<Vec<String>> {
    let node = format!("NodeName={node}");
    match action {
        Action::Drain(reason) => Some(vec![
            "update".into(),
            node,
            "State=DRAIN".into(),
            format!("Reason={reason}"),
        ]),
        Action::Resume(_) => Some(vec!["update".into(), node, "State=RESUME".into()]),
        Action::Leave(_) => None,
    }
}

/// Runs `scontrol ARGS`.
pub fn scontrol(args: &[String]) -> anyhow::Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    command::run("scontrol", &args, SLURM_TIMEOUT)
        .with_context(|| format!("scontrol {} failed", args.join(" ")))?;
    Ok(())
}

/// The name Slurm gave this node, when Sigma runs under Slurm (srun, a
/// prolog, the health check): `SLURMD_NODENAME`.
pub fn slurm_node_name() -> Option<String> {
    std::env::var("SLURMD_NODENAME")
        .ok()
        .filter(|n| !n.is_empty())
}

/// The Slurm name of this node: [`slurm_node_name`], else the short host
/// name.
pub fn this_node() -> String {
    slurm_node_name().unwrap_or_else(|| {
        let host = sysinfo::System::host_name().unwrap_or_default();
        host.split('.').next().unwrap_or_default().to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(findings: &[(&str, Severity, Option<u32>)]) -> Verdict {
        crate::report::verdict::sample("n1", findings)
    }

    fn node(state: &str, reason: Option<&str>) -> NodeState {
        NodeState {
            state: state.into(),
            reason: reason.map(String::from),
        }
    }

    #[test]
    fn a_critical_finding_drains_with_its_id_and_gpu() {
        let v = verdict(&[
            ("persistence-off", Severity::Warning, None),
            ("xid-79", Severity::Critical, Some(3)),
        ]);
        let action = decide(&v, &node("idle", None));
        assert_eq!(action, Action::Drain("sigma: xid-79 gpu3".into()));
        assert_eq!(
            scontrol_args("gpu-017", &action).unwrap(),
            [
                "update",
                "NodeName=gpu-017",
                "State=DRAIN",
                "Reason=sigma: xid-79 gpu3"
            ]
        );
        let node_wide = verdict(&[("gpu-missing-from-nvml", Severity::Critical, None)]);
        assert_eq!(
            decide(&node_wide, &node("mixed", None)),
            Action::Drain("sigma: gpu-missing-from-nvml".into())
        );
    }

    #[test]
    fn only_sigmas_own_drains_are_resumed() {
        let healthy = verdict(&[("persistence-off", Severity::Warning, None)]);
        assert_eq!(
            decide(&healthy, &node("drained", Some("sigma: xid-79 gpu3"))),
            Action::Resume("sigma: xid-79 gpu3".into())
        );
        assert!(matches!(
            decide(&healthy, &node("drained", Some("bad DIMM, ticket 4411"))),
            Action::Leave(_)
        ));
        assert!(matches!(
            decide(&healthy, &node("idle", None)),
            Action::Leave(_)
        ));
        // A critical node an operator drained keeps the operator's reason.
        let critical = verdict(&[("xid-79", Severity::Critical, Some(1))]);
        let Action::Leave(why) = decide(&critical, &node("draining", Some("maintenance"))) else {
            panic!("an operator's drain is left alone");
        };
        assert!(why.contains("operator"), "{why}");
        assert_eq!(scontrol_args("n", &Action::Leave(why)), None);
    }
}
