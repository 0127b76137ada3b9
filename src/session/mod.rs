//! Consulting the copilot about one node: the flow every front end shares.
//!
//! `sigma ask`, `sigma doctor --explain`, `sigma chat` and the TUI all ask
//! the same way: the question goes to the [`Assistant`] with the node's
//! snapshot, findings and the conversation so far; the reply's proposals go
//! through the approval policy ([`crate::copilot::approval`]); the outputs of
//! the commands that ran go back to the assistant for another answer
//! ([`follow_up`], at most `rounds` answers per question, each output cut to
//! its last [`FEEDBACK_CHARS`] characters by [`command_turn`]). Every
//! question, proposal, approval and run is recorded in the audit log
//! ([`crate::audit`]).
//!
//! | item | owns |
//! |---|---|
//! | [`Node`] | the node looked at: this machine, or a simulated one |
//! | [`Session`] | a conversation about it, written as plain text (`ask`, `doctor --explain`, `chat`) |
//! | [`consult`] | one question asked once, as the one-shot commands do |
//! | [`Cancel`] | Ctrl-C during a generation |
//!
//! The TUI answers on a worker thread and draws its own screen, so it uses
//! the pieces ([`Node`], [`follow_up`], [`command_turn`]) rather than
//! [`Session`].
//!
//! # What it must not touch
//! Judging commands (the guard), running them (the guard's executor),
//! deciding who is asked (the approval policy), generating answers (the
//! engine behind [`Assistant`]), and any front end: it never imports
//! `cli`, `repl` or `tui`. Its text goes to the `Write` it is given, through
//! [`crate::report`]'s renderings.

pub mod cancel;
mod consult;
mod node;

use std::io::{self, Write};

use crate::audit::{AuditLog, Record};
use crate::checks::{self, Finding, printable};
use crate::copilot::approval::{Prompter, RunMode, approve};
use crate::copilot::{Assistant, Event, NodeContext, Proposal, Reply, Turn};
use crate::guard::{self, Exit, Limits};
use crate::probe::Snapshot;
use crate::probe::interpret::{self, Ended, Fact};
use crate::report::{DoctorReport, RunRecord, transcript};

pub use cancel::{Cancel, EXIT_INTERRUPTED};
pub use consult::{ConsultOptions, Consulted, consult};
pub use node::Node;

/// Most characters of one command's output fed back to the assistant
/// (the tail is kept): a small model's context is short.
pub const FEEDBACK_CHARS: usize = 4000;

/// Most facts shown after a command ran (`[1] read: ...`).
const READ_FACTS: usize = 6;

/// How a session behaves.
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

/// A conversation about one node.
pub struct Session<'a> {
    /// The node asked about and run on.
    node: &'a Node,
    /// Its latest probe (refreshed by [`Session::reprobe`]).
    probed: Snapshot,
    /// What the commands run since then showed.
    facts: Vec<Fact>,
    /// `probed` with `facts` applied: what the assistant sees.
    snapshot: Snapshot,
    /// The checks' findings over `snapshot` and `facts`.
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

impl<'a> Session<'a> {
    /// Starts a conversation about `node`, recording the session start.
    pub fn new(
        node: &'a Node,
        assistant: Option<&'a mut dyn Assistant>,
        prompter: &'a mut dyn Prompter,
        audit: &'a mut AuditLog,
        options: Options,
    ) -> Session<'a> {
        let probed = node.snapshot();
        let findings = checks::run_all(&probed);
        let model = assistant.as_ref().map(|a| a.model_name().to_string());
        audit.record(Record::session(
            "chat",
            &node.label(),
            options.run_mode,
            model.as_deref(),
        ));
        Session {
            node,
            snapshot: probed.clone(),
            probed,
            facts: Vec::new(),
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

    /// The node's latest snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The node's findings as the assistant saw them.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// What the commands run since the last probe showed.
    pub fn facts(&self) -> &[Fact] {
        &self.facts
    }

    /// The assistant's model, when there is one.
    pub fn model_name(&self) -> Option<&str> {
        self.assistant.as_deref().map(|a| a.model_name())
    }

    /// The settings.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The last answer's proposals.
    pub fn proposals(&self) -> &[Proposal] {
        &self.proposals
    }

    /// The latest question's last reply and the commands run for it.
    pub fn outcome(&self) -> (Option<&Reply>, &[RunRecord]) {
        (self.last_reply.as_ref(), &self.runs)
    }

    /// Probes the node again; the new snapshot and findings are what the
    /// assistant sees from now on. Returns the doctor's report over them.
    pub fn reprobe(&mut self) -> DoctorReport {
        let report = DoctorReport::new(self.node.snapshot());
        self.probed = report.snapshot.clone();
        self.facts.clear();
        self.snapshot = report.snapshot.clone();
        self.findings = report.findings.clone();
        report
    }

    /// Asks the assistant `text`, for up to `rounds` answers: each answer
    /// streams to `out`, then its proposals; those the policy approves run,
    /// and their outputs go back for the next answer.
    pub fn ask(&mut self, text: &str, out: &mut impl Write) -> io::Result<()> {
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
            // Commands run before the next answer: this one only plans.
            let plans = round < rounds && self.options.run_mode != RunMode::Never;
            let Some(reply) = self.generate(&prompt, plans, out)? else {
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
            if self.options.cancel.is_cancelled() {
                writeln!(out, "(cancelled)")?;
                return Ok(());
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
    fn generate(
        &mut self,
        prompt: &str,
        plans: bool,
        out: &mut impl Write,
    ) -> io::Result<Option<Reply>> {
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
        let mut on_event = |event: Event<'_>| {
            if let Event::AnswerText(text) = event {
                stream.write(text);
            }
        };
        let result = if plans {
            assistant.plan(node, &self.history, prompt, &mut on_event)
        } else {
            assistant.ask(node, &self.history, prompt, &mut on_event)
        };
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
        transcript::proposals(out, &self.proposals)
    }

    /// Runs proposal `i` (0-based) if the policy (and the user) approve;
    /// its output joins the history. Returns whether it ran.
    ///
    /// # Panics
    /// When `i` is not the index of a proposal of the last answer.
    pub fn run(&mut self, i: usize, out: &mut impl Write) -> io::Result<bool> {
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
        // Ctrl-C while it runs stops the command (and all it started), not
        // Sigma; the rest of the question's runs are skipped.
        let cancel = self.options.cancel.clone();
        let busy = cancel.busy();
        let executed = guard::execute_interruptible(
            verdict,
            self.node.target(),
            &self.options.limits,
            &cancel.flag(),
        );
        drop(busy);
        match executed {
            Ok(run) => {
                transcript::execution(out, n, &run)?;
                self.audit.record(Record::Execution {
                    command: verdict.command.clone(),
                    exit_code: Some(run.exit.code()),
                    duration_ms: u64::try_from(run.duration.as_millis()).unwrap_or(u64::MAX),
                    output_bytes: run.stdout.text.len() + run.stderr.text.len(),
                    dropped_bytes: run.stdout.dropped_bytes + run.stderr.dropped_bytes,
                    error: None,
                    programs: run
                        .programs
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect(),
                });
                let output = format!("{}{}", run.stdout.text, run.stderr.text);
                self.runs.push(RunRecord {
                    command: verdict.command.clone(),
                    exit_code: Some(run.exit.code()),
                    output: tail_chars(&output, FEEDBACK_CHARS).to_string(),
                    duration_ms: u64::try_from(run.duration.as_millis()).unwrap_or(u64::MAX),
                });
                let turn = command_turn(
                    &verdict.command,
                    Some(ended(run.exit)),
                    &output,
                    &self.snapshot,
                );
                if let Turn::CommandOutput { reading, .. } = &turn {
                    // The output is shown above: what was read from it, when anything was.
                    if !reading.facts.is_empty() {
                        writeln!(
                            out,
                            "[{n}] read: {}",
                            printable(&reading.summary(READ_FACTS))
                        )?;
                    }
                    self.facts.extend(reading.facts.iter().cloned());
                    (self.snapshot, self.findings) = observed(&self.probed, &self.facts);
                }
                self.history.push(turn);
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
                    programs: Vec::new(),
                });
                Ok(false)
            }
        }
    }
}

/// The question for a round after commands ran: the question itself. What
/// the commands showed is in the history's last turns, and an assistant
/// that sees them there answers from them ([`crate::copilot::diagnose::observations`]).
pub fn follow_up(question: &str) -> String {
    question.to_string()
}

/// What a command that ran gave, as the assistant is shown it: the facts
/// read from its whole output on the node `snapshot` describes, and the
/// output's last [`FEEDBACK_CHARS`] characters. `ended` is `None` when the
/// command could not run (`output` then says why).
pub fn command_turn(
    command: &str,
    ended: Option<Ended>,
    output: &str,
    snapshot: &Snapshot,
) -> Turn {
    let reading = match ended {
        Some(ended) => {
            let pipeline = guard::check(command).pipeline;
            interpret::read(&pipeline, output, ended, snapshot)
        }
        None => interpret::Reading {
            note: Some(format!("it could not run: {output}")),
            ..interpret::Reading::default()
        },
    };
    Turn::CommandOutput {
        command: command.to_string(),
        exit_code: match ended {
            Some(Ended::Exited(code)) => Some(code),
            _ => None,
        },
        output: tail_chars(output, FEEDBACK_CHARS).to_string(),
        reading,
    }
}

/// How a command ended, as reading its output needs to know.
pub fn ended(exit: Exit) -> Ended {
    match exit {
        Exit::Code(code) => Ended::Exited(code),
        Exit::Signal(_) => Ended::Killed,
        Exit::TimedOut => Ended::TimedOut,
        Exit::Interrupted => Ended::Killed,
    }
}

/// The node as the commands showed it: `probed` with `facts` applied, and
/// the checks over both.
pub fn observed(probed: &Snapshot, facts: &[Fact]) -> (Snapshot, Vec<Finding>) {
    let mut snapshot = probed.clone();
    interpret::apply(&mut snapshot, facts);
    let findings = checks::run_with_facts(&snapshot, facts);
    (snapshot, findings)
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
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_characters() {
        assert_eq!(tail_chars("abcdef", 3), "def");
        assert_eq!(tail_chars("ab", 3), "ab");
        assert_eq!(tail_chars("äöü", 2), "öü");
    }

    #[test]
    fn a_command_turn_keeps_the_outputs_tail_and_reads_all_of_it() {
        let node = crate::sim::load("h100x8-thermal-throttle").expect("node");
        let report = node
            .run(&["nvidia-smi".to_string(), "-q".to_string()])
            .stdout;
        let output = format!("{report}{}END", "x".repeat(FEEDBACK_CHARS));
        let Turn::CommandOutput {
            command,
            exit_code,
            output,
            reading,
        } = command_turn(
            "nvidia-smi -q",
            Some(Ended::Exited(0)),
            &output,
            &node.snapshot,
        )
        else {
            panic!("a command's output turn");
        };
        assert_eq!(command, "nvidia-smi -q");
        assert_eq!(exit_code, Some(0));
        assert_eq!(output.chars().count(), FEEDBACK_CHARS);
        assert!(output.ends_with("END"));
        // The facts come from the whole output, not the tail.
        assert!(
            reading
                .facts
                .iter()
                .any(|f| f.gpu == Some(2) && f.field == "temperature.gpu" && f.value == "86")
        );
        let Turn::CommandOutput {
            exit_code, reading, ..
        } = command_turn(
            "nvidia-smi -q",
            None,
            "refused by the guard",
            &node.snapshot,
        )
        else {
            panic!("a command's output turn");
        };
        assert_eq!(exit_code, None);
        assert!(reading.note.unwrap().contains("could not run"));
    }

    #[test]
    fn what_a_command_showed_changes_the_findings() {
        let node = crate::sim::load("h100x8-ib-down").expect("node");
        let out = node.run(&["ibstat".to_string()]).stdout;
        let Turn::CommandOutput { reading, .. } =
            command_turn("ibstat", Some(Ended::Exited(0)), &out, &node.snapshot)
        else {
            panic!("a command's output turn");
        };
        assert!(checks::run_all(&node.snapshot).is_empty());
        let (_, findings) = observed(&node.snapshot, &reading.facts);
        let ids: Vec<&str> = findings.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["ib-port-down"]);
    }

    #[test]
    fn odd_outputs_and_a_timeout_become_notes_in_the_answer() {
        use crate::copilot::diagnose::{diagnose, observations};
        let node = crate::sim::load("h100x8-thermal-throttle").expect("node");
        let binary = "\u{0}\u{1}\u{2}\u{7f}ELF\u{0}".repeat(10);
        let huge = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-x)\n".repeat(300_000);
        let cut = "==============NVSMI LOG==============\n\nGPU 00000000:3A:00.0\n    Temperature\n        GPU Current Te";
        let history = vec![
            command_turn("nvidia-smi -q", Some(Ended::Exited(0)), "", &node.snapshot),
            command_turn(
                "nvidia-smi -L",
                Some(Ended::Exited(0)),
                &binary,
                &node.snapshot,
            ),
            command_turn(
                "nvidia-smi -L",
                Some(Ended::Exited(0)),
                &huge,
                &node.snapshot,
            ),
            command_turn(
                "nvidia-smi -q -i 2",
                Some(Ended::TimedOut),
                cut,
                &node.snapshot,
            ),
        ];
        let seen = observations(&history);
        assert_eq!(seen.len(), 4);
        let findings = checks::run_all(&node.snapshot);
        let text = diagnose(
            "why is GPU 2 slow?",
            crate::copilot::NodeContext {
                snapshot: &node.snapshot,
                findings: &findings,
            },
            &seen,
        )
        .text();
        for note in [
            "`nvidia-smi -q`: it printed nothing",
            "its output is binary, not text",
            "only the start was read",
            "it timed out; the output may be incomplete",
        ] {
            assert!(text.contains(note), "{note:?} missing from:\n{text}");
        }
        // The diagnosis itself still stands.
        assert!(text.starts_with("GPU 2 is thermally throttled"), "{text}");
    }
}
