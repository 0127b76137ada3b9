//! `sigma sim ...`: the simulated nodes shipped with Sigma.

use std::io::Write;

use super::session_args::CommandTimeoutArg;
use super::{EXIT_FAILURE, print_json};
use crate::checks::printable;
use crate::guard::{self, Exit, Limits, Target, Tier};
use crate::sim;

/// Subcommands of `sigma sim`.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// List the simulated nodes (use one with `--simulate NAME`).
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one command on a simulated node, as Sigma would run a proposal:
    /// judged by the guard, answered by the simulator. Exits with the
    /// command's exit code (1 when the guard refuses it).
    Run {
        /// The simulated node: a name from `sigma sim list` or a .toml file.
        #[arg(value_name = "NODE")]
        node: String,
        /// The command line, after `--` (`sigma sim run h100x8-xid79 -- nvidia-smi -L`).
        #[arg(value_name = "COMMAND", required = true, last = true)]
        command: Vec<String>,
        #[command(flatten)]
        command_timeout: CommandTimeoutArg,
    },
}

/// Runs `sigma sim ...`.
pub fn run(cmd: &SimCommand) -> anyhow::Result<i32> {
    match cmd {
        SimCommand::List { json } => {
            let nodes = sim::list();
            if *json {
                print_json(&nodes)?;
            } else {
                let mut out = anstream::stdout().lock();
                let width = nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
                for n in &nodes {
                    writeln!(out, "{:width$}  {}", n.name, n.description)?;
                }
            }
            Ok(0)
        }
        SimCommand::Run {
            node,
            command,
            command_timeout,
        } => run_on(node, command, command_timeout.limits()),
    }
}

/// `sigma sim run`: the guard's verdict on stderr, then what the simulator
/// printed, with its exit code (and on stderr how it ended, when it did not
/// exit by itself).
fn run_on(node: &str, command: &[String], limits: Limits) -> anyhow::Result<i32> {
    let node = sim::load(node)?;
    // One word is a whole command line (`-- "nvidia-smi -L | head"`).
    let line = match command {
        [one] => one.clone(),
        _ => guard::command_line(command),
    };
    let verdict = guard::check(&line);
    let mut err = anstream::stderr().lock();
    writeln!(err, "{}: {}", verdict.tier, printable(&verdict.rule))?;
    if verdict.tier == Tier::Blocked {
        return Ok(EXIT_FAILURE);
    }
    let run = guard::execute(&verdict, Target::Simulated(&node), &limits)?;
    write!(anstream::stdout(), "{}", printable(&run.stdout.text))?;
    write!(err, "{}", printable(&run.stderr.text))?;
    if run.exit == Exit::TimedOut {
        writeln!(
            err,
            "sigma: {} {} after {} s (--command-timeout)",
            printable(&line),
            run.exit,
            limits.timeout.as_secs()
        )?;
    }
    Ok(run.exit.code())
}
