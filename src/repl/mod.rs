//! `sigma chat`: a conversation about the node, one line at a time.
//!
//! Each line is either a question for the [`Session`] or a slash command
//! (`/doctor`, `/snapshot`, `/run N`, `/explain N`, `/help`, `/quit`);
//! [`handle`] tells them apart. Two drivers feed it: the line editor on a
//! terminal ([`terminal`]) and [`run_plain`] for piped input, which is also
//! how the tests drive it. [`run`] picks one.
//!
//! # A question
//! The answer streams as it is generated, then the proposals are listed,
//! numbered, with the guard's tier (and rule, unless read-only); commands
//! run as the approval policy allows and their outputs go back for more
//! answers ([`crate::session`] owns that flow). `/run N` runs a proposal
//! later through the same policy; its output joins the history for the
//! next question.
//!
//! # What it does not own
//! The conversation itself ([`Session`]), the renderings
//! ([`crate::report`]), judging and running commands (the guard).

pub mod terminal;

use std::io::{self, BufRead, IsTerminal, Write};

use crate::audit::AuditLog;
use crate::checks::printable;
use crate::copilot::Assistant;
use crate::copilot::approval::TerminalPrompter;
use crate::guard;
use crate::report::{render, transcript};
use crate::session::{Node, Options, Session};

/// The prompt.
pub const PROMPT: &str = "sigma> ";

/// Text shown by `/help`.
pub const HELP: &str = "\
Ask a question about the node, or type a command:
  /doctor       check the node and list the findings
  /snapshot     show what the probe sees
  /run N        run proposal N (the --run policy decides who is asked)
  /explain N    explain proposal N argument by argument
  /help         show this help
  /quit         leave (Ctrl-D does the same; Ctrl-C clears the line)
";

/// Whether the conversation goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next line.
    Continue,
    /// The user left.
    Quit,
}

/// Runs the chat about `node` with `assistant` (`None`: questions say
/// `options.no_model`): the line editor when standard input and output are
/// terminals, plain lines otherwise. Commands are confirmed on the terminal
/// and recorded in the audit log.
pub fn run(
    node: &Node,
    assistant: Option<&mut dyn Assistant>,
    options: Options,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut audit = AuditLog::open();
    let mut prompter = TerminalPrompter::new();
    // A shorter borrow of the assistant, as long as the session's.
    let assistant = assistant.map(|a| a as &mut dyn Assistant);
    let mut session = Session::new(node, assistant, &mut prompter, &mut audit, options);
    if io::stdin().is_terminal() && io::stdout().is_terminal() {
        terminal::run(&mut session, out)
    } else {
        run_plain(&mut session, io::stdin().lock(), out)
    }
}

/// The one-line greeting: the node, the model and how to get help.
pub fn greeting(session: &Session<'_>) -> String {
    let options = session.options();
    let model = match session.model_name() {
        Some(name) => format!("model {name}"),
        None => options.no_model.clone(),
    };
    format!(
        "{}\n{model} · --run {} · /help for commands",
        render::node_line(session.snapshot()),
        options.run_mode
    )
}

/// Reads lines from `input` until end of input or `/quit`, echoing each
/// after the prompt so the transcript reads like a session.
pub fn run_plain(
    session: &mut Session<'_>,
    input: impl BufRead,
    out: &mut impl Write,
) -> io::Result<()> {
    for line in input.lines() {
        let line = line?;
        writeln!(out, "{PROMPT}{}", printable(&line))?;
        if handle(session, &line, out)? == Flow::Quit {
            break;
        }
    }
    out.flush()
}

/// Handles one line: a slash command or a question.
pub fn handle(session: &mut Session<'_>, line: &str, out: &mut impl Write) -> io::Result<Flow> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Flow::Continue);
    }
    let Some(command) = line.strip_prefix('/') else {
        session.ask(line, out)?;
        return out.flush().map(|()| Flow::Continue);
    };
    let mut words = command.split_whitespace();
    let name = words.next().unwrap_or_default();
    let arg = words.next();
    match name {
        "quit" | "exit" | "q" => return Ok(Flow::Quit),
        "help" | "h" | "?" => write!(out, "{HELP}")?,
        // Both probe again: what the assistant sees is what was shown.
        "doctor" => render::doctor(out, &session.reprobe())?,
        "snapshot" => render::snapshot(out, &session.reprobe().snapshot)?,
        "run" => {
            if let Some(i) = proposal_index(session, "run", arg, out)? {
                session.run(i, out)?;
            }
        }
        "explain" => {
            if let Some(i) = proposal_index(session, "explain", arg, out)? {
                let p = &session.proposals()[i];
                writeln!(out, "[{}] {}", i + 1, printable(&p.command))?;
                transcript::explanation(out, &guard::explain(&p.command))?;
            }
        }
        _ => writeln!(
            out,
            "unknown command /{}; type /help for the list",
            printable(name)
        )?,
    }
    out.flush().map(|()| Flow::Continue)
}

/// The 0-based index of proposal `arg` (1-based), or a one-line message
/// saying what is wrong.
fn proposal_index(
    session: &Session<'_>,
    command: &str,
    arg: Option<&str>,
    out: &mut impl Write,
) -> io::Result<Option<usize>> {
    let count = session.proposals().len();
    if count == 0 {
        writeln!(out, "no proposals yet: ask a question first")?;
        return Ok(None);
    }
    match arg.and_then(|a| a.parse::<usize>().ok()) {
        Some(n) if (1..=count).contains(&n) => Ok(Some(n - 1)),
        _ => {
            writeln!(out, "usage: /{command} N, with N from 1 to {count}")?;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests;
