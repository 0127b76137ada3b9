//! The guard against the bad-input corpus (`tests/adversarial/*.txt`, one
//! file per class, written from the threat model in docs/SECURITY.md), the
//! generated size cases, and every non-read-only flag of the catalogue.
//!
//! A corpus line is `EXPECT<TAB>COMMAND<TAB>WHY`. EXPECT: `blocked` (never
//! runs), `changes` (state-changing or blocked: a change never passes as a
//! read), `heavy+` (heavy or above), `read-only` (exactly: the controls that
//! keep the corpus from passing by blocking everything). COMMAND escapes:
//! `\n \r \t \0 \\`, `\xHH` (one raw byte; invalid UTF-8 is read lossily,
//! as Sigma reads text), `\u{HHHH}`.

use std::fmt::Write as _;
use std::path::Path;

use sigma::guard::catalogue::{ArgKind, Choice, Flag, Tool};
use sigma::guard::{Catalogue, MAX_LEN, Tier, check};

/// A corpus expectation.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Blocked,
    Changes,
    HeavyOrMore,
    ReadOnly,
}

impl Expect {
    fn parse(s: &str) -> Expect {
        match s {
            "blocked" => Expect::Blocked,
            "changes" => Expect::Changes,
            "heavy+" => Expect::HeavyOrMore,
            "read-only" => Expect::ReadOnly,
            other => panic!("unknown expectation {other:?}"),
        }
    }

    fn holds(self, tier: Tier) -> bool {
        match self {
            Expect::Blocked => tier == Tier::Blocked,
            Expect::Changes => tier >= Tier::StateChanging,
            Expect::HeavyOrMore => tier >= Tier::Heavy,
            Expect::ReadOnly => tier == Tier::ReadOnly,
        }
    }
}

/// Decodes the corpus escapes into the text Sigma would see.
fn decode(escaped: &str) -> String {
    let mut bytes = Vec::new();
    let mut chars = escaped.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => bytes.push(b'\n'),
            Some('r') => bytes.push(b'\r'),
            Some('t') => bytes.push(b'\t'),
            Some('0') => bytes.push(0),
            Some('\\') => bytes.push(b'\\'),
            Some('x') => {
                let hex: String = [chars.next(), chars.next()].into_iter().flatten().collect();
                bytes.push(u8::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("bad \\x{hex}")));
            }
            Some('u') => {
                assert_eq!(chars.next(), Some('{'), "\\u needs braces: {escaped}");
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let c = char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap();
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            other => panic!("unknown escape \\{other:?} in {escaped}"),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn every_corpus_case_holds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/adversarial");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "one file per class: {files:?}");
    let mut failures = String::new();
    let mut table = String::new();
    let mut total = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let class = file.file_stem().unwrap().to_string_lossy().into_owned();
        let (mut cases, mut held) = (0, 0);
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(
                fields.len(),
                3,
                "{class}:{}: EXPECT<TAB>COMMAND<TAB>WHY",
                n + 1
            );
            let expect = Expect::parse(fields[0]);
            let command = decode(fields[1]);
            let verdict = check(&command);
            cases += 1;
            if expect.holds(verdict.tier) && (verdict.tier == Tier::Blocked) != verdict.is_allowed()
            {
                held += 1;
            } else {
                let _ = writeln!(
                    failures,
                    "{class}:{}: expected {} for {:?} ({}), got {}: {}",
                    n + 1,
                    fields[0],
                    fields[1],
                    fields[2],
                    verdict.tier,
                    verdict.rule
                );
            }
        }
        total += cases;
        let _ = writeln!(table, "| {class} | {cases} | {held} |");
    }
    println!("| class | cases | held |\n|---|---|---|\n{table}| total | {total} | |");
    assert!(
        failures.is_empty(),
        "corpus cases that do not hold:\n{failures}"
    );
}

#[test]
fn oversized_inputs_are_refused_without_trouble() {
    let cases = [
        // 100 KB of one command.
        format!("nvidia-smi -q {}", "-d ECC ".repeat(100_000 / 7)),
        // 10,000 arguments.
        format!("nvidia-smi{}", " -L".repeat(10_000)),
        // Deep nesting of every structure the shell grammar has.
        format!("{}nvidia-smi -L{}", "$(".repeat(2_000), ")".repeat(2_000)),
        format!("{}nvidia-smi -L{}", "(".repeat(2_000), ")".repeat(2_000)),
        format!("{}x{}", "{".repeat(2_000), "}".repeat(2_000)),
        format!("echo {}", "\"'".repeat(20_000)),
        format!("nvidia-smi -L {}", "| grep a ".repeat(5_000)),
    ];
    for command in &cases {
        assert!(
            command.len() > MAX_LEN || command.matches('|').count() > 100 || command.len() > 1000
        );
        let verdict = check(command);
        assert_eq!(
            verdict.tier,
            Tier::Blocked,
            "{}...: {}",
            &command[..40],
            verdict.rule
        );
        assert!(!verdict.is_allowed());
    }
}

/// A value of `kind` the flag or positional accepts, or `None` when none
/// of the generator's candidates fit its pattern (the test then says so).
fn value_for(arg: ArgKind, values: &[Choice], pattern: Option<&str>) -> Option<String> {
    let candidates = [
        "1", "0", "csv", "a", "x", "1,2", "eth0", "all", "on", "yes", "10",
    ];
    match arg {
        ArgKind::None => Some(String::new()),
        ArgKind::Int | ArgKind::Number => Some("1".into()),
        ArgKind::Gpu => Some("0".into()),
        ArgKind::Bdf => Some("0000:3b:00.0".into()),
        ArgKind::Path => Some("/proc/cpuinfo".into()),
        ArgKind::Enum | ArgKind::List => values.first().map(|c| c.value.clone()),
        ArgKind::String => match pattern {
            None => Some("x".into()),
            Some(p) => {
                let re = regex::Regex::new(p).unwrap();
                candidates
                    .iter()
                    .find(|c| re.is_match(c))
                    .map(|c| c.to_string())
            }
        },
    }
}

/// `flag value` as typed with the flag's first spelling.
fn typed(flag: &Flag, value: &str) -> String {
    spelled(&flag.names[0], value, flag.optional).remove(0)
}

/// Every way to type `name` with `value`: `-x V`; `--name=V` and, unless
/// the value is optional (then it only attaches), `--name V`; the name
/// alone when there is no value.
fn spelled(name: &str, value: &str, optional: bool) -> Vec<String> {
    match (value.is_empty(), name.starts_with("--")) {
        (true, _) => vec![name.to_string()],
        (false, true) if optional => vec![format!("{name}={value}")],
        (false, true) => vec![format!("{name}={value}"), format!("{name} {value}")],
        (false, false) => vec![format!("{name} {value}")],
    }
}

/// Every scope (tool, then subcommands, depth first) with its words.
fn scopes<'a>(tool: &'a Tool, words: Vec<String>, out: &mut Vec<(Vec<String>, &'a Tool)>) {
    out.push((words.clone(), tool));
    for sub in &tool.subcommand {
        let mut w = words.clone();
        w.push(sub.names[0].clone());
        scopes(sub, w, out);
    }
}

#[test]
fn every_non_read_only_flag_of_the_catalogue_is_never_read_only() {
    let mut failures = String::new();
    let mut checked = 0;
    for tool in Catalogue::builtin().tools() {
        let mut all = Vec::new();
        scopes(tool, vec![tool.binary.clone()], &mut all);
        for (words, scope) in all {
            // What the scope itself requires, so only the flag decides.
            let mut required = Vec::new();
            for req in &scope.requires {
                let Some(flag) = scope.flag(&req.flag) else {
                    continue;
                };
                let value = value_for(flag.arg, &flag.values, flag.pattern.as_deref());
                required.push(typed(flag, &value.unwrap_or_default()));
            }
            let positionals: Vec<String> = scope
                .positional
                .iter()
                .filter(|p| p.required)
                .map(|p| value_for(p.arg, &p.values, p.pattern.as_deref()).unwrap_or_default())
                .collect();
            for flag in scope.flag.iter().filter(|f| f.tier > Tier::ReadOnly) {
                let Some(value) = value_for(flag.arg, &flag.values, flag.pattern.as_deref()) else {
                    let _ = writeln!(
                        failures,
                        "{}: no generated value fits {} (add one to value_for)",
                        words.join(" "),
                        flag.names[0]
                    );
                    continue;
                };
                // Every spelling: a state change must not hide behind its
                // short name, its long name or `--name=value`.
                let forms = flag
                    .names
                    .iter()
                    .flat_map(|name| spelled(name, &value, flag.optional));
                for form in forms {
                    let mut line = words.clone();
                    line.extend(
                        required
                            .iter()
                            .filter(|r| !r.starts_with(&flag.names[0]))
                            .cloned(),
                    );
                    line.push(form);
                    line.extend(positionals.iter().cloned());
                    let command = line.join(" ");
                    let verdict = check(&command);
                    checked += 1;
                    let named = flag.names.iter().any(|n| verdict.rule.contains(n.as_str()));
                    if verdict.tier < flag.tier || !named {
                        let _ = writeln!(
                            failures,
                            "{command}: {} flag judged {} by '{}'",
                            flag.tier, verdict.tier, verdict.rule
                        );
                    }
                }
            }
        }
    }
    println!("{checked} spellings of non-read-only flags checked");
    assert!(checked > 100, "only {checked} flags checked");
    assert!(failures.is_empty(), "{failures}");
}
