//! The one event type of the TUI and the threads that produce it.
//!
//! Everything the app reacts to arrives as an [`Event`] on one `mpsc`
//! channel: keys and resizes ([`spawn_input`]), fresh snapshots
//! ([`spawn_refresher`]), termination signals ([`spawn_signals`]), and the
//! copilot's worker thread ([`crate::copilot::worker`]). The main loop in [`super::run`] receives,
//! updates the [`App`](super::app::App), and draws.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self as term, KeyEvent, KeyEventKind};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::checks::{self, Finding};
use crate::copilot::worker::Message;
use crate::probe::Snapshot;
use crate::probe::interpret::Ended;
use crate::session::Node;

/// Something that happened.
#[derive(Debug)]
pub enum Event {
    /// A key was pressed.
    Key(KeyEvent),
    /// The terminal now has this many columns and rows.
    Resize(u16, u16),
    /// Time passed (the header shows how old the data is).
    Tick(Instant),
    /// A new snapshot and its findings.
    SnapshotReady(Box<Refresh>),
    /// News from the model's thread: loaded, progress, answer text, reply.
    Model(Message),
    /// A command started from the TUI finished.
    CommandDone(CommandResult),
    /// Something went wrong that does not stop the TUI (the audit log
    /// cannot be written): shown as a note.
    Warning(String),
    /// SIGTERM, SIGHUP or SIGINT arrived: leave cleanly.
    Terminate,
}

/// One refresh of the node: what the doctor sees now.
#[derive(Debug, Clone)]
pub struct Refresh {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// `checks::run_all` over it.
    pub findings: Vec<Finding>,
    /// Local wall-clock time of the refresh, `HH:MM:SS`.
    pub time: String,
    /// When it was taken, for the staleness shown in the header.
    pub at: Instant,
}

impl Refresh {
    /// Runs the checks over `snapshot`, stamped now.
    pub fn new(snapshot: Snapshot) -> Refresh {
        let findings = checks::run_all(&snapshot);
        Refresh {
            snapshot,
            findings,
            time: chrono::Local::now().format("%H:%M:%S").to_string(),
            at: Instant::now(),
        }
    }
}

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// The command line as shown.
    pub command: String,
    /// Standard output then standard error (untrusted text).
    pub output: String,
    /// How it ended (`exit code 0`), or why it did not run.
    pub status: String,
    /// The exit code; `None` when it did not run or was killed.
    pub exit_code: Option<i32>,
    /// Wall-clock time, milliseconds.
    pub duration_ms: u64,
    /// Output bytes dropped past the executor's cap.
    pub dropped_bytes: usize,
    /// Why it did not run, when it did not.
    pub error: Option<String>,
    /// How it ended; `None` when it did not run.
    pub ended: Option<Ended>,
}

/// Reads keys and resizes until `stop` is set or the receiver is gone.
/// Polls so that it notices `stop` within a fraction of a second. When the
/// terminal cannot be read any more (it hung up) it sends
/// [`Event::Terminate`] and returns the error.
pub fn spawn_input(tx: Sender<Event>, stop: Arc<AtomicBool>) -> thread::JoinHandle<io::Result<()>> {
    thread::spawn(move || {
        let result = read_input(&tx, &stop);
        if result.is_err() {
            let _ = tx.send(Event::Terminate);
        }
        result
    })
}

fn read_input(tx: &Sender<Event>, stop: &AtomicBool) -> io::Result<()> {
    while !stop.load(Ordering::Relaxed) {
        if !term::poll(Duration::from_millis(200))? {
            continue;
        }
        let event = match term::read()? {
            term::Event::Key(k) if k.kind != KeyEventKind::Release => Event::Key(k),
            term::Event::Resize(w, h) => Event::Resize(w, h),
            _ => continue,
        };
        if tx.send(event).is_err() {
            break;
        }
    }
    Ok(())
}

/// Probes `node` now and then every `every`, and whenever `now` receives;
/// stops when either channel closes.
pub fn spawn_refresher(node: Arc<Node>, every: Duration, now: Receiver<()>, tx: Sender<Event>) {
    thread::spawn(move || {
        loop {
            let refresh = Refresh::new(node.snapshot());
            if tx.send(Event::SnapshotReady(Box::new(refresh))).is_err() {
                return;
            }
            match now.recv_timeout(every) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    });
}

/// Turns SIGTERM, SIGHUP and SIGINT into [`Event::Terminate`], so the
/// terminal is restored before the process ends. Close the returned handle
/// on exit.
pub fn spawn_signals(tx: Sender<Event>) -> io::Result<Handle> {
    let mut signals = Signals::new([SIGTERM, SIGHUP, SIGINT])?;
    let handle = signals.handle();
    thread::spawn(move || {
        for _ in signals.forever() {
            if tx.send(Event::Terminate).is_err() {
                return;
            }
        }
    });
    Ok(handle)
}
