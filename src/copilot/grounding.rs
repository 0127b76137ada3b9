//! The grounding check: every number and GPU index an answer states must
//! come from the node: its snapshot, the checks' findings, the facts read
//! from the commands that ran, the question itself, or the diagnosis built
//! from them.
//!
//! A small model writes fluent numbers it never saw. After generation the
//! answer's claims are compared with this evidence; a sentence that states
//! an ungrounded value is removed ([`Evidence::ground`]), so the model never
//! invents a value. The diagnosis evaluation counts what is left as a
//! false claim.
//!
//! Text inside backticks (a command line) is not a claim; PCI addresses,
//! UUIDs and versions are not numbers. A number matches evidence when it
//! is the same value to the precision written (`463` matches `463.27`).

use std::sync::LazyLock;

use regex::Regex;

use super::NodeContext;
use crate::probe::interpret::Fact;

/// What an answer may cite.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Every number in the evidence.
    numbers: Vec<f64>,
    /// GPU indexes that exist (NVIDIA and AMD).
    gpus: Vec<u32>,
}

/// A claim an answer makes: a value or a GPU index.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// `GPU N`.
    Gpu(u32),
    /// A number, as written.
    Number(String),
}

impl std::fmt::Display for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::Gpu(g) => write!(f, "GPU {g}"),
            Claim::Number(n) => f.write_str(n),
        }
    }
}

/// `GPU 3`, `gpu3`, `GPU #3`, and the plural's lists: `GPUs 0-7`, `GPUs 1,
/// 4 and 6` (only a plural takes a list: "GPU 2, 86 °C" names one GPU).
static GPUS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bgpus\s*(\d+(?:\s*(?:-|–|,|and|&)\s*\d+)*)|\bgpu\s*#?\s*(\d+)")
        .expect("valid regex")
});

/// Words that are identifiers, not values: bus ids, UUIDs, hex, versions,
/// dates and times, and commands in backticks.
static NOT_VALUES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        `[^`]*`                                        # a command
        | \b[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?\b   # PCI address
        | \b[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]\b      # short PCI address
        | \b(?:GPU|MIG)-[0-9a-fA-F-]+                   # UUID
        | \b0x[0-9a-fA-F]+\b                            # hex
        | \b\d+\.\d+\.\d+(?:\.\d+)*\b                   # version
        | \b\d{1,2}:\d{2}(?::\d{2})?\b                  # time of day
        | \b\d{4}-\d{2}-\d{2}(?:T[0-9:.]+Z?)?\b         # date
        | \bmlx5_\d+\b                                  # an adapter's name
        | \b(?:XID|Xid|xid)\s*\d+                       # an XID number names a kind of error
        ",
    )
    .expect("valid regex")
});

static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d+(?:\.\d+)?").expect("valid regex"));

impl Evidence {
    /// The evidence for an answer to `question` on `node`, after `facts`
    /// were read, plus any `texts` built from them (the diagnosis).
    pub fn new(question: &str, node: NodeContext<'_>, facts: &[Fact], texts: &[&str]) -> Evidence {
        let mut e = Evidence::default();
        // The snapshot and findings in full: every numeric field counts.
        if let Ok(json) = serde_json::to_string(node.snapshot) {
            e.add_numbers(&json);
        }
        if let Ok(json) = serde_json::to_string(node.findings) {
            e.add_numbers(&json);
        }
        for f in facts {
            e.add_numbers(&f.value);
            if let Some(s) = &f.subject {
                e.add_numbers(s);
            }
        }
        e.add_numbers(question);
        for t in texts {
            e.add_numbers(t);
        }
        let snapshot = node.snapshot;
        let live = snapshot.gpus.iter().filter(|g| !g.lost).count();
        for count in [
            snapshot.gpus.len(),
            live,
            snapshot.amd_gpus.len(),
            node.findings.len(),
        ] {
            e.numbers.push(count as f64);
        }
        e.gpus = snapshot
            .gpus
            .iter()
            .map(|g| g.index)
            .chain(snapshot.amd_gpus.iter().map(|g| g.index))
            .collect();
        e
    }

    fn add_numbers(&mut self, text: &str) {
        for m in NUMBER.find_iter(text) {
            if let Ok(n) = m.as_str().parse::<f64>() {
                self.numbers.push(n);
            }
        }
    }

    /// Whether `written` (a number as the answer wrote it) is in the
    /// evidence, to the precision written.
    fn has_number(&self, written: &str) -> bool {
        let Ok(v) = written.parse::<f64>() else {
            return true;
        };
        let decimals = written.split_once('.').map_or(0, |(_, d)| d.len());
        let step = 10f64.powi(-(decimals as i32));
        self.numbers
            .iter()
            .any(|n| (n - v).abs() <= step / 2.0 + 1e-9 || (n.round() - v).abs() < 1e-9)
    }

    /// The claims in `answer` the evidence does not support.
    pub fn ungrounded(&self, answer: &str) -> Vec<Claim> {
        let mut out = Vec::new();
        let cleaned = NOT_VALUES.replace_all(answer, " ");
        for c in GPUS.captures_iter(&cleaned) {
            let list = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
            for n in NUMBER.find_iter(list) {
                if let Ok(g) = n.as_str().parse::<u32>()
                    && !self.gpus.contains(&g)
                {
                    out.push(Claim::Gpu(g));
                }
            }
        }
        let rest = GPUS.replace_all(&cleaned, " ");
        for m in NUMBER.find_iter(&rest) {
            if !self.has_number(m.as_str()) {
                out.push(Claim::Number(m.as_str().to_string()));
            }
        }
        out
    }

    /// `answer` without the sentences that state an ungrounded claim, and
    /// the claims removed.
    pub fn ground(&self, answer: &str) -> (String, Vec<Claim>) {
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for sentence in sentences(answer) {
            let bad = self.ungrounded(sentence);
            if bad.is_empty() {
                kept.push(sentence.trim());
            } else {
                removed.extend(bad);
            }
        }
        (kept.join(" "), removed)
    }
}

/// The numbers `text` states as values (identifiers, commands and GPU
/// indexes left out).
pub fn numbers_in(text: &str) -> Vec<f64> {
    let cleaned = NOT_VALUES.replace_all(text, " ");
    let rest = GPUS.replace_all(&cleaned, " ");
    NUMBER
        .find_iter(&rest)
        .filter_map(|m| m.as_str().parse().ok())
        .collect()
}

/// An answer checked sentence by sentence as it streams: each sentence is
/// shown once it is complete and grounded, dropped otherwise.
pub struct GroundedStream<'e> {
    evidence: &'e Evidence,
    /// Text of the sentence being written.
    pending: String,
    /// The sentences shown.
    kept: String,
    /// What the dropped sentences claimed.
    removed: Vec<Claim>,
}

impl<'e> GroundedStream<'e> {
    /// A stream checked against `evidence`.
    pub fn new(evidence: &'e Evidence) -> GroundedStream<'e> {
        GroundedStream {
            evidence,
            pending: String::new(),
            kept: String::new(),
            removed: Vec::new(),
        }
    }

    /// Takes more answer text; `emit` gets each sentence it completes that
    /// states only grounded values.
    pub fn push(&mut self, text: &str, emit: &mut dyn FnMut(&str)) {
        self.pending.push_str(text);
        while let Some(end) = sentence_end(&self.pending) {
            let sentence: String = self.pending.drain(..=end).collect();
            self.check(&sentence, emit);
        }
    }

    /// Ends the answer: the rest is checked as one sentence. Returns what
    /// was shown and what was dropped.
    pub fn finish(mut self, emit: &mut dyn FnMut(&str)) -> (String, Vec<Claim>) {
        let rest = std::mem::take(&mut self.pending);
        if !rest.trim().is_empty() {
            self.check(&rest, emit);
        }
        (self.kept.trim().to_string(), self.removed)
    }

    fn check(&mut self, sentence: &str, emit: &mut dyn FnMut(&str)) {
        let bad = self.evidence.ungrounded(sentence);
        if bad.is_empty() {
            let shown = if self.kept.is_empty() {
                sentence.trim_start().to_string()
            } else {
                sentence.to_string()
            };
            emit(&shown);
            self.kept.push_str(&shown);
        } else {
            self.removed.extend(bad);
        }
    }
}

/// The byte index of the first sentence end in `text` (`.`, `!` or `?`
/// before whitespace), when there is one.
fn sentence_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (0..bytes.len()).find(|&i| {
        matches!(bytes[i], b'.' | b'!' | b'?')
            && bytes.get(i + 1).is_some_and(|b| b.is_ascii_whitespace())
    })
}

/// The GPU indexes `text` names (`GPU 2`, `GPUs 4-7`).
pub fn gpus_in(text: &str) -> Vec<u32> {
    let cleaned = NOT_VALUES.replace_all(text, " ");
    let mut out = Vec::new();
    for c in GPUS.captures_iter(&cleaned) {
        let list = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
        let numbers: Vec<u32> = NUMBER
            .find_iter(list)
            .filter_map(|n| n.as_str().parse().ok())
            .collect();
        // `GPUs 0-7` names the range.
        match (numbers.as_slice(), list.contains('-') || list.contains('–')) {
            ([a, b], true) if b >= a && b - a < 64 => out.extend(*a..=*b),
            _ => out.extend(numbers),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `text` split after each `. `, `! ` or `? ` (a decimal point is not an end).
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        let end = matches!(bytes[i], b'.' | b'!' | b'?')
            && bytes.get(i + 1).is_none_or(|b| b.is_ascii_whitespace());
        if end {
            out.push(&text[start..=i]);
            start = i + 1;
        }
    }
    if start < text.len() && !text[start..].trim().is_empty() {
        out.push(&text[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copilot::sim_node as node;

    fn evidence(sim: &str, question: &str) -> Evidence {
        let (s, f) = node(sim);
        Evidence::new(
            question,
            NodeContext {
                snapshot: &s,
                findings: &f,
            },
            &[],
            &[],
        )
    }

    #[test]
    fn values_from_the_node_are_grounded_and_invented_ones_are_not() {
        let e = evidence("h100x8-thermal-throttle", "why is GPU 2 slow?");
        let good = "GPU 2 is at 86 °C against its 87 °C slowdown temperature, 463 of 700 W; \
                    run `nvidia-smi -i 2 -q -d TEMPERATURE` (bus 00000000:3A:00.0, driver 550.54.15).";
        assert_eq!(e.ungrounded(good), Vec::new());
        let bad = "GPU 9 is at 97 °C and draws 812 W.";
        assert_eq!(
            e.ungrounded(bad),
            [
                Claim::Gpu(9),
                Claim::Number("97".into()),
                Claim::Number("812".into())
            ]
        );
    }

    #[test]
    fn grounding_removes_only_the_sentences_with_invented_values() {
        let e = evidence("h100x8-thermal-throttle", "why is GPU 2 slow?");
        let (kept, removed) = e.ground(
            "GPU 2 is thermally throttled at 86 °C. Its fan is at 41.75%. Check the airflow.",
        );
        assert_eq!(
            kept,
            "GPU 2 is thermally throttled at 86 °C. Check the airflow."
        );
        assert_eq!(removed, [Claim::Number("41.75".into())]);
    }

    #[test]
    fn sentences_end_at_stops_not_at_decimal_points() {
        assert_eq!(
            sentences("At 2.5 GT/s. Next: go"),
            ["At 2.5 GT/s.", " Next: go"]
        );
    }
}
