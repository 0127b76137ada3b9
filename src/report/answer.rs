//! The copilot's answer report: the answer to one question, each proposed
//! command with the guard's verdict, and what the commands that ran gave.
//! `sigma ask --json` prints it, and `sigma doctor --explain --json` puts it
//! in `explanation`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::copilot::{Reply, Timings};
use crate::guard::Tier;

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

impl AnswerReport {
    /// The report of `reply`, each proposal with the latest of `runs` that
    /// ran its command.
    pub fn new(reply: &Reply, runs: &[RunRecord]) -> AnswerReport {
        let commands = reply
            .proposals
            .iter()
            .map(|p| {
                let ran = runs.iter().rev().find(|r| r.command == p.verdict.command);
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
        AnswerReport {
            answer: reply.answer.clone(),
            commands,
            model: reply.model.clone(),
            timings: reply.timings.clone(),
        }
    }
}

/// A command run on the user's behalf and what it gave.
#[derive(Debug, Clone)]
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
