//! What every front end shows: the reports and their plain-text renderings.
//!
//! The one-shot commands (`src/cli`), the chat (`src/repl`), the TUI
//! (`src/tui`) and the fleet and exporter modes to come all show the same
//! few things about a node. They are defined once, here:
//!
//! | module | owns |
//! |---|---|
//! | [`doctor`] | [`DoctorReport`]: the checks' verdict, its exit code and `sigma doctor --json` |
//! | [`answer`] | [`AnswerReport`]: the copilot's answer with each command's verdict and run (`sigma ask --json`) |
//! | [`render`] | snapshots, findings and doctor reports as 80-column text |
//! | [`transcript`] | proposals, command runs and argument explanations as plain text |
//!
//! # What it must not touch
//! Probing, judging, generating and running: it formats what the layers
//! below produced. It never imports a front end, and it does no I/O beyond
//! writing to the `Write` it is given.

pub mod answer;
pub mod doctor;
pub mod fleet;
pub mod prom;
pub mod render;
pub mod transcript;
pub mod verdict;

pub use answer::{AnswerReport, CommandReport, RunRecord};
pub use doctor::{DoctorReport, EXIT_CRITICAL, EXIT_HEALTHY, EXIT_WARNING, Status, Summary};
