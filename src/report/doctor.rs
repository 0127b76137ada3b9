//! The doctor report: the checks' verdict on one snapshot, as `sigma doctor
//! --json` prints it and every front end shows it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::AnswerReport;
use crate::checks::{self, Finding, Severity};
use crate::probe::Snapshot;

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
