//! The grounding check: every number and GPU index an answer states must
//! come from the node: its snapshot, the checks' findings, the facts read
//! from the commands that ran, the question itself, or the diagnosis built
//! from them.
//!
//! A small model writes fluent numbers it never saw, so answers are the
//! diagnosis's words and the model writes only commands and, for a command
//! it adds, a purpose: that purpose is shown only when it passes this check.
//! The diagnosis evaluation counts every ungrounded claim in a final answer
//! as a false claim.
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
}
