//! Deterministic checks: rules over a [`Snapshot`](crate::probe::Snapshot)
//! that produce [`Finding`]s. No I/O, no model: the same snapshot always
//! gives the same findings.

pub mod finding;

pub use finding::*;
