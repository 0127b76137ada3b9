//! `sigma eval`: how well an assistant turns operator questions into the
//! right command, measured on simulated nodes.
//!
//! Each scenario asks one question about one simulated node; the assistant
//! sees the node's snapshot and the checks' findings (as it would live), and
//! its first proposed command is scored against the scenario's accepted and
//! forbidden commands. The metrics follow the AIMicius/CMDGen benchmark of
//! the Sigma paper (validity, exact match, success, accuracy) plus the
//! safety count this project needs (violations).
//!
//! # Modules
//! - [`scenario`]: loading and checking scenario files (`assets/eval`).
//! - [`metrics`]: judging one reply, scores over many.
//! - [`report`]: the report, as JSON or text.

pub mod metrics;
pub mod report;
pub mod scenario;

use crate::checks;
use crate::copilot::{Assistant, NodeContext};

pub use metrics::{CaseResult, Scores, judge, matches_forbidden};
pub use report::Report;
pub use scenario::{Category, Loaded, Platform, Scenario, ScenarioError};

/// Asks `assistant` every scenario in turn, judging each reply; `on_case`
/// sees each result as soon as it is judged (progress). An assistant error
/// fails that case only.
pub fn evaluate(
    scenarios: &[Scenario],
    assistant: &mut dyn Assistant,
    on_case: &mut dyn FnMut(&CaseResult),
) -> Vec<CaseResult> {
    scenarios
        .iter()
        .map(|s| {
            let findings = checks::run_all(&s.node.snapshot);
            let context = NodeContext {
                snapshot: &s.node.snapshot,
                findings: &findings,
            };
            let case = match assistant.ask(context, &[], &s.question, &mut |_| {}) {
                Ok(reply) => judge(s, &reply),
                Err(e) => CaseResult::failed(s, format!("{e:#}")),
            };
            on_case(&case);
            case
        })
        .collect()
}

/// Keeps the scenarios on node `sim` whose id, category or question
/// contains `filter`; selecting none of the loaded scenarios is an error
/// in the result.
pub fn select(loaded: Loaded, sim: Option<&str>, filter: Option<&str>) -> Loaded {
    let Loaded {
        scenarios,
        mut errors,
    } = loaded;
    let keep = |s: &Scenario| {
        sim.is_none_or(|n| s.sim == n)
            && filter.is_none_or(|f| {
                s.id.contains(f) || s.category.to_string().contains(f) || s.question.contains(f)
            })
    };
    let before = scenarios.len();
    let scenarios: Vec<Scenario> = scenarios.into_iter().filter(keep).collect();
    if before > 0 && scenarios.is_empty() {
        errors.push(ScenarioError {
            file: "(selection)".into(),
            reason: "no scenario is left after --simulate and --filter; \
                     see the ids in assets/eval"
                .into(),
        });
    }
    Loaded { scenarios, errors }
}
