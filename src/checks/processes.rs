//! GPU processes: `stuck-memory` when a process holds a lot of GPU memory on
//! an idle GPU: a hung or finished-but-not-exited job, an idle notebook
//! kernel, a zombie whose memory the driver has not released. One finding
//! per process, so each names its pid.

use super::common::{argv, evidence, gib, is_idle, live_gpus, quoted, untrusted, utilization};
use super::{Finding, Severity};
use crate::probe::Snapshot;

/// A process holding more than this (MiB) on an idle GPU is reported.
const STUCK_MEMORY_MIB: u64 = 1024;

/// Longest process name in a title, in characters.
const TITLE_NAME_CHARS: usize = 16;

/// Rule: `stuck-memory` (warning) per process holding more than 1 GiB on an
/// idle GPU.
pub(super) fn stuck_memory(snapshot: &Snapshot) -> Vec<Finding> {
    live_gpus(snapshot)
        .filter(|g| is_idle(g))
        .flat_map(|g| {
            g.processes.iter().filter_map(move |p| {
                let used = p.used_memory_mib.filter(|&m| m > STUCK_MEMORY_MIB)?;
                let pid = p.pid.to_string();
                Some(Finding {
                    id: "stuck-memory".into(),
                    severity: Severity::Warning,
                    gpu: Some(g.index),
                    title: format!(
                        "{} (pid {pid}) holds {}, GPU idle",
                        quoted(&p.name, TITLE_NAME_CHARS),
                        gib(used)
                    ),
                    evidence: evidence([
                        ("pid", pid.clone()),
                        ("process_name", untrusted(&p.name)),
                        ("used_memory", format!("{used} MiB")),
                        ("utilization.gpu", utilization(g)),
                    ]),
                    commands: vec![
                        argv(&[
                            "nvidia-smi",
                            "--query-compute-apps=pid,process_name,used_memory",
                            "--format=csv",
                        ]),
                        argv(&["ps", "-o", "pid,stat,etime,cmd", "-p", &pid]),
                    ],
                    why: "A process holds GPU memory while the GPU does no work: a hung job, \
                          one that finished without exiting, an idle notebook kernel, or a \
                          zombie (state Z or D in `ps`). The memory is unavailable to other \
                          jobs. Ask its owner, and stop the process if it is no longer \
                          needed; if it cannot be killed (state D), the GPU needs a reset \
                          once it is drained."
                        .into(),
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{gpu, idle, ids, node, run};
    use super::*;
    use crate::probe::GpuProcess;

    fn holding(name: &str, mib: u64) -> GpuProcess {
        GpuProcess {
            pid: 4242,
            name: name.into(),
            used_memory_mib: Some(mib),
        }
    }

    #[test]
    fn idle_gpu_with_big_process_is_flagged_by_pid_and_name() {
        let mut g = idle(gpu(1));
        g.processes = vec![holding("python3", 39_117), holding("small", 200)];
        let f = run(stuck_memory, &node(vec![g]));
        assert_eq!(ids(&f), ["stuck-memory"]);
        assert_eq!((f[0].severity, f[0].gpu), (Severity::Warning, Some(1)));
        assert_eq!(
            f[0].title,
            "\"python3\" (pid 4242) holds 38.2 GiB, GPU idle"
        );
        assert_eq!(f[0].evidence["process_name"], "python3");
        assert_eq!(
            f[0].commands[1],
            vec!["ps", "-o", "pid,stat,etime,cmd", "-p", "4242"]
        );
    }

    #[test]
    fn busy_gpu_or_small_process_is_fine() {
        let mut busy = gpu(0);
        busy.processes = vec![holding("train", 70_000)];
        let mut small = idle(gpu(1));
        small.processes = vec![holding("tiny", 512)];
        assert!(run(stuck_memory, &node(vec![busy, small])).is_empty());
    }

    #[test]
    fn hostile_names_stay_out_of_commands_and_are_escaped() {
        let mut g = idle(gpu(0));
        g.processes = vec![holding("x\n$(reboot)\u{1b}[2J long long long name", 2048)];
        let f = run(stuck_memory, &node(vec![g]));
        assert!(
            f[0].commands
                .iter()
                .flatten()
                .all(|a| !a.contains("reboot"))
        );
        assert_eq!(
            f[0].title,
            "\"x\\n$(reboot)…\" (pid 4242) holds 2.0 GiB, GPU idle"
        );
        assert_eq!(
            f[0].evidence["process_name"],
            "x\\n$(reboot)\\u{1b}[2J long long long name"
        );
    }
}
