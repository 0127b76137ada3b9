//! GPU configuration: `persistence-off`.
//!
//! Persistence mode off is an **info**, not a warning: it does not make a GPU
//! unhealthy or a result wrong. Without it (or `nvidia-persistenced`) the
//! driver tears the GPU state down when the last client exits, so every job
//! start pays the initialisation again (seconds per GPU) and settings made
//! through nvidia-smi are lost in between. Worth fixing on a compute node,
//! but `sigma doctor` exit codes are about health. One finding for the node
//! names every GPU concerned (it is a node setting in practice); it carries
//! the GPU index when only one GPU is concerned.

use super::common::{argv, evidence, live_gpus};
use super::{Finding, Severity};
use crate::probe::Snapshot;

/// Rule: `persistence-off` (info) when persistence mode is off on any GPU.
pub(super) fn persistence_off(snapshot: &Snapshot) -> Vec<Finding> {
    let off: Vec<u32> = live_gpus(snapshot)
        .filter(|g| g.persistence_mode == Some(false))
        .map(|g| g.index)
        .collect();
    let (gpu, title) = match off.as_slice() {
        [] => return Vec::new(),
        [one] => (Some(*one), "Persistence mode is off".to_string()),
        many => (
            None,
            format!("Persistence mode is off on {} GPUs", many.len()),
        ),
    };
    let list: Vec<String> = off.iter().map(u32::to_string).collect();
    vec![Finding {
        id: "persistence-off".into(),
        severity: Severity::Info,
        gpu,
        title,
        evidence: evidence([
            ("persistence_mode", "Disabled".into()),
            ("gpus", list.join(", ")),
        ]),
        commands: vec![
            argv(&[
                "nvidia-smi",
                "--query-gpu=index,persistence_mode",
                "--format=csv",
            ]),
            argv(&["systemctl", "status", "nvidia-persistenced"]),
        ],
        why: "Without persistence mode the driver releases the GPU when no process uses it, \
              so each job start waits for it to initialise again and clock or power settings \
              made with nvidia-smi can be lost. NVIDIA recommends the nvidia-persistenced \
              daemon on compute nodes: enable it (`systemctl enable --now \
              nvidia-persistenced`)."
            .into(),
    }]
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{gpu, node, run};
    use super::*;

    #[test]
    fn one_gpu_off_names_it() {
        let mut g = gpu(2);
        g.persistence_mode = Some(false);
        let f = run(persistence_off, &node(vec![gpu(0), g]));
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].id.as_str(), f[0].severity, f[0].gpu),
            ("persistence-off", Severity::Info, Some(2))
        );
    }

    #[test]
    fn several_gpus_off_make_one_node_finding() {
        let mut gpus = vec![gpu(0), gpu(1), gpu(2)];
        for g in &mut gpus {
            g.persistence_mode = Some(false);
        }
        let f = run(persistence_off, &node(gpus));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].gpu, None);
        assert_eq!(f[0].evidence["gpus"], "0, 1, 2");
    }

    #[test]
    fn persistence_on_or_unknown_is_fine() {
        let mut unknown = gpu(1);
        unknown.persistence_mode = None;
        assert!(run(persistence_off, &node(vec![gpu(0), unknown])).is_empty());
    }
}
