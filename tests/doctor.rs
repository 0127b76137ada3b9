//! `sigma doctor` and `sigma snapshot` through the real binary, on every
//! shipped simulated node and on this machine.

mod common;

use common::{assert_valid, run, stderr, stdout};
use serde_json::Value;

#[test]
fn every_sim_matches_its_expectations() {
    let sims = sigma::sim::list();
    assert!(
        sims.len() >= 8,
        "expected at least the 8 issue nodes, got {}",
        sims.len()
    );
    for summary in sims {
        let node = sigma::sim::load(&summary.name).unwrap();
        let out = run(&["--simulate", &summary.name, "doctor", "--json"]);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: doctor --json is not JSON: {e}\n{}",
                summary.name,
                stderr(&out)
            )
        });
        assert_valid("doctor.schema.json", &doc);
        assert_eq!(
            out.status.code(),
            Some(node.expect.doctor_exit),
            "{}: exit code; findings: {}",
            summary.name,
            doc["findings"]
        );
        assert_eq!(doc["exit_code"], node.expect.doctor_exit);
        let findings = doc["findings"].as_array().unwrap();
        for want in &node.expect.findings {
            let found = findings.iter().any(|f| {
                f["id"] == want.id.as_str()
                    && f["severity"] == want.severity.as_str()
                    && want.gpu.is_none_or(|g| f["gpu"] == g)
            });
            assert!(
                found,
                "{}: expected finding {want:?}, got {}",
                summary.name, doc["findings"]
            );
        }
    }
}

#[test]
fn every_sim_snapshot_validates_and_renders_in_80_columns() {
    for summary in sigma::sim::list() {
        let out = run(&["--simulate", &summary.name, "snapshot", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_valid("snapshot.schema.json", &doc);
        assert_eq!(doc["source"]["name"], summary.name.as_str());

        for cmd in ["snapshot", "doctor"] {
            let out = run(&["--simulate", &summary.name, cmd]);
            let text = stdout(&out);
            assert!(
                !text.contains('\x1b'),
                "{}: escape codes in piped output",
                summary.name
            );
            for line in text.lines() {
                // A command word longer than a line is kept whole for copy and paste.
                let unbreakable = line
                    .trim()
                    .trim_start_matches("$ ")
                    .trim_end_matches(" \\")
                    .split(' ')
                    .count()
                    == 1;
                assert!(
                    line.chars().count() <= 80 || unbreakable,
                    "{} {cmd}: line wider than 80 columns:\n{line}",
                    summary.name
                );
            }
        }
    }
}

#[test]
fn xid79_names_the_lost_gpu_and_the_commands_to_run() {
    let out = run(&["--simulate", "h100x8-xid79", "doctor", "--json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let xid = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "xid-79")
        .expect("xid-79 finding");
    assert_eq!(xid["severity"], "critical");
    assert_eq!(xid["gpu"], 3);
    let cmds: Vec<String> = xid["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c.as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    assert!(cmds.iter().any(|c| c.starts_with("lspci")), "{cmds:?}");
    assert!(
        cmds.iter().any(|c| c.starts_with("nvidia-bug-report.sh")),
        "{cmds:?}"
    );
}

#[test]
fn live_snapshot_and_doctor_succeed_and_explain_missing_gpu_data() {
    let out = run(&["snapshot", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_valid("snapshot.schema.json", &doc);
    assert_eq!(doc["source"]["kind"], "live");

    let out = run(&["doctor", "--json"]);
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 3 | 4)),
        "doctor failed: {code:?} {}",
        stderr(&out)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_valid("doctor.schema.json", &doc);

    // Development and CI machines have no NVIDIA driver: the snapshot must say why.
    if !std::path::Path::new("/dev/nvidiactl").exists() {
        let reasons = doc["snapshot"]["unavailable"].as_array().unwrap();
        assert!(
            reasons
                .iter()
                .any(|u| u["source"] == "nvml" && !u["reason"].as_str().unwrap().is_empty()),
            "no NVML reason in {reasons:?}"
        );
        let text = stdout(&run(&["snapshot"]));
        assert!(
            text.contains("nvml:"),
            "human snapshot does not say why there is no GPU data:\n{text}"
        );
    }
}

#[test]
fn unknown_sim_lists_the_known_ones() {
    let out = run(&["--simulate", "h100x9-nope", "doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one-line error expected:\n{err}");
    assert!(
        err.contains("h100x9-nope") && err.contains("h100x8-healthy"),
        "{err}"
    );
}

#[test]
fn malformed_sim_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, "[node]\ndescription = \"x\"\n[host\nhostname = 1\n").unwrap();
    let out = run(&["--simulate", path.to_str().unwrap(), "snapshot"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one-line error expected:\n{err}");
    assert!(err.contains("broken.toml") && err.contains(":3"), "{err}");
}

#[test]
fn simulate_env_var_selects_the_node() {
    let out = common::sigma()
        .env("SIGMA_SIMULATE", "a100x4-ecc-remap-pending")
        .args(["snapshot", "--json"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["source"]["name"], "a100x4-ecc-remap-pending");
}

#[test]
fn usage_error_exits_2() {
    assert_eq!(run(&["doctor", "--bogus"]).status.code(), Some(2));
}

#[test]
fn sim_run_answers_like_the_node_and_refuses_what_the_guard_blocks() {
    let out = run(&["sim", "run", "h100x8-xid79", "--", "nvidia-smi", "-L"]);
    assert_eq!(out.status.code(), Some(15), "{}", stderr(&out));
    assert!(stdout(&out).contains("Unable to determine the device handle"));
    assert!(stderr(&out).starts_with("read-only: "), "{}", stderr(&out));

    let piped = run(&[
        "sim",
        "run",
        "h100x8-thermal-throttle",
        "--",
        "nvidia-smi -q -d TEMPERATURE -i 2 | grep -i slowdown",
    ]);
    assert_eq!(piped.status.code(), Some(0), "{}", stderr(&piped));
    assert!(
        stdout(&piped).contains("Slowdown Temp"),
        "{}",
        stdout(&piped)
    );

    // grep finding nothing: exit 1, no output, as in a shell.
    let no_xid = run(&["sim", "run", "h100x8-healthy", "--", "dmesg | grep -i xid"]);
    assert_eq!(no_xid.status.code(), Some(1), "{}", stderr(&no_xid));
    assert!(stdout(&no_xid).is_empty(), "{}", stdout(&no_xid));

    let prev = run(&[
        "sim",
        "run",
        "h100x8-xid79",
        "--",
        "journalctl -k -b -1 --no-pager | grep -c NVRM",
    ]);
    assert_eq!(stdout(&prev), "1\n", "{}", stderr(&prev));

    let remap = run(&[
        "sim",
        "run",
        "a100x4-ecc-remap-pending",
        "--",
        "nvidia-smi --query-remapped-rows=gpu_bus_id,remapped_rows.pending --format=csv,noheader --id=0000:47:00.0",
    ]);
    assert_eq!(remap.status.code(), Some(0), "{}", stderr(&remap));
    assert_eq!(stdout(&remap), "00000000:47:00.0, Yes\n");

    let blocked = run(&["sim", "run", "h100x8-healthy", "--", "dmesg", "-C"]);
    assert_eq!(blocked.status.code(), Some(1));
    assert!(stdout(&blocked).is_empty());
    assert!(
        stderr(&blocked).starts_with("blocked: "),
        "{}",
        stderr(&blocked)
    );

    let missing = run(&["sim", "run", "no-such-node", "--", "nvidia-smi"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no-such-node"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn sim_list_names_every_node() {
    let text = stdout(&run(&["sim", "list"]));
    for name in [
        "h100x8-healthy",
        "h100x8-xid79",
        "a100x4-ecc-remap-pending",
        "h100x8-thermal-throttle",
        "l40s-pcie-degraded",
        "h100x8-stuck-memory",
        "mi300x-healthy",
        "no-gpu",
    ] {
        assert!(
            text.contains(name),
            "{name} missing from `sigma sim list`:\n{text}"
        );
    }
}
