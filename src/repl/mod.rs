//! `sigma chat`: a conversation about the node, one question at a time.
//!
//! A [`Session`] takes lines, either questions for the [`Assistant`] or
//! slash commands (`/doctor`, `/snapshot`, `/run N`, `/explain N`,
//! `/help`, `/quit`), and writes plain text. Two drivers feed it: the line
//! editor on a terminal ([`terminal`]) and [`Session::run_plain`] for
//! piped input, which is also how the tests drive it.
//!
//! # A question
//! The answer streams as it is generated, then the proposals are listed,
//! numbered, with the guard's tier (and rule, unless read-only). Each
//! proposal then goes through the approval policy
//! ([`crate::copilot::approval`]); the outputs of the commands that ran go
//! back to the assistant for another answer, at most `rounds` answers per
//! question, the last one shown without running anything. `/run N` runs a
//! proposal later through the same policy; its output joins the history
//! for the next question.
//!
//! # What it does not own
//! Judging commands (the guard), running them (the guard's executor),
//! deciding who is asked (the approval policy), generating answers (the
//! engine behind [`Assistant`]). Every question, proposal, approval and
//! run is recorded in the audit log ([`crate::audit`]).

pub mod cancel;
pub mod terminal;
mod view;

use std::io::{self, BufRead, Write};

use crate::audit::{AuditLog, Record};
use crate::checks::{self, Finding, printable};
use crate::cli::{DoctorReport, Node, render};
use crate::copilot::approval::{Prompter, RunMode, approve};
use crate::copilot::{Assistant, Event, NodeContext, Proposal, Reply, Turn};
use crate::guard::{self, Limits};
use crate::probe::{Snapshot, Source};

pub use cancel::Cancel;

/// The prompt.
pub const PROMPT: &str = "sigma> ";

/// Most characters of one command's output fed back to the assistant
/// (the tail is kept): a small model's context is short.
pub const FEEDBACK_CHARS: usize = 4000;

/// How a chat behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Which proposals run, and who is asked.
    pub run_mode: RunMode,
    /// Most answers per question (at least 1).
    pub rounds: usize,
    /// Limits on each command run.
    pub limits: Limits,
    /// Why there is no assistant, shown for questions when there is none.
    pub no_model: String,
    /// Ctrl-C during generation.
    pub cancel: Cancel,
}

/// Whether the conversation goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next line.
    Continue,
    /// The user left.
    Quit,
}

/// A chat about one node.
pub struct Session<'a> {
    /// The node asked about and run on.
    node: &'a Node,
    /// Its latest snapshot and findings (refreshed by `/doctor`, `/snapshot`).
    snapshot: Snapshot,
    /// The checks' findings over `snapshot`.
    findings: Vec<Finding>,
    /// The assistant; `None` when no model is available.
    assistant: Option<&'a mut dyn Assistant>,
    /// Asks the user to confirm commands.
    prompter: &'a mut dyn Prompter,
    /// Where everything is recorded.
    audit: &'a mut AuditLog,
    /// Settings.
    options: Options,
    /// The conversation so far, fed back with each question.
    history: Vec<Turn>,
    /// The last answer's proposals, numbered from 1 on screen.
    proposals: Vec<Proposal>,
    /// The latest question's last reply (for `sigma ask --json`).
    last_reply: Option<Reply>,
    /// Commands run for the latest question, in order.
    runs: Vec<RunRecord>,
}

/// A command run on the user's behalf and what it gave.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    /// The command line.
    pub command: String,
    /// Exit code; `None` when it could not run.
    pub exit_code: Option<i32>,
    /// Output (stdout then stderr), tail kept, or why it could not run.
    pub output: String,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
}

impl<'a> Session<'a> {
    /// Starts a chat about `node`, recording the session start.
    pub fn new(
        node: &'a Node,
        assistant: Option<&'a mut dyn Assistant>,
        prompter: &'a mut dyn Prompter,
        audit: &'a mut AuditLog,
        options: Options,
    ) -> Session<'a> {
        let snapshot = node.snapshot();
        let findings = checks::run_all(&snapshot);
        let node_label = match &snapshot.source {
            Source::Simulated { name } => format!("simulated: {name}"),
            _ => "live".to_string(),
        };
        let model = assistant.as_ref().map(|a| a.model_name().to_string());
        audit.record(Record::session(
            "chat",
            &node_label,
            options.run_mode,
            model.as_deref(),
        ));
        Session {
            node,
            snapshot,
            findings,
            assistant,
            prompter,
            audit,
            options,
            history: Vec::new(),
            proposals: Vec::new(),
            last_reply: None,
            runs: Vec::new(),
        }
    }

    /// The one-line greeting: the node, the model and how to get help.
    pub fn greeting(&self) -> String {
        let model = match &self.assistant {
            Some(a) => format!("model {}", a.model_name()),
            None => self.options.no_model.clone(),
        };
        format!(
            "{}\n{model} · --run {} · /help for commands",
            render::node_line(&self.snapshot),
            self.options.run_mode
        )
    }

    /// Reads lines from `input` until end of input or `/quit`, echoing
    /// each after the prompt so the transcript reads like a session.
    pub fn run_plain(&mut self, input: impl BufRead, out: &mut impl Write) -> io::Result<()> {
        for line in input.lines() {
            let line = line?;
            writeln!(out, "{PROMPT}{}", printable(&line))?;
            if self.handle(&line, out)? == Flow::Quit {
                break;
            }
        }
        out.flush()
    }

    /// Handles one line: a slash command or a question.
    pub fn handle(&mut self, line: &str, out: &mut impl Write) -> io::Result<Flow> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(Flow::Continue);
        }
        let Some(command) = line.strip_prefix('/') else {
            self.question(line, out)?;
            return out.flush().map(|()| Flow::Continue);
        };
        let mut words = command.split_whitespace();
        let name = words.next().unwrap_or_default();
        let arg = words.next();
        match name {
            "quit" | "exit" | "q" => return Ok(Flow::Quit),
            "help" | "h" | "?" => write!(out, "{}", view::HELP)?,
            "doctor" => self.doctor(out)?,
            "snapshot" => self.show_snapshot(out)?,
            "run" => {
                if let Some(i) = self.proposal_index("run", arg, out)? {
                    self.run(i, out)?;
                }
            }
            "explain" => {
                if let Some(i) = self.proposal_index("explain", arg, out)? {
                    let p = &self.proposals[i];
                    writeln!(out, "[{}] {}", i + 1, printable(&p.command))?;
                    view::explanation(out, &guard::explain(&p.command))?;
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

    /// `/doctor`: probes again and lists the findings.
    fn doctor(&mut self, out: &mut impl Write) -> io::Result<()> {
        let report = DoctorReport::new(self.node.snapshot());
        render::doctor(out, &report)?;
        self.snapshot = report.snapshot;
        self.findings = report.findings;
        Ok(())
    }

    /// `/snapshot`: probes again and shows what the probe sees.
    fn show_snapshot(&mut self, out: &mut impl Write) -> io::Result<()> {
        self.snapshot = self.node.snapshot();
        self.findings = checks::run_all(&self.snapshot);
        render::snapshot(out, &self.snapshot)
    }

    /// The 0-based index of proposal `arg` (1-based), or a one-line
    /// message saying what is wrong.
    fn proposal_index(
        &self,
        command: &str,
        arg: Option<&str>,
        out: &mut impl Write,
    ) -> io::Result<Option<usize>> {
        let count = self.proposals.len();
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

    /// Asks the assistant, for up to `rounds` answers.
    pub fn ask(&mut self, text: &str, out: &mut impl Write) -> io::Result<()> {
        self.question(text, out)
    }

    /// The latest question's last reply and the commands run for it.
    pub fn outcome(&self) -> (Option<&Reply>, &[RunRecord]) {
        (self.last_reply.as_ref(), &self.runs)
    }

    /// The node's findings as the assistant saw them.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    fn question(&mut self, text: &str, out: &mut impl Write) -> io::Result<()> {
        self.last_reply = None;
        self.runs.clear();
        self.audit.record(Record::Question {
            text: text.to_string(),
        });
        if self.assistant.is_none() {
            return writeln!(out, "sigma: {}", self.options.no_model);
        }
        let rounds = self.options.rounds.max(1);
        let mut prompt = text.to_string();
        for round in 1..=rounds {
            let Some(reply) = self.generate(&prompt, out)? else {
                return Ok(());
            };
            self.history.push(Turn::User(prompt));
            self.history.push(Turn::Assistant(reply.answer.clone()));
            self.set_proposals(reply.proposals.clone(), out)?;
            self.last_reply = Some(reply);
            if round == rounds || self.options.run_mode == RunMode::Never {
                break;
            }
            let mut ran = 0;
            for i in 0..self.proposals.len() {
                if self.options.cancel.is_cancelled() {
                    break;
                }
                ran += usize::from(self.run(i, out)?);
            }
            if ran == 0 {
                break;
            }
            prompt = follow_up(text);
        }
        Ok(())
    }

    /// One answer, streamed to `out`. `None` (after saying why) when the
    /// assistant failed or the user cancelled.
    fn generate(&mut self, prompt: &str, out: &mut impl Write) -> io::Result<Option<Reply>> {
        let Some(assistant) = self.assistant.as_deref_mut() else {
            return Ok(None);
        };
        let node = NodeContext {
            snapshot: &self.snapshot,
            findings: &self.findings,
        };
        let cancel = &self.options.cancel;
        let busy = cancel.busy();
        let mut stream = Stream::new(out);
        let result = assistant.ask(node, &self.history, prompt, &mut |event| {
            if let Event::AnswerText(text) = event {
                stream.write(text);
            }
        });
        drop(busy);
        let streamed = stream.finish()?;
        let reply = match result {
            Ok(reply) => reply,
            Err(e) if cancel.is_cancelled() => {
                writeln!(out, "(cancelled: {e:#})")?;
                return Ok(None);
            }
            Err(e) => {
                writeln!(out, "sigma: error: {e:#}")?;
                return Ok(None);
            }
        };
        if !streamed {
            let answer = printable(&reply.answer);
            write!(out, "{answer}")?;
            if !answer.ends_with('\n') {
                writeln!(out)?;
            }
        }
        self.audit.record(Record::Answer {
            model: reply.model.clone(),
            chars: reply.answer.chars().count(),
            total_ms: reply.timings.total_ms,
        });
        if cancel.is_cancelled() {
            writeln!(out, "(cancelled)")?;
            return Ok(None);
        }
        Ok(Some(reply))
    }

    /// Shows and records the new proposals; they replace the old ones.
    fn set_proposals(&mut self, proposals: Vec<Proposal>, out: &mut impl Write) -> io::Result<()> {
        for (i, p) in proposals.iter().enumerate() {
            self.audit.record(Record::Proposal {
                n: i + 1,
                command: p.command.clone(),
                purpose: p.purpose.clone(),
                tier: p.verdict.tier,
                rule: p.verdict.rule.clone(),
            });
        }
        self.proposals = proposals;
        view::proposals(out, &self.proposals)
    }

    /// Runs proposal `i` if the policy (and the user) approve; its output
    /// joins the history. Returns whether it ran.
    fn run(&mut self, i: usize, out: &mut impl Write) -> io::Result<bool> {
        let n = i + 1;
        let verdict = &self.proposals[i].verdict;
        let approval = approve(self.options.run_mode, verdict, &mut *self.prompter);
        self.audit.record(Record::Approval {
            command: verdict.command.clone(),
            approved: approval.approved,
            by: approval.by,
            reason: approval.reason.clone(),
        });
        if !approval.approved {
            writeln!(out, "[{n}] not run: {}", printable(&approval.reason))?;
            return Ok(false);
        }
        writeln!(out, "[{n}] $ {}", printable(&verdict.command))?;
        out.flush()?;
        match guard::execute(verdict, self.node.target(), &self.options.limits) {
            Ok(run) => {
                view::execution(out, n, &run)?;
                self.audit.record(Record::Execution {
                    command: verdict.command.clone(),
                    exit_code: Some(run.exit.code()),
                    duration_ms: u64::try_from(run.duration.as_millis()).unwrap_or(u64::MAX),
                    output_bytes: run.stdout.text.len() + run.stderr.text.len(),
                    dropped_bytes: run.stdout.dropped_bytes + run.stderr.dropped_bytes,
                    error: None,
                });
                let output = format!("{}{}", run.stdout.text, run.stderr.text);
                self.runs.push(RunRecord {
                    command: verdict.command.clone(),
                    exit_code: Some(run.exit.code()),
                    output: tail_chars(&output, FEEDBACK_CHARS).to_string(),
                    duration_ms: u64::try_from(run.duration.as_millis()).unwrap_or(u64::MAX),
                });
                self.history.push(Turn::CommandOutput {
                    command: verdict.command.clone(),
                    exit_code: Some(run.exit.code()),
                    output: tail_chars(&output, FEEDBACK_CHARS).to_string(),
                });
                Ok(true)
            }
            Err(e) => {
                writeln!(out, "[{n}] could not run: {}", printable(&e.to_string()))?;
                self.runs.push(RunRecord {
                    command: verdict.command.clone(),
                    exit_code: None,
                    output: e.to_string(),
                    duration_ms: 0,
                });
                self.audit.record(Record::Execution {
                    command: verdict.command.clone(),
                    exit_code: None,
                    duration_ms: 0,
                    output_bytes: 0,
                    dropped_bytes: 0,
                    error: Some(e.to_string()),
                });
                Ok(false)
            }
        }
    }
}

/// The question for a round after commands ran: their outputs are the
/// history's last turns. The TUI asks the same.
pub fn follow_up(question: &str) -> String {
    format!(
        "The commands ran; their outputs are above. Using them, answer the question: {question}"
    )
}

/// The last `max` characters of `text`.
pub fn tail_chars(text: &str, max: usize) -> &str {
    let count = text.chars().count();
    match text.char_indices().nth(count.saturating_sub(max)) {
        Some((at, _)) if count > max => &text[at..],
        _ => text,
    }
}

/// Streamed answer text on its way to the output: made printable, flushed
/// piece by piece, the first write error kept for later.
struct Stream<'w, W: Write> {
    out: &'w mut W,
    error: Option<io::Error>,
    wrote: bool,
    at_line_start: bool,
}

impl<'w, W: Write> Stream<'w, W> {
    fn new(out: &'w mut W) -> Self {
        Stream {
            out,
            error: None,
            wrote: false,
            at_line_start: true,
        }
    }

    fn write(&mut self, text: &str) {
        if self.error.is_some() || text.is_empty() {
            return;
        }
        let result = write!(self.out, "{}", printable(text)).and_then(|()| self.out.flush());
        match result {
            Ok(()) => {
                self.wrote = true;
                self.at_line_start = text.ends_with('\n');
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Ends the answer on a line of its own; whether anything streamed.
    fn finish(self) -> io::Result<bool> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.wrote && !self.at_line_start {
            writeln!(self.out)?;
        }
        Ok(self.wrote)
    }
}

#[cfg(test)]
mod tests;
