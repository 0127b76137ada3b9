//! The full-screen terminal UI (`sigma tui`): the node at a glance, its
//! findings, the commands proposed for them, and a conversation with the
//! copilot.
//!
//! # Modules
//! - [`app`]: state and transitions ([`App::update`]); no drawing, no I/O.
//! - [`ui`]: drawing one frame from `&App`.
//! - [`layout`]: where each pane goes (shared by both).
//! - [`event`]: the one [`Event`] enum and the threads that send it.
//! - [`input`]: the one-line editor of the input line.
//! - [`keys`], [`strings`], [`theme`]: key bindings, words, and styles, each
//!   in one place.
//!
//! # The loop
//! Every source (keys, resizes, refreshes, signals, the copilot's worker
//! thread, finished commands) sends an [`Event`] on one channel. [`run`]
//! receives one, lets the app update, carries out the [`AppAction`] it
//! returns, and draws when the app says something changed. ratatui redraws only the cells that differ, so a
//! refresh every two seconds does not flicker.
//!
//! # The copilot
//! The model loads on a thread of its own ([`crate::copilot::worker`]) as
//! the TUI starts, so the dashboard is usable at once; the status line
//! shows loading, the prompt's progress, generation speed, ready, or why
//! the model could not load. Questions go to that thread with the latest
//! snapshot, findings and the conversation's history; answers stream back
//! token by token.
//!
//! # The audit log
//! The session, questions, answers, proposals, approvals and runs are
//! appended to the audit log ([`crate::audit`]); a log that cannot be
//! written is reported once as a note in the conversation.
//!
//! # Running commands
//! Proposals carry the guard's verdict (`crate::guard::check`); the app asks
//! for confirmation as the tier requires and never runs a blocked one. An
//! approved run goes through the guard's executor (`crate::guard::execute`)
//! on a thread of its own; on a simulated node the simulator answers. The
//! output lands in the conversation.
//!
//! # Terminal hygiene
//! The alternate screen and raw mode are restored on every way out: a
//! normal quit, an error (a drop guard), a panic (ratatui's hook
//! restores first, then the panic is printed), and SIGTERM/SIGHUP/SIGINT
//! (turned into [`Event::Terminate`]). The mouse is not captured. Where the
//! TUI cannot work (`TERM=dumb`, stdout not a terminal) [`run`] returns
//! [`TuiError::Unsupported`] before touching the terminal, so the caller
//! can print the plain-text report instead.

pub mod app;
pub mod event;
pub mod input;
pub mod keys;
pub mod layout;
pub mod strings;
pub mod theme;
pub mod ui;

#[cfg(test)]
mod render_tests;

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

pub use app::{App, AppAction, Ask, Proposal};
pub use event::Event;
pub use theme::Theme;

use crate::audit::{AuditLog, Record};
use crate::copilot::approval::{Decider, RunMode};
use crate::copilot::worker::{self, Message, Question, Worker};
use crate::guard::{self, Limits, Tier, Verdict};
use crate::session::{self, Node};
use event::CommandResult;

/// How often the header's staleness is rechecked.
const TICK: Duration = Duration::from_secs(1);

/// How long quitting waits for the model's thread to stop.
const WORKER_STOP: Duration = Duration::from_secs(2);

/// Why the TUI could not run.
#[derive(Debug, Error)]
pub enum TuiError {
    /// This terminal cannot show it; print plain text instead.
    #[error("the full-screen UI needs a terminal: {0}; use `sigma doctor` for plain text")]
    Unsupported(&'static str),
    /// Reading or writing the terminal failed.
    #[error("terminal: {0}")]
    Terminal(#[from] io::Error),
}

/// How the TUI runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Styles and symbols.
    pub theme: Theme,
    /// How often the node is probed and checked.
    pub refresh: Duration,
    /// Most answers per question: after a command runs, its output goes
    /// back to the model until this many answers were given.
    pub rounds: usize,
    /// Limits on each command run.
    pub limits: Limits,
}

/// Why this terminal cannot show the TUI, or `None` when it can.
pub fn unsupported_reason() -> Option<&'static str> {
    if std::env::var_os("TERM").is_some_and(|t| t == "dumb") {
        Some("TERM is 'dumb'")
    } else if !io::stdout().is_terminal() {
        Some("standard output is not a terminal")
    } else {
        None
    }
}

/// True when the TUI can run here (see [`unsupported_reason`]).
pub fn is_supported() -> bool {
    unsupported_reason().is_none()
}

/// True when colours are wanted: `NO_COLOR` is unset or empty and
/// `--no-color` was not given (it sets anstream's global choice).
pub fn color_wanted() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && anstream::ColorChoice::global() != anstream::ColorChoice::Never
}

/// The OSC 52 sequence that puts `text` on the terminal's clipboard (works
/// over SSH, and in tmux with `set-clipboard on`).
pub fn osc52(text: &str) -> String {
    format!("\x1b]52;c;{}\x07", STANDARD.encode(text))
}

/// Restores the terminal when dropped (normal exit and errors alike).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Sends the audit log's one warning to the app as an event.
struct Warnings(mpsc::Sender<Event>);

impl Write for Warnings {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let text = text.trim_end();
        if !text.is_empty() {
            // The loop may be gone at exit; the warning no longer matters then.
            let _ = self.0.send(Event::Warning(text.to_string()));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs the TUI on `node` until the user quits or a signal arrives; `load`
/// loads the model on the worker thread (see [`worker::Loader`]).
pub fn run(node: Node, options: Options, load: worker::Loader) -> Result<(), TuiError> {
    if let Some(reason) = unsupported_reason() {
        return Err(TuiError::Unsupported(reason));
    }
    let node = Arc::new(node);
    let (tx, rx) = mpsc::channel();
    let signals = event::spawn_signals(tx.clone())?;
    let (refresh_now, refresh_rx) = mpsc::channel();
    event::spawn_refresher(Arc::clone(&node), options.refresh, refresh_rx, tx.clone());
    let model_tx = tx.clone();
    let worker = Worker::spawn(load, move |m| model_tx.send(Event::Model(m)).is_ok());
    let mut audit = AuditLog::open().warn_to(Warnings(tx.clone()));
    // Enter approves a read-only command and typing the program name any
    // other: `confirm` is the policy that matches.
    audit.record(Record::session(
        "tui",
        &node.label(),
        RunMode::Confirm,
        None,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let input = event::spawn_input(tx.clone(), Arc::clone(&stop));
    let result = {
        // Restores even when initialisation fails halfway.
        let _restore = Restore;
        let mut ctx = Context {
            rx,
            tx,
            refresh_now,
            worker: &worker,
            audit,
            node,
        };
        let result = ratatui::try_init()
            .map_err(TuiError::from)
            .and_then(|mut terminal| event_loop(&mut terminal, options, &mut ctx));
        // Stop reading keys before the terminal is restored: what is typed
        // after that is the shell's. The input thread stops within one
        // poll; its errors no longer matter.
        stop.store(true, Ordering::Relaxed);
        let _ = input.join();
        result
    };
    signals.close();
    // Exiting while ggml computes on the worker thread is best avoided; a
    // model still loading is not waited for long.
    let _ = worker.stop(WORKER_STOP);
    result
}

/// What the main loop works with besides the app.
struct Context<'w> {
    /// Every event.
    rx: mpsc::Receiver<Event>,
    /// For events the loop itself produces (command results).
    tx: mpsc::Sender<Event>,
    /// Asks the refresher to probe now.
    refresh_now: mpsc::Sender<()>,
    /// The model's thread.
    worker: &'w Worker,
    /// The session's audit log.
    audit: AuditLog,
    /// The node commands run on.
    node: Arc<Node>,
}

/// Receive, update, act, draw, until the app quits.
fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    options: Options,
    ctx: &mut Context<'_>,
) -> Result<(), TuiError> {
    let size = terminal.size()?;
    let area = ratatui::layout::Rect::new(0, 0, size.width, size.height);
    let mut app = App::new(options.theme, options.refresh, area).with_rounds(options.rounds);
    terminal.draw(|f| ui::draw(f, &app))?;
    loop {
        let event = match ctx.rx.recv_timeout(TICK) {
            Ok(e) => e,
            Err(mpsc::RecvTimeoutError::Timeout) => Event::Tick(Instant::now()),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        audit_event(&mut ctx.audit, &event);
        let mut outcome = app.update(event);
        // An action may lead to another (a failed send to the worker).
        while let Some(action) = outcome.action.take() {
            let next = match action {
                AppAction::Quit => return Ok(()),
                AppAction::Refresh => {
                    // The refresher runs as long as this loop does.
                    let _ = ctx.refresh_now.send(());
                    None
                }
                AppAction::Copy(text) => {
                    let out = terminal.backend_mut();
                    out.write_all(osc52(&text).as_bytes())?;
                    out.flush()?;
                    None
                }
                AppAction::Run(i) => {
                    if let Some(p) = app.proposals().get(i) {
                        record_approval(&mut ctx.audit, &p.verdict);
                        let (node, tx) = (Arc::clone(&ctx.node), ctx.tx.clone());
                        spawn_run(node, p.verdict.clone(), options.limits, tx);
                    }
                    None
                }
                AppAction::Ask(ask) => ask_worker(&app, ctx, ask),
                AppAction::Cancel => {
                    ctx.worker.cancel();
                    None
                }
            };
            if let Some(event) = next {
                outcome = app.update(event);
            }
        }
        if outcome.redraw {
            terminal.draw(|f| ui::draw(f, &app))?;
        }
    }
}

/// Sends `ask` to the model's thread with the node as the app sees it.
/// Returns the event that ends the question when it cannot be sent.
fn ask_worker(app: &App, ctx: &mut Context<'_>, ask: Ask) -> Option<Event> {
    if ask.round == 1 {
        ctx.audit.record(Record::Question {
            text: ask.prompt.clone(),
        });
    }
    let Some(snapshot) = app.snapshot() else {
        // The app asks only after the first snapshot.
        return Some(Event::Model(Message::Done(Err(STOPPED.into()))));
    };
    // What the commands run for this question showed, on top of the probe.
    let (snapshot, findings) = session::observed(snapshot, app.facts());
    let question = Question {
        snapshot,
        findings,
        history: app.history().to_vec(),
        prompt: ask.prompt,
    };
    if ctx.worker.ask(question) {
        None
    } else {
        Some(Event::Model(Message::Done(Err(STOPPED.into()))))
    }
}

/// Why no answer comes when the model's thread is gone.
const STOPPED: &str = "the model's thread stopped; restart sigma to ask again";

/// Records what `event` brings that the audit log keeps: answers with
/// their proposals, and finished commands.
fn audit_event(audit: &mut AuditLog, event: &Event) {
    match event {
        Event::Model(Message::Done(Ok(reply))) => {
            audit.record(Record::Answer {
                model: reply.model.clone(),
                chars: reply.answer.chars().count(),
                total_ms: reply.timings.total_ms,
            });
            for (i, p) in reply.proposals.iter().enumerate() {
                audit.record(Record::Proposal {
                    n: i + 1,
                    command: p.command.clone(),
                    purpose: p.purpose.clone(),
                    tier: p.verdict.tier,
                    rule: p.verdict.rule.clone(),
                });
            }
        }
        Event::CommandDone(r) => audit.record(Record::Execution {
            command: r.command.clone(),
            exit_code: r.exit_code,
            duration_ms: r.duration_ms,
            output_bytes: r.output.len(),
            dropped_bytes: r.dropped_bytes,
            error: r.error.clone(),
            programs: Vec::new(),
        }),
        _ => {}
    }
}

/// Records that the user approved `verdict`: Enter on a read-only
/// command, or the program's name typed for any other.
fn record_approval(audit: &mut AuditLog, verdict: &Verdict) {
    let reason = match verdict.tier {
        Tier::ReadOnly => "read-only: Enter in the TUI",
        _ => "program name typed in the TUI",
    };
    audit.record(Record::Approval {
        command: verdict.command.clone(),
        approved: true,
        by: Decider::User,
        reason: reason.into(),
    });
}

/// Runs an approved verdict through the guard's executor on a thread of
/// its own (a command may take up to the executor's time limit), and sends
/// the result as [`Event::CommandDone`].
fn spawn_run(node: Arc<Node>, verdict: Verdict, limits: Limits, tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let _ = tx.send(Event::CommandDone(execute(&node, &verdict, &limits)));
    });
}

/// Runs `verdict` on `node` within `limits`: the simulator answers on a
/// simulated node.
fn execute(node: &Node, verdict: &Verdict, limits: &Limits) -> CommandResult {
    let command = verdict.command.clone();
    match guard::execute(verdict, node.target(), limits) {
        Ok(run) => CommandResult {
            command,
            output: format!("{}{}", run.stdout.text, run.stderr.text),
            status: run.exit.to_string(),
            exit_code: Some(run.exit.code()),
            duration_ms: u64::try_from(run.duration.as_millis()).unwrap_or(u64::MAX),
            dropped_bytes: run.stdout.dropped_bytes + run.stderr.dropped_bytes,
            error: None,
            ended: Some(session::ended(run.exit)),
        },
        Err(e) => CommandResult {
            command,
            output: String::new(),
            status: e.to_string(),
            exit_code: None,
            duration_ms: 0,
            dropped_bytes: 0,
            error: Some(e.to_string()),
            ended: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osc52_wraps_base64() {
        assert_eq!(osc52("nvidia-smi -q"), "\x1b]52;c;bnZpZGlhLXNtaSAtcQ==\x07");
    }

    #[test]
    fn simulated_runs_answer_from_the_simulator() {
        let node = Node::open(Some("h100x8-thermal-throttle")).expect("simulated node");
        let r = execute(&node, &guard::check("nvidia-smi -L"), &Limits::default());
        assert_eq!(r.status, "exit code 0");
        assert!(r.output.contains("GPU 0"), "{}", r.output);
    }

    #[test]
    fn blocked_verdicts_do_not_run() {
        let node = Node::open(Some("h100x8-thermal-throttle")).expect("simulated node");
        let r = execute(&node, &guard::check("rm -rf /"), &Limits::default());
        assert!(r.status.starts_with("refused by the guard"), "{}", r.status);
        assert!(r.output.is_empty());
    }
}
