//! An assistant without a language model: it answers with the diagnosis
//! ([`super::diagnose`]) and proposes the references ranked best for the
//! question, fitted to the GPUs and processes it names.
//!
//! It answers instantly on any machine, it is what Sigma says when no model
//! can be loaded, and it is the baseline that shows what the model adds:
//! `sigma eval --model none`.

use super::context;
use super::diagnose::{self, observations};
use super::rank;
use super::{Assistant, Event, NodeContext, Proposal, Reply, Timings, Turn};

/// Commands proposed per question.
const N_PROPOSALS: usize = 3;

/// Longest purpose shown with a proposal, in characters.
const PURPOSE_CHARS: usize = 70;

/// The model-free assistant.
#[derive(Debug, Default)]
pub struct RetrievalAssistant;

impl Assistant for RetrievalAssistant {
    fn ask(
        &mut self,
        node: NodeContext<'_>,
        history: &[Turn],
        question: &str,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> anyhow::Result<Reply> {
        let start = std::time::Instant::now();
        let seen = observations(history);
        let ranked = rank::rank(question, node.snapshot, node.findings, N_PROPOSALS);
        let mut diagnosis = diagnose::diagnose(question, node, &seen);
        diagnosis.held_back = rank::held_back(question, node.snapshot, &ranked);
        let proposals: Vec<Proposal> = ranked
            .into_iter()
            .filter(|r| !seen.iter().any(|o| o.command == r.command))
            .map(|r| Proposal::new(r.command, context::short_purpose(&r.purpose, PURPOSE_CHARS)))
            .collect();
        let mut proposals = proposals;
        diagnosis.add_checks(&mut proposals, &seen);
        let answer = diagnosis.text();
        on_event(Event::AnswerText(&answer));
        let total_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(Reply {
            answer,
            proposals,
            model: self.model_name().to_string(),
            timings: Timings {
                first_token_ms: total_ms,
                total_ms,
                ..Timings::default()
            },
        })
    }

    fn model_name(&self) -> &str {
        "none (retrieval only)"
    }
}
