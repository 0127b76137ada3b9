//! `sigma doctor`: run the checks and report findings with an exit code.
//!
//! With `--explain` the model then explains the findings and proposes next
//! steps, exactly as `sigma ask` answers a question (same flags, same
//! approval policy, same JSON for the answer, in `explanation`). The exit
//! code still says what the checks found; Ctrl-C during the explanation
//! exits 130.

use std::io::Write;

use super::session_args::CopilotArgs;
use super::{EXIT_USAGE, print_json};
use crate::report::{DoctorReport, render};
use crate::session::{Consulted, EXIT_INTERRUPTED, Node, consult};

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
            let consulted = consult(
                &node,
                EXPLAIN_QUESTION,
                &args.copilot.options(),
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
        let consulted = consult(
            &node,
            EXPLAIN_QUESTION,
            &args.copilot.options(),
            true,
            &mut out,
        )?;
        if let Consulted::Interrupted = consulted {
            return Ok(EXIT_INTERRUPTED);
        }
    }
    Ok(report.exit_code)
}
