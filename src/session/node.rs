//! Which node a command looks at: this machine, or a simulated one.

use anyhow::Context;

use crate::guard::Target;
use crate::probe::{self, Snapshot, Source};
use crate::sim::{self, SimNode};

/// The node a command works on.
#[derive(Debug)]
pub enum Node {
    /// This machine, probed live.
    Live,
    /// A simulated node loaded from `assets/sim` or a file.
    Simulated(Box<SimNode>),
}

impl Node {
    /// Opens the simulated node `sim` when given, else this machine.
    pub fn open(sim: Option<&str>) -> anyhow::Result<Node> {
        match sim {
            None => Ok(Node::Live),
            Some(name) => {
                let node = sim::load(name).context("cannot load the simulated node")?;
                Ok(Node::Simulated(Box::new(node)))
            }
        }
    }

    /// Where the guard's executor runs commands for this node.
    pub fn target(&self) -> Target<'_> {
        match self {
            Node::Live => Target::Live,
            Node::Simulated(node) => Target::Simulated(node),
        }
    }

    /// `live`, or `simulated: NAME`, as the audit log names the node.
    pub fn label(&self) -> String {
        match self {
            Node::Live => "live".into(),
            Node::Simulated(sim) => match &sim.snapshot.source {
                Source::Simulated { name } => format!("simulated: {name}"),
                _ => "simulated".into(),
            },
        }
    }

    /// A snapshot of the node now (probing takes a fraction of a second live).
    pub fn snapshot(&self) -> Snapshot {
        match self {
            Node::Live => probe::probe_live(),
            Node::Simulated(node) => node.snapshot.clone(),
        }
    }
}
