//! An assistant without a language model: it proposes the references
//! ranked best for the question, fitted to the GPUs and processes it names.
//!
//! It answers instantly on any machine, and it is the baseline that shows
//! what the model adds: `sigma eval --model none`.

use super::rank;
use super::{Assistant, Event, NodeContext, Proposal, Reply, Timings, Turn};

/// Commands proposed per question.
const N_PROPOSALS: usize = 3;

/// The model-free assistant.
#[derive(Debug, Default)]
pub struct RetrievalAssistant;

impl Assistant for RetrievalAssistant {
    fn ask(
        &mut self,
        node: NodeContext<'_>,
        _history: &[Turn],
        question: &str,
        _on_event: &mut dyn FnMut(Event<'_>),
    ) -> anyhow::Result<Reply> {
        let start = std::time::Instant::now();
        let proposals: Vec<Proposal> =
            rank::rank(question, node.snapshot, node.findings, N_PROPOSALS)
                .into_iter()
                .map(|r| Proposal::new(r.command, r.purpose))
                .collect();
        let answer = if proposals.is_empty() {
            "No catalogued command matches the question.".to_string()
        } else {
            "Catalogued commands ranked most relevant to the question (no language model)."
                .to_string()
        };
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
