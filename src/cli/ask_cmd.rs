//! `sigma ask`: one question, one answer with validated proposals.
//!
//! Human mode streams the answer and lists the proposals with their tiers
//! (the same view as `sigma chat`); `--json` prints one document for
//! scripts. By default nothing runs (`--run never`).

use std::io;

use serde::Serialize;

use super::{Node, print_json};
use crate::audit::AuditLog;
use crate::checks::Finding;
use crate::copilot::approval::{RunMode, TerminalPrompter};
use crate::copilot::local::{LocalAssistant, LocalOptions};
use crate::copilot::{Assistant, Timings};
use crate::guard::{Limits, Tier};
use crate::repl::{Cancel, Options, RunRecord, Session};

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

    /// Which proposed commands run: never (propose only), safe (read-only
    /// ones without asking), confirm (ask for each on the terminal).
    #[arg(long = "run", value_enum, value_name = "MODE", default_value_t = RunMode::Never)]
    pub run: RunMode,

    /// The model that answers (a name from `sigma model list` or a .gguf
    /// file); the default model, pulled on first use, when absent.
    #[arg(long, value_name = "NAME|PATH")]
    pub model: Option<String>,

    /// Most answers: after commands run, their output goes back to the model
    /// (1 to 10).
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u8).range(1..=10))]
    pub rounds: u8,

    /// CPU threads for the model.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// The document `sigma ask --json` prints.
#[derive(Debug, Serialize)]
struct AskReport<'a> {
    question: String,
    answer: &'a str,
    commands: Vec<CommandReport>,
    findings: &'a [Finding],
    model: &'a str,
    timings: &'a Timings,
}

/// One proposed command with the guard's verdict and, if it ran, its result.
#[derive(Debug, Serialize)]
struct CommandReport {
    command: String,
    purpose: String,
    tier: Tier,
    rule: String,
    executed: bool,
    exit_code: Option<i32>,
    output: Option<String>,
}

/// Runs `sigma ask`.
pub fn run(sim: Option<&str>, args: &Args) -> anyhow::Result<i32> {
    let question = args.question.join(" ");
    let node = Node::open(sim)?;
    let cancel = Cancel::new();
    cancel.on_interrupt()?;
    let mut opts = LocalOptions {
        model: args.model.clone(),
        progress: !args.json,
        cancel: cancel.flag(),
        ..LocalOptions::default()
    };
    if let Some(t) = args.threads {
        opts.threads = t.max(1);
    }
    let mut assistant = LocalAssistant::load(&opts)?;
    let options = Options {
        run_mode: args.run,
        rounds: args.rounds.into(),
        limits: Limits::default(),
        no_model: String::new(),
        cancel: cancel.clone(),
    };
    let mut audit = AuditLog::open();
    let mut prompter = TerminalPrompter::new();
    let mut session = Session::new(
        &node,
        Some(&mut assistant as &mut dyn Assistant),
        &mut prompter,
        &mut audit,
        options,
    );
    if args.json {
        session.ask(&question, &mut io::sink())?;
    } else {
        session.ask(&question, &mut anstream::stdout())?;
    }
    if cancel.is_cancelled() {
        return Ok(130);
    }
    let (reply, runs) = session.outcome();
    let Some(reply) = reply else {
        anyhow::bail!("the model gave no answer");
    };
    if args.json {
        let commands = reply
            .proposals
            .iter()
            .map(|p| {
                let ran: Option<&RunRecord> =
                    runs.iter().rev().find(|r| r.command == p.verdict.command);
                CommandReport {
                    command: p.command.clone(),
                    purpose: p.purpose.clone(),
                    tier: p.verdict.tier,
                    rule: p.verdict.rule.clone(),
                    executed: ran.is_some_and(|r| r.exit_code.is_some()),
                    exit_code: ran.and_then(|r| r.exit_code),
                    output: ran.map(|r| r.output.clone()),
                }
            })
            .collect();
        print_json(&AskReport {
            question,
            answer: &reply.answer,
            commands,
            findings: session.findings(),
            model: &reply.model,
            timings: &reply.timings,
        })?;
    }
    Ok(0)
}
