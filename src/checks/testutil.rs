//! Test helpers for the rules: a healthy GPU and node to start from, and
//! [`run`], which applies a rule and checks every finding's shape.

use super::{Finding, Rule};
use crate::guard::{self, Tier};
use crate::probe::{ClockEventReason, Ecc, Gpu, Host, PcieLink, SCHEMA_VERSION, Snapshot, Source};

/// Longest title: 80 columns less a prefix such as `CRITICAL  GPU 7  `.
pub const TITLE_MAX_CHARS: usize = 64;

/// A healthy, busy H100 with NVML index `index` on bus `0000:<18+index>:00.0`.
pub fn gpu(index: u32) -> Gpu {
    Gpu {
        index,
        name: "NVIDIA H100 80GB HBM3".into(),
        uuid: format!("GPU-0000000{index}"),
        pci_bus_id: bus(index),
        temperature_c: Some(55),
        temperature_slowdown_c: Some(87),
        temperature_shutdown_c: Some(92),
        power_draw_w: Some(450.0),
        power_limit_w: Some(700.0),
        power_default_limit_w: Some(700.0),
        clock_sm_mhz: Some(1980),
        clock_sm_max_mhz: Some(1980),
        utilization_gpu_pct: Some(90),
        memory_used_mib: Some(40_000),
        memory_total_mib: Some(81_559),
        ecc: Some(Ecc {
            enabled: true,
            ..Ecc::default()
        }),
        clock_event_reasons: Vec::new(),
        pcie: Some(PcieLink {
            gen_current: 5,
            gen_max: 5,
            width_current: 16,
            width_max: 16,
            replay_count: Some(0),
        }),
        persistence_mode: Some(true),
        ..Gpu::default()
    }
}

/// The NVML bus id of GPU `index` in [`gpu`].
pub fn bus(index: u32) -> String {
    format!("00000000:{:02x}:00.0", 0x18 + index)
}

/// The same GPU, idle.
pub fn idle(mut gpu: Gpu) -> Gpu {
    gpu.utilization_gpu_pct = Some(0);
    gpu.clock_event_reasons = vec![ClockEventReason::GpuIdle];
    gpu
}

/// A healthy node with `gpus` and plenty of memory and disk.
pub fn node(gpus: Vec<Gpu>) -> Snapshot {
    Snapshot {
        schema_version: SCHEMA_VERSION,
        taken_at: "2026-11-28T07:00:00Z".into(),
        source: Source::Live,
        host: Host {
            hostname: "node-1".into(),
            memory_total_bytes: 1 << 40,
            memory_available_bytes: 1 << 39,
            ..Host::default()
        },
        nvidia: None,
        gpus,
        pci_gpus: Vec::new(),
        amd_gpus: Vec::new(),
        xid_events: Vec::new(),
        kernel_log_source: Some("/dev/kmsg".into()),
        unavailable: Vec::new(),
    }
}

/// Applies `rule` to `snapshot` and checks the shape every finding must have:
/// a one-line title that fits, a reason, evidence, and only read-only commands.
pub fn run(rule: Rule, snapshot: &Snapshot) -> Vec<Finding> {
    let findings = rule(snapshot);
    for f in &findings {
        assert!(!f.id.is_empty(), "{f:?}");
        assert!(
            f.title.chars().count() <= TITLE_MAX_CHARS,
            "title too long: {:?}",
            f.title
        );
        assert!(
            !f.title.chars().any(char::is_control),
            "title: {:?}",
            f.title
        );
        assert!(!f.why.trim().is_empty(), "no why: {f:?}");
        assert!(!f.evidence.is_empty(), "no evidence: {f:?}");
        for cmd in &f.commands {
            assert_read_only(cmd);
        }
    }
    findings
}

/// The ids of `findings`, in order.
pub fn ids(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.id.as_str()).collect()
}

/// Panics unless the guard judges `cmd` read-only (the bug report, which
/// the guard calls heavy, aside): a finding never proposes a command that
/// the guard would refuse or that changes the node.
pub fn assert_read_only(cmd: &[String]) {
    let line = crate::guard::command_line(cmd);
    let verdict = guard::check(&line);
    let allowed = verdict.tier == Tier::ReadOnly
        || (verdict.tier == Tier::Heavy
            && cmd.first().is_some_and(|p| p == "nvidia-bug-report.sh"));
    assert!(allowed, "{line}: {} ({})", verdict.tier, verdict.rule);
}

#[test]
#[should_panic(expected = "nvidia-smi -r -i 0")]
fn state_changing_commands_fail_the_check() {
    assert_read_only(&["nvidia-smi", "-r", "-i", "0"].map(String::from));
}

#[test]
#[should_panic(expected = "du -sh /")]
fn commands_unknown_to_the_guard_fail_the_check() {
    assert_read_only(&["du", "-sh", "/"].map(String::from));
}
