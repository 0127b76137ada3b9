//! `sigma snapshot`: print what the probe sees.

use super::print_json;
use crate::report::render;
use crate::session::Node;

/// Arguments of `sigma snapshot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the snapshot as JSON (schema: docs/snapshot.schema.json).
    #[arg(long)]
    pub json: bool,
}

/// Runs `sigma snapshot`.
pub fn run(sim: Option<&str>, args: &Args) -> anyhow::Result<i32> {
    let snapshot = Node::open(sim)?.snapshot();
    if args.json {
        print_json(&snapshot)?;
    } else {
        render::snapshot(&mut anstream::stdout().lock(), &snapshot)?;
    }
    Ok(0)
}
