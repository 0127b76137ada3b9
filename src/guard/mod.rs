//! The guard: every command Sigma proposes or runs is judged here first.
//!
//! A local model proposes shell commands and the node's own text (process
//! names, log lines) is untrusted, so nothing may reach the executor without
//! passing this validator and the user's confirmation. The guard owns the
//! judgement and the execution of approved commands; it does not decide
//! whether to ask the user (the front ends do, from the [`Tier`]).
//!
//! # Modules
//! - [`catalogue`]: the data (`assets/catalogue/*.toml`): tools, subcommands,
//!   flags, value kinds, tiers, descriptions and example commands.
//! - `parse`: the shell grammar (via `brush-parser`); only one pipeline of
//!   literal words with `/dev/null` redirections survives.
//! - `risk`: each segment's argv against the catalogue: tier and rule.
//! - [`execute`]: runs an approved [`Verdict`] as argv, no shell, with a
//!   timeout per process group and capped output.
//! - `help`: on a live node, long flags are confirmed against the installed
//!   tool's own `--help` before running (see below).
//!
//! # Rules
//! - One pipeline; later segments only the filters (grep, head, tail, sort,
//!   uniq, wc, cut). Lists (`;`, `&&`, `||`) are refused, not split: one
//!   proposal is one pipeline the user can read and confirm.
//! - Every program, subcommand, flag and value must be in the catalogue;
//!   an unknown one is [`Tier::Blocked`] and the rule names it.
//! - A command's tier is the highest of its parts: read-only < heavy <
//!   state-changing < blocked. The rule names the part that set it.
//! - Executors (`xargs`, `env`, `sudo`, shells, `find -exec`, ...) are blocked.
//!
//! # Live help confirmation
//! The catalogue follows current drivers and tools; an older node may lack a
//! flag. Before [`execute::execute`] runs a command on the live node, every
//! long flag (`--query-gpu`, `--since`) is looked up in the output of the
//! tool's help (`nvidia-smi --help`, `nvidia-smi topo -h`: the catalogue's
//! `help` arguments), run once per binary and arguments with a 5 s timeout
//! and cached for the process. A flag the help does not mention refuses the
//! run with a message naming it. A tool whose help cannot be read (missing,
//! hung) is not second-guessed; under `--simulate` nothing is run.
//!
//! ```
//! use sigma::guard::{Tier, check};
//! let v = check("nvidia-smi -q -d ECC,ROW_REMAPPER");
//! assert_eq!(v.tier, Tier::ReadOnly);
//! let v = check("nvidia-smi -r -i 0");
//! assert_eq!(v.tier, Tier::StateChanging);
//! assert!(v.rule.contains("--gpu-reset"));
//! assert_eq!(check("nvidia-smi -G 3").rule, "unknown flag -G for nvidia-smi");
//! ```

pub mod catalogue;
pub mod execute;
mod help;
mod parse;
mod risk;

use serde::{Deserialize, Serialize};

pub use catalogue::Catalogue;
pub use execute::{
    Captured, ExecError, Execution, Exit, Limits, Target, execute, execute_interruptible,
};
pub use parse::MAX_LEN;

/// How risky a command is; ordered from harmless to refused.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Only reads state.
    #[default]
    ReadOnly,
    /// Reads, but loads the node for a while (diagnostics, benchmarks, bug reports).
    Heavy,
    /// Changes the node (reset, limits, services, logs).
    StateChanging,
    /// Never run.
    Blocked,
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ReadOnly => "read-only",
            Self::Heavy => "heavy",
            Self::StateChanging => "state-changing",
            Self::Blocked => "blocked",
        })
    }
}

/// The guard's judgement of one command line.
///
/// Only [`check`] makes one. Running needs a `Verdict` whose private plan was
/// approved by the guard, so editing the public fields cannot smuggle a
/// different command into [`execute::execute`].
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The command line as given.
    pub command: String,
    /// Its tier.
    pub tier: Tier,
    /// The rule that set the tier, e.g. `unknown flag -G for nvidia-smi`.
    pub rule: String,
    /// argv of each pipeline segment; empty when the line did not parse.
    pub pipeline: Vec<Vec<String>>,
    /// What the executor runs: set only when the tier is not blocked.
    #[serde(skip)]
    plan: Option<Plan>,
}

/// An approved command, as the executor runs it.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The pipeline segments.
    pub segments: Vec<parse::Segment>,
    /// Long flags per segment, to confirm against the live tool's help.
    pub long_flags: Vec<Vec<risk::LongFlag>>,
}

impl Verdict {
    /// Whether the guard allows running it (after confirmation as the tier asks).
    pub fn is_allowed(&self) -> bool {
        self.plan.is_some()
    }

    /// A refusal.
    fn blocked(command: &str, rule: String, pipeline: Vec<Vec<String>>) -> Self {
        Self {
            command: command.to_string(),
            tier: Tier::Blocked,
            rule,
            pipeline,
            plan: None,
        }
    }
}

/// One argument of a command with what it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgExplanation {
    /// The argument as typed (a flag with its value).
    pub arg: String,
    /// Its description from the catalogue, or why it is not allowed.
    pub meaning: String,
}

/// Judges `command` against the built-in catalogue.
pub fn check(command: &str) -> Verdict {
    check_with(Catalogue::builtin(), command)
}

/// Judges `command` against `catalogue`.
pub fn check_with(catalogue: &Catalogue, command: &str) -> Verdict {
    let segments = match parse::parse(command) {
        Ok(s) => s,
        Err(rule) => return Verdict::blocked(command, rule, Vec::new()),
    };
    let pipeline: Vec<Vec<String>> = segments.iter().map(|s| s.argv.clone()).collect();
    let mut tier = Tier::ReadOnly;
    let mut rule = None;
    let mut long_flags = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let a = risk::analyse(catalogue, &segment.argv, i > 0);
        if a.tier > tier || (rule.is_none() && a.rule.is_some()) {
            tier = a.tier;
            rule = a.rule;
        }
        long_flags.push(a.long_flags);
    }
    if tier == Tier::Blocked {
        let rule = rule.unwrap_or_else(|| "blocked".into());
        return Verdict::blocked(command, rule, pipeline);
    }
    Verdict {
        command: command.to_string(),
        tier,
        rule: rule.unwrap_or_else(|| {
            "read-only: every program, flag and value is catalogued as read-only".into()
        }),
        pipeline,
        plan: Some(Plan {
            segments,
            long_flags,
        }),
    }
}

/// Each argument of `command` with its catalogue description (for the TUI's
/// `x` and the REPL's `/explain N`). A refused command explains what it can
/// and says which part is not allowed.
pub fn explain(command: &str) -> Vec<ArgExplanation> {
    let catalogue = Catalogue::builtin();
    let segments = match parse::parse(command) {
        Ok(s) => s,
        Err(rule) => {
            return vec![ArgExplanation {
                arg: command.to_string(),
                meaning: format!("not allowed: {rule}"),
            }];
        }
    };
    let mut out = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push(ArgExplanation {
                arg: "|".into(),
                meaning: "pass the output of the command before to the next one".into(),
            });
        }
        let a = risk::analyse(catalogue, &segment.argv, i > 0);
        out.extend(a.items.into_iter().map(|item| ArgExplanation {
            arg: item.text,
            meaning: item.meaning,
        }));
        out.extend(segment.redirects.text.iter().map(|r| ArgExplanation {
            arg: r.clone(),
            meaning: redirect_meaning(r).into(),
        }));
    }
    out
}

/// What a (canonical) redirection does.
fn redirect_meaning(r: &str) -> &'static str {
    match r {
        ">/dev/null" => "discard the output",
        "2>/dev/null" => "discard error messages",
        "&>/dev/null" => "discard the output and error messages",
        _ => "send error messages along with the output",
    }
}

/// One pipeline segment in canonical form: names as the catalogue spells
/// them first (long flag names), values in catalogue spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    /// The program.
    pub program: String,
    /// Its subcommands, outermost first (`nvidia-smi mig`, `amd-smi set`).
    pub subcommands: Vec<String>,
    /// Flags with their values, in the order typed.
    pub flags: Vec<(String, Option<String>)>,
    /// Whether `--` ended the flags.
    pub end_of_flags: bool,
    /// Positional arguments, in order.
    pub positionals: Vec<String>,
    /// Redirections (`2>/dev/null`).
    pub redirects: Vec<String>,
}

impl Canonical {
    /// The value of flag `name` (canonical spelling), when given.
    pub fn flag(&self, name: &str) -> Option<Option<&str>> {
        self.flags
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_deref())
    }
}

/// `command`'s pipeline segments in canonical form; `None` when the command
/// does not parse or uses something unknown.
pub fn canonical(command: &str) -> Option<Vec<Canonical>> {
    let catalogue = Catalogue::builtin();
    let segments = parse::parse(command).ok()?;
    let mut out = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let a = risk::analyse(catalogue, &segment.argv, i > 0);
        if a.refused() {
            return None;
        }
        let mut c = Canonical {
            program: String::new(),
            subcommands: Vec::new(),
            flags: Vec::new(),
            end_of_flags: false,
            positionals: Vec::new(),
            redirects: segment.redirects.text.clone(),
        };
        for item in a.items {
            match item.canon {
                risk::Canon::Program(p) => c.program = p,
                risk::Canon::Subcommand(s) => c.subcommands.push(s),
                risk::Canon::Flag { name, value } => c.flags.push((name, value)),
                risk::Canon::EndOfFlags => c.end_of_flags = true,
                risk::Canon::Positional(p) => c.positionals.push(p),
                risk::Canon::Refused => return None,
            }
        }
        out.push(c);
    }
    Some(out)
}

/// A canonical form of `command` for exact-match comparison (evaluation,
/// deduplication): long flag names, `--flag=value`, flags sorted (their
/// order does not matter to these tools), list values kept in order with
/// catalogue spelling, positionals in order after the flags. Not meant to be
/// run. `None` when the command does not parse or uses something unknown.
pub fn normalize(command: &str) -> Option<String> {
    let parts: Vec<String> = canonical(command)?
        .into_iter()
        .map(|c| {
            let mut flags: Vec<String> = c
                .flags
                .iter()
                .map(|(name, value)| match value {
                    None => name.clone(),
                    Some(v) if name.starts_with("--") => format!("{name}={}", quote(v)),
                    Some(v) => format!("{name} {}", quote(v)),
                })
                .collect();
            flags.sort();
            let mut words: Vec<String> = std::iter::once(&c.program)
                .chain(&c.subcommands)
                .map(|w| quote(w))
                .collect();
            words.extend(flags);
            if c.end_of_flags {
                words.push("--".into());
            }
            words.extend(c.positionals.iter().map(|p| quote(p)));
            words.extend(c.redirects);
            words.join(" ")
        })
        .collect();
    Some(parts.join(" | "))
}

/// Shell-quotes a word only when it needs it: `--format=csv,noheader` stays
/// bare, `a b` becomes `'a b'`. The result parses back to the same word.
pub fn quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./=:,@%+^".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        shell_words::quote(word).into_owned()
    }
}

/// An argv as one command line a person can read and paste into a shell.
pub fn command_line<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_serialises_kebab_case() {
        assert_eq!(
            serde_json::to_string(&Tier::StateChanging).unwrap(),
            "\"state-changing\""
        );
        assert_eq!(Tier::ReadOnly.to_string(), "read-only");
        assert!(Tier::ReadOnly < Tier::Heavy && Tier::Heavy < Tier::StateChanging);
        assert!(Tier::StateChanging < Tier::Blocked);
    }

    #[test]
    fn blocked_verdict_has_no_plan() {
        let v = check("dmesg -c");
        assert_eq!(v.tier, Tier::Blocked);
        assert!(!v.is_allowed());
        assert!(check("dmesg -T").is_allowed());
    }

    #[test]
    fn pipeline_tier_is_the_maximum() {
        let v = check("dcgmi diag -r 3 | tail -n 5");
        assert_eq!(v.tier, Tier::Heavy);
        assert!(
            v.rule.starts_with("dcgmi diag: -r (--run) 3 is heavy"),
            "{}",
            v.rule
        );
    }
}
