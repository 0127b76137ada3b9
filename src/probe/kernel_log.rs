//! XID events from the kernel log.
//!
//! Reading: `/dev/kmsg`, then `journalctl -k`, then `dmesg`, whichever answers
//! first. Parsing ([`parse_xids`]) accepts the line formats of all three, plus
//! `dmesg -T`, so the simulator and the live probe share one parser.

use std::sync::LazyLock;

use regex::Regex;

use super::XidEvent;

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

    #[test]
    fn ignores_other_lines() {
        assert!(parse_xid_line("[ 1.0] nvidia: loading out-of-tree module").is_none());
        assert_eq!(parse_xids(["a", "b"]).len(), 0);
    }
}
