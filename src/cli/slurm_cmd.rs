//! `sigma slurm`: Slurm's health check and prolog.
//!
//! - `health-check` is for `HealthCheckProgram` (root, every node, killed
//!   after 60 s): a critical finding drains this node with the reason
//!   `sigma: <id> gpu<N>`; a node without one is resumed only if Sigma
//!   drained it. An operator's drain is never touched.
//! - `prolog` exits 1 only on a critical finding, so Slurm requeues the job
//!   and drains the node; warnings never block a job.

use std::io::Write;

use crate::fleet::slurm::{self, Action};
use crate::report::DoctorReport;
use crate::report::verdict::Verdict;
use crate::session::Node;

/// `sigma slurm` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SlurmCommand {
    /// For HealthCheckProgram: drain this node on a critical finding,
    /// resume it when Sigma's own drain no longer holds.
    HealthCheck(HealthCheckArgs),
    /// For Prolog: exit 1 on a critical finding (Slurm requeues the job and
    /// drains the node), else 0.
    Prolog,
}

/// Arguments of `sigma slurm health-check`.
#[derive(Debug, clap::Args)]
pub struct HealthCheckArgs {
    /// Print what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The node's Slurm name (default: $SLURMD_NODENAME, else the short
    /// host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
}

/// Runs `sigma slurm ...`.
pub fn run(sim: Option<&str>, command: &SlurmCommand) -> anyhow::Result<i32> {
    let report = DoctorReport::new(Node::open(sim)?.snapshot());
    let verdict = Verdict::of(&report);
    match command {
        SlurmCommand::Prolog => {
            let Some(top) = verdict.top(crate::checks::Severity::Critical) else {
                return Ok(0);
            };
            // Slurm logs a prolog's standard error in slurmd's log.
            let _ = writeln!(std::io::stderr(), "sigma: {}", top.headline(200));
            Ok(1)
        }
        SlurmCommand::HealthCheck(args) => health_check(&verdict, args),
    }
}

/// Drains, resumes or leaves the node, and says which on one line.
fn health_check(verdict: &Verdict, args: &HealthCheckArgs) -> anyhow::Result<i32> {
    let node = args.node.clone().unwrap_or_else(slurm::this_node);
    let state = slurm::node_state(&node)?;
    let action = slurm::decide(verdict, &state);
    let mut out = std::io::stdout().lock();
    let prefix = if args.dry_run { "would run" } else { "ran" };
    match slurm::scontrol_args(&node, &action) {
        Some(scontrol) => {
            if !args.dry_run {
                slurm::scontrol(&scontrol)?;
            }
            let shown: Vec<String> = scontrol
                .iter()
                .map(|a| shell_words::quote(a).into_owned())
                .collect();
            let what = match &action {
                Action::Drain(_) => "drain",
                _ => "resume",
            };
            writeln!(
                out,
                "sigma: {what} {node}: {prefix} scontrol {}",
                shown.join(" ")
            )?;
        }
        None => {
            if let Action::Leave(why) = &action {
                writeln!(out, "sigma: {node}: {why}")?;
            }
        }
    }
    Ok(0)
}
