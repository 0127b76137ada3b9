//! Judging one pipeline segment's argv against the catalogue: which tool,
//! subcommands, flags, values and positional arguments it uses, the highest
//! risk tier among them and the rule that set it.
//!
//! Flags are read the way the tools' own parsers do: `--flag=value`,
//! `--flag value`, `-i 0`, `-i0`, exact multi-letter single-dash flags
//! (`-pm`, `-lgc`), combined short flags (`-vvv`, `-bn1`) where the tool
//! allows them, `-NUM` for tools with a `number_flag`, and `--` ending the
//! flags. Long flags are never abbreviated: an abbreviation is an unknown flag.
//! `list` values (`--query-gpu=a,b`, `-d ECC,POWER`) are checked item by item.
//!
//! # Paths
//! A `path` argument must be a plain absolute path under `/proc` or `/sys`
//! (no `.`, `..` or empty components) and must not name a per-process entry
//! that exposes secrets or memory (`environ`, `mem`, `root`, `cwd`, `fd`,
//! ...). Symlinks are not resolved: under `/proc` the dangerous links are
//! the denied names, and `/sys` links stay inside `/sys`.

use std::sync::LazyLock;

use regex::Regex;

use super::Tier;
use super::catalogue::{ArgKind, Catalogue, Choice, Flag, Tool, ValueRules};

/// What one argument is, in canonical terms (for normalisation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Canon {
    /// The program.
    Program(String),
    /// A subcommand, by canonical name.
    Subcommand(String),
    /// A flag by canonical name, with its value in canonical spelling.
    Flag {
        /// Canonical flag name.
        name: String,
        /// Its value, if any.
        value: Option<String>,
    },
    /// `--`.
    EndOfFlags,
    /// A positional argument.
    Positional(String),
    /// Not understood: the segment is refused.
    Refused,
}

/// One argument as typed, what it means and what it is.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The argument as typed (a flag and its separate value joined by a space).
    pub text: String,
    /// Its catalogue description.
    pub meaning: String,
    /// Its canonical form.
    pub canon: Canon,
}

/// A long flag used on a tool, for confirmation against the tool's own help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LongFlag {
    /// Arguments that print the help listing the flag.
    pub help: Vec<String>,
    /// The flag as typed, without any `=value`.
    pub flag: String,
}

/// The judgement of one segment.
#[derive(Debug, Clone)]
pub(crate) struct Analysis {
    /// The highest tier of any part.
    pub tier: Tier,
    /// The rule that set `tier`; `None` when everything is read-only.
    pub rule: Option<String>,
    /// Every argument, in order.
    pub items: Vec<Item>,
    /// Long flags used, with the help to confirm them by.
    pub long_flags: Vec<LongFlag>,
}

impl Analysis {
    /// Raises the tier, keeping the first rule of the highest tier.
    fn raise(&mut self, tier: Tier, rule: impl FnOnce() -> String) {
        if tier > self.tier || (tier > Tier::ReadOnly && self.rule.is_none()) {
            self.tier = tier;
            self.rule = Some(rule());
        }
    }

    /// Refuses the segment: blocked with `rule`, the offending text recorded.
    fn refuse(&mut self, text: &str, rule: String) {
        self.items.push(Item {
            text: text.to_string(),
            meaning: format!("not allowed: {rule}"),
            canon: Canon::Refused,
        });
        self.tier = Tier::Blocked;
        self.rule = Some(rule);
    }

    /// Whether a structural rule refused the segment.
    pub fn refused(&self) -> bool {
        self.items.iter().any(|i| i.canon == Canon::Refused)
    }
}

/// Judges `argv` (program first); `after_pipe` when it reads another's output.
pub(crate) fn analyse(catalogue: &Catalogue, argv: &[String], after_pipe: bool) -> Analysis {
    let mut a = Analysis {
        tier: Tier::ReadOnly,
        rule: None,
        items: Vec::new(),
        long_flags: Vec::new(),
    };
    let Some(program) = argv.first() else {
        a.refuse("", "no program is named".into());
        return a;
    };
    if program.contains('/') {
        a.refuse(
            program,
            format!("give the program name, not a path: '{program}'"),
        );
        return a;
    }
    if let Some(reason) = catalogue.blocked_reason(program) {
        a.refuse(program, format!("{program} is blocked: {reason}"));
        return a;
    }
    let Some(tool) = catalogue.tool(program) else {
        a.refuse(program, format!("unknown binary '{program}'"));
        return a;
    };
    if after_pipe && !tool.filter {
        let filters: Vec<&str> = catalogue
            .tools()
            .filter(|t| t.filter)
            .map(|t| t.binary.as_str())
            .collect();
        a.refuse(
            program,
            format!(
                "{program} may not follow a pipe; only the filters {} may",
                filters.join(", ")
            ),
        );
        return a;
    }
    a.items.push(Item {
        text: program.clone(),
        meaning: tool.description.clone(),
        canon: Canon::Program(program.clone()),
    });
    a.raise(tool.tier, || {
        format!("{program} is {} ({})", tool.tier, reason(&tool.reason))
    });
    Walker {
        tool,
        path: vec![tool],
        label: program.clone(),
        flags: Vec::new(),
        positionals: Vec::new(),
        a,
    }
    .walk(&argv[1..])
}

/// State while reading one segment's arguments.
struct Walker<'c> {
    /// The tool.
    tool: &'c Tool,
    /// The tool and the subcommands entered, innermost last.
    path: Vec<&'c Tool>,
    /// `program sub sub`, for messages.
    label: String,
    /// Flags seen.
    flags: Vec<&'c Flag>,
    /// Positional arguments seen, with their item index.
    positionals: Vec<(String, usize)>,
    /// The judgement so far.
    a: Analysis,
}

impl<'c> Walker<'c> {
    /// Reads every argument, then assigns positionals and checks requirements.
    fn walk(mut self, args: &[String]) -> Analysis {
        let mut i = 0;
        let mut flags_done = false;
        while i < args.len() {
            let tok = &args[i];
            i += 1;
            if !flags_done && tok == "--" {
                flags_done = true;
                self.a.items.push(Item {
                    text: tok.clone(),
                    meaning: "end of flags: what follows are arguments".into(),
                    canon: Canon::EndOfFlags,
                });
                continue;
            }
            let ok = if !flags_done && tok.starts_with('-') && tok.len() > 1 {
                self.flag_token(tok, args, &mut i)
            } else {
                self.word(tok, flags_done)
            };
            if !ok {
                return self.a;
            }
        }
        self.finish();
        self.a
    }

    /// The innermost scope.
    fn scope(&self) -> &'c Tool {
        self.path[self.path.len() - 1]
    }

    /// The flag spelled `name` in the current scope (or the tool's globals).
    fn find(&self, name: &str) -> Option<(&'c Flag, &'c Tool)> {
        let scope = self.scope();
        scope.flag(name).map(|f| (f, scope)).or_else(|| {
            (self.tool.global_flags && self.path.len() > 1)
                .then(|| self.tool.flag(name).map(|f| (f, self.tool)))
                .flatten()
        })
    }

    /// Reads a token starting with `-`; false when the segment is refused.
    fn flag_token(&mut self, tok: &str, args: &[String], i: &mut usize) -> bool {
        if let Some((flag, owner)) = self.find(tok) {
            return self.use_flag(flag, owner, tok, None, args, i);
        }
        if let Some(long) = tok.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v.to_string())),
                None => (tok.to_string(), None),
            };
            return match self.find(&name) {
                Some((flag, owner)) => self.use_flag(flag, owner, &name, inline, args, i),
                None => self.unknown(tok, &name),
            };
        }
        let body = &tok[1..];
        if body.bytes().all(|b| b.is_ascii_digit())
            && let Some(number_flag) = &self.tool.number_flag
            && let Some((flag, owner)) = self.find(number_flag)
        {
            return self.use_flag(flag, owner, tok, Some(body.to_string()), args, i);
        }
        // -i0: a one-letter flag with its value attached.
        let first = format!("-{}", &body[..1]);
        if let Some((flag, owner)) = self.find(&first)
            && flag.arg != ArgKind::None
        {
            return self.use_flag(flag, owner, &first, Some(body[1..].to_string()), args, i);
        }
        if !self.tool.combine_short {
            return self.unknown(tok, tok);
        }
        // -vvv, -bn1: combined one-letter flags, the last may take a value.
        for (at, c) in body.char_indices() {
            let name = format!("-{c}");
            let Some((flag, owner)) = self.find(&name) else {
                return self.unknown(tok, &name);
            };
            let rest = &body[at + c.len_utf8()..];
            if flag.arg != ArgKind::None {
                let inline = (!rest.is_empty()).then(|| rest.to_string());
                return self.use_flag(flag, owner, &name, inline, args, i);
            }
            if !self.use_flag(flag, owner, &name, None, args, i) {
                return false;
            }
        }
        true
    }

    /// Refuses an unknown flag, naming it.
    fn unknown(&mut self, tok: &str, name: &str) -> bool {
        let rule = if name == tok {
            format!("unknown flag {name} for {}", self.label)
        } else {
            format!("unknown flag {name} (in {tok}) for {}", self.label)
        };
        self.a.refuse(tok, rule);
        false
    }

    /// Records a flag, taking and checking its value.
    fn use_flag(
        &mut self,
        flag: &'c Flag,
        owner: &'c Tool,
        typed: &str,
        inline: Option<String>,
        args: &[String],
        i: &mut usize,
    ) -> bool {
        let shown = display_flag(typed, flag);
        let value = match (flag.arg, inline) {
            (ArgKind::None, Some(v)) => {
                self.a.refuse(
                    &format!("{typed}={v}"),
                    format!("flag {shown} of {} takes no value", self.label),
                );
                return false;
            }
            (ArgKind::None, None) => None,
            (_, Some(v)) => Some(v),
            (_, None) if flag.optional => {
                // Only a separate short-flag value that fits is taken (`-b -1`,
                // `-l 5`); a long flag's optional value needs `=`.
                let next = args.get(*i).filter(|n| {
                    !typed.starts_with("--")
                        && (!n.starts_with('-') || n.parse::<i64>().is_ok())
                        && check_value(flag.rules(), n).is_ok()
                });
                next.inspect(|_| *i += 1).cloned()
            }
            (_, None) => match args.get(*i) {
                Some(v) => {
                    *i += 1;
                    Some(v.clone())
                }
                None => {
                    self.a.refuse(
                        typed,
                        format!(
                            "flag {shown} of {} needs a value: {}",
                            self.label,
                            flag.arg.expected()
                        ),
                    );
                    return false;
                }
            },
        };
        let text = match &value {
            Some(v) if typed.starts_with("--") => format!("{typed}={v}"),
            Some(v) => format!("{typed} {v}"),
            None => typed.to_string(),
        };
        let mut meaning = flag.description.clone();
        let mut canon_value = None;
        if let Some(v) = &value {
            match check_value(flag.rules(), v) {
                Ok(chosen) => {
                    canon_value = Some(canonical_value(flag.arg, v, &chosen));
                    self.choices(&chosen, &shown, &mut meaning);
                    self.heavy_path(flag.arg, v);
                }
                Err(why) => {
                    self.a.refuse(
                        &text,
                        format!("invalid value '{v}' for {shown} of {}: {why}", self.label),
                    );
                    return false;
                }
            }
        }
        if typed.starts_with("--") && !owner.help.is_empty() {
            self.a.long_flags.push(LongFlag {
                help: owner.help.clone(),
                flag: typed.to_string(),
            });
        }
        if let (Some([low, high]), Some(v)) = (flag.quick, &value)
            && v.parse::<f64>().is_ok_and(|n| n < low || n > high)
        {
            let label = &self.label;
            self.a.raise(Tier::Heavy, || {
                format!("{label}: {shown} {v} is outside {low}..{high}, so the run is long or does not end")
            });
        }
        let label = &self.label;
        self.a.raise(flag.tier, || {
            format!(
                "{label}: flag {shown} is {} ({})",
                flag.tier,
                reason(&flag.reason)
            )
        });
        self.flags.push(flag);
        self.a.items.push(Item {
            text,
            meaning,
            canon: Canon::Flag {
                name: flag.canonical().to_string(),
                value: canon_value,
            },
        });
        true
    }

    /// Raises the tier for chosen values and adds their descriptions.
    /// Raises to heavy a path whose read can upset hardware.
    fn heavy_path(&mut self, kind: ArgKind, v: &str) {
        if kind != ArgKind::Path {
            return;
        }
        if let Some(why) = heavy_read(v) {
            let label = &self.label;
            self.a
                .raise(Tier::Heavy, || format!("{label}: reading '{v}' {why}"));
        }
    }

    fn choices(&mut self, chosen: &[&Choice], shown: &str, meaning: &mut String) {
        let described: Vec<String> = chosen
            .iter()
            .filter_map(|c| Some(format!("{} = {}", c.value, c.description.as_deref()?)))
            .collect();
        if !described.is_empty() {
            meaning.push_str(": ");
            meaning.push_str(&described.join("; "));
        }
        let label = &self.label;
        for c in chosen {
            self.a.raise(c.tier, || {
                format!(
                    "{label}: {shown} {} is {} ({})",
                    c.value,
                    c.tier,
                    reason(&c.reason)
                )
            });
        }
    }

    /// Reads a word that is not a flag: a subcommand (never after `--`) or a
    /// positional.
    fn word(&mut self, tok: &str, flags_done: bool) -> bool {
        let scope = self.scope();
        if !flags_done && self.positionals.is_empty() && !scope.subcommand.is_empty() {
            if let Some(sub) = scope.subcommand(tok) {
                self.path.push(sub);
                self.label = format!("{} {}", self.label, sub.name());
                self.a.items.push(Item {
                    text: tok.to_string(),
                    meaning: sub.description.clone(),
                    canon: Canon::Subcommand(sub.name().to_string()),
                });
                let label = &self.label;
                self.a.raise(sub.tier, || {
                    format!(
                        "{label}: subcommand {tok} is {} ({})",
                        sub.tier,
                        reason(&sub.reason)
                    )
                });
                return true;
            }
            if scope.positional.is_empty() {
                let rule = format!("unknown subcommand '{tok}' for {}", self.label);
                self.a.refuse(tok, rule);
                return false;
            }
        }
        self.positionals.push((tok.to_string(), self.a.items.len()));
        self.a.items.push(Item {
            text: tok.to_string(),
            meaning: String::new(),
            canon: Canon::Positional(tok.to_string()),
        });
        true
    }

    /// Assigns positionals to the scope's declarations and checks `requires`.
    fn finish(&mut self) {
        let scope = self.scope();
        let seen = self.flags.clone();
        let present = |name: &str| seen.iter().any(|f| f.names.iter().any(|n| n == name));
        let specs: Vec<_> = scope
            .positional
            .iter()
            .filter(|p| !p.skip_if.iter().any(|s| present(s)))
            .collect();
        let mut filled = vec![0usize; specs.len()];
        let mut spec_at = 0;
        for (value, item) in std::mem::take(&mut self.positionals) {
            let Some(spec) = specs.get(spec_at) else {
                let rule = match &scope.positional_reason {
                    Some(why) => format!("{}: unexpected argument '{value}': {why}", self.label),
                    None => format!("unexpected argument '{value}' for {}", self.label),
                };
                self.a.refuse(&value, rule);
                return;
            };
            filled[spec_at] += 1;
            if !spec.repeat {
                spec_at += 1;
            }
            match check_value(spec.rules(), &value) {
                Ok(chosen) => {
                    let mut meaning = format!("{}: {}", spec.name, spec.description);
                    self.choices(&chosen, &spec.name, &mut meaning);
                    self.heavy_path(spec.arg, &value);
                    self.a.items[item].meaning = meaning;
                }
                Err(why) => {
                    let rule = format!("invalid {} '{value}' for {}: {why}", spec.name, self.label);
                    self.a.refuse(&value, rule);
                    return;
                }
            }
            let label = &self.label;
            self.a.raise(spec.tier, || {
                format!(
                    "{label}: {} '{value}' is {} ({})",
                    spec.name,
                    spec.tier,
                    reason(&spec.reason)
                )
            });
        }
        if let Some((_, missing)) = specs
            .iter()
            .enumerate()
            .find(|(n, s)| s.required && filled[*n] == 0)
        {
            let rule = format!("{} needs <{}>", self.label, missing.name);
            let label = self.label.clone();
            self.a.refuse(&label, rule);
            return;
        }
        for scope in self.path.clone() {
            for req in &scope.requires {
                if !present(&req.flag) {
                    let label = &self.label;
                    self.a.raise(Tier::Blocked, || {
                        format!("{label}: missing {} ({})", req.flag, req.reason)
                    });
                }
            }
        }
    }
}

/// `-r (--gpu-reset)` when typed differs from canonical, else the flag.
fn display_flag(typed: &str, flag: &Flag) -> String {
    let canonical = flag.canonical();
    if typed == canonical {
        typed.to_string()
    } else {
        format!("{typed} ({canonical})")
    }
}

/// The reason text, or a placeholder the validation never lets through.
fn reason(r: &Option<String>) -> &str {
    r.as_deref().unwrap_or("no reason given")
}

/// A value in canonical spelling: list items trimmed, choices as catalogued.
fn canonical_value(kind: ArgKind, raw: &str, chosen: &[&Choice]) -> String {
    match kind {
        ArgKind::Enum | ArgKind::List => chosen
            .iter()
            .map(|c| c.value.as_str())
            .collect::<Vec<_>>()
            .join(","),
        _ => raw.to_string(),
    }
}

/// Checks a value against its rules; the chosen catalogue values, or why not.
fn check_value<'a>(rules: ValueRules<'a>, v: &str) -> Result<Vec<&'a Choice>, String> {
    static BDF: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(([0-9a-fA-F]{1,8}:)?[0-9a-fA-F]{1,2}:)?[0-9a-fA-F]{1,2}(\.[0-7])?$")
            .expect("static regex")
    });
    static UUID: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(GPU|MIG)-[0-9a-fA-F-]+(/[0-9]+)*$").expect("static regex"));
    let find = |item: &str| {
        rules.values.iter().find(|c| {
            if rules.ignore_case {
                c.value.eq_ignore_ascii_case(item)
            } else {
                c.value == item
            }
        })
    };
    match rules.kind {
        ArgKind::None => Err("takes no value".into()),
        ArgKind::Int => v
            .parse::<i64>()
            .map(|_| Vec::new())
            .map_err(|_| "expected a whole number".into()),
        ArgKind::Number => match v.parse::<f64>() {
            Ok(n)
                if n.is_finite()
                    && v.bytes()
                        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') =>
            {
                Ok(Vec::new())
            }
            _ => Err("expected a number".into()),
        },
        ArgKind::String => match rules.regex {
            Some(re) if !re.is_match(v) => Err(format!("expected text matching {}", re.as_str())),
            _ => Ok(Vec::new()),
        },
        ArgKind::Enum => find(v).map(|c| vec![c]).ok_or_else(|| {
            let known: Vec<&str> = rules.values.iter().map(|c| c.value.as_str()).collect();
            format!("expected one of {}", known.join(", "))
        }),
        ArgKind::List => v
            .split(',')
            .map(str::trim)
            .map(|item| {
                if item.is_empty() {
                    Err("empty item in the list".to_string())
                } else {
                    find(item).ok_or_else(|| format!("'{item}' is not a known value"))
                }
            })
            .collect(),
        ArgKind::Path => check_path(v).map(|_| Vec::new()),
        ArgKind::Gpu => v
            .split(',')
            .all(|g| {
                g.bytes().all(|b| b.is_ascii_digit()) && !g.is_empty()
                    || UUID.is_match(g)
                    || BDF.is_match(g)
            })
            .then(Vec::new)
            .ok_or_else(|| ArgKind::Gpu.expected().to_string()),
        ArgKind::Bdf => BDF
            .is_match(v)
            .then(Vec::new)
            .ok_or_else(|| ArgKind::Bdf.expected().to_string()),
    }
}

/// Entries under `/proc` that expose secrets, other processes' memory or
/// escape to other file systems.
const DENIED_PROC: &[&str] = &[
    "environ",
    "mem",
    "kcore",
    "kmem",
    "root",
    "cwd",
    "exe",
    "fd",
    "fdinfo",
    "map_files",
    "pagemap",
    "auxv",
    "syscall",
    "stack",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "sysrq-trigger",
    "keys",
    "key-users",
    "timer_list",
    "personality",
];

/// Places under `/proc` and `/sys` whose read is not a plain read: it
/// consumes what other readers need and never ends (`/proc/kmsg`,
/// `trace_pipe`), or runs driver code (debugfs: reading
/// `amdgpu_gpu_recover` resets the GPU; `usbmon` captures keystrokes).
const DENIED_TREES: &[(&str, &str)] = &[
    (
        "/proc/kmsg",
        "reading it takes kernel messages from the system log and never ends",
    ),
    (
        "/sys/kernel/debug",
        "debugfs files run driver code when read (some reset the GPU)",
    ),
    (
        "/sys/kernel/tracing",
        "trace files consume events other tools wait for and never end",
    ),
];

/// Why reading `p` is heavy, if it is: PCI configuration space, VPD and
/// option ROMs are read from the device itself, which can hang or upset
/// some devices (the catalogue rates `lspci -x` heavy for the same reason).
fn heavy_read(p: &str) -> Option<&'static str> {
    let device_file = ["config", "vpd", "rom"]
        .iter()
        .any(|name| p.rsplit('/').next() == Some(name));
    let pci = p.starts_with("/sys/bus/pci/") || p.starts_with("/sys/devices/pci");
    if (pci && device_file) || p.starts_with("/proc/bus/pci/") {
        return Some("reads the device's PCI space, which can hang or upset some devices");
    }
    None
}

/// A path may be read only if it is a plain path under `/proc` or `/sys`.
pub(crate) fn check_path(p: &str) -> Result<(), String> {
    for (tree, why) in DENIED_TREES {
        if p == *tree
            || p.strip_prefix(tree)
                .is_some_and(|rest| rest.starts_with('/'))
        {
            return Err(format!("path '{p}': {why}"));
        }
    }
    let under_proc = p == "/proc" || p.starts_with("/proc/");
    if !under_proc && p != "/sys" && !p.starts_with("/sys/") {
        return Err(format!(
            "path '{p}' is outside /proc and /sys; other files may hold secrets"
        ));
    }
    let parts: Vec<&str> = p[1..].split('/').collect();
    for (n, part) in parts.iter().enumerate() {
        let trailing_slash = n + 1 == parts.len() && part.is_empty();
        if (part.is_empty() && !trailing_slash) || *part == "." || *part == ".." {
            return Err(format!("path '{p}' must be plain: no '.', '..' or '//'"));
        }
        if under_proc && DENIED_PROC.contains(part) {
            return Err(format!(
                "path '{p}': '{part}' can expose secrets or other processes' memory"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(argv: &[&str]) -> Analysis {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        analyse(Catalogue::builtin(), &argv, false)
    }

    #[test]
    fn attached_short_value_is_read() {
        let a = run(&["nvidia-smi", "-i0", "-q"]);
        assert_eq!(a.tier, Tier::ReadOnly, "{:?}", a.rule);
        assert_eq!(
            a.items[1].canon,
            Canon::Flag {
                name: "--id".into(),
                value: Some("0".into())
            }
        );
    }

    #[test]
    fn combined_short_flags_where_allowed() {
        assert_eq!(run(&["lspci", "-vvv"]).tier, Tier::ReadOnly);
        assert_eq!(run(&["top", "-bn1"]).tier, Tier::ReadOnly);
        let a = run(&["nvidia-smi", "-qL"]);
        assert_eq!(a.rule.as_deref(), Some("unknown flag -qL for nvidia-smi"));
    }

    #[test]
    fn number_shorthand() {
        let a = run(&["tail", "-50"]);
        assert_eq!(a.tier, Tier::ReadOnly, "{:?}", a.rule);
        assert_eq!(
            a.items[1].canon,
            Canon::Flag {
                name: "--lines".into(),
                value: Some("50".into())
            }
        );
    }

    #[test]
    fn optional_value_takes_a_fitting_next_token() {
        let a = run(&["journalctl", "-k", "-b", "-1", "--no-pager"]);
        assert_eq!(a.tier, Tier::ReadOnly, "{:?}", a.rule);
        assert_eq!(a.items[2].text, "-b -1");
    }

    #[test]
    fn paths_are_confined() {
        assert!(check_path("/proc/driver/nvidia/version").is_ok());
        assert!(check_path("/proc/kmsg").is_err());
        assert!(check_path("/sys/kernel/debug/dri/0/amdgpu_gpu_recover").is_err());
        assert!(check_path("/sys/kernel/debugfoo").is_ok());
        assert!(heavy_read("/sys/bus/pci/devices/0000:18:00.0/config").is_some());
        assert!(heavy_read("/proc/bus/pci/18/00.0").is_some());
        assert!(heavy_read("/sys/bus/pci/devices/0000:18:00.0/current_link_speed").is_none());
        assert!(check_path("/sys/bus/pci/devices/0000:17:00.0/").is_ok());
        for bad in [
            "/etc/shadow",
            "/proc/1/environ",
            "/proc/self/root/etc/shadow",
            "/proc/../etc/passwd",
            "/sys//x",
            "proc/cpuinfo",
            "/procfoo",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_required_positional() {
        let a = run(&["cat"]);
        assert_eq!(a.rule.as_deref(), Some("cat needs <file>"));
        assert_eq!(
            run(&["cat", "/proc/cpuinfo", "/proc/meminfo"]).tier,
            Tier::ReadOnly
        );
        let a = run(&["systemctl", "restart"]);
        assert_eq!(a.tier, Tier::Blocked);
    }

    #[test]
    fn grep_pattern_is_skipped_with_e() {
        assert_eq!(
            run(&["grep", "-e", "x", "/proc/cpuinfo"]).tier,
            Tier::ReadOnly
        );
        let a = run(&["grep", "-e", "x", "/etc/passwd"]);
        assert_eq!(a.tier, Tier::Blocked);
        assert!(a.rule.unwrap().contains("outside /proc and /sys"));
    }
}
