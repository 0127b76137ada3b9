//! When a proposed command may run: the approval policy every front end
//! (one-shot commands, `sigma chat`, the TUI) applies the same way.
//!
//! This module owns the rules and the terminal prompt; it does not run
//! anything (the guard's executor does) and does not judge commands (the
//! guard does: the policy only reads the [`Verdict`]'s tier).
//!
//! # Rules
//! | tier \ `--run` | `never` | `safe` | `confirm` |
//! |---|---|---|---|
//! | read-only | refuse | run | ask `[y/N]` |
//! | heavy | refuse | ask `[y/N]` | ask `[y/N]` |
//! | state-changing | refuse | type the program's name | type the program's name |
//! | blocked | refuse, with the rule | refuse, with the rule | refuse, with the rule |
//!
//! Every question defaults to no: an empty answer, end of input, or a
//! standard input that is not a terminal all decline.
//!
//! ```
//! use sigma::copilot::approval::{ConfirmKind, Decision, RunMode, decide};
//! use sigma::guard::check;
//! assert_eq!(decide(RunMode::Safe, &check("nvidia-smi -L")), Decision::Run);
//! assert_eq!(
//!     decide(RunMode::Confirm, &check("nvidia-smi -r -i 2")),
//!     Decision::Ask(ConfirmKind::TypeName("nvidia-smi".into()))
//! );
//! assert!(matches!(decide(RunMode::Safe, &check("dmesg -c")), Decision::Refuse(_)));
//! ```

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};

use serde::{Deserialize, Serialize};

use crate::checks::printable;
use crate::guard::{Tier, Verdict};

/// Which proposed commands run, from `--run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// Propose only: nothing runs.
    #[default]
    Never,
    /// Read-only commands run without asking; the others are confirmed.
    Safe,
    /// Every command is confirmed on the terminal.
    Confirm,
}

impl std::fmt::Display for RunMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Never => "never",
            Self::Safe => "safe",
            Self::Confirm => "confirm",
        })
    }
}

/// What the user must do to approve a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmKind {
    /// Answer `y` (default no).
    YesNo,
    /// Type this program name exactly.
    TypeName(String),
}

/// The policy's decision for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run it without asking.
    Run,
    /// Ask the user first.
    Ask(ConfirmKind),
    /// Do not run it, for this reason (one line).
    Refuse(String),
}

/// Decides whether `verdict` may run under `mode` (see the module's table).
pub fn decide(mode: RunMode, verdict: &Verdict) -> Decision {
    if verdict.tier == Tier::Blocked || !verdict.is_allowed() {
        return Decision::Refuse(format!("blocked by the guard: {}", verdict.rule));
    }
    if mode == RunMode::Never {
        return Decision::Refuse(
            "--run never: commands are proposed, not run (use --run confirm to run them)".into(),
        );
    }
    match verdict.tier {
        Tier::ReadOnly if mode == RunMode::Safe => Decision::Run,
        Tier::ReadOnly | Tier::Heavy => Decision::Ask(ConfirmKind::YesNo),
        _ => match program(verdict) {
            Some(name) => Decision::Ask(ConfirmKind::TypeName(name.to_string())),
            None => Decision::Refuse("no program to confirm in this command".into()),
        },
    }
}

/// The program a state-changing command is confirmed with: the file name
/// of the pipeline's first program (`/usr/bin/nvidia-smi -r` ->
/// `nvidia-smi`).
pub fn program(verdict: &Verdict) -> Option<&str> {
    let first = verdict.pipeline.first()?.first()?;
    first.rsplit('/').next().filter(|name| !name.is_empty())
}

/// Who decided whether a command ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decider {
    /// The `--run` policy (or the guard), without asking.
    Policy,
    /// The user, at a prompt.
    User,
}

impl std::fmt::Display for Decider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Policy => "policy",
            Self::User => "user",
        })
    }
}

/// The outcome of [`approve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Whether the command may run now.
    pub approved: bool,
    /// Who decided.
    pub by: Decider,
    /// Why, in one line.
    pub reason: String,
}

/// A user's answer to a confirmation prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Approved.
    Yes,
    /// Declined (including an empty answer or end of input).
    No,
    /// Nobody could be asked, for this reason.
    Unavailable(String),
}

/// Asks the user to confirm a command.
pub trait Prompter {
    /// Asks whether `verdict`'s command may run, as `kind` requires.
    fn confirm(&mut self, verdict: &Verdict, kind: &ConfirmKind) -> Answer;
}

/// Applies the policy to `verdict`, asking `prompter` when it must.
pub fn approve(mode: RunMode, verdict: &Verdict, prompter: &mut dyn Prompter) -> Approval {
    let policy = |approved, reason: String| Approval {
        approved,
        by: Decider::Policy,
        reason,
    };
    match decide(mode, verdict) {
        Decision::Run => policy(
            true,
            "read-only: runs without asking under --run safe".into(),
        ),
        Decision::Refuse(reason) => policy(false, reason),
        Decision::Ask(kind) => match prompter.confirm(verdict, &kind) {
            Answer::Yes => Approval {
                approved: true,
                by: Decider::User,
                reason: "confirmed".into(),
            },
            Answer::No => Approval {
                approved: false,
                by: Decider::User,
                reason: "declined".into(),
            },
            Answer::Unavailable(why) => policy(false, why),
        },
    }
}

/// Asks on the terminal: the prompt and the answer go through `/dev/tty`
/// (so they work with standard output redirected), or standard error and
/// standard input where `/dev/tty` cannot be opened. When standard input
/// is not a terminal nobody is asked and the answer is no.
#[derive(Debug)]
pub struct TerminalPrompter {
    /// Whether standard input is a terminal (checked once).
    stdin_is_terminal: bool,
}

impl TerminalPrompter {
    /// A prompter for this process's terminal.
    pub fn new() -> TerminalPrompter {
        TerminalPrompter {
            stdin_is_terminal: io::stdin().is_terminal(),
        }
    }
}

impl Default for TerminalPrompter {
    fn default() -> Self {
        Self::new()
    }
}

impl Prompter for TerminalPrompter {
    fn confirm(&mut self, verdict: &Verdict, kind: &ConfirmKind) -> Answer {
        if !self.stdin_is_terminal {
            return Answer::Unavailable(not_a_terminal(kind));
        }
        let asked = match File::options().read(true).write(true).open("/dev/tty") {
            Ok(tty) => {
                let writer = tty.try_clone();
                match writer {
                    Ok(mut w) => ask(&mut BufReader::new(tty), &mut w, verdict, kind),
                    Err(e) => Err(e),
                }
            }
            Err(_) => ask(&mut io::stdin().lock(), &mut io::stderr(), verdict, kind),
        };
        // A prompt that cannot be written or read is a no.
        asked.unwrap_or(Answer::No)
    }
}

/// Why a command needing `kind` is not run when nobody can be asked.
fn not_a_terminal(kind: &ConfirmKind) -> String {
    match kind {
        ConfirmKind::YesNo => "needs a yes on a terminal; standard input is not one".into(),
        ConfirmKind::TypeName(name) => {
            format!("needs '{name}' typed on a terminal; standard input is not one")
        }
    }
}

/// Writes the prompt for `verdict` to `output` and reads one answer line
/// from `input`. End of input is a no.
pub fn ask(
    input: &mut impl BufRead,
    output: &mut impl Write,
    verdict: &Verdict,
    kind: &ConfirmKind,
) -> io::Result<Answer> {
    let command = printable(&verdict.command);
    let rule = printable(&verdict.rule);
    match kind {
        ConfirmKind::YesNo => {
            if verdict.tier != Tier::ReadOnly {
                writeln!(output, "{}: {rule}", verdict.tier)?;
            }
            write!(output, "run `{command}`? [y/N] ")?;
        }
        ConfirmKind::TypeName(name) => {
            writeln!(output, "{}: {rule}", verdict.tier)?;
            write!(
                output,
                "type '{name}' to run `{command}` (anything else cancels): "
            )?;
        }
    }
    output.flush()?;
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        writeln!(output)?;
        return Ok(Answer::No);
    }
    Ok(if accepts(kind, &line) {
        Answer::Yes
    } else {
        Answer::No
    })
}

/// Whether `line` approves: `y`/`yes` (any case) for a yes/no question,
/// the exact name (surrounding spaces ignored) for a typed confirmation.
pub fn accepts(kind: &ConfirmKind, line: &str) -> bool {
    let answer = line.trim();
    match kind {
        ConfirmKind::YesNo => {
            answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes")
        }
        ConfirmKind::TypeName(name) => answer == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::check;

    const READ_ONLY: &str = "nvidia-smi -q -d TEMPERATURE";
    const HEAVY: &str = "dcgmi diag -r 3";
    const STATE_CHANGING: &str = "nvidia-smi -r -i 2";
    const BLOCKED: &str = "dmesg -c";

    fn verdict(command: &str, tier: Tier) -> Verdict {
        let v = check(command);
        assert_eq!(v.tier, tier, "{command}: {}", v.rule);
        v
    }

    fn type_name() -> Decision {
        Decision::Ask(ConfirmKind::TypeName("nvidia-smi".into()))
    }

    fn is_refusal(d: &Decision, part: &str) -> bool {
        matches!(d, Decision::Refuse(r) if r.contains(part))
    }

    #[test]
    fn read_only_per_mode() {
        let v = verdict(READ_ONLY, Tier::ReadOnly);
        assert!(is_refusal(&decide(RunMode::Never, &v), "--run never"));
        assert_eq!(decide(RunMode::Safe, &v), Decision::Run);
        assert_eq!(
            decide(RunMode::Confirm, &v),
            Decision::Ask(ConfirmKind::YesNo)
        );
    }

    #[test]
    fn heavy_per_mode() {
        let v = verdict(HEAVY, Tier::Heavy);
        assert!(is_refusal(&decide(RunMode::Never, &v), "--run never"));
        assert_eq!(decide(RunMode::Safe, &v), Decision::Ask(ConfirmKind::YesNo));
        assert_eq!(
            decide(RunMode::Confirm, &v),
            Decision::Ask(ConfirmKind::YesNo)
        );
    }

    #[test]
    fn state_changing_per_mode() {
        let v = verdict(STATE_CHANGING, Tier::StateChanging);
        assert!(is_refusal(&decide(RunMode::Never, &v), "--run never"));
        assert_eq!(decide(RunMode::Safe, &v), type_name());
        assert_eq!(decide(RunMode::Confirm, &v), type_name());
    }

    #[test]
    fn blocked_per_mode_says_the_rule() {
        let v = verdict(BLOCKED, Tier::Blocked);
        for mode in [RunMode::Never, RunMode::Safe, RunMode::Confirm] {
            let d = decide(mode, &v);
            assert!(is_refusal(&d, "blocked by the guard: "), "{mode}: {d:?}");
            assert!(is_refusal(&d, &v.rule), "{mode}: {d:?}");
        }
    }

    #[test]
    fn program_is_the_file_name() {
        assert_eq!(
            program(&check("/usr/bin/nvidia-smi -r -i 0")),
            Some("nvidia-smi")
        );
        assert_eq!(program(&check("")), None);
    }

    /// Answers every prompt with a fixed answer and remembers what it was asked.
    struct Fixed(Answer, Vec<ConfirmKind>);

    impl Prompter for Fixed {
        fn confirm(&mut self, _: &Verdict, kind: &ConfirmKind) -> Answer {
            self.1.push(kind.clone());
            self.0.clone()
        }
    }

    #[test]
    fn approve_records_who_decided() {
        let mut yes = Fixed(Answer::Yes, Vec::new());
        let ro = check(READ_ONLY);
        let a = approve(RunMode::Safe, &ro, &mut yes);
        assert!(a.approved && a.by == Decider::Policy, "{a:?}");
        assert!(yes.1.is_empty(), "read-only under safe asks nobody");

        let sc = check(STATE_CHANGING);
        let a = approve(RunMode::Safe, &sc, &mut yes);
        assert!(a.approved && a.by == Decider::User, "{a:?}");
        assert_eq!(yes.1, [ConfirmKind::TypeName("nvidia-smi".into())]);

        let mut no = Fixed(Answer::No, Vec::new());
        let a = approve(RunMode::Confirm, &ro, &mut no);
        assert!(!a.approved && a.by == Decider::User && a.reason == "declined");

        let mut away = Fixed(Answer::Unavailable("no terminal".into()), Vec::new());
        let a = approve(RunMode::Confirm, &sc, &mut away);
        assert!(!a.approved && a.by == Decider::Policy && a.reason == "no terminal");

        let a = approve(RunMode::Confirm, &check(BLOCKED), &mut yes);
        assert!(!a.approved && a.by == Decider::Policy, "{a:?}");
        assert_eq!(yes.1.len(), 1, "a blocked command is never asked about");
    }

    fn ask_with(input: &str, command: &str, kind: &ConfirmKind) -> (Answer, String) {
        let mut out = Vec::new();
        let answer = ask(&mut input.as_bytes(), &mut out, &check(command), kind).unwrap();
        (answer, String::from_utf8(out).unwrap())
    }

    #[test]
    fn yes_no_defaults_to_no() {
        let kind = ConfirmKind::YesNo;
        assert_eq!(ask_with("y\n", READ_ONLY, &kind).0, Answer::Yes);
        assert_eq!(ask_with(" YES \n", READ_ONLY, &kind).0, Answer::Yes);
        assert_eq!(ask_with("\n", READ_ONLY, &kind).0, Answer::No);
        assert_eq!(ask_with("n\n", READ_ONLY, &kind).0, Answer::No);
        assert_eq!(ask_with("yep\n", READ_ONLY, &kind).0, Answer::No);
        assert_eq!(ask_with("", READ_ONLY, &kind).0, Answer::No, "EOF is no");
        let (_, prompt) = ask_with("", READ_ONLY, &kind);
        assert_eq!(prompt, format!("run `{READ_ONLY}`? [y/N] \n"));
    }

    #[test]
    fn heavy_prompt_says_why() {
        let (answer, prompt) = ask_with("y\n", HEAVY, &ConfirmKind::YesNo);
        assert_eq!(answer, Answer::Yes);
        assert!(prompt.starts_with("heavy: "), "{prompt}");
        assert!(prompt.ends_with("[y/N] "), "{prompt}");
    }

    #[test]
    fn typed_name_must_match_exactly() {
        let kind = ConfirmKind::TypeName("nvidia-smi".into());
        assert_eq!(
            ask_with("nvidia-smi\n", STATE_CHANGING, &kind).0,
            Answer::Yes
        );
        assert_eq!(ask_with("y\n", STATE_CHANGING, &kind).0, Answer::No);
        assert_eq!(
            ask_with("Nvidia-smi\n", STATE_CHANGING, &kind).0,
            Answer::No
        );
        assert_eq!(ask_with("nvidia-sm\n", STATE_CHANGING, &kind).0, Answer::No);
        assert_eq!(ask_with("", STATE_CHANGING, &kind).0, Answer::No);
        let (_, prompt) = ask_with("", STATE_CHANGING, &kind);
        assert!(prompt.starts_with("state-changing: "), "{prompt}");
        assert!(prompt.contains("type 'nvidia-smi' to run"), "{prompt}");
    }

    #[test]
    fn prompt_escapes_control_characters() {
        let v = check("nvidia-smi -q -d \u{1b}[2J");
        let mut out = Vec::new();
        ask(&mut "".as_bytes(), &mut out, &v, &ConfirmKind::YesNo).unwrap();
        assert!(!out.contains(&0x1b), "{}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn without_a_terminal_nobody_is_asked() {
        let mut prompter = TerminalPrompter {
            stdin_is_terminal: false,
        };
        let v = check(STATE_CHANGING);
        assert_eq!(
            prompter.confirm(&v, &ConfirmKind::TypeName("nvidia-smi".into())),
            Answer::Unavailable(
                "needs 'nvidia-smi' typed on a terminal; standard input is not one".into()
            )
        );
        let a = approve(RunMode::Confirm, &check(READ_ONLY), &mut prompter);
        assert!(!a.approved && a.by == Decider::Policy, "{a:?}");
        assert_eq!(
            a.reason,
            "needs a yes on a terminal; standard input is not one"
        );
    }

    #[test]
    fn run_mode_parses_and_prints() {
        use clap::ValueEnum;
        for mode in [RunMode::Never, RunMode::Safe, RunMode::Confirm] {
            assert_eq!(RunMode::from_str(&mode.to_string(), false), Ok(mode));
        }
        assert_eq!(RunMode::default(), RunMode::Never);
        assert_eq!(serde_json::to_string(&RunMode::Safe).unwrap(), "\"safe\"");
    }
}
