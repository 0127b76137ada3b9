//! `sigma slurm` and `sigma fleet --srun` on a real single-node Slurm
//! cluster (Debian's slurmctld, slurmd and munge), started for this test
//! by `tests/fleet/slurm/cluster.sh` in a temporary directory and stopped
//! by process id.
//!
//! Needs root (slurmd runs as root) and the packages `slurmctld slurmd
//! slurm-client munge`, which `scripts/setup.sh` installs; without them the
//! test fails with that advice, it is never skipped.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const SIGMA: &str = env!("CARGO_BIN_EXE_sigma");
const CLUSTER: &str = "tests/fleet/slurm/cluster.sh";

/// A running cluster, stopped on drop (also when an assertion fails).
struct Cluster {
    dir: tempfile::TempDir,
    conf: String,
    node: String,
}

/// One cluster at a time: the tests of this file run one after another.
static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("sig.")
            .tempdir_in("/tmp")
            .unwrap();
        Cluster::start_in(dir, "", "idle")
    }

    /// Starts a cluster in `dir` (a short path: the munge socket lives
    /// there) with `extra` slurm.conf lines, up once the node is in one of
    /// `states`.
    fn start_in(dir: tempfile::TempDir, extra: &str, states: &str) -> Cluster {
        let out = Command::new(CLUSTER)
            .arg("start")
            .arg(dir.path())
            .env("SLURM_CONF_EXTRA", extra)
            .env("START_WAIT_STATES", states)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the test cluster did not start (run as root after scripts/setup.sh, which installs slurmctld slurmd slurm-client munge):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = dir.path().join("slurm.conf").to_string_lossy().into_owned();
        let node = String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        Cluster { dir, conf, node }
    }

    /// A Slurm client command against this cluster.
    fn client(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap()
    }

    /// `sigma ARGS` on simulated node `sim`, against this cluster.
    fn sigma(&self, sim: &str, args: &[&str]) -> Output {
        Command::new(SIGMA)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .env("SIGMA_SIMULATE", sim)
            .output()
            .unwrap()
    }

    /// The node's state and reason (`sinfo -o '%T|%E'`).
    fn state(&self) -> (String, String) {
        let out = self.client("sinfo", &["-h", "-N", "-n", &self.node, "-o", "%T|%E"]);
        let text = String::from_utf8(out.stdout).unwrap();
        let (state, reason) = text.trim().split_once('|').unwrap();
        (state.to_string(), reason.to_string())
    }

    /// Waits until the node is exactly `idle` (after a resume it shows
    /// `idle*` for a moment, and srun -I would fail).
    fn wait_idle(&self) {
        self.wait_for("idle", |(state, _)| state == "idle");
    }

    /// Waits (at most 30 s) until the node's state and reason satisfy `ok`.
    fn wait_for(&self, what: &str, ok: impl Fn(&(String, String)) -> bool) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.state();
            if ok(&state) {
                return;
            }
            assert!(
                Instant::now() < until,
                "the node never became {what}: {state:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(CLUSTER)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn health_check_drains_resumes_its_own_drain_only_and_srun_passes_exit_codes() {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    assert!(Path::new(CLUSTER).exists());
    let cluster = Cluster::start();
    let node = cluster.node.clone();
    let check = |sim: &str, extra: &[&str]| {
        let mut args = vec!["slurm", "health-check", "--node", &node];
        args.extend_from_slice(extra);
        let out = cluster.sigma(sim, &args);
        assert!(
            out.status.success(),
            "health-check on {sim}: {}",
            text(&out)
        );
        text(&out)
    };
    assert_eq!(cluster.state(), ("idle".into(), "none".into()));

    // --dry-run says what it would do and changes nothing.
    let said = check("h100x8-xid79", &["--dry-run"]);
    assert!(said.contains("would run scontrol update"), "{said}");
    assert_eq!(cluster.state().0, "idle");

    // A critical node drains itself, with Sigma's reason.
    let said = check("h100x8-xid79", &[]);
    assert!(said.starts_with(&format!("sigma: drain {node}")), "{said}");
    let reasons = cluster.client("sinfo", &["-h", "-R", "-o", "%E"]);
    assert_eq!(
        String::from_utf8_lossy(&reasons.stdout).trim(),
        "sigma: gpu-lost gpu3"
    );
    assert!(
        cluster.state().0.starts_with("drain"),
        "{:?}",
        cluster.state()
    );

    // The prolog fails on the critical node (Slurm requeues and drains) and
    // passes on a node with warnings only.
    assert_eq!(
        cluster
            .sigma("h100x8-xid79", &["slurm", "prolog"])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        cluster
            .sigma("h100x8-power-cap", &["slurm", "prolog"])
            .status
            .code(),
        Some(0)
    );

    // A healthy run resumes Sigma's drain.
    let said = check("h100x8-healthy", &[]);
    assert!(said.starts_with(&format!("sigma: resume {node}")), "{said}");
    cluster.wait_idle();

    // An operator's drain is never resumed, nor relabelled by a critical run.
    let drain = cluster.client(
        "scontrol",
        &[
            "update",
            &format!("NodeName={node}"),
            "State=DRAIN",
            "Reason=bad DIMM, ticket 4411",
        ],
    );
    assert!(drain.status.success(), "{}", text(&drain));
    let said = check("h100x8-healthy", &[]);
    assert!(said.contains("operator"), "{said}");
    let said = check("h100x8-xid79", &[]);
    assert!(said.contains("operator"), "{said}");
    let (state, reason) = cluster.state();
    assert!(state.starts_with("drain"), "{state}");
    assert_eq!(reason, "bad DIMM, ticket 4411");
    let resume = cluster.client(
        "scontrol",
        &["update", &format!("NodeName={node}"), "State=RESUME"],
    );
    assert!(resume.status.success(), "{}", text(&resume));
    cluster.wait_idle();

    // srun hands Sigma's exit code back: 4 critical, 3 warnings, 0 healthy.
    for (sim, code) in [
        ("h100x8-xid79", 4),
        ("h100x8-power-cap", 3),
        ("h100x8-healthy", 0),
    ] {
        let out = Command::new("srun")
            .args(["-I", "-N1", SIGMA, "doctor", "--json", "--compact"])
            .env("SLURM_CONF", &cluster.conf)
            .env("SIGMA_SIMULATE", sim)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "srun sigma doctor on {sim}: {}",
            text(&out)
        );
    }

    // sigma fleet --srun gathers the node's verdict through srun.
    let out = Command::new(SIGMA)
        .args([
            "fleet",
            "--srun",
            &node,
            "--json",
            "--timeout",
            "20",
            "--remote-sigma",
            SIGMA,
        ])
        .env("SLURM_CONF", &cluster.conf)
        .env("SIGMA_SIMULATE", "h100x8-xid79")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("fleet --srun --json: {e}: {}", text(&out)));
    assert_eq!(report["summary"]["critical"], 1, "{report}");
    assert_eq!(report["findings"][0]["nodes"][0]["host"], node.as_str());
    assert_eq!(out.status.code(), Some(4));

    // --install through srun: every task writes the binary from standard
    // input beside the destination, then renames it.
    let dest_dir = tempfile::tempdir().unwrap();
    let dest = dest_dir.path().join("sigma");
    let out = Command::new(SIGMA)
        .args([
            "fleet",
            "--srun",
            &node,
            "--install",
            dest.to_str().unwrap(),
        ])
        .env("SLURM_CONF", &cluster.conf)
        .output()
        .unwrap();
    assert!(text(&out).contains("on 1 of 1 nodes"), "{}", text(&out));
    let version = Command::new(&dest).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("sigma "));

    // --ask names the node to drain and offers its command; it runs on the
    // node (through srun) only when confirmed on a terminal, and the audit
    // log keeps the proposal, the approval and the run.
    let state = tempfile::tempdir().unwrap();
    let ask = |answer: &str| {
        let line = format!(
            "{SIGMA} fleet --srun {node} --remote-sigma {SIGMA} --ask 'which nodes should I drain?'"
        );
        // `script` gives sigma a terminal; the answer is typed ahead.
        let mut child = Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("SLURM_CONF", &cluster.conf)
            .env("SIGMA_SIMULATE", "h100x8-xid79")
            .env("SIGMA_STATE_DIR", state.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), answer.as_bytes()).unwrap();
        text(&child.wait_with_output().unwrap())
    };
    let said = ask("y\n");
    assert!(
        said.contains(&format!(
            "Drain 1 node (critical findings):\r\n- {node} GPU 3: gpu-lost"
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("[1] {node}: lspci -nnk -s 0000:5d:00  (read-only")),
        "{said}"
    );
    assert!(
        said.contains(&format!("[1] {node}: exit ")),
        "it ran on the node: {said}"
    );
    let said = ask("n\n");
    assert!(said.contains("not run: declined"), "{said}");
    // Without a terminal nobody can confirm, so nothing runs.
    let out = Command::new(SIGMA)
        .args([
            "fleet",
            "--srun",
            &node,
            "--remote-sigma",
            SIGMA,
            "--ask",
            "which nodes should I drain?",
        ])
        .env("SLURM_CONF", &cluster.conf)
        .env("SIGMA_SIMULATE", "h100x8-xid79")
        .env("SIGMA_STATE_DIR", state.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        text(&out).contains("not run: needs a yes on a terminal"),
        "{}",
        text(&out)
    );
    let log = std::fs::read_to_string(state.path().join("audit.jsonl")).unwrap();
    let kinds: Vec<(String, bool)> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["kind"] == "approval" || r["kind"] == "execution")
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["approved"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("approval".to_string(), true),
            ("execution".to_string(), false),
            ("approval".to_string(), false),
            ("approval".to_string(), false),
        ],
        "{log}"
    );
}

#[test]
fn slurmd_runs_the_shipped_health_check_program_which_drains_then_resumes() {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::Builder::new()
        .prefix("sig.")
        .tempdir_in("/tmp")
        .unwrap();
    // slurmd runs the program with no PATH and no SLURM_CONF; this one only
    // adds what a real node has on disk (its config) and picks the
    // simulated node from a file the test rewrites.
    let sim_file = dir.path().join("sim");
    std::fs::write(&sim_file, "h100x8-xid79").unwrap();
    let program = dir.path().join("health-check");
    let shipped = std::fs::canonicalize("deploy/slurm/sigma-health-check").unwrap();
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\nSIGMA_SIMULATE=$(cat {sim}) SLURM_CONF={dir}/slurm.conf SIGMA_BIN={SIGMA}\n\
             export SIGMA_SIMULATE SLURM_CONF SIGMA_BIN\nexec {shipped} >>{dir}/health-check.log 2>&1\n",
            sim = sim_file.display(),
            dir = dir.path().display(),
            shipped = shipped.display(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let extra = format!(
        "HealthCheckProgram={}\nHealthCheckInterval=2",
        program.display()
    );
    // slurmd runs the check before it registers, so the node may come up drained.
    let cluster = Cluster::start_in(dir, &extra, "idle drain");
    cluster.wait_for("drained by sigma", |(state, reason)| {
        state.starts_with("drain") && reason == "sigma: gpu-lost gpu3"
    });
    std::fs::write(&sim_file, "h100x8-healthy").unwrap();
    cluster.wait_idle();
    let log = std::fs::read_to_string(cluster.dir.path().join("health-check.log")).unwrap();
    assert!(log.contains("sigma: drain"), "{log}");
    assert!(log.contains("sigma: resume"), "{log}");
}
