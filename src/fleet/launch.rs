//! Running `sigma doctor --json --compact` on many nodes through the
//! launcher the site already has, and copying the binary out.
//!
//! | launcher | runs | copies with |
//! |---|---|---|
//! | `--pdsh LIST` | `pdsh -f N -u T -w LIST SIGMA doctor --json --compact` | `pdcp` |
//! | `--clush LIST` | `clush -f N -u T -w LIST ...` | `clush --copy` |
//! | `--srun LIST` | `srun -N n -w LIST --ntasks-per-node=1 ...` | `srun --input=all` into a temp file, then `mv` |
//! | `--ssh HOSTS` / `--hosts FILE` | `ssh -o BatchMode=yes HOST ...`, N at a time | `scp` |
//!
//! pdsh and clush bound each node by their own command timeout (`-u`);
//! Sigma adds a deadline over the whole run and kills the launcher's
//! process group past it, so a wedged launcher cannot hang the fleet run
//! either. pdsh's remote command type is pdsh's business: `PDSH_RCMD_TYPE`
//! and `-R` work as usual (the tests use `exec` with `%h`).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Gather;
use crate::probe::command::drain;
use crate::report::fleet::FleetReport;

/// The arguments the remote Sigma gets.
pub const DOCTOR_ARGS: [&str; 3] = ["doctor", "--json", "--compact"];

/// How the nodes are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launcher {
    /// pdsh with a hostlist expression (`gpu[001-064]`).
    Pdsh(String),
    /// ClusterShell's clush with a node set.
    Clush(String),
    /// Slurm's srun on a node list, optionally in a partition.
    Srun {
        /// Node list expression.
        nodes: String,
        /// Partition (`-p`), when given.
        partition: Option<String>,
    },
    /// Plain ssh to each host, `fanout` at a time.
    Ssh(Vec<String>),
}

/// Bounds and the remote command.
#[derive(Debug, Clone)]
pub struct Options {
    /// Nodes reached at once.
    pub fanout: usize,
    /// Per-node limit.
    pub timeout: Duration,
    /// How to start Sigma on a node: a program and its leading arguments
    /// (`sigma`, `/opt/sigma/sigma`, or with pdsh's exec `ssh %h sigma`).
    pub remote: Vec<String>,
    /// Extra `-o` options for ssh and scp (`Port=2222`, `ProxyJump=bastion`).
    pub ssh_options: Vec<String>,
}

impl Launcher {
    /// The hosts this launcher will reach, expanded (`gpu[1-3]` is three).
    pub fn hosts(&self) -> anyhow::Result<Vec<String>> {
        match self {
            Launcher::Pdsh(list) | Launcher::Clush(list) | Launcher::Srun { nodes: list, .. } => {
                expand(list)
            }
            Launcher::Ssh(hosts) => Ok(hosts.clone()),
        }
    }

    /// The launcher's program, for error messages.
    fn program(&self) -> &'static str {
        match self {
            Launcher::Pdsh(_) => "pdsh",
            Launcher::Clush(_) => "clush",
            Launcher::Srun { .. } => "srun",
            Launcher::Ssh(_) => "ssh",
        }
    }

    /// The argv that runs `remote args...` on every node (not for ssh,
    /// which runs one process per host).
    fn fan_out_argv(&self, opts: &Options, args: &[&str]) -> Vec<String> {
        let secs = opts.timeout.as_secs().max(1).to_string();
        let connect = opts.timeout.as_secs().clamp(1, 10).to_string();
        let fanout = opts.fanout.max(1).to_string();
        let mut argv: Vec<String> = match self {
            Launcher::Pdsh(list) => {
                // No -t: pdsh refuses it with `-R exec`; its default
                // connect timeout (10 s) holds otherwise.
                vec!["pdsh", "-f", &fanout, "-u", &secs, "-w", list]
                    .into_iter()
                    .map(String::from)
                    .collect()
            }
            Launcher::Clush(list) => vec![
                "clush", "-f", &fanout, "-t", &connect, "-u", &secs, "-w", list,
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            Launcher::Srun { nodes, partition } => {
                let count = expand(nodes).map(|h| h.len()).unwrap_or(1).to_string();
                let minutes = opts.timeout.as_secs().div_ceil(60).max(1).to_string();
                let mut argv: Vec<String> = vec![
                    "srun".into(),
                    "--nodes".into(),
                    count,
                    "--nodelist".into(),
                    nodes.clone(),
                    "--ntasks-per-node=1".into(),
                    "--kill-on-bad-exit=0".into(),
                    "--immediate=30".into(),
                    "--time".into(),
                    minutes,
                ];
                if let Some(p) = partition {
                    argv.extend(["--partition".into(), p.clone()]);
                }
                argv
            }
            Launcher::Ssh(_) => Vec::new(),
        };
        argv.extend(opts.remote.iter().cloned());
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }
}

/// Expands a hostlist expression (`gpu[001-003,7],login1`).
pub fn expand(list: &str) -> anyhow::Result<Vec<String>> {
    let hosts = hostlist_parser::parse(list).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the host list {list:?}: {}; write it as pdsh does, e.g. gpu[001-064],login1",
            e.to_string().lines().next().unwrap_or("bad syntax")
        )
    })?;
    if hosts.is_empty() {
        bail!("the host list {list:?} names no host");
    }
    Ok(hosts)
}

/// Runs the doctor on every node and gathers the verdicts. `progress` is
/// called once per node with a verdict; `interrupt` (Ctrl-C) stops the run
/// and reports what came back so far.
pub fn run_doctor(
    launcher: &Launcher,
    opts: &Options,
    interrupt: &Arc<AtomicBool>,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<FleetReport> {
    let hosts = launcher.hosts()?;
    let mut gather = Gather::expecting(hosts.clone());
    let deadline = Instant::now() + whole_run_limit(hosts.len(), opts);
    let lines = match launcher {
        Launcher::Ssh(hosts) => spawn_ssh_pool(hosts, opts),
        _ => {
            let argv = launcher.fan_out_argv(opts, &DOCTOR_ARGS);
            spawn_lines(launcher.program(), &argv)?
        }
    };
    let stopped = pump(&lines, &mut gather, deadline, interrupt, progress);
    if let Some(why) = stopped {
        for host in &hosts {
            if !gather.has_verdict(host) {
                gather.note(host, why);
            }
        }
    }
    lines.stop();
    Ok(gather.finish())
}

/// Reads lines into `gather` until the launcher is done, the deadline
/// passes or Ctrl-C; returns why it stopped early.
fn pump(
    lines: &Lines,
    gather: &mut Gather,
    deadline: Instant,
    interrupt: &Arc<AtomicBool>,
    progress: &mut dyn FnMut(&str),
) -> Option<&'static str> {
    loop {
        if interrupt.load(Ordering::SeqCst) {
            return Some("interrupted (Ctrl-C) before this node answered");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Some("no answer before the fleet deadline; the launcher was stopped");
        }
        match lines.rx.recv_timeout(left.min(Duration::from_millis(100))) {
            Ok(line) => {
                if let Some(host) = gather.feed(&line) {
                    progress(&host);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// How long a whole run may take: the per-node limit for every wave of
/// `fanout` nodes, plus connection time and slack.
fn whole_run_limit(hosts: usize, opts: &Options) -> Duration {
    let waves = hosts.div_ceil(opts.fanout.max(1)).max(1) as u32;
    (opts.timeout + Duration::from_secs(10)) * waves + Duration::from_secs(5)
}

/// Lines from running processes, and how to stop them.
struct Lines {
    rx: mpsc::Receiver<String>,
    /// Process groups to kill on stop.
    groups: Vec<i32>,
    /// Set to ask the ssh pool to start no more hosts.
    halt: Arc<AtomicBool>,
}

impl Lines {
    /// Kills every process group still running.
    fn stop(&self) {
        self.halt.store(true, Ordering::SeqCst);
        for &pgid in &self.groups {
            // SAFETY: kill(2) with a negative pid signals that process
            // group; it touches no memory of ours.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Starts `argv` in its own process group with both outputs read line by
/// line into one channel.
fn spawn_lines(program: &str, argv: &[String]) -> anyhow::Result<Lines> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| {
            format!("cannot run {program}: install it, or choose another launcher (--pdsh, --clush, --srun, --ssh)")
        })?;
    let (tx, rx) = mpsc::channel();
    forward(child.stdout.take(), tx.clone());
    forward(child.stderr.take(), tx);
    let pid = child.id() as i32;
    // Reap the launcher when it exits so it does not linger as a zombie.
    thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(Lines {
        rx,
        groups: vec![pid],
        halt: Arc::new(AtomicBool::new(false)),
    })
}

/// Sends each line of `pipe` down `tx` from a thread of its own.
fn forward(pipe: Option<impl Read + Send + 'static>, tx: mpsc::Sender<String>) {
    let Some(pipe) = pipe else { return };
    thread::spawn(move || {
        for line in BufReader::new(pipe).split(b'\n') {
            let Ok(line) = line else { break };
            if tx
                .send(String::from_utf8_lossy(&line).into_owned())
                .is_err()
            {
                break;
            }
        }
    });
}

/// Runs `ssh HOST remote doctor --json --compact` for each host, `fanout`
/// at a time, each bounded by the per-node timeout. Lines come back
/// prefixed `HOST: ` as pdsh prints them.
fn spawn_ssh_pool(hosts: &[String], opts: &Options) -> Lines {
    let (tx, rx) = mpsc::channel();
    let halt = Arc::new(AtomicBool::new(false));
    let hosts: Arc<Vec<String>> = Arc::new(hosts.to_vec());
    // The next host to reach: each worker takes one at a time.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..opts.fanout.clamp(1, hosts.len().max(1)) {
        let (tx, hosts, next, halt, opts) = (
            tx.clone(),
            Arc::clone(&hosts),
            Arc::clone(&next),
            Arc::clone(&halt),
            opts.clone(),
        );
        thread::spawn(move || {
            loop {
                if halt.load(Ordering::SeqCst) {
                    break;
                }
                let Some(host) = hosts.get(next.fetch_add(1, Ordering::SeqCst)) else {
                    break;
                };
                for line in ssh_one(host, &opts) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        });
    }
    Lines {
        rx,
        groups: Vec::new(),
        halt,
    }
}

/// `-o` options for every ssh and scp: never prompt, connect within the
/// per-node limit (10 s at most), then the user's own.
fn ssh_options(opts: &Options) -> Vec<String> {
    let mut args = vec![
        "-o".to_string(),
        "BatchMode=yes".to_string(),
        "-o".to_string(),
        format!("ConnectTimeout={}", opts.timeout.as_secs().clamp(1, 10)),
    ];
    for option in &opts.ssh_options {
        args.extend(["-o".to_string(), option.clone()]);
    }
    args
}

/// One host over ssh: its output lines, prefixed, or why there are none.
fn ssh_one(host: &str, opts: &Options) -> Vec<String> {
    let mut argv = vec!["ssh".to_string()];
    argv.extend(ssh_options(opts));
    argv.extend(["-T".into(), "--".into(), host.into()]);
    let mut remote = opts.remote.clone();
    remote.extend(DOCTOR_ARGS.iter().map(|s| s.to_string()));
    // ssh hands the remote shell one line: quote each word.
    argv.push(shell_words::join(&remote));
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return vec![format!("{host}: cannot run ssh: {e}")],
    };
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let status = wait_or_kill(&mut child, opts.timeout);
    let mut lines: Vec<String> = Vec::new();
    for text in [stdout.join(), stderr.join()].into_iter().flatten() {
        lines.extend(text.lines().map(|l| format!("{host}: {l}")));
    }
    match status {
        Some(code) if code != 0 && code != 3 && code != 4 => {
            lines.push(format!("{host}: ssh exited with exit code {code}"))
        }
        None => lines.push(format!(
            "{host}: command timeout after {} s",
            opts.timeout.as_secs()
        )),
        _ => {}
    }
    lines
}

/// Waits for `child` at most `timeout`; past it kills its process group
/// and returns `None`. A signal death is exit code 128 + signal.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    use wait_timeout::ChildExt;
    match child.wait_timeout(timeout) {
        Ok(Some(status)) => Some(
            status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        ),
        _ => {
            // SAFETY: kill(2) on the child's own process group.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            None
        }
    }
}

/// What a command run on one node gave back.
#[derive(Debug, Clone)]
pub struct NodeRun {
    /// Exit code; `None` when it was stopped at the timeout.
    pub exit_code: Option<i32>,
    /// Standard output then standard error, at most [`RUN_OUTPUT_CAP`]
    /// bytes (the tail is dropped).
    pub output: String,
    /// Bytes dropped past the cap.
    pub dropped: usize,
}

/// Most bytes of a node command's output kept.
pub const RUN_OUTPUT_CAP: usize = 64 * 1024;

/// Runs `argv` (a command the guard validated and the user confirmed) on
/// `host` alone through the launcher. Over pdsh, clush and ssh the remote
/// shell reads the line, so every word is quoted to arrive as it left;
/// srun runs the argv as it is.
pub fn run_on(
    launcher: &Launcher,
    opts: &Options,
    host: &str,
    argv: &[String],
) -> anyhow::Result<NodeRun> {
    let secs = opts.timeout.as_secs().max(1).to_string();
    let quoted = shell_words::join(argv);
    let mut line: Vec<String> = match launcher {
        Launcher::Pdsh(_) => ["pdsh", "-u", &secs, "-N", "-w", host, "--", &quoted]
            .map(String::from)
            .to_vec(),
        Launcher::Clush(_) => ["clush", "-u", &secs, "-N", "-w", host, "--", &quoted]
            .map(String::from)
            .to_vec(),
        Launcher::Srun { partition, .. } => {
            let mut line: Vec<String> = [
                "srun",
                "-N1",
                "--ntasks-per-node=1",
                "--immediate=30",
                "-w",
                host,
            ]
            .map(String::from)
            .to_vec();
            if let Some(p) = partition {
                line.extend(["--partition".into(), p.clone()]);
            }
            line.extend(argv.iter().cloned());
            line
        }
        Launcher::Ssh(_) => {
            let mut line = vec!["ssh".to_string()];
            line.extend(ssh_options(opts));
            line.extend(["-T".into(), "--".into(), host.into(), quoted.clone()]);
            line
        }
    };
    let program = line.remove(0);
    let mut child = Command::new(&program)
        .args(&line)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {program}: install it, or choose another launcher"))?;
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let exit_code = wait_or_kill(&mut child, opts.timeout);
    let mut output = stdout.join().unwrap_or_default();
    output.push_str(&stderr.join().unwrap_or_default());
    let dropped = output.len().saturating_sub(RUN_OUTPUT_CAP);
    if dropped > 0 {
        let mut end = RUN_OUTPUT_CAP;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
    }
    Ok(NodeRun {
        exit_code,
        output,
        dropped,
    })
}

/// Copies `binary` to `dest` on every node through the launcher. Returns
/// the hosts that failed, with the reason.
pub fn install(
    launcher: &Launcher,
    opts: &Options,
    binary: &std::path::Path,
    dest: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let hosts = launcher.hosts()?;
    let src = binary.to_string_lossy().into_owned();
    let fanout = opts.fanout.max(1).to_string();
    // Copy beside the destination, then rename: a running sigma is never
    // overwritten in place, and a half-copied file never runs.
    let staged = format!("{dest}.sigma-install");
    let rename = [
        "sh",
        "-c",
        "chmod 0755 \"$1\" && mv -f \"$1\" \"$2\"",
        "sigma-install",
        &staged,
        dest,
    ];
    let on_all = |argv: &[&str]| {
        launcher.fan_out_argv(
            &Options {
                remote: Vec::new(),
                ..opts.clone()
            },
            argv,
        )
    };
    let steps: Vec<(Vec<String>, bool)> = match launcher {
        Launcher::Pdsh(list) => vec![
            (
                ["pdcp", "-f", &fanout, "-w", list, &src, &staged]
                    .map(String::from)
                    .to_vec(),
                false,
            ),
            // pdsh hands the remote shell one line.
            (on_all(&[&shell_words::join(rename)]), false),
        ],
        Launcher::Clush(list) => vec![
            (
                [
                    "clush", "-f", &fanout, "-w", list, "--copy", &src, "--dest", &staged,
                ]
                .map(String::from)
                .to_vec(),
                false,
            ),
            (on_all(&[&shell_words::join(rename)]), false),
        ],
        Launcher::Srun { .. } => {
            // srun gives every task the binary on standard input
            // (--input=all); each writes its own temporary file.
            let script = "t=\"$1.sigma-install.$$\"; cat > \"$t\" && chmod 0755 \"$t\" && mv -f \"$t\" \"$1\"";
            let mut argv = on_all(&["sh", "-c", script, "sigma-install", dest]);
            argv.insert(1, "--input=all".into());
            vec![(argv, true)]
        }
        Launcher::Ssh(hosts) => {
            let mut failed = Vec::new();
            for host in hosts {
                let scp: Vec<String> = ["scp", "-q"]
                    .map(String::from)
                    .into_iter()
                    .chain(ssh_options(opts))
                    .chain(["--".into(), src.clone(), format!("{host}:{staged}")])
                    .collect();
                let mv: Vec<String> = ["ssh"]
                    .map(String::from)
                    .into_iter()
                    .chain(ssh_options(opts))
                    .chain(["-T", "--", host, &shell_words::join(rename)].map(String::from))
                    .collect();
                for step in [scp, mv] {
                    let out = run_step(&step, None)?;
                    if !out.status.success() {
                        let said = String::from_utf8_lossy(&out.stderr);
                        let said = said.lines().next().unwrap_or("").trim().to_string();
                        failed.push((
                            host.clone(),
                            format!("{} failed ({}): {said}", step[0], out.status),
                        ));
                        break;
                    }
                }
            }
            return Ok(failed);
        }
    };
    let mut failed: Vec<(String, String)> = Vec::new();
    for (argv, binary_on_stdin) in steps {
        let output = run_step(&argv, binary_on_stdin.then_some(binary))?;
        let mut gather = Gather::default();
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            gather.feed(line);
        }
        for n in gather.finish().no_answer {
            // A host that failed a step fails the next too: keep the first reason.
            if hosts.contains(&n.host) && !failed.iter().any(|(h, _)| *h == n.host) {
                failed.push((n.host, format!("{}: {}", argv[0], n.reason)));
            }
        }
        if failed.is_empty() && !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            failed.push((
                argv[0].clone(),
                said.lines().next().unwrap_or("failed").to_string(),
            ));
            break;
        }
    }
    Ok(failed)
}

/// Runs one step of an install, the binary on its standard input if given.
fn run_step(
    argv: &[String],
    stdin: Option<&std::path::Path>,
) -> anyhow::Result<std::process::Output> {
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    match stdin {
        Some(file) => command.stdin(
            std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?,
        ),
        None => command.stdin(Stdio::null()),
    };
    command.output().with_context(|| {
        format!(
            "cannot run {}: install it, or choose another launcher",
            argv[0]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            fanout: 16,
            timeout: Duration::from_secs(20),
            remote: vec!["/opt/sigma/sigma".into()],
            ssh_options: Vec::new(),
        }
    }

    #[test]
    fn hostlists_expand_as_pdsh_does() {
        assert_eq!(
            expand("gpu[001-003],login1").unwrap(),
            ["gpu001", "gpu002", "gpu003", "login1"]
        );
        let err = expand("gpu[3-").unwrap_err().to_string();
        assert!(err.contains("cannot read the host list"), "{err}");
    }

    #[test]
    fn launcher_command_lines_bound_each_node() {
        let pdsh = Launcher::Pdsh("gpu[1-4]".into()).fan_out_argv(&opts(), &DOCTOR_ARGS);
        assert_eq!(
            pdsh.join(" "),
            "pdsh -f 16 -u 20 -w gpu[1-4] /opt/sigma/sigma doctor --json --compact"
        );
        let srun = Launcher::Srun {
            nodes: "gpu[1-4]".into(),
            partition: Some("debug".into()),
        }
        .fan_out_argv(&opts(), &DOCTOR_ARGS);
        let srun = srun.join(" ");
        assert!(
            srun.starts_with("srun --nodes 4 --nodelist gpu[1-4] --ntasks-per-node=1"),
            "{srun}"
        );
        assert!(
            srun.ends_with("--partition debug /opt/sigma/sigma doctor --json --compact"),
            "{srun}"
        );
    }

    #[test]
    fn the_whole_run_is_bounded_by_waves_of_the_per_node_limit() {
        let limit = whole_run_limit(64, &opts());
        assert_eq!(limit, Duration::from_secs(4 * 30 + 5));
    }
}
