//! The host: OS, CPU, memory, disks and the busiest processes, through
//! `sysinfo`.
//!
//! CPU use per process needs two samples; [`probe_host`] sleeps for
//! `sysinfo`'s minimum interval (200 ms on Linux) between them, so the live
//! probe runs it beside the other sources. Values `sysinfo` cannot read stay
//! at their defaults and are named in the returned [`Unavailable`] list.

use std::collections::HashSet;
use std::path::Path;
use std::thread;

use sysinfo::{Disks, ProcessRefreshKind, ProcessesToUpdate, System};

use super::{Disk, Host, HostProcess, Unavailable};

/// How many processes each top list keeps.
const TOP_N: usize = 5;

/// File system types that are not disks: kernel, memory and container
/// pseudo file systems.
const PSEUDO_FS: &[&str] = &[
    "tmpfs",
    "devtmpfs",
    "ramfs",
    "overlay",
    "squashfs",
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "autofs",
    "fuse.lxcfs",
    "nsfs",
    "efivarfs",
];

/// Reads the host. Never fails: what cannot be read is listed in the second
/// value with the reason.
pub fn probe_host() -> (Host, Vec<Unavailable>) {
    let mut unavailable = Vec::new();
    let mut note = |what: &str, e: sysinfo::Error| {
        unavailable.push(Unavailable {
            source: "host".to_string(),
            reason: format!("{what} unreadable: {e}; is /proc mounted?"),
        });
    };
    let mut host = Host {
        hostname: System::host_name().unwrap_or_default(),
        os: System::long_os_version().ok(),
        kernel: System::kernel_version().ok(),
        ..Host::default()
    };
    match System::uptime() {
        Ok(s) => host.uptime_s = s,
        Err(e) => note("uptime", e),
    }
    match System::load_average() {
        Ok(l) => host.load_avg = [l.one, l.five, l.fifteen],
        Err(e) => note("load average", e),
    }
    match System::new() {
        Ok(mut sys) => {
            sample(&mut sys);
            fill_from_system(&mut host, &sys);
        }
        Err(e) => note("CPU, memory and processes", e),
    }
    match Disks::new_with_refreshed_list() {
        Ok(disks) => host.disks = real_disks(&disks),
        Err(e) => note("disks", e),
    }
    (host, unavailable)
}

/// Refreshes CPUs, memory and processes twice, the minimum interval apart,
/// so CPU use is a rate.
fn sample(sys: &mut System) {
    let processes = ProcessRefreshKind::nothing().with_cpu().with_memory();
    sys.refresh_cpu_all();
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, processes);
    thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
    sys.refresh_memory();
    sys.refresh_cpu_all();
    sys.refresh_processes_specifics(ProcessesToUpdate::All, true, processes);
}

/// CPU, memory, swap and the top processes from a sampled `System`.
fn fill_from_system(host: &mut Host, sys: &System) {
    host.cpu_count = u32::try_from(sys.cpus().len()).unwrap_or(u32::MAX);
    host.cpu_model = sys
        .cpus()
        .first()
        .map(|c| c.brand().trim().to_string())
        .filter(|b| !b.is_empty());
    host.memory_total_bytes = sys.total_memory();
    host.memory_available_bytes = sys.available_memory();
    host.swap_total_bytes = sys.total_swap();
    host.swap_used_bytes = sys.used_swap();

    let procs: Vec<HostProcess> = sys
        .processes()
        .values()
        .filter(|p| p.thread_kind().is_none())
        .map(|p| HostProcess {
            pid: p.pid().as_u32(),
            name: p.name().to_string_lossy().into_owned(),
            cpu_pct: f64::from(p.cpu_usage()),
            memory_bytes: p.memory(),
        })
        .collect();
    host.top_cpu = top(&procs, |a, b| b.cpu_pct.total_cmp(&a.cpu_pct));
    host.top_memory = top(&procs, |a, b| b.memory_bytes.cmp(&a.memory_bytes));
}

/// The first [`TOP_N`] of `procs` in `order`, ties broken by pid.
fn top(
    procs: &[HostProcess],
    order: impl Fn(&HostProcess, &HostProcess) -> std::cmp::Ordering,
) -> Vec<HostProcess> {
    let mut sorted = procs.to_vec();
    sorted.sort_by(|a, b| order(a, b).then(a.pid.cmp(&b.pid)));
    sorted.truncate(TOP_N);
    sorted
}

/// Mounted disk file systems: pseudo file systems dropped (except the root,
/// which in a container is an overlay and still fills up), each device and
/// mount point listed once.
fn real_disks(disks: &Disks) -> Vec<Disk> {
    let mut seen_mounts = HashSet::new();
    let mut seen_devices = HashSet::new();
    let mut out: Vec<Disk> = disks
        .iter()
        .filter(|d| {
            let fs = d.file_system().to_string_lossy();
            let root = d.mount_point() == Path::new("/");
            (root || !PSEUDO_FS.contains(&fs.as_ref())) && d.total_space() > 0
        })
        .filter(|d| seen_mounts.insert(d.mount_point().to_path_buf()))
        // Bind mounts show one device at several points: keep the first.
        .filter(|d| d.name().is_empty() || seen_devices.insert(d.name().to_os_string()))
        .map(|d| Disk {
            mount: d.mount_point().display().to_string(),
            fs: Some(d.file_system().to_string_lossy().into_owned()).filter(|s| !s.is_empty()),
            total_bytes: d.total_space(),
            available_bytes: d.available_space(),
        })
        .collect();
    out.sort_by(|a, b| a.mount.cmp(&b.mount));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plausible_values_on_this_machine() {
        let (host, unavailable) = probe_host();
        assert!(unavailable.is_empty(), "{unavailable:?}");
        assert!(!host.hostname.is_empty());
        assert!(host.kernel.is_some());
        assert!(host.cpu_count >= 1);
        assert!(host.memory_total_bytes > 0);
        assert!(host.memory_available_bytes <= host.memory_total_bytes);
        assert!(host.uptime_s > 0);
        assert!(!host.top_memory.is_empty() && host.top_memory.len() <= TOP_N);
        assert!(
            host.top_memory
                .windows(2)
                .all(|w| w[0].memory_bytes >= w[1].memory_bytes)
        );
        assert!(host.disks.iter().all(|d| d.fs.as_deref() != Some("tmpfs")));
    }

    #[test]
    fn top_orders_and_truncates() {
        let procs: Vec<HostProcess> = (0..8)
            .map(|i| HostProcess {
                pid: i,
                name: format!("p{i}"),
                cpu_pct: f64::from(i % 4),
                memory_bytes: u64::from(i),
            })
            .collect();
        let t = top(&procs, |a, b| b.cpu_pct.total_cmp(&a.cpu_pct));
        let pids: Vec<u32> = t.iter().map(|p| p.pid).collect();
        assert_eq!(pids, [3, 7, 2, 6, 1]);
    }
}
