//! `sigma sim ...`: the simulated nodes shipped with Sigma.

use std::io::Write;

use super::print_json;
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
    }
}
