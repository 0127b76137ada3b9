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
//! # Concurrency and size
//! Each record is one `write` to a file opened with `O_APPEND`, so records
//! of concurrent Sigma processes never interleave. Past [`ROTATE_BYTES`]
//! the file is renamed `audit.jsonl.1` (older ones shift up to
//! `.`[`KEEP_ROTATED`]) under an exclusive `flock`; a process still holding
//! the old file notices and reopens, so no record is lost. [`read`] reads
//! the rotated files first, oldest first.
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

/// Size past which the log is rotated.
pub const ROTATE_BYTES: u64 = 16 * 1024 * 1024;

/// Rotated files kept (`audit.jsonl.1` is the newest).
pub const KEEP_ROTATED: usize = 4;

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
    /// Size past which the file is rotated.
    rotate_bytes: u64,
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
            rotate_bytes: ROTATE_BYTES,
        }
    }

    /// Rotates past `bytes` instead of [`ROTATE_BYTES`].
    pub fn rotate_at(mut self, bytes: u64) -> AuditLog {
        self.rotate_bytes = bytes;
        self
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
        let line = serde_json::to_string(entry).map_err(|e| failure(e.into()))?;
        let mut line = crate::checks::inert_json(&line).into_owned();
        line.push('\n');
        if let Some(file) = &self.file
            && file.metadata().map_err(failure)?.len() >= self.rotate_bytes
        {
            rotate(path, file).map_err(failure)?;
            self.file = None;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(open_append(path).map_err(failure)?),
        };
        // One write per line: O_APPEND keeps concurrent sessions' lines whole.
        file.write_all(line.as_bytes()).map_err(failure)
    }
}

/// Rotates the log `file` open at `path`, unless another process already
/// did (then `path` is a new file and the caller just reopens it).
fn rotate(path: &Path, file: &File) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock(2) on a descriptor we own; released when it closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mine = file.metadata()?;
    let current = fs::metadata(path).ok();
    if current.is_some_and(|c| c.ino() == mine.ino() && c.dev() == mine.dev()) {
        for n in (1..KEEP_ROTATED).rev() {
            let from = rotated(path, n);
            if from.exists() {
                fs::rename(&from, rotated(path, n + 1))?;
            }
        }
        fs::rename(path, rotated(path, 1))?;
    }
    // SAFETY: as above.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
    Ok(())
}

/// `audit.jsonl.N`.
fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
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

/// Reads the log at `path` with its rotated files, oldest first; `Ok(None)`
/// when there is none yet. A line that is not an entry (torn by a crash,
/// or not UTF-8) is counted and skipped; it never hides the rest.
pub fn read(path: &Path) -> Result<Option<Contents>, ReadError> {
    let mut contents = Contents::default();
    let mut found = false;
    let files = (1..=KEEP_ROTATED)
        .rev()
        .map(|n| rotated(path, n))
        .chain([path.to_path_buf()]);
    for file_path in files {
        let error = |source| ReadError {
            path: file_path.clone(),
            source,
        };
        let file = match File::open(&file_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(error(e)),
        };
        found = true;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(error)?;
            let Ok(line) = String::from_utf8(line) else {
                contents.unreadable += 1;
                continue;
            };
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Entry>(&line) {
                Ok(entry) => contents.entries.push((entry, line)),
                Err(_) => contents.unreadable += 1,
            }
        }
    }
    Ok(found.then_some(contents))
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
    fn a_torn_line_in_the_middle_and_invalid_utf8_hide_nothing_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::at(Some(path.clone()));
        log.record(question("before"));
        let mut f = File::options().append(true).open(&path).unwrap();
        f.write_all(b"{\"time\":\"2026-01-01T00:00:00Z\",\"se\n\xff\xfe garbage\n")
            .unwrap();
        let mut log = AuditLog::at(Some(path.clone()));
        log.record(question("after"));
        let contents = read(&path).unwrap().unwrap();
        let texts: Vec<&str> = contents
            .entries
            .iter()
            .map(|(_, line)| line.as_str())
            .collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[1].contains("after"));
        assert_eq!(contents.unreadable, 2);
    }

    #[test]
    fn rotation_by_size_keeps_every_record_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::at(Some(path.clone())).rotate_at(2_000);
        for i in 0..100 {
            log.record(question(&format!("question {i}")));
        }
        assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
        assert!(!rotated(&path, KEEP_ROTATED + 1).exists());
        assert!(fs::metadata(&path).unwrap().len() < 2_000 + 200);
        let contents = read(&path).unwrap().unwrap();
        let n = contents.entries.len();
        // The oldest files beyond KEEP_ROTATED are dropped; the rest are in order.
        assert!(n >= 40, "{n}");
        for (k, (_, line)) in contents.entries.iter().enumerate() {
            assert!(
                line.contains(&format!("question {}\"", 100 - n + k)),
                "{line}"
            );
        }
        for file in [path.clone(), rotated(&path, 1)] {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn a_full_disk_is_one_warning_and_the_work_goes_on() {
        let sink = Sink::default();
        let mut log = AuditLog::at(Some(PathBuf::from("/dev/full"))).warn_to(sink.clone());
        log.record(question("one"));
        log.record(question("two"));
        let warning = sink.text();
        assert_eq!(warning.lines().count(), 1, "{warning}");
        assert!(
            warning.contains("/dev/full") && warning.contains("continuing without it"),
            "{warning}"
        );
        // A read-only place: /proc refuses new files.
        let sink = Sink::default();
        let mut log = AuditLog::at(Some(PathBuf::from("/proc/sigma-audit/audit.jsonl")))
            .warn_to(sink.clone());
        log.record(question("three"));
        assert_eq!(sink.text().lines().count(), 1, "{}", sink.text());
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
