//! `sigma ask`: one question, one answer with validated proposals.
//!
//! Human mode streams the answer and lists the proposals with their tiers
//! (the same view as `sigma chat`); `--json` prints one document for
//! scripts. By default nothing runs (`--run never`). The question goes
//! through [`crate::session::consult`], as `sigma doctor --explain`'s does.

use std::io;

use serde::Serialize;

use super::print_json;
use super::session_args::CopilotArgs;
use crate::checks::Finding;
use crate::report::AnswerReport;
use crate::session::{Consulted, EXIT_INTERRUPTED, Node, consult};

/// Arguments of `sigma ask`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The question about the node.
    #[arg(value_name = "QUESTION", required = true)]
    pub question: Vec<String>,

    /// Print one JSON document: answer, commands with verdicts, findings,
    /// model and timings.
    #[arg(long)]
    pub json: bool,

    /// The model and which of its proposals run.
    #[command(flatten)]
    pub copilot: CopilotArgs,
}

/// The document `sigma ask --json` prints.
#[derive(Debug, Serialize)]
struct AskReport<'a> {
    question: &'a str,
    #[serde(flatten)]
    reply: &'a AnswerReport,
    findings: &'a [Finding],
}

/// Runs `sigma ask`.
pub fn run(sim: Option<&str>, args: &Args) -> anyhow::Result<i32> {
    let question = args.question.join(" ");
    let node = Node::open(sim)?;
    let options = args.copilot.options();
    let consulted = if args.json {
        consult(&node, &question, &options, false, &mut io::sink())?
    } else {
        consult(&node, &question, &options, true, &mut anstream::stdout())?
    };
    let Consulted::Answered(reply, findings) = consulted else {
        return Ok(EXIT_INTERRUPTED);
    };
    if args.json {
        print_json(&AskReport {
            question: &question,
            reply: &reply,
            findings: &findings,
        })?;
    }
    Ok(0)
}
