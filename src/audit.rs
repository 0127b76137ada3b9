//! The audit log: what each session asked, was proposed, approved and ran.
//!
//! Every front end appends one JSON object per line to
//! `$XDG_STATE_HOME/sigma/audit.jsonl` (`~/.local/state/sigma/audit.jsonl`
//! when `XDG_STATE_HOME` is unset; `$SIGMA_STATE_DIR/audit.jsonl` when that
//! is set). `sigma log` reads it back. This module owns the record types,
//! the file and its location; it does not decide what is worth recording
//! (the front ends do) and never stores command output, only its size.
//!
//! # Failure
//! The log must never stop the work: when the file cannot be written, one
//! warning goes to standard error
//! (`sigma: warning: audit log PATH: permission denied; continuing without it`)
//! and the session goes on without a log.
//!
//! # Format
//! Each line is an [`Entry`]: `time` (RFC 3339, UTC), `session` (one id per
//! process), `kind` and the fields of that kind of [`Record`]:
//! ```text
//! {"time":"2026-11-28T08:12:21Z","session":"20261128T081221-4242","kind":"question","text":"why is GPU 3 slow?"}
//! ```

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::copilot::approval::{Decider, RunMode};
use crate::guard::Tier;

/// Environment variable naming the state directory instead of the XDG one.
pub const STATE_DIR_ENV: &str = "SIGMA_STATE_DIR";

/// File name of the audit log in the state directory.
pub const LOG_FILE: &str = "audit.jsonl";

/// Sigma's state directory (audit log, chat history): `$SIGMA_STATE_DIR`,
/// else `$XDG_STATE_HOME/sigma`, else `~/.local/state/sigma`. `None` when
/// there is no home directory either.
pub fn state_dir() -> Option<PathBuf> {
    state_dir_from(std::env::var_os(STATE_DIR_ENV))
}

/// [`state_dir`] with the override given.
fn state_dir_from(overridden: Option<OsString>) -> Option<PathBuf> {
    if let Some(dir) = overridden.filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(dirs) = directories::ProjectDirs::from("", "", "sigma")
        && let Some(state) = dirs.state_dir()
    {
        return Some(state.to_path_buf());
    }
    directories::BaseDirs::new().map(|b| b.home_dir().join(".local/state/sigma"))
}

/// Where the audit log is, when a state directory exists.
pub fn log_path() -> Option<PathBuf> {
    state_dir().map(|d| d.join(LOG_FILE))
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it was recorded.
    pub time: DateTime<Utc>,
    /// The session (process) that recorded it.
    pub session: String,
    /// What happened.
    #[serde(flatten)]
    pub record: Record,
}

/// Something worth auditing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// A session started.
    Session {
        /// Process id.
        pid: u32,
        /// Real user id.
        uid: u32,
        /// User name from the environment (`USER`, `LOGNAME`); may be empty.
        user: String,
        /// This machine's host name.
        host: String,
        /// The node worked on: `live` or `simulated: NAME`.
        node: String,
        /// The front end: `chat`, `ask`, `tui`...
        front_end: String,
        /// Sigma's version.
        version: String,
        /// The `--run` policy in force.
        run_mode: RunMode,
        /// The model, when one is loaded.
        #[serde(default)]
        model: Option<String>,
    },
    /// The user asked a question.
    Question {
        /// The question.
        text: String,
    },
    /// The assistant answered.
    Answer {
        /// The model that answered.
        model: String,
        /// Length of the answer in characters.
        chars: usize,
        /// Time to answer, milliseconds.
        total_ms: f64,
    },
    /// A command was proposed, with the guard's verdict.
    Proposal {
        /// Its number as shown to the user (1-based).
        n: usize,
        /// The command line.
        command: String,
        /// What it is for.
        purpose: String,
        /// The guard's tier.
        tier: Tier,
        /// The rule that set the tier.
        rule: String,
    },
    /// A command was approved or refused.
    Approval {
        /// The command line.
        command: String,
        /// Whether it may run.
        approved: bool,
        /// Who decided: the policy or the user.
        by: Decider,
        /// Why.
        reason: String,
    },
    /// A command ran (or failed to start).
    Execution {
        /// The command line.
        command: String,
        /// The shell's exit code; `None` when it could not run.
        exit_code: Option<i32>,
        /// Wall-clock time, milliseconds.
        duration_ms: u64,
        /// Bytes of output kept (standard output and error).
        output_bytes: usize,
        /// Bytes of output dropped past the cap.
        dropped_bytes: usize,
        /// Why it could not run, when it could not.
        #[serde(default)]
        error: Option<String>,
        /// The files that ran, symlinks resolved (live runs).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        programs: Vec<String>,
    },
}

impl Record {
    /// The name of this kind of record, as in the `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Session { .. } => "session",
            Self::Question { .. } => "question",
            Self::Answer { .. } => "answer",
            Self::Proposal { .. } => "proposal",
            Self::Approval { .. } => "approval",
            Self::Execution { .. } => "execution",
        }
    }

    /// A session start for `front_end` on `node`, with this process's
    /// id, user, host and Sigma's version filled in.
    pub fn session(front_end: &str, node: &str, run_mode: RunMode, model: Option<&str>) -> Record {
        let user = ["USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
            .unwrap_or_default();
        Record::Session {
            pid: std::process::id(),
            // SAFETY: getuid(2) has no arguments, cannot fail and touches no memory of ours.
            uid: unsafe { libc::getuid() },
            user,
            host: sysinfo::System::host_name().unwrap_or_default(),
            node: node.to_string(),
            front_end: front_end.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            run_mode,
            model: model.map(str::to_string),
        }
    }
}

/// Appends records to the audit log; see the module docs for failures.
pub struct AuditLog {
    /// The file, when a state directory exists.
    path: Option<PathBuf>,
    /// Opened on the first record.
    file: Option<File>,
    /// Set after the first failure: nothing more is tried.
    failed: bool,
    /// This session's id.
    session: String,
    /// Where the one warning goes (standard error).
    warnings: Box<dyn Write + Send>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("failed", &self.failed)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// The log at its usual place ([`log_path`]).
    pub fn open() -> AuditLog {
        AuditLog::at(log_path())
    }

    /// The log at `path` (`None`: there is nowhere to write; the first
    /// record warns). Nothing is opened before the first record.
    pub fn at(path: Option<PathBuf>) -> AuditLog {
        let now = Utc::now();
        AuditLog {
            path,
            file: None,
            failed: false,
            session: format!("{}-{}", now.format("%Y%m%dT%H%M%S"), std::process::id()),
            warnings: Box::new(io::stderr()),
        }
    }

    /// Sends the failure warning to `sink` instead of standard error.
    pub fn warn_to(mut self, sink: impl Write + Send + 'static) -> AuditLog {
        self.warnings = Box::new(sink);
        self
    }

    /// Where the log is written.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// This session's id.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// Appends `record` as one line. Never fails: the first error is
    /// reported on the warning sink and later records are dropped.
    pub fn record(&mut self, record: Record) {
        if self.failed {
            return;
        }
        let entry = Entry {
            time: Utc::now(),
            session: self.session.clone(),
            record,
        };
        if let Err(problem) = self.append(&entry) {
            self.failed = true;
            let _ = writeln!(
                self.warnings,
                "sigma: warning: audit log{problem}; continuing without it"
            );
        }
    }

    /// Writes one entry; the error is the warning's middle part.
    fn append(&mut self, entry: &Entry) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Err(format!(
                ": no state directory (set {STATE_DIR_ENV} or XDG_STATE_HOME)"
            ));
        };
        let failure = |e: io::Error| format!(" {}: {}", path.display(), describe(&e));
        let mut line = serde_json::to_string(entry).map_err(|e| failure(e.into()))?;
        line.push('\n');
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(open_append(path).map_err(failure)?),
        };
        // One write per line: O_APPEND keeps concurrent sessions' lines whole.
        file.write_all(line.as_bytes()).map_err(failure)
    }
}

/// An I/O error in a few lowercase words (`permission denied`).
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::Other => e.to_string(),
        kind => kind.to_string(),
    }
}

/// Opens `path` for appending, creating it (mode 0600) and its directory
/// (mode 0700): the log holds the user's questions.
fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    File::options()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// Why the log could not be read.
#[derive(Debug, Error)]
#[error("cannot read the audit log {}: {source}", path.display())]
pub struct ReadError {
    /// The file.
    path: PathBuf,
    /// The error.
    source: io::Error,
}

/// What [`read`] found.
#[derive(Debug, Default)]
pub struct Contents {
    /// The entries in file order, each with its line as written.
    pub entries: Vec<(Entry, String)>,
    /// Lines that are not entries (cut by a crash, or by another version).
    pub unreadable: usize,
}

/// Reads the log at `path`; `Ok(None)` when there is none yet.
pub fn read(path: &Path) -> Result<Option<Contents>, ReadError> {
    let error = |source| ReadError {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(e)),
    };
    let mut contents = Contents::default();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(error)?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(&line) {
            Ok(entry) => contents.entries.push((entry, line)),
            Err(_) => contents.unreadable += 1,
        }
    }
    Ok(Some(contents))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A warning sink the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn question(text: &str) -> Record {
        Record::Question { text: text.into() }
    }

    #[test]
    fn records_round_trip_one_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/state/audit.jsonl");
        let sink = Sink::default();
        let mut log = AuditLog::at(Some(path.clone())).warn_to(sink.clone());
        let records = vec![
            Record::session("chat", "simulated: h100x8-healthy", RunMode::Confirm, None),
            question("why is GPU 3 slow?\nsecond line"),
            Record::Proposal {
                n: 1,
                command: "nvidia-smi -r -i 3".into(),
                purpose: "reset".into(),
                tier: Tier::StateChanging,
                rule: "nvidia-smi: -r (--gpu-reset) changes state".into(),
            },
            Record::Approval {
                command: "nvidia-smi -r -i 3".into(),
                approved: false,
                by: Decider::User,
                reason: "declined".into(),
            },
            Record::Execution {
                command: "nvidia-smi -L".into(),
                exit_code: Some(0),
                duration_ms: 12,
                output_bytes: 100,
                dropped_bytes: 0,
                error: None,
                programs: Vec::new(),
            },
        ];
        for r in &records {
            log.record(r.clone());
        }
        assert_eq!(sink.text(), "");
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), records.len(), "{text}");
        let contents = read(&path).unwrap().expect("log exists");
        assert_eq!(contents.unreadable, 0);
        let got: Vec<Record> = contents
            .entries
            .iter()
            .map(|(e, _)| e.record.clone())
            .collect();
        assert_eq!(got, records);
        assert!(
            contents
                .entries
                .iter()
                .all(|(e, _)| e.session == log.session())
        );
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["kind"], "session");
        assert_eq!(first["front_end"], "chat");
        assert_eq!(first["run_mode"], "confirm");
        assert_eq!(first["pid"], std::process::id());
    }

    #[test]
    fn file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        AuditLog::at(Some(path.clone())).record(question("q"));
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn unwritable_log_warns_once_and_goes_on() {
        // A directory that is a file cannot be created, even by root.
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, "").unwrap();
        let path = blocker.join("sigma/audit.jsonl");
        let sink = Sink::default();
        let mut log = AuditLog::at(Some(path.clone())).warn_to(sink.clone());
        log.record(question("one"));
        log.record(question("two"));
        assert_eq!(
            sink.text(),
            format!(
                "sigma: warning: audit log {}: not a directory; continuing without it\n",
                path.display()
            )
        );
    }

    #[test]
    fn no_state_dir_warns_once() {
        let sink = Sink::default();
        let mut log = AuditLog::at(None).warn_to(sink.clone());
        log.record(question("one"));
        log.record(question("two"));
        assert_eq!(sink.text().lines().count(), 1, "{}", sink.text());
        assert!(
            sink.text().contains("no state directory"),
            "{}",
            sink.text()
        );
    }

    #[test]
    fn unreadable_lines_are_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::at(Some(path.clone()));
        log.record(question("kept"));
        let mut f = File::options().append(true).open(&path).unwrap();
        writeln!(f, "{{\"time\":\"2026-01-01T00:00:00Z\",\"sess").unwrap();
        writeln!(f).unwrap();
        let contents = read(&path).unwrap().unwrap();
        assert_eq!(contents.entries.len(), 1);
        assert_eq!(contents.unreadable, 1);
    }

    #[test]
    fn missing_log_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join("audit.jsonl")).unwrap().is_none());
    }

    #[test]
    fn state_dir_override_wins() {
        assert_eq!(
            state_dir_from(Some("/tmp/sigma-state".into())),
            Some(PathBuf::from("/tmp/sigma-state"))
        );
        let default = state_dir_from(Some("".into())).expect("a home directory");
        assert!(default.ends_with("sigma"), "{}", default.display());
    }
}
