//! Simulated GPU nodes and the built-in command simulator.
//!
//! A simulated node ([`SimNode`]) replaces the probe and the node's commands:
//! its [`Snapshot`](crate::probe::Snapshot) feeds the checks and the copilot,
//! and [`SimNode::run`] answers the commands Sigma proposes the way the real
//! tools would, built from that same snapshot so the two never disagree.
//!
//! # Modules
//! - [`node`]: the file format (`assets/sim/README.md`), loading and errors.
//! - [`nvidia_smi`]: `nvidia-smi` (summary, `-L`, `-q`, `--query-gpu`,
//!   `--query-compute-apps`, `topo -m`, `topo -p2p`, `nvlink`).
//! - [`nvidia_monitor`]: `nvidia-smi dmon` and `nvidia-smi pmon`.
//! - [`lspci`]: `lspci` over the node's GPU-class PCI devices.
//! - [`kernel_log`]: `dmesg`, and the log lines and flags `journalctl` shares.
//! - [`journal`]: `journalctl` over the current and earlier boots.
//! - [`time_spec`]: the `--since` / `--until` times, on the node's clock.
//!
//! # Dispatch
//! A command line is answered by, in order: a `[[canned]]` entry with the
//! same argv, a hang when its program is one of the node's `hung` programs,
//! the simulator for its program (matched on the file name of `argv[0]`),
//! or `bash: NAME: command not found` with exit code 127.
//! Nothing a command does changes the node.
//!
//! ```
//! let node = sigma::sim::load("h100x8-xid79").unwrap();
//! let out = node.run(&["nvidia-smi".to_string(), "-L".to_string()]);
//! assert!(out.stdout.contains("Unable to determine the device handle"));
//! ```

pub mod journal;
pub mod kernel_log;
pub mod lspci;
pub mod node;
pub mod nvidia_monitor;
pub mod nvidia_smi;
pub mod time_spec;

use chrono::{DateTime, Utc};

use crate::probe::Snapshot;
pub use node::{Expectation, ExpectedFinding, SimError, SimNode, SimSummary, list, load};
pub use nvidia_smi::query_gpu_fields;

/// `taken_at`, the node's present, as a time (the file loader checked it
/// is RFC 3339).
fn taken_at(snap: &Snapshot) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&snap.taken_at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// What a simulated command printed and returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit status.
    pub exit_code: i32,
    /// The program never exits (a tool hung in the driver): the executor
    /// waits out its time limit and reports a timeout.
    pub hung: bool,
}

impl CommandOutput {
    /// Success with `stdout`.
    pub(crate) fn ok(stdout: String) -> Self {
        Self {
            stdout,
            stderr: String::new(),
            exit_code: 0,
            hung: false,
        }
    }

    /// Failure: `stderr` and `exit_code`.
    pub(crate) fn fail(stderr: String, exit_code: i32) -> Self {
        Self {
            stdout: String::new(),
            stderr,
            exit_code,
            hung: false,
        }
    }

    /// A program that never exits and prints nothing.
    pub(crate) fn hung() -> Self {
        Self {
            hung: true,
            ..Self::default()
        }
    }
}

/// `argv` without `--no-pager`: output goes to a pipe, never a pager, so a
/// canned answer holds with or without it.
fn without_pager_flags(argv: &[String]) -> Vec<&str> {
    argv.iter()
        .map(String::as_str)
        .filter(|a| *a != "--no-pager")
        .collect()
}

impl SimNode {
    /// Answers the command line `argv` as the node would (see the module
    /// docs for the order). Never fails: errors are command output.
    pub fn run(&self, argv: &[String]) -> CommandOutput {
        if let Some(c) = self
            .canned
            .iter()
            .find(|c| without_pager_flags(&c.argv) == without_pager_flags(argv))
        {
            return c.output.clone();
        }
        let Some(program) = argv.first() else {
            return CommandOutput::default();
        };
        let name = program.rsplit('/').next().unwrap_or(program);
        if self.hung_programs.iter().any(|p| p == name) {
            return CommandOutput::hung();
        }
        let args = &argv[1..];
        match name {
            "nvidia-smi" if self.has_nvidia_driver() => nvidia_smi::run(self, args),
            "lspci" => lspci::run(self, args),
            "dmesg" => kernel_log::dmesg(self, args),
            "journalctl" => journal::journalctl(self, args),
            _ => CommandOutput::fail(format!("bash: {name}: command not found\n"), 127),
        }
    }

    /// Programs that never exit on this node (its `[node] hung` list).
    pub fn hung_programs(&self) -> &[String] {
        &self.hung_programs
    }

    /// The NVIDIA driver is installed (so `nvidia-smi` exists).
    fn has_nvidia_driver(&self) -> bool {
        self.snapshot.nvidia.is_some() || !self.snapshot.gpus.is_empty()
    }
}
