//! The TUI's state and how events change it. Nothing here draws.
//!
//! [`App::update`] takes one [`Event`] and returns an [`Outcome`]: whether
//! the screen must be redrawn, and at most one [`AppAction`] for the main
//! loop to carry out (quit, refresh, ask, cancel, run, copy). The app never
//! does I/O itself, so every transition is testable without a terminal.
//!
//! # Asking the copilot
//! `/` opens the input line; Enter emits [`AppAction::Ask`] for round 1 and
//! the answer streams in as [`Message::Text`] from the model's thread. One
//! question is in flight at a time: asking again waits until the reply
//! ([`Message::Done`]) has come. A question asked while the model loads
//! waits in the worker's queue. The reply's proposals replace the list
//! (a finding's commands come back when another finding is selected).
//! When a command finishes, its output joins the conversation's history;
//! if the current question has rounds left (`--rounds`), the app asks a
//! follow-up with that output, as `sigma chat` does. Esc or Ctrl-C while
//! an answer is generated emit [`AppAction::Cancel`]; Ctrl-C quits only
//! when nothing is being generated.
//!
//! # Running a proposal
//! Every proposal carries the guard's [`Verdict`] (`crate::guard::check`),
//! made again whenever the command is edited. `Enter` on a proposal asks to
//! run it; what happens depends on the verdict's [`Tier`]:
//! - read-only: [`AppAction::Run`] at once;
//! - heavy or state-changing: a confirmation modal opens and the action
//!   comes only after the program's name is typed exactly;
//! - blocked: a notice gives the guard's rule; a blocked command never
//!   produces `Run`.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;

use super::event::{CommandResult, Event, Refresh};
use super::input::{Input, InputKind};
use super::keys::{self, Intent};
use super::layout;
use super::strings;
use super::theme::Theme;
use crate::checks::{Finding, Severity};
use crate::copilot::Turn;
use crate::copilot::worker::{self, Message};
use crate::guard::{self, Tier, Verdict};
use crate::probe::Snapshot;
use crate::repl::{FEEDBACK_CHARS, follow_up, tail_chars};

/// Rows moved by PageUp/PageDown in lists.
const PAGE: usize = 10;

/// Screen lines per proposal: the command, then the guard's tier and rule.
pub const PROPOSAL_LINES: usize = 2;

/// Answers per question unless told otherwise (as `sigma chat --rounds`).
pub const DEFAULT_ROUNDS: usize = 3;

/// A pane that can have the focus, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    /// The GPU table.
    Gpus,
    /// The findings list (or a finding's details).
    Findings,
    /// The proposed commands.
    Proposals,
    /// The conversation.
    Conversation,
}

impl Focus {
    const ORDER: [Focus; 4] = [
        Focus::Gpus,
        Focus::Findings,
        Focus::Proposals,
        Focus::Conversation,
    ];

    fn step(self, forward: bool) -> Focus {
        let i = Self::ORDER.iter().position(|f| *f == self).unwrap_or(0);
        let n = Self::ORDER.len();
        Self::ORDER[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

/// A command the user may run, with the guard's verdict on it.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// What it is for.
    pub purpose: String,
    /// The guard's judgement: tier, rule, and the plan the executor runs.
    pub verdict: Verdict,
}

impl Proposal {
    /// A proposal for `command`, judged by the guard.
    pub fn new(command: &str, purpose: String) -> Proposal {
        Proposal {
            purpose,
            verdict: guard::check(command),
        }
    }

    /// The command line.
    pub fn command(&self) -> &str {
        &self.verdict.command
    }

    /// The guard's tier.
    pub fn tier(&self) -> Tier {
        self.verdict.tier
    }

    /// The program to type to confirm: the file name of the first
    /// program of the pipeline (`/usr/bin/nvidia-smi -r` -> `nvidia-smi`).
    pub fn program(&self) -> Option<&str> {
        crate::copilot::approval::program(&self.verdict)
    }
}

/// Who said a conversation entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The user's question.
    You,
    /// The copilot's answer.
    Model,
    /// A note from the TUI.
    Note,
    /// A command line that ran.
    Run,
    /// What it printed (untrusted).
    Output,
    /// The guard's explanation of a command, argument by argument.
    Guard,
}

/// One entry of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Who.
    pub speaker: Speaker,
    /// What (may span lines).
    pub text: String,
}

/// Confirmation of a state-changing command: the program's name must be
/// typed exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// Index of the proposal.
    pub proposal: usize,
    /// The name to type.
    pub binary: String,
    /// What was typed.
    pub typed: String,
    /// The last Enter did not match.
    pub mismatch: bool,
}

/// A window over the panes that takes the keys while open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modal {
    /// The key list.
    Help,
    /// The input line (ask, edit).
    Input(Input),
    /// Confirmation of a state-changing command.
    Confirm(Confirm),
    /// A message; any key closes it.
    Notice(String),
}

/// Something the main loop must do for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppAction {
    /// Leave the TUI.
    Quit,
    /// Probe and check the node now.
    Refresh,
    /// Send this prompt to the copilot.
    Ask(Ask),
    /// Run proposal `n` (already confirmed when it needs to be).
    Run(usize),
    /// Stop the answer being generated.
    Cancel,
    /// Put this text on the clipboard.
    Copy(String),
}

/// A prompt for the copilot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// What to send: the user's question, or the follow-up after commands ran.
    pub prompt: String,
    /// Which answer to the user's question this is (1 for the question itself).
    pub round: usize,
}

/// The model, as far as the app knows.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelState {
    /// Loading on its thread (questions wait).
    Loading,
    /// Loaded: its name, and the generation speed of the last answer.
    Ready {
        /// The model's name.
        name: String,
        /// Tokens per second of the last answer, once there is one.
        last_rate: Option<f64>,
    },
    /// Could not be loaded: why (one line).
    Failed(String),
}

/// What the copilot is doing with the current question.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Work {
    /// Nothing in flight.
    Idle,
    /// Sent; waiting for the model (loading, or the prompt not started).
    Waiting,
    /// Evaluating the prompt: tokens done of total.
    Prefill(usize, usize),
    /// Generating: answer tokens so far and their rate per second.
    Generating(usize, f64),
    /// Cancel asked; waiting for the worker to stop.
    Cancelling,
}

/// The question being answered, for follow-up rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Question {
    /// The user's words.
    text: String,
    /// Answers asked for so far (1 after the question itself).
    round: usize,
    /// The prompt sent for the answer in flight or last received.
    prompt: String,
}

/// Where the proposals list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// Nothing yet.
    None,
    /// The commands of this finding.
    Finding(FindingKey),
    /// The copilot's last reply.
    Copilot,
}

/// What [`App::update`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The screen must be redrawn.
    pub redraw: bool,
    /// Something for the main loop to do.
    pub action: Option<AppAction>,
}

impl Outcome {
    fn redraw() -> Outcome {
        Outcome {
            redraw: true,
            action: None,
        }
    }

    fn act(action: Option<AppAction>) -> Outcome {
        Outcome {
            redraw: true,
            action,
        }
    }
}

/// Identity of a finding across refreshes (findings are re-sorted each time).
type FindingKey = (String, Option<u32>, String);

fn key_of(f: &Finding) -> FindingKey {
    (f.id.clone(), f.gpu, f.title.clone())
}

/// Everything the TUI shows, and where the user is.
#[derive(Debug)]
pub struct App {
    /// Styles and symbols.
    pub theme: Theme,
    /// How often the node is refreshed (data older than twice that is stale).
    refresh_every: Duration,
    /// The terminal's size.
    size: Rect,
    /// The latest refresh; `None` before the first.
    refresh: Option<Refresh>,
    /// The time of the latest tick.
    now: Option<Instant>,
    /// The focused pane.
    focus: Focus,
    /// Selected GPU row.
    gpu: usize,
    /// Selected finding.
    finding: usize,
    /// The selected finding's details are shown instead of the list.
    details: bool,
    /// Scroll of the details, in lines.
    details_scroll: u16,
    /// Commands for the selected finding, or from the copilot.
    proposals: Vec<Proposal>,
    /// Where `proposals` came from.
    proposals_for: Source,
    /// Selected proposal.
    proposal: usize,
    /// The conversation.
    conversation: Vec<Entry>,
    /// An answer is streaming into the last entry.
    answering: bool,
    /// Lines scrolled back from the bottom of the conversation.
    scroll_back: usize,
    /// The open modal.
    modal: Option<Modal>,
    /// The model's state.
    model: ModelState,
    /// What the copilot is doing.
    work: Work,
    /// The question being answered (kept for follow-up rounds).
    question: Option<Question>,
    /// Most answers per question.
    rounds: usize,
    /// Turns fed back to the model: questions, answers, command outputs.
    history: Vec<Turn>,
    /// A one-line note in the status line, cleared by the next key.
    note: Option<String>,
}

impl App {
    /// A fresh app for a terminal of `size`.
    pub fn new(theme: Theme, refresh_every: Duration, size: Rect) -> App {
        App {
            theme,
            refresh_every,
            size,
            refresh: None,
            now: None,
            focus: Focus::Findings,
            gpu: 0,
            finding: 0,
            details: false,
            details_scroll: 0,
            proposals: Vec::new(),
            proposals_for: Source::None,
            proposal: 0,
            conversation: Vec::new(),
            answering: false,
            scroll_back: 0,
            modal: None,
            model: ModelState::Loading,
            work: Work::Idle,
            question: None,
            rounds: DEFAULT_ROUNDS,
            history: Vec::new(),
            note: None,
        }
    }

    /// The same app with at most `rounds` answers per question (at least 1).
    pub fn with_rounds(mut self, rounds: usize) -> App {
        self.rounds = rounds.max(1);
        self
    }

    // ---- read access for drawing ----

    /// The terminal's size.
    pub fn size(&self) -> Rect {
        self.size
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.refresh.as_ref().map(|r| &r.snapshot)
    }

    /// The latest findings, worst first.
    pub fn findings(&self) -> &[Finding] {
        self.refresh.as_ref().map_or(&[], |r| &r.findings)
    }

    /// Wall-clock time of the latest refresh.
    pub fn refreshed_at(&self) -> Option<&str> {
        self.refresh.as_ref().map(|r| r.time.as_str())
    }

    /// Seconds since the latest refresh when that is more than twice the
    /// refresh interval (the probe is stuck or slow).
    pub fn stale_secs(&self) -> Option<u64> {
        let (r, now) = (self.refresh.as_ref()?, self.now?);
        let age = now.saturating_duration_since(r.at);
        (age > self.refresh_every * 2 + Duration::from_secs(1)).then_some(age.as_secs())
    }

    /// The worst severity among the findings about GPU `index`.
    pub fn gpu_worst(&self, index: u32) -> Option<Severity> {
        self.findings()
            .iter()
            .filter(|f| f.gpu == Some(index))
            .map(|f| f.severity)
            .max()
    }

    /// The focused pane.
    pub fn focus(&self) -> Focus {
        self.focus
    }

    /// Selected GPU row.
    pub fn selected_gpu(&self) -> usize {
        self.gpu
    }

    /// Selected finding index.
    pub fn selected_finding(&self) -> usize {
        self.finding
    }

    /// The finding whose details are open, if they are.
    pub fn details(&self) -> Option<&Finding> {
        if self.details {
            self.findings().get(self.finding)
        } else {
            None
        }
    }

    /// Scroll of the details, in lines.
    pub fn details_scroll(&self) -> u16 {
        self.details_scroll
    }

    /// The proposals for the selected finding.
    pub fn proposals(&self) -> &[Proposal] {
        &self.proposals
    }

    /// Selected proposal index.
    pub fn selected_proposal(&self) -> usize {
        self.proposal
    }

    /// The conversation, oldest first.
    pub fn conversation(&self) -> &[Entry] {
        &self.conversation
    }

    /// Lines scrolled back from the bottom of the conversation.
    pub fn scroll_back(&self) -> usize {
        self.scroll_back
    }

    /// The open modal.
    pub fn modal(&self) -> Option<&Modal> {
        self.modal.as_ref()
    }

    /// The model's state.
    pub fn model(&self) -> &ModelState {
        &self.model
    }

    /// What the copilot is doing.
    pub fn work(&self) -> Work {
        self.work
    }

    /// The turns the next question is asked with.
    pub fn history(&self) -> &[Turn] {
        &self.history
    }

    /// True when the proposals are the copilot's, not a finding's.
    pub fn proposals_from_copilot(&self) -> bool {
        self.proposals_for == Source::Copilot
    }

    /// The note in the status line.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// The conversation wrapped to `width` columns: one `(speaker, line)`
    /// per screen line, each entry's first line carrying its label.
    pub fn conversation_lines(&self, width: u16) -> Vec<(Speaker, String)> {
        let width = usize::from(width.max(8));
        let mut lines = Vec::new();
        for e in &self.conversation {
            let label = match e.speaker {
                Speaker::You => strings::who::YOU,
                Speaker::Model => strings::who::MODEL,
                Speaker::Note => strings::who::NOTE,
                Speaker::Run => strings::who::RUN,
                Speaker::Guard => strings::who::GUARD,
                Speaker::Output => "",
            };
            let text = format!("{label}{}", e.text);
            for line in text.lines() {
                for part in textwrap::wrap(line, width) {
                    lines.push((e.speaker, part.into_owned()));
                }
            }
            if text.is_empty() {
                lines.push((e.speaker, String::new()));
            }
        }
        lines
    }

    // ---- changes ----

    /// Applies one event.
    pub fn update(&mut self, event: Event) -> Outcome {
        match event {
            Event::Key(key) => {
                self.note = None;
                self.on_key(&key)
            }
            Event::Resize(w, h) => {
                self.size = Rect::new(0, 0, w, h);
                self.clamp_scroll();
                Outcome::redraw()
            }
            Event::Tick(now) => {
                let before = self.stale_secs();
                self.now = Some(now);
                Outcome {
                    redraw: before != self.stale_secs(),
                    action: None,
                }
            }
            Event::SnapshotReady(refresh) => {
                self.on_refresh(*refresh);
                Outcome::redraw()
            }
            Event::Model(message) => self.on_model(message),
            Event::CommandDone(r) => Outcome::act(self.on_command_done(r)),
            Event::Warning(text) => {
                self.push_note(&text);
                Outcome::redraw()
            }
            Event::Terminate => Outcome::act(Some(AppAction::Quit)),
        }
    }

    /// Adds a note to the conversation (for the main loop's messages).
    pub fn push_note(&mut self, text: &str) {
        self.push(Speaker::Note, text.to_string());
    }

    fn push(&mut self, speaker: Speaker, text: String) {
        self.conversation.push(Entry { speaker, text });
        self.scroll_back = 0;
    }

    fn on_refresh(&mut self, refresh: Refresh) {
        let selected = self.findings().get(self.finding).map(key_of);
        self.refresh = Some(refresh);
        let n = self.findings().len();
        self.finding = selected
            .and_then(|k| self.findings().iter().position(|f| key_of(f) == k))
            .unwrap_or_else(|| self.finding.min(n.saturating_sub(1)));
        if n == 0 {
            self.details = false;
        }
        let gpus = self.snapshot().map_or(0, |s| s.gpus.len());
        self.gpu = self.gpu.min(gpus.saturating_sub(1));
        // The copilot's proposals stay until the user picks a finding.
        if self.proposals_for != Source::Copilot {
            self.sync_proposals();
        }
    }

    /// Shows the selected finding's commands, rebuilt when the finding
    /// changed; kept (with any edits) otherwise.
    fn sync_proposals(&mut self) {
        let finding = self.findings().get(self.finding);
        let key = finding.map_or(Source::None, |f| Source::Finding(key_of(f)));
        if key == self.proposals_for {
            return;
        }
        let proposals = finding
            .map(|f| {
                f.commands
                    .iter()
                    .map(|argv| Proposal::new(&crate::guard::command_line(argv), f.title.clone()))
                    .collect()
            })
            .unwrap_or_default();
        // A confirmation or an edit names a proposal by its place in the
        // list: it must not carry over to another list.
        self.close_proposal_modals();
        self.proposals = proposals;
        self.proposals_for = key;
        self.proposal = 0;
    }

    /// Closes a confirmation or an edit of a proposal, saying why.
    fn close_proposal_modals(&mut self) {
        if matches!(
            self.modal,
            Some(
                Modal::Confirm(_)
                    | Modal::Input(Input {
                        kind: InputKind::Edit(_),
                        ..
                    })
            )
        ) {
            self.modal = Some(Modal::Notice(strings::PROPOSALS_CHANGED.into()));
        }
    }

    /// Shows the output, feeds it to the copilot's history, and asks the
    /// follow-up when the current question has rounds left.
    fn on_command_done(&mut self, r: CommandResult) -> Option<AppAction> {
        self.note = None;
        self.push(Speaker::Run, r.command.clone());
        let mut out = r.output.trim_end().to_string();
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&r.status);
        self.push(Speaker::Output, out);
        let output = if r.error.is_some() {
            &r.status
        } else {
            &r.output
        };
        self.history.push(Turn::CommandOutput {
            command: r.command,
            exit_code: r.exit_code,
            output: tail_chars(output, FEEDBACK_CHARS).to_string(),
        });
        self.follow_up()
    }

    /// The next round of the current question, when it has one left, no
    /// answer is in flight and the model can answer.
    fn follow_up(&mut self) -> Option<AppAction> {
        if self.work != Work::Idle || matches!(self.model, ModelState::Failed(_)) {
            return None;
        }
        let q = self.question.as_mut().filter(|q| q.round < self.rounds)?;
        q.round += 1;
        q.prompt = follow_up(&q.text);
        let ask = Ask {
            prompt: q.prompt.clone(),
            round: q.round,
        };
        self.push(Speaker::Note, strings::follow_up(ask.round, self.rounds));
        self.work = Work::Waiting;
        Some(AppAction::Ask(ask))
    }

    /// Applies news from the model's thread.
    fn on_model(&mut self, message: Message) -> Outcome {
        match message {
            Message::Loaded { model, .. } => {
                self.model = ModelState::Ready {
                    name: model,
                    last_rate: None,
                };
            }
            Message::LoadFailed(reason) => self.model = ModelState::Failed(reason),
            Message::Prefill { done, total } => {
                if self.work != Work::Cancelling {
                    self.work = Work::Prefill(done, total);
                }
            }
            Message::Text {
                piece,
                tokens,
                tokens_per_s,
            } => {
                if !self.answering {
                    self.push(Speaker::Model, String::new());
                    self.answering = true;
                }
                if let Some(last) = self.conversation.last_mut() {
                    last.text.push_str(&piece);
                }
                if self.work != Work::Cancelling {
                    self.work = Work::Generating(tokens, tokens_per_s);
                }
            }
            Message::Done(result) => self.on_reply(result),
        }
        Outcome::redraw()
    }

    /// The end of an answer: the reply's text, history and proposals, or
    /// why there is none.
    fn on_reply(&mut self, result: Result<crate::copilot::Reply, String>) {
        self.work = Work::Idle;
        let streamed = std::mem::take(&mut self.answering);
        let reply = match result {
            Ok(reply) => reply,
            Err(reason) => {
                // No more rounds for a question that failed or was cancelled.
                self.question = None;
                let text = if reason == worker::CANCELLED {
                    strings::CANCELLED.to_string()
                } else {
                    strings::no_answer(&reason)
                };
                self.push(Speaker::Note, text);
                return;
            }
        };
        // The reply's text is the exact answer; the stream was decoded on the fly.
        match self.conversation.last_mut() {
            Some(last) if streamed => last.text.clone_from(&reply.answer),
            _ => self.push(Speaker::Model, reply.answer.clone()),
        }
        if let ModelState::Ready { last_rate, .. } = &mut self.model {
            *last_rate = Some(reply.timings.tokens_per_s);
        }
        if let Some(q) = &self.question {
            self.history.push(Turn::User(q.prompt.clone()));
        }
        self.history.push(Turn::Assistant(reply.answer.clone()));
        if reply.proposals.is_empty() {
            self.push(Speaker::Note, strings::NO_COMMANDS.into());
            return;
        }
        self.close_proposal_modals();
        self.proposals = reply
            .proposals
            .into_iter()
            .map(|p| Proposal {
                purpose: p.purpose,
                verdict: p.verdict,
            })
            .collect();
        self.proposals_for = Source::Copilot;
        self.proposal = 0;
        // Enter now runs the first proposal.
        if self.modal.is_none() && !self.details {
            self.focus = Focus::Proposals;
        }
    }

    /// True while an answer is asked for and not yet done.
    fn in_flight(&self) -> bool {
        self.work != Work::Idle
    }

    /// Cancels the answer in flight.
    fn cancel(&mut self) -> Outcome {
        self.work = Work::Cancelling;
        Outcome::act(Some(AppAction::Cancel))
    }

    fn on_key(&mut self, key: &KeyEvent) -> Outcome {
        if keys::is_interrupt(key) {
            if self.in_flight() {
                return self.cancel();
            }
            return Outcome::act(Some(AppAction::Quit));
        }
        match self.modal.take() {
            None if self.in_flight() && key.code == KeyCode::Esc => self.cancel(),
            None => self.on_intent(keys::intent(key)),
            Some(Modal::Help) => {
                if !matches!(
                    keys::intent(key),
                    Some(Intent::Help | Intent::Back | Intent::Quit)
                ) {
                    self.modal = Some(Modal::Help);
                }
                Outcome::redraw()
            }
            Some(Modal::Notice(_)) => Outcome::redraw(),
            Some(Modal::Input(input)) => self.on_input_key(input, key),
            Some(Modal::Confirm(confirm)) => self.on_confirm_key(confirm, key),
        }
    }

    fn on_input_key(&mut self, mut input: Input, key: &KeyEvent) -> Outcome {
        match key.code {
            KeyCode::Esc => Outcome::redraw(),
            KeyCode::Enter => {
                let text = input.text.trim().to_string();
                if text.is_empty() {
                    return Outcome::redraw();
                }
                match input.kind {
                    InputKind::Ask => self.ask(input, text),
                    InputKind::Edit(i) => {
                        if let Some(p) = self.proposals.get_mut(i) {
                            *p = Proposal::new(&text, p.purpose.clone());
                        }
                        Outcome::redraw()
                    }
                }
            }
            _ => {
                let changed = input.edit(key);
                self.modal = Some(Modal::Input(input));
                Outcome {
                    redraw: changed,
                    action: None,
                }
            }
        }
    }

    fn on_confirm_key(&mut self, mut confirm: Confirm, key: &KeyEvent) -> Outcome {
        match key.code {
            KeyCode::Esc => return Outcome::redraw(),
            KeyCode::Enter if confirm.typed == confirm.binary => {
                return Outcome::act(self.run(confirm.proposal));
            }
            KeyCode::Enter => {
                confirm.mismatch = true;
                confirm.typed.clear();
            }
            KeyCode::Backspace => {
                confirm.typed.pop();
            }
            KeyCode::Char(c) => confirm.typed.push(c),
            _ => {}
        }
        self.modal = Some(Modal::Confirm(confirm));
        Outcome::redraw()
    }

    /// Sends `text` as a new question, unless one is in flight or the node
    /// has not been probed yet (then the input line stays open).
    fn ask(&mut self, input: Input, text: String) -> Outcome {
        let wait = if self.in_flight() {
            Some(strings::STILL_ANSWERING)
        } else if self.snapshot().is_none() {
            Some(strings::STILL_PROBING)
        } else {
            None
        };
        if let Some(why) = wait {
            self.note = Some(why.to_string());
            self.modal = Some(Modal::Input(input));
            return Outcome::redraw();
        }
        self.push(Speaker::You, text.clone());
        self.question = Some(Question {
            text: text.clone(),
            round: 1,
            prompt: text.clone(),
        });
        self.work = Work::Waiting;
        Outcome::act(Some(AppAction::Ask(Ask {
            prompt: text,
            round: 1,
        })))
    }

    fn on_intent(&mut self, intent: Option<Intent>) -> Outcome {
        let Some(intent) = intent else {
            return Outcome::default();
        };
        let action = match intent {
            Intent::Quit => Some(AppAction::Quit),
            Intent::Help => {
                self.modal = Some(Modal::Help);
                None
            }
            Intent::Ask => {
                self.modal = Some(Modal::Input(Input::new(InputKind::Ask, String::new())));
                None
            }
            Intent::Up => {
                self.step(-1);
                None
            }
            Intent::Down => {
                self.step(1);
                None
            }
            Intent::PageUp => {
                self.step(-self.page());
                None
            }
            Intent::PageDown => {
                self.step(self.page());
                None
            }
            Intent::NextPane | Intent::PrevPane => {
                self.focus = self.focus.step(intent == Intent::NextPane);
                None
            }
            Intent::Activate => self.activate(),
            Intent::Details => {
                self.open_details();
                None
            }
            Intent::Back => {
                self.details = false;
                None
            }
            Intent::Edit => {
                if let Some(p) = self.proposals.get(self.proposal) {
                    self.modal = Some(Modal::Input(Input::new(
                        InputKind::Edit(self.proposal),
                        p.command().to_string(),
                    )));
                }
                None
            }
            Intent::Explain => {
                let command = self
                    .proposals
                    .get(self.proposal)
                    .map(|p| p.command().to_string());
                // The guard knows every argument; no need to ask the model.
                if let Some(command) = command {
                    self.push(Speaker::You, format!("explain: {command}"));
                    self.push(Speaker::Guard, guard_explanation(&command));
                }
                None
            }
            Intent::Copy => self.copy_text().map(|text| {
                self.note = Some(strings::copied(text.len()));
                AppAction::Copy(text)
            }),
            Intent::Refresh => Some(AppAction::Refresh),
        };
        Outcome::act(action)
    }

    fn page(&self) -> isize {
        match self.focus {
            Focus::Conversation => layout::inner(self.areas(self.size).conversation)
                .height
                .max(1) as isize,
            _ => PAGE as isize,
        }
    }

    /// Where the panes go on a screen of `area` (for drawing and scrolling).
    pub fn areas(&self, area: Rect) -> layout::Areas {
        let proposal_lines = self.proposals.len() * PROPOSAL_LINES;
        layout::areas(area, self.gpu_rows(), proposal_lines)
    }

    fn gpu_rows(&self) -> usize {
        self.snapshot().map_or(0, |s| s.gpus.len())
    }

    /// Moves the selection (or scroll) of the focused pane by `delta` rows.
    fn step(&mut self, delta: isize) {
        fn moved(i: usize, delta: isize, len: usize) -> usize {
            i.saturating_add_signed(delta).min(len.saturating_sub(1))
        }
        match self.focus {
            Focus::Gpus => self.gpu = moved(self.gpu, delta, self.gpu_rows()),
            Focus::Findings if self.details => {
                self.details_scroll = self
                    .details_scroll
                    .saturating_add_signed(delta.clamp(-100, 100) as i16);
            }
            Focus::Findings => {
                self.finding = moved(self.finding, delta, self.findings().len());
                self.sync_proposals();
            }
            Focus::Proposals => self.proposal = moved(self.proposal, delta, self.proposals.len()),
            Focus::Conversation => {
                // Up scrolls back (away from the bottom).
                self.scroll_back = self.scroll_back.saturating_add_signed(-delta);
                self.clamp_scroll();
            }
        }
    }

    /// Keeps the conversation's scroll within its wrapped lines.
    fn clamp_scroll(&mut self) {
        let inner = layout::inner(self.areas(self.size).conversation);
        let total = self.conversation_lines(inner.width).len();
        self.scroll_back = self
            .scroll_back
            .min(total.saturating_sub(usize::from(inner.height)));
    }

    fn open_details(&mut self) {
        if self.focus == Focus::Findings && !self.findings().is_empty() {
            self.details = true;
            self.details_scroll = 0;
        }
    }

    fn activate(&mut self) -> Option<AppAction> {
        match self.focus {
            Focus::Gpus => {
                let index = self
                    .snapshot()
                    .and_then(|s| s.gpus.get(self.gpu))
                    .map(|g| g.index);
                if let Some(i) = self
                    .findings()
                    .iter()
                    .position(|f| f.gpu.is_some() && f.gpu == index)
                {
                    self.finding = i;
                    self.details = false;
                    self.focus = Focus::Findings;
                    self.sync_proposals();
                }
                None
            }
            Focus::Findings if self.details => {
                self.focus = Focus::Proposals;
                None
            }
            Focus::Findings => {
                self.open_details();
                None
            }
            Focus::Proposals => self.request_run(self.proposal),
            Focus::Conversation => None,
        }
    }

    /// Asks to run proposal `i`: runs read-only ones, confirms the others,
    /// never runs blocked ones. Stricter than the line front ends' policy
    /// (`copilot::approval`): Enter has already approved, so heavy commands
    /// also need the program name typed, not a `y` that is easy to hit twice.
    fn request_run(&mut self, i: usize) -> Option<AppAction> {
        let p = self.proposals.get(i)?;
        let program = p.program().map(str::to_string);
        match (p.tier(), program) {
            (Tier::ReadOnly, _) => self.run(i),
            (Tier::Heavy | Tier::StateChanging, Some(binary)) => {
                self.modal = Some(Modal::Confirm(Confirm {
                    proposal: i,
                    binary,
                    typed: String::new(),
                    mismatch: false,
                }));
                None
            }
            // Blocked, or (never from the guard) allowed without a program.
            (_, _) => {
                self.modal = Some(Modal::Notice(strings::blocked(&p.verdict.rule)));
                None
            }
        }
    }

    /// Runs proposal `i` (allowed and confirmed), saying so in the status line.
    fn run(&mut self, i: usize) -> Option<AppAction> {
        let command = self.proposals.get(i)?.command();
        self.note = Some(strings::running(command));
        Some(AppAction::Run(i))
    }

    /// The text `c` copies: the selected proposal's command in the
    /// proposals pane, the transcript in the conversation, else the
    /// selected finding.
    fn copy_text(&self) -> Option<String> {
        match self.focus {
            Focus::Proposals => self
                .proposals
                .get(self.proposal)
                .map(|p| p.command().to_string()),
            Focus::Conversation => {
                let lines: Vec<String> = self
                    .conversation_lines(u16::MAX)
                    .into_iter()
                    .map(|(_, l)| l)
                    .collect();
                (!lines.is_empty()).then(|| lines.join("\n"))
            }
            Focus::Gpus | Focus::Findings => self.findings().get(self.finding).map(finding_text),
        }
    }
}

/// A finding as plain text: the same sections the details pane shows.
pub fn finding_text(f: &Finding) -> String {
    let mut out = format!("[{}] {}\n", f.severity.as_str(), f.title);
    for (k, v) in &f.evidence {
        out.push_str(&format!("{k}={v}\n"));
    }
    out.push_str(&f.why);
    out.push('\n');
    for argv in &f.commands {
        out.push_str(&format!("$ {}\n", crate::guard::command_line(argv)));
    }
    out
}

/// The guard's explanation of `command`: one `arg: meaning` line each.
fn guard_explanation(command: &str) -> String {
    guard::explain(command)
        .iter()
        .map(|a| format!("{}: {}", a.arg, a.meaning))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ratatui::crossterm::event::KeyModifiers;

    use super::*;
    use crate::probe::{Gpu, Host, Snapshot, Source};

    fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn ch(c: char) -> Event {
        key(KeyCode::Char(c))
    }

    fn type_text(app: &mut App, text: &str) {
        for c in text.chars() {
            app.update(ch(c));
        }
    }

    fn finding(id: &str, severity: Severity, gpu: Option<u32>, commands: &[&str]) -> Finding {
        Finding {
            id: id.into(),
            severity,
            gpu,
            title: format!("{id} title"),
            evidence: BTreeMap::from([("k".to_string(), "v".to_string())]),
            commands: commands
                .iter()
                .map(|c| shell_words::split(c).unwrap())
                .collect(),
            why: format!("{id} why"),
        }
    }

    fn snapshot(gpus: u32) -> Snapshot {
        Snapshot {
            schema_version: crate::probe::SCHEMA_VERSION,
            taken_at: "2026-01-01T00:00:00Z".into(),
            source: Source::Simulated {
                name: "test".into(),
            },
            host: Host {
                hostname: "node1".into(),
                ..Default::default()
            },
            nvidia: None,
            gpus: (0..gpus)
                .map(|i| Gpu {
                    index: i,
                    name: format!("GPU {i}"),
                    ..Default::default()
                })
                .collect(),
            pci_gpus: Vec::new(),
            amd_gpus: Vec::new(),
            xid_events: Vec::new(),
            kernel_log_source: None,
            unavailable: Vec::new(),
        }
    }

    fn refresh(findings: Vec<Finding>) -> Event {
        Event::SnapshotReady(Box::new(Refresh {
            snapshot: snapshot(2),
            findings,
            time: "12:00:00".into(),
            at: Instant::now(),
        }))
    }

    fn app_with(findings: Vec<Finding>) -> App {
        let mut app = App::new(
            Theme {
                color: false,
                ascii: true,
            },
            Duration::from_secs(2),
            Rect::new(0, 0, 80, 24),
        );
        app.update(refresh(findings));
        app
    }

    fn two_findings() -> Vec<Finding> {
        vec![
            finding(
                "a",
                Severity::Critical,
                Some(1),
                &["nvidia-smi -q", "nvidia-smi -r -i 1"],
            ),
            finding("b", Severity::Warning, None, &["dmesg"]),
        ]
    }

    #[test]
    fn selection_moves_and_stops_at_the_ends() {
        let mut app = app_with(two_findings());
        assert_eq!(app.focus(), Focus::Findings);
        app.update(ch('k'));
        assert_eq!(app.selected_finding(), 0);
        app.update(ch('j'));
        app.update(key(KeyCode::Down));
        assert_eq!(app.selected_finding(), 1);
        assert_eq!(
            app.proposals()[0].command(),
            "dmesg",
            "proposals follow the finding"
        );
    }

    #[test]
    fn selection_follows_the_finding_across_refreshes() {
        let mut app = app_with(two_findings());
        app.update(ch('j'));
        let mut reordered = two_findings();
        reordered.reverse();
        app.update(refresh(reordered));
        assert_eq!(app.findings()[app.selected_finding()].id, "b");
    }

    #[test]
    fn tab_cycles_focus_both_ways() {
        let mut app = app_with(two_findings());
        app.update(key(KeyCode::Tab));
        assert_eq!(app.focus(), Focus::Proposals);
        app.update(key(KeyCode::Tab));
        app.update(key(KeyCode::Tab));
        assert_eq!(app.focus(), Focus::Gpus);
        app.update(Event::Key(KeyEvent::new(
            KeyCode::BackTab,
            KeyModifiers::SHIFT,
        )));
        assert_eq!(app.focus(), Focus::Conversation);
    }

    #[test]
    fn enter_opens_details_and_esc_closes_them() {
        let mut app = app_with(two_findings());
        app.update(key(KeyCode::Enter));
        assert_eq!(app.details().map(|f| f.id.as_str()), Some("a"));
        app.update(key(KeyCode::Esc));
        assert!(app.details().is_none());
        app.update(key(KeyCode::Right));
        assert!(app.details().is_some());
    }

    #[test]
    fn enter_on_a_gpu_jumps_to_its_finding() {
        let mut app = app_with(two_findings());
        app.update(key(KeyCode::BackTab));
        assert_eq!(app.focus(), Focus::Gpus);
        app.update(ch('j'));
        app.update(key(KeyCode::Enter));
        assert_eq!(app.focus(), Focus::Findings);
        assert_eq!(app.findings()[app.selected_finding()].gpu, Some(1));
    }

    fn focus_proposals(app: &mut App) {
        app.update(key(KeyCode::Tab));
        assert_eq!(app.focus(), Focus::Proposals);
    }

    fn set_command(app: &mut App, i: usize, command: &str) {
        app.proposals[i] = Proposal::new(command, "test".into());
    }

    #[test]
    fn proposals_carry_the_guards_verdict() {
        let app = app_with(two_findings());
        let tiers: Vec<Tier> = app.proposals().iter().map(Proposal::tier).collect();
        assert_eq!(tiers, [Tier::ReadOnly, Tier::StateChanging]);
        assert_eq!(app.proposals()[1].program(), Some("nvidia-smi"));
    }

    #[test]
    fn read_only_runs_at_once() {
        let mut app = app_with(two_findings());
        focus_proposals(&mut app);
        assert_eq!(app.proposals()[0].tier(), Tier::ReadOnly);
        assert_eq!(
            app.update(key(KeyCode::Enter)).action,
            Some(AppAction::Run(0))
        );
        assert!(app.modal().is_none());
        assert_eq!(app.note(), Some("running: nvidia-smi -q"));
    }

    #[test]
    fn state_changing_needs_the_exact_program_name() {
        let mut app = app_with(two_findings());
        focus_proposals(&mut app);
        app.update(ch('j'));
        assert_eq!(app.proposals()[1].tier(), Tier::StateChanging);
        assert_eq!(app.update(key(KeyCode::Enter)).action, None);
        let Some(Modal::Confirm(c)) = app.modal() else {
            panic!("no confirmation: {:?}", app.modal())
        };
        assert_eq!(c.binary, "nvidia-smi");
        type_text(&mut app, "nvidia-sm");
        assert_eq!(
            app.update(key(KeyCode::Enter)).action,
            None,
            "a prefix is not enough"
        );
        assert!(matches!(app.modal(), Some(Modal::Confirm(c)) if c.mismatch && c.typed.is_empty()));
        type_text(&mut app, "Nvidia-smi");
        assert_eq!(app.update(key(KeyCode::Enter)).action, None, "case matters");
        type_text(&mut app, "nvidia-smi");
        assert_eq!(
            app.update(key(KeyCode::Enter)).action,
            Some(AppAction::Run(1))
        );
        assert!(app.modal().is_none());
    }

    #[test]
    fn heavy_is_confirmed_too_and_esc_cancels() {
        let mut app = app_with(two_findings());
        focus_proposals(&mut app);
        set_command(&mut app, 0, "dcgmi diag -r 3");
        assert_eq!(app.proposals()[0].tier(), Tier::Heavy);
        assert_eq!(app.update(key(KeyCode::Enter)).action, None);
        assert!(matches!(app.modal(), Some(Modal::Confirm(c)) if c.binary == "dcgmi"));
        assert_eq!(app.update(key(KeyCode::Esc)).action, None);
        assert!(app.modal().is_none(), "Esc cancels");
    }

    #[test]
    fn blocked_never_runs() {
        let mut app = app_with(two_findings());
        focus_proposals(&mut app);
        set_command(&mut app, 0, "rm -rf /");
        assert_eq!(app.proposals()[0].tier(), Tier::Blocked);
        let mut actions = Vec::new();
        for e in [
            key(KeyCode::Enter),
            ch('r'),
            ch('m'),
            key(KeyCode::Enter),
            key(KeyCode::Enter),
        ] {
            actions.extend(app.update(e).action);
        }
        assert!(
            !actions.iter().any(|a| matches!(a, AppAction::Run(_))),
            "{actions:?}"
        );
    }

    #[test]
    fn blocked_shows_the_guards_rule() {
        let mut app = app_with(two_findings());
        focus_proposals(&mut app);
        set_command(&mut app, 0, "nvidia-smi -q; reboot");
        let rule = app.proposals()[0].verdict.rule.clone();
        app.update(key(KeyCode::Enter));
        assert!(
            matches!(app.modal(), Some(Modal::Notice(n)) if n.contains(&rule)),
            "{rule}"
        );
        app.update(ch('z'));
        assert!(app.modal().is_none(), "any key closes a notice");
    }

    #[test]
    fn ask_puts_the_question_in_the_conversation_and_emits_ask() {
        let mut app = app_with(Vec::new());
        app.update(ch('/'));
        type_text(&mut app, "why hot?q");
        app.update(key(KeyCode::Backspace));
        assert!(
            matches!(app.modal(), Some(Modal::Input(i)) if i.text == "why hot?"),
            "q is text here"
        );
        let out = app.update(key(KeyCode::Enter));
        assert_eq!(out.action, Some(ask_action("why hot?", 1)));
        assert_eq!(
            app.conversation(),
            [Entry {
                speaker: Speaker::You,
                text: "why hot?".into()
            }]
        );
        assert!(app.modal().is_none());
        assert_eq!(app.work(), Work::Waiting, "queued while the model loads");
    }

    #[test]
    fn empty_question_is_not_sent() {
        let mut app = app_with(Vec::new());
        app.update(ch('/'));
        type_text(&mut app, "  ");
        assert_eq!(app.update(key(KeyCode::Enter)).action, None);
        assert!(app.conversation().is_empty());
    }

    #[test]
    fn input_edits_in_the_middle() {
        let mut app = app_with(Vec::new());
        app.update(ch('/'));
        type_text(&mut app, "ac");
        app.update(key(KeyCode::Left));
        type_text(&mut app, "b");
        app.update(key(KeyCode::Home));
        app.update(key(KeyCode::Delete));
        assert!(matches!(app.modal(), Some(Modal::Input(i)) if i.text == "bc" && i.cursor == 0));
    }

    #[test]
    fn edit_replaces_the_command_and_judges_it_again() {
        let mut app = app_with(two_findings());
        focus_proposals(&mut app);
        app.update(ch('e'));
        assert!(matches!(app.modal(), Some(Modal::Input(i)) if i.text == "nvidia-smi -q"));
        type_text(&mut app, " -d ECC");
        app.update(key(KeyCode::Enter));
        assert_eq!(app.proposals()[0].command(), "nvidia-smi -q -d ECC");
        assert_eq!(app.proposals()[0].tier(), Tier::ReadOnly);
        app.update(ch('e'));
        for _ in 0.."nvidia-smi -q -d ECC".len() {
            app.update(key(KeyCode::Backspace));
        }
        type_text(&mut app, "nvidia-smi -r -i 0");
        app.update(key(KeyCode::Enter));
        assert_eq!(app.proposals()[0].tier(), Tier::StateChanging);
        app.update(refresh(two_findings()));
        assert_eq!(
            app.proposals()[0].command(),
            "nvidia-smi -r -i 0",
            "a refresh keeps edits"
        );
    }

    #[test]
    fn explain_and_copy_act_on_the_selected_proposal() {
        let mut app = app_with(two_findings());
        focus_proposals(&mut app);
        assert_eq!(app.update(ch('x')).action, None, "the guard explains");
        let guard = app.conversation().last().expect("an explanation");
        assert_eq!(guard.speaker, Speaker::Guard);
        assert!(guard.text.starts_with("nvidia-smi: "), "{}", guard.text);
        assert!(guard.text.contains("\n-q: "), "{}", guard.text);
        assert_eq!(
            app.update(ch('c')).action,
            Some(AppAction::Copy("nvidia-smi -q".into()))
        );
        assert!(app.note().is_some_and(|n| n.contains("13 bytes")));
    }

    fn ask_action(prompt: &str, round: usize) -> AppAction {
        AppAction::Ask(Ask {
            prompt: prompt.into(),
            round,
        })
    }

    fn text(piece: &str, tokens: usize) -> Event {
        Event::Model(Message::Text {
            piece: piece.into(),
            tokens,
            tokens_per_s: 10.0,
        })
    }

    fn reply(answer: &str, commands: &[&str]) -> Event {
        Event::Model(Message::Done(Ok(crate::copilot::Reply {
            answer: answer.into(),
            proposals: commands
                .iter()
                .map(|c| crate::copilot::Proposal::new(*c, format!("why {c}")))
                .collect(),
            model: "tiny".into(),
            timings: crate::copilot::Timings {
                tokens_per_s: 12.5,
                ..Default::default()
            },
        })))
    }

    fn loaded() -> Event {
        Event::Model(Message::Loaded {
            model: "tiny".into(),
            seconds: 0.5,
        })
    }

    fn ask(app: &mut App, question: &str) -> Option<AppAction> {
        app.update(ch('/'));
        type_text(app, question);
        app.update(key(KeyCode::Enter)).action
    }

    fn done(command: &str) -> Event {
        Event::CommandDone(CommandResult {
            command: command.into(),
            output: "GPU 2: 85C\n".into(),
            status: "exit code 0".into(),
            exit_code: Some(0),
            duration_ms: 3,
            dropped_bytes: 0,
            error: None,
        })
    }

    #[test]
    fn tokens_stream_into_one_answer_and_the_reply_replaces_it() {
        let mut app = app_with(Vec::new());
        app.update(loaded());
        ask(&mut app, "q");
        app.update(text("hel", 1));
        app.update(text("lo", 2));
        assert_eq!(app.conversation().last().unwrap().text, "hello");
        assert_eq!(app.work(), Work::Generating(2, 10.0));
        app.update(reply("hello.", &[]));
        app.update(loaded());
        ask(&mut app, "r");
        app.update(text("next", 1));
        let texts: Vec<_> = app.conversation().iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["q", "hello.", strings::NO_COMMANDS, "r", "next"]);
    }

    #[test]
    fn the_model_state_follows_the_worker() {
        let mut app = app_with(Vec::new());
        assert_eq!(app.model(), &ModelState::Loading);
        app.update(loaded());
        assert!(
            matches!(app.model(), ModelState::Ready { name, last_rate: None } if name == "tiny")
        );
        ask(&mut app, "q");
        app.update(Event::Model(Message::Prefill { done: 3, total: 9 }));
        assert_eq!(app.work(), Work::Prefill(3, 9));
        app.update(reply("a", &["nvidia-smi -L"]));
        assert_eq!(app.work(), Work::Idle);
        assert!(matches!(app.model(), ModelState::Ready { last_rate: Some(r), .. } if *r == 12.5));
        app.update(Event::Model(Message::LoadFailed("no model: x".into())));
        assert_eq!(app.model(), &ModelState::Failed("no model: x".into()));
    }

    #[test]
    fn the_reply_brings_its_proposals_and_focus() {
        let mut app = app_with(two_findings());
        ask(&mut app, "why is GPU 1 slow?");
        app.update(reply(
            "it is hot",
            &["nvidia-smi -q -d TEMPERATURE -i 1", "nvidia-smi -r -i 1"],
        ));
        assert!(app.proposals_from_copilot());
        assert_eq!(app.focus(), Focus::Proposals);
        let commands: Vec<_> = app.proposals().iter().map(Proposal::command).collect();
        assert_eq!(
            commands,
            ["nvidia-smi -q -d TEMPERATURE -i 1", "nvidia-smi -r -i 1"]
        );
        assert_eq!(app.proposals()[1].tier(), Tier::StateChanging);
        assert_eq!(
            app.proposals()[0].purpose,
            "why nvidia-smi -q -d TEMPERATURE -i 1"
        );
        assert!(matches!(
            app.history(),
            [Turn::User(q), Turn::Assistant(a)] if q == "why is GPU 1 slow?" && a == "it is hot"
        ));
        app.update(refresh(two_findings()));
        assert!(app.proposals_from_copilot(), "a refresh keeps them");
        assert_eq!(
            app.update(key(KeyCode::Enter)).action,
            Some(AppAction::Run(0)),
            "Enter runs the first at once"
        );
        app.update(key(KeyCode::BackTab));
        app.update(ch('j'));
        assert!(
            !app.proposals_from_copilot(),
            "picking a finding shows its commands"
        );
        assert_eq!(app.proposals()[0].command(), "dmesg");
    }

    #[test]
    fn one_question_at_a_time() {
        let mut app = app_with(Vec::new());
        assert!(ask(&mut app, "first").is_some());
        assert_eq!(ask(&mut app, "second"), None);
        assert_eq!(app.note(), Some(strings::STILL_ANSWERING));
        assert!(
            matches!(app.modal(), Some(Modal::Input(i)) if i.text == "second"),
            "the question is kept"
        );
        app.update(key(KeyCode::Esc));
        app.update(reply("a", &[]));
        assert_eq!(ask(&mut app, "third"), Some(ask_action("third", 1)));
    }

    #[test]
    fn no_question_before_the_first_snapshot() {
        let mut app = App::new(
            Theme {
                color: false,
                ascii: true,
            },
            Duration::from_secs(2),
            Rect::new(0, 0, 80, 24),
        );
        assert_eq!(ask(&mut app, "q"), None);
        assert_eq!(app.note(), Some(strings::STILL_PROBING));
    }

    #[test]
    fn esc_and_ctrl_c_cancel_a_generation_instead_of_quitting() {
        let ctrl_c = || Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        let mut app = app_with(two_findings());
        app.update(loaded());
        ask(&mut app, "q");
        app.update(text("par", 1));
        assert_eq!(
            app.update(key(KeyCode::Esc)).action,
            Some(AppAction::Cancel)
        );
        assert_eq!(app.work(), Work::Cancelling);
        app.update(text("tial", 2));
        assert_eq!(app.work(), Work::Cancelling, "stays cancelling until done");
        assert_eq!(app.update(ctrl_c()).action, Some(AppAction::Cancel));
        app.update(Event::Model(Message::Done(Err(worker::CANCELLED.into()))));
        assert_eq!(app.work(), Work::Idle);
        assert_eq!(app.conversation().last().unwrap().text, strings::CANCELLED);
        app.update(done("nvidia-smi -q"));
        assert_eq!(
            app.work(),
            Work::Idle,
            "a cancelled question has no follow-up"
        );
        app.update(key(KeyCode::Enter));
        assert!(app.details().is_some());
        assert_eq!(
            app.update(key(KeyCode::Esc)).action,
            None,
            "Esc is Back again"
        );
        assert!(app.details().is_none());
        assert_eq!(app.update(ctrl_c()).action, Some(AppAction::Quit));
    }

    #[test]
    fn outputs_go_back_to_the_model_for_the_rounds_left() {
        let mut app = app_with(Vec::new()).with_rounds(2);
        app.update(loaded());
        ask(&mut app, "why slow?");
        app.update(reply("hot", &["nvidia-smi -q"]));
        let out = app.update(done("nvidia-smi -q"));
        assert_eq!(out.action, Some(ask_action(&follow_up("why slow?"), 2)));
        assert!(matches!(
            app.history().last(),
            Some(Turn::CommandOutput { command, exit_code: Some(0), output })
                if command == "nvidia-smi -q" && output == "GPU 2: 85C\n"
        ));
        app.update(reply("GPU 2 is at 85C", &["nvidia-smi -q"]));
        assert!(matches!(
            &app.history()[app.history().len() - 2..],
            [Turn::User(p), Turn::Assistant(_)] if *p == follow_up("why slow?")
        ));
        assert_eq!(
            app.update(done("nvidia-smi -q")).action,
            None,
            "2 rounds at most"
        );
        assert!(matches!(
            app.history().last(),
            Some(Turn::CommandOutput { .. })
        ));
    }

    #[test]
    fn no_follow_up_while_answering_or_without_a_model() {
        let mut app = app_with(Vec::new());
        ask(&mut app, "q");
        assert_eq!(
            app.update(done("dmesg")).action,
            None,
            "an answer is in flight"
        );
        app.update(Event::Model(Message::LoadFailed("no model: x".into())));
        app.update(Event::Model(Message::Done(Err("no model: x".into()))));
        assert_eq!(
            app.conversation().last().unwrap().text,
            "no answer: no model: x"
        );
        assert_eq!(app.update(done("dmesg")).action, None);
    }

    #[test]
    fn a_new_answer_closes_a_confirmation_of_the_old_list() {
        let mut app = app_with(two_findings());
        focus_proposals(&mut app);
        app.update(ch('j'));
        ask(&mut app, "q");
        app.update(key(KeyCode::Enter));
        assert!(matches!(app.modal(), Some(Modal::Confirm(_))));
        app.update(reply("a", &["nvidia-smi -L", "nvidia-smi -r -i 0"]));
        assert_eq!(
            app.modal(),
            Some(&Modal::Notice(strings::PROPOSALS_CHANGED.into()))
        );
        app.update(ch('z'));
        assert!(app.modal().is_none(), "any key closes the notice");
        assert_eq!(
            app.update(key(KeyCode::Enter)).action,
            Some(AppAction::Run(0)),
            "the new list's first proposal is read-only"
        );
    }

    #[test]
    fn audit_warnings_show_as_notes() {
        let mut app = app_with(Vec::new());
        app.update(Event::Warning("sigma: warning: audit log x: denied".into()));
        assert_eq!(app.conversation()[0].speaker, Speaker::Note);
    }

    #[test]
    fn conversation_scrolls_within_its_lines() {
        let mut app = app_with(Vec::new());
        for i in 0..40 {
            app.push_note(&format!("line {i}"));
        }
        app.update(key(KeyCode::Tab));
        app.update(key(KeyCode::Tab));
        assert_eq!(app.focus(), Focus::Conversation);
        for _ in 0..100 {
            app.update(ch('k'));
        }
        let inner = layout::inner(layout::areas(app.size(), 2, 0).conversation);
        assert_eq!(app.scroll_back(), 40 - usize::from(inner.height));
        app.update(key(KeyCode::PageDown));
        assert!(app.scroll_back() < 40 - usize::from(inner.height));
    }

    #[test]
    fn help_opens_and_keys_do_not_leak_through() {
        let mut app = app_with(two_findings());
        app.update(ch('?'));
        assert_eq!(app.modal(), Some(&Modal::Help));
        assert_eq!(app.update(ch('j')).action, None);
        assert_eq!(app.selected_finding(), 0);
        app.update(ch('q'));
        assert!(app.modal().is_none(), "q closes help without quitting");
    }

    #[test]
    fn quit_from_keys_and_signals() {
        let mut app = app_with(Vec::new());
        assert_eq!(app.update(ch('q')).action, Some(AppAction::Quit));
        app.update(ch('/'));
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(
            app.update(ctrl_c).action,
            Some(AppAction::Quit),
            "even from an input line"
        );
        assert_eq!(app.update(Event::Terminate).action, Some(AppAction::Quit));
    }

    #[test]
    fn tick_redraws_only_when_staleness_changes() {
        let mut app = app_with(Vec::new());
        let at = app.refresh.as_ref().map(|r| r.at).unwrap();
        assert!(!app.update(Event::Tick(at + Duration::from_secs(1))).redraw);
        assert!(app.update(Event::Tick(at + Duration::from_secs(6))).redraw);
        assert_eq!(app.stale_secs(), Some(6));
    }

    #[test]
    fn command_output_lands_in_the_conversation() {
        let mut app = app_with(two_findings());
        focus_proposals(&mut app);
        app.update(key(KeyCode::Enter));
        assert!(app.note().is_some_and(|n| n.starts_with("running")));
        app.update(done("nvidia-smi -L"));
        assert_eq!(app.conversation()[0].speaker, Speaker::Run);
        assert_eq!(app.conversation()[1].text, "GPU 2: 85C\nexit code 0");
        assert_eq!(app.note(), None, "the running note is gone");
    }

    #[test]
    fn the_program_to_type_is_the_first_programs_file_name() {
        let p = Proposal::new("/usr/bin/nvidia-smi -r -i 0", String::new());
        assert_eq!(p.program(), Some("nvidia-smi"));
        let p = Proposal::new("nvidia-smi -q | grep -i temp", String::new());
        assert_eq!(p.program(), Some("nvidia-smi"));
    }
}
