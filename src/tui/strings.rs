//! Every string the TUI shows, in one place (titles, prompts, notes, help).
//!
//! Strings built from values are small functions here, so wording changes
//! touch one file and tests can name what they expect.

use super::keys::{Intent, key_for};
use crate::guard::Tier;

/// Title of the GPU table.
pub const GPUS: &str = "GPUs";
/// Title of the findings pane.
pub const FINDINGS: &str = "Findings";
/// Title of the proposals pane.
pub const PROPOSALS: &str = "Proposals";
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

/// Model state in the status line.
pub fn model_status(model: Option<&str>) -> String {
    match model {
        None => "model: not loaded".into(),
        Some(name) => format!("model: {name}"),
    }
}

/// Note added when a question is asked but no model is loaded.
pub const MODEL_NOT_LOADED_NOTE: &str =
    "the model is not loaded: the question is kept, no answer will come";

/// The header's refresh part: `refreshed 12:00:01`, with the age when stale.
pub fn refreshed(time: &str, stale_secs: Option<u64>) -> String {
    match stale_secs {
        None => format!("refreshed {time}"),
        Some(s) => format!("refreshed {time} (stale {s}s)"),
    }
}

/// GPU count in the header.
pub fn gpu_count(n: usize) -> String {
    match n {
        0 => "no GPU".into(),
        1 => "1 GPU".into(),
        n => format!("{n} GPUs"),
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
        Intent::Back => "back / close",
        Intent::Edit => "edit the selected proposal",
        Intent::Explain => "explain the selected proposal",
        Intent::Copy => "copy selection (OSC 52)",
        Intent::Refresh => "refresh the doctor now",
    }
}
