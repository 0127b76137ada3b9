//! `sigma npd`: a node-problem-detector custom plugin.
//!
//! NPD's protocol: exit 0 when the condition is healthy, 1 when there is a
//! problem, anything else (2 here) when the plugin itself failed; the
//! standard output, trimmed and cut to `max_output_length` bytes (80 by
//! default), becomes the condition's message. So: one line, at most 80
//! bytes, naming the top finding.

use std::io::Write;

use crate::checks::Severity;
use crate::report::DoctorReport;
use crate::report::verdict::{Verdict, cut_bytes};
use crate::session::Node;

/// NPD's default `max_output_length`.
const NPD_LINE: usize = 80;

/// Exit code when Sigma itself failed (NPD reads it as "unknown").
const EXIT_PLUGIN_FAILED: i32 = 2;

/// Arguments of `sigma npd`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The least severity that is a problem for this condition.
    #[arg(long, value_enum, default_value_t = Floor::Critical)]
    pub severity: Floor,
}

/// `--severity` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Floor {
    /// Only critical findings (for a `GPUCritical` condition).
    Critical,
    /// Warnings and critical findings (for a `GPUDegraded` condition).
    Warning,
}

/// Runs `sigma npd`; never returns an error (a failure is exit 2 and one
/// line, as NPD expects).
pub fn run(sim: Option<&str>, args: &Args) -> anyhow::Result<i32> {
    let floor = match args.severity {
        Floor::Critical => Severity::Critical,
        Floor::Warning => Severity::Warning,
    };
    let (line, code) = match Node::open(sim) {
        Ok(node) => {
            let verdict = Verdict::of(&DoctorReport::new(node.snapshot()));
            match verdict.top(floor) {
                Some(top) => (top.headline(NPD_LINE), 1),
                None => (args.severity.healthy_line().to_string(), 0),
            }
        }
        Err(e) => (
            cut_bytes(&format!("sigma failed: {e:#}").replace('\n', " "), NPD_LINE),
            EXIT_PLUGIN_FAILED,
        ),
    };
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(code)
}

impl Floor {
    /// The message of a healthy condition.
    fn healthy_line(self) -> &'static str {
        match self {
            Floor::Critical => "no critical GPU finding",
            Floor::Warning => "no GPU warning or critical finding",
        }
    }
}
