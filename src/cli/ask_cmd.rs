//! `sigma ask`: one question, one answer with validated proposals.
//!
//! Human mode streams the answer and lists the proposals with their tiers
//! (the same view as `sigma chat`); `--json` prints one document for
//! scripts. By default nothing runs (`--run never`).
//!
//! [`consult`] is the one way a one-shot command asks the copilot: `sigma
//! doctor --explain` uses it too, with the same flags ([`CopilotArgs`])
//! and the same JSON ([`AnswerReport`]).

use std::io::{self, Write};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::session_args::DeviceArgs;
use super::{Node, print_json};
use crate::audit::AuditLog;
use crate::checks::Finding;
use crate::copilot::approval::{RunMode, TerminalPrompter};
use crate::copilot::local::{LocalAssistant, LocalOptions};
use crate::copilot::{Assistant, Timings};
use crate::engine::device::DeviceChoice;
use crate::guard::{Limits, Tier};
use crate::repl::cancel::EXIT_INTERRUPTED;
use crate::repl::{Cancel, Options, RunRecord, Session};

/// Answers per question unless `--rounds` says otherwise.
const DEFAULT_ROUNDS: u8 = 3;

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

/// How the copilot is asked: the model, and which proposed commands run.
#[derive(Debug, clap::Args)]
pub struct CopilotArgs {
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
    #[arg(long, value_name = "N", default_value_t = DEFAULT_ROUNDS,
          value_parser = clap::value_parser!(u8).range(1..=10))]
    pub rounds: u8,

    /// CPU threads for the model.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub device: DeviceArgs,
}

impl CopilotArgs {
    /// Whether every flag has its default value (none was given, or only
    /// with its default).
    pub fn is_default(&self) -> bool {
        self.run == RunMode::Never
            && self.model.is_none()
            && self.rounds == DEFAULT_ROUNDS
            && self.threads.is_none()
            && self.device.choice() == DeviceChoice::default()
    }
}

/// The copilot's last answer to one question and its commands, as the
/// `--json` outputs show it.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerReport {
    /// The prose answer.
    pub answer: String,
    /// The proposed commands, in the model's order.
    pub commands: Vec<CommandReport>,
    /// The model that answered.
    pub model: String,
    /// Where the time went.
    pub timings: Timings,
}

/// One proposed command with the guard's verdict and, if it ran, its result.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandReport {
    /// The command line as the model wrote it.
    pub command: String,
    /// What it is for, in the model's words.
    pub purpose: String,
    /// The guard's risk tier.
    pub tier: Tier,
    /// The rule that decided the tier.
    pub rule: String,
    /// Whether it ran to an exit code.
    pub executed: bool,
    /// Its exit code, when it ran.
    pub exit_code: Option<i32>,
    /// Its output (stdout then stderr, tail kept), or why it could not run.
    pub output: Option<String>,
}

/// The document `sigma ask --json` prints.
#[derive(Debug, Serialize)]
struct AskReport<'a> {
    question: &'a str,
    #[serde(flatten)]
    reply: &'a AnswerReport,
    findings: &'a [Finding],
}

/// What [`consult`] gives back.
pub enum Consulted {
    /// The answer, and the findings the model was shown.
    Answered(AnswerReport, Vec<Finding>),
    /// Ctrl-C stopped the answer.
    Interrupted,
}

/// Runs `sigma ask`.
pub fn run(sim: Option<&str>, args: &Args) -> anyhow::Result<i32> {
    let question = args.question.join(" ");
    let node = Node::open(sim)?;
    let consulted = if args.json {
        consult(&node, &question, &args.copilot, false, &mut io::sink())?
    } else {
        consult(
            &node,
            &question,
            &args.copilot,
            true,
            &mut anstream::stdout(),
        )?
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

/// Asks the local model `question` about `node` as `copilot` says: the
/// answer streams to `out` with the proposals, their approvals and runs
/// (the `sigma chat` view; pass a sink for JSON), and comes back with each
/// command's verdict and result. Ctrl-C stops it. With `progress`, model
/// downloads show a progress bar on stderr.
pub fn consult(
    node: &Node,
    question: &str,
    copilot: &CopilotArgs,
    progress: bool,
    out: &mut impl Write,
) -> anyhow::Result<Consulted> {
    let cancel = Cancel::new();
    cancel.on_interrupt()?;
    let mut opts = LocalOptions {
        model: copilot.model.clone(),
        progress,
        cancel: cancel.flag(),
        device: copilot.device.choice(),
        ..LocalOptions::default()
    };
    if let Some(t) = copilot.threads {
        opts.threads = t.max(1);
    }
    let mut assistant = LocalAssistant::load(&opts)?;
    let options = Options {
        run_mode: copilot.run,
        rounds: copilot.rounds.into(),
        limits: Limits::default(),
        no_model: String::new(),
        cancel: cancel.clone(),
    };
    let mut audit = AuditLog::open();
    let mut prompter = TerminalPrompter::new();
    let mut session = Session::new(
        node,
        Some(&mut assistant as &mut dyn Assistant),
        &mut prompter,
        &mut audit,
        options,
    );
    session.ask(question, out)?;
    if cancel.is_cancelled() {
        return Ok(Consulted::Interrupted);
    }
    let (reply, runs) = session.outcome();
    let Some(reply) = reply else {
        anyhow::bail!("the model gave no answer");
    };
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
    let report = AnswerReport {
        answer: reply.answer.clone(),
        commands,
        model: reply.model.clone(),
        timings: reply.timings.clone(),
    };
    Ok(Consulted::Answered(report, session.findings().to_vec()))
}
