//! The chat loop driven without a terminal: a scripted assistant, a
//! scripted prompter, the simulated `h100x8-thermal-throttle` node and an
//! audit log in a temporary directory.

use std::path::Path;

use super::*;
use crate::audit::{AuditLog, Record};
use crate::copilot::approval::{Answer, ConfirmKind, Decider, Prompter, RunMode};
use crate::copilot::{Assistant, Event, NodeContext, Proposal, Reply, Timings, Turn};
use crate::guard::{Limits, Tier, Verdict};
use crate::session::{Cancel, Node, Options, Session};

const READ_ONLY: &str = "nvidia-smi -q -d TEMPERATURE";
const STATE_CHANGING: &str = "nvidia-smi -r -i 2";
const BLOCKED: &str = "dmesg -c";
const NO_MODEL: &str = "no model: run `sigma model pull`";

/// Answers every question the same way and remembers what it was asked.
struct Scripted {
    answer: &'static str,
    commands: Vec<(&'static str, &'static str)>,
    /// Stream the answer in pieces (else only return it).
    stream: bool,
    /// Cancel (as Ctrl-C would) while answering.
    cancel: Option<Cancel>,
    /// History and question of each call.
    asked: Vec<(Vec<Turn>, String)>,
}

impl Scripted {
    fn new(commands: &[(&'static str, &'static str)]) -> Scripted {
        Scripted {
            answer: "GPU 2 is hot. Check its temperature.",
            commands: commands.to_vec(),
            stream: true,
            cancel: None,
            asked: Vec::new(),
        }
    }

    fn standard() -> Scripted {
        Scripted::new(&[
            (READ_ONLY, "read the temperatures"),
            (STATE_CHANGING, "reset GPU 2"),
        ])
    }
}

impl Assistant for Scripted {
    fn ask(
        &mut self,
        _node: NodeContext<'_>,
        history: &[Turn],
        question: &str,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> anyhow::Result<Reply> {
        self.asked.push((history.to_vec(), question.to_string()));
        if self.stream {
            let (a, b) = self.answer.split_at(self.answer.len() / 2);
            on_event(Event::AnswerText(a));
            on_event(Event::AnswerText(b));
        }
        if let Some(cancel) = &self.cancel {
            cancel.cancel();
        }
        Ok(Reply {
            answer: self.answer.to_string(),
            proposals: self
                .commands
                .iter()
                .map(|(c, p)| Proposal::new(*c, *p))
                .collect(),
            model: "scripted".into(),
            timings: Timings::default(),
        })
    }

    fn model_name(&self) -> &str {
        "scripted"
    }
}

/// Gives a fixed answer to every prompt and remembers the commands asked about.
struct Fixed {
    answer: Answer,
    asked: Vec<(String, ConfirmKind)>,
}

impl Fixed {
    fn new(answer: Answer) -> Fixed {
        Fixed {
            answer,
            asked: Vec::new(),
        }
    }

    /// What the terminal prompter answers when standard input is a pipe.
    fn piped() -> Fixed {
        Fixed::new(Answer::Unavailable(
            "needs confirmation on a terminal; standard input is not one".into(),
        ))
    }
}

impl Prompter for Fixed {
    fn confirm(&mut self, verdict: &Verdict, kind: &ConfirmKind) -> Answer {
        self.asked.push((verdict.command.clone(), kind.clone()));
        self.answer.clone()
    }
}

/// What one chat printed and recorded.
struct Transcript {
    out: String,
    audit: Vec<Record>,
}

impl Transcript {
    fn kinds(&self) -> Vec<&'static str> {
        self.audit.iter().map(Record::kind).collect()
    }

    fn executions(&self) -> Vec<(&str, Option<i32>)> {
        self.audit
            .iter()
            .filter_map(|r| match r {
                Record::Execution {
                    command, exit_code, ..
                } => Some((command.as_str(), *exit_code)),
                _ => None,
            })
            .collect()
    }

    fn approvals(&self) -> Vec<(&str, bool, Decider)> {
        self.audit
            .iter()
            .filter_map(|r| match r {
                Record::Approval {
                    command,
                    approved,
                    by,
                    ..
                } => Some((command.as_str(), *approved, *by)),
                _ => None,
            })
            .collect()
    }
}

fn options(run_mode: RunMode, rounds: usize) -> Options {
    Options {
        run_mode,
        rounds,
        limits: Limits::default(),
        no_model: NO_MODEL.into(),
        cancel: Cancel::new(),
    }
}

/// Runs a chat over `input` on the thermal-throttle node.
fn chat(
    assistant: Option<&mut dyn Assistant>,
    prompter: &mut Fixed,
    options: Options,
    input: &str,
) -> Transcript {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.jsonl");
    let node = Node::open(Some("h100x8-thermal-throttle")).expect("simulated node");
    let mut audit = AuditLog::at(Some(path.clone()));
    let mut out = Vec::new();
    {
        // A shorter borrow of the assistant, as long as the session's.
        let assistant = assistant.map(|a| a as &mut dyn Assistant);
        let mut session = Session::new(&node, assistant, prompter, &mut audit, options);
        run_plain(&mut session, input.as_bytes(), &mut out).expect("chat runs");
    }
    Transcript {
        out: String::from_utf8(out).expect("UTF-8 output"),
        audit: read_audit(&path),
    }
}

fn read_audit(path: &Path) -> Vec<Record> {
    let contents = crate::audit::read(path)
        .expect("audit log readable")
        .expect("audit log written");
    assert_eq!(contents.unreadable, 0);
    contents
        .entries
        .into_iter()
        .map(|(e, _)| e.record)
        .collect()
}

fn assert_plain(out: &str) {
    assert!(!out.contains('\u{1b}'), "escape code in output:\n{out}");
}

#[test]
fn answer_streams_then_proposals_are_numbered_with_tier_and_rule() {
    let mut assistant = Scripted::standard();
    let mut prompter = Fixed::piped();
    let t = chat(
        Some(&mut assistant),
        &mut prompter,
        options(RunMode::Never, 3),
        "why is GPU 2 slow?\n",
    );
    let expected_head = "sigma> why is GPU 2 slow?\nGPU 2 is hot. Check its temperature.\n\
        [1] read-only  nvidia-smi -q -d TEMPERATURE  — read the temperatures\n\
        [2] state-changing  nvidia-smi -r -i 2  — reset GPU 2\n";
    assert!(t.out.starts_with(expected_head), "{}", t.out);
    assert!(
        t.out.contains("--gpu-reset"),
        "the rule is shown:\n{}",
        t.out
    );
    assert_plain(&t.out);
    assert_eq!(assistant.asked.len(), 1, "--run never: one round");
    assert!(prompter.asked.is_empty());
    assert_eq!(
        t.kinds(),
        ["session", "question", "answer", "proposal", "proposal"]
    );
    assert!(
        matches!(&t.audit[3], Record::Proposal { n: 1, tier: Tier::ReadOnly, command, .. } if command == READ_ONLY)
    );
}

#[test]
fn an_answer_that_does_not_stream_is_printed_whole() {
    let mut assistant = Scripted::standard();
    assistant.stream = false;
    let t = chat(
        Some(&mut assistant),
        &mut Fixed::piped(),
        options(RunMode::Never, 1),
        "why?\n",
    );
    assert!(
        t.out
            .starts_with("sigma> why?\nGPU 2 is hot. Check its temperature.\n[1] "),
        "{}",
        t.out
    );
}

#[test]
fn run_1_runs_the_read_only_proposal_on_the_simulated_node() {
    let mut assistant = Scripted::standard();
    let mut prompter = Fixed::piped();
    let t = chat(
        Some(&mut assistant),
        &mut prompter,
        options(RunMode::Safe, 1),
        "why?\n/run 1\nand now?\n",
    );
    assert!(
        t.out
            .contains("sigma> /run 1\n[1] $ nvidia-smi -q -d TEMPERATURE\n"),
        "{}",
        t.out
    );
    assert!(t.out.contains("GPU Current Temp"), "{}", t.out);
    assert!(t.out.contains("[1] exit code 0 · "), "{}", t.out);
    assert_plain(&t.out);
    assert!(
        prompter.asked.is_empty(),
        "read-only under safe asks nobody"
    );
    assert_eq!(t.executions(), [(READ_ONLY, Some(0))]);
    assert_eq!(t.approvals(), [(READ_ONLY, true, Decider::Policy)]);
    // The output went back to the assistant with the next question.
    let (history, question) = &assistant.asked[1];
    assert_eq!(question, "and now?");
    assert!(
        history.iter().any(|turn| matches!(turn,
            Turn::CommandOutput { command, exit_code: Some(0), output, .. }
                if command == READ_ONLY && output.contains("GPU Current Temp"))),
        "{history:?}"
    );
}

#[test]
fn run_2_needs_a_typed_name_and_piped_input_refuses() {
    let mut assistant = Scripted::standard();
    let mut prompter = Fixed::piped();
    let t = chat(
        Some(&mut assistant),
        &mut prompter,
        options(RunMode::Safe, 1),
        "why?\n/run 2\n",
    );
    assert!(
        t.out.contains(
            "sigma> /run 2\n[2] not run: needs confirmation on a terminal; standard input is not one\n"
        ),
        "{}",
        t.out
    );
    assert!(!t.out.contains("[2] $"), "{}", t.out);
    assert_eq!(
        prompter.asked,
        [(
            STATE_CHANGING.to_string(),
            ConfirmKind::TypeName("nvidia-smi".into())
        )]
    );
    assert!(t.executions().is_empty());
    assert_eq!(t.approvals(), [(STATE_CHANGING, false, Decider::Policy)]);
}

#[test]
fn typed_confirmation_runs_a_state_changing_proposal() {
    let mut assistant = Scripted::standard();
    let mut prompter = Fixed::new(Answer::Yes);
    let t = chat(
        Some(&mut assistant),
        &mut prompter,
        options(RunMode::Confirm, 1),
        "why?\n/run 2\n",
    );
    assert!(t.out.contains("[2] $ nvidia-smi -r -i 2\n"), "{}", t.out);
    assert_eq!(t.approvals(), [(STATE_CHANGING, true, Decider::User)]);
    assert_eq!(t.executions().len(), 1);
}

#[test]
fn declined_confirmation_is_the_users_decision() {
    let mut assistant = Scripted::standard();
    let mut prompter = Fixed::new(Answer::No);
    let t = chat(
        Some(&mut assistant),
        &mut prompter,
        options(RunMode::Confirm, 1),
        "why?\n/run 1\n",
    );
    assert!(t.out.contains("[1] not run: declined\n"), "{}", t.out);
    assert_eq!(prompter.asked[0].1, ConfirmKind::YesNo);
    assert_eq!(t.approvals(), [(READ_ONLY, false, Decider::User)]);
    assert!(t.executions().is_empty());
}

#[test]
fn blocked_proposal_never_runs_and_says_the_rule() {
    let mut assistant = Scripted::new(&[(BLOCKED, "clear the log")]);
    let mut prompter = Fixed::new(Answer::Yes);
    for mode in [RunMode::Never, RunMode::Safe, RunMode::Confirm] {
        let t = chat(
            Some(&mut assistant),
            &mut prompter,
            options(mode, 3),
            "why?\n/run 1\n",
        );
        assert!(t.out.contains("[1] blocked  dmesg -c"), "{}", t.out);
        assert!(
            t.out
                .contains("sigma> /run 1\n[1] not run: blocked by the guard: "),
            "{mode}: {}",
            t.out
        );
        assert!(t.executions().is_empty(), "{mode}");
    }
    assert!(
        prompter.asked.is_empty(),
        "a blocked command is never asked about"
    );
}

#[test]
fn never_mode_runs_nothing_even_on_request() {
    let mut assistant = Scripted::standard();
    let mut prompter = Fixed::new(Answer::Yes);
    let t = chat(
        Some(&mut assistant),
        &mut prompter,
        options(RunMode::Never, 3),
        "why?\n/run 1\n",
    );
    assert!(t.out.contains("[1] not run: --run never"), "{}", t.out);
    assert!(prompter.asked.is_empty());
    assert!(t.executions().is_empty());
}

#[test]
fn outputs_go_back_for_more_rounds_up_to_the_limit() {
    let mut assistant = Scripted::standard();
    let mut prompter = Fixed::piped();
    let t = chat(
        Some(&mut assistant),
        &mut prompter,
        options(RunMode::Safe, 3),
        "why?\n",
    );
    assert_eq!(assistant.asked.len(), 3, "{}", t.out);
    let (history, question) = &assistant.asked[1];
    // The follow-up asks the question again; the outputs are the history's
    // last turns.
    assert_eq!(question, "why?");
    assert!(
        matches!(history.last(), Some(Turn::CommandOutput { command, .. }) if command == READ_ONLY),
        "{history:?}"
    );
    // Rounds 1 and 2 ran the read-only command; the last answer runs nothing.
    assert_eq!(t.executions().len(), 2);
    assert_eq!(prompter.asked.len(), 2, "the reset was asked about twice");
    assert_plain(&t.out);
}

#[test]
fn nothing_ran_so_no_second_round() {
    let mut assistant = Scripted::standard();
    let mut prompter = Fixed::new(Answer::No);
    chat(
        Some(&mut assistant),
        &mut prompter,
        options(RunMode::Confirm, 3),
        "why?\n",
    );
    assert_eq!(assistant.asked.len(), 1);
    assert_eq!(prompter.asked.len(), 2, "each proposal was asked about");
}

#[test]
fn cancel_stops_the_answer_and_runs_nothing() {
    let cancel = Cancel::new();
    let mut assistant = Scripted::standard();
    assistant.cancel = Some(cancel.clone());
    let mut opts = options(RunMode::Safe, 3);
    opts.cancel = cancel;
    let mut prompter = Fixed::piped();
    let t = chat(Some(&mut assistant), &mut prompter, opts, "why?\n/run 1\n");
    assert!(t.out.contains("(cancelled)\n"), "{}", t.out);
    assert!(!t.out.contains("[1] read-only"), "{}", t.out);
    assert!(t.out.contains("no proposals yet"), "{}", t.out);
    assert_eq!(assistant.asked.len(), 1);
    assert!(t.executions().is_empty());
}

#[test]
fn escape_codes_from_the_model_are_shown_escaped() {
    let mut assistant = Scripted::new(&[(READ_ONLY, "\u{1b}]0;owned\u{7}title")]);
    assistant.answer = "hot\u{1b}[2J GPU\u{202E}";
    let t = chat(
        Some(&mut assistant),
        &mut Fixed::piped(),
        options(RunMode::Never, 1),
        "why?\n",
    );
    assert_plain(&t.out);
    assert!(!t.out.contains('\u{202E}'), "{}", t.out);
    assert!(t.out.contains("\\u{1b}[2J"), "{}", t.out);
}

#[test]
fn without_a_model_questions_say_why_and_commands_still_work() {
    let t = chat(
        None,
        &mut Fixed::piped(),
        options(RunMode::Confirm, 3),
        "why?\n/doctor\n/snapshot\n/run 1\n/help\n/bogus\n",
    );
    assert!(
        t.out.contains(&format!("sigma> why?\nsigma: {NO_MODEL}\n")),
        "{}",
        t.out
    );
    assert!(
        t.out.contains("simulated: h100x8-thermal-throttle"),
        "{}",
        t.out
    );
    assert!(
        t.out.contains(" critical, "),
        "doctor's summary:\n{}",
        t.out
    );
    assert!(
        t.out
            .contains("sigma> /run 1\nno proposals yet: ask a question first\n"),
        "{}",
        t.out
    );
    assert!(t.out.contains("/explain N"), "help:\n{}", t.out);
    assert!(
        t.out
            .contains("unknown command /bogus; type /help for the list"),
        "{}",
        t.out
    );
    // /doctor and /snapshot style their text for anstream, which strips
    // it on a pipe (tests/chat.rs); the chat's own lines are plain.
    let (before, rest) = t.out.split_once("sigma> /doctor").expect("doctor ran");
    let (_, after) = rest.split_once("sigma> /run 1").expect("run asked");
    assert_plain(before);
    assert_plain(after);
    assert_eq!(t.kinds(), ["session", "question"]);
}

#[test]
fn explain_lists_each_argument() {
    let mut assistant = Scripted::standard();
    let t = chat(
        Some(&mut assistant),
        &mut Fixed::piped(),
        options(RunMode::Never, 1),
        "why?\n/explain 2\n/explain 3\n/run x\n",
    );
    let explained = t
        .out
        .split("sigma> /explain 2\n")
        .nth(1)
        .expect("explained");
    assert!(
        explained.starts_with("[2] nvidia-smi -r -i 2\n"),
        "{explained}"
    );
    assert!(explained.contains("\n  -r "), "{explained}");
    assert!(explained.contains("\n  -i 2 "), "{explained}");
    assert!(
        t.out
            .contains("sigma> /explain 3\nusage: /explain N, with N from 1 to 2\n"),
        "{}",
        t.out
    );
    assert!(t.out.contains("sigma> /run x\nusage: /run N"), "{}", t.out);
}

#[test]
fn quit_ends_the_chat() {
    let mut assistant = Scripted::standard();
    let t = chat(
        Some(&mut assistant),
        &mut Fixed::piped(),
        options(RunMode::Never, 1),
        "/quit\nwhy?\n",
    );
    assert_eq!(t.out, "sigma> /quit\n");
    assert!(assistant.asked.is_empty());
    assert_eq!(t.kinds(), ["session"]);
}
