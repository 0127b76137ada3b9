//! Command-line front end: argument parsing, dispatch and exit codes.
//!
//! The binary is thin: each subcommand lives in its own module and returns an
//! exit code. Errors reach [`main`] as `anyhow::Error` and are printed as one
//! line (`sigma: error: ...`) with exit code 1; usage errors exit 2 (clap).
//!
//! # Exit codes
//! - 0: success (for `doctor`: healthy)
//! - 1: Sigma itself failed
//! - 2: usage error
//! - 3: `doctor` found warnings
//! - 4: `doctor` found critical problems
//! - 5: `fleet`: no node is critical but some node gave no verdict
//! - 1 / 2 for `npd`: a problem / Sigma failed (node-problem-detector's protocol)
//! - 130: Ctrl-C stopped `generate`, `ask` or `doctor --explain`

mod ask_cmd;
mod bench_cmd;
mod bench_diffqkv;
mod bench_quality;
mod bench_stats;
mod chat_cmd;
mod doctor_cmd;
mod eval_cmd;
mod exporter_cmd;
mod fleet_cmd;
mod generate_cmd;
mod log_cmd;
mod model_cmd;
mod npd_cmd;
mod session_args;
mod sim_cmd;
mod slurm_cmd;
mod snapshot_cmd;
mod tui_cmd;

use std::io::{self, Write};

use clap::{Parser, Subcommand};

use crate::copilot::Assistant;
use crate::copilot::local::LocalOptions;

/// Exit code when Sigma itself failed.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for a usage error (clap uses it too).
pub const EXIT_USAGE: i32 = 2;

/// Sigma: a terminal copilot for GPU infrastructure.
#[derive(Debug, Parser)]
#[command(name = "sigma", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Use a simulated node instead of this machine: a name from `sigma sim list`
    /// or a path to a .toml file.
    #[arg(long, global = true, value_name = "NAME|PATH", env = "SIGMA_SIMULATE")]
    pub simulate: Option<String>,

    /// Never colour the output (NO_COLOR in the environment does the same).
    #[arg(long, global = true)]
    pub no_color: bool,

    /// What to do; without one, the full-screen UI on a terminal.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print what the probe sees on the node: GPUs, PCI, XIDs, host.
    Snapshot(snapshot_cmd::Args),
    /// Check the node and report findings (exit 0 healthy, 3 warnings, 4 critical).
    Doctor(doctor_cmd::Args),
    /// Full-screen terminal UI: GPUs, findings, proposals, conversation.
    Tui(tui_cmd::Args),
    /// Ask the copilot one question about the node (answer + validated commands).
    Ask(ask_cmd::Args),
    /// Talk with the copilot about the node: questions, proposals, /run, /doctor.
    Chat(chat_cmd::Args),
    /// Show the audit log: sessions, questions, proposals, approvals and runs.
    Log(log_cmd::Args),
    /// Score the copilot on the evaluation scenarios (assets/eval).
    Eval(eval_cmd::Args),
    /// Manage local models: list, pull, info, path.
    Model(model_cmd::ModelArgs),
    /// Run a GGUF model in-process on a prompt and stream the output.
    Generate(generate_cmd::GenerateArgs),
    /// Measure prefill and decode speed (optionally against llama.cpp).
    Bench(bench_cmd::BenchArgs),
    /// Simulated nodes.
    #[command(subcommand)]
    Sim(sim_cmd::SimCommand),
    /// Check many nodes through pdsh, clush, srun or ssh and group the findings.
    Fleet(fleet_cmd::Args),
    /// Slurm's HealthCheckProgram (drains on critical findings) and Prolog.
    #[command(subcommand)]
    Slurm(slurm_cmd::SlurmCommand),
    /// node-problem-detector custom plugin: exit 0/1/2 and one line.
    Npd(npd_cmd::Args),
    /// Serve the doctor's metrics over HTTP for Prometheus.
    Exporter(exporter_cmd::Args),
}

/// Runs the CLI on the process arguments and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    // anstream's own detection colours a dumb terminal when `CI` is set;
    // a dumb terminal shows escape codes as garbage, so it never gets them.
    let dumb_terminal = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    if cli.no_color || dumb_terminal {
        anstream::ColorChoice::Never.write_global();
    }
    match run(cli) {
        Ok(code) => code,
        Err(err) => report_error(&err),
    }
}

/// Dispatches a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let sim = cli.simulate.as_deref().filter(|s| !s.is_empty());
    match cli.command {
        Some(Command::Snapshot(args)) => snapshot_cmd::run(sim, &args),
        Some(Command::Doctor(args)) => doctor_cmd::run(sim, &args),
        Some(Command::Tui(args)) => tui_cmd::run(sim, &args),
        Some(Command::Ask(args)) => ask_cmd::run(sim, &args),
        Some(Command::Chat(args)) => chat_cmd::run(sim, &args, &load_local),
        Some(Command::Log(args)) => log_cmd::run(&args),
        Some(Command::Eval(args)) => eval_cmd::run(sim, &args, |model: Option<&str>| {
            crate::copilot::load(&LocalOptions {
                model: model.map(str::to_string),
                speculate: args.speculate,
                ..LocalOptions::default()
            })
        }),
        Some(Command::Model(args)) => model_cmd::run(args),
        Some(Command::Generate(args)) => generate_cmd::run(args),
        Some(Command::Bench(args)) => bench_cmd::run(args),
        Some(Command::Sim(cmd)) => sim_cmd::run(&cmd),
        Some(Command::Fleet(args)) => fleet_cmd::run(&args),
        Some(Command::Slurm(cmd)) => slurm_cmd::run(sim, &cmd),
        Some(Command::Npd(args)) => npd_cmd::run(sim, &args),
        Some(Command::Exporter(args)) => exporter_cmd::run(sim, &args),
        // No subcommand: the dashboard where the terminal can show it,
        // plain-text findings where it cannot (pipes, TERM=dumb).
        None if crate::tui::is_supported() => tui_cmd::run(sim, &tui_cmd::Args::default()),
        // Not a terminal (pipes, TERM=dumb): a plain-text conversation over
        // the lines of standard input.
        None => chat_cmd::run(sim, &chat_cmd::Args::default(), &load_local),
    }
}

/// Loads the local model for `sigma chat` (and `sigma` on a pipe); the
/// error is the one line shown for each question when there is none.
fn load_local(
    model: Option<&str>,
    device: crate::engine::device::DeviceChoice,
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<Box<dyn Assistant>, String> {
    let opts = LocalOptions {
        model: model.map(str::to_string),
        device,
        cancel,
        ..LocalOptions::default()
    };
    crate::copilot::load(&opts).map_err(|e| format!("no model: {e:#}"))
}

/// Prints an error as one line and returns the exit code. A closed stdout
/// (`sigma snapshot | head -1`) is not an error.
fn report_error(err: &anyhow::Error) -> i32 {
    if let Some(io_err) = err.downcast_ref::<io::Error>()
        && io_err.kind() == io::ErrorKind::BrokenPipe
    {
        return 0;
    }
    let _ = writeln!(io::stderr(), "sigma: error: {err:#}");
    EXIT_FAILURE
}

/// Writes a value as pretty JSON followed by a newline to stdout.
pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    // Node text in the JSON stays inert on a terminal too.
    let json = serde_json::to_string_pretty(value)?;
    out.write_all(crate::checks::inert_json(&json).as_bytes())?;
    writeln!(out)?;
    Ok(())
}
