//! `sigma fleet` over ssh, pdsh (its ssh module) and clush against a real
//! OpenSSH server on 127.0.0.1, started for the test on a free port with
//! its own host and user keys, stopped by process id: verdicts gathered,
//! an unreachable host named with ssh's reason, the binary installed (scp,
//! pdcp, clush --copy), and a confirmed command run on the node through
//! ssh with its words intact.
//!
//! Needs root, `openssh-server`, `pdsh` and `clustershell`, which
//! `scripts/setup.sh` installs; without them the test fails with that
//! advice.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SIGMA: &str = env!("CARGO_BIN_EXE_sigma");

/// A running sshd, killed on drop.
struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Sshd {
    fn start() -> Sshd {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "sshd is not installed: run scripts/setup.sh or `apt-get install openssh-server`"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for key in ["hostkey", "userkey"] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "ssh-keygen: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::copy(d.join("userkey.pub"), d.join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n\
                 UsePAM no\nPidFile {d}/sshd.pid\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
                d = d.display()
            ),
        )
        .unwrap();
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sshd = Sshd { child, dir, port };
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "sshd did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        sshd
    }

    /// `PDSH_SSH_ARGS` that reach it (pdsh and pdcp's ssh module).
    fn pdsh_ssh_args(&self) -> String {
        format!(
            "-p {} -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o LogLevel=ERROR -o BatchMode=yes -l%u %h",
            self.port,
            self.dir.path().join("userkey").display()
        )
    }

    /// A ClusterShell configuration directory (`CLUSTERSHELL_CFGDIR`) whose
    /// ssh and scp options reach it.
    fn clush_config(&self) -> PathBuf {
        let dir = self.dir.path().join("clustershell");
        std::fs::create_dir_all(&dir).unwrap();
        let common = format!(
            "-i {} -oStrictHostKeyChecking=no -oUserKnownHostsFile=/dev/null -oLogLevel=ERROR -oBatchMode=yes",
            self.dir.path().join("userkey").display()
        );
        std::fs::write(
            dir.join("clush.conf"),
            format!(
                "[Main]\nssh_options: -p {port} {common}\nscp_options: -P {port} {common}\n",
                port = self.port
            ),
        )
        .unwrap();
        dir
    }

    /// The `--ssh-option`s that reach it.
    fn options(&self) -> Vec<String> {
        let mut args = Vec::new();
        for option in [
            format!("Port={}", self.port),
            format!("IdentityFile={}", self.dir.path().join("userkey").display()),
            "StrictHostKeyChecking=no".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "LogLevel=ERROR".into(),
        ] {
            args.extend(["--ssh-option".to_string(), option]);
        }
        args
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The remote command: the real sigma on a simulated critical node.
fn remote() -> String {
    format!("env SIGMA_SIMULATE=h100x8-xid79 {SIGMA}")
}

#[test]
fn fleet_over_ssh_gathers_installs_and_runs_only_what_is_confirmed() {
    let sshd = Sshd::start();
    let out = Command::new(SIGMA)
        .args([
            "fleet",
            "--json",
            "--timeout",
            "20",
            "--remote-sigma",
            &remote(),
        ])
        .args(sshd.options())
        .args(["--ssh", "127.0.0.1", "localhost", "127.0.0.2"])
        .env_remove("SIGMA_SIMULATE")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["summary"]["critical"], 2, "{report}");
    let xid = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == "xid-79")
        .expect("xid-79 grouped");
    let hosts: Vec<&str> = xid["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["127.0.0.1", "localhost"]);
    assert_eq!(report["no_answer"][0]["host"], "127.0.0.2");
    let reason = report["no_answer"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("Connection refused"), "{reason}");
    assert_eq!(out.status.code(), Some(4));

    // --install copies this binary with scp, then renames it into place.
    let dest_dir = tempfile::tempdir().unwrap();
    let dest: PathBuf = dest_dir.path().join("sigma");
    let out = Command::new(SIGMA)
        .args(["fleet", "--install", dest.to_str().unwrap()])
        .args(sshd.options())
        .args(["--ssh", "127.0.0.1", "127.0.0.2"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("on 1 of 2 nodes"), "{said}");
    assert!(said.contains("127.0.0.2: scp failed"), "{said}");
    let version = Command::new(&dest).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("sigma "));
    assert_eq!(out.status.code(), Some(5));

    // pdsh and pdcp over real ssh: the same verdicts, and an install.
    let out = Command::new(SIGMA)
        .args([
            "fleet",
            "--json",
            "--pdsh",
            "127.0.0.1,localhost,127.0.0.2",
            "--remote-sigma",
            &remote(),
        ])
        .env("PDSH_RCMD_TYPE", "ssh")
        .env("PDSH_SSH_ARGS", sshd.pdsh_ssh_args())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["summary"]["critical"], 2, "{report}");
    assert_eq!(report["no_answer"][0]["host"], "127.0.0.2", "{report}");
    let pdcp_dest = dest_dir.path().join("sigma-by-pdcp");
    let out = Command::new(SIGMA)
        .args([
            "fleet",
            "--pdsh",
            "127.0.0.1",
            "--install",
            pdcp_dest.to_str().unwrap(),
        ])
        .env("PDSH_RCMD_TYPE", "ssh")
        .env("PDSH_SSH_ARGS", sshd.pdsh_ssh_args())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("on 1 of 1 nodes"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let version = Command::new(&pdcp_dest).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("sigma "));
    assert!(!dest_dir.path().join("sigma-by-pdcp.sigma-install").exists());

    // clush, over the same ssh: verdicts and an install.
    let clush = sshd.clush_config();
    let out = Command::new(SIGMA)
        .args([
            "fleet",
            "--json",
            "--clush",
            "127.0.0.1,localhost,127.0.0.2",
            "--remote-sigma",
            &remote(),
        ])
        .env("CLUSTERSHELL_CFGDIR", &clush)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["summary"]["critical"], 2, "{report}");
    let reason = report["no_answer"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("Connection refused"), "{reason}");
    let clush_dest = dest_dir.path().join("sigma-by-clush");
    let out = Command::new(SIGMA)
        .args([
            "fleet",
            "--clush",
            "127.0.0.1",
            "--install",
            clush_dest.to_str().unwrap(),
        ])
        .env("CLUSTERSHELL_CFGDIR", &clush)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("on 1 of 1 nodes"),
        "{out:?}"
    );
    let version = Command::new(&clush_dest).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("sigma "));

    // --ask offers the critical node's command; confirmed on a terminal, it
    // runs on that node through ssh, each word as the guard saw it.
    let line = format!(
        "{SIGMA} fleet --ssh 127.0.0.1 --remote-sigma '{}' {} --ask 'which nodes should I drain?'",
        remote(),
        shell_words::join(sshd.options())
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("SIGMA_STATE_DIR", sshd.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"y\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("[1] 127.0.0.1: lspci -nnk -s 0000:5d:00  (read-only"),
        "{said}"
    );
    assert!(
        said.contains("run `lspci -nnk -s 0000:5d:00`? [y/N]"),
        "{said}"
    );
    // The remote shell ran `lspci` with its arguments (whether or not this
    // machine has lspci), and the exit code came back.
    assert!(said.contains("[1] 127.0.0.1: exit "), "{said}");
}
