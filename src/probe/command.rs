//! Running a node tool (`journalctl`, `dmesg`, `rocm-smi`) with a time limit.
//!
//! Tools on a sick node hang (a dead GPU can block `rocm-smi` in the driver),
//! so every probe command runs under a timeout and is killed past it. Output
//! is drained on reader threads so a chatty tool cannot fill its pipe and
//! stall. This module runs commands; it does not interpret their output.

use std::io::{self, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use thiserror::Error;
use wait_timeout::ChildExt;

/// Why a probe command gave no usable output.
#[derive(Debug, Error)]
pub enum CommandError {
    /// The program is not on `PATH`.
    #[error("{program} not found")]
    NotFound {
        /// The program that was looked up.
        program: String,
    },
    /// The program could not be started or waited for.
    #[error("{program}: {source}")]
    Io {
        /// The program.
        program: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The program ran past its time limit and was killed.
    #[error("{program} did not answer within {secs} s and was stopped")]
    TimedOut {
        /// The program.
        program: String,
        /// The limit, seconds.
        secs: u64,
    },
    /// The program exited with a failure status.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// The first line of its standard error (untrusted).
        stderr: String,
        /// Whatever it printed before failing (some tools print usable
        /// output and still exit non-zero).
        stdout: String,
    },
}

impl CommandError {
    /// True when the tool said it lacks permission (exit failure whose
    /// standard error mentions it, or `EACCES`/`EPERM` on start).
    pub fn is_permission_denied(&self) -> bool {
        match self {
            Self::Io { source, .. } => source.kind() == io::ErrorKind::PermissionDenied,
            Self::Failed { stderr, .. } => {
                let s = stderr.to_ascii_lowercase();
                s.contains("permission denied") || s.contains("not permitted")
            }
            _ => false,
        }
    }
}

/// Standard output and error of a command that exited successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Standard output, lossily decoded as UTF-8.
    pub stdout: String,
    /// Standard error, lossily decoded as UTF-8.
    pub stderr: String,
}

/// Runs `program args...` with no standard input, waits at most `timeout`,
/// and returns its output when it exits with status 0.
pub fn run(program: &str, args: &[&str], timeout: Duration) -> Result<Output, CommandError> {
    let io_err = |source: io::Error| CommandError::Io {
        program: program.to_string(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => CommandError::NotFound {
                program: program.to_string(),
            },
            _ => io_err(e),
        })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = match child.wait_timeout(timeout).map_err(io_err)? {
        Some(status) => status,
        None => {
            stop(&mut child);
            return Err(CommandError::TimedOut {
                program: program.to_string(),
                secs: timeout.as_secs().max(1),
            });
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(CommandError::Failed {
            program: program.to_string(),
            status,
            stderr: stderr.lines().next().unwrap_or("").trim().to_string(),
            stdout,
        });
    }
    Ok(Output { stdout, stderr })
}

/// Reads a pipe to its end on a thread of its own (lossily decoded).
pub fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            // A read error leaves what was read so far; the exit status decides.
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Kills a child that ran past its limit and reaps it.
fn stop(child: &mut Child) {
    // Both fail only when the child already exited, which is what we want.
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_secs(5);

    #[test]
    fn returns_stdout_of_a_successful_command() {
        let out = run("sh", &["-c", "echo hello; echo oops >&2"], SHORT).unwrap();
        assert_eq!(out.stdout, "hello\n");
        assert_eq!(out.stderr, "oops\n");
    }

    #[test]
    fn missing_program_is_not_found() {
        let err = run("sigma-no-such-program", &[], SHORT).unwrap_err();
        assert!(matches!(err, CommandError::NotFound { .. }), "{err}");
        assert_eq!(err.to_string(), "sigma-no-such-program not found");
    }

    #[test]
    fn failure_keeps_first_stderr_line_and_spots_permission() {
        let err = run(
            "sh",
            &["-c", "echo 'dmesg: read kernel buffer failed: Operation not permitted' >&2; echo more >&2; exit 1"],
            SHORT,
        )
        .unwrap_err();
        assert!(err.is_permission_denied(), "{err}");
        assert!(
            err.to_string().ends_with("Operation not permitted"),
            "{err}"
        );
    }

    #[test]
    fn slow_command_is_stopped() {
        let err = run("sleep", &["10"], Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, CommandError::TimedOut { .. }), "{err}");
    }

    #[test]
    fn large_output_does_not_stall() {
        let out = run(
            "sh",
            &["-c", "head -c 300000 /dev/zero | tr '\\0' x"],
            SHORT,
        )
        .unwrap();
        assert_eq!(out.stdout.len(), 300_000);
    }
}
