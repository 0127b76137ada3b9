//! The command catalogue: which programs, subcommands, flags and values the
//! guard knows, with a risk tier and a description for each.
//!
//! The catalogue is data (`assets/catalogue/*.toml`, embedded in the binary),
//! loaded and validated once. This module owns the file format and its
//! validation; judging a command against it is [`super::risk`]'s job.
//!
//! # File format
//! Each file holds `[[tool]]` entries and/or a `blocked` list:
//!
//! ```toml
//! [[tool]]
//! binary = "nvidia-smi"            # the program name as typed
//! also = []                        # other programs with the same interface
//! description = "..."
//! tier = "read-only"               # running the program at all (default read-only)
//! reason = "..."                   # required when a tier is not read-only
//! filter = false                   # may follow a pipe (grep, head, ...)
//! combine_short = false            # -abc means -a -b -c
//! global_flags = false             # the tool's flags stay valid after a subcommand
//! number_flag = "--lines"          # -20 means --lines 20 (head, tail)
//! help = ["--help"]                # arguments that print the flags (live confirmation)
//! positional_reason = "..."        # why extra positional arguments are refused
//! requires = [{ flag = "-c", reason = "..." }]  # flags that must be present
//! flag = [{ names = ["-i", "--id"], arg = "gpu", description = "..." }]
//! positional = [{ name = "unit", arg = "string", pattern = "^...$", repeat = true }]
//! [[tool.subcommand]]              # same shape as a tool, `names` instead of `binary`
//! [[tool.example]]                 # command, purpose, tier
//!
//! blocked = [{ names = ["sudo"], reason = "..." }]
//! ```
//!
//! A flag or positional has `arg` (`none`, `int`, `number`, `string`, `enum`,
//! `list`, `path`, `gpu`, `bdf`), `optional` (the value may be left out),
//! `values` (for `enum` and `list`: strings or `{ value, description, tier,
//! reason }`), `ignore_case`, `pattern` (a regex a `string` must match),
//! `tier`, `reason` and `description`; a flag also has `selects_gpu` (it
//! picks the GPUs the command applies to, as `rocm-smi -d` does; implied by
//! `arg = "gpu"`). Positionals add `name`, `repeat`,
//! `required` and `skip_if` (canonical flag names that make it absent, as
//! grep's pattern is with `-e`).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use include_dir::{Dir, include_dir};
use regex::Regex;
use serde::Deserialize;
use thiserror::Error;

use super::Tier;

/// The shipped catalogue files.
static FILES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets/catalogue");

/// A catalogue file that does not load.
#[derive(Debug, Error)]
#[error("catalogue file {file}: {message}")]
pub struct CatalogueError {
    /// The file name.
    pub file: String,
    /// What is wrong, naming the entry.
    pub message: String,
}

/// The kind of value a flag or positional argument takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArgKind {
    /// No value (a switch).
    #[default]
    None,
    /// A whole number, optionally negative.
    Int,
    /// A decimal number.
    Number,
    /// Free text, optionally restricted by `pattern`.
    String,
    /// One of `values`.
    Enum,
    /// Comma-separated items, each one of `values`.
    List,
    /// A path under `/proc` or `/sys` (see the path rules in the guard).
    Path,
    /// NVIDIA GPU selectors: index, `GPU-`/`MIG-` UUID or PCI bus ID, comma-separated.
    Gpu,
    /// A PCI address `[[domain:]bus:]device[.function]`.
    Bdf,
}

impl ArgKind {
    /// What a value of this kind looks like, for error messages.
    pub fn expected(self) -> &'static str {
        match self {
            Self::None => "no value",
            Self::Int => "a whole number",
            Self::Number => "a number",
            Self::String => "text",
            Self::Enum => "one of the listed values",
            Self::List => "a comma-separated list of the listed values",
            Self::Path => "a path under /proc or /sys",
            Self::Gpu => "GPU indexes, UUIDs or PCI bus IDs, comma-separated",
            Self::Bdf => "a PCI address like 17:00.0 or 0000:17:00.0",
        }
    }
}

/// One allowed value of an `enum` or `list` argument.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawChoice")]
pub struct Choice {
    /// The value as typed.
    pub value: String,
    /// What it means, when the catalogue says.
    pub description: Option<String>,
    /// Risk of choosing it.
    pub tier: Tier,
    /// Why, when not read-only.
    pub reason: Option<String>,
}

/// A choice as written: a bare string or a table.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawChoice {
    Plain(String),
    Detailed {
        value: String,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        tier: Tier,
        #[serde(default)]
        reason: Option<String>,
    },
}

impl From<RawChoice> for Choice {
    fn from(raw: RawChoice) -> Self {
        match raw {
            RawChoice::Plain(value) => Self {
                value,
                description: None,
                tier: Tier::ReadOnly,
                reason: None,
            },
            RawChoice::Detailed {
                value,
                description,
                tier,
                reason,
            } => Self {
                value,
                description,
                tier,
                reason,
            },
        }
    }
}

/// A flag of a tool or subcommand.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    /// Every spelling (`-i`, `--id`); the canonical one is the first `--` name.
    pub names: Vec<String>,
    /// The value it takes.
    #[serde(default)]
    pub arg: ArgKind,
    /// Whether the value may be left out.
    #[serde(default)]
    pub optional: bool,
    /// Allowed values of an `enum` or `list`.
    #[serde(default)]
    pub values: Vec<Choice>,
    /// Match `values` case-insensitively.
    #[serde(default)]
    pub ignore_case: bool,
    /// Regex a `string` value must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Risk of using the flag.
    #[serde(default)]
    pub tier: Tier,
    /// Why, when not read-only.
    #[serde(default)]
    pub reason: Option<String>,
    /// For a number: the values `[low, high]` that keep a run short. One
    /// outside (`dmon -c 1000000`, `-c 0` or `-c -1` that some tools read as
    /// "forever", a delay of a day) makes the command heavy.
    #[serde(default)]
    pub quick: Option<[f64; 2]>,
    /// One line saying what it does.
    pub description: String,
    /// It picks the GPUs the command applies to (`rocm-smi -d`, `amd-smi
    /// -g`); unset, `arg = "gpu"` implies it. The copilot scopes a reference
    /// to the GPUs a question names through it.
    #[serde(default)]
    pub selects_gpu: Option<bool>,
    /// `pattern`, compiled at load.
    #[serde(skip)]
    pub(crate) regex: Option<Regex>,
}

impl Flag {
    /// Whether it picks the GPUs the command applies to.
    pub fn selects_gpus(&self) -> bool {
        self.selects_gpu.unwrap_or(self.arg == ArgKind::Gpu)
    }

    /// The canonical spelling: the first long (`--`) name, else the first name.
    pub fn canonical(&self) -> &str {
        self.names
            .iter()
            .find(|n| n.starts_with("--"))
            .or(self.names.first())
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The rules its value must follow.
    pub(crate) fn rules(&self) -> ValueRules<'_> {
        ValueRules {
            kind: self.arg,
            values: &self.values,
            ignore_case: self.ignore_case,
            regex: self.regex.as_ref(),
        }
    }
}

/// A positional argument of a tool or subcommand.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Positional {
    /// Its name in messages (`unit`, `file`).
    pub name: String,
    /// The value it takes.
    #[serde(default = "string_kind")]
    pub arg: ArgKind,
    /// Allowed values of an `enum` or `list`.
    #[serde(default)]
    pub values: Vec<Choice>,
    /// Match `values` case-insensitively.
    #[serde(default)]
    pub ignore_case: bool,
    /// Regex a `string` value must match.
    #[serde(default)]
    pub pattern: Option<String>,
    /// It may be given several times (only the last positional).
    #[serde(default)]
    pub repeat: bool,
    /// It must be given (unless a `skip_if` flag is present).
    #[serde(default)]
    pub required: bool,
    /// Canonical flag names whose presence means this positional is absent.
    #[serde(default)]
    pub skip_if: Vec<String>,
    /// Risk of giving it.
    #[serde(default)]
    pub tier: Tier,
    /// Why, when not read-only.
    #[serde(default)]
    pub reason: Option<String>,
    /// One line saying what it is.
    pub description: String,
    /// `pattern`, compiled at load.
    #[serde(skip)]
    pub(crate) regex: Option<Regex>,
}

fn string_kind() -> ArgKind {
    ArgKind::String
}

impl Positional {
    /// The rules its value must follow.
    pub(crate) fn rules(&self) -> ValueRules<'_> {
        ValueRules {
            kind: self.arg,
            values: &self.values,
            ignore_case: self.ignore_case,
            regex: self.regex.as_ref(),
        }
    }
}

/// The value rules shared by flags and positionals.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueRules<'a> {
    /// The kind of value.
    pub kind: ArgKind,
    /// Allowed values of an `enum` or `list`.
    pub values: &'a [Choice],
    /// Match `values` case-insensitively.
    pub ignore_case: bool,
    /// Regex a `string` must match.
    pub regex: Option<&'a Regex>,
}

/// A flag that must be present (`dmon` needs `-c`, `top` needs `-b -n`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Any spelling of the flag.
    pub flag: String,
    /// Why it is needed.
    pub reason: String,
}

/// A realistic operator command, for retrieval and few-shot prompts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// The command line.
    pub command: String,
    /// What an operator runs it for.
    pub purpose: String,
    /// The tier the guard must give it (tested).
    pub tier: Tier,
}

/// A tool, or one of its subcommands (same shape: a subcommand has `names`
/// where a tool has `binary`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// The program name (tools only).
    #[serde(default)]
    pub binary: String,
    /// Other programs with the same interface (tools only).
    #[serde(default)]
    pub also: Vec<String>,
    /// Spellings of a subcommand (subcommands only); the first is canonical.
    #[serde(default)]
    pub names: Vec<String>,
    /// One line saying what it does.
    pub description: String,
    /// Risk of running it at all.
    #[serde(default)]
    pub tier: Tier,
    /// Why, when not read-only.
    #[serde(default)]
    pub reason: Option<String>,
    /// May follow a pipe.
    #[serde(default)]
    pub filter: bool,
    /// `-abc` means `-a -b -c`.
    #[serde(default)]
    pub combine_short: bool,
    /// The tool's flags stay valid after a subcommand.
    #[serde(default)]
    pub global_flags: bool,
    /// `-NUM` means this flag with value NUM.
    #[serde(default)]
    pub number_flag: Option<String>,
    /// Arguments that make the program print its flags.
    #[serde(default)]
    pub help: Vec<String>,
    /// Why positional arguments beyond the declared ones are refused.
    #[serde(default)]
    pub positional_reason: Option<String>,
    /// Flags that must be present.
    #[serde(default)]
    pub requires: Vec<Requirement>,
    /// Flags.
    #[serde(default)]
    pub flag: Vec<Flag>,
    /// Positional arguments, in order.
    #[serde(default)]
    pub positional: Vec<Positional>,
    /// Subcommands.
    #[serde(default)]
    pub subcommand: Vec<Tool>,
    /// Example commands (tools only).
    #[serde(default)]
    pub example: Vec<Example>,
}

impl Tool {
    /// The flag spelled `name` in this scope.
    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flag.iter().find(|f| f.names.iter().any(|n| n == name))
    }

    /// The subcommand spelled `name`.
    pub fn subcommand(&self, name: &str) -> Option<&Tool> {
        self.subcommand
            .iter()
            .find(|s| s.names.iter().any(|n| n == name))
    }

    /// The canonical name: the binary of a tool, the first name of a subcommand.
    pub fn name(&self) -> &str {
        if self.binary.is_empty() {
            self.names.first().map(String::as_str).unwrap_or("")
        } else {
            &self.binary
        }
    }
}

/// A program that is never allowed, with the reason.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockedEntry {
    names: Vec<String>,
    reason: String,
}

/// One catalogue file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    #[serde(default)]
    tool: Vec<Tool>,
    #[serde(default)]
    blocked: Vec<BlockedEntry>,
}

/// The loaded catalogue: tools by program name and the blocked programs.
#[derive(Debug)]
pub struct Catalogue {
    tools: Vec<Tool>,
    by_binary: HashMap<String, usize>,
    blocked: HashMap<String, String>,
}

impl Catalogue {
    /// The catalogue shipped in the binary, loaded once.
    pub fn builtin() -> &'static Catalogue {
        static BUILTIN: OnceLock<Catalogue> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            let files: Vec<(String, &str)> = FILES
                .files()
                .filter(|f| f.path().extension().is_some_and(|e| e == "toml"))
                .filter_map(|f| Some((f.path().display().to_string(), f.contents_utf8()?)))
                .collect();
            // The shipped files are validated by the test suite; a failure here
            // is a build defect, not bad input.
            Catalogue::parse(&files).expect("the built-in catalogue is valid")
        })
    }

    /// Loads a catalogue from `(file name, TOML text)` pairs and validates it.
    pub fn parse(files: &[(String, &str)]) -> Result<Catalogue, CatalogueError> {
        let mut catalogue = Catalogue {
            tools: Vec::new(),
            by_binary: HashMap::new(),
            blocked: HashMap::new(),
        };
        let mut sorted: Vec<&(String, &str)> = files.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (file, text) in sorted {
            let fail = |message: String| CatalogueError {
                file: file.clone(),
                message,
            };
            let parsed: CatalogueFile =
                toml::from_str(text).map_err(|e| fail(e.to_string().trim().to_string()))?;
            for entry in parsed.blocked {
                for name in entry.names {
                    if catalogue
                        .blocked
                        .insert(name.clone(), entry.reason.clone())
                        .is_some()
                    {
                        return Err(fail(format!("'{name}' is blocked twice")));
                    }
                }
            }
            for mut tool in parsed.tool {
                if tool.binary.is_empty() || !tool.names.is_empty() {
                    return Err(fail(format!(
                        "tool '{}' needs `binary` and no `names`",
                        tool.name()
                    )));
                }
                let binary = tool.binary.clone();
                validate(&mut tool, &binary, true).map_err(fail)?;
                let index = catalogue.tools.len();
                for binary in std::iter::once(&tool.binary).chain(&tool.also) {
                    if catalogue.by_binary.insert(binary.clone(), index).is_some() {
                        return Err(fail(format!("binary '{binary}' is catalogued twice")));
                    }
                }
                catalogue.tools.push(tool);
            }
        }
        if let Some(name) = catalogue
            .by_binary
            .keys()
            .find(|b| catalogue.blocked.contains_key(*b))
        {
            return Err(CatalogueError {
                file: "blocked.toml".into(),
                message: format!("'{name}' is both catalogued and blocked"),
            });
        }
        Ok(catalogue)
    }

    /// The tool run as `binary` (its own name or one in `also`).
    pub fn tool(&self, binary: &str) -> Option<&Tool> {
        self.by_binary.get(binary).map(|&i| &self.tools[i])
    }

    /// Every catalogued program name, sorted.
    pub fn binaries(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self.by_binary.keys().map(String::as_str).collect();
        names.sort_unstable();
        names.into_iter()
    }

    /// Every tool, in file order.
    pub fn tools(&self) -> impl Iterator<Item = &Tool> {
        self.tools.iter()
    }

    /// Why `binary` is never allowed, when the catalogue says.
    pub fn blocked_reason(&self, binary: &str) -> Option<&str> {
        self.blocked.get(binary).map(String::as_str)
    }
}

/// Checks one tool or subcommand and compiles its patterns.
fn validate(scope: &mut Tool, path: &str, top: bool) -> Result<(), String> {
    if !top && (scope.names.is_empty() || !scope.binary.is_empty()) {
        return Err(format!(
            "subcommand of '{path}' needs `names` and no `binary`"
        ));
    }
    if !top
        && (!scope.also.is_empty()
            || !scope.example.is_empty()
            || scope.filter
            || scope.number_flag.is_some())
    {
        return Err(format!(
            "'{path}': also, example, filter and number_flag belong to tools"
        ));
    }
    need_reason(scope.tier, &scope.reason, path)?;
    let mut seen = HashSet::new();
    for flag in &mut scope.flag {
        let at = format!("{path} {}", flag.canonical());
        for name in &flag.names {
            if !name.starts_with('-') || name.len() < 2 {
                return Err(format!("'{at}': flag name '{name}' must start with '-'"));
            }
            if !seen.insert(name.clone()) {
                return Err(format!("'{path}': flag '{name}' is declared twice"));
            }
        }
        need_reason(flag.tier, &flag.reason, &at)?;
        flag.regex = compile(&flag.pattern, &at)?;
        check_values(flag.arg, &flag.values, flag.optional, &at)?;
    }
    let count = scope.positional.len();
    for (i, pos) in scope.positional.iter_mut().enumerate() {
        let at = format!("{path} <{}>", pos.name);
        need_reason(pos.tier, &pos.reason, &at)?;
        pos.regex = compile(&pos.pattern, &at)?;
        check_values(pos.arg, &pos.values, false, &at)?;
        if pos.arg == ArgKind::None {
            return Err(format!("'{at}': a positional needs a value kind"));
        }
        if pos.repeat && i + 1 != count {
            return Err(format!("'{at}': only the last positional may repeat"));
        }
    }
    for pos in &scope.positional {
        if let Some(s) = pos.skip_if.iter().find(|s| scope.flag(s).is_none()) {
            return Err(format!(
                "'{path} <{}>': skip_if names unknown flag {s}",
                pos.name
            ));
        }
    }
    for req in &scope.requires {
        if scope.flag(&req.flag).is_none() {
            return Err(format!("'{path}': requires unknown flag {}", req.flag));
        }
    }
    if let Some(n) = &scope.number_flag
        && scope.flag(n).is_none_or(|f| f.arg == ArgKind::None)
    {
        return Err(format!(
            "'{path}': number_flag {n} is not a flag with a value"
        ));
    }
    let mut sub_names = HashSet::new();
    for sub in &mut scope.subcommand {
        for name in &sub.names {
            if !sub_names.insert(name.clone()) {
                return Err(format!("'{path}': subcommand '{name}' is declared twice"));
            }
        }
        let sub_path = format!("{path} {}", sub.name());
        validate(sub, &sub_path, false)?;
    }
    Ok(())
}

/// A non-read-only tier must say why.
fn need_reason(tier: Tier, reason: &Option<String>, at: &str) -> Result<(), String> {
    if tier != Tier::ReadOnly && reason.as_deref().is_none_or(str::is_empty) {
        return Err(format!("'{at}' is {tier} but gives no reason"));
    }
    Ok(())
}

/// Compiles a value pattern.
fn compile(pattern: &Option<String>, at: &str) -> Result<Option<Regex>, String> {
    pattern
        .as_deref()
        .map(|p| Regex::new(p).map_err(|e| format!("'{at}': bad pattern: {e}")))
        .transpose()
}

/// `enum`/`list` need values; other kinds must not have any.
fn check_values(kind: ArgKind, values: &[Choice], optional: bool, at: &str) -> Result<(), String> {
    let wants_values = matches!(kind, ArgKind::Enum | ArgKind::List);
    if wants_values == values.is_empty() {
        return Err(format!(
            "'{at}': values are required for enum and list arguments and only for them"
        ));
    }
    if optional && kind == ArgKind::None {
        return Err(format!("'{at}': optional needs a value kind"));
    }
    for choice in values {
        need_reason(
            choice.tier,
            &choice.reason,
            &format!("{at}={}", choice.value),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Catalogue, CatalogueError> {
        Catalogue::parse(&[("t.toml".to_string(), text)])
    }

    #[test]
    fn builtin_loads_with_the_required_tools() {
        let c = Catalogue::builtin();
        for b in [
            "nvidia-smi",
            "dcgmi",
            "nvidia-bug-report.sh",
            "lspci",
            "dmesg",
            "journalctl",
            "systemctl",
            "ibstat",
            "ibv_devinfo",
            "rocm-smi",
            "amd-smi",
            "nvcc",
            "numactl",
            "lscpu",
            "free",
            "df",
            "ps",
            "top",
            "uptime",
            "uname",
            "lsmod",
            "modinfo",
            "ethtool",
            "ip",
            "cat",
            "all_reduce_perf",
            "alltoall_perf",
            "grep",
            "head",
            "tail",
            "sort",
            "uniq",
            "wc",
            "cut",
        ] {
            assert!(c.tool(b).is_some(), "{b} missing");
        }
        assert!(c.blocked_reason("sudo").is_some());
        assert!(c.binaries().any(|b| b == "broadcast_perf"));
    }

    #[test]
    fn state_changing_flag_without_reason_is_rejected() {
        let err = load(
            r#"[[tool]]
binary = "x"
description = "d"
flag = [{ names = ["-r"], tier = "state-changing", description = "d" }]"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("gives no reason"), "{err}");
    }

    #[test]
    fn duplicate_flag_is_rejected() {
        let err = load(
            r#"[[tool]]
binary = "x"
description = "d"
flag = [{ names = ["-r"], description = "d" }, { names = ["-r", "--r"], description = "d" }]"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("declared twice"), "{err}");
    }

    #[test]
    fn unknown_field_is_rejected() {
        let err = load("[[tool]]\nbinary = \"x\"\ndescription = \"d\"\ntypo = 1").unwrap_err();
        assert!(err.to_string().contains("typo"), "{err}");
    }

    #[test]
    fn enum_without_values_is_rejected() {
        let err = load(
            r#"[[tool]]
binary = "x"
description = "d"
flag = [{ names = ["-e"], arg = "enum", description = "d" }]"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("values are required"), "{err}");
    }

    #[test]
    fn canonical_is_the_first_long_name() {
        let c = Catalogue::builtin();
        let smi = c.tool("nvidia-smi").unwrap();
        assert_eq!(smi.flag("-r").unwrap().canonical(), "--gpu-reset");
        let lspci = c.tool("lspci").unwrap();
        assert_eq!(lspci.flag("-v").unwrap().canonical(), "-v");
    }
}
