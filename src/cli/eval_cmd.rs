//! `sigma eval`: score an assistant on the evaluation scenarios.
//!
//! Exit code 0 when every scenario file could be used, 1 when any could not
//! (the report still prints, with the files and reasons): a broken scenario
//! must never silently shrink the benchmark. Scores do not change the exit
//! code.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use super::{EXIT_FAILURE, print_json};
use crate::copilot::Assistant;
use crate::eval::diagnose::{self, DiagnoseCase, DiagnoseReport};
use crate::eval::{self, CaseResult, Report, scenario};

/// Arguments of `sigma eval`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// Read scenarios from this directory instead of the built-in set
    /// (format: assets/eval/README.md).
    #[arg(long, value_name = "DIR")]
    pub scenarios: Option<PathBuf>,

    /// The model to evaluate (NAME|PATH); `none` scores the model-free
    /// baseline: the best-ranked catalogue commands, fitted to the question.
    #[arg(long, value_name = "M")]
    pub model: Option<String>,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// Only scenarios whose id, category or question contains this text.
    #[arg(long, value_name = "SUBSTR")]
    pub filter: Option<String>,

    /// What is scored: the first proposed command (command, scenarios in
    /// assets/eval), or the final answer after one round of read-only runs
    /// (diagnose, scenarios in assets/eval-diagnose).
    #[arg(long, value_enum, default_value_t = Track::Command)]
    pub track: Track,

    /// Decode speculatively, verifying drafts of the model's choices in one
    /// batch (batch-invariant kernels; `docs/PERFORMANCE.md`), to measure
    /// the model calls and time it saves against the default.
    #[arg(long)]
    pub speculate: bool,
}

/// What `sigma eval` scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Track {
    /// The first command proposed for each question.
    #[default]
    Command,
    /// The diagnosis: the facts the final answer states and its false claims.
    Diagnose,
}

/// Runs `sigma eval`. `sim` (`--simulate`) keeps the scenarios on that node;
/// `make_assistant` builds the assistant for `--model` once the scenarios
/// are loaded.
pub fn run(
    sim: Option<&str>,
    args: &Args,
    make_assistant: impl FnOnce(Option<&str>) -> anyhow::Result<Box<dyn Assistant>>,
) -> anyhow::Result<i32> {
    if args.track == Track::Diagnose {
        return run_diagnose(sim, args, make_assistant);
    }
    let loaded = match &args.scenarios {
        Some(dir) => scenario::load_dir(dir),
        None => scenario::builtin(),
    };
    let loaded = eval::select(loaded, sim, args.filter.as_deref());
    let mut assistant = make_assistant(args.model.as_deref())?;
    let mut progress = Progress::new(args, loaded.scenarios.len());
    let cases = eval::evaluate(
        &loaded.scenarios,
        assistant.as_mut(),
        &mut |c: &CaseResult| {
            progress.case(c.accurate, &c.id);
        },
    );
    progress.clear();
    let report = Report::new(assistant.model_name(), cases, loaded.errors);
    emit(
        args,
        &report,
        |out| report.write_text(out),
        report.errors.is_empty(),
    )
}

/// `sigma eval --track diagnose`.
fn run_diagnose(
    sim: Option<&str>,
    args: &Args,
    make_assistant: impl FnOnce(Option<&str>) -> anyhow::Result<Box<dyn Assistant>>,
) -> anyhow::Result<i32> {
    let loaded = match &args.scenarios {
        Some(dir) => diagnose::load_dir(dir),
        None => diagnose::builtin(),
    };
    let loaded = eval::select_diagnose(loaded, sim, args.filter.as_deref());
    let mut assistant = make_assistant(args.model.as_deref())?;
    let mut progress = Progress::new(args, loaded.scenarios.len());
    let cases = diagnose::evaluate(
        &loaded.scenarios,
        assistant.as_mut(),
        &mut |c: &DiagnoseCase| progress.case(c.all_facts && c.false_claims.is_empty(), &c.id),
    );
    progress.clear();
    let report = DiagnoseReport::new(assistant.model_name(), cases, loaded.errors);
    emit(
        args,
        &report,
        |out| report.write_text(out),
        report.errors.is_empty(),
    )
}

/// The `[done/total] ok id` line on a terminal's stderr while cases run.
struct Progress {
    show: bool,
    done: usize,
    total: usize,
}

impl Progress {
    fn new(args: &Args, total: usize) -> Progress {
        Progress {
            show: !args.json && io::stderr().is_terminal(),
            done: 0,
            total,
        }
    }

    /// One case scored.
    fn case(&mut self, ok: bool, id: &str) {
        self.done += 1;
        if self.show {
            let mark = if ok { "ok" } else { "--" };
            eprint!("\r\x1b[K[{}/{}] {mark} {id}", self.done, self.total);
        }
    }

    /// Clears the line once every case is scored.
    fn clear(&self) {
        if self.show {
            eprint!("\r\x1b[K");
        }
    }
}

/// Prints a report as JSON or as text; exit 0 when every scenario loaded.
fn emit(
    args: &Args,
    report: &impl serde::Serialize,
    write_text: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    loaded_all: bool,
) -> anyhow::Result<i32> {
    if args.json {
        print_json(report)?;
    } else {
        let mut out = io::stdout().lock();
        write_text(&mut out)?;
        out.flush()?;
    }
    Ok(if loaded_all { 0 } else { EXIT_FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copilot::{Event, NodeContext, Reply, Turn};

    /// Answers without proposing anything.
    struct Silent;

    impl Assistant for Silent {
        fn ask(
            &mut self,
            _: NodeContext<'_>,
            _: &[Turn],
            _: &str,
            _: &mut dyn FnMut(Event<'_>),
        ) -> anyhow::Result<Reply> {
            Ok(Reply {
                answer: String::new(),
                proposals: Vec::new(),
                model: "silent".into(),
                timings: Default::default(),
            })
        }

        fn model_name(&self) -> &str {
            "silent"
        }
    }

    #[test]
    fn unusable_scenarios_exit_1_and_the_model_name_reaches_the_factory() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args {
            scenarios: Some(dir.path().to_path_buf()),
            json: true,
            ..Args::default()
        };
        let code = run(None, &args, |_| Ok(Box::new(Silent))).unwrap();
        assert_eq!(code, EXIT_FAILURE);

        let args = Args {
            model: Some("sigma-1.5b.gguf".into()),
            ..Args::default()
        };
        let err = run(None, &args, |m| anyhow::bail!("cannot load {m:?}")).unwrap_err();
        assert_eq!(err.to_string(), "cannot load Some(\"sigma-1.5b.gguf\")");
    }
}
