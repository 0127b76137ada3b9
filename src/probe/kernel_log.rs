//! XID events from the kernel log.
//!
//! Reading ([`read_kernel_log`]): `/dev/kmsg`, then `journalctl -k`, then
//! `dmesg`, whichever answers first; each is a [`LogReader`] so tests can put
//! a failing one in its place. Parsing ([`parse_xids`]) accepts the line
//! formats of all three, plus `dmesg -T`, so the simulator and the live probe
//! share one parser.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use thiserror::Error;

use super::XidEvent;
use super::command::{self, CommandError};

/// How long `journalctl` or `dmesg` may take before it is stopped.
const TOOL_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many `/dev/kmsg` records are read (a flooding kernel could
/// otherwise keep the reader busy forever).
const MAX_KMSG_RECORDS: usize = 500_000;
/// The largest `/dev/kmsg` record; a shorter buffer makes `read` fail with
/// `EINVAL`.
const KMSG_RECORD_MAX: usize = 8192;

/// The kernel log as read from one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelLog {
    /// Which source answered (`/dev/kmsg`, `journalctl -k`, `dmesg`).
    pub source: String,
    /// The log lines, oldest first (untrusted text).
    pub lines: Vec<String>,
}

/// No source could read the kernel log.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KernelLogError {
    /// At least one source refused for lack of permission.
    #[error("kernel log: permission denied ({tried}), run as root or join group adm")]
    PermissionDenied {
        /// What was tried and how each failed.
        tried: String,
    },
    /// Every source failed for other reasons.
    #[error(
        "kernel log unreadable ({tried}); run on the node itself with /dev/kmsg, journalctl or dmesg"
    )]
    Unreadable {
        /// What was tried and how each failed.
        tried: String,
    },
}

/// A place the kernel log can be read from.
pub trait LogReader {
    /// Short name recorded in the snapshot (`/dev/kmsg`, `journalctl -k`).
    fn name(&self) -> String;
    /// Every line of the log, oldest first. A refusal for lack of rights is
    /// an error of kind [`io::ErrorKind::PermissionDenied`].
    fn read_lines(&self) -> io::Result<Vec<String>>;
}

/// `/dev/kmsg` (or a file standing in for it), read without blocking.
#[derive(Debug, Clone)]
pub struct Kmsg {
    /// Path of the device.
    pub path: PathBuf,
}

impl LogReader for Kmsg {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn read_lines(&self) -> io::Result<Vec<String>> {
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)?;
        read_kmsg_records(&mut file)
    }
}

/// Reads `/dev/kmsg` records until the reader would block (or ends). Each
/// `read` returns one record: `prio,seq,usec,flags;message` plus
/// continuation lines starting with a space (key=value metadata), which are
/// dropped. A record overwritten while reading (`EPIPE`) is skipped.
pub fn read_kmsg_records(reader: &mut impl Read) -> io::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut buf = vec![0u8; KMSG_RECORD_MAX];
    while lines.len() < MAX_KMSG_RECORDS {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => lines.push(kmsg_record_line(&buf[..n])),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(lines)
}

/// The first line of a `/dev/kmsg` record, prefix kept (the parser reads
/// the timestamp from it).
fn kmsg_record_line(record: &[u8]) -> String {
    let text = String::from_utf8_lossy(record);
    text.lines().next().unwrap_or("").to_string()
}

/// A command that prints the kernel log (`journalctl -k`, `dmesg`).
#[derive(Debug, Clone)]
pub struct LogTool {
    /// Name recorded in the snapshot.
    pub name: &'static str,
    /// Program to run.
    pub program: &'static str,
    /// Its arguments.
    pub args: &'static [&'static str],
}

impl LogReader for LogTool {
    fn name(&self) -> String {
        self.name.to_string()
    }

    fn read_lines(&self) -> io::Result<Vec<String>> {
        let out = command::run(self.program, self.args, TOOL_TIMEOUT).map_err(to_io_error)?;
        // journalctl without rights exits 0 with a hint and no entries.
        let hint = out.stderr.to_ascii_lowercase();
        if hint.contains("not seeing messages") || hint.contains("insufficient permissions") {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{}: not allowed to see system messages", self.program),
            ));
        }
        let lines: Vec<String> = out
            .stdout
            .lines()
            .filter(|l| !l.starts_with("-- "))
            .map(str::to_string)
            .collect();
        if lines.is_empty() {
            return Err(io::Error::other(format!("{}: no entries", self.program)));
        }
        Ok(lines)
    }
}

/// A failed command as an I/O error of the matching kind.
fn to_io_error(e: CommandError) -> io::Error {
    let kind = if e.is_permission_denied() {
        io::ErrorKind::PermissionDenied
    } else if matches!(e, CommandError::NotFound { .. }) {
        io::ErrorKind::NotFound
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e.to_string())
}

/// The readers tried on a live node, in order.
pub fn default_readers() -> Vec<Box<dyn LogReader>> {
    vec![
        Box::new(Kmsg {
            path: PathBuf::from("/dev/kmsg"),
        }),
        Box::new(LogTool {
            name: "journalctl -k",
            program: "journalctl",
            args: &["-k", "-b", "--no-pager", "-o", "short-iso"],
        }),
        Box::new(LogTool {
            name: "dmesg",
            program: "dmesg",
            args: &[],
        }),
    ]
}

/// Reads the kernel log from the first reader that answers.
pub fn read_kernel_log(readers: &[Box<dyn LogReader>]) -> Result<KernelLog, KernelLogError> {
    let mut tried = Vec::new();
    let mut denied = false;
    for reader in readers {
        match reader.read_lines() {
            Ok(lines) => {
                return Ok(KernelLog {
                    source: reader.name(),
                    lines,
                });
            }
            Err(e) => {
                denied |= e.kind() == io::ErrorKind::PermissionDenied;
                tried.push(format!("{}: {e}", reader.name()));
            }
        }
    }
    let tried = tried.join("; ");
    Err(if denied {
        KernelLogError::PermissionDenied { tried }
    } else {
        KernelLogError::Unreadable { tried }
    })
}

/// `NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.`
static XID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"NVRM: Xid \((?:PCI:)?([0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?)\): (\d+),\s*(.*)$")
        .expect("valid regex")
});
static PID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"pid='?(\d+)'?").expect("valid regex"));
static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"name=([^,]+)").expect("valid regex"));
/// `[ 1234.567890] ...` (dmesg) or `[Sat Nov 28 07:00:00 2026] ...` (dmesg -T).
static BRACKET_TS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\[\s*([^\]]+)\]").expect("valid regex"));
/// `4,1234,1234567890,-;...` (/dev/kmsg: priority, sequence, microseconds since boot).
static KMSG_TS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\d+,\d+,(\d+),[^;]*;").expect("valid regex"));
/// `2026-11-28T07:00:00+0000 host kernel: ...` (journalctl -o short-iso).
static ISO_TS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:?\d\d|Z)?)\s")
        .expect("valid regex")
});

/// Parses every XID line in `lines`, oldest first, in any of the formats
/// `dmesg`, `dmesg -T`, `/dev/kmsg` and `journalctl -k -o short-iso` write.
/// Lines that are not XID messages are ignored.
pub fn parse_xids<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<XidEvent> {
    lines.into_iter().filter_map(parse_xid_line).collect()
}

/// Parses one kernel log line; `None` when it is not an XID message.
pub fn parse_xid_line(line: &str) -> Option<XidEvent> {
    let caps = XID.captures(line)?;
    let xid = caps[2].parse().ok()?;
    let rest = caps[3].trim().to_string();
    let pid = PID.captures(&rest).and_then(|c| c[1].parse().ok());
    let process_name = NAME
        .captures(&rest)
        .map(|c| c[1].trim().trim_matches('\'').to_string())
        .filter(|n| n != "<unknown>");
    Some(XidEvent {
        timestamp: line_timestamp(line),
        pci_bus_id: caps[1].to_string(),
        xid,
        pid,
        process_name,
        message: rest,
    })
}

/// The timestamp at the start of a log line, as written, when there is one.
fn line_timestamp(line: &str) -> Option<String> {
    if let Some(c) = KMSG_TS.captures(line) {
        let usec: u64 = c[1].parse().ok()?;
        return Some(format!("{}.{:06}", usec / 1_000_000, usec % 1_000_000));
    }
    if let Some(c) = BRACKET_TS.captures(line) {
        return Some(c[1].trim().to_string());
    }
    ISO_TS.captures(line).map(|c| c[1].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.";

    #[test]
    fn parses_dmesg_line() {
        let e = parse_xid_line(&format!("[ 8123.456789] {LINE}")).unwrap();
        assert_eq!(e.xid, 79);
        assert_eq!(e.pci_bus_id, "0000:18:00");
        assert_eq!(e.timestamp.as_deref(), Some("8123.456789"));
        assert_eq!(e.pid, None);
        assert_eq!(e.process_name, None);
        assert!(e.message.ends_with("GPU has fallen off the bus."));
    }

    #[test]
    fn parses_kmsg_line() {
        let e = parse_xid_line(&format!("4,1234,8123456789,-;{LINE}")).unwrap();
        assert_eq!(e.timestamp.as_deref(), Some("8123.456789"));
    }

    #[test]
    fn parses_dmesg_t_and_journal_lines() {
        let e = parse_xid_line(&format!("[Sat Nov 28 07:00:00 2026] {LINE}")).unwrap();
        assert_eq!(e.timestamp.as_deref(), Some("Sat Nov 28 07:00:00 2026"));
        let e = parse_xid_line(&format!("2026-11-28T07:00:00+0000 node1 kernel: {LINE}")).unwrap();
        assert_eq!(e.timestamp.as_deref(), Some("2026-11-28T07:00:00+0000"));
    }

    #[test]
    fn parses_pid_and_name() {
        let e = parse_xid_line(
            "[  99.1] NVRM: Xid (PCI:0000:3b:00): 13, pid=4242, name=python3, Graphics Exception",
        )
        .unwrap();
        assert_eq!((e.xid, e.pid), (13, Some(4242)));
        assert_eq!(e.process_name.as_deref(), Some("python3"));
    }

    /// A reader that fails with a fixed error kind.
    struct Failing(io::ErrorKind, &'static str);

    impl LogReader for Failing {
        fn name(&self) -> String {
            self.1.to_string()
        }
        fn read_lines(&self) -> io::Result<Vec<String>> {
            Err(io::Error::new(self.0, "refused"))
        }
    }

    /// A reader that answers with fixed lines.
    struct Answering(&'static [&'static str]);

    impl LogReader for Answering {
        fn name(&self) -> String {
            "fake".to_string()
        }
        fn read_lines(&self) -> io::Result<Vec<String>> {
            Ok(self.0.iter().map(|l| l.to_string()).collect())
        }
    }

    #[test]
    fn permission_denied_names_the_fix() {
        let readers: Vec<Box<dyn LogReader>> = vec![
            Box::new(Failing(io::ErrorKind::PermissionDenied, "/dev/kmsg")),
            Box::new(Failing(io::ErrorKind::NotFound, "dmesg")),
        ];
        let err = read_kernel_log(&readers).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel log: permission denied (/dev/kmsg: refused; dmesg: refused), run as root or join group adm"
        );
    }

    #[test]
    fn other_failures_are_unreadable() {
        let readers: Vec<Box<dyn LogReader>> =
            vec![Box::new(Failing(io::ErrorKind::NotFound, "dmesg"))];
        let err = read_kernel_log(&readers).unwrap_err();
        assert!(matches!(err, KernelLogError::Unreadable { .. }), "{err}");
    }

    #[test]
    fn first_answering_reader_wins() {
        let readers: Vec<Box<dyn LogReader>> = vec![
            Box::new(Failing(io::ErrorKind::PermissionDenied, "/dev/kmsg")),
            Box::new(Answering(&["[ 1.0] hello"])),
            Box::new(Failing(io::ErrorKind::NotFound, "never asked")),
        ];
        let log = read_kernel_log(&readers).unwrap();
        assert_eq!(log.source, "fake");
        assert_eq!(log.lines, ["[ 1.0] hello"]);
    }

    /// Hands out one record per `read`, like `/dev/kmsg`, then an error.
    struct FakeKmsg {
        records: Vec<io::Result<&'static str>>,
    }

    impl Read for FakeKmsg {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.records.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let r = self.records.remove(0)?;
            buf[..r.len()].copy_from_slice(r.as_bytes());
            Ok(r.len())
        }
    }

    #[test]
    fn kmsg_records_keep_first_line_and_skip_overwritten() {
        let mut fake = FakeKmsg {
            records: vec![
                Ok("6,1,100,-;first\n SUBSYSTEM=pci\n DEVICE=+pci:0000:18:00.0\n"),
                Err(io::ErrorKind::BrokenPipe.into()),
                Ok(concat!(
                    "4,1234,8123456789,-;",
                    "NVRM: Xid (PCI:0000:18:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
                )),
            ],
        };
        let lines = read_kmsg_records(&mut fake).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "6,1,100,-;first");
        let xids = parse_xids(lines.iter().map(String::as_str));
        assert_eq!(xids.len(), 1);
        assert_eq!(xids[0].xid, 79);
        assert_eq!(xids[0].timestamp.as_deref(), Some("8123.456789"));
    }

    #[test]
    fn kmsg_read_error_is_reported() {
        let mut fake = FakeKmsg {
            records: vec![Err(io::ErrorKind::PermissionDenied.into())],
        };
        let err = read_kmsg_records(&mut fake).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn kmsg_reader_reads_a_file_to_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg");
        std::fs::write(&path, "6,1,100,-;only record\n").unwrap();
        let lines = Kmsg { path }.read_lines().unwrap();
        assert_eq!(lines, ["6,1,100,-;only record"]);
    }

    #[test]
    fn missing_tool_is_not_found() {
        let tool = LogTool {
            name: "nothing",
            program: "sigma-no-such-tool",
            args: &[],
        };
        assert_eq!(
            tool.read_lines().unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn tool_without_entries_is_an_error() {
        let tool = LogTool {
            name: "empty journal",
            program: "echo",
            args: &["-- No entries --"],
        };
        assert!(tool.read_lines().is_err());
    }

    #[test]
    fn journal_hint_means_permission_denied() {
        let tool = LogTool {
            name: "journal",
            program: "sh",
            args: &[
                "-c",
                "echo 'Hint: You are currently not seeing messages from other users and the system.' >&2; echo '-- No entries --'",
            ],
        };
        assert_eq!(
            tool.read_lines().unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn ignores_other_lines() {
        assert!(parse_xid_line("[ 1.0] nvidia: loading out-of-tree module").is_none());
        assert_eq!(parse_xids(["a", "b"]).len(), 0);
    }
}
