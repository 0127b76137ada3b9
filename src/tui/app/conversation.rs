//! The conversation with the copilot: the user's questions, the answers
//! streaming in, the follow-up rounds after commands ran, and the model's
//! state as the status line shows it.
//!
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

use super::super::event::CommandResult;
use super::super::input::Input;
use super::super::layout;
use super::super::strings;
use super::proposals::Source;
use super::{App, AppAction, Focus, Modal, Outcome, Proposal};
use crate::copilot::Turn;
use crate::copilot::worker::{self, Message};
use crate::probe::interpret::Fact;
use crate::session::{command_turn, follow_up};

/// Most facts shown after a command ran.
const READ_FACTS: usize = 6;

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
    /// The facts Sigma read from a command's output (what the diagnosis cites).
    Read,
}

/// One entry of the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Who.
    pub speaker: Speaker,
    /// What (may span lines).
    pub text: String,
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
pub(super) struct Question {
    /// The user's words.
    text: String,
    /// Answers asked for so far (1 after the question itself).
    round: usize,
    /// The prompt sent for the answer in flight or last received.
    prompt: String,
}

impl App {
    /// The conversation, oldest first.
    pub fn conversation(&self) -> &[Entry] {
        &self.conversation
    }

    /// Lines scrolled back from the bottom of the conversation.
    pub fn scroll_back(&self) -> usize {
        self.scroll_back
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

    /// What the commands run for the current question showed.
    pub fn facts(&self) -> &[Fact] {
        &self.facts
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
                Speaker::Read => strings::who::READ,
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

    /// Scrolls so that the answer being shown starts at the top of the
    /// conversation when it is taller than the pane: an answer is read from
    /// its first line (the rest is a scroll away).
    fn show_answer_from_its_start(&mut self) {
        let inner = layout::inner(self.areas(self.size).conversation);
        let height = usize::from(inner.height);
        let lines = self.conversation_lines(inner.width);
        let last = lines.last().map(|(s, _)| *s);
        let answer_lines = lines
            .iter()
            .rev()
            .take_while(|(s, _)| Some(*s) == last && *s == Speaker::Model)
            .count();
        self.scroll_back = answer_lines.saturating_sub(height);
    }

    /// Adds a note to the conversation (for the main loop's messages).
    pub fn push_note(&mut self, text: &str) {
        self.push(Speaker::Note, text.to_string());
    }

    pub(super) fn push(&mut self, speaker: Speaker, text: String) {
        self.conversation.push(Entry { speaker, text });
        self.scroll_back = 0;
    }

    /// Shows the output, feeds it to the copilot's history, and asks the
    /// follow-up when the current question has rounds left.
    pub(super) fn on_command_done(&mut self, r: CommandResult) -> Option<AppAction> {
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
        let snapshot = self.snapshot().cloned().unwrap_or_default();
        let turn = command_turn(&r.command, r.ended, output, &snapshot);
        if let Turn::CommandOutput { reading, .. } = &turn {
            self.facts.extend(reading.facts.iter().cloned());
            // The output is shown above: what was read from it, when anything was.
            if !reading.facts.is_empty() {
                self.push(Speaker::Read, reading.summary(READ_FACTS));
            }
        }
        self.history.push(turn);
        self.follow_up()
    }

    /// The next round of the current question, when it has one left, no
    /// answer is in flight and the model can answer.
    pub(super) fn follow_up(&mut self) -> Option<AppAction> {
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
    pub(super) fn on_model(&mut self, message: Message) -> Outcome {
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
                self.show_answer_from_its_start();
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
    pub(super) fn on_reply(&mut self, result: Result<crate::copilot::Reply, String>) {
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
        self.show_answer_from_its_start();
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
    pub(super) fn in_flight(&self) -> bool {
        self.work != Work::Idle
    }

    /// Cancels the answer in flight.
    pub(super) fn cancel(&mut self) -> Outcome {
        self.work = Work::Cancelling;
        Outcome::act(Some(AppAction::Cancel))
    }

    /// Sends `text` as a new question, unless one is in flight or the node
    /// has not been probed yet (then the input line stays open).
    pub(super) fn ask(&mut self, input: Input, text: String) -> Outcome {
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
        // A new question starts from the node as probed.
        self.facts.clear();
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
}
