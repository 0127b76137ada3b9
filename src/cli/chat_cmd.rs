//! `sigma chat`: ask about the node in a conversation (see [`crate::repl`]).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::session_args::{CommandTimeoutArg, DeviceArgs};
use crate::copilot::Assistant;
use crate::copilot::approval::RunMode;
use crate::engine::device::DeviceChoice;
use crate::repl;
use crate::session::{Cancel, Node, Options};

/// Arguments of `sigma chat`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which proposed commands run: never (propose only), safe (read-only
    /// ones without asking, the others confirmed), confirm (ask for each).
    #[arg(long = "run", value_enum, value_name = "MODE", default_value_t = RunMode::Confirm)]
    pub run: RunMode,

    /// The model that answers (a name or a .gguf file); the default model
    /// when absent.
    #[arg(long, value_name = "NAME|PATH")]
    pub model: Option<String>,

    /// Most answers per question: after commands run, their output goes
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
            run: RunMode::Confirm,
            model: None,
            rounds: 3,
            command_timeout: CommandTimeoutArg::default(),
            device: DeviceArgs::default(),
        }
    }
}

/// Loads the assistant for `--model` (`None`: the default) on the device
/// chosen, handing it the flag that Ctrl-C sets to stop a generation. `Err`
/// holds the one line shown for each question when there is no model
/// (`no model: run ...`).
pub type LoadAssistant<'a> =
    &'a dyn Fn(Option<&str>, DeviceChoice, Arc<AtomicBool>) -> Result<Box<dyn Assistant>, String>;

/// Runs `sigma chat` on the simulated node `sim` or on this machine (see
/// [`repl::run`]). Exit code 0 when the user leaves.
pub fn run(sim: Option<&str>, args: &Args, load: LoadAssistant<'_>) -> anyhow::Result<i32> {
    let node = Node::open(sim)?;
    let cancel = Cancel::new();
    cancel.on_interrupt()?;
    let mut model = load(args.model.as_deref(), args.device.choice(), cancel.flag());
    let (assistant, no_model) = match &mut model {
        Ok(a) => (Some(a.as_mut() as &mut dyn Assistant), String::new()),
        Err(reason) => (None, reason.clone()),
    };
    let options = Options {
        run_mode: args.run,
        rounds: args.rounds.into(),
        limits: args.command_timeout.limits(),
        no_model,
        cancel,
    };
    repl::run(&node, assistant, options, &mut anstream::stdout())?;
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
    fn defaults_confirm_and_three_rounds() {
        let cmd = Cmd::try_parse_from(["chat"]).expect("parses");
        assert_eq!(cmd.args.run, RunMode::Confirm);
        assert_eq!(cmd.args.rounds, 3);
        assert_eq!(cmd.args.model, None);
    }

    #[test]
    fn run_mode_model_and_rounds_parse() {
        let cmd = Cmd::try_parse_from([
            "chat", "--run", "safe", "--model", "m.gguf", "--rounds", "1",
        ])
        .expect("parses");
        assert_eq!(cmd.args.run, RunMode::Safe);
        assert_eq!(cmd.args.model.as_deref(), Some("m.gguf"));
        assert_eq!(cmd.args.rounds, 1);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(Cmd::try_parse_from(["chat", "--run", "always"]).is_err());
        assert!(Cmd::try_parse_from(["chat", "--rounds", "0"]).is_err());
        assert!(Cmd::try_parse_from(["chat", "--rounds", "11"]).is_err());
    }
}
