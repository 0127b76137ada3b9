//! `sigma tui`: the full-screen terminal UI (see [`crate::tui`]).

use std::time::Duration;

use super::Node;
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
}

impl Default for Args {
    fn default() -> Self {
        Args {
            ascii: false,
            refresh: 2,
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
        }
    }
}

/// Runs the TUI on the simulated node `sim`, or on this machine. Returns
/// exit code 0 when the user quits. Where the terminal cannot show it, the
/// error is a [`tui::TuiError::Unsupported`] (downcast it to fall back to
/// plain text).
pub fn run(sim: Option<&str>, args: &Args) -> anyhow::Result<i32> {
    let node = Node::open(sim)?;
    tui::run(node, args.options())?;
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
    fn refresh_must_be_positive() {
        assert!(Cmd::try_parse_from(["tui", "--refresh", "0"]).is_err());
        assert!(Cmd::try_parse_from(["tui", "--refresh", "soon"]).is_err());
    }
}
