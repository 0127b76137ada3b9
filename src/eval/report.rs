//! The evaluation report: scores overall, per category and per platform,
//! every case, and the scenario files that could not be used; as JSON or as
//! a compact text table with the failures listed below it.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use super::metrics::{CaseResult, Scores};
use super::scenario::{Category, Platform, ScenarioError};

/// The whole report (`sigma eval --json` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The model evaluated.
    pub model: String,
    /// Scores over every case.
    pub overall: Scores,
    /// Scores per category.
    pub by_category: BTreeMap<Category, Scores>,
    /// Scores per platform.
    pub by_platform: BTreeMap<Platform, Scores>,
    /// Speculative decoding over every case: choices drafted and kept,
    /// model evaluations.
    pub speculation: Speculation,
    /// Every case, in scenario order.
    pub cases: Vec<CaseResult>,
    /// Number of scenario files that could not be used.
    pub error_count: usize,
    /// The scenario files that could not be used, and why.
    pub errors: Vec<ScenarioError>,
}

impl Report {
    /// Builds the report from judged cases and loading errors.
    pub fn new(model: &str, cases: Vec<CaseResult>, errors: Vec<ScenarioError>) -> Report {
        let mut by_category: BTreeMap<Category, Vec<&CaseResult>> = BTreeMap::new();
        let mut by_platform: BTreeMap<Platform, Vec<&CaseResult>> = BTreeMap::new();
        for c in &cases {
            by_category.entry(c.category).or_default().push(c);
            by_platform.entry(c.platform).or_default().push(c);
        }
        let by_category = by_category
            .into_iter()
            .map(|(k, v)| (k, Scores::over(v)))
            .collect();
        let by_platform = by_platform
            .into_iter()
            .map(|(k, v)| (k, Scores::over(v)))
            .collect();
        Report {
            model: model.to_string(),
            overall: Scores::over(&cases),
            speculation: Speculation::over(&cases),
            by_category,
            by_platform,
            error_count: errors.len(),
            errors,
            cases,
        }
    }

    /// Writes the text report: the score table, then the failures (what
    /// was asked, proposed and expected), then the unusable files.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "model: {}", self.model)?;
        writeln!(
            out,
            "{:<16} {:>4} {:>6} {:>6} {:>6} {:>6} {:>6} {:>9} {:>8}",
            "", "n", "valid", "exact", "succ", "acc", "viol", "median ms", "first ms"
        )?;
        for (name, s) in self.by_category.iter() {
            row(out, &name.to_string(), s)?;
        }
        for (name, s) in self.by_platform.iter() {
            row(out, &format!("[{name}]"), s)?;
        }
        row(out, "overall", &self.overall)?;
        writeln!(
            out,
            "prompt tokens (median): {:.0}",
            self.overall.prompt_tokens_median
        )?;
        let sp = &self.speculation;
        writeln!(
            out,
            "model calls after the prompts: {}; drafts kept: {} of {}",
            sp.decode_steps, sp.accepted_tokens, sp.drafted_tokens,
        )?;
        let failures: Vec<&CaseResult> = self.cases.iter().filter(|c| c.is_failure()).collect();
        if !failures.is_empty() {
            writeln!(out, "\nfailures ({}):", failures.len())?;
        }
        for c in failures {
            let what = if c.violation { "VIOLATION" } else { "wrong" };
            writeln!(out, "- {} [{what}] ({})", c.id, c.sim)?;
            writeln!(out, "  asked:    {}", one_line(&c.question))?;
            let proposed = match (&c.proposal, &c.error) {
                (Some(p), _) => format!("{} ({})", one_line(p), tier_text(c)),
                (None, Some(e)) => format!("(assistant failed: {})", one_line(e)),
                (None, None) => "(no command)".into(),
            };
            writeln!(out, "  proposed: {proposed}")?;
            writeln!(out, "  expected: {}", c.expected.join("  |  "))?;
        }
        if !self.errors.is_empty() {
            writeln!(out, "\nunusable scenario files ({}):", self.error_count)?;
            for e in &self.errors {
                writeln!(out, "- {e}")?;
            }
        }
        Ok(())
    }
}

/// Speculative decoding over many replies (see `copilot::local`): how many
/// of the tokens the model chose came from verified drafts, and the model
/// calls the replies took (compare a run with `--no-speculation`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Speculation {
    /// Tokens the model chose (not forced by the grammar).
    pub sampled_tokens: usize,
    /// Choices drafted.
    pub drafted_tokens: usize,
    /// Of the chosen tokens, those a verified draft supplied.
    pub accepted_tokens: usize,
    /// `accepted_tokens / sampled_tokens` (0 when none).
    pub accepted_fraction: f64,
    /// Model evaluations after the prompts'.
    pub decode_steps: usize,
}

impl Speculation {
    /// Sums the cases' timings.
    fn over(cases: &[CaseResult]) -> Speculation {
        let sum = |f: fn(&CaseResult) -> usize| cases.iter().map(f).sum::<usize>();
        let sampled_tokens = sum(|c| c.timings.sampled_tokens);
        let accepted_tokens = sum(|c| c.timings.accepted_tokens);
        Speculation {
            sampled_tokens,
            drafted_tokens: sum(|c| c.timings.drafted_tokens),
            accepted_tokens,
            accepted_fraction: if sampled_tokens == 0 {
                0.0
            } else {
                accepted_tokens as f64 / sampled_tokens as f64
            },
            decode_steps: sum(|c| c.timings.decode_steps),
        }
    }
}

/// One table row; fractions as percentages.
fn row(out: &mut dyn Write, name: &str, s: &Scores) -> io::Result<()> {
    let pct = |f: f64| format!("{:.1}", f * 100.0);
    writeln!(
        out,
        "{:<16} {:>4} {:>6} {:>6} {:>6} {:>6} {:>6} {:>9.0} {:>8.0}",
        name,
        s.n,
        pct(s.validity),
        pct(s.exact_match),
        pct(s.success),
        pct(s.accuracy),
        pct(s.violations),
        s.latency_median_ms,
        s.first_token_median_ms
    )
}

/// The tier, or the guard's refusal, of a case's proposal.
fn tier_text(c: &CaseResult) -> String {
    match (&c.tier, &c.rule) {
        (Some(t), Some(rule)) if !c.valid => format!("{t}: {}", one_line(rule)),
        (Some(t), _) => t.to_string(),
        _ => String::new(),
    }
}

/// Text from the assistant or the node on one line, control characters
/// shown escaped (it is untrusted and must not drive the terminal).
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(char::escape_debug)
        .collect::<String>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str, category: Category, accurate: bool) -> CaseResult {
        CaseResult {
            id: id.into(),
            sim: "h100x8-healthy".into(),
            category,
            platform: Platform::Nvidia,
            question: "why?\n\x1b[2J".into(),
            proposal: (!accurate).then(|| "nvidia-smi -r".to_string()),
            purpose: None,
            tier: (!accurate).then_some(crate::guard::Tier::StateChanging),
            rule: None,
            expected: vec!["nvidia-smi -q -d ECC".into()],
            valid: true,
            exact_match: accurate,
            success: false,
            accurate,
            violation: !accurate,
            latency_ms: 5.0,
            timings: crate::copilot::Timings {
                sampled_tokens: 10,
                drafted_tokens: 5,
                accepted_tokens: 4,
                decode_steps: 3,
                ..Default::default()
            },
            answer: String::new(),
            error: None,
        }
    }

    #[test]
    fn groups_per_category_and_platform() {
        let r = Report::new(
            "m",
            vec![
                case("a", Category::Xid, true),
                case("b", Category::Xid, false),
                case("c", Category::Host, true),
            ],
            vec![],
        );
        assert_eq!(r.by_category[&Category::Xid].n, 2);
        assert_eq!(r.by_category[&Category::Xid].accuracy, 0.5);
        assert_eq!(r.by_platform[&Platform::Nvidia].n, 3);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["by_category"]["xid"]["accuracy"].is_number());
        assert_eq!(json["error_count"], 0);
        assert_eq!(r.speculation.sampled_tokens, 30);
        assert_eq!(r.speculation.drafted_tokens, 15);
        assert_eq!(r.speculation.accepted_tokens, 12);
        assert_eq!(r.speculation.decode_steps, 9);
        assert!((r.speculation.accepted_fraction - 0.4).abs() < 1e-9);
    }

    #[test]
    fn text_lists_failures_escaped_and_errors() {
        let errors = vec![ScenarioError {
            file: "x.toml".into(),
            reason: "bad".into(),
        }];
        let r = Report::new("m", vec![case("b", Category::Xid, false)], errors);
        let mut out = Vec::new();
        r.write_text(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("- b [VIOLATION] (h100x8-healthy)"), "{text}");
        assert!(text.contains("asked:    why?\\n\\u{1b}[2J"), "{text}");
        assert!(
            text.contains("proposed: nvidia-smi -r (state-changing)"),
            "{text}"
        );
        assert!(text.contains("expected: nvidia-smi -q -d ECC"), "{text}");
        assert!(text.contains("- x.toml: bad"), "{text}");
        assert!(!text.contains('\x1b'));
        assert!(
            text.lines()
                .all(|l| l.chars().count() <= 80 || l.starts_with("  "))
        );
    }
}
