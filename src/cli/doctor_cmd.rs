//! `sigma doctor`: run the checks and report findings with an exit code.
//!
//! With `--explain` the model then explains the findings and proposes next
//! steps, exactly as `sigma ask` answers a question (same flags, same
//! approval policy, same JSON for the answer, in `explanation`). The exit
//! code still says what the checks found; Ctrl-C during the explanation
//! exits 130.

use std::io::Write;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ask_cmd::{self, AnswerReport, Consulted, CopilotArgs};
use super::{EXIT_USAGE, Node, print_json, render};
use crate::checks::{self, Finding, Severity};
use crate::probe::Snapshot;
use crate::repl::cancel::EXIT_INTERRUPTED;

/// Arguments of `sigma doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the report as JSON (schema: docs/doctor.schema.json).
    #[arg(long)]
    pub json: bool,

    /// Then ask the model to explain the findings and propose next steps
    /// (the flags below apply only with it).
    #[arg(long)]
    pub explain: bool,

    /// The model and which of its proposals run.
    #[command(flatten)]
    pub copilot: CopilotArgs,
}

/// What `--explain` asks the model.
const EXPLAIN_QUESTION: &str = "Explain the findings on this node: what each one means, \
how serious it is, and the next steps, with the commands to confirm or fix it.";

/// Exit code of a healthy node.
pub const EXIT_HEALTHY: i32 = 0;
/// Exit code when the worst finding is a warning.
pub const EXIT_WARNING: i32 = 3;
/// Exit code when a finding is critical.
pub const EXIT_CRITICAL: i32 = 4;

/// The JSON document `sigma doctor --json` prints.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DoctorReport {
    /// Version of this document's layout.
    pub schema_version: u32,
    /// `healthy`, `warning` or `critical`.
    pub status: Status,
    /// The process exit code: 0 healthy, 3 warnings, 4 critical.
    pub exit_code: i32,
    /// Number of findings per severity.
    pub summary: Summary,
    /// Findings, worst first.
    pub findings: Vec<Finding>,
    /// The snapshot the findings were computed from.
    pub snapshot: Snapshot,
    /// With `--explain`: the model's explanation of the findings and the
    /// commands it proposes (as `sigma ask --json` reports them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<AnswerReport>,
}

/// Overall state of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No warning or critical finding.
    Healthy,
    /// At least one warning, nothing critical.
    Warning,
    /// At least one critical finding.
    Critical,
}

/// Number of findings per severity.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Critical findings.
    pub critical: usize,
    /// Warnings.
    pub warning: usize,
    /// Informational findings.
    pub info: usize,
}

impl DoctorReport {
    /// Runs the checks over `snapshot` and builds the report.
    pub fn new(snapshot: Snapshot) -> DoctorReport {
        let findings = checks::run_all(&snapshot);
        let mut summary = Summary::default();
        for f in &findings {
            match f.severity {
                Severity::Critical => summary.critical += 1,
                Severity::Warning => summary.warning += 1,
                Severity::Info => summary.info += 1,
            }
        }
        let (status, exit_code) = if summary.critical > 0 {
            (Status::Critical, EXIT_CRITICAL)
        } else if summary.warning > 0 {
            (Status::Warning, EXIT_WARNING)
        } else {
            (Status::Healthy, EXIT_HEALTHY)
        };
        DoctorReport {
            schema_version: crate::probe::SCHEMA_VERSION,
            status,
            exit_code,
            summary,
            findings,
            snapshot,
            explanation: None,
        }
    }
}

/// Runs `sigma doctor`.
pub fn run(sim: Option<&str>, args: &Args) -> anyhow::Result<i32> {
    if !args.explain && !args.copilot.is_default() {
        let _ = writeln!(
            std::io::stderr(),
            "sigma: error: --run, --model, --rounds and --threads only apply with --explain; add --explain"
        );
        return Ok(EXIT_USAGE);
    }
    let node = Node::open(sim)?;
    let mut report = DoctorReport::new(node.snapshot());
    if args.json {
        if args.explain {
            let consulted = ask_cmd::consult(
                &node,
                EXPLAIN_QUESTION,
                &args.copilot,
                false,
                &mut std::io::sink(),
            )?;
            let Consulted::Answered(explanation, _) = consulted else {
                return Ok(EXIT_INTERRUPTED);
            };
            report.explanation = Some(explanation);
        }
        print_json(&report)?;
        return Ok(report.exit_code);
    }
    let mut out = anstream::stdout().lock();
    render::doctor(&mut out, &report)?;
    if args.explain {
        writeln!(out)?;
        let consulted = ask_cmd::consult(&node, EXPLAIN_QUESTION, &args.copilot, true, &mut out)?;
        if let Consulted::Interrupted = consulted {
            return Ok(EXIT_INTERRUPTED);
        }
    }
    Ok(report.exit_code)
}
