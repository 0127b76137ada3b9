//! Fleet modes against the real engines on this machine: pdsh fanning out
//! to 64 fake hosts (each its own simulated node, some hung, some without
//! sigma), Prometheus's `promtool` on every node's metrics, and
//! node-problem-detector's plugin rules applied to `sigma npd` with the
//! shipped plugin config.
//!
//! pdsh, promtool: `scripts/setup.sh` installs them (Debian packages `pdsh`,
//! `prometheus`). A missing tool fails the test with that advice; it is
//! never skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sigma::report::DoctorReport;
use sigma::report::verdict::Verdict;

const SIGMA: &str = env!("CARGO_BIN_EXE_sigma");

/// Fails with the install advice when `tool` is not on PATH.
fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run scripts/setup.sh or `apt-get install {package}`"
    );
}

/// The shipped simulated nodes, by name.
fn sims() -> Vec<String> {
    sigma::sim::list().into_iter().map(|s| s.name).collect()
}

/// What fake host `i` is: a simulated node, a hung node or one without sigma.
#[derive(Debug, Clone, PartialEq)]
enum Fake {
    Node(String),
    Hung,
    NoSigma,
}

/// Host `i` of 64: every 16th hangs, every 21st has no sigma, the rest
/// cycle through the shipped nodes.
fn fake(i: usize, sims: &[String]) -> Fake {
    if i % 16 == 5 {
        Fake::Hung
    } else if i % 21 == 7 {
        Fake::NoSigma
    } else {
        Fake::Node(sims[i % sims.len()].clone())
    }
}

/// A script standing for ssh to host `%h`: runs the real sigma on that
/// host's simulated node, hangs, or fails as a shell without sigma does.
fn write_fake_ssh(dir: &Path, hosts: &[(String, Fake)]) -> PathBuf {
    let mut cases = String::new();
    for (host, kind) in hosts {
        let action = match kind {
            Fake::Node(sim) => format!("SIGMA_SIMULATE={sim} exec {SIGMA} \"$@\""),
            Fake::Hung => "exec sleep 300".to_string(),
            Fake::NoSigma => "echo 'bash: line 1: sigma: command not found' >&2; exit 127".into(),
        };
        cases.push_str(&format!("  {host}) {action} ;;\n"));
    }
    let script = format!(
        "#!/bin/sh\nhost=$1; shift\ncase $host in\n{cases}  *) echo \"ssh: Could not resolve hostname $host\" >&2; exit 255 ;;\nesac\n"
    );
    let path = dir.join("fake-ssh");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The verdict each simulated node gives, computed in process.
fn expected_verdict(sim: &str) -> Verdict {
    Verdict::of(&DoctorReport::new(sigma::sim::load(sim).unwrap().snapshot))
}

/// The fleet report's findings as id -> {host: gpus}.
fn groups(report: &Value) -> BTreeMap<String, BTreeMap<String, Vec<u64>>> {
    let mut out = BTreeMap::new();
    for group in report["findings"].as_array().unwrap() {
        let places = group["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let gpus = p["gpus"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g.as_u64().unwrap());
                (p["host"].as_str().unwrap().to_string(), gpus.collect())
            })
            .collect();
        out.insert(group["id"].as_str().unwrap().to_string(), places);
    }
    out
}

#[test]
fn pdsh_over_64_hosts_groups_every_finding_and_reports_hung_and_missing_hosts() {
    require("pdsh", "pdsh");
    let sims = sims();
    let hosts: Vec<(String, Fake)> = (1..=64)
        .map(|i| (format!("gpu-{i:03}"), fake(i, &sims)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let ssh = write_fake_ssh(dir.path(), &hosts);

    // What the fleet must report, from the simulated nodes themselves.
    let mut want: BTreeMap<String, BTreeMap<String, Vec<u64>>> = BTreeMap::new();
    for (host, kind) in &hosts {
        let Fake::Node(sim) = kind else { continue };
        for f in expected_verdict(sim).findings {
            let gpus = want
                .entry(f.id)
                .or_default()
                .entry(host.clone())
                .or_default();
            if let Some(gpu) = f.gpu
                && !gpus.contains(&u64::from(gpu))
            {
                gpus.push(u64::from(gpu));
                gpus.sort_unstable();
            }
        }
    }

    let per_node_timeout = 5;
    let start = Instant::now();
    let out = Command::new(SIGMA)
        .args([
            "fleet",
            "--pdsh",
            "gpu-[001-064]",
            "--fanout",
            "64",
            "--json",
        ])
        .args(["--timeout", &per_node_timeout.to_string()])
        .args(["--remote-sigma", &format!("{} %h", ssh.display())])
        .env("PDSH_RCMD_TYPE", "exec")
        .env_remove("SIGMA_SIMULATE")
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fleet --json: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });

    assert_eq!(groups(&report), want, "findings grouped by id across hosts");
    let summary = &report["summary"];
    let hung: Vec<&String> = hosts
        .iter()
        .filter(|h| h.1 == Fake::Hung)
        .map(|h| &h.0)
        .collect();
    let missing: Vec<&String> = hosts
        .iter()
        .filter(|h| h.1 == Fake::NoSigma)
        .map(|h| &h.0)
        .collect();
    assert_eq!(summary["nodes"], 64);
    assert_eq!(
        summary["no_answer"].as_u64().unwrap() as usize,
        hung.len() + missing.len()
    );
    let reasons: BTreeMap<&str, &str> = report["no_answer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["host"].as_str().unwrap(), n["reason"].as_str().unwrap()))
        .collect();
    for host in &hung {
        assert!(
            reasons[host.as_str()].contains("command timeout"),
            "{host}: {reasons:?}"
        );
    }
    for host in &missing {
        assert!(
            reasons[host.as_str()].contains("sigma: command not found"),
            "{host}: {reasons:?}"
        );
    }
    assert_eq!(
        out.status.code(),
        Some(4),
        "a critical node makes the fleet critical"
    );
    // Bounded by the per-node timeout, not by the hung hosts' 300 s.
    assert!(
        elapsed < Duration::from_secs(60),
        "the fleet run took {elapsed:?} with a {per_node_timeout} s per-node timeout"
    );

    // The same lines collected by pdsh itself and piped in give the same report.
    let pdsh = Command::new("pdsh")
        .args(["-R", "exec", "-f", "64", "-u", "5", "-w", "gpu-[001-064]"])
        .arg(ssh.to_str().unwrap())
        .args(["%h", "doctor", "--json", "--compact"])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let mut lines = pdsh.stdout.clone();
    lines.extend_from_slice(&pdsh.stderr);
    let mut fleet = Command::new(SIGMA)
        .args(["fleet", "--from", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut fleet.stdin.take().unwrap(), &lines).unwrap();
    let piped = fleet.wait_with_output().unwrap();
    let piped: Value = serde_json::from_slice(&piped.stdout).unwrap();
    assert_eq!(groups(&piped), want);
    let silent: BTreeSet<&str> = piped["no_answer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["host"].as_str().unwrap())
        .collect();
    let expected_silent: BTreeSet<&str> = hung.iter().chain(&missing).map(|h| h.as_str()).collect();
    assert_eq!(silent, expected_silent, "hosts pdsh reported on are listed");
}

#[test]
fn the_fleet_table_names_findings_and_places() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for (i, sim) in ["h100x8-xid79", "h100x8-healthy", "h100x8-xid79"]
        .iter()
        .enumerate()
    {
        let out = Command::new(SIGMA)
            .args(["--simulate", sim, "doctor", "--json", "--compact"])
            .output()
            .unwrap();
        let line = String::from_utf8(out.stdout).unwrap();
        assert_eq!(line.lines().count(), 1, "{sim}: one line");
        lines.push_str(&format!("node{}: {line}", i + 1));
    }
    lines.push_str("pdsh@head: node9: ssh exited with exit code 255\n");
    let file = dir.path().join("verdicts.txt");
    std::fs::write(&file, lines).unwrap();
    let out = Command::new(SIGMA)
        .args(["--no-color", "fleet", "--from", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("4 nodes: 2 critical, 0 warning, 1 healthy, 1 no answer\n"),
        "{text}"
    );
    assert!(text.contains("node1 GPU 3, node3 GPU 3"), "{text}");
    assert!(
        text.contains("node9  ssh exited with exit code 255"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn every_simulated_node_exports_metrics_promtool_accepts() {
    require("promtool", "prometheus");
    let dir = tempfile::tempdir().unwrap();
    for sim in sims() {
        let out = Command::new(SIGMA)
            .args([
                "--simulate",
                &sim,
                "doctor",
                "--prom-out",
                dir.path().to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.stdout.is_empty(),
            "{sim}: --prom-out alone prints nothing"
        );
        let file = dir.path().join("sigma.prom");
        let text = std::fs::read_to_string(&file).unwrap();
        let check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{sim}: promtool check metrics:\n{}{}\n{text}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let health = expected_verdict(&sim).exit_code;
        let want = match health {
            4 => "sigma_node_health 2",
            3 => "sigma_node_health 1",
            _ => "sigma_node_health 0",
        };
        assert!(text.lines().any(|l| l == want), "{sim}: {want}\n{text}");
    }
    // node_exporter's textfile collector refuses samples with timestamps;
    // the format allows them, so promtool does not: every sample line must
    // be a name, its labels and a value, nothing after.
    let text = std::fs::read_to_string(dir.path().join("sigma.prom")).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value_and_more = line.rsplit_once('}').map_or(line, |(_, rest)| rest);
        let fields = value_and_more.split_whitespace().count();
        assert_eq!(
            fields,
            if line.contains('}') { 1 } else { 2 },
            "timestamp in {line:?}"
        );
    }
}

/// NPD's custom-plugin rule on one run: the exit code picks the status
/// (0 OK, 1 NonOK, anything else Unknown) and the output, trimmed, is cut
/// to `max_output_length` bytes.
fn npd_apply(
    code: Option<i32>,
    stdout: &[u8],
    max_output_length: usize,
) -> (&'static str, Vec<u8>) {
    let status = match code {
        Some(0) => "OK",
        Some(1) => "NonOK",
        _ => "Unknown",
    };
    let text = String::from_utf8_lossy(stdout);
    let mut message = text.trim().as_bytes().to_vec();
    message.truncate(max_output_length);
    (status, message)
}

#[test]
fn npd_rules_from_the_shipped_config_hold_on_every_simulated_node() {
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string("deploy/kubernetes/npd-sigma-plugin.json").unwrap(),
    )
    .unwrap();
    let max = config["pluginConfig"]["max_output_length"]
        .as_u64()
        .unwrap() as usize;
    let rules = config["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    for sim in sims() {
        let verdict = expected_verdict(&sim);
        for rule in rules {
            let args: Vec<&str> = rule["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(rule["path"], "/usr/local/bin/sigma");
            let out = Command::new(SIGMA)
                .args(&args)
                .env("SIGMA_SIMULATE", &sim)
                .output()
                .unwrap();
            let text = String::from_utf8(out.stdout.clone()).expect("UTF-8 output");
            assert_eq!(text.lines().count(), 1, "{sim} {args:?}: one line");
            assert!(text.trim().len() <= max, "{sim}: NPD would cut {text:?}");
            let (status, message) = npd_apply(out.status.code(), &out.stdout, max);
            assert!(
                String::from_utf8(message.clone()).is_ok(),
                "a cut never splits a character"
            );
            let floor = if args.contains(&"warning") { 3 } else { 4 };
            let problem = verdict.exit_code >= floor;
            assert_eq!(
                status,
                if problem { "NonOK" } else { "OK" },
                "{sim} {args:?}"
            );
            if problem {
                let top = &verdict.findings[0];
                assert!(
                    String::from_utf8_lossy(&message).starts_with(&top.id),
                    "{sim}: {text:?} names {}",
                    top.id
                );
            }
        }
    }
    // Sigma failing is Unknown, never a healthy condition.
    let out = Command::new(SIGMA)
        .args(["npd", "--severity", "critical"])
        .env("SIGMA_SIMULATE", "no-such-node")
        .output()
        .unwrap();
    let (status, message) = npd_apply(out.status.code(), &out.stdout, max);
    assert_eq!(status, "Unknown");
    assert!(String::from_utf8_lossy(&message).starts_with("sigma failed:"));
}

#[test]
fn shipped_manifests_and_configs_are_well_formed() {
    let daemonset = std::fs::read_to_string("deploy/kubernetes/sigma-daemonset.yaml").unwrap();
    for needle in [
        "hostPID: true",
        "priorityClassName: system-node-critical",
        "/dev/kmsg",
        "nvidia.com/gpu.present",
        "exporter",
    ] {
        assert!(daemonset.contains(needle), "the DaemonSet has {needle}");
    }
    let nhc = std::fs::read_to_string("deploy/nhc/sigma.nhc").unwrap();
    assert!(nhc.contains("check_sigma") && nhc.contains("die 1"));
}

/// `GET path` from `127.0.0.1:port`: status code and body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

#[test]
fn the_exporter_serves_metrics_promtool_accepts() {
    require("promtool", "prometheus");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut exporter = Command::new(SIGMA)
        .args([
            "exporter",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--interval",
            "1",
        ])
        .env("SIGMA_SIMULATE", "h100x8-xid79")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    let body = loop {
        match http_get(port, "/metrics") {
            Ok((200, body)) => break body,
            _ if Instant::now() < until => std::thread::sleep(Duration::from_millis(100)),
            other => {
                let _ = exporter.kill();
                panic!("no metrics from the exporter: {other:?}");
            }
        }
    };
    let (not_found, _) = http_get(port, "/nope").unwrap();
    let _ = exporter.kill();
    let _ = exporter.wait();
    assert!(body.lines().any(|l| l == "sigma_node_health 2"), "{body}");
    assert_eq!(not_found, 404);
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let check = check.wait_with_output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
