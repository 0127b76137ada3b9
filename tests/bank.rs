//! The question bank (`assets/bank`): every pair parses, its command is
//! one the guard allows and can put in canonical form, no question is
//! there twice, and a read-only command of a simulated tool answers on at
//! least one simulated node (exit 0), so retrieval never offers a command
//! the bank's writers could not have run.

use std::collections::HashMap;

use sigma::copilot::bank;
use sigma::guard::{self, Limits, Target, Tier, execute};

/// Programs the simulator answers itself (others are canned per node).
const SIMULATED: &[&str] = &["nvidia-smi", "lspci", "dmesg", "journalctl"];

#[test]
fn the_bank_parses_and_is_big_enough() {
    let pairs = bank::load().expect("every bank file parses");
    assert!(pairs.len() >= 2000, "{} pairs", pairs.len());
    assert_eq!(pairs.len(), bank::pairs().len());
}

#[test]
fn every_command_is_allowed_canonical_and_every_question_unique() {
    let mut problems = Vec::new();
    let mut seen: HashMap<String, &str> = HashMap::new();
    for p in bank::pairs() {
        let verdict = guard::check(&p.command);
        if verdict.tier == Tier::Blocked {
            problems.push(format!("{}: blocked: {}", p.command, verdict.rule));
        } else if guard::normalize(&p.command).is_none() {
            problems.push(format!("{}: no canonical form", p.command));
        }
        let key = p.question.trim().to_lowercase();
        if let Some(first) = seen.insert(key, &p.command) {
            problems.push(format!("{:?} twice ({first} / {})", p.question, p.command));
        }
        if p.source.trim().is_empty() {
            problems.push(format!("{:?}: no source", p.question));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn read_only_commands_of_simulated_tools_answer_on_some_node() {
    // A node whose tools hang answers nothing: leave it out.
    let nodes: Vec<_> = sigma::sim::list()
        .into_iter()
        .map(|s| sigma::sim::load(&s.name).expect("simulated node"))
        .filter(|n| n.hung_programs().is_empty())
        .collect();
    let mut failures = Vec::new();
    let mut tried = 0;
    for p in bank::pairs() {
        let verdict = guard::check(&p.command);
        let program = verdict
            .pipeline
            .first()
            .and_then(|s| s.first())
            .cloned()
            .unwrap_or_default();
        if verdict.tier != Tier::ReadOnly || !SIMULATED.contains(&program.as_str()) {
            continue;
        }
        tried += 1;
        let answers = nodes.iter().any(|node| {
            execute(&verdict, Target::Simulated(node), &Limits::default())
                .is_ok_and(|run| run.exit.code() == 0)
        });
        if !answers {
            failures.push(format!("{} ({:?})", p.command, p.question));
        }
    }
    assert!(tried > 1000, "{tried} commands tried");
    assert!(
        failures.is_empty(),
        "{} of {tried} commands answer on no simulated node:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
