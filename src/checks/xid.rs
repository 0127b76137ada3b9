//! XID errors: the table of what each XID means (`assets/xid.toml`, embedded
//! and parsed once) and the rule that turns the kernel log's XID events into
//! `xid-<N>` findings, one per XID number per GPU.
//!
//! Events are matched to an NVML GPU by PCI bus id. An event whose bus id no
//! NVML GPU has (a GPU that fell off the bus and left NVML) gets `gpu: None`
//! and its bus id in the title and evidence.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use serde::Deserialize;

use super::common::{dmesg, evidence, pci_slot, quoted, untrusted};
use super::{Finding, Severity};
use crate::probe::{Snapshot, XidEvent, normalize_bus_id};

/// What Sigma knows about one XID.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XidInfo {
    /// The XID number.
    pub xid: u32,
    /// How bad it is.
    pub severity: Severity,
    /// Short name, e.g. `GPU has fallen off the bus`.
    pub name: String,
    /// What it means, then what to do first.
    pub why: String,
    /// Read-only commands to run next, as argv with `{gpu}` / `{pid}`
    /// placeholders (see `assets/xid.toml`).
    #[serde(default)]
    pub commands: Vec<Vec<String>>,
}

/// The layout of `assets/xid.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct XidFile {
    xid: Vec<XidInfo>,
}

/// The text of `assets/xid.toml`.
const XID_TOML: &str = include_str!("../../assets/xid.toml");

/// The table, parsed on first use. The file is part of the binary and the
/// tests parse it, so a failure here is a build defect, not bad input.
static TABLE: LazyLock<Vec<XidInfo>> = LazyLock::new(|| {
    toml::from_str::<XidFile>(XID_TOML)
        .map(|f| f.xid)
        .expect("assets/xid.toml parses (checked by the xid tests)")
});

/// What Sigma knows about `xid`, if anything.
pub fn lookup(xid: u32) -> Option<&'static XidInfo> {
    TABLE.iter().find(|i| i.xid == xid)
}

/// Rule: one `xid-<N>` finding per XID number per GPU (per bus id when no
/// NVML GPU matches), with the count and the first and last occurrence.
pub(super) fn xid_events(snapshot: &Snapshot) -> Vec<Finding> {
    let mut groups: BTreeMap<(u32, String), Vec<&XidEvent>> = BTreeMap::new();
    for event in &snapshot.xid_events {
        let key = (event.xid, normalize_bus_id(&event.pci_bus_id));
        groups.entry(key).or_default().push(event);
    }
    groups
        .into_values()
        .filter_map(|events| group_finding(snapshot, &events))
        .collect()
}

/// The finding for the events of one XID on one device (oldest first).
fn group_finding(snapshot: &Snapshot, events: &[&XidEvent]) -> Option<Finding> {
    let (first, last) = (events.first()?, events.last()?);
    let xid = first.xid;
    let gpu = snapshot.gpu_by_bus_id(&first.pci_bus_id).map(|g| g.index);
    let info = lookup(xid);
    let name = info.map_or("not in Sigma's XID table", |i| i.name.as_str());

    let device = match gpu {
        Some(_) => String::new(),
        None => {
            let bus = pci_slot(&first.pci_bus_id).unwrap_or_else(|| quoted(&first.pci_bus_id, 16));
            format!(" on {bus}")
        }
    };
    let times = match events.len() {
        1 => String::new(),
        n => format!(" ({n}x)"),
    };
    let title = format!("XID {xid}{device}: {name}{times}");

    let mut ev = evidence([
        ("count", events.len().to_string()),
        ("pci_bus_id", untrusted(&first.pci_bus_id)),
        ("first_seen", timestamp(first)),
        ("last_seen", timestamp(last)),
        ("message", untrusted(&last.message)),
    ]);
    let pids: BTreeSet<u32> = events.iter().filter_map(|e| e.pid).collect();
    if !pids.is_empty() {
        ev.insert("pids".into(), join(pids.iter().map(u32::to_string)));
    }
    let names: BTreeSet<String> = events
        .iter()
        .filter_map(|e| e.process_name.as_deref())
        .map(untrusted)
        .collect();
    if !names.is_empty() {
        ev.insert("processes".into(), join(names.into_iter()));
    }

    let pid = events.iter().rev().find_map(|e| e.pid);
    let nvml_hung = snapshot.nvml_timed_out().is_some();
    let commands = match info {
        Some(info) => info
            .commands
            .iter()
            .filter_map(|c| expand(c, gpu, pid))
            .collect(),
        None => vec![dmesg()],
    };
    let mut why = match info {
        Some(info) => info.why.clone(),
        None => format!(
            "Sigma has no entry for XID {xid}: look it up in NVIDIA's XID catalogue \
             (https://docs.nvidia.com/deploy/xid-errors/) and read the kernel log around it."
        ),
    };
    if gpu.is_none() {
        why.push_str(if nvml_hung {
            " NVML did not answer, so the bus id cannot be matched to a GPU index (see \
             nvml-hung)."
        } else {
            " No NVML GPU has this bus id: the GPU is gone from NVML (see \
             gpu-missing-from-nvml) or the log is from another boot."
        });
    }
    Some(Finding {
        id: format!("xid-{xid}"),
        severity: info.map_or(Severity::Warning, |i| i.severity),
        gpu,
        title,
        evidence: ev,
        commands,
        why,
    })
}

/// The event's time as logged, or `unknown`.
fn timestamp(event: &XidEvent) -> String {
    event
        .timestamp
        .as_deref()
        .map_or_else(|| "unknown".into(), untrusted)
}

/// Values joined with `, `.
fn join(values: impl Iterator<Item = String>) -> String {
    values.collect::<Vec<_>>().join(", ")
}

/// `command` with its placeholders filled in; `None` when one has no value.
fn expand(command: &[String], gpu: Option<u32>, pid: Option<u32>) -> Option<Vec<String>> {
    command
        .iter()
        .map(|arg| match arg.as_str() {
            "{gpu}" => gpu.map(|g| g.to_string()),
            "{pid}" => pid.map(|p| p.to_string()),
            _ => Some(arg.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{TITLE_MAX_CHARS, assert_read_only, gpu, node, run};
    use super::*;

    /// The XIDs of the operations notes; each must be in the table.
    const NOTED: [u32; 18] = [
        13, 31, 43, 45, 48, 62, 63, 64, 68, 74, 79, 92, 94, 95, 109, 119, 120, 140,
    ];
    /// XIDs NVIDIA's device plugin treats as application errors.
    const APPLICATION: [u32; 5] = [13, 31, 43, 45, 68];

    fn event(xid: u32, bus: &str, ts: &str) -> XidEvent {
        XidEvent {
            timestamp: Some(ts.into()),
            pci_bus_id: bus.into(),
            xid,
            pid: None,
            process_name: None,
            message: format!("test message for {xid}"),
        }
    }

    #[test]
    fn table_parses_and_covers_the_noted_xids() {
        let parsed: XidFile = toml::from_str(XID_TOML).expect("assets/xid.toml parses");
        let numbers: BTreeSet<u32> = parsed.xid.iter().map(|i| i.xid).collect();
        assert_eq!(numbers.len(), parsed.xid.len(), "an XID is listed twice");
        for xid in NOTED {
            assert!(
                numbers.contains(&xid),
                "XID {xid} missing from assets/xid.toml"
            );
        }
    }

    #[test]
    fn application_xids_are_not_critical_and_79_is() {
        for xid in APPLICATION {
            assert!(
                lookup(xid).is_some_and(|i| i.severity < Severity::Critical),
                "XID {xid}"
            );
        }
        assert_eq!(lookup(79).map(|i| i.severity), Some(Severity::Critical));
        assert_eq!(lookup(4_000_000), None);
    }

    #[test]
    fn table_entries_are_well_formed() {
        for info in TABLE.iter() {
            assert!(
                info.name.chars().count() <= 34,
                "XID {} name too long",
                info.xid
            );
            assert!(
                !info.why.trim().is_empty() && !info.commands.is_empty(),
                "XID {}",
                info.xid
            );
            for command in &info.commands {
                for arg in command.iter().filter(|a| a.contains('{')) {
                    assert!(
                        arg == "{gpu}" || arg == "{pid}",
                        "XID {}: placeholder {arg}",
                        info.xid
                    );
                }
                let filled = expand(command, Some(0), Some(1)).expect("both placeholders filled");
                assert_read_only(&filled);
            }
        }
    }

    #[test]
    fn titles_fit_even_for_unmatched_repeated_events() {
        for info in TABLE.iter() {
            let events: Vec<XidEvent> = (0..999)
                .map(|_| event(info.xid, "0000:ff:00", "1.0"))
                .collect();
            let mut snapshot = node(vec![]);
            snapshot.xid_events = events;
            let f = &run(xid_events, &snapshot)[0];
            assert!(f.title.chars().count() <= TITLE_MAX_CHARS, "{}", f.title);
        }
    }

    #[test]
    fn xid_79_on_a_known_gpu_is_critical_with_bug_report_first() {
        let mut snapshot = node(vec![gpu(0), gpu(1)]);
        snapshot.xid_events = vec![
            event(79, "0000:19:00", "100.5"),
            event(79, "0000:19:00", "200.5"),
        ];
        let findings = run(xid_events, &snapshot);
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(
            (f.id.as_str(), f.severity, f.gpu),
            ("xid-79", Severity::Critical, Some(1))
        );
        assert_eq!(f.title, "XID 79: GPU has fallen off the bus (2x)");
        assert_eq!(f.evidence["count"], "2");
        assert_eq!(f.evidence["first_seen"], "100.5");
        assert_eq!(f.evidence["last_seen"], "200.5");
        let programs: Vec<&str> = f.commands.iter().map(|c| c[0].as_str()).collect();
        assert_eq!(programs, ["lspci", "nvidia-bug-report.sh", "dmesg"]);
        assert!(f.why.contains("nvidia-bug-report.sh --safe-mode") && f.why.contains("reboot"));
    }

    #[test]
    fn no_events_no_findings() {
        assert!(run(xid_events, &node(vec![gpu(0)])).is_empty());
    }

    #[test]
    fn events_group_per_xid_and_gpu() {
        let mut snapshot = node(vec![gpu(0), gpu(1)]);
        snapshot.xid_events = vec![
            event(13, "0000:18:00", "1"),
            event(13, "0000:19:00", "2"),
            event(31, "0000:18:00", "3"),
            event(13, "0000:18:00", "4"),
        ];
        let got: Vec<(String, Option<u32>, String)> = run(xid_events, &snapshot)
            .into_iter()
            .map(|f| (f.id, f.gpu, f.evidence["count"].clone()))
            .collect();
        let want = [
            ("xid-13", Some(0), "2"),
            ("xid-13", Some(1), "1"),
            ("xid-31", Some(0), "1"),
        ];
        let want: Vec<(String, Option<u32>, String)> = want
            .iter()
            .map(|(i, g, c)| (i.to_string(), *g, c.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn unmatched_bus_id_names_the_device_and_drops_gpu_commands() {
        let mut snapshot = node(vec![gpu(0)]);
        snapshot.xid_events = vec![event(48, "0000:3B:00", "5")];
        let f = &run(xid_events, &snapshot)[0];
        assert_eq!(f.gpu, None);
        assert_eq!(f.title, "XID 48 on 0000:3b:00: Double-bit ECC error");
        assert_eq!(f.evidence["pci_bus_id"], "0000:3B:00");
        assert!(
            f.commands.iter().all(|c| !c.contains(&"-i".to_string())),
            "{:?}",
            f.commands
        );
        assert!(f.why.contains("gpu-missing-from-nvml"));
    }

    #[test]
    fn unknown_xid_is_a_warning_pointing_at_the_catalogue() {
        let mut snapshot = node(vec![gpu(0)]);
        snapshot.xid_events = vec![event(4242, "0000:18:00", "5")];
        let f = &run(xid_events, &snapshot)[0];
        assert_eq!((f.id.as_str(), f.severity), ("xid-4242", Severity::Warning));
        assert!(f.why.contains("NVIDIA's XID catalogue"));
    }

    #[test]
    fn process_names_are_evidence_only_and_escaped() {
        let mut snapshot = node(vec![gpu(0)]);
        let mut e = event(13, "0000:18:00", "5");
        e.pid = Some(4242);
        e.process_name = Some("evil\u{1b}[2J; rm -rf /".into());
        snapshot.xid_events = vec![e];
        let f = &run(xid_events, &snapshot)[0];
        assert_eq!(f.evidence["pids"], "4242");
        assert_eq!(f.evidence["processes"], "evil\\u{1b}[2J; rm -rf /");
        assert!(f.commands.iter().flatten().all(|a| !a.contains("evil")));
        assert!(f.commands.contains(&vec![
            "ps".to_string(),
            "-o".into(),
            "pid,stat,etime,cmd".into(),
            "-p".into(),
            "4242".into()
        ]));
    }

    #[test]
    fn pid_command_is_left_out_without_a_pid() {
        let mut snapshot = node(vec![gpu(0)]);
        snapshot.xid_events = vec![event(13, "0000:18:00", "5")];
        let f = &run(xid_events, &snapshot)[0];
        assert!(f.commands.iter().all(|c| c[0] != "ps"));
    }
}
