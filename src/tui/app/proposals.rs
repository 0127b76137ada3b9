//! The proposals pane: the commands offered (the selected finding's, or
//! the copilot's last reply's), each with the guard's verdict, and what
//! it takes to run one.
//!
//! Every proposal carries the guard's [`Verdict`] (`crate::guard::check`),
//! made again whenever the command is edited. `Enter` on a proposal asks to
//! run it; what happens depends on the verdict's [`Tier`]:
//! - read-only: [`AppAction::Run`] at once;
//! - heavy or state-changing: a confirmation modal opens and the action
//!   comes only after the program's name is typed exactly;
//! - blocked: a notice gives the guard's rule; a blocked command never
//!   produces `Run`.

use super::super::input::{Input, InputKind};
use super::super::strings;
use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::{App, AppAction, FindingKey, Modal, Outcome, key_of};
use crate::guard::{self, Tier, Verdict};

/// Screen lines per proposal: the command, then the guard's tier and rule.
pub const PROPOSAL_LINES: usize = 2;

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

/// Where the proposals list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// Nothing yet.
    None,
    /// The commands of this finding.
    Finding(FindingKey),
    /// The copilot's last reply.
    Copilot,
}

impl App {
    /// The proposals for the selected finding.
    pub fn proposals(&self) -> &[Proposal] {
        &self.proposals
    }

    /// Selected proposal index.
    pub fn selected_proposal(&self) -> usize {
        self.proposal
    }

    /// True when the proposals are the copilot's, not a finding's.
    pub fn proposals_from_copilot(&self) -> bool {
        self.proposals_for == Source::Copilot
    }

    /// Shows the selected finding's commands, rebuilt when the finding
    /// changed; kept (with any edits) otherwise.
    pub(super) fn sync_proposals(&mut self) {
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
    pub(super) fn close_proposal_modals(&mut self) {
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

    pub(super) fn on_confirm_key(&mut self, mut confirm: Confirm, key: &KeyEvent) -> Outcome {
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

    /// Asks to run proposal `i`: runs read-only ones, confirms the others,
    /// never runs blocked ones. Stricter than the line front ends' policy
    /// (`copilot::approval`): Enter has already approved, so heavy commands
    /// also need the program name typed, not a `y` that is easy to hit twice.
    pub(super) fn request_run(&mut self, i: usize) -> Option<AppAction> {
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
    pub(super) fn run(&mut self, i: usize) -> Option<AppAction> {
        let command = self.proposals.get(i)?.command();
        self.note = Some(strings::running(command));
        Some(AppAction::Run(i))
    }
}

/// The guard's explanation of `command`: one `arg: meaning` line each.
pub(super) fn guard_explanation(command: &str) -> String {
    guard::explain(command)
        .iter()
        .map(|a| format!("{}: {}", a.arg, a.meaning))
        .collect::<Vec<_>>()
        .join("\n")
}
