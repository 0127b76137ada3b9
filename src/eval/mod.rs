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
//! - [`diagnose`]: the diagnosis track: the final answer after one round of
//!   read-only runs, scored on the facts it states and the claims it must
//!   not make.

pub mod diagnose;
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
    let scenarios = retain(scenarios, &mut errors, |s| {
        wanted(
            sim,
            filter,
            [&s.sim, &s.id, &s.category.to_string(), &s.question],
        )
    });
    Loaded { scenarios, errors }
}

/// [`select`] for the diagnosis track.
pub fn select_diagnose(
    loaded: diagnose::LoadedDiagnose,
    sim: Option<&str>,
    filter: Option<&str>,
) -> diagnose::LoadedDiagnose {
    let diagnose::LoadedDiagnose {
        scenarios,
        mut errors,
    } = loaded;
    let scenarios = retain(scenarios, &mut errors, |s| {
        wanted(sim, filter, [&s.sim, &s.id, &s.category, &s.question])
    });
    diagnose::LoadedDiagnose { scenarios, errors }
}

/// Whether a scenario on node `fields[0]` with id, category and question
/// `fields[1..]` is on `sim` and contains `filter`.
fn wanted(sim: Option<&str>, filter: Option<&str>, fields: [&str; 4]) -> bool {
    sim.is_none_or(|n| fields[0] == n)
        && filter.is_none_or(|f| fields[1..].iter().any(|x| x.contains(f)))
}

/// `items` that `keep` accepts; keeping none of a non-empty set is an error.
fn retain<T>(items: Vec<T>, errors: &mut Vec<ScenarioError>, keep: impl Fn(&T) -> bool) -> Vec<T> {
    let before = items.len();
    let kept: Vec<T> = items.into_iter().filter(|i| keep(i)).collect();
    if before > 0 && kept.is_empty() {
        errors.push(ScenarioError {
            file: "(selection)".into(),
            reason: "no scenario is left after --simulate and --filter; \
                     see the ids in the scenario directory"
                .into(),
        });
    }
    kept
}
