//! The copilot: turns a question about the node into an answer and validated
//! command proposals.
//!
//! # Contract
//! An [`Assistant`] answers one question with a [`Reply`]. Every proposed
//! command reaches the caller with the guard's [`Verdict`] already attached
//! (see [`Proposal::new`]): nothing the model writes can reach a front end,
//! the executor or the user unvalidated. Front ends (CLI, REPL, TUI) and
//! `sigma eval` only talk to this trait.

pub mod adapt;
pub mod approval;
pub mod bank;
pub mod change;
pub mod context;
pub mod diagnose;
pub mod grammar;
pub mod grounding;
pub mod local;
pub mod rank;
pub mod retrieval;
pub mod table;
pub mod worker;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::checks::Finding;
use crate::guard::{self, Verdict};
use crate::probe::Snapshot;

/// A command the copilot proposes, with the guard's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    /// The command line as the model wrote it.
    pub command: String,
    /// What it is for, in the model's words.
    pub purpose: String,
    /// The guard's verdict: tier, rule, and whether it may run.
    pub verdict: Verdict,
}

impl Proposal {
    /// Validates `command` with the guard; the only way to make a proposal.
    pub fn new(command: impl Into<String>, purpose: impl Into<String>) -> Proposal {
        let command = command.into();
        let verdict = guard::check(&command);
        Proposal {
            command,
            purpose: purpose.into(),
            verdict,
        }
    }
}

/// Where time went while answering, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Timings {
    /// Prompt evaluation (the dynamic part not cached by the last question;
    /// the static prefix is always cached).
    pub prefill_ms: f64,
    /// From the question to the first generated token.
    pub first_token_ms: f64,
    /// From the question to the end of the reply.
    pub total_ms: f64,
    /// Generation speed.
    pub tokens_per_s: f64,
    /// Tokens evaluated for the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens not evaluated: the last question left them cached
    /// (beyond the static prefix, always cached).
    #[serde(default)]
    pub reused_prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Of the generated tokens, those the model chose (the rest the reply
    /// grammar forced).
    #[serde(default)]
    pub sampled_tokens: usize,
    /// Choices drafted for speculative decoding (the candidates in the
    /// prompt's order), each verified in the batch that evaluated it.
    #[serde(default)]
    pub drafted_tokens: usize,
    /// Of those, the ones the model made: chosen tokens that cost no model
    /// evaluation of their own.
    #[serde(default)]
    pub accepted_tokens: usize,
    /// Model evaluations (graphs computed) after the prompt's: one per
    /// batch of generated (and drafted) tokens, more where a batch is split.
    #[serde(default)]
    pub decode_steps: usize,
}

/// One answer.
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    /// The prose answer.
    pub answer: String,
    /// Proposed commands, in the model's order, each validated.
    pub proposals: Vec<Proposal>,
    /// The model that answered (name or file).
    pub model: String,
    /// Timings.
    pub timings: Timings,
}

/// What the assistant knows about the node when asked.
#[derive(Debug, Clone, Copy)]
pub struct NodeContext<'a> {
    /// The node's state.
    pub snapshot: &'a Snapshot,
    /// The checks' findings over it.
    pub findings: &'a [Finding],
}

/// A previous exchange, fed back for follow-up rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Turn {
    /// The user's question.
    User(String),
    /// The assistant's answer text.
    Assistant(String),
    /// A command that ran, its (capped) output, and what could be read
    /// from that output.
    CommandOutput {
        /// The command line.
        command: String,
        /// Exit code, when it exited.
        exit_code: Option<i32>,
        /// Output, tail kept.
        output: String,
        /// The facts read from the whole output, or why none could be.
        #[serde(default)]
        reading: crate::probe::interpret::Reading,
    },
}

/// The `--model` value that asks for no language model: answers come from
/// the checks and the diagnosis, proposals from the ranker.
pub const NO_MODEL: &str = "none";

/// The assistant `opts` name: the model-free one for [`NO_MODEL`], else the
/// local model (the default one when none is named).
pub fn load(opts: &local::LocalOptions) -> anyhow::Result<Box<dyn Assistant>> {
    if opts.model.as_deref() == Some(NO_MODEL) {
        return Ok(Box::new(retrieval::RetrievalAssistant));
    }
    Ok(Box::new(local::LocalAssistant::load(opts)?))
}

/// Events streamed while an answer is generated.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// A piece of the answer text, as soon as it is decoded.
    AnswerText(&'a str),
    /// Progress of prompt evaluation: tokens done of total.
    Prefill(usize, usize),
}

/// Something that answers questions about a node.
pub trait Assistant {
    /// Answers `question` given the node and earlier turns, streaming events
    /// to `on_event`. Returns the whole reply with validated proposals.
    fn ask(
        &mut self,
        node: NodeContext<'_>,
        history: &[Turn],
        question: &str,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> anyhow::Result<Reply>;

    /// Answers `question` when commands will run before the final answer
    /// (`--run safe|confirm` with rounds left): what the checks already
    /// say, and the commands that show more. The default asks in full; the
    /// local model leaves it to the checks and the ranker, as it does the
    /// answer after runs (the diagnosis: docs/EVAL.md says why).
    fn plan(
        &mut self,
        node: NodeContext<'_>,
        history: &[Turn],
        question: &str,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> anyhow::Result<Reply> {
        self.ask(node, history, question, on_event)
    }

    /// Name of the model behind it.
    fn model_name(&self) -> &str;
}

/// A simulated node's snapshot and the checks' findings on it, for unit tests.
#[cfg(test)]
pub(crate) fn sim_node(name: &str) -> (crate::probe::Snapshot, Vec<crate::checks::Finding>) {
    let node = crate::sim::load(name).expect("sim loads");
    let findings = crate::checks::run_all(&node.snapshot);
    (node.snapshot, findings)
}
