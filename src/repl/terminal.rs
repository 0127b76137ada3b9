//! The chat on a terminal: `rustyline` reads lines (editing, history in
//! the state directory's `history.txt`), [`handle`] answers them.
//!
//! Ctrl-C at the prompt clears the line, Ctrl-D or `/quit` leaves. A
//! history file that cannot be read or written is reported once on
//! standard error; the chat goes on without it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor};

use super::{Flow, PROMPT, greeting, handle};
use crate::audit;
use crate::session::Session;

/// File name of the chat history in the state directory.
pub const HISTORY_FILE: &str = "history.txt";

/// Lines of history kept.
const HISTORY_LINES: usize = 1000;

/// Where the chat history is kept, when a state directory exists.
pub fn history_path() -> Option<PathBuf> {
    audit::state_dir().map(|d| d.join(HISTORY_FILE))
}

/// Runs the chat on the terminal until Ctrl-D or `/quit`.
pub fn run(session: &mut Session<'_>, out: &mut impl Write) -> io::Result<()> {
    let config = Config::builder()
        .max_history_size(HISTORY_LINES)
        .map_err(io::Error::other)?
        .auto_add_history(false)
        .build();
    let mut editor = DefaultEditor::with_config(config).map_err(io::Error::other)?;
    let history = history_path();
    if let Some(path) = &history {
        match editor.load_history(path) {
            Ok(()) => {}
            Err(ReadlineError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn(path, &e),
        }
    }
    writeln!(out, "{}", greeting(session))?;
    loop {
        out.flush()?;
        match editor.readline(PROMPT) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    // Fails only when the entry is a duplicate or ignored.
                    let _ = editor.add_history_entry(line.as_str());
                }
                if handle(session, &line, out)? == Flow::Quit {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(io::Error::other(e)),
        }
    }
    if let Some(path) = &history {
        let saved = create_dir(path).map_err(ReadlineError::Io);
        if let Err(e) = saved.and_then(|()| editor.save_history(path)) {
            warn(path, &e);
        }
    }
    Ok(())
}

/// Creates the history file's directory, private to the user.
fn create_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
        _ => Ok(()),
    }
}

/// One warning line about the history file.
fn warn(path: &Path, e: &ReadlineError) {
    let _ = writeln!(
        io::stderr(),
        "sigma: warning: chat history {}: {e}; continuing without it",
        path.display()
    );
}
