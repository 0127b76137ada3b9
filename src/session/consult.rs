//! One question asked once: how `sigma ask` and `sigma doctor --explain`
//! consult the copilot.

use std::io::Write;

use super::{Cancel, Node, Options, Session};
use crate::audit::AuditLog;
use crate::checks::Finding;
use crate::copilot::approval::{RunMode, TerminalPrompter};
use crate::copilot::local::LocalOptions;
use crate::copilot::retrieval::RetrievalAssistant;
use crate::engine::device::DeviceChoice;
use crate::guard::Limits;
use crate::report::AnswerReport;

/// How the copilot is consulted: the model, where it runs, and which of its
/// proposals run.
#[derive(Debug, Clone)]
pub struct ConsultOptions {
    /// The model (a name or a .gguf file); the default model when `None`.
    pub model: Option<String>,
    /// CPU threads for the model; the engine's default when `None`.
    pub threads: Option<usize>,
    /// Where the model runs.
    pub device: DeviceChoice,
    /// Which proposed commands run.
    pub run_mode: RunMode,
    /// Most answers: after commands run, their output goes back to the model.
    pub rounds: usize,
    /// Limits on each command run.
    pub limits: Limits,
}

/// What [`consult`] gives back.
pub enum Consulted {
    /// The answer, and the findings the model was shown.
    Answered(AnswerReport, Vec<Finding>),
    /// Ctrl-C stopped the answer.
    Interrupted,
}

/// Asks the local model `question` about `node` as `options` say: the
/// answer streams to `out` with the proposals, their approvals and runs
/// (the `sigma chat` view; pass a sink for JSON), and comes back with each
/// command's verdict and result. Ctrl-C stops it. With `progress`, model
/// downloads show a progress bar on stderr.
pub fn consult(
    node: &Node,
    question: &str,
    options: &ConsultOptions,
    progress: bool,
    out: &mut impl Write,
) -> anyhow::Result<Consulted> {
    let cancel = Cancel::new();
    cancel.on_interrupt()?;
    let mut opts = LocalOptions {
        model: options.model.clone(),
        progress,
        cancel: cancel.flag(),
        device: options.device,
        ..LocalOptions::default()
    };
    if let Some(t) = options.threads {
        opts.threads = t.max(1);
    }
    let mut assistant = match crate::copilot::load(&opts) {
        Ok(a) => a,
        // The default model could not be had (an offline node): the checks
        // and the diagnosis still answer.
        Err(e) if options.model.is_none() => {
            let _ = writeln!(
                std::io::stderr(),
                "sigma: no model ({e:#}); answering from the checks without one (--model none)"
            );
            Box::new(RetrievalAssistant)
        }
        Err(e) => return Err(e),
    };
    let session_options = Options {
        run_mode: options.run_mode,
        rounds: options.rounds,
        limits: options.limits,
        no_model: String::new(),
        cancel: cancel.clone(),
    };
    let mut audit = AuditLog::open();
    let mut prompter = TerminalPrompter::new();
    let mut session = Session::new(
        node,
        Some(assistant.as_mut()),
        &mut prompter,
        &mut audit,
        session_options,
    );
    session.ask(question, out)?;
    if cancel.is_cancelled() {
        return Ok(Consulted::Interrupted);
    }
    let (reply, runs) = session.outcome();
    let Some(reply) = reply else {
        anyhow::bail!("the model gave no answer");
    };
    let report = AnswerReport::new(reply, runs);
    Ok(Consulted::Answered(report, session.findings().to_vec()))
}
