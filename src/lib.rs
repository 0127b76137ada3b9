//! Sigma: a terminal copilot for GPU infrastructure.
//!
//! Data flows one way: [`probe`] -> [`checks`] -> copilot (engine) -> guard ->
//! front end ([`cli`], [`tui`]). [`sim`] replaces the probe and the node's commands with
//! a simulated node.

pub mod audit;
pub mod checks;
pub mod cli;
pub mod copilot;
pub mod engine;
pub mod eval;
pub mod guard;
pub mod probe;
pub mod repl;
pub mod sim;
pub mod tui;
