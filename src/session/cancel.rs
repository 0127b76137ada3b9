//! Ctrl-C during a generation: cancels the answer being generated, not Sigma.
//!
//! While an answer is generated ([`Cancel::busy`]) the first Ctrl-C sets
//! the shared flag that the engine polls between tokens; a second one,
//! should the engine not stop, exits with code 130. At any other time
//! Ctrl-C does what it always does (at the `sigma> ` prompt the line
//! editor reads it as a key and clears the line).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::SIGINT;
use signal_hook::flag;

/// Exit code after a second Ctrl-C during generation (128 + SIGINT), and
/// of one-shot commands that Ctrl-C stopped.
pub const EXIT_INTERRUPTED: i32 = 130;

/// The cancel flag shared with the engine, and whether it is in use.
#[derive(Debug, Clone)]
pub struct Cancel {
    /// Set by Ctrl-C during generation; the engine stops when it sees it.
    flag: Arc<AtomicBool>,
    /// No generation is running: Ctrl-C keeps its default action.
    idle: Arc<AtomicBool>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel {
            flag: Arc::new(AtomicBool::new(false)),
            idle: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Cancel {
    /// A flag that only [`Cancel::cancel`] sets until
    /// [`Cancel::on_interrupt`] connects it to Ctrl-C.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Connects the flag to SIGINT for the rest of the process (see the
    /// module docs).
    pub fn on_interrupt(&self) -> io::Result<()> {
        // Order matters: each press runs these in turn.
        flag::register_conditional_shutdown(SIGINT, EXIT_INTERRUPTED, Arc::clone(&self.flag))?;
        flag::register_conditional_default(SIGINT, Arc::clone(&self.idle))?;
        flag::register(SIGINT, Arc::clone(&self.flag))?;
        Ok(())
    }

    /// The flag to give the engine: it stops generating once it is set.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }

    /// Whether the current (or last) generation was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Cancels the generation in progress (what Ctrl-C does).
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Marks a generation as running until the guard is dropped; clears
    /// an earlier cancellation.
    pub fn busy(&self) -> Busy<'_> {
        self.flag.store(false, Ordering::SeqCst);
        self.idle.store(false, Ordering::SeqCst);
        Busy(self)
    }
}

/// A generation in progress; see [`Cancel::busy`].
#[derive(Debug)]
pub struct Busy<'a>(&'a Cancel);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.idle.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_clears_an_old_cancellation_and_marks_idle_after() {
        let cancel = Cancel::new();
        cancel.cancel();
        assert!(cancel.is_cancelled());
        {
            let _busy = cancel.busy();
            assert!(!cancel.is_cancelled());
            assert!(!cancel.idle.load(Ordering::SeqCst));
            cancel.flag().store(true, Ordering::SeqCst);
        }
        assert!(cancel.is_cancelled(), "the result stays readable after");
        assert!(cancel.idle.load(Ordering::SeqCst));
    }
}
