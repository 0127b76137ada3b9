//! The host: `host-memory-low` and `disk-full`.
//!
//! Memory is judged on what new work can use (`MemAvailable`): below 10% of
//! the total is a warning, below 3% critical (the OOM killer is near).
//! Disks are judged per mount on the space unprivileged users can still
//! write: 90% used is a warning, 98% critical. Pseudo and read-only image
//! file systems (tmpfs, overlay, squashfs snaps, ...) are skipped: they are
//! full by design or mirror a disk that is judged itself.

use super::common::{argv, evidence, untrusted};
use super::{Finding, Severity};
use crate::probe::{Disk, Snapshot};

/// Available memory below this percentage of the total is a warning.
const MEMORY_WARN_PCT: f64 = 10.0;
/// Available memory below this percentage of the total is critical.
const MEMORY_CRIT_PCT: f64 = 3.0;
/// A disk at least this full (percent) is a warning.
const DISK_WARN_PCT: f64 = 90.0;
/// A disk at least this full (percent) is critical.
const DISK_CRIT_PCT: f64 = 98.0;

/// File system types that are not disks (or are full by design).
const PSEUDO_FS: &[&str] = &[
    "tmpfs",
    "devtmpfs",
    "ramfs",
    "overlay",
    "squashfs",
    "iso9660",
    "udf",
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "efivarfs",
    "nsfs",
    "autofs",
    "fuse.snapfuse",
    "fuse.lxcfs",
];

/// Rule: `host-memory-low` when little memory is available.
pub(super) fn memory_low(snapshot: &Snapshot) -> Vec<Finding> {
    let host = &snapshot.host;
    if host.memory_total_bytes == 0 {
        return Vec::new();
    }
    let pct = percent(host.memory_available_bytes, host.memory_total_bytes);
    let severity = match pct {
        p if p < MEMORY_CRIT_PCT => Severity::Critical,
        p if p < MEMORY_WARN_PCT => Severity::Warning,
        _ => return Vec::new(),
    };
    let mut ev = evidence([
        ("memory_available", gib_bytes(host.memory_available_bytes)),
        ("memory_total", gib_bytes(host.memory_total_bytes)),
        ("available_pct", format!("{pct:.1}")),
        ("swap_used", gib_bytes(host.swap_used_bytes)),
    ]);
    let top: Vec<String> = host
        .top_memory
        .iter()
        .take(3)
        .map(|p| {
            format!(
                "{} (pid {}, {})",
                untrusted(&p.name),
                p.pid,
                gib_bytes(p.memory_bytes)
            )
        })
        .collect();
    if !top.is_empty() {
        ev.insert("top_memory".into(), top.join("; "));
    }
    vec![Finding {
        id: "host-memory-low".into(),
        severity,
        gpu: None,
        title: format!("Host memory low: {pct:.1}% available"),
        evidence: ev,
        commands: vec![
            argv(&["free", "-h"]),
            argv(&["ps", "-eo", "pid,rss,etime,cmd", "--sort=-rss"]),
        ],
        why: "Little host memory is left for new work: data loaders and pinned buffers fail, \
              the node swaps, and the kernel's OOM killer may end a job. Find the processes \
              holding the most memory and stop or resize what is not needed."
            .into(),
    }]
}

/// Rule: `disk-full` per real file system that is nearly full.
pub(super) fn disk_full(snapshot: &Snapshot) -> Vec<Finding> {
    snapshot
        .host
        .disks
        .iter()
        .filter(|d| d.total_bytes > 0 && !is_pseudo(d))
        .filter_map(|d| {
            let used = percent(
                d.total_bytes.saturating_sub(d.available_bytes),
                d.total_bytes,
            );
            let severity = match used {
                p if p >= DISK_CRIT_PCT => Severity::Critical,
                p if p >= DISK_WARN_PCT => Severity::Warning,
                _ => return None,
            };
            let mount = untrusted(&d.mount);
            let mut commands = Vec::new();
            if d.mount.starts_with('/') {
                commands.push(argv(&["df", "-h", &d.mount]));
            }
            let short: String = mount.chars().take(32).collect();
            Some(Finding {
                id: "disk-full".into(),
                severity,
                gpu: None,
                title: format!("Disk {short} is {used:.0}% full"),
                evidence: evidence([
                    ("mount", mount),
                    (
                        "fs",
                        d.fs.as_deref().map_or_else(|| "unknown".into(), untrusted),
                    ),
                    ("available", gib_bytes(d.available_bytes)),
                    ("total", gib_bytes(d.total_bytes)),
                    ("used_pct", format!("{used:.1}")),
                ]),
                commands,
                why: "The file system is nearly full: checkpoints, logs and container images \
                      fail to write, and jobs die when it fills. Find what grew (`du -xh \
                      --max-depth=1` on the mount, one level at a time) and clean up old \
                      checkpoints, caches and logs, or move them."
                    .into(),
            })
        })
        .collect()
}

/// A pseudo or image file system, by type or by a mount point that only
/// such file systems use.
fn is_pseudo(disk: &Disk) -> bool {
    let by_type = disk.fs.as_deref().is_some_and(|fs| PSEUDO_FS.contains(&fs));
    let by_mount = ["/snap/", "/proc", "/sys", "/dev/", "/run/"]
        .iter()
        .any(|p| disk.mount.starts_with(p));
    by_type || by_mount
}

/// `part` as a percentage of `whole` (which is not zero).
fn percent(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole as f64
}

/// Bytes as GiB with one decimal.
fn gib_bytes(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{node, run};
    use super::*;

    fn memory(available_pct: u64) -> Snapshot {
        let mut snapshot = node(vec![]);
        snapshot.host.memory_total_bytes = 100 << 30;
        snapshot.host.memory_available_bytes = available_pct << 30;
        snapshot
    }

    fn disk(mount: &str, fs: &str, used_pct: u64) -> Disk {
        Disk {
            mount: mount.into(),
            fs: Some(fs.into()),
            total_bytes: 100 << 30,
            available_bytes: (100 - used_pct) << 30,
        }
    }

    #[test]
    fn low_memory_is_a_warning_then_critical() {
        let f = run(memory_low, &memory(8));
        assert_eq!(
            (f[0].id.as_str(), f[0].severity),
            ("host-memory-low", Severity::Warning)
        );
        assert_eq!(f[0].title, "Host memory low: 8.0% available");
        assert_eq!(run(memory_low, &memory(2))[0].severity, Severity::Critical);
    }

    #[test]
    fn enough_or_unknown_memory_is_fine() {
        assert!(run(memory_low, &memory(10)).is_empty());
        let mut unknown = node(vec![]);
        unknown.host.memory_total_bytes = 0;
        assert!(run(memory_low, &unknown).is_empty());
    }

    #[test]
    fn full_disks_are_reported_per_mount() {
        let mut snapshot = node(vec![]);
        snapshot.host.disks = vec![
            disk("/", "ext4", 91),
            disk("/data", "xfs", 99),
            disk("/home", "ext4", 50),
        ];
        let f = run(disk_full, &snapshot);
        let got: Vec<(&str, Severity)> = f
            .iter()
            .map(|f| (f.evidence["mount"].as_str(), f.severity))
            .collect();
        assert_eq!(
            got,
            [("/", Severity::Warning), ("/data", Severity::Critical)]
        );
        assert_eq!(f[1].title, "Disk /data is 99% full");
        assert_eq!(f[1].commands[0], vec!["df", "-h", "/data"]);
    }

    #[test]
    fn pseudo_file_systems_are_skipped() {
        let mut snapshot = node(vec![]);
        snapshot.host.disks = vec![
            disk("/snap/core/123", "squashfs", 100),
            disk("/dev/shm", "tmpfs", 100),
            disk("/var/lib/docker/overlay2/x/merged", "overlay", 100),
        ];
        assert!(run(disk_full, &snapshot).is_empty());
    }
}
