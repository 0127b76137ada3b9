//! The probe with broken node tools: `journalctl` and `dmesg` that hang,
//! print garbage or die with SIGKILL (exit 137). `sigma doctor` still
//! finishes well within its 10 s budget, invents no finding, and names the
//! source that failed and why.
//!
//! The tools are reached the way a non-root operator reaches them: run as
//! `nobody` where `kernel.dmesg_restrict` keeps `/dev/kmsg` closed, with
//! the fake tools first on PATH. Needs root (to drop to `nobody`).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const SIGMA: &str = env!("CARGO_BIN_EXE_sigma");

/// Runs `sigma doctor --json --compact` as nobody with `journalctl` and
/// `dmesg` replaced by `script`; returns the verdict and the wall time.
fn doctor_with_tools(script: &str) -> (Value, Duration) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for tool in ["journalctl", "dmesg"] {
        let path = dir.path().join(tool);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let start = Instant::now();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "env"])
        .arg(format!("PATH={}:/usr/bin:/bin", dir.path().display()))
        .args([
            "HOME=/tmp",
            "SIGMA_SIMULATE=",
            SIGMA,
            "doctor",
            "--json",
            "--compact",
        ])
        .output()
        .expect("setpriv (util-linux) runs");
    let elapsed = start.elapsed();
    let verdict = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor gave no verdict ({e}); run this test as root: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (verdict, elapsed)
}

/// Why the kernel log could not be read, from the verdict.
fn kernel_log_reason(verdict: &Value) -> String {
    verdict["unavailable"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["source"] == "kernel-log")
        .and_then(|u| u["reason"].as_str())
        .unwrap_or("")
        .to_string()
}

fn xid_findings(verdict: &Value) -> usize {
    verdict["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"].as_str().unwrap().starts_with("xid-"))
        .count()
}

#[test]
fn hanging_tools_are_stopped_and_named() {
    let (verdict, elapsed) = doctor_with_tools("exec sleep 300");
    assert!(elapsed < Duration::from_secs(10), "doctor took {elapsed:?}");
    let reason = kernel_log_reason(&verdict);
    assert!(
        reason.contains("journalctl did not answer within"),
        "{reason}"
    );
    assert!(reason.contains("dmesg did not answer within"), "{reason}");
    assert_eq!(xid_findings(&verdict), 0);
}

#[test]
fn killed_tools_are_named_with_the_signal() {
    let (verdict, elapsed) = doctor_with_tools("kill -9 $$");
    assert!(elapsed < Duration::from_secs(10), "doctor took {elapsed:?}");
    let reason = kernel_log_reason(&verdict);
    assert!(
        reason.contains("journalctl failed") && reason.contains("signal: 9"),
        "{reason}"
    );
    assert_eq!(xid_findings(&verdict), 0);
}

#[test]
fn garbage_output_invents_no_finding() {
    let (verdict, elapsed) = doctor_with_tools(
        "head -c 20000 /dev/urandom; printf 'NVRM: Xid (PCI:zz:bad): notanumber, junk\\n'",
    );
    assert!(elapsed < Duration::from_secs(10), "doctor took {elapsed:?}");
    assert_eq!(xid_findings(&verdict), 0, "{verdict}");
    assert!(verdict["verdict"].is_string());
}
