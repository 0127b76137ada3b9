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
//! Every source (keys, resizes, refreshes, signals, later the copilot)
//! sends an [`Event`] on one channel. [`run`] receives one, lets the app
//! update, carries out the [`AppAction`] it returns, and draws when the app
//! says something changed. ratatui redraws only the cells that differ, so a
//! refresh every two seconds does not flicker.
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

pub use app::{App, AppAction, Proposal};
pub use event::Event;
pub use theme::Theme;

use crate::cli::Node;
use crate::guard::{self, Limits, Verdict};
use event::CommandResult;

/// How often the header's staleness is rechecked.
const TICK: Duration = Duration::from_secs(1);

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

/// Runs the TUI on `node` until the user quits or a signal arrives.
pub fn run(node: Node, options: Options) -> Result<(), TuiError> {
    if let Some(reason) = unsupported_reason() {
        return Err(TuiError::Unsupported(reason));
    }
    let node = Arc::new(node);
    let (tx, rx) = mpsc::channel();
    let signals = event::spawn_signals(tx.clone())?;
    let (refresh_now, refresh_rx) = mpsc::channel();
    event::spawn_refresher(Arc::clone(&node), options.refresh, refresh_rx, tx.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let input = event::spawn_input(tx.clone(), Arc::clone(&stop));
    let result = {
        // Restores even when initialisation fails halfway.
        let _restore = Restore;
        let channels = Channels {
            rx,
            tx,
            refresh_now,
        };
        ratatui::try_init()
            .map_err(TuiError::from)
            .and_then(|mut terminal| event_loop(&mut terminal, options, &node, &channels))
    };
    stop.store(true, Ordering::Relaxed);
    signals.close();
    // The input thread stops within one poll; its errors no longer matter.
    let _ = input.join();
    result
}

/// The main loop's ends of the channels.
struct Channels {
    /// Every event.
    rx: mpsc::Receiver<Event>,
    /// For events the loop itself produces (command results).
    tx: mpsc::Sender<Event>,
    /// Asks the refresher to probe now.
    refresh_now: mpsc::Sender<()>,
}

/// Receive, update, act, draw, until the app quits.
fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    options: Options,
    node: &Arc<Node>,
    ch: &Channels,
) -> Result<(), TuiError> {
    let size = terminal.size()?;
    let area = ratatui::layout::Rect::new(0, 0, size.width, size.height);
    let mut app = App::new(options.theme, options.refresh, area);
    terminal.draw(|f| ui::draw(f, &app))?;
    loop {
        let event = match ch.rx.recv_timeout(TICK) {
            Ok(e) => e,
            Err(mpsc::RecvTimeoutError::Timeout) => Event::Tick(Instant::now()),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let outcome = app.update(event);
        match outcome.action {
            Some(AppAction::Quit) => return Ok(()),
            Some(AppAction::Refresh) => {
                // The refresher runs as long as this loop does.
                let _ = ch.refresh_now.send(());
            }
            Some(AppAction::Copy(text)) => {
                let out = terminal.backend_mut();
                out.write_all(osc52(&text).as_bytes())?;
                out.flush()?;
            }
            Some(AppAction::Run(i)) => {
                if let Some(p) = app.proposals().get(i) {
                    spawn_run(Arc::clone(node), p.verdict.clone(), ch.tx.clone());
                }
            }
            // The copilot is not wired into the TUI yet. The app has shown
            // what it can: a note for a question, the guard's explanation
            // for `x`.
            Some(AppAction::Ask(_) | AppAction::Explain(_)) | None => {}
        }
        if outcome.redraw {
            terminal.draw(|f| ui::draw(f, &app))?;
        }
    }
}

/// Runs an approved verdict through the guard's executor on a thread of
/// its own (a command may take up to the executor's time limit), and sends
/// the result as [`Event::CommandDone`].
fn spawn_run(node: Arc<Node>, verdict: Verdict, tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let _ = tx.send(Event::CommandDone(execute(&node, &verdict)));
    });
}

/// Runs `verdict` on `node`: the simulator answers on a simulated node.
fn execute(node: &Node, verdict: &Verdict) -> CommandResult {
    let command = verdict.command.clone();
    match guard::execute(verdict, node.target(), &Limits::default()) {
        Ok(run) => CommandResult {
            command,
            output: format!("{}{}", run.stdout.text, run.stderr.text),
            status: run.exit.to_string(),
        },
        Err(e) => CommandResult {
            command,
            output: String::new(),
            status: e.to_string(),
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
        let r = execute(&node, &guard::check("nvidia-smi -L"));
        assert_eq!(r.status, "exit code 0");
        assert!(r.output.contains("GPU 0"), "{}", r.output);
    }

    #[test]
    fn blocked_verdicts_do_not_run() {
        let node = Node::open(Some("h100x8-thermal-throttle")).expect("simulated node");
        let r = execute(&node, &guard::check("rm -rf /"));
        assert!(r.status.starts_with("refused by the guard"), "{}", r.status);
        assert!(r.output.is_empty());
    }
}
