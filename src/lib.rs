//! Sigma: a terminal copilot for GPU infrastructure.
//!
//! Data flows one way: [`probe`] -> [`checks`] -> [`copilot`] ([`engine`]) ->
//! [`guard`] -> [`session`] and [`report`] -> front end ([`cli`], [`repl`],
//! [`tui`]). [`sim`] replaces the probe and the node's commands with a
//! simulated node.
//!
//! The front ends never import each other: what they share (the node, the
//! reports and their renderings, the consult flow) lives in [`session`] and
//! [`report`]. Only the dispatch names another front end: `cli`'s `chat`
//! and `tui` subcommands hand over to [`repl::run`] and [`tui::run`].
//! `tests/layers.rs` keeps the rule.

pub mod audit;
pub mod checks;
pub mod cli;
pub mod copilot;
pub mod engine;
pub mod eval;
pub mod fleet;
pub mod guard;
pub mod probe;
pub mod repl;
pub mod report;
pub mod session;
pub mod sim;
pub mod tui;
