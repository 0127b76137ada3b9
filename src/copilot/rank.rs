//! Which catalogue commands answer a question: the candidate pool, the
//! operator's intent, and the ranking.
//!
//! The pool is every catalogue example plus the commands the catalogue
//! implies for nvidia-smi: one `-q -d SECTION` report per section and one
//! `--query-gpu=index,FIELD` table per field, each described by the
//! catalogue's own text. Ranking is BM25 over those descriptions, with the
//! question's informal words (`temps`, `util`, `RAM`) first mapped to the
//! catalogue's vocabulary (`prompts/vocabulary.toml`). Commands that change
//! state are candidates only when the question asks for a change, heavy
//! ones only when it asks for a test or benchmark; tools of a GPU vendor the
//! node lacks are left out. Every candidate is fitted to the GPUs, devices
//! and processes the question names ([`super::adapt`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use bm25::{Language, SearchEngine, SearchEngineBuilder};
use regex::Regex;
use serde::Deserialize;

use super::adapt::{self, Targets};
use super::{bank, change, table};
use crate::checks::{Finding, Severity};
use crate::guard::{self, Tier, catalogue::Catalogue, catalogue::Tool};
use crate::probe::Snapshot;

/// A command the model may be shown, with what it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The command line.
    pub command: String,
    /// What it is for.
    pub purpose: String,
    /// The guard's tier for it.
    pub tier: Tier,
    /// Implied by the catalogue's section or field list rather than written
    /// as an example: one section or field, a narrower answer than a
    /// curated example that matches as well.
    pub implied: bool,
}

/// The operator's words mapped to the catalogue's, embedded.
const VOCABULARY: &str = include_str!("../../prompts/vocabulary.toml");

/// Every candidate: the catalogue's examples, then its `-q -d` sections and
/// `--query-gpu` fields as commands. Blocked ones are left out.
pub fn pool() -> &'static [Reference] {
    static ALL: OnceLock<Vec<Reference>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut out = Vec::new();
        for tool in Catalogue::builtin().tools() {
            collect_examples(tool, &mut out);
        }
        implied_nvidia_smi(&mut out);
        out.retain(|r| r.tier != Tier::Blocked);
        out
    })
}

fn collect_examples(tool: &Tool, out: &mut Vec<Reference>) {
    for ex in &tool.example {
        out.push(Reference {
            command: ex.command.clone(),
            purpose: ex.purpose.clone(),
            tier: ex.tier,
            implied: false,
        });
    }
    for sub in &tool.subcommand {
        collect_examples(sub, out);
    }
}

/// `nvidia-smi -q -d SECTION` for every report section and
/// `nvidia-smi --query-gpu=index,FIELD --format=csv` for every field the
/// catalogue describes (aliases with the same description once).
fn implied_nvidia_smi(out: &mut Vec<Reference>) {
    let Some(smi) = Catalogue::builtin().tool("nvidia-smi") else {
        return;
    };
    let mut push = |command: String, purpose: String| {
        if !out.iter().any(|r| r.command == command) {
            let tier = guard::check(&command).tier;
            out.push(Reference {
                command,
                purpose,
                tier,
                implied: true,
            });
        }
    };
    if let Some(display) = smi.flag("-d") {
        for v in &display.values {
            let what = v.description.as_deref().unwrap_or(&v.value);
            push(
                format!("nvidia-smi -q -d {}", v.value),
                format!("report section: {what}"),
            );
        }
    }
    if let Some(fields) = smi.flag("--query-gpu") {
        let mut described: Vec<&str> = Vec::new();
        for v in &fields.values {
            let Some(what) = v.description.as_deref() else {
                continue;
            };
            if v.value == "index" || described.contains(&what) {
                continue;
            }
            described.push(what);
            push(
                format!("nvidia-smi --query-gpu=index,{} --format=csv", v.value),
                format!("table per GPU: {what}"),
            );
        }
    }
}

/// The BM25 index over [`pool`]; document ids are indexes into it.
fn index() -> &'static SearchEngine<u32> {
    static INDEX: OnceLock<SearchEngine<u32>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let docs: Vec<String> = pool().iter().map(document_text).collect();
        SearchEngineBuilder::<u32>::with_corpus(Language::English, docs).build()
    })
}

/// The searchable text of a reference: purpose, the command split into
/// words (`--query-gpu=temperature.gpu` gives `query gpu temperature gpu`),
/// and what the catalogue says each argument means.
fn document_text(r: &Reference) -> String {
    // An implied command's words repeat its description (`-d TEMPERATURE`).
    let command_words = if r.implied {
        String::new()
    } else {
        words(&r.command)
    };
    let mut text = format!("{}. {command_words}", r.purpose);
    for arg in guard::explain(&r.command) {
        let _ = write!(text, ". {}", arg.meaning);
    }
    text
}

/// Splits a command into plain words for ranking.
fn words(command: &str) -> String {
    command
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { ' ' })
        .collect()
}

/// The words inside the CamelCase names of `question` (alert names an
/// operator pastes: `DCGMHealthFailure` -> "DCGM Health Failure",
/// `AMDGPURasUncorrectable` -> "AMDGPU Ras Uncorrectable"), so the
/// vocabulary and the catalogue can match them.
fn camel_words(question: &str) -> String {
    let mut out = String::new();
    for name in question.split(|c: char| !c.is_ascii_alphanumeric()) {
        let chars: Vec<char> = name.chars().collect();
        let mixed = chars.iter().any(char::is_ascii_lowercase)
            && chars.iter().skip(1).any(char::is_ascii_uppercase);
        if !mixed {
            continue;
        }
        for (i, &c) in chars.iter().enumerate() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            // A word starts at a capital after a small letter ("tH"), or at
            // the last capital of a run before a small letter ("GPUTemp").
            let starts = c.is_ascii_uppercase()
                && (prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
                    || (prev.is_some_and(|p| p.is_ascii_uppercase())
                        && next.is_some_and(char::is_ascii_lowercase)));
            if starts {
                out.push(' ');
            }
            out.push(c);
        }
        out.push(' ');
    }
    out
}

/// Whether `question` asks whether anything is wrong without naming what
/// ("anything weird with one of the gpus?", "is this box healthy?"): no
/// subsystem, metric or symptom the catalogue could match.
fn vague(question: &str) -> bool {
    static ASKS: OnceLock<Regex> = OnceLock::new();
    static NAMES: OnceLock<Regex> = OnceLock::new();
    let asks = ASKS.get_or_init(|| {
        Regex::new(
            r"(?i)\b(?:anything|something|what(?:'s| is)?)\s+(?:\w+\s+)?(?:weird|wrong|odd|off|strange|unusual|funny|bad|broken|amiss)\b|\b(?:healthy|sane|fit to|ok to|okay to|good to go)\b",
        )
        .expect("valid regex")
    });
    let names = NAMES.get_or_init(|| {
        Regex::new(
            r"(?i)\b(?:mem\w*|vram|hbm|ecc|remap\w*|rows?|pcie|pci|links?|nvlink|xids?|temp\w*|hot|therm\w*|power\w*|watts?|clock\w*|throttl\w*|process\w*|pids?|ib|infiniband|hcas?|fabric\w*|driver|mig|util\w*|fans?|disks?|network|nccl|ras|kernel|logs?|dmesg|errors?|dcgm\w*)\b",
        )
        .expect("valid regex")
    });
    asks.is_match(question) && !names.is_match(question)
}

#[derive(Deserialize)]
struct Vocabulary {
    /// Operator word or phrase (lower case) -> catalogue words.
    terms: HashMap<String, String>,
}

/// Words that name where the operator is, not what they want: every
/// question is about "this node", so they only pull in commands whose
/// descriptions happen to say "node" (`numactl -H`: "NUMA nodes").
const GENERIC: &[&str] = &[
    "node",
    "nodes",
    "node's",
    "box",
    "box's",
    "machine",
    "machine's",
    "server",
    "server's",
    "host's",
];

/// `question` without [`GENERIC`] words, with the catalogue words its
/// informal terms stand for added, and for each XID it names, that XID's
/// name from the XID table (`Xid 63` -> "Memory remap/retirement
/// recorded").
fn expand(question: &str) -> String {
    static VOCAB: OnceLock<Vec<(Regex, String)>> = OnceLock::new();
    let vocab = VOCAB.get_or_init(|| {
        let v: Vocabulary = toml::from_str(VOCABULARY).expect("prompts/vocabulary.toml parses");
        let mut terms: Vec<(Regex, String)> = v
            .terms
            .into_iter()
            .map(|(term, words)| {
                let re = Regex::new(&format!(r"(?i)\b{}\b", regex::escape(&term)))
                    .expect("escaped term");
                (re, words)
            })
            .collect();
        terms.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        terms
    });
    static XID: OnceLock<Regex> = OnceLock::new();
    let xid = XID.get_or_init(|| Regex::new(r"(?i)\bxid[\s:#]*(\d{1,3})\b").expect("valid regex"));
    // "no XIDs", "without load", "nobody resets anything": the word after
    // the negation is not the topic.
    static NEGATED: OnceLock<Regex> = OnceLock::new();
    let negated = NEGATED.get_or_init(|| {
        Regex::new(r"(?i)\b(?:no|without|nobody|no one|don'?t|do not|never|won'?t)\s+([a-z][\w-]*)")
            .expect("valid regex")
    });
    // "before I reboot", "plan is a GPU reset", "was gonna just reset it":
    // the operator's own next step is not what they ask to see (a reboot
    // planned is no question about boots).
    static PLANNED: OnceLock<Regex> = OnceLock::new();
    let planned = PLANNED.get_or_init(|| {
        Regex::new(
            r"(?i)\b(?:before\s+(?:i|we|you|they|anyone|someone)(?:\s+(?:ask|tell|get|have|let)\s+(?:\w+\s+){0,3}?to)?|(?:i|we)(?:['’\s]?ll|\s+will|['’\s]?m\s+going\s+to|\s+am\s+going\s+to|\s+are\s+going\s+to|\s+was\s+going\s+to|\s+want\s+to|\s+plan\s+to)|gonna|about\s+to|plan\s+is(?:\s+to)?|planning\s+to|wants?\s+(?:the\s+\w+\s+|it\s+|to\s+))\s+(?:just\s+|go\s+ahead\s+and\s+|a\s+|an\s+|the\s+)?(?:(?:gpu|node|full|hard|cold)\s+)?(reboot\w*|reset\w*|power[- ]?cycl\w*|drain\w*|reseat\w*|rma|kick\s+a\s+reset|bounce\w*)",
        )
        .expect("valid regex")
    });
    let negated: Vec<std::ops::Range<usize>> = negated
        .captures_iter(question)
        .chain(planned.captures_iter(question))
        .filter_map(|c| c.get(1).map(|m| m.range()))
        .collect();
    let is_negated =
        |r: std::ops::Range<usize>| negated.iter().any(|n| r.start >= n.start && r.end <= n.end);
    static WORD: OnceLock<Regex> = OnceLock::new();
    let word = WORD.get_or_init(|| Regex::new(r"[\w'.:/-]*\w").expect("valid regex"));
    let generic = |w: &str| GENERIC.iter().any(|g| g.eq_ignore_ascii_case(w));
    let mut out: String = word
        .find_iter(question)
        .filter(|w| !generic(w.as_str()) && !is_negated(w.range()))
        // "4-node", "single-node": the parts that are not generic.
        .map(|w| {
            w.as_str()
                .split('-')
                .filter(|part| !generic(part))
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect::<Vec<_>>()
        .join(" ");
    for (re, words) in vocab {
        if re.find_iter(question).any(|m| !is_negated(m.range())) {
            let _ = write!(out, " {words}");
        }
    }
    static WATTS: OnceLock<Regex> = OnceLock::new();
    let watts =
        WATTS.get_or_init(|| Regex::new(r"(?i)\b\d+\s?(?:w|watts?)\b").expect("valid regex"));
    if watts.is_match(question) {
        out.push_str(" power limit");
    }
    let mut codes: Vec<u32> = xid
        .captures_iter(question)
        .filter_map(|c| c[1].parse().ok())
        .collect();
    codes.dedup();
    for info in codes.into_iter().filter_map(crate::checks::xid::lookup) {
        let _ = write!(out, " {}", info.name);
    }
    out
}

/// What the operator asks for, beyond information.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Intent {
    /// A change to the node ("reset it", "set the power limit to 700 W").
    pub change: bool,
    /// A test, benchmark or deep diagnostic ("run a quick DCGM diagnostic").
    pub heavy: bool,
}

impl Intent {
    /// Reads the intent from the question: a change when a sentence starts
    /// with a verb that changes state, a heavy run when one asks to run,
    /// test or benchmark something and none forbids it ("no benchmarks
    /// please", "without disturbing them").
    pub fn of(question: &str) -> Intent {
        static HEAVY: OnceLock<Regex> = OnceLock::new();
        static NO_HEAVY: OnceLock<Regex> = OnceLock::new();
        let heavy = HEAVY.get_or_init(|| {
            Regex::new(
                // "run" as a verb ("run a quick diag", "can you run"), not a
                // noun ("our FSDP run", "the training run").
                r"(?i)(?:^|[.!?;]\s*|\b(?:please|can you|could you|to|should i|let's|go ahead and|i want to|then)\s+)run\b|\b(?:sanity|quick|smoke|burn-in|nccl|bandwidth)\s+run\b|\b(?:benchmark|bench|test|tests|diag|diagnostic|stress|measure|bug report|collect|grab|capture)\b",
            )
            .expect("valid regex")
        });
        let no_heavy = NO_HEAVY.get_or_init(|| {
            Regex::new(
                r"(?i)\bno (?:[a-z-]+ )?(?:benchmarks?|tests?|load|diags?|diagnostics?)\b|\b(?:i|we|they|already|just) ran\b|^ran\b|\bwithout (?:disturbing|running|(?:any )?load)|\b(?:jobs? (?:are|is)|still) running\b|\b(?:don'?t|do not) (?:run|disturb|put (?:any )?load|load)|\b(?:nothing|no|not anything) (?:heavy|intrusive|disruptive)\b|\b(?:another|other|someone else'?s?) (?:users?'?s?|teams?'?s?|tenants?'?s?|people'?s?)? ?jobs?\b|\btops? out\b",
            )
            .expect("valid regex")
        });
        Intent {
            change: !change_sentences(question).is_empty(),
            heavy: asking_sentences(question).any(|s| heavy.is_match(s))
                && !no_heavy.is_match(question),
        }
    }

    /// Whether a command of `tier` may be a candidate.
    pub fn allows(self, tier: Tier) -> bool {
        match tier {
            Tier::ReadOnly => true,
            Tier::Heavy => self.heavy,
            Tier::StateChanging => self.change,
            Tier::Blocked => false,
        }
    }
}

/// The sentences of `text`, each with the punctuation that ends it (`' '`
/// for the last). A sentence ends at punctuation before a space or the
/// end, so a bus id (`0000:b7:00.0`) or a version stays whole.
fn sentences(text: &str) -> Vec<(&str, char)> {
    static END: OnceLock<Regex> = OnceLock::new();
    let end = END.get_or_init(|| Regex::new(r"[.!?;:](?:\s+|$)").expect("valid regex"));
    let mut out = Vec::new();
    let mut start = 0;
    for m in end.find_iter(text) {
        let ends = text[m.start()..].chars().next().unwrap_or(' ');
        out.push((text[start..m.start()].trim(), ends));
        start = m.end();
    }
    out.push((text[start..].trim(), ' '));
    out
}

/// The sentences of `question` that ask for something: a question, a
/// request ("run the quick diag", "I need ..."), or the last sentence; not
/// the story told before them ("our nccl benchmark pod gets a fraction of
/// the busbw").
fn asking_sentences(question: &str) -> impl Iterator<Item = &str> {
    static REQUEST: OnceLock<Regex> = OnceLock::new();
    let request = REQUEST.get_or_init(|| {
        Regex::new(
            r"(?i)^\W*(?:(?:please|pls|can you|could you|go ahead and|ok|so|then|now|just|also|let'?s)[,\s]+)*(?:run|test|benchmark|bench|collect|grab|capture|kick off|start|do|get|gather|save|pull)\b|\b(?:need|needs|want|wants|would like|please|pls|should (?:i|we)|have to|must)\b",
        )
        .expect("valid regex")
    });
    let mut said = sentences(question);
    said.retain(|(s, _)| !s.is_empty());
    let last = said.len().saturating_sub(1);
    said.into_iter()
        .enumerate()
        .filter(move |(i, (s, ends))| *ends == '?' || *i == last || request.is_match(s))
        .map(|(_, (s, _))| s)
}

/// The sentences of the question that ask for a change: those that start
/// with a verb that changes state ("Reset it", "ok, reboot the node",
/// "can you set GPU 5 to exclusive mode"); "don't reset anything" and "should
/// I reset it?" do not.
pub fn change_sentences(question: &str) -> Vec<&str> {
    static CHANGE: OnceLock<Regex> = OnceLock::new();
    let change = CHANGE.get_or_init(|| {
        Regex::new(
            r"(?i)^(?:(?:please|pls|now|ok|so|then|can you|could you|go ahead and|just|[\w\s']{0,30}\b(?:asked me to|said to|said|told me to|wants? me to|need to|have to|gave (?:the |me |us )?(?:ok|okay|go-ahead|green light) to|approved|signed off on)|how (?:do|can|should) i|what(?:'s| is) the (?:command|cmd) to|(?:give|show|tell|send) (?:me|us) the (?:command|cmd|one-liner) (?:to|for))[,\s]+)*(reset|set|enable|disable|turn on|turn off|switch on|switch off|turn|switch|restart|reboot|kill|clear|wipe|lock|unlock|change|apply|stop|start|reload|restore|raise|lower|cap|put|create|destroy|delete|drain|undrain|power|shut|vacuum|rotate|mask|unmask|zero|rst|undo|revert|bring|drop|bump|make (?:all|every|each|the|gpus?|cards?|it|them|this|that|these|those)|(?:do|kick(?: off)?|trigger|issue) (?:the|a|an) (?:\w+ )?(?:reset|reboot|restart))\b",
        )
        .expect("valid regex")
    });
    // A clause starts a sentence, or follows a comma or a dash ("came back
    // with ECC on -- disable it", "GPU 6 is drained, reset it").
    static CLAUSE: OnceLock<Regex> = OnceLock::new();
    let clause = CLAUSE.get_or_init(|| Regex::new(r",\s+|\s+(?:--|—|–)\s+").expect("valid regex"));
    // Text the operator quotes or pastes (a log line's "reset gpu to
    // activate") is the node's, not a request: it is blanked, keeping
    // every offset, and what asks is cut from the question itself.
    let original = question;
    let blanked = quoted_blanked(question);
    let question = blanked.as_str();
    let in_original = |s: &str| {
        let at = s.as_ptr() as usize - question.as_ptr() as usize;
        &original[at..at + s.len()]
    };
    static NEGATED: OnceLock<Regex> = OnceLock::new();
    let negated = NEGATED.get_or_init(|| {
        Regex::new(
            r"(?i)\b(?:don'?t|do not|doesn'?t|does not|never|no need|shouldn'?t|should not|not)\b",
        )
        .expect("valid regex")
    });
    // "which command resets only GPU 4?": a change named by the command
    // that makes it.
    static NAMED: OnceLock<Regex> = OnceLock::new();
    let named = NAMED.get_or_init(|| {
        Regex::new(
            r"(?i)^(?:which|what) (?:command|cmd) (resets|sets|enables|disables|turns|switches|restarts|reboots|kills|clears|locks|caps|puts|brings|restores)\b",
        )
        .expect("valid regex")
    });
    // Whether `re`'s verb asks in `s`: "I do not need to reset it" asks
    // for nothing.
    let asked_by = |re: &Regex, s: &str| {
        re.captures(s)
            .and_then(|c| c.get(1))
            .is_some_and(|verb| !negated.is_match(&s[..verb.start()]))
    };
    let asks = |s: &str| asked_by(change, s) || asked_by(named, s);
    // "they approved us putting the limit back ... what command should I
    // run for that?": an approval asks for its change when it is the last
    // sentence or the last asks for the command of it, not when the last
    // asks something else ("they approved a reboot, what should I collect
    // before we reboot it?").
    static APPROVED: OnceLock<Regex> = OnceLock::new();
    let approved = APPROVED.get_or_init(|| {
        Regex::new(
            r"(?i)\b(?:approved?s?|ok'?d|okayed|signed off on|gave (?:the |me |us )?(?:ok|okay|go-ahead|green light) (?:to|for))\s+(?:us\s+|me\s+|you\s+)?(putting|resetting|setting|rebooting|restarting|enabling|disabling|turning|capping|bringing|restoring|lowering|raising|locking|clearing|killing|draining|(?:a|the) (?:\w+ )?(?:reset|reboot|restart))\b",
        )
        .expect("valid regex")
    });
    static FOR_IT: OnceLock<Regex> = OnceLock::new();
    let for_it = FOR_IT.get_or_init(|| {
        Regex::new(
            r"(?i)\b(?:command|cmd|for (?:that|it|this)|how (?:do|can|would|should) (?:i|we))\b",
        )
        .expect("valid regex")
    });
    // The asking sentence from its asking clause on ("set back to 700, all
    // 8" keeps its scope). A later clause asks only when it is not the next
    // step of a sequence the sentence reports ("the runbook says kill it
    // first, then reset 4-7"): the first clause asks, or it names no change.
    static THEN: OnceLock<Regex> = OnceLock::new();
    let then = THEN.get_or_init(|| Regex::new(r"(?i)^(?:and )?then\b").expect("valid regex"));
    static ANY_VERB: OnceLock<Regex> = OnceLock::new();
    let any_verb = ANY_VERB.get_or_init(|| {
        Regex::new(r"(?i)\b(?:reset|kill|reboot|restart|set|enable|disable|clear|wipe|drain)\b")
            .expect("valid regex")
    });
    // "apply it on GPU 3 only", "undo that:": the change is the one the
    // sentence before describes, or, after a colon, the one after.
    static ANAPHORA: OnceLock<Regex> = OnceLock::new();
    let anaphora = ANAPHORA.get_or_init(|| {
        Regex::new(r"(?i)\b(?:apply|undo|revert)\s+(?:it|that|this|them)\b").expect("valid regex")
    });
    // Each sentence, and whether a colon ends it.
    let said = sentences(question);
    let last = said.iter().rposition(|(s, _)| !s.is_empty());
    let mut out = Vec::new();
    for (i, &(s, ends)) in said.iter().enumerate() {
        let colon = ends == ':';
        let approval_asks =
            asked_by(approved, s) && last.is_some_and(|l| l == i || for_it.is_match(said[l].0));
        let asking = if asks(s) || approval_asks {
            Some(s)
        } else {
            clause
                .find_iter(s)
                .map(|m| m.end())
                .find(|&at| {
                    asks(&s[at..]) && !then.is_match(&s[at..]) && !any_verb.is_match(&s[..at])
                })
                .map(|at| &s[at..])
        };
        let Some(asking) = asking else { continue };
        if anaphora.is_match(asking) {
            let referent = if colon {
                said.get(i + 1)
            } else {
                i.checked_sub(1).and_then(|j| said.get(j))
            };
            if let Some(&(r, _)) = referent.filter(|(r, _)| !r.is_empty()) {
                out.push(in_original(r));
            }
        }
        out.push(in_original(asking));
    }
    out
}

/// The `k` best candidates for `question` on this node, fitted to what it
/// names, without duplicates (compared in the guard's canonical form). The
/// question alone ranks all but the last slot; the last goes to the best
/// match of the question with the titles of the node's warning and
/// critical findings, so a question that says what it wants is not drowned
/// by the node's problems, and a vague one still reaches them.
pub fn rank(question: &str, snapshot: &Snapshot, findings: &[Finding], k: usize) -> Vec<Reference> {
    let vendor = Vendors::of(snapshot);
    let intent = Intent::of(question);
    let targets = Targets::of(question, snapshot);
    let expanded = expand(&format!(
        "{question} {} {}",
        words(question),
        camel_words(question)
    ));
    let mut with_findings = expanded.clone();
    for f in findings.iter().filter(|f| f.severity >= Severity::Warning) {
        let _ = write!(with_findings, " {}", f.title);
    }
    let pool = pool();
    // Best first, each with its score; equal scores in catalogue order
    // (the index returns ties in hash order, which changes from run to run
    // and, through the candidates in the prompt, would change the answer).
    let search = |query: String| -> Vec<(f32, &'static Reference)> {
        let mut hits: Vec<(f32, u32, &'static Reference)> = index()
            .search(&query, pool.len())
            .into_iter()
            .filter_map(|hit| {
                let r = pool.get(hit.document.id as usize)?;
                Some((hit.score * simplicity(r), hit.document.id, r))
            })
            .filter(|(_, _, r)| intent.allows(r.tier) && vendor.has_tool_for(&r.command))
            .collect();
        hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        hits.into_iter().map(|(score, _, r)| (score, r)).collect()
    };
    let mut out: Vec<Reference> = Vec::with_capacity(k);
    let mut seen: Vec<String> = Vec::with_capacity(k);
    let first = search(format!("{expanded}{}", vendor.words()));
    let rest = search(format!("{with_findings}{}", vendor.words()));
    let mut shown: Vec<Shows> = Vec::new();
    // Candidates come fitted to the question; a change comes fitted and
    // checked, so nothing here may rewrite it.
    let csv = table::asks_csv(question).then(|| table::format(question));
    let driver_hung = snapshot.nvml_timed_out().is_some();
    // Checked once: most nodes have no lost GPU, and parsing every
    // candidate for its GPU selector would cost each question for nothing.
    let gpu_lost = snapshot.gpus.iter().any(|g| g.lost);
    let mut push = |r: &Reference, out: &mut Vec<Reference>| {
        // Nothing about a device the node does not have, nothing that
        // waits on a driver seen hung, and no query of a GPU NVML lost.
        if adapt::names_unknown_device(&r.command, question, snapshot)
            || (driver_hung && reaches_nvidia_driver(&r.command))
            || (gpu_lost
                && r.tier != Tier::StateChanging
                && change::selects_lost_gpu(&r.command, snapshot))
        {
            return;
        }
        // A table in the CSV format asked ("no header", "no units").
        let command = match &csv {
            Some(format) if r.command.contains("--format=csv") => r
                .command
                .split(' ')
                .map(|w| {
                    if w.starts_with("--format=csv") {
                        format!("--format={format}")
                    } else {
                        w.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" "),
            _ => r.command.clone(),
        };
        let key = guard::normalize(&command).unwrap_or_else(|| command.clone());
        // No candidate repeats what an earlier one already shows: a report
        // keeps only its sections not shown yet, anything else is dropped.
        let (command, key) = match Shows::of(&command) {
            Some(s) if shown.iter().any(|earlier| earlier.overlaps(&s)) => {
                match s.without(&shown).and_then(|rest| rest.rewrite(&command)) {
                    Some(reduced) => {
                        let key = guard::normalize(&reduced).unwrap_or_else(|| reduced.clone());
                        (reduced, key)
                    }
                    None => return,
                }
            }
            _ => (command, key),
        };
        let shows = Shows::of(&command);
        if !seen.contains(&key) {
            seen.push(key);
            shown.extend(shows);
            out.push(Reference {
                command,
                purpose: r.purpose.clone(),
                tier: r.tier,
                implied: r.implied,
            });
        }
    };
    // Asked for a change, the change comes first (the operator still
    // confirms it): the best-matching catalogued change that is exactly the
    // kind, value and GPUs asked, or none (`change::Request::held_back`
    // says what is missing). A change never becomes another change.
    let (request, change_targets) = change_request(question, snapshot);
    let fitted = |r: &Reference| -> Option<Reference> {
        let command = request.fit(&adapt::adapt(&r.command, &change_targets));
        request.allows(&command, snapshot).then(|| Reference {
            purpose: change::describe(&command, snapshot).unwrap_or_else(|| r.purpose.clone()),
            command,
            ..r.clone()
        })
    };
    let change = first
        .iter()
        .map(|(_, r)| *r)
        .chain(pool)
        .filter(|r| r.tier == Tier::StateChanging)
        .find_map(fitted);
    if let Some(change) = &change {
        push(change, &mut out);
    }
    // The one change chosen above is the only change offered.
    let read_or_heavy =
        |(_, r): (f32, &'static Reference)| (r.tier != Tier::StateChanging).then_some(r);
    let catalogue: Vec<(f32, &Reference)> = first
        .into_iter()
        .filter(|(_, r)| r.tier != Tier::StateChanging)
        .collect();
    let solved = bank::nearest(&format!("{question} {}", words(question)), BANK_HITS);
    let mut first = fuse(&catalogue, &solved, &targets, intent, &vendor);
    // The fields the question lists, by name or by what they are, are the
    // table.
    if let Some(listed) = table::asked(question).filter(|t| vendor.has_tool_for(t)) {
        first.insert(
            0,
            Reference {
                command: adapt::adapt(&listed, &targets),
                purpose: "the fields asked, as the CSV asked".into(),
                tier: Tier::ReadOnly,
                implied: false,
            },
        );
    }
    // A report answers: it shows the sections the question names when it
    // names two or more and the report is about one of them ("hot and
    // slow": PERFORMANCE,TEMPERATURE, not every section of a curated one).
    if let (Some(top), Some(named)) = (first.first_mut(), table::sections(question))
        && let Some(shows) = Shows::of(&top.command)
        && top.command.contains(" -d ")
        && named.iter().any(|s| shows.sections.contains(s))
        && let Some(command) = with_sections(&top.command, &named)
    {
        top.command = command;
    }
    // A process named by its id: what that process is, first.
    if targets.pid_named
        && let Some(r) = pool.iter().find(|r| one_process(&r.command))
    {
        first.insert(
            0,
            Reference {
                command: adapt::adapt(&r.command, &targets),
                ..r.clone()
            },
        );
    }
    // A hung driver, or a GPU NVML lost, answers nothing: when the best
    // match would ask it (with a hung driver: unless it reads the kernel
    // log already), the driver's own lines in the kernel log come first,
    // then what the finding about it reads.
    let unanswered = if driver_hung {
        !first.first().is_some_and(|r| reads_kernel_log(&r.command))
    } else {
        gpu_lost
            && first
                .first()
                .is_some_and(|r| change::selects_lost_gpu(&r.command, snapshot))
    };
    if unanswered {
        let about = |f: &&Finding| {
            f.id == "nvml-hung"
                || (f.id == "gpu-lost" && f.gpu.is_some_and(|g| targets.gpus.contains(&g)))
        };
        let steps = std::iter::once(placed(DRIVER_LINES.to_string())).chain(
            findings
                .iter()
                .filter(about)
                .flat_map(|f| f.commands.iter())
                .map(|argv| placed(guard::command_line(argv))),
        );
        first.splice(0..0, steps.collect::<Vec<_>>());
    }
    // A vague question ("anything weird with the GPUs?") names nothing the
    // catalogue can match: the node's worst finding says where to look,
    // over the GPUs the question names (all of them when it names none).
    if change.is_none()
        && vague(question)
        && let Some(worst) = findings.iter().map(|f| f.severity).max()
        && worst >= Severity::Warning
        && let Some(step) = findings
            .iter()
            .find(|f| f.severity == worst)
            .and_then(|f| f.commands.first())
    {
        first.insert(
            0,
            placed(adapt::adapt(&guard::command_line(step), &targets)),
        );
    }
    // A change no command may make (clearing the kernel log): what it
    // would have acted on, first.
    if let Some(step) = change::instead_of_refused(question) {
        first.insert(0, placed(step.to_string()));
    }
    let rest: Vec<Reference> = rest
        .into_iter()
        .filter_map(read_or_heavy)
        .take(FUSED_HITS)
        .map(|r| Reference {
            command: adapt::adapt(&r.command, &targets),
            ..r.clone()
        })
        .collect();
    for r in &first {
        if out.len() + 1 >= k.max(2) {
            break;
        }
        push(r, &mut out);
    }
    for r in rest.iter().chain(&first) {
        if out.len() >= k {
            break;
        }
        push(r, &mut out);
    }
    // The rule, once more on what leaves: no change but the one asked.
    out.retain(|r| r.tier != Tier::StateChanging || request.allows(&r.command, snapshot));
    out
}

/// The NVIDIA driver's lines in the kernel log: what a hung driver or a
/// lost GPU left there (a GSP timeout, an XID).
const DRIVER_LINES: &str = "dmesg -T | grep -E 'NVRM|Xid'";

/// Whether `command` reads the kernel log (`dmesg`, `journalctl -k`).
fn reads_kernel_log(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.first() {
        Some(&"dmesg") => true,
        Some(&"journalctl") => words.iter().any(|w| *w == "-k" || *w == "--dmesg"),
        _ => false,
    }
}

/// Programs that call into the NVIDIA driver and hang when it does.
const NVIDIA_DRIVER_CLIENTS: &[&str] = &["nvidia-smi", "dcgmi", "nvidia-settings"];

/// Whether `command` runs a program that hangs with a hung NVIDIA driver.
fn reaches_nvidia_driver(command: &str) -> bool {
    command
        .split('|')
        .filter_map(|segment| segment.split_whitespace().next())
        .any(|program| {
            NVIDIA_DRIVER_CLIENTS.contains(&program.rsplit('/').next().unwrap_or(program))
        })
}

/// `command` (a `-q -d` report) showing exactly `sections`.
fn with_sections(command: &str, sections: &[&str]) -> Option<String> {
    let mut words = shell_words::split(command).ok()?;
    let at = words.iter().position(|w| w == "-d" || w == "--display")?;
    *words.get_mut(at + 1)? = sections.join(",");
    Some(guard::command_line(&words))
}

/// `question` with what it quotes blanked out byte for byte: double-quoted
/// and backquoted spans, and pasted lines from the kernel log or a tool
/// (`NVRM:`, `Xid`, `kernel:`, `[ 123.456]`, a `|` table row).
fn quoted_blanked(question: &str) -> String {
    static QUOTED: OnceLock<Regex> = OnceLock::new();
    let quoted = QUOTED.get_or_init(|| {
        Regex::new(r#""[^"\n]*"|“[^”\n]*”|`[^`\n]*`|(?m)^.*(?:NVRM:|\bXid\s*\(PCI|kernel:|^\s*\[\s*\d+\.\d+\]|^\s*\|).*$|(?:^|\W)'[^'\n]{20,}'(?:\W|$)"#)
            .expect("valid regex")
    });
    let mut out = question.to_string();
    for m in quoted.find_iter(question) {
        out.replace_range(m.range(), &" ".repeat(m.len()));
    }
    out
}

/// Whether `command` shows one process by its id (`ps ... -p 12345`).
fn one_process(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    words.first() == Some(&"ps")
        && words
            .windows(2)
            .any(|w| w[0] == "-p" && w[1].chars().all(|c| c.is_ascii_digit()))
}

/// Solved questions from the bank looked at per question.
const BANK_HITS: usize = 30;

/// Catalogue matches fused with the bank's: the rest are too weak to
/// reach the first slots.
const FUSED_HITS: usize = 40;

/// Weight of the nearest solved question against the catalogue's best
/// match (each side's scores are scaled so its best is 1).
const BANK_WEIGHT: f32 = 0.5;

/// The catalogue's read-only and heavy matches fused with the commands of
/// the nearest solved questions, best first, each fitted to the question:
/// a command's score is its catalogue score plus its best solved
/// question's, each side scaled to its best hit. A solved question's
/// command the catalogue lacks comes with the purpose of the catalogue
/// command it equals, or what its arguments mean.
fn fuse(
    catalogue: &[(f32, &Reference)],
    solved: &[(f32, &bank::Pair)],
    targets: &Targets,
    intent: Intent,
    vendor: &Vendors,
) -> Vec<Reference> {
    struct Scored {
        score: f32,
        from_bank: bool,
        key: String,
        reference: Reference,
    }
    let mut out: Vec<Scored> = Vec::new();
    let top = catalogue.first().map_or(1.0, |h| h.0).max(f32::EPSILON);
    for (score, r) in catalogue.iter().take(FUSED_HITS) {
        let command = adapt::adapt(&r.command, targets);
        let key = guard::normalize(&command).unwrap_or_else(|| command.clone());
        if out.iter().all(|s| s.key != key) {
            out.push(Scored {
                score: score / top,
                from_bank: false,
                key,
                reference: Reference {
                    command,
                    ..(*r).clone()
                },
            });
        }
    }
    let top = solved.first().map_or(1.0, |h| h.0).max(f32::EPSILON);
    for (score, pair) in solved {
        let tier = guard::check(&pair.command).tier;
        if tier == Tier::StateChanging
            || !intent.allows(tier)
            || !vendor.has_tool_for(&pair.command)
        {
            continue;
        }
        let command = adapt::adapt(&pair.command, targets);
        let Some(key) = guard::normalize(&command) else {
            continue;
        };
        let add = BANK_WEIGHT * score / top;
        match out.iter_mut().find(|s| s.key == key) {
            Some(s) if !s.from_bank => {
                s.score += add;
                s.from_bank = true;
            }
            Some(_) => {}
            None => out.push(Scored {
                score: add,
                from_bank: true,
                reference: Reference {
                    purpose: purpose_of(&command),
                    command,
                    tier,
                    implied: false,
                },
                key,
            }),
        }
    }
    // Stable: equal scores keep the catalogue's order.
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out.into_iter().map(|s| s.reference).collect()
}

/// A candidate a rule places itself (a finding's step, the read-only step
/// instead of a refused change): its purpose and tier read from the command.
fn placed(command: String) -> Reference {
    Reference {
        purpose: purpose_of(&command),
        tier: guard::check(&command).tier,
        implied: false,
        command,
    }
}

/// What a command from the bank is for: the purpose of the catalogue
/// command it equals once fitted, else what its arguments mean.
fn purpose_of(command: &str) -> String {
    // Compared unscoped: `nvidia-smi -i 3 -q -d ECC` is the catalogue's
    // `nvidia-smi -q -i 0 -d ECC`.
    static PURPOSES: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    let unscoped = |c: &str| guard::normalize(&adapt::adapt(c, &Targets::default()));
    let purposes = PURPOSES.get_or_init(|| {
        let mut map = HashMap::new();
        for r in pool() {
            if let Some(key) = unscoped(&r.command) {
                map.entry(key).or_insert(r.purpose.as_str());
            }
        }
        map
    });
    if let Some(p) = unscoped(command).and_then(|k| purposes.get(&k)) {
        return (*p).to_string();
    }
    let meanings: Vec<String> = guard::explain(command)
        .into_iter()
        .skip(1)
        .filter(|a| {
            !a.arg.starts_with("-i") && !a.arg.starts_with("--id") && !a.arg.starts_with("--format")
        })
        .map(|a| match a.meaning.split_once(": ") {
            Some((_, what)) => what.to_string(),
            None => a.meaning,
        })
        .filter(|m| !m.is_empty())
        .collect();
    if meanings.is_empty() {
        guard::explain(command)
            .into_iter()
            .next()
            .map(|a| a.meaning)
            .unwrap_or_default()
    } else {
        meanings.join("; ")
    }
}

/// When the question asks for a change that `candidates` do not offer,
/// what is missing, as a sentence for the answer.
pub fn held_back(question: &str, snapshot: &Snapshot, candidates: &[Reference]) -> Option<String> {
    change_request(question, snapshot)
        .0
        .held_back(candidates.iter().any(|r| r.tier == Tier::StateChanging))
}

/// The change the question asks for, and what it applies to: the GPUs the
/// asking sentences name ("Enable MIG on GPU 7 only. Leave GPUs 0 to 6 as
/// they are." is GPU 7), or the question's when they name none ("GPU 3 is
/// hung. Reset it.").
fn change_request(question: &str, snapshot: &Snapshot) -> (change::Request, Targets) {
    let sentences = change_sentences(question);
    let own = Targets::of(&sentences.join(". "), snapshot);
    let targets = if own.gpus.is_empty() && !own.every {
        Targets {
            gpus: Targets::of(question, snapshot).gpus,
            ..own
        }
    } else {
        own
    };
    (
        change::Request::of(&sentences, question, &targets, snapshot),
        targets,
    )
}

/// What an `nvidia-smi` command shows: the GPUs it selects and the report
/// sections its output covers (`-q -d ECC`, `--query-gpu=ecc.*` and plain
/// `-q` all show ECC), so two candidates that show the same thing are
/// recognised whatever their form.
#[derive(Debug, Clone, PartialEq)]
struct Shows {
    /// The `-i` value, `None` for every GPU.
    scope: Option<String>,
    /// Report sections (`ECC`, `TEMPERATURE`, ...).
    sections: Vec<&'static str>,
}

/// Every section a full `-q` prints.
const ALL_SECTIONS: &[&str] = &[
    "PERFORMANCE",
    "MEMORY",
    "COMPUTE",
    "UTILIZATION",
    "ECC",
    "PAGE_RETIREMENT",
    "ROW_REMAPPER",
    "TEMPERATURE",
    "POWER",
    "CLOCK",
    "PIDS",
    "RESET_STATUS",
    "PCI",
];

impl Shows {
    /// What `command` shows, when it is a plain `nvidia-smi` report or query.
    fn of(command: &str) -> Option<Shows> {
        let words = shell_words::split(command).ok()?;
        if words.first().map(String::as_str) != Some("nvidia-smi") || command.contains('|') {
            return None;
        }
        let mut scope = None;
        let mut sections: Vec<&'static str> = Vec::new();
        let mut query = false;
        let mut i = 1;
        while i < words.len() {
            let w = words[i].as_str();
            let (flag, inline) = match w.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (w, None),
            };
            let value = || inline.clone().or_else(|| words.get(i + 1).cloned());
            match flag {
                "-i" | "--id" => scope = value(),
                "-q" | "--query" => query = true,
                "-d" | "--display" => {
                    if let Some(v) = value() {
                        sections.extend(v.split(',').filter_map(|d| {
                            ALL_SECTIONS
                                .iter()
                                .copied()
                                .find(|s| s.eq_ignore_ascii_case(d.trim()))
                        }));
                    }
                }
                "--query-gpu" => {
                    if let Some(v) = value() {
                        sections.extend(v.split(',').filter_map(|f| field_section(f.trim())));
                    }
                }
                _ if w.starts_with('-') => {}
                // A subcommand (topo, nvlink, dmon): another kind of output.
                _ if i == 1 => return None,
                _ => {}
            }
            i += 1;
        }
        if query && sections.is_empty() {
            sections = ALL_SECTIONS.to_vec();
        }
        sections.sort_unstable();
        sections.dedup();
        (!sections.is_empty()).then_some(Shows { scope, sections })
    }

    /// These sections less those `earlier` show of the same GPUs; `None`
    /// when nothing is left.
    fn without(&self, earlier: &[Shows]) -> Option<Shows> {
        let sections: Vec<&'static str> = self
            .sections
            .iter()
            .copied()
            .filter(|s| {
                !earlier
                    .iter()
                    .any(|e| e.scope == self.scope && e.sections.contains(s))
            })
            .collect();
        (!sections.is_empty()).then(|| Shows {
            scope: self.scope.clone(),
            sections,
        })
    }

    /// `command` (a `-q -d` report) showing only these sections; `None` for
    /// any other form.
    fn rewrite(&self, command: &str) -> Option<String> {
        let words = shell_words::split(command).ok()?;
        let at = words.iter().position(|w| w == "-d" || w == "--display")?;
        let kept: Vec<&str> = words
            .get(at + 1)?
            .split(',')
            .filter(|d| {
                self.sections
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(d.trim()))
            })
            .collect();
        with_sections(command, &kept)
    }

    /// Whether both show some same section of the same GPUs.
    fn overlaps(&self, other: &Shows) -> bool {
        self.scope == other.scope && self.sections.iter().any(|s| other.sections.contains(s))
    }
}

/// The report section a `--query-gpu` field belongs to; identity fields
/// (index, name, bus id) belong to none.
fn field_section(field: &str) -> Option<&'static str> {
    const PREFIXES: &[(&str, &str)] = &[
        ("clocks_event_reasons", "PERFORMANCE"),
        ("clocks_throttle_reasons", "PERFORMANCE"),
        ("pstate", "PERFORMANCE"),
        ("temperature", "TEMPERATURE"),
        ("power", "POWER"),
        ("enforced.power", "POWER"),
        ("ecc.", "ECC"),
        ("retired_pages", "PAGE_RETIREMENT"),
        ("remapped_rows", "ROW_REMAPPER"),
        ("memory.", "MEMORY"),
        ("utilization", "UTILIZATION"),
        ("clocks.", "CLOCK"),
        ("compute_mode", "COMPUTE"),
        ("reset_status", "RESET_STATUS"),
        ("pcie.", "PCI"),
    ];
    PREFIXES
        .iter()
        .find(|(p, _)| field.starts_with(p))
        .map(|(_, s)| *s)
}

/// A prior for the simpler of two equally relevant commands: each shell
/// word past the program costs a little, as an operator reaches for
/// `dmesg -T | grep -i xid` before a five-stage pipeline.
fn simplicity(r: &Reference) -> f32 {
    let extra_words = r.command.split_whitespace().count().saturating_sub(1);
    let implied = if r.implied { IMPLIED_WEIGHT } else { 1.0 };
    implied / (1.0 + SIMPLICITY_WEIGHT * extra_words as f32)
}

/// The score of an implied candidate relative to a curated example: its
/// description is short, so BM25 ranks it high on a single shared word.
const IMPLIED_WEIGHT: f32 = 0.8;

/// How much each extra word of a command lowers its score.
const SIMPLICITY_WEIGHT: f32 = 0.04;

/// The GPU vendors a node has.
struct Vendors {
    nvidia: bool,
    amd: bool,
}

impl Vendors {
    fn of(snapshot: &Snapshot) -> Vendors {
        Vendors {
            nvidia: !snapshot.gpus.is_empty()
                || snapshot.pci_gpus.iter().any(|p| p.vendor_id == "10de"),
            amd: !snapshot.amd_gpus.is_empty(),
        }
    }

    /// Words added to the query so the node's own tools rank first.
    fn words(&self) -> &'static str {
        match (self.nvidia, self.amd) {
            (false, true) => " amd rocm-smi amd-smi",
            (true, _) => " nvidia nvidia-smi",
            (false, false) => "",
        }
    }

    /// False for a vendor's GPU tool (or a search for its driver's
    /// messages, XIDs included, or a read of its driver's files) on a node
    /// without that vendor's GPUs, when the node has the other vendor's.
    fn has_tool_for(&self, command: &str) -> bool {
        let bin = command.split_whitespace().next().unwrap_or("");
        let lower = command.to_ascii_lowercase();
        let nvidia_tool =
            bin == "dcgmi" || ["nvidia", "xid", "nvrm"].iter().any(|w| lower.contains(w));
        let amd_tool =
            bin.starts_with("rocm") || bin.starts_with("amd-smi") || command.contains("amdgpu");
        !((nvidia_tool && !self.nvidia && self.amd) || (amd_tool && !self.amd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copilot::sim_node as node;

    #[test]
    fn alert_names_are_split_into_words() {
        assert_eq!(
            camel_words("DCGMHealthFailure crit; AMDGPURasUncorrectable on card 4, GPUTempHigh"),
            "DCGM Health Failure AMDGPU Ras Uncorrectable GPU Temp High "
        );
        assert_eq!(camel_words("nvidia-smi on gpu 3, XID 79"), "");
    }

    #[test]
    fn a_change_asked_after_a_dash_or_a_comma_is_asked() {
        assert_eq!(
            change_sentences(
                "came back from the reimage with ECC enabled -- disable ECC on all of them"
            ),
            vec!["disable ECC on all of them"]
        );
        assert_eq!(
            change_sentences("GPU 6 is drained, reset it"),
            vec!["reset it"]
        );
        assert_eq!(
            change_sentences(
                "the counters are saved. zero the volatile ECC error counters on all 8 GPUs"
            ),
            vec!["zero the volatile ECC error counters on all 8 GPUs"]
        );
        assert!(
            change_sentences("do NOT reset anything, there are still jobs on this node").is_empty()
        );
        // A step of a sequence someone else wrote is not asked.
        assert!(
            change_sentences("runbook says kill -9 the orphan first, then reset 4-7").is_empty()
        );
        // Apostrophes in words ("night's", "won't") quote nothing between them.
        assert_eq!(
            change_sentences(
                "it missed last night's ansible run. Switch all 8 GPUs to exclusive mode. the job won't care"
            ),
            vec!["Switch all 8 GPUs to exclusive mode"]
        );
        assert!(
            change_sentences("the log says 'reset the GPU to activate the remap' for GPU 2")
                .is_empty()
        );
        // "make ... go back to", "do the reset": asked; "make sure" is not.
        assert_eq!(
            change_sentences("PSU is new now, make all 8 GPU go back to full 700 watt."),
            vec!["make all 8 GPU go back to full 700 watt"]
        );
        assert_eq!(
            change_sentences("GPU 6 is drained. Do the GPU reset only for this one."),
            vec!["Do the GPU reset only for this one"]
        );
        assert!(change_sentences("make sure nothing runs on GPU 6 before the reset").is_empty());
        assert!(change_sentences("do the GPUs show errors?").is_empty());
        assert_eq!(
            change_sentences("node is drained. on call gave the ok to reset gpu 2 only. go ahead"),
            vec!["on call gave the ok to reset gpu 2 only"]
        );
        assert_eq!(
            change_sentences("mi300x box: drop gpu 5's power cap to 600W pls"),
            vec!["drop gpu 5's power cap to 600W pls"]
        );
        // The operator's own words about an XID are theirs; a pasted driver
        // line is the node's.
        assert_eq!(
            change_sentences("gpu6 is the DBE one (Xid 48 then 63). reset just gpu 6"),
            vec!["reset just gpu 6"]
        );
        assert!(
            change_sentences("NVRM: Xid (PCI:0000:b7:00): 48, reset the GPU to recover").is_empty()
        );
    }

    #[test]
    fn a_bare_value_takes_the_one_kind_the_story_names_and_nothing_else() {
        let first = |sim: &str, q: &str| {
            let (snapshot, findings) = node(sim);
            rank(q, &snapshot, &findings, 3)[0].command.clone()
        };
        for q in [
            "somebody left a 400W power cap on every H100 in this box after burn-in, spec is 700W. put all eight back to 700 pls",
            "gpu-h100-044 all 8 stuck at 400w, someone left a -pl from burn in. put all of em back to 700 pls",
            "Someone dialed pl down to 400 on every SXM here. Bring all eight to 700W.",
        ] {
            assert_eq!(first("h100x8-power-cap", q), "nvidia-smi -pl 700", "{q}");
        }
        assert_eq!(
            first(
                "a100x8-ecc-dbe",
                "GPU6 took a DBE, remap pending. It's idle. Kick a reset on that one GPU so the remap lands."
            ),
            "nvidia-smi -r -i 6"
        );
        // A kind the story names is borrowed only to set a value: the reset
        // the operator will do themselves is never proposed.
        let (snapshot, findings) = node("h100x8-ib-down");
        let offered = rank(
            "turn MIG mode on for gpu 7 only, we're carving it into 1g slices. i'll do the reset myself tonight",
            &snapshot,
            &findings,
            3,
        );
        assert!(
            offered.iter().all(|r| !r.command.contains(" -r")),
            "{offered:?}"
        );
    }

    #[test]
    fn a_vague_question_starts_where_the_worst_finding_points() {
        let (snapshot, findings) = node("h100x8-thermal-throttle");
        let first = |q: &str| rank(q, &snapshot, &findings, 3)[0].command.clone();
        assert!(vague("anything weird with one of the gpus? look only"));
        assert!(!vague("anything weird in the kernel log?"));
        assert!(!vague("are the GPUs healthy according to DCGM?"));
        assert_eq!(
            first("training is crawling on this node. anything weird with one of the gpus?"),
            "nvidia-smi -q -d PERFORMANCE,TEMPERATURE,POWER"
        );
        assert_eq!(
            first("anything off with GPU 2?"),
            "nvidia-smi -i 2 -q -d PERFORMANCE,TEMPERATURE,POWER"
        );
    }

    #[test]
    fn another_vendors_driver_is_not_searched() {
        let amd = Vendors::of(&node("mi300x-ras-errors").0);
        assert!(!amd.has_tool_for("dmesg -T | grep -i xid"));
        assert!(!amd.has_tool_for("cat /proc/driver/nvidia/version"));
        assert!(amd.has_tool_for("dmesg -T | grep -i amdgpu"));
        let nvidia = Vendors::of(&node("h100x8-xid79").0);
        assert!(nvidia.has_tool_for("dmesg -T | grep -i xid"));
        assert!(!nvidia.has_tool_for("dmesg -T | grep -i amdgpu"));
    }

    #[test]
    fn a_process_named_by_its_id_is_shown_first() {
        let (snapshot, findings) = node("h100x8-stuck-memory");
        let first = |q: &str| {
            rank(q, &snapshot, &findings, 3)
                .first()
                .map(|r| r.command.clone())
        };
        assert_eq!(
            first("pid 48213 sittin on 70G on gpus 4-7. wat is it, is it even alive").as_deref(),
            Some("ps -o pid,ppid,stat,etime,cmd -p 48213")
        );
        assert!(one_process("ps -o pid,cmd -p 12345"));
        assert!(!one_process("ps -eo pid,cmd"));
    }

    #[test]
    fn every_candidate_is_valid_and_has_its_tier() {
        assert!(pool().len() > 200);
        for r in pool() {
            let verdict = guard::check(&r.command);
            assert_ne!(verdict.tier, Tier::Blocked, "{}", r.command);
            assert_eq!(verdict.tier, r.tier, "{}", r.command);
        }
    }

    #[test]
    fn the_same_question_always_gets_the_same_candidates_in_the_same_order() {
        // Each search's matches come out of a fresh hash set, whose order
        // differs between sets even within one process.
        let (s, f) = node("h100x8-xid79");
        for question in ["why is this node unhealthy?", "gpu", "show me the logs"] {
            let first = rank(question, &s, &f, 8);
            for _ in 0..20 {
                let again = rank(question, &s, &f, 8);
                let commands = |hits: &[Reference]| -> Vec<String> {
                    hits.iter().map(|r| r.command.clone()).collect()
                };
                assert_eq!(commands(&again), commands(&first), "{question}");
            }
        }
    }

    #[test]
    fn no_candidate_repeats_what_an_earlier_one_shows() {
        let perf = Shows::of("nvidia-smi -i 2 -q -d PERFORMANCE").expect("a report");
        let more =
            Shows::of("nvidia-smi -i 2 -q -d PERFORMANCE,TEMPERATURE,POWER").expect("a report");
        let csv = Shows::of(
            "nvidia-smi -i 2 --query-gpu=pci.bus_id,clocks_event_reasons.active --format=csv",
        )
        .expect("a query");
        let other_gpu = Shows::of("nvidia-smi -i 3 -q -d PERFORMANCE").expect("a report");
        assert!(perf.overlaps(&more) && perf.overlaps(&csv));
        assert!(!perf.overlaps(&other_gpu));
        assert_eq!(
            Shows::of("nvidia-smi --query-gpu=index,name --format=csv"),
            None
        );
        assert_eq!(Shows::of("nvidia-smi topo -m"), None);
        let (s, f) = node("h100x8-thermal-throttle");
        let hits = rank("why is training slow on GPU 2?", &s, &f, 4);
        assert_eq!(hits[0].command, "nvidia-smi -i 2 -q -d PERFORMANCE");
        assert_eq!(hits[1].command, "nvidia-smi -i 2 -q -d TEMPERATURE,POWER");
        let shows: Vec<Shows> = hits.iter().filter_map(|r| Shows::of(&r.command)).collect();
        for (i, a) in shows.iter().enumerate() {
            for b in &shows[i + 1..] {
                assert!(!a.overlaps(b), "{hits:#?}");
            }
        }
    }

    #[test]
    fn remap_questions_find_the_row_remapper() {
        let (s, f) = node("a100x4-ecc-remap-pending");
        let hits = rank("Is any GPU waiting for a row remap?", &s, &f, 5);
        assert!(
            hits.iter()
                .any(|r| r.command.contains("ROW_REMAPPER") || r.command.contains("remapped_rows")),
            "{hits:#?}"
        );
    }

    #[test]
    fn amd_nodes_get_amd_tools() {
        let (s, f) = node("mi300x-healthy");
        let hits = rank("show GPU temperatures", &s, &f, 5);
        assert!(!hits.is_empty());
        assert!(
            hits.iter().all(|r| !r.command.starts_with("nvidia-smi")),
            "{hits:#?}"
        );
    }

    #[test]
    fn informal_words_reach_the_catalogue() {
        let (s, f) = node("h100x8-healthy");
        let hits = rank("temps?", &s, &f, 5);
        assert!(
            hits.iter()
                .any(|r| r.command.contains("temperature") || r.command.contains("TEMPERATURE")),
            "{hits:#?}"
        );
    }

    #[test]
    fn changes_and_heavy_runs_only_when_asked() {
        let (s, f) = node("h100x8-power-cap");
        let read = rank("What power limit is set on each GPU?", &s, &f, 8);
        assert!(read.iter().all(|r| r.tier == Tier::ReadOnly), "{read:#?}");
        let change = rank(
            "Set the power limit back to 700 W on all of them.",
            &s,
            &f,
            8,
        );
        assert!(
            change.iter().any(|r| r.tier == Tier::StateChanging),
            "{change:#?}"
        );
        assert_eq!(
            Intent::of("GPU 4 is drained. Reset it."),
            Intent {
                change: true,
                heavy: false
            }
        );
        assert!(!Intent::of("Does any GPU need a reset? Don't reset anything.").change);
        assert!(Intent::of("Run a quick DCGM diagnostic.").heavy);
        assert!(!Intent::of("Why is all-reduce slow? No benchmarks please.").heavy);
        // Scaling tests the user ran, another user's job, "nothing heavy",
        // a benchmark's result quoted: none asks for a heavy run.
        for q in [
            "Student doing scaling tests: allreduce is 4x slower. There's another user's job on that node, so please nothing heavy. Is it the NVLink?",
            "nccl-tests all_reduce_perf with all 8 gpus tops out around 117 GB/s busbw. is nvlink busted?",
        ] {
            assert!(!Intent::of(q).heavy, "{q}");
        }
        assert!(
            Intent::of("Run the nccl-tests all-reduce sweep over all 8 GPUs to compare with the ~450 GB/s expected.")
                .heavy
        );
    }

    #[test]
    fn the_change_asked_for_comes_first() {
        let (s, f) = node("h100x8-xid79");
        let hits = rank(
            "Jobs are drained. Reboot it so GPU 3 comes back.",
            &s,
            &f,
            4,
        );
        assert_eq!(hits[0].command, "systemctl reboot", "{hits:#?}");
        let (s, f) = node("h100x8-power-cap");
        let hits = rank(
            "someone capped this box. put every gpu back to 700W",
            &s,
            &f,
            4,
        );
        assert_eq!(hits[0].command, "nvidia-smi -pl 700", "{hits:#?}");
        // the catalogue has no kill, and dmesg -C is blocked: no other
        // change stands in for them
        for question in ["Kill the process on GPU 2.", "Clear the kernel log."] {
            let hits = rank(question, &s, &f, 4);
            assert!(hits.iter().all(|r| r.tier == Tier::ReadOnly), "{hits:#?}");
        }
    }

    #[test]
    fn a_change_said_as_apply_it_or_undo_that_is_the_one_described_beside_it() {
        let (s, f) = node("h100x8-power-cap");
        let first = |q: &str| rank(q, &s, &f, 4).remove(0);
        // The sentence before says what "it" is; the others' value is not
        // the change's.
        let hit = first(
            "customer wants GPU 3 power capped at 600W for their test, the rest stay at 700W. apply it on GPU 3 only",
        );
        assert_eq!(hit.command, "nvidia-smi -i 3 -pl 600");
        let hit = first("the others stay at 700. the vendor wants GPU 2 at 550 W. apply it");
        assert_eq!(hit.command, "nvidia-smi -i 2 -pl 550");
        // After a colon, the sentence after does.
        let hit = first(
            "someone left a 400W cap on every GPU from an experiment. undo that: all 8 back to 700 W.",
        );
        assert_eq!(hit.command, "nvidia-smi -pl 700");
        // Nothing described, nothing asked, or a change refused: no change.
        for question in [
            "apply it",
            "the power cap on GPU 3 is 400W. should I undo that?",
            "the cap on GPU 3 is 400W. don't undo that yet",
        ] {
            let hits = rank(question, &s, &f, 4);
            assert!(
                hits.iter().all(|r| r.tier != Tier::StateChanging),
                "{question}: {hits:#?}"
            );
        }
    }

    #[test]
    fn an_xid_named_brings_its_meaning_and_the_node_is_not_a_topic() {
        let (s, f) = node("a100x4-ecc-remap-pending");
        let hits = rank(
            "Saw an Xid 63 on GPU 2 on this node. Does it need a reset?",
            &s,
            &f,
            3,
        );
        assert!(
            hits.iter()
                .take(2)
                .any(|r| r.command.contains("ROW_REMAPPER") || r.command.contains("remapped_rows")),
            "{hits:#?}"
        );
        assert!(expand("saw XID 63").ends_with("Memory remap/retirement recorded"));
        assert_eq!(expand("is this node ok"), "is this ok");
        let expanded = expand("slow, no XIDs");
        assert!(
            expanded.contains("throttle") && !expanded.to_lowercase().contains("xid"),
            "{expanded}"
        );
    }

    #[test]
    fn a_hung_driver_gets_no_command_that_would_hang_on_it() {
        let (s, f) = node("h100x8-driver-hung");
        for question in [
            "nvidia-smi hangs on this node, what is wrong?",
            "show GPU temperatures",
            "what is wrong with this node?",
        ] {
            let hits = rank(question, &s, &f, 5);
            assert!(!hits.is_empty(), "{question}");
            assert!(
                hits.iter().all(|r| !reaches_nvidia_driver(&r.command)
                    && !adapt::names_unknown_device(&r.command, question, &s)),
                "{question}: {hits:#?}"
            );
        }
        // The driver's own kernel-log lines come first, unless the question
        // already asks for a kernel log search of its own.
        let hits = rank(
            "nvidia-smi just hangs, what is going on with the driver?",
            &s,
            &f,
            5,
        );
        assert_eq!(hits[0].command, DRIVER_LINES, "{hits:#?}");
        let hits = rank("show the last 50 lines of the kernel log", &s, &f, 5);
        assert!(reads_kernel_log(&hits[0].command), "{hits:#?}");
        assert!(reads_kernel_log("journalctl -k -b --no-pager"));
        assert!(!reads_kernel_log("journalctl -u nvidia-persistenced"));
        assert!(reaches_nvidia_driver("dmesg -T | nvidia-smi -L"));
        assert!(!reaches_nvidia_driver("dmesg -T | grep -i nvidia-smi"));
    }

    #[test]
    fn a_heavy_run_is_asked_by_a_request_not_by_the_story() {
        for story in [
            "our nccl benchmark pod gets a fraction of the busbw the other nodes get. is the nvlink messed up?",
            "all_reduce_perf with all 8 gpus tops out at 117 GB/s. anything wrong with nvlink?",
        ] {
            assert!(!Intent::of(story).heavy, "{story}");
        }
        for request in [
            "Node is drained. Run the quick DCGM diag.",
            "What should I collect before we reboot it?",
            "we need a level 3 diag before the RMA. node is drained",
            "xid 79 - collect the bug report before anyone reboots",
        ] {
            assert!(Intent::of(request).heavy, "{request}");
        }
    }

    #[test]
    fn a_negated_action_is_not_the_topic() {
        let expanded = expand("which PID owns those contexts? nobody resets anything until I know");
        assert!(!expanded.contains("resets"), "{expanded}");
        assert!(expand("don't reboot, just show the log").contains("log"));
    }

    #[test]
    fn a_lost_gpu_gets_no_query_scoped_to_it() {
        let (s, f) = node("h100x8-xid79");
        for question in [
            "gpu 3 just vanished from nvidia-smi -L, what happened?",
            "show gpu 3",
        ] {
            let hits = rank(question, &s, &f, 5);
            assert!(!hits.is_empty(), "{question}");
            assert!(
                hits.iter()
                    .all(|r| !change::selects_lost_gpu(&r.command, &s)),
                "{question}: {hits:#?}"
            );
        }
        // Asked of the lost GPU, what the driver logged comes first.
        let hits = rank("show gpu 3's clocks", &s, &f, 5);
        assert_eq!(hits[0].command, DRIVER_LINES, "{hits:#?}");
        assert!(change::selects_lost_gpu("nvidia-smi -i 3 -L", &s));
        assert!(change::selects_lost_gpu(
            "nvidia-smi -i 0000:5d:00.0 -q",
            &s
        ));
        assert!(!change::selects_lost_gpu("nvidia-smi -i 2 -L", &s));
        assert!(!change::selects_lost_gpu("nvidia-smi -L", &s));
    }

    #[test]
    fn the_operators_own_next_step_is_not_the_topic() {
        for question in [
            "I'll reboot the node. What should I collect before I reboot?",
            "plan is a power cycle from the BMC, what do I grab first?",
            "Before I ask the sysadmins to reboot the node, what should I run?",
        ] {
            let expanded = expand(question);
            assert!(
                !expanded.contains("reboot") && !expanded.contains("cycl"),
                "{question}: {expanded}"
            );
        }
        // A reboot asked about stays the topic.
        assert!(expand("when did this node last reboot?").contains("reboot"));
    }

    #[test]
    fn an_approval_asks_for_its_change_only_when_the_question_is_about_it() {
        assert_eq!(
            change_sentences(
                "They have approved us putting the power limit back to 700 W on all eight GPUs. What command should I run for that?"
            ),
            vec!["They have approved us putting the power limit back to 700 W on all eight GPUs"]
        );
        assert!(
            change_sentences(
                "They have approved a reboot of the node. What should I collect before we reboot it?"
            )
            .is_empty()
        );
        assert!(
            change_sentences("They have not approved a reboot. What command for that?").is_empty()
        );
        assert_eq!(
            change_sentences("The jobs are off GPU 4. Which command resets only GPU 4?"),
            vec!["Which command resets only GPU 4"]
        );
        assert_eq!(
            change_sentences(
                "someone left the cap at 400 W. Could you please give me the command to put every card back on its full 700 W?"
            ),
            vec!["Could you please give me the command to put every card back on its full 700 W"]
        );
    }

    #[test]
    fn candidates_are_fitted_to_the_gpu_named() {
        let (s, f) = node("h100x8-nvlink-errors");
        let hits = rank("Show the NVLink error counters for GPU 5.", &s, &f, 5);
        assert!(
            hits.iter()
                .any(|r| r.command.starts_with("nvidia-smi nvlink -i 5")),
            "{hits:#?}"
        );
    }
}
