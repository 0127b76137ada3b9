//! The TUI's state and how events change it. Nothing here draws.
//!
//! [`App::update`] takes one [`Event`] and returns an [`Outcome`]: whether
//! the screen must be redrawn, and at most one [`AppAction`] for the main
//! loop to carry out (quit, refresh, ask, cancel, run, copy). The app never
//! does I/O itself, so every transition is testable without a terminal.
//!
//! # Where each part lives
//! - here: the panes, the focus, the selection, keys and modals;
//! - [`conversation`]: questions to the copilot, its streamed answers, the
//!   follow-up rounds after commands ran, and the model's state;
//! - [`proposals`]: the commands offered (a finding's or the copilot's),
//!   their confirmation, and the request to run one.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;

use super::event::{Event, Refresh};
use super::input::{Input, InputKind};
use super::keys::{self, Intent};
use super::layout;
use super::strings;
use super::theme::Theme;
use crate::checks::{Finding, Severity};
use crate::copilot::Turn;
use crate::probe::Snapshot;
use crate::probe::interpret::Fact;

mod conversation;
mod proposals;
#[cfg(test)]
mod tests;

pub use conversation::{Ask, Entry, ModelState, Speaker, Work};
pub use proposals::{Confirm, PROPOSAL_LINES, Proposal};

use conversation::Question;
use proposals::{Source, guard_explanation};

/// Rows moved by PageUp/PageDown in lists.
const PAGE: usize = 10;

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
    /// What the commands run for the current question showed.
    facts: Vec<Fact>,
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
            facts: Vec::new(),
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

    /// The open modal.
    pub fn modal(&self) -> Option<&Modal> {
        self.modal.as_ref()
    }

    /// The note in the status line.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
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
