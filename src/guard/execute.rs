//! Running an approved [`Verdict`]: argv directly, no shell, our own pipes.
//!
//! Each pipeline runs in a process group of its own; past the time limit
//! the whole group gets `SIGKILL`, so nothing a command started outlives it.
//! Standard output and error are read on threads (a chatty tool cannot
//! stall on a full pipe) into buffers that keep the last
//! [`Limits::output_cap`] bytes and say how much was dropped. A program that
//! is not installed is reported like a shell would: exit code 127 and
//! `nvidia-smi: not found on this node`.
//!
//! Under [`Target::Simulated`] the first segment is answered by the
//! simulated node and the filters after it (grep, head, ...) run for real on
//! that output: they are local, read-only text filters.
//!
//! Only a verdict that [`super::check`] approved can run: the plan is a
//! private field that a blocked verdict does not have.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use thiserror::Error;
use wait_timeout::ChildExt;

use super::Verdict;
use super::help;
use super::parse::{Redirects, Segment, StderrTo, StdoutTo};
use crate::sim::SimNode;

/// Where a command runs.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// This machine.
    Live,
    /// A simulated node (`--simulate`).
    Simulated(&'a SimNode),
}

/// Limits on one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock limit for the whole pipeline.
    pub timeout: Duration,
    /// Bytes kept of standard output and of standard error (the tail).
    pub output_cap: usize,
}

impl Limits {
    /// Seconds a command may run unless the user says otherwise.
    pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

    /// The default limits with a time limit of `secs` seconds.
    pub fn with_timeout_secs(secs: u64) -> Self {
        Self {
            timeout: Duration::from_secs(secs),
            ..Self::default()
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(Self::DEFAULT_TIMEOUT_SECS),
            output_cap: 64 * 1024,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// It ran past the time limit and its process group was killed.
    TimedOut,
    /// Ctrl-C stopped it and its process group was killed.
    Interrupted,
}

impl Exit {
    /// The shell's exit code: the code, 128 + signal, 124 for a timeout,
    /// 130 for Ctrl-C.
    pub fn code(self) -> i32 {
        match self {
            Self::Code(c) => c,
            Self::Signal(s) => 128 + s,
            Self::TimedOut => 124,
            Self::Interrupted => 130,
        }
    }

    fn from_status(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(c), _) => Self::Code(c),
            (None, Some(s)) => Self::Signal(s),
            (None, None) => Self::Code(-1),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(c) => write!(f, "exit code {c}"),
            Self::Signal(s) => write!(f, "killed by signal {s}"),
            Self::TimedOut => f.write_str("timed out and was killed"),
            Self::Interrupted => f.write_str("stopped by Ctrl-C, with everything it started"),
        }
    }
}

/// Captured output: the tail, and whether the head was dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The text kept (lossy UTF-8); starts with a `[... N bytes dropped ...]`
    /// line when truncated.
    pub text: String,
    /// Whether earlier output was dropped.
    pub truncated: bool,
    /// How many bytes were dropped.
    pub dropped_bytes: usize,
}

impl Captured {
    fn from_bytes(bytes: &[u8], dropped: usize) -> Self {
        let body = String::from_utf8_lossy(bytes);
        let text = if dropped > 0 {
            format!("[... {dropped} earlier bytes dropped ...]\n{body}")
        } else {
            body.into_owned()
        };
        Self {
            text,
            truncated: dropped > 0,
            dropped_bytes: dropped,
        }
    }
}

/// The result of running a command.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The command line.
    pub command: String,
    /// Standard output of the last segment.
    pub stdout: Captured,
    /// Standard error of every segment, in order.
    pub stderr: Captured,
    /// How the last segment ended (the pipeline's status, as in a shell).
    pub exit: Exit,
    /// How each segment ended.
    pub segments: Vec<Exit>,
    /// Wall-clock duration.
    pub duration: Duration,
    /// The file each segment ran, symlinks resolved (live runs only; the
    /// simulator runs none for the first segment).
    pub programs: Vec<PathBuf>,
}

/// Why a command was not run.
#[derive(Debug, Error)]
pub enum ExecError {
    /// The guard refused it.
    #[error("refused by the guard: {rule}")]
    Blocked {
        /// The rule.
        rule: String,
    },
    /// The installed tool does not know a flag the catalogue does.
    #[error(
        "{binary} on this node does not list {flag} in its help ('{binary} {help}'); it is probably older than the catalogue: leave the flag out"
    )]
    UnknownOnNode {
        /// The program.
        binary: String,
        /// The flag.
        flag: String,
        /// The help arguments consulted.
        help: String,
    },
    /// A program could not be started or waited for.
    #[error("could not run {program}: {source}")]
    Io {
        /// The program.
        program: String,
        /// The error.
        source: io::Error,
    },
}

/// Runs an approved verdict on `target` within `limits`.
pub fn execute(
    verdict: &Verdict,
    target: Target<'_>,
    limits: &Limits,
) -> Result<Execution, ExecError> {
    execute_interruptible(verdict, target, limits, &AtomicBool::new(false))
}

/// [`execute`], stopped early when `interrupt` is set (the session's Ctrl-C
/// flag): the pipeline's whole process group is killed and the run ends
/// with [`Exit::Interrupted`].
pub fn execute_interruptible(
    verdict: &Verdict,
    target: Target<'_>,
    limits: &Limits,
    interrupt: &AtomicBool,
) -> Result<Execution, ExecError> {
    let Some(plan) = &verdict.plan else {
        return Err(ExecError::Blocked {
            rule: verdict.rule.clone(),
        });
    };
    let start = Instant::now();
    let mut run = match target {
        Target::Live => {
            for (segment, flags) in plan.segments.iter().zip(&plan.long_flags) {
                let binary = &segment.argv[0];
                if let Some((flag, help)) = help::first_unlisted(binary, flags) {
                    return Err(ExecError::UnknownOnNode {
                        binary: binary.clone(),
                        flag,
                        help,
                    });
                }
            }
            run_pipeline(&plan.segments, None, limits, interrupt)?
        }
        Target::Simulated(node) => simulate(node, &plan.segments, limits, interrupt)?,
    };
    run.command = verdict.command.clone();
    run.duration = start.elapsed();
    Ok(run)
}

/// The first segment on the simulated node, the filters for real.
fn simulate(
    node: &SimNode,
    segments: &[Segment],
    limits: &Limits,
    interrupt: &AtomicBool,
) -> Result<Execution, ExecError> {
    let (first, rest) = segments.split_first().ok_or_else(|| ExecError::Blocked {
        rule: "no program is named".into(),
    })?;
    let out = node.run(&first.argv);
    if out.hung {
        // Nothing ran for real: wait as the live executor would, then report
        // the whole pipeline killed.
        let exit = wait_out(limits.timeout, interrupt);
        return Ok(Execution {
            command: String::new(),
            stdout: Captured::default(),
            stderr: Captured::default(),
            exit,
            segments: vec![exit; segments.len()],
            duration: Duration::ZERO,
            programs: Vec::new(),
        });
    }
    let (mut stdout, mut stderr) = (out.stdout, out.stderr);
    match first.redirects.stderr {
        StderrTo::Null => stderr.clear(),
        StderrTo::Pipe => stdout.push_str(&std::mem::take(&mut stderr)),
        StderrTo::Capture => {}
    }
    if first.redirects.stdout == StdoutTo::Null {
        stdout.clear();
    }
    let first_exit = Exit::Code(out.exit_code);
    if rest.is_empty() {
        let cap = |s: &str| tail(s.as_bytes(), limits.output_cap);
        return Ok(Execution {
            command: String::new(),
            stdout: cap(&stdout),
            stderr: cap(&stderr),
            exit: first_exit,
            segments: vec![first_exit],
            duration: Duration::ZERO,
            programs: Vec::new(),
        });
    }
    let mut run = run_pipeline(rest, Some(stdout), limits, interrupt)?;
    if !stderr.is_empty() {
        let joined = format!("{stderr}{}", run.stderr.text);
        run.stderr = tail(joined.as_bytes(), limits.output_cap);
    }
    run.segments.insert(0, first_exit);
    // The first segment ran nowhere: no path to show for any.
    run.programs.clear();
    Ok(run)
}

/// Waits for a simulated program that never exits: until `timeout`
/// ([`Exit::TimedOut`]) or until `interrupt` is set ([`Exit::Interrupted`]).
fn wait_out(timeout: Duration, interrupt: &AtomicBool) -> Exit {
    let start = Instant::now();
    loop {
        if interrupt.load(Ordering::SeqCst) {
            return Exit::Interrupted;
        }
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Exit::TimedOut;
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Keeps the last `cap` bytes.
fn tail(bytes: &[u8], cap: usize) -> Captured {
    let dropped = bytes.len().saturating_sub(cap);
    Captured::from_bytes(&bytes[dropped..], dropped)
}

/// A bounded buffer keeping the tail of a stream.
#[derive(Debug, Default)]
struct TailBuffer {
    bytes: Vec<u8>,
    dropped: usize,
}

impl TailBuffer {
    fn push(&mut self, chunk: &[u8], cap: usize) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > cap {
            let excess = self.bytes.len() - cap;
            self.bytes.drain(..excess);
            self.dropped += excess;
        }
    }
}

/// A reader thread filling a shared tail buffer.
struct Drain {
    buffer: Arc<Mutex<TailBuffer>>,
    thread: JoinHandle<()>,
}

impl Drain {
    fn start(mut pipe: impl Read + Send + 'static, cap: usize) -> Self {
        let buffer = Arc::new(Mutex::new(TailBuffer::default()));
        let shared = Arc::clone(&buffer);
        let thread = thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => match shared.lock() {
                        Ok(mut b) => b.push(&chunk[..n], cap),
                        Err(_) => break,
                    },
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        });
        Self { buffer, thread }
    }

    /// What was read, waiting up to `grace` for the writer side to close.
    fn finish(self, grace: Duration) -> (Vec<u8>, usize) {
        let deadline = Instant::now() + grace;
        while !self.thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        match self.buffer.lock() {
            Ok(mut b) => (std::mem::take(&mut b.bytes), b.dropped),
            Err(_) => (Vec::new(), 0),
        }
    }
}

/// How often a running pipeline looks at the interrupt flag.
const INTERRUPT_POLL: Duration = Duration::from_millis(100);

/// The directories searched for a program, before `PATH`'s own.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables a command keeps from Sigma's environment; every other one
/// (`LD_PRELOAD`, `PAGER`, `LESSOPEN`, `BASH_ENV`, `PYTHONPATH`, ...) is
/// dropped.
const KEPT_ENV: [&str; 4] = ["HOME", "USER", "LOGNAME", "TZ"];

/// Finds `program`: in the system directories, then the absolute
/// directories of `PATH` (a relative entry such as `.` would run whatever
/// the current directory holds). The file, with symlinks resolved, must
/// not be writable by anyone but root and this user, nor be in a
/// directory that is: a look-alike dropped in `/tmp` or a shared directory
/// never runs. Returns the resolved path, or why there is none.
fn find_program(program: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let user_path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(SYSTEM_PATH).chain(std::env::split_paths(&user_path));
    let mut refused = None;
    for dir in dirs.filter(|d| d.is_absolute()) {
        let candidate = dir.join(program);
        let Ok(real) = candidate.canonicalize() else {
            continue;
        };
        let executable = real
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !executable {
            continue;
        }
        match untrusted_location(&real) {
            None => return Ok(real),
            Some(why) => {
                refused.get_or_insert(format!("{} not run: {why}", real.display()));
            }
        }
    }
    Err(refused.unwrap_or_else(|| "not found on this node".to_string()))
}

/// Why `path` (resolved) is not trusted to run, if it is not: it, or its
/// directory, is writable by group or others, or owned by someone other
/// than root or this user.
fn untrusted_location(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    for p in [Some(path), path.parent()].into_iter().flatten() {
        let Ok(meta) = p.metadata() else {
            return Some(format!("cannot inspect {}", p.display()));
        };
        if meta.uid() != 0 && meta.uid() != me {
            return Some(format!("{} is owned by uid {}", p.display(), meta.uid()));
        }
        if meta.mode() & 0o022 != 0 {
            return Some(format!("{} is writable by other users", p.display()));
        }
    }
    None
}

/// Runs `segments` as one pipeline in its own process group, feeding
/// `input` to the first one's standard input.
fn run_pipeline(
    segments: &[Segment],
    input: Option<String>,
    limits: &Limits,
    interrupt: &AtomicBool,
) -> Result<Execution, ExecError> {
    let start = Instant::now();
    let mut programs = Vec::new();
    for segment in segments {
        let name = &segment.argv[0];
        match find_program(name) {
            Ok(p) => programs.push(p),
            Err(why) => {
                let message = format!("{name}: {why}\n");
                return Ok(Execution {
                    command: String::new(),
                    stdout: Captured::default(),
                    stderr: tail(message.as_bytes(), limits.output_cap),
                    exit: Exit::Code(127),
                    segments: vec![Exit::Code(127)],
                    duration: start.elapsed(),
                    programs: Vec::new(),
                });
            }
        }
    }
    let mut group = Group::default();
    let result = group.spawn_all(segments, &programs, input, limits.output_cap);
    if let Err(e) = result {
        group.kill();
        return Err(e);
    }
    let deadline = start + limits.timeout;
    let mut exits = Vec::new();
    // Why the group was stopped early, if it was.
    let mut stopped: Option<Exit> = None;
    for child in &mut group.children {
        let status = loop {
            if stopped.is_some() {
                break None;
            }
            if interrupt.load(Ordering::SeqCst) {
                stopped = Some(Exit::Interrupted);
                break None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                stopped = Some(Exit::TimedOut);
                break None;
            }
            // Short waits, so Ctrl-C is seen within a tenth of a second.
            let waited = child
                .wait_timeout(left.min(INTERRUPT_POLL))
                .map_err(|source| ExecError::Io {
                    program: segments[0].argv[0].clone(),
                    source,
                })?;
            if let Some(status) = waited {
                break Some(status);
            }
        };
        exits.push(match (status, stopped) {
            (Some(s), _) => Exit::from_status(s),
            (None, Some(why)) => why,
            (None, None) => Exit::TimedOut,
        });
    }
    if stopped.is_some() {
        group.kill();
    }
    let grace = Duration::from_secs(1);
    let (out, out_dropped) = group
        .stdout
        .take()
        .map(|d| d.finish(grace))
        .unwrap_or_default();
    let mut err = Vec::new();
    let mut err_dropped = 0;
    for d in group.stderr.drain(..) {
        let (bytes, dropped) = d.finish(grace);
        err.extend_from_slice(&bytes);
        err_dropped += dropped;
    }
    let excess = err.len().saturating_sub(limits.output_cap);
    let exit = stopped.unwrap_or_else(|| exits.last().copied().unwrap_or(Exit::Code(0)));
    Ok(Execution {
        command: String::new(),
        stdout: Captured::from_bytes(&out, out_dropped),
        stderr: Captured::from_bytes(&err[excess..], err_dropped + excess),
        exit,
        segments: exits,
        duration: start.elapsed(),
        programs,
    })
}

/// The processes of one pipeline and their output readers.
#[derive(Default)]
struct Group {
    /// The process group ID (the first child's PID).
    pgid: Option<i32>,
    /// The children, in pipeline order.
    children: Vec<Child>,
    /// The last segment's standard output.
    stdout: Option<Drain>,
    /// Each segment's standard error.
    stderr: Vec<Drain>,
}

impl Group {
    /// Spawns every segment, wiring each one's output to the next one's input.
    fn spawn_all(
        &mut self,
        segments: &[Segment],
        programs: &[PathBuf],
        input: Option<String>,
        cap: usize,
    ) -> Result<(), ExecError> {
        let mut next_stdin = match &input {
            Some(_) => Stdio::piped(),
            None => Stdio::null(),
        };
        for (i, (segment, program)) in segments.iter().zip(programs).enumerate() {
            let last = i + 1 == segments.len();
            let io_err = |source| ExecError::Io {
                program: segment.argv[0].clone(),
                source,
            };
            let (reader, writer) = io::pipe().map_err(io_err)?;
            let mut cmd = command(program, &segment.argv, self.pgid);
            cmd.stdin(std::mem::replace(&mut next_stdin, Stdio::null()));
            wire(&mut cmd, &segment.redirects, &writer).map_err(io_err)?;
            let mut child = cmd.spawn().map_err(io_err)?;
            drop(writer);
            if self.pgid.is_none() {
                self.pgid = i32::try_from(child.id()).ok();
            }
            if i == 0
                && let (Some(text), Some(mut stdin)) = (input.clone(), child.stdin.take())
            {
                // A filter may stop reading early (head); a broken pipe is fine.
                thread::spawn(move || {
                    let _ = stdin.write_all(text.as_bytes());
                });
            }
            if let Some(err) = child.stderr.take() {
                self.stderr.push(Drain::start(err, cap));
            }
            self.children.push(child);
            if last {
                self.stdout = Some(Drain::start(reader, cap));
            } else {
                next_stdin = Stdio::from(reader);
            }
        }
        Ok(())
    }

    /// Kills the whole process group and reaps the children.
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) with a negative PID signals the process group we
            // created for this pipeline; it touches no memory of ours.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        for child in &mut self.children {
            // Fails only when the child was already reaped.
            let _ = child.wait();
        }
    }
}

/// A command for one segment, in the pipeline's process group.
fn command(program: &Path, argv: &[String], pgid: Option<i32>) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg0(&argv[0]).args(&argv[1..]).env_clear();
    for name in KEPT_ENV {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    cmd.env("PATH", SYSTEM_PATH)
        .env("LC_ALL", "C")
        .env("PAGER", "cat")
        .env("SYSTEMD_PAGER", "cat")
        .process_group(pgid.unwrap_or(0));
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours.
    // The child gets SIGKILL if Sigma dies (killed, crashed) before it ends.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// Sets a segment's standard output and error from its redirections.
fn wire(cmd: &mut Command, r: &Redirects, pipe: &io::PipeWriter) -> io::Result<()> {
    match r.stdout {
        StdoutTo::Pipe => cmd.stdout(pipe.try_clone()?),
        StdoutTo::Null => cmd.stdout(Stdio::null()),
    };
    match r.stderr {
        StderrTo::Capture => cmd.stderr(Stdio::piped()),
        StderrTo::Null => cmd.stderr(Stdio::null()),
        StderrTo::Pipe => cmd.stderr(pipe.try_clone()?),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(argv: &[&str]) -> Segment {
        Segment {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            redirects: Redirects::default(),
        }
    }

    /// An interrupt flag nobody sets.
    static NO_STOP: AtomicBool = AtomicBool::new(false);

    fn limits(timeout_ms: u64, cap: usize) -> Limits {
        Limits {
            timeout: Duration::from_millis(timeout_ms),
            output_cap: cap,
        }
    }

    #[test]
    fn timeout_kills_the_process_group() {
        let started = Instant::now();
        let run = run_pipeline(
            &[segment(&["sleep", "5"]), segment(&["cat"])],
            None,
            &limits(200, 1024),
            &NO_STOP,
        )
        .unwrap();
        assert_eq!(run.exit, Exit::TimedOut);
        assert_eq!(run.exit.code(), 124);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn ctrl_c_kills_the_whole_group_at_once() {
        let flag = Arc::new(AtomicBool::new(false));
        let setter = Arc::clone(&flag);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            setter.store(true, Ordering::SeqCst);
        });
        let started = Instant::now();
        // `sh -c 'sleep 30 & wait'`: a grandchild in the group, too.
        let run = run_pipeline(
            &[segment(&["sh", "-c", "sleep 30 & echo started; wait"])],
            None,
            &limits(20_000, 1024),
            &flag,
        )
        .unwrap();
        assert_eq!(run.exit, Exit::Interrupted);
        assert_eq!(run.exit.code(), 130);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(run.stdout.text, "started\n", "output so far is kept");
    }

    #[test]
    fn a_hung_simulated_tool_times_out_or_stops_on_ctrl_c() {
        let node = crate::sim::load("h100x8-driver-hung").expect("node");
        let verdict = super::super::check("nvidia-smi -q | grep -i xid");
        let started = Instant::now();
        let run = execute(&verdict, Target::Simulated(&node), &limits(300, 1024)).unwrap();
        assert_eq!(run.exit, Exit::TimedOut);
        assert_eq!(run.segments, [Exit::TimedOut, Exit::TimedOut]);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(3));

        let flag = Arc::new(AtomicBool::new(false));
        let setter = Arc::clone(&flag);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(200));
            setter.store(true, Ordering::SeqCst);
        });
        let started = Instant::now();
        let run = execute_interruptible(
            &super::super::check("dcgmi discovery -l"),
            Target::Simulated(&node),
            &limits(20_000, 1024),
            &flag,
        )
        .unwrap();
        assert_eq!(run.exit, Exit::Interrupted);
        assert!(started.elapsed() < Duration::from_secs(5));

        // What does not reach the driver still answers at once.
        let run = execute(
            &super::super::check("dmesg -T"),
            Target::Simulated(&node),
            &limits(300, 1 << 20),
        )
        .unwrap();
        assert_eq!(run.exit, Exit::Code(0));
        assert!(run.stdout.text.contains("Xid"));
    }

    #[test]
    fn the_child_environment_is_an_allowlist() {
        // cargo gives test processes many variables (CARGO_*, RUST_*...):
        // none of them may reach the child.
        let parent: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
        assert!(parent.iter().any(|k| !KEPT_ENV.contains(&k.as_str())));
        let run = run_pipeline(&[segment(&["env"])], None, &limits(5000, 8192), &NO_STOP).unwrap();
        let names: Vec<&str> = run
            .stdout
            .text
            .lines()
            .filter_map(|l| l.split('=').next())
            .collect();
        for name in &names {
            assert!(
                KEPT_ENV.contains(name)
                    || ["PATH", "LC_ALL", "PAGER", "SYSTEMD_PAGER"].contains(name),
                "{name} leaked into the child: {names:?}"
            );
        }
        assert!(run.stdout.text.contains("PAGER=cat\n"));
        assert!(run.stdout.text.contains(&format!("PATH={SYSTEM_PATH}\n")));
    }

    #[test]
    fn a_program_in_a_writable_directory_never_runs() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let fake = dir.path().join("sigma-look-alike");
        std::fs::write(&fake, "#!/bin/sh\necho pwned\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let why = untrusted_location(&fake.canonicalize().unwrap()).expect("refused");
        assert!(why.contains("writable by other users"), "{why}");
        // A real system tool resolves to its real path.
        let sh = find_program("sh").unwrap();
        assert!(
            sh.is_absolute() && untrusted_location(&sh).is_none(),
            "{}",
            sh.display()
        );
    }

    #[test]
    fn killed_child_is_reported_by_signal() {
        // `sleep` killed by the test through the group's SIGKILL shows as a
        // signal when we wait for it ourselves.
        let mut group = Group::default();
        group
            .spawn_all(
                &[segment(&["sleep", "5"])],
                &[find_program("sleep").unwrap()],
                None,
                64,
            )
            .unwrap();
        let pgid = group.pgid.unwrap();
        // SAFETY: signals the process group this test created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let status = group.children[0].wait().unwrap();
        let exit = Exit::from_status(status);
        assert_eq!(exit, Exit::Signal(9));
        assert_eq!(exit.to_string(), "killed by signal 9");
    }

    #[test]
    fn output_cap_keeps_the_tail() {
        let run = run_pipeline(
            &[segment(&["seq", "1", "20000"])],
            None,
            &limits(5000, 100),
            &NO_STOP,
        )
        .unwrap();
        assert!(run.stdout.truncated);
        assert!(run.stdout.text.starts_with("[... "), "{}", run.stdout.text);
        assert!(
            run.stdout.text.ends_with("19999\n20000\n"),
            "{}",
            run.stdout.text
        );
        assert_eq!(run.stdout.dropped_bytes + 100, 108894);
    }

    #[test]
    fn pipeline_is_wired_and_input_fed() {
        let run = run_pipeline(
            &[segment(&["grep", "b"]), segment(&["wc", "-l"])],
            Some("a\nb\nab\nc\n".into()),
            &limits(5000, 1024),
            &NO_STOP,
        )
        .unwrap();
        assert_eq!(run.stdout.text.trim(), "2");
        assert_eq!(run.exit, Exit::Code(0));
        assert_eq!(run.segments.len(), 2);
    }

    #[test]
    fn missing_program_is_127() {
        let run = run_pipeline(
            &[segment(&["sigma-no-such-tool", "-L"])],
            None,
            &limits(1000, 1024),
            &NO_STOP,
        )
        .unwrap();
        assert_eq!(run.exit, Exit::Code(127));
        assert_eq!(
            run.stderr.text,
            "sigma-no-such-tool: not found on this node\n"
        );
    }

    #[test]
    fn stderr_can_join_stdout() {
        let mut s = segment(&["ls", "/sigma-no-such-dir"]);
        s.redirects.stderr = StderrTo::Pipe;
        let run = run_pipeline(&[s], None, &limits(5000, 1024), &NO_STOP).unwrap();
        assert!(run.stdout.text.contains("sigma-no-such-dir"), "{run:?}");
        assert!(run.stderr.text.is_empty());
    }
}
