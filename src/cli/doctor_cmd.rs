//! `sigma doctor`: run the checks and report findings with an exit code.
//!
//! With `--explain` the model then explains the findings and proposes next
//! steps, exactly as `sigma ask` answers a question (same flags, same
//! approval policy, same JSON for the answer, in `explanation`). The exit
//! code still says what the checks found; Ctrl-C during the explanation
//! exits 130.
//!
//! For fleets: `--json --compact` prints the one-line verdict pdsh and clush
//! can attribute (`report::verdict`), and `--prom-out DIR` writes
//! `DIR/sigma.prom` for node_exporter's textfile collector (`report::prom`).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::session_args::CopilotArgs;
use super::{EXIT_USAGE, print_json};
use crate::report::verdict::Verdict;
use crate::report::{DoctorReport, prom, render};
use crate::session::{Consulted, EXIT_INTERRUPTED, Node, consult};

/// Arguments of `sigma doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the report as JSON (schema: docs/doctor.schema.json).
    #[arg(long)]
    pub json: bool,

    /// With --json: one line (host, verdict, version, time, findings by
    /// id with GPU index and UUID), for pdsh, clush and `sigma fleet`
    /// (schema: docs/verdict.schema.json).
    #[arg(long, requires = "json", conflicts_with = "explain")]
    pub compact: bool,

    /// Write DIR/sigma.prom for node_exporter's textfile collector
    /// (atomically); nothing is printed unless --json is given too.
    #[arg(long, value_name = "DIR", conflicts_with = "explain")]
    pub prom_out: Option<std::path::PathBuf>,

    /// Then ask the model to explain the findings and propose next steps
    /// (the flags below apply only with it).
    #[arg(long)]
    pub explain: bool,

    /// The model and which of its proposals run.
    #[command(flatten)]
    pub copilot: CopilotArgs,
}

/// What `--explain` asks the model.
const EXPLAIN_QUESTION: &str = "Explain the findings on this node: what each one means, \
how serious it is, and the next steps, with the commands to confirm or fix it.";

/// Runs `sigma doctor`.
pub fn run(sim: Option<&str>, args: &Args) -> anyhow::Result<i32> {
    if !args.explain && !args.copilot.is_default() {
        let _ = writeln!(
            std::io::stderr(),
            "sigma: error: --run, --model, --rounds and --threads only apply with --explain; add --explain"
        );
        return Ok(EXIT_USAGE);
    }
    let node = Node::open(sim)?;
    let mut report = DoctorReport::new(node.snapshot());
    if let Some(dir) = &args.prom_out {
        write_prom(dir, &prom::metrics(&report))?;
        if !args.json {
            return Ok(report.exit_code);
        }
    }
    if args.compact {
        let mut out = std::io::stdout().lock();
        let mut verdict = Verdict::of(&report);
        // Under srun, the name the operator gave Slurm (`--srun gpu-017`),
        // which may differ from the host name, attributes the line.
        if let Some(name) = crate::fleet::slurm::slurm_node_name() {
            verdict.host = name;
        }
        writeln!(out, "{}", verdict.to_line())?;
        return Ok(report.exit_code);
    }
    if args.json {
        if args.explain {
            let consulted = consult(
                &node,
                EXPLAIN_QUESTION,
                &args.copilot.options(),
                false,
                &mut std::io::sink(),
            )?;
            let Consulted::Answered(explanation, _) = consulted else {
                return Ok(EXIT_INTERRUPTED);
            };
            report.explanation = Some(explanation);
        }
        print_json(&report)?;
        return Ok(report.exit_code);
    }
    let mut out = anstream::stdout().lock();
    render::doctor(&mut out, &report)?;
    if args.explain {
        writeln!(out)?;
        let consulted = consult(
            &node,
            EXPLAIN_QUESTION,
            &args.copilot.options(),
            true,
            &mut out,
        )?;
        if let Consulted::Interrupted = consulted {
            return Ok(EXIT_INTERRUPTED);
        }
    }
    Ok(report.exit_code)
}

/// The file name `--prom-out DIR` writes.
const PROM_FILE: &str = "sigma.prom";

/// Writes `DIR/sigma.prom` atomically: a temporary file in `dir`, then a
/// rename, so the collector never reads half a file. Returns the path.
fn write_prom(dir: &Path, text: &str) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let path = dir.join(PROM_FILE);
    let fix = "give --prom-out a directory Sigma can write (node_exporter's --collector.textfile.directory)";
    let mut tmp = tempfile::Builder::new()
        .prefix(".sigma.prom.")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}: {fix}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write in {}: {fix}", dir.display()))?;
    // node_exporter often runs as another user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(&path)
        .with_context(|| format!("cannot replace {}: {fix}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_file_is_replaced_whole_and_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_prom(dir.path(), "a 1\n").unwrap();
        write_prom(dir.path(), "b 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b 2\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        let err = write_prom(Path::new("/nonexistent/dir"), "x").unwrap_err();
        assert!(format!("{err:#}").contains("give --prom-out a directory"));
    }
}
