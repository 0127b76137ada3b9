//! Kernel log output (`dmesg`, `journalctl -k`) read back into facts: each
//! XID line, by the probe's own parser, and the count of PCIe AER reports.
//!
//! A log without XID lines is a fact too: the reading has no XID fact, and
//! the caller knows the log was read.

use chrono::{DateTime, Local, NaiveDateTime, TimeZone, Utc};

use super::{Command, Fact};
use crate::probe::kernel_log::parse_xid_line;
use crate::probe::{Snapshot, XidEvent, normalize_bus_id};

/// Reads kernel log lines.
pub fn read(command: &Command<'_>, text: &str) -> Vec<Fact> {
    let mut facts = Vec::new();
    let mut aer = 0usize;
    for line in text.lines() {
        if let Some(e) = parse_xid_line(line) {
            let gpu = command.gpu_of(&e.pci_bus_id);
            let when = e.timestamp.clone().unwrap_or_else(|| "(no time)".into());
            facts.push(
                Fact::new(gpu, "xid", e.xid.to_string(), None)
                    .about(format!("{} at {when}", normalize_bus_id(&e.pci_bus_id))),
            );
        } else if line.contains("AER:") {
            aer += 1;
        }
    }
    if aer > 0 {
        facts.push(Fact::new(None, "kernel.aer_reports", aer.to_string(), None));
    }
    facts
}

/// Adds an XID fact to the snapshot's events when it is not there yet.
pub fn apply(snapshot: &mut Snapshot, fact: &Fact) {
    if fact.field != "xid" {
        return;
    }
    let (Some(xid), Some(subject)) = (fact.number(), fact.subject.as_deref()) else {
        return;
    };
    let Some((bus, when)) = subject.split_once(" at ") else {
        return;
    };
    let xid = xid as u32;
    let timestamp = (when != "(no time)").then(|| when.to_string());
    // An uptime of 0 is one the probe could not read.
    let boot = snapshot.boot_time().filter(|_| snapshot.host.uptime_s > 0);
    let known = snapshot.xid_events.iter().any(|e| {
        e.xid == xid
            && normalize_bus_id(&e.pci_bus_id) == bus
            && same_moment(e.timestamp.as_deref(), timestamp.as_deref(), boot)
    });
    if !known {
        snapshot.xid_events.push(XidEvent {
            timestamp,
            pci_bus_id: bus.to_string(),
            xid,
            pid: None,
            process_name: None,
            message: String::new(),
        });
    }
}

/// Whether two kernel log timestamps are one moment: the same text, or the
/// same time to the second once read as wall times (the probe keeps the
/// kernel's seconds since boot, `dmesg -T` prints the wall time), so an XID
/// read back from a command is not counted twice.
fn same_moment(a: Option<&str>, b: Option<&str>, boot: Option<DateTime<Utc>>) -> bool {
    if a == b {
        return true;
    }
    let (Some(a), Some(b)) = (a, b) else {
        return false;
    };
    let (wa, wb) = (wall_times(a, boot), wall_times(b, boot));
    wa.iter().any(|x| {
        wb.iter()
            .any(|y| (*x - *y).num_milliseconds().abs() <= 1_000)
    })
}

/// The wall times a timestamp may stand for: seconds since `boot`, or
/// `dmesg -T`'s `Fri Dec  4 23:48:32 2026` read as UTC and as local time
/// (dmesg prints the node's local time; the simulator prints UTC).
fn wall_times(ts: &str, boot: Option<DateTime<Utc>>) -> Vec<DateTime<Utc>> {
    let ts = ts.trim();
    if let (Ok(secs), Some(boot)) = (ts.parse::<f64>(), boot) {
        return vec![boot + chrono::Duration::microseconds((secs * 1e6).round() as i64)];
    }
    let squeezed = ts.split_whitespace().collect::<Vec<_>>().join(" ");
    let Ok(naive) = NaiveDateTime::parse_from_str(&squeezed, "%a %b %d %H:%M:%S %Y") else {
        return Vec::new();
    };
    let mut out = vec![naive.and_utc()];
    out.extend(
        Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&Utc)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Ended, read as read_output};
    use crate::sim;

    #[test]
    fn xid_lines_become_facts_about_their_gpu() {
        let node = sim::load("h100x8-xid79").expect("node");
        let argv = vec!["dmesg".to_string(), "-T".to_string()];
        let out = node.run(&argv);
        let r = read_output(&[argv], &out.stdout, Ended::Exited(0), &node.snapshot);
        let xid = r.facts.iter().find(|f| f.field == "xid").expect("an XID");
        assert_eq!(xid.value, "79");
        assert_eq!(xid.gpu, Some(3));
        assert!(
            xid.subject
                .as_deref()
                .unwrap()
                .starts_with("0000:5d:00 at ")
        );

        // Applying what the log showed to a snapshot without events gives
        // the XID finding again.
        let mut snap = node.snapshot.clone();
        snap.xid_events.clear();
        super::super::apply(&mut snap, &r.facts);
        let ids: Vec<String> = crate::checks::run_all(&snap)
            .into_iter()
            .map(|f| f.id)
            .collect();
        assert!(ids.iter().any(|id| id == "xid-79"), "{ids:?}");
    }

    #[test]
    fn xids_read_back_in_any_time_format_are_not_counted_twice() {
        let node = sim::load("h100x8-driver-hung").expect("node");
        let before = node.snapshot.xid_events.len();
        assert_eq!(before, 2);
        for flags in [&["-T"][..], &[][..], &["-T", "-l", "warn"][..]] {
            let mut argv = vec!["dmesg".to_string()];
            argv.extend(flags.iter().map(|f| f.to_string()));
            let out = node.run(&argv);
            let r = read_output(&[argv], &out.stdout, Ended::Exited(0), &node.snapshot);
            assert_eq!(r.facts.iter().filter(|f| f.field == "xid").count(), 2);
            let mut snap = node.snapshot.clone();
            super::super::apply(&mut snap, &r.facts);
            assert_eq!(snap.xid_events.len(), before, "dmesg {flags:?}");
        }
    }

    #[test]
    fn a_log_without_xids_has_no_xid_fact_and_no_complaint() {
        let node = sim::load("h100x8-healthy").expect("node");
        let argv = vec!["dmesg".to_string()];
        let out = node.run(&argv);
        let r = read_output(&[argv], &out.stdout, Ended::Exited(0), &node.snapshot);
        assert!(r.facts.iter().all(|f| f.field != "xid"));
        assert!(r.note.is_none(), "{:?}", r.note);
    }
}
