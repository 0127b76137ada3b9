//! Every string the TUI shows, in one place (titles, prompts, notes, help).
//!
//! Strings built from values are small functions here, so wording changes
//! touch one file and tests can name what they expect.

use super::app::{ModelState, Work};
use super::keys::{Intent, key_for};
use crate::guard::Tier;

/// Title of the GPU table.
pub const GPUS: &str = "GPUs";
/// Title of the findings pane.
pub const FINDINGS: &str = "Findings";
/// Title of the proposals pane.
pub const PROPOSALS: &str = "Proposals";
/// Title of the proposals pane when they come from the copilot.
pub const PROPOSALS_COPILOT: &str = "Proposals from sigma";
/// Title of the conversation pane.
pub const CONVERSATION: &str = "Conversation";
/// Title of the help overlay.
pub const HELP: &str = "Keys (Esc closes)";
/// Title of the confirmation modal.
pub const CONFIRM: &str = "Confirm";
/// Title of a notice modal.
pub const NOTICE: &str = "Note";

/// Shown before the first snapshot arrives.
pub const PROBING: &str = "probing the node...";
/// A node with no NVIDIA GPU.
pub const NO_GPUS: &str = "no NVIDIA GPU on this node";
/// An empty findings list.
pub const NO_FINDINGS: &str = "no findings: the node looks healthy";
/// An empty proposals list.
pub const NO_PROPOSALS: &str = "select a finding to see its commands";
/// An empty conversation.
pub fn conversation_empty() -> String {
    format!("press {} to ask a question", key_for(Intent::Ask))
}
/// A GPU that fell off the bus.
pub const GPU_LOST: &str = "lost (fell off the bus)";

/// Column headers of the GPU table.
pub mod col {
    /// Index (with `!` when the GPU has findings).
    pub const INDEX: &str = "#";
    /// Product name.
    pub const NAME: &str = "name";
    /// GPU utilisation.
    pub const UTIL: &str = "util";
    /// Memory used / total.
    pub const MEMORY: &str = "memory";
    /// Temperature.
    pub const TEMP: &str = "temp";
    /// Power draw / limit.
    pub const POWER: &str = "power";
    /// Throttle reasons.
    pub const THROTTLE: &str = "throttle";
    /// Uncorrected ECC errors.
    pub const ECC: &str = "ecc";
    /// PCIe link, current / max.
    pub const PCIE: &str = "pcie";
}

/// Conversation speaker labels.
pub mod who {
    /// The user.
    pub const YOU: &str = "you: ";
    /// The copilot.
    pub const MODEL: &str = "sigma: ";
    /// Notes from the TUI itself.
    pub const NOTE: &str = "-- ";
    /// A command that ran.
    pub const RUN: &str = "$ ";
    /// The guard's explanation of a command.
    pub const GUARD: &str = "guard: ";
    /// What Sigma read from a command's output.
    pub const READ: &str = "read: ";
}

/// Prompt of the input line when asking.
pub const ASK_PROMPT: &str = "ask> ";
/// Prompt of the input line when editing a proposal.
pub const EDIT_PROMPT: &str = "edit> ";
/// Hint in the status line when idle: `? help  / ask  Tab pane  q quit`.
pub fn status_hint() -> String {
    [
        (Intent::Help, "help"),
        (Intent::Ask, "ask"),
        (Intent::NextPane, "pane"),
        (Intent::Quit, "quit"),
    ]
    .iter()
    .map(|(intent, word)| format!("{} {word}", key_for(*intent)))
    .collect::<Vec<_>>()
    .join("  ")
}

/// The model's state and work in the status line: loading, reading the
/// prompt, generating with its speed, ready, or why it failed.
pub fn model_status(model: &ModelState, work: Work) -> String {
    // Only Esc cancels (not the other Back keys), so name it.
    let cancel = "Esc";
    match (model, work) {
        (_, Work::Cancelling) => "model: cancelling...".into(),
        (_, Work::Prefill(done, total)) => {
            format!("model: reading the question {done}/{total} tokens ({cancel} cancels)")
        }
        (_, Work::Generating(tokens, rate)) => {
            format!("model: generating {tokens} tokens, {rate:.1} tok/s ({cancel} cancels)")
        }
        (ModelState::Loading, Work::Waiting) => {
            "model: loading... (the question waits for it)".into()
        }
        (ModelState::Loading, _) => "model: loading...".into(),
        (ModelState::Ready { name, .. }, Work::Waiting) => format!("model: {name} starting"),
        (
            ModelState::Ready {
                name,
                last_rate: None,
            },
            Work::Idle,
        ) => format!("model: {name} ready"),
        (
            ModelState::Ready {
                name,
                last_rate: Some(rate),
            },
            Work::Idle,
        ) => format!("model: {name} ready (last answer {rate:.1} tok/s)"),
        (ModelState::Failed(reason), _) => format!("model: {reason}"),
    }
}

/// Note when a question is sent while another is being answered.
pub const STILL_ANSWERING: &str = "an answer is still being generated: wait, or Esc to cancel it";
/// Note when a question is sent before the node was probed once.
pub const STILL_PROBING: &str = "the node is still being probed: send the question in a moment";
/// Note after a cancelled answer.
pub const CANCELLED: &str = "answer cancelled";
/// Note when a reply proposes no command.
pub const NO_COMMANDS: &str = "the answer proposes no command; the list is unchanged";
/// Notice when the proposals changed under a confirmation or an edit.
pub const PROPOSALS_CHANGED: &str =
    "the proposals changed (a new answer came): select the command again";

/// Note when the copilot could not answer.
pub fn no_answer(reason: &str) -> String {
    format!("no answer: {reason}")
}

/// Note before a follow-up round: the outputs go back to the model.
pub fn follow_up(round: usize, rounds: usize) -> String {
    format!("sending the output back to the model (answer {round} of at most {rounds})")
}

/// The header's refresh part: `refreshed 12:00:01`, with the age when stale.
pub fn refreshed(time: &str, stale_secs: Option<u64>) -> String {
    match stale_secs {
        None => format!("refreshed {time}"),
        Some(s) => format!("refreshed {time} (stale {s}s)"),
    }
}

/// Confirmation text for a heavy or state-changing command.
pub fn confirm_prompt(binary: &str, tier: Tier) -> String {
    let why = match tier {
        Tier::Heavy => "This command loads the node for a while.",
        _ => "This command changes the node.",
    };
    format!("{why} Type '{binary}' and press Enter to run it; Esc cancels.")
}

/// Confirmation text when the typed name does not match.
pub fn confirm_mismatch(binary: &str) -> String {
    format!("that is not '{binary}': type the program name exactly")
}

/// Notice for a command the guard blocks.
pub fn blocked(rule: &str) -> String {
    format!("blocked by the guard ({rule}): this command never runs from Sigma")
}

/// Note while a command runs.
pub fn running(command: &str) -> String {
    format!("running: {command}")
}

/// Note after a copy.
pub fn copied(bytes: usize) -> String {
    format!("copied {bytes} bytes to the clipboard (OSC 52)")
}

/// Proposal tier tags.
pub mod tier {
    /// Read-only.
    pub const READ_ONLY: &str = "[ro] ";
    /// Loads the node: needs confirmation.
    pub const HEAVY: &str = "[hv] ";
    /// Changes the node: needs confirmation.
    pub const STATE_CHANGING: &str = "[rw] ";
    /// Never runs.
    pub const BLOCKED: &str = "[no] ";
}

/// Finding details section labels.
pub mod details {
    /// Evidence.
    pub const EVIDENCE: &str = "evidence";
    /// Why it matters.
    pub const WHY: &str = "why";
    /// Commands.
    pub const COMMANDS: &str = "commands";
}

/// Hint at the bottom of a finding's details.
pub fn details_back() -> String {
    format!("{}: back to the list", key_for(Intent::Back))
}

/// What a key does, as the help overlay says it.
pub fn intent_help(intent: Intent) -> &'static str {
    match intent {
        Intent::Quit => "quit",
        Intent::Help => "this help",
        Intent::Ask => "ask the copilot a question",
        Intent::Up => "select up / scroll up",
        Intent::Down => "select down / scroll down",
        Intent::PageUp => "page up",
        Intent::PageDown => "page down",
        Intent::NextPane => "next pane",
        Intent::PrevPane => "previous pane",
        Intent::Activate => "open finding / run proposal",
        Intent::Details => "finding details",
        Intent::Back => "back / close (Esc also cancels an answer)",
        Intent::Edit => "edit the selected proposal",
        Intent::Explain => "explain each argument of the selected command",
        Intent::Copy => "copy selection (OSC 52)",
        Intent::Refresh => "refresh the doctor now",
    }
}
