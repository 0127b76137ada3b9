//! The probe with broken node tools: `journalctl` and `dmesg` that hang,
//! print garbage or die with SIGKILL (exit 137). `sigma doctor` still
//! finishes well within its 10 s budget, invents no finding, and names the
//! source that failed and why.
//!
//! The tools are reached the way a non-root operator reaches them: run as
//! `nobody` where `kernel.dmesg_restrict` keeps `/dev/kmsg` closed, with
//! the fake tools first on PATH. Needs root (to drop to `nobody`).
//!
//! Then the simulated node `h100x8-driver-hung`, whose `nvidia-smi` and
//! `dcgmi` never exit: doctor's finding, and `sim run`, `ask` and `chat`
//! reporting the timed-out run and going on.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

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

/// The shipped simulated node whose driver is hung: NVML missed the probe's
/// deadline and `nvidia-smi` and `dcgmi` never exit.
const HUNG_NODE: &str = "h100x8-driver-hung";

/// Runs sigma on a simulated node with `stdin`, in its own state directory;
/// returns the output and the wall time.
fn sigma_on(node: &str, args: &[&str], stdin: &str) -> (std::process::Output, Duration) {
    let state = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = common::sigma()
        .args(args)
        .env("SIGMA_SIMULATE", node)
        .env("SIGMA_STATE_DIR", state.path())
        .write_stdin(stdin)
        .output()
        .unwrap();
    (out, start.elapsed())
}

#[test]
fn a_hung_driver_is_one_critical_finding_and_its_tools_time_out() {
    let (out, _) = sigma_on(HUNG_NODE, &["doctor", "--json", "--compact"], "");
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["verdict"], "critical");
    let ids: Vec<&str> = verdict["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"nvml-hung") && ids.contains(&"xid-119"),
        "{ids:?}"
    );
    // The GPUs NVML could not list are not reported missing as well.
    assert!(!ids.contains(&"gpu-missing-from-nvml"), "{ids:?}");

    // A tool stuck in the driver is killed at the limit, and says so.
    let (out, elapsed) = sigma_on(
        HUNG_NODE,
        &[
            "sim",
            "run",
            HUNG_NODE,
            "--command-timeout",
            "1",
            "--",
            "nvidia-smi",
            "-q",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(124));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nvidia-smi -q timed out and was killed after 1 s"),
        "{err}"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

/// The hung node with the kernel log tools hung too (a node file of our
/// own): the copilot's read-only proposals then hang, and each front end
/// must report the timeout and go on to its answer.
fn node_with_hung_log_tools(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("assets/sim/{HUNG_NODE}.toml")),
    )
    .unwrap();
    let text = text.replace(
        "hung = [\"nvidia-smi\", \"dcgmi\"]",
        "hung = [\"nvidia-smi\", \"dcgmi\", \"dmesg\", \"journalctl\"]",
    );
    assert!(
        text.contains("\"journalctl\"]"),
        "the node's hung list moved"
    );
    let path = dir.join("log-tools-hung.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn ask_and_chat_report_a_timed_out_run_and_answer() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_hung_log_tools(dir.path());
    let question = "which XIDs did the kernel log show?";
    let (out, elapsed) = sigma_on(
        &node,
        &[
            "ask",
            "--model",
            "none",
            "--run",
            "safe",
            "--command-timeout",
            "1",
            question,
        ],
        "",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("timed out and was killed"), "{text}");
    assert!(text.contains("it timed out"), "the answer notes it: {text}");
    assert!(text.contains("XID 119"), "the answer still comes: {text}");
    // Three proposals at most, one second each, and no model.
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");

    let (out, elapsed) = sigma_on(
        &node,
        &[
            "chat",
            "--model",
            "none",
            "--run",
            "safe",
            "--command-timeout",
            "1",
        ],
        &format!("{question}\n/run 1\n/doctor\n/quit\n"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("timed out and was killed"), "{text}");
    // The conversation went on after the timeout.
    assert!(text.contains("NVML did not answer"), "{text}");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
}
