//! The diagnosis track (`sigma eval --track diagnose`): does the final
//! answer say what is wrong, with the values that show it, and nothing
//! false?
//!
//! Each scenario (`assets/eval-diagnose`, format in its README) is asked as
//! `sigma ask --run safe --rounds 2` asks it, through the same
//! [`Session`]: the assistant answers and proposes, the read-only proposals
//! run on the simulated node, what they showed goes back, and the final
//! answer is scored against the scenario's facts and forbidden claims, and
//! by the grounding check ([`crate::copilot::grounding`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use include_dir::{Dir, include_dir};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::scenario::{self, File, ScenarioError, check_head, parse_toml};
use crate::audit::AuditLog;
use crate::copilot::approval::{Answer, ConfirmKind, Prompter, RunMode};
use crate::copilot::grounding::{self, Evidence};
use crate::copilot::{Assistant, NodeContext};
use crate::guard::{Limits, Verdict};
use crate::session::{Cancel, Node, Options, Session};
use crate::sim::SimNode;

/// The shipped diagnosis scenarios.
static SCENARIOS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets/eval-diagnose");

/// Answers per question: the first, then the one after the runs.
const ROUNDS: usize = 2;

/// A fact as a scenario file writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FactFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    any: Vec<String>,
    #[serde(default)]
    number: Option<f64>,
    #[serde(default)]
    tolerance: Option<f64>,
}

/// A scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    id: String,
    sim: String,
    question: String,
    category: String,
    #[serde(default)]
    fact: Vec<FactFile>,
    #[serde(default)]
    must_not: Vec<String>,
}

/// A fact the answer must state.
#[derive(Debug, Clone)]
pub enum Expected {
    /// One of these words or phrases (case-insensitive, whole words).
    Any {
        /// How reports name it.
        name: String,
        /// The alternatives, compiled.
        patterns: Vec<Regex>,
    },
    /// A number within a tolerance.
    Number {
        /// How reports name it.
        name: String,
        /// The value.
        value: f64,
        /// How far off it may be.
        tolerance: f64,
    },
}

impl Expected {
    /// How reports name it.
    pub fn name(&self) -> &str {
        match self {
            Expected::Any { name, .. } | Expected::Number { name, .. } => name,
        }
    }

    /// Whether `answer` states it.
    pub fn stated_in(&self, answer: &str) -> bool {
        match self {
            Expected::Any { patterns, .. } => patterns.iter().any(|p| p.is_match(answer)),
            Expected::Number {
                value, tolerance, ..
            } => grounding::numbers_in(answer)
                .iter()
                .any(|n| (n - value).abs() <= *tolerance + 1e-9),
        }
    }
}

/// One loaded, checked diagnosis scenario.
#[derive(Debug, Clone)]
pub struct DiagnoseScenario {
    /// The file stem.
    pub id: String,
    /// The simulated node's name.
    pub sim: String,
    /// The node.
    pub node: Arc<SimNode>,
    /// The operator's question.
    pub question: String,
    /// What it is about (free text; the report's rows).
    pub category: String,
    /// The facts the answer must state.
    pub facts: Vec<Expected>,
    /// Claims it must not make.
    pub must_not: Vec<Regex>,
}

/// Diagnosis scenarios and the files that could not be used.
#[derive(Debug, Default)]
pub struct LoadedDiagnose {
    /// Usable scenarios, sorted by id.
    pub scenarios: Vec<DiagnoseScenario>,
    /// Files that could not be used.
    pub errors: Vec<ScenarioError>,
}

/// Loads the scenarios shipped in `assets/eval-diagnose`.
pub fn builtin() -> LoadedDiagnose {
    from_files(scenario::embedded(&SCENARIOS, "assets/eval-diagnose"))
}

/// Loads every `*.toml` file in `dir`.
pub fn load_dir(dir: &Path) -> LoadedDiagnose {
    match scenario::on_disk(dir) {
        Ok(files) => from_files(files),
        Err(e) => LoadedDiagnose {
            scenarios: Vec::new(),
            errors: vec![e],
        },
    }
}

fn from_files(files: Vec<File>) -> LoadedDiagnose {
    let (mut scenarios, errors) = scenario::parse_files(files, |file, text, nodes| {
        let raw: ScenarioFile = parse_toml(text)?;
        check_head(file, &raw.id, &raw.question)?;
        if raw.fact.is_empty() {
            return Err("no [[fact]]: list what a good answer states".into());
        }
        let facts = raw
            .fact
            .iter()
            .enumerate()
            .map(|(i, f)| expected(i, f))
            .collect::<Result<Vec<_>, _>>()?;
        let must_not = raw
            .must_not
            .iter()
            .map(|p| {
                RegexBuilder::new(p)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| format!("must_not pattern '{p}' is not a valid regex: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DiagnoseScenario {
            id: raw.id,
            node: nodes.get(&raw.sim)?,
            sim: raw.sim,
            question: raw.question,
            category: raw.category,
            facts,
            must_not,
        })
    });
    scenarios.sort_by(|a, b| a.id.cmp(&b.id));
    LoadedDiagnose { scenarios, errors }
}

/// Checks one `[[fact]]`: words, or a number, not both, not neither.
fn expected(i: usize, f: &FactFile) -> Result<Expected, String> {
    let name = f.name.clone().unwrap_or_else(|| {
        f.number
            .map_or_else(|| f.any.join(" | "), |n| format!("{n}"))
    });
    match (f.any.is_empty(), f.number) {
        (false, None) => {
            let patterns = f
                .any
                .iter()
                .map(|alt| {
                    let t = alt.trim();
                    let edge = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
                    let start = if edge(t.chars().next()) { r"\b" } else { "" };
                    let end = if edge(t.chars().last()) { r"\b" } else { "" };
                    RegexBuilder::new(&format!("{start}{}{end}", regex::escape(t)))
                        .case_insensitive(true)
                        .build()
                        .map_err(|e| format!("fact {}: '{alt}': {e}", i + 1))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Expected::Any { name, patterns })
        }
        (true, Some(value)) => Ok(Expected::Number {
            name,
            value,
            tolerance: f.tolerance.unwrap_or(0.0).abs(),
        }),
        (true, None) => Err(format!("fact {} has neither `any` nor `number`", i + 1)),
        (false, Some(_)) => Err(format!(
            "fact {} has both `any` and `number`; split it in two facts",
            i + 1
        )),
    }
}

/// Says no to every confirmation: the evaluation runs read-only commands
/// only (`--run safe`), as an unattended `sigma ask` would.
struct Declines;

impl Prompter for Declines {
    fn confirm(&mut self, _verdict: &Verdict, _kind: &ConfirmKind) -> Answer {
        Answer::Unavailable("the evaluation runs read-only commands only".into())
    }
}

/// How one scenario went.
#[derive(Debug, Clone, Serialize)]
pub struct DiagnoseCase {
    /// Scenario id.
    pub id: String,
    /// Simulated node.
    pub sim: String,
    /// Category.
    pub category: String,
    /// The question.
    pub question: String,
    /// The final answer.
    pub answer: String,
    /// The facts, each with whether the answer states it.
    pub facts: Vec<(String, bool)>,
    /// The share of the facts stated.
    pub recall: f64,
    /// Every fact stated.
    pub all_facts: bool,
    /// Forbidden claims made and ungrounded values stated.
    pub false_claims: Vec<String>,
    /// Commands that ran between the answers.
    pub ran: Vec<String>,
    /// Seconds from the question to the final answer.
    pub seconds: f64,
    /// Milliseconds from the final round's start to its first token.
    pub final_first_token_ms: f64,
    /// Why there is no answer, when there is none.
    pub error: Option<String>,
}

/// Asks `assistant` every scenario, as `sigma ask --run safe --rounds 2`
/// would; `on_case` sees each result as soon as it is scored.
pub fn evaluate(
    scenarios: &[DiagnoseScenario],
    assistant: &mut dyn Assistant,
    on_case: &mut dyn FnMut(&DiagnoseCase),
) -> Vec<DiagnoseCase> {
    scenarios
        .iter()
        .map(|s| {
            let case = run_one(s, assistant);
            on_case(&case);
            case
        })
        .collect()
}

fn run_one(s: &DiagnoseScenario, assistant: &mut dyn Assistant) -> DiagnoseCase {
    let node = Node::Simulated(Box::new((*s.node).clone()));
    let mut audit = AuditLog::at(None).warn_to(std::io::sink());
    let mut prompter = Declines;
    let options = Options {
        run_mode: RunMode::Safe,
        rounds: ROUNDS,
        limits: Limits::default(),
        no_model: String::new(),
        cancel: Cancel::new(),
    };
    let mut session = Session::new(
        &node,
        Some(&mut *assistant),
        &mut prompter,
        &mut audit,
        options,
    );
    let start = Instant::now();
    let asked = session.ask(&s.question, &mut std::io::sink());
    let seconds = start.elapsed().as_secs_f64();
    let (reply, runs) = session.outcome();
    let ran: Vec<String> = runs.iter().map(|r| r.command.clone()).collect();
    let mut case = DiagnoseCase {
        id: s.id.clone(),
        sim: s.sim.clone(),
        category: s.category.clone(),
        question: s.question.clone(),
        answer: String::new(),
        facts: s
            .facts
            .iter()
            .map(|f| (f.name().to_string(), false))
            .collect(),
        recall: 0.0,
        all_facts: false,
        false_claims: Vec::new(),
        ran,
        seconds,
        final_first_token_ms: 0.0,
        error: None,
    };
    let reply = match (asked, reply) {
        (Ok(()), Some(reply)) => reply,
        (Err(e), _) => {
            case.error = Some(e.to_string());
            return case;
        }
        (Ok(()), None) => {
            case.error = Some("no answer".into());
            return case;
        }
    };
    case.answer = reply.answer.clone();
    case.final_first_token_ms = reply.timings.first_token_ms;
    for (fact, (_, stated)) in s.facts.iter().zip(&mut case.facts) {
        *stated = fact.stated_in(&reply.answer);
    }
    let stated = case.facts.iter().filter(|(_, s)| *s).count();
    case.recall = stated as f64 / case.facts.len().max(1) as f64;
    case.all_facts = stated == case.facts.len();
    for p in &s.must_not {
        if let Some(m) = p.find(&reply.answer) {
            case.false_claims.push(format!("says '{}'", m.as_str()));
        }
    }
    let context = NodeContext {
        snapshot: session.snapshot(),
        findings: session.findings(),
    };
    // How the commands ended is evidence too ("it failed (exit code 15)").
    let exits: Vec<String> = runs
        .iter()
        .filter_map(|r| r.exit_code)
        .map(|c| c.to_string())
        .collect();
    let exits: Vec<&str> = exits.iter().map(String::as_str).collect();
    let evidence = Evidence::new(&s.question, context, session.facts(), &exits);
    for claim in evidence.ungrounded(&reply.answer) {
        case.false_claims.push(format!("ungrounded {claim}"));
    }
    case
}

/// Scores over a set of cases.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiagnoseScores {
    /// Scenarios.
    pub n: usize,
    /// Facts stated over all facts asked (micro average).
    pub fact_recall: f64,
    /// Share of answers with at least one false claim.
    pub false_claim_rate: f64,
    /// Share of answers that state every fact.
    pub all_facts_rate: f64,
    /// Median seconds to the final answer.
    pub median_s: f64,
    /// 90th percentile seconds to the final answer.
    pub p90_s: f64,
    /// Median milliseconds to the final round's first token.
    pub final_first_token_median_ms: f64,
}

impl DiagnoseScores {
    /// The scores of `cases`.
    pub fn over<'a>(cases: impl IntoIterator<Item = &'a DiagnoseCase>) -> DiagnoseScores {
        let cases: Vec<&DiagnoseCase> = cases.into_iter().collect();
        let n = cases.len();
        if n == 0 {
            return DiagnoseScores::default();
        }
        let facts: usize = cases.iter().map(|c| c.facts.len()).sum();
        let stated: usize = cases
            .iter()
            .map(|c| c.facts.iter().filter(|(_, s)| *s).count())
            .sum();
        let share = |pred: &dyn Fn(&DiagnoseCase) -> bool| {
            cases.iter().filter(|c| pred(c)).count() as f64 / n as f64
        };
        let mut seconds: Vec<f64> = cases.iter().map(|c| c.seconds).collect();
        seconds.sort_by(f64::total_cmp);
        let mut first: Vec<f64> = cases.iter().map(|c| c.final_first_token_ms).collect();
        first.sort_by(f64::total_cmp);
        DiagnoseScores {
            n,
            fact_recall: stated as f64 / facts.max(1) as f64,
            false_claim_rate: share(&|c| !c.false_claims.is_empty()),
            all_facts_rate: share(&|c| c.all_facts),
            median_s: percentile(&seconds, 0.5),
            p90_s: percentile(&seconds, 0.9),
            final_first_token_median_ms: percentile(&first, 0.5),
        }
    }
}

/// The `q` quantile of sorted `values` (nearest rank).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The diagnosis track's report.
#[derive(Debug, Clone, Serialize)]
pub struct DiagnoseReport {
    /// The assistant's model.
    pub model: String,
    /// Scores over every scenario.
    pub overall: DiagnoseScores,
    /// Scores per category.
    pub by_category: Vec<(String, DiagnoseScores)>,
    /// Every case.
    pub cases: Vec<DiagnoseCase>,
    /// Scenario files that could not be used.
    pub errors: Vec<ScenarioError>,
}

impl DiagnoseReport {
    /// The report over `cases`.
    pub fn new(
        model: &str,
        cases: Vec<DiagnoseCase>,
        errors: Vec<ScenarioError>,
    ) -> DiagnoseReport {
        let mut categories: Vec<String> = cases.iter().map(|c| c.category.clone()).collect();
        categories.sort();
        categories.dedup();
        let by_category = categories
            .into_iter()
            .map(|cat| {
                let scores = DiagnoseScores::over(cases.iter().filter(|c| c.category == cat));
                (cat, scores)
            })
            .collect();
        DiagnoseReport {
            model: model.to_string(),
            overall: DiagnoseScores::over(&cases),
            by_category,
            cases,
            errors,
        }
    }

    /// The report as text: scores, categories, then each answer that missed
    /// a fact or made a false claim.
    pub fn write_text(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let o = &self.overall;
        writeln!(out, "model: {}", self.model)?;
        writeln!(
            out,
            "{} scenarios · fact recall {:.1}% · all facts {:.1}% · false claims {:.1}% · \
             median {:.2} s · p90 {:.2} s · final first token {:.0} ms",
            o.n,
            o.fact_recall * 100.0,
            o.all_facts_rate * 100.0,
            o.false_claim_rate * 100.0,
            o.median_s,
            o.p90_s,
            o.final_first_token_median_ms
        )?;
        writeln!(
            out,
            "\n{:<16} {:>3} {:>7} {:>7} {:>7}",
            "category", "n", "recall", "all", "false"
        )?;
        for (cat, s) in &self.by_category {
            writeln!(
                out,
                "{cat:<16} {:>3} {:>6.1}% {:>6.1}% {:>6.1}%",
                s.n,
                s.fact_recall * 100.0,
                s.all_facts_rate * 100.0,
                s.false_claim_rate * 100.0
            )?;
        }
        for c in self
            .cases
            .iter()
            .filter(|c| !c.all_facts || !c.false_claims.is_empty())
        {
            writeln!(
                out,
                "\n{} ({}): {}",
                c.id,
                c.sim,
                crate::checks::printable(&c.question)
            )?;
            let missed: Vec<&str> = c
                .facts
                .iter()
                .filter(|(_, s)| !*s)
                .map(|(n, _)| n.as_str())
                .collect();
            if !missed.is_empty() {
                writeln!(out, "  missed: {}", missed.join("; "))?;
            }
            if !c.false_claims.is_empty() {
                writeln!(out, "  false: {}", c.false_claims.join("; "))?;
            }
            if let Some(e) = &c.error {
                writeln!(out, "  error: {e}")?;
            }
            writeln!(out, "  answer: {}", crate::checks::printable(&c.answer))?;
        }
        for e in &self.errors {
            writeln!(out, "error: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_match_whole_words_and_numbers_within_tolerance() {
        let word = expected(
            0,
            &FactFile {
                name: None,
                any: vec!["GPU 2".into(), "°C".into()],
                number: None,
                tolerance: None,
            },
        )
        .expect("valid");
        assert!(word.stated_in("gpu 2 is hot"));
        assert!(!word.stated_in("GPU 21 is hot"));
        assert!(word.stated_in("it is 86°C"));
        let number = expected(
            1,
            &FactFile {
                name: Some("temp".into()),
                any: vec![],
                number: Some(86.0),
                tolerance: Some(1.0),
            },
        )
        .expect("valid");
        assert!(number.stated_in("at 87 °C"));
        assert!(!number.stated_in("at 88 °C on bus 00000000:86:00.0"));
        let neither = FactFile {
            name: None,
            any: vec![],
            number: None,
            tolerance: None,
        };
        assert!(expected(2, &neither).is_err());
    }

    #[test]
    fn the_shipped_scenarios_load() {
        let loaded = builtin();
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert!(!loaded.scenarios.is_empty());
    }
}
