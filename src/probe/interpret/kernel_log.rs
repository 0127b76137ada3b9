//! Kernel log output (`dmesg`, `journalctl -k`) read back into facts: each
//! XID line, by the probe's own parser, and the count of PCIe AER reports.
//!
//! A log without XID lines is a fact too: the reading has no XID fact, and
//! the caller knows the log was read.

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
    let known = snapshot.xid_events.iter().any(|e| {
        e.xid == xid && normalize_bus_id(&e.pci_bus_id) == bus && e.timestamp == timestamp
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
    fn a_log_without_xids_has_no_xid_fact_and_no_complaint() {
        let node = sim::load("h100x8-healthy").expect("node");
        let argv = vec!["dmesg".to_string()];
        let out = node.run(&argv);
        let r = read_output(&[argv], &out.stdout, Ended::Exited(0), &node.snapshot);
        assert!(r.facts.iter().all(|f| f.field != "xid"));
        assert!(r.note.is_none(), "{:?}", r.note);
    }
}
