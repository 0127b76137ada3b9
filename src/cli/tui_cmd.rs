//! `sigma tui`: the full-screen terminal UI (see [`crate::tui`]).
//!
//! Where the terminal cannot show it (`TERM=dumb`, standard output not a
//! terminal) the doctor's plain-text report is printed instead.

use std::io::{self, Write};
use std::time::Duration;

use super::session_args::{CommandTimeoutArg, DeviceArgs};
use crate::copilot::local::LocalOptions;
use crate::report::{DoctorReport, render};
use crate::session::Node;
use crate::tui::{self, Options, Theme};

/// Arguments of `sigma tui`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Draw with ASCII only: `+-|` borders, no Unicode symbols.
    #[arg(long)]
    pub ascii: bool,

    /// Seconds between refreshes of the GPU table and findings (1 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub refresh: u64,

    /// The model that answers (a name or a .gguf file); the default model
    /// when absent. It loads in the background.
    #[arg(long, value_name = "NAME|PATH")]
    pub model: Option<String>,

    /// Most answers per question: after a command runs, its output goes
    /// back to the model for another answer (1 to 10).
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u8).range(1..=10))]
    pub rounds: u8,

    #[command(flatten)]
    pub command_timeout: CommandTimeoutArg,

    #[command(flatten)]
    pub device: DeviceArgs,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            ascii: false,
            refresh: 2,
            model: None,
            rounds: 3,
            command_timeout: CommandTimeoutArg::default(),
            device: DeviceArgs::default(),
        }
    }
}

impl Args {
    /// The TUI's options: these flags plus the colour choice (`NO_COLOR`,
    /// `--no-color`).
    pub fn options(&self) -> Options {
        Options {
            theme: Theme {
                color: tui::color_wanted(),
                ascii: self.ascii,
            },
            refresh: Duration::from_secs(self.refresh),
            rounds: usize::from(self.rounds),
            limits: self.command_timeout.limits(),
        }
    }
}

/// Runs the TUI on the simulated node `sim`, or on this machine, loading
/// the model in the background. Returns exit code 0 when the user quits.
/// Where the terminal cannot show it, prints the doctor's report as plain
/// text (exit 0) after a one-line note on standard error.
pub fn run(sim: Option<&str>, args: &Args) -> anyhow::Result<i32> {
    let node = Node::open(sim)?;
    if let Some(reason) = tui::unsupported_reason() {
        writeln!(
            io::stderr(),
            "sigma: the full-screen UI needs a terminal ({reason}); plain report follows"
        )?;
        let mut out = anstream::stdout();
        render::doctor(&mut out, &DoctorReport::new(node.snapshot()))?;
        return Ok(0);
    }
    let model = args.model.clone();
    let device = args.device.choice();
    let load: crate::copilot::worker::Loader = Box::new(move |cancel| {
        let opts = LocalOptions {
            model,
            device,
            cancel,
            // A progress bar on stderr would draw over the screen.
            progress: false,
            ..LocalOptions::default()
        };
        crate::copilot::load(&opts).map_err(|e| format!("no model: {e:#}"))
    });
    tui::run(node, args.options(), load)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn refresh_defaults_to_two_seconds() {
        let cmd = Cmd::try_parse_from(["tui"]).expect("parses");
        assert_eq!(cmd.args.options().refresh, Duration::from_secs(2));
        assert!(!cmd.args.ascii);
    }

    #[test]
    fn ascii_and_refresh_parse() {
        let cmd = Cmd::try_parse_from(["tui", "--ascii", "--refresh", "5"]).expect("parses");
        assert!(cmd.args.options().theme.ascii);
        assert_eq!(cmd.args.refresh, 5);
    }

    #[test]
    fn model_and_rounds_parse() {
        let cmd = Cmd::try_parse_from(["tui", "--model", "smollm2-135m", "--rounds", "1"])
            .expect("parses");
        assert_eq!(cmd.args.model.as_deref(), Some("smollm2-135m"));
        assert_eq!(cmd.args.options().rounds, 1);
        let cmd = Cmd::try_parse_from(["tui"]).expect("parses");
        assert_eq!(cmd.args.options().rounds, 3);
        assert!(Cmd::try_parse_from(["tui", "--rounds", "0"]).is_err());
    }

    #[test]
    fn refresh_must_be_positive() {
        assert!(Cmd::try_parse_from(["tui", "--refresh", "0"]).is_err());
        assert!(Cmd::try_parse_from(["tui", "--refresh", "soon"]).is_err());
    }
}
