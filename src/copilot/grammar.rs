//! The output grammar: what the model may write, as an llguidance Lark
//! grammar generated from the command catalogue.
//!
//! The model's whole reply is one JSON object
//! `{"answer": str, "commands": [{"command": str, "purpose": str}, ...]}`.
//! Each `command` is constrained token by token to a catalogue binary
//! followed by flags, values and positionals the catalogue knows (blocked
//! ones left out), optionally piped into one filter. So a 135M model cannot
//! invent `nvidia-smi -G 3`: the grammar has no `-G`. The guard still judges
//! every command afterwards; the grammar makes validity likely, the guard
//! makes it certain.
//!
//! When the question has ranked candidates ([`super::rank`]), the first
//! command must be one of them word for word: small models choose well
//! among commands they are shown but write them badly.
//!
//! Commands sit inside a JSON string, so the catalogue grammar never lets
//! them contain `"` or `\`; arguments with spaces use single quotes (a
//! candidate with a backslash is written JSON-escaped).

use std::fmt::Write as _;

use crate::guard::Tier;
use crate::guard::catalogue::{ArgKind, Catalogue, Choice, Flag, Positional, Tool};

/// Most arguments after a program or subcommand. Without a bound a small
/// model can repeat an argument until the context is full (`-i 0 -i 0 ...`),
/// which takes minutes; real command lines have a handful.
const MAX_ARGS: usize = 12;
/// Most items in a comma-separated list value (`--query-gpu=a,b,...`).
const MAX_LIST_ITEMS: usize = 15;

/// Limits on the reply's size, which bound generation time.
#[derive(Debug, Clone, Copy)]
pub struct ReplyLimits {
    /// Longest answer text, in characters.
    pub answer_chars: usize,
    /// Longest purpose text, in characters.
    pub purpose_chars: usize,
    /// Most commands in one reply; 0: none (an answer only).
    pub max_commands: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits {
            answer_chars: 360,
            purpose_chars: 80,
            max_commands: 3,
        }
    }
}

/// Builds the Lark grammar of a reply for `catalogue`. With `candidates`,
/// the first command (required) is one of them word for word: the model
/// chooses among commands already ranked, fitted to the question and
/// validated, instead of writing one; any further command is one the
/// catalogue allows. Without candidates every command is free and the list
/// may be empty.
pub fn reply_grammar(catalogue: &Catalogue, candidates: &[String], limits: ReplyLimits) -> String {
    let mut g = String::new();
    let string = |n: usize| format!(r#"%json {{"type": "string", "maxLength": {n}}}"#);
    let _ = writeln!(
        g,
        r#"start: "{{\"answer\": " answer ", \"commands\": [" commands "]}}""#
    );
    let _ = writeln!(g, "answer: {}", string(limits.answer_chars));
    let _ = writeln!(g, "purpose: {}", string(limits.purpose_chars));
    let first = if candidates.is_empty() {
        "item"
    } else {
        "first"
    };
    let mut alts = Vec::new();
    if candidates.is_empty() {
        alts.push(r#""""#.to_string());
    }
    for n in 1..=limits.max_commands.max(usize::from(!candidates.is_empty())) {
        let items: Vec<&str> = std::iter::once(first)
            .chain(std::iter::repeat_n("item", n - 1))
            .collect();
        alts.push(items.join(r#" ", " "#));
    }
    let _ = writeln!(g, "commands: {}", alts.join(" | "));
    let item = |name: &str, command: &str| {
        format!(r#"{name}: "{{\"command\": \"" {command} "\", \"purpose\": " purpose "}}""#)
    };
    let _ = writeln!(g, "{}", item("item", "command"));
    if !candidates.is_empty() {
        let _ = writeln!(g, "{}", item("first", "choice"));
        let choices: Vec<String> = candidates
            .iter()
            .map(|c| {
                // Inside the reply the command is JSON string content.
                let json = serde_json::to_string(c).unwrap_or_default();
                lit(json.trim_matches('"'))
            })
            .collect();
        let _ = writeln!(g, "choice: {}", choices.join(" | "));
    }
    g.push_str(&command_grammar(catalogue));
    g
}

/// The Lark rules for one command line (`command`), without the JSON around
/// it: a program and its arguments, optionally `| filter`.
pub fn command_grammar(catalogue: &Catalogue) -> String {
    let mut rules = Rules::default();
    let mut programs = Vec::new();
    let mut filters = Vec::new();
    for tool in catalogue.tools() {
        if tool.tier == Tier::Blocked {
            continue;
        }
        for binary in std::iter::once(&tool.binary).chain(&tool.also) {
            let alias = rules.fresh("prog");
            let body = rules.tool_body(tool, &lit(binary));
            rules.push(&alias, &body);
            // Filters read stdin after a pipe, or a /proc or /sys file alone.
            if tool.filter {
                filters.push(alias.clone());
            }
            programs.push(alias);
        }
    }
    let mut g = String::new();
    let filter = if filters.is_empty() {
        String::new()
    } else {
        let _ = writeln!(g, "filter: {}", filters.join(" | "));
        r#" (" | " filter)?"#.to_string()
    };
    let _ = writeln!(g, "command: program{filter}");
    let _ = writeln!(g, "program: {}", programs.join(" | "));
    g.push_str(&rules.text);
    g
}

/// Accumulates named rules with unique names.
#[derive(Default)]
struct Rules {
    text: String,
    next: usize,
}

impl Rules {
    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}_{}", self.next)
    }

    fn push(&mut self, name: &str, body: &str) {
        let _ = writeln!(self.text, "{name}: {body}");
    }

    /// `head (" " arg)*`, plus one alternative per subcommand (recursively:
    /// `ip -br link show dev ib0`). A tool's own flags may precede its
    /// subcommand, and follow it too when the tool says they are global.
    fn tool_body(&mut self, tool: &Tool, head: &str) -> String {
        self.tool_body_with(tool, head, &[])
    }

    fn tool_body_with(&mut self, tool: &Tool, head: &str, inherited: &[Flag]) -> String {
        let mut flags: Vec<Flag> = tool.flag.clone();
        flags.extend(inherited.iter().cloned());
        let args = self.args(tool, &flags, &tool.positional);
        let prefix = match &args {
            Some(a) => format!(r#"{head} (" " {a}){{0,{MAX_ARGS}}}"#),
            None => head.to_string(),
        };
        let mut alts = vec![prefix.clone()];
        let global: &[Flag] = if tool.global_flags { &flags } else { &[] };
        for sub in &tool.subcommand {
            if sub.tier == Tier::Blocked {
                continue;
            }
            let names: Vec<String> = sub.names.iter().map(|n| lit(n)).collect();
            let sub_head = format!(r#"{prefix} " " {}"#, group(&names));
            alts.push(self.tool_body_with(sub, &sub_head, global));
        }
        alts.join(" | ")
    }

    /// A rule matching one argument of `tool` (a flag with its value, or a
    /// positional); `None` when the tool takes none.
    fn args(&mut self, tool: &Tool, flags: &[Flag], positionals: &[Positional]) -> Option<String> {
        let mut alts = Vec::new();
        let mut short_switches = String::new();
        for flag in flags {
            if flag.tier == Tier::Blocked {
                continue;
            }
            if let Some(f) = self.flag(flag) {
                alts.push(f);
            }
            if flag.arg == ArgKind::None {
                short_switches.extend(flag.names.iter().filter_map(|n| short_char(n)));
            }
        }
        if tool.combine_short && short_switches.len() > 1 {
            // `-vvv`, `-nnk`: two to four combined switches.
            alts.push(format!("/-[{short_switches}]{{2,4}}/"));
            // `ps -eo pid,cmd`, `ps -fp 123`: switches, then a flag that takes a value.
            for flag in flags
                .iter()
                .filter(|f| f.tier != Tier::Blocked && f.arg != ArgKind::None)
            {
                let Some(c) = flag.names.iter().find_map(|n| short_char(n)) else {
                    continue;
                };
                if let Some(value) = self.value(flag.arg, &flag.values, flag.pattern.as_deref()) {
                    alts.push(format!(r#"/-[{short_switches}]{{1,3}}{c}/ " "? {value}"#));
                }
            }
        }
        for p in positionals {
            if p.tier == Tier::Blocked {
                continue;
            }
            if let Some(v) = self.value(p.arg, &p.values, p.pattern.as_deref()) {
                alts.push(v);
            }
        }
        if alts.is_empty() {
            return None;
        }
        let name = self.fresh("arg");
        self.push(&name, &alts.join(" | "));
        Some(name)
    }

    /// A flag and its value in the forms the guard accepts: `-i 0`,
    /// `--id 0`, `--id=0`.
    fn flag(&mut self, flag: &Flag) -> Option<String> {
        let names: Vec<String> = flag.names.iter().map(|n| lit(n)).collect();
        if flag.arg == ArgKind::None {
            return Some(group(&names));
        }
        let value = self.value(flag.arg, &flag.values, flag.pattern.as_deref())?;
        let mut forms = Vec::new();
        for n in &flag.names {
            forms.push(format!(r#"{} " " {value}"#, lit(n)));
            if n.starts_with("--") {
                forms.push(format!(r#"{} {value}"#, lit(&format!("{n}="))));
            } else if short_char(n).is_some() {
                // `-d,` and `-f2`: a short flag's value may follow it directly.
                forms.push(format!(r#"{} {value}"#, lit(n)));
            }
        }
        if flag.optional {
            forms.extend(names);
        }
        let name = self.fresh("flag");
        self.push(&name, &forms.join(" | "));
        Some(name)
    }

    /// A value of `kind`; `None` when nothing is allowed (all values blocked).
    fn value(&mut self, kind: ArgKind, values: &[Choice], pattern: Option<&str>) -> Option<String> {
        let allowed: Vec<String> = values
            .iter()
            .filter(|c| c.tier != Tier::Blocked && plain(&c.value))
            .map(|c| lit(&c.value))
            .collect();
        let rule = match kind {
            ArgKind::None => return None,
            ArgKind::Int => "/-?[0-9]{1,7}/".to_string(),
            ArgKind::Number => r"/[0-9]{1,6}(\.[0-9]{1,3})?/".to_string(),
            ArgKind::Enum if !allowed.is_empty() => group(&allowed),
            ArgKind::List if !allowed.is_empty() => {
                let one = self.fresh("item");
                self.push(&one, &group(&allowed));
                format!(r#"{one} ("," {one}){{0,{MAX_LIST_ITEMS}}}"#)
            }
            ArgKind::Enum | ArgKind::List => return None,
            ArgKind::Path => r"/\/(proc|sys)\/[A-Za-z0-9_.:+\/-]{1,100}/".to_string(),
            ArgKind::Gpu => {
                r"/[0-9]{1,2}(,[0-9]{1,2}){0,15}|[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]|GPU-[0-9a-f-]{36}/"
                    .to_string()
            }
            ArgKind::Bdf => r"/([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(\.[0-7])?/".to_string(),
            ArgKind::String => match pattern {
                Some(p) => {
                    let body = escape_slashes(p.trim_start_matches('^').trim_end_matches('$'));
                    if body.contains('"') || body.contains(r"\\") {
                        return None;
                    }
                    if body.contains(' ') {
                        // Quoted as written, or bare without the spaces.
                        let bare = body.replace(' ', "");
                        format!(r#"/{bare}/ | "'" /{body}/ "'""#)
                    } else {
                        format!("/{body}/")
                    }
                }
                None => r#"/[A-Za-z0-9_.:,=@%+\/-]{1,48}/ | /'[^'"\\\n]{1,64}'/"#.to_string(),
            },
        };
        Some(format!("({rule})"))
    }
}

/// The letter of a one-letter flag (`-i` -> `i`).
fn short_char(name: &str) -> Option<char> {
    let b = name.as_bytes();
    (b.len() == 2 && b[0] == b'-' && b[1].is_ascii_alphanumeric()).then(|| b[1] as char)
}

/// Escapes `/` for a Lark `/regex/` literal.
fn escape_slashes(regex: &str) -> String {
    let mut out = String::with_capacity(regex.len());
    let mut escaped = false;
    for c in regex.chars() {
        if c == '/' && !escaped {
            out.push('\\');
        }
        escaped = c == '\\' && !escaped;
        out.push(c);
    }
    out
}

/// True for values the grammar can emit inside a JSON string unquoted.
fn plain(value: &str) -> bool {
    !value.is_empty() && !value.contains(['"', '\\', ' ', '\n'])
}

/// A Lark string literal.
fn lit(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `a` or `(a | b | ...)`.
fn group(alts: &[String]) -> String {
    if alts.len() == 1 {
        alts[0].clone()
    } else {
        format!("({})", alts.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use llguidance::api::TopLevelGrammar;
    use llguidance::{Matcher, ParserFactory};
    use toktrie::ApproximateTokEnv;

    use super::*;

    /// A matcher over a byte-level vocabulary: every byte is a token, so any
    /// text can be fed and checked.
    fn matcher(grammar: &str) -> Matcher {
        let env: toktrie::TokEnv = Arc::new(ApproximateTokEnv::single_byte());
        let factory = ParserFactory::new_simple(&env).expect("factory");
        let parser = factory
            .create_parser(TopLevelGrammar::from_lark(grammar.to_string()))
            .unwrap_or_else(|e| {
                let line = e
                    .to_string()
                    .split('(')
                    .next()
                    .and_then(|l| l.parse::<usize>().ok());
                let text = line.and_then(|l| grammar.lines().nth(l - 1)).unwrap_or("");
                panic!("grammar does not compile: {e}\n{text}")
            });
        Matcher::new(Ok(parser))
    }

    fn accepts(grammar: &str, text: &str) -> bool {
        accepts_with(&matcher(grammar), text)
    }

    fn accepts_with(m: &Matcher, text: &str) -> bool {
        let mut m = m.deep_clone();
        for b in text.bytes() {
            if m.consume_token(b as u32).is_err() {
                return false;
            }
        }
        m.is_accepting().unwrap_or(false)
    }

    fn reply(cmd: &str) -> String {
        format!(r#"{{"answer": "ok", "commands": [{{"command": "{cmd}", "purpose": "p"}}]}}"#)
    }

    fn grammar() -> String {
        reply_grammar(Catalogue::builtin(), &[], ReplyLimits::default())
    }

    #[test]
    fn choices_are_the_only_commands_and_one_is_required() {
        let candidates = vec![
            "nvidia-smi -q -d ECC".to_string(),
            r"dmesg | grep -oE 'Xid \(PCI:[0-9a-f:.]+\): [0-9]+' | sort | uniq -c".to_string(),
        ];
        let g = reply_grammar(Catalogue::builtin(), &candidates, ReplyLimits::default());
        let m = matcher(&g);
        for c in &candidates {
            let reply = format!(
                r#"{{"answer": "a", "commands": [{{"command": {}, "purpose": "p"}}]}}"#,
                serde_json::to_string(c).unwrap()
            );
            assert!(accepts_with(&m, &reply), "{reply}");
        }
        assert!(!accepts_with(&m, &reply("nvidia-smi -q")));
        assert!(!accepts_with(&m, r#"{"answer": "a", "commands": []}"#));
        // After the chosen one, any catalogue command.
        let two = r#"{"answer": "a", "commands": [{"command": "nvidia-smi -q -d ECC", "purpose": "p"}, {"command": "nvidia-smi -q", "purpose": "p"}]}"#;
        assert!(accepts_with(&m, two));
    }

    #[test]
    fn accepts_catalogue_commands() {
        let g = grammar();
        for cmd in [
            "nvidia-smi -q -d ECC,ROW_REMAPPER",
            "nvidia-smi --query-gpu=index,temperature.gpu,clocks_event_reasons.hw_slowdown --format=csv,noheader",
            "nvidia-smi -i 3 -q -d PERFORMANCE",
            "nvidia-smi topo -m",
            "lspci -vvv -s 18:00.0",
            "dmesg -T | grep -i xid",
            "nvidia-smi -r -i 3",
        ] {
            assert!(accepts(&g, &reply(cmd)), "grammar rejects {cmd}");
        }
    }

    #[test]
    fn rejects_invented_flags_and_shell_tricks() {
        let g = grammar();
        for cmd in [
            "nvidia-smi -G 3",
            "rm -rf /",
            "nvidia-smi; reboot",
            "nvidia-smi $(id)",
            "dmesg -c",
            "nvidia-smi -q > /etc/passwd",
            "nvidia-smi --query-gpu=bogus.field --format=csv",
        ] {
            assert!(!accepts(&g, &reply(cmd)), "grammar accepts {cmd}");
        }
    }

    #[test]
    fn commands_cannot_repeat_arguments_forever() {
        let g = grammar();
        let args = |n: usize| format!("nvidia-smi{}", " -L".repeat(n));
        assert!(accepts(&g, &reply(&args(MAX_ARGS))));
        assert!(!accepts(&g, &reply(&args(MAX_ARGS + 1))));
        let fields = |n: usize| {
            format!(
                "nvidia-smi --query-gpu={} --format=csv",
                vec!["index"; n].join(",")
            )
        };
        assert!(accepts(&g, &reply(&fields(MAX_LIST_ITEMS + 1))));
        assert!(!accepts(&g, &reply(&fields(MAX_LIST_ITEMS + 2))));
    }

    #[test]
    fn accepts_empty_and_several_commands_but_not_too_many() {
        let g = grammar();
        assert!(accepts(&g, r#"{"answer": "fine", "commands": []}"#));
        let item = r#"{"command": "nvidia-smi -L", "purpose": "list"}"#;
        let three = format!(r#"{{"answer": "a", "commands": [{item}, {item}, {item}]}}"#);
        assert!(accepts(&g, &three));
        let four = format!(r#"{{"answer": "a", "commands": [{item}, {item}, {item}, {item}]}}"#);
        assert!(!accepts(&g, &four));
    }

    #[test]
    fn every_allowed_catalogue_example_fits_the_grammar() {
        let m = matcher(&grammar());
        let mut missing = Vec::new();
        for tool in Catalogue::builtin().tools() {
            for ex in all_examples(tool) {
                // JSON would need `\\` for a backslash; the grammar allows none.
                let expressible = !ex.command.contains(['"', '\\']);
                if ex.tier != Tier::Blocked && expressible && !accepts_with(&m, &reply(&ex.command))
                {
                    missing.push(ex.command.clone());
                }
            }
        }
        assert!(
            missing.is_empty(),
            "examples the grammar rejects:\n{}",
            missing.join("\n")
        );
    }

    fn all_examples(tool: &Tool) -> Vec<&crate::guard::catalogue::Example> {
        let mut v: Vec<_> = tool.example.iter().collect();
        for s in &tool.subcommand {
            v.extend(all_examples(s));
        }
        v
    }
}
