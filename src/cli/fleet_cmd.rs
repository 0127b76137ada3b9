//! `sigma fleet`: every node's verdict through the site's launcher, grouped
//! by finding.
//!
//! The nodes run `sigma doctor --json --compact`; this side gathers the
//! lines (or reads lines someone else collected with `--from`), groups
//! findings by id, lists the nodes that gave no verdict with the
//! launcher's reason, and exits with the fleet's worst state. No model runs.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;

use super::print_json;
use crate::audit::{AuditLog, Record};
use crate::checks::printable;
use crate::copilot::approval::{self, RunMode, TerminalPrompter};
use crate::fleet::launch::{self, Launcher, Options};
use crate::fleet::{Gather, ask};
use crate::report::fleet::{self, FleetReport};
use crate::session::EXIT_INTERRUPTED;

/// Arguments of `sigma fleet`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("nodes")
        .required(true)
        .args(["pdsh", "clush", "srun", "ssh", "hosts", "from"])
))]
pub struct Args {
    /// Reach the nodes with pdsh (a hostlist: gpu[001-064],login1).
    #[arg(long, value_name = "HOSTLIST")]
    pub pdsh: Option<String>,
    /// Reach the nodes with ClusterShell's clush (a node set).
    #[arg(long, value_name = "NODESET")]
    pub clush: Option<String>,
    /// Reach the nodes with Slurm's srun (a node list).
    #[arg(long, value_name = "NODELIST")]
    pub srun: Option<String>,
    /// With --srun: the partition.
    #[arg(long, requires = "srun")]
    pub partition: Option<String>,
    /// Reach these hosts with ssh (BatchMode: keys or an agent, no prompts).
    #[arg(long, value_name = "HOST", num_args = 1..)]
    pub ssh: Vec<String>,
    /// Reach the hosts listed in FILE (one per line, # comments) with ssh.
    #[arg(long, value_name = "FILE")]
    pub hosts: Option<std::path::PathBuf>,
    /// Read verdict lines collected elsewhere (`-` for standard input):
    /// bare, or prefixed `host: ` as pdsh and clush print them.
    #[arg(long, value_name = "FILE|-")]
    pub from: Option<String>,

    /// Nodes reached at once.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub fanout: usize,
    /// Seconds a node may take before it is reported as timed out.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub timeout: u64,
    /// How to start Sigma on a node (program and leading arguments).
    #[arg(long, default_value = "sigma", value_name = "COMMAND")]
    pub remote_sigma: String,
    /// An ssh option for --ssh/--hosts and their scp (`Port=2222`,
    /// `ProxyJump=bastion`); repeat for more.
    #[arg(long, value_name = "OPTION")]
    pub ssh_option: Vec<String>,

    /// Print the fleet report as JSON (schema: docs/fleet.schema.json).
    #[arg(long)]
    pub json: bool,

    /// Then answer a question about the fleet ("which nodes should I
    /// drain?"): node names and per-node commands, each validated, each
    /// run only after you confirm it for that node.
    #[arg(long, value_name = "QUESTION", conflicts_with = "install")]
    pub ask: Option<String>,

    /// Instead of checking, copy this binary to DEST on every node (through
    /// pdcp, clush --copy, srun or scp).
    #[arg(long, value_name = "DEST", num_args = 0..=1, default_missing_value = "/usr/local/bin/sigma", conflicts_with = "from")]
    pub install: Option<String>,
}

/// Runs `sigma fleet`.
pub fn run(args: &Args) -> anyhow::Result<i32> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let mut reach = None;
    let report = match &args.from {
        Some(source) => gather_from(source)?,
        None => {
            let launcher = launcher(args)?;
            let remote = shell_words::split(&args.remote_sigma)
                .ok()
                .filter(|w| !w.is_empty())
                .context("--remote-sigma must name a program, e.g. /usr/local/bin/sigma")?;
            let opts = Options {
                fanout: args.fanout.max(1),
                timeout: Duration::from_secs(args.timeout.max(1)),
                remote,
                ssh_options: args.ssh_option.clone(),
            };
            if let Some(dest) = &args.install {
                return install(&launcher, &opts, dest);
            }
            // Ctrl-C stops the launcher and reports what came back.
            signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&interrupt))
                .context("cannot watch for Ctrl-C")?;
            let bar = progress_bar(launcher.hosts()?.len());
            let report = launch::run_doctor(&launcher, &opts, &interrupt, &mut |host| {
                bar.set_message(host.to_string());
                bar.inc(1);
            })?;
            bar.finish_and_clear();
            reach = Some((launcher, opts));
            report
        }
    };
    if let Some(question) = &args.ask {
        let answer = ask::answer(&report, question);
        if args.json {
            print_json(&serde_json::json!({
                "fleet": report,
                "question": question,
                "answer": answer.answer,
                "proposals": answer.proposals,
            }))?;
        } else {
            let mut out = anstream::stdout().lock();
            fleet::render(&mut out, &report)?;
            writeln!(out)?;
            show_answer(&mut out, &answer)?;
            drop(out);
            confirm_and_run(question, &answer, reach.as_ref())?;
        }
    } else if args.json {
        print_json(&report)?;
    } else {
        fleet::render(&mut anstream::stdout().lock(), &report)?;
    }
    if interrupt.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(EXIT_INTERRUPTED);
    }
    Ok(report.exit_code)
}

/// Prints the answer and its numbered per-node commands with the guard's
/// tier.
fn show_answer(out: &mut dyn Write, answer: &ask::FleetAnswer) -> std::io::Result<()> {
    writeln!(out, "{}", printable(&answer.answer))?;
    for (n, p) in answer.proposals.iter().enumerate() {
        let verdict = &p.proposal.verdict;
        writeln!(
            out,
            "  [{}] {}: {}  ({}; {})",
            n + 1,
            printable(&p.host),
            printable(&p.proposal.command),
            verdict.tier,
            printable(&p.proposal.purpose)
        )?;
    }
    Ok(())
}

/// Offers each allowed command for its node: it runs there only when the
/// user confirms it on the terminal, node by node; every step goes to the
/// audit log.
fn confirm_and_run(
    question: &str,
    answer: &ask::FleetAnswer,
    reach: Option<&(Launcher, Options)>,
) -> anyhow::Result<()> {
    if answer.proposals.is_empty() {
        return Ok(());
    }
    let mut err = std::io::stderr();
    let Some((launcher, opts)) = reach else {
        writeln!(
            err,
            "sigma: read from a file, so no node can be reached: run again with --pdsh, --clush, --srun or --ssh to run these"
        )?;
        return Ok(());
    };
    let mut audit = AuditLog::open();
    audit.record(Record::session("fleet", "fleet", RunMode::Confirm, None));
    audit.record(Record::Question {
        text: question.to_string(),
    });
    let mut prompter = TerminalPrompter::new();
    for (n, p) in answer.proposals.iter().enumerate() {
        let verdict = &p.proposal.verdict;
        let on_node = format!("{}: {}", p.host, p.proposal.command);
        audit.record(Record::Proposal {
            n: n + 1,
            command: on_node.clone(),
            purpose: p.proposal.purpose.clone(),
            tier: verdict.tier,
            rule: verdict.rule.clone(),
        });
        writeln!(err, "[{}] on {}:", n + 1, printable(&p.host))?;
        let approval = approval::approve(RunMode::Confirm, verdict, &mut prompter);
        audit.record(Record::Approval {
            command: on_node.clone(),
            approved: approval.approved,
            by: approval.by,
            reason: approval.reason.clone(),
        });
        if !approval.approved {
            writeln!(err, "  not run: {}", approval.reason)?;
            continue;
        }
        let argv = verdict.pipeline.first().cloned().unwrap_or_default();
        if verdict.pipeline.len() != 1 || argv.is_empty() {
            writeln!(err, "  not run: only single commands run on remote nodes")?;
            continue;
        }
        let started = std::time::Instant::now();
        let run = launch::run_on(launcher, opts, &p.host, &argv);
        let mut out = anstream::stdout().lock();
        match run {
            Ok(run) => {
                for line in run.output.lines() {
                    writeln!(out, "{}: {}", printable(&p.host), printable(line))?;
                }
                let status = match run.exit_code {
                    Some(code) => format!("exit {code}"),
                    None => format!("stopped after {} s", opts.timeout.as_secs()),
                };
                writeln!(out, "[{}] {}: {status}", n + 1, printable(&p.host))?;
                audit.record(Record::Execution {
                    command: on_node,
                    exit_code: run.exit_code,
                    duration_ms: started.elapsed().as_millis() as u64,
                    output_bytes: run.output.len(),
                    dropped_bytes: run.dropped,
                    error: None,
                    programs: Vec::new(),
                });
            }
            Err(e) => {
                writeln!(err, "  not run: {e:#}")?;
                audit.record(Record::Execution {
                    command: on_node,
                    exit_code: None,
                    duration_ms: 0,
                    output_bytes: 0,
                    dropped_bytes: 0,
                    error: Some(format!("{e:#}")),
                    programs: Vec::new(),
                });
            }
        }
    }
    Ok(())
}

/// The launcher the flags name.
fn launcher(args: &Args) -> anyhow::Result<Launcher> {
    if let Some(list) = &args.pdsh {
        return Ok(Launcher::Pdsh(list.clone()));
    }
    if let Some(list) = &args.clush {
        return Ok(Launcher::Clush(list.clone()));
    }
    if let Some(nodes) = &args.srun {
        return Ok(Launcher::Srun {
            nodes: nodes.clone(),
            partition: args.partition.clone(),
        });
    }
    if let Some(file) = &args.hosts {
        let text = std::fs::read_to_string(file).with_context(|| {
            format!(
                "cannot read the host file {}: give a file with one host per line",
                file.display()
            )
        })?;
        let hosts: Vec<String> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        anyhow::ensure!(!hosts.is_empty(), "{} lists no host", file.display());
        return Ok(Launcher::Ssh(hosts));
    }
    Ok(Launcher::Ssh(args.ssh.clone()))
}

/// Reads verdict lines from a file or standard input.
fn gather_from(source: &str) -> anyhow::Result<FleetReport> {
    let mut gather = Gather::default();
    let mut feed = |reader: &mut dyn BufRead| -> anyhow::Result<()> {
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            gather.feed(&String::from_utf8_lossy(&line));
        }
    };
    if source == "-" {
        feed(&mut std::io::stdin().lock())?;
    } else {
        let file = std::fs::File::open(source).with_context(|| {
            format!("cannot read {source}: give the file the verdict lines were saved to, or - for standard input")
        })?;
        feed(&mut std::io::BufReader::new(file))?;
    }
    Ok(gather.finish())
}

/// Copies this binary to every node; exit 0 when every node has it.
fn install(launcher: &Launcher, opts: &Options, dest: &str) -> anyhow::Result<i32> {
    let binary = std::env::current_exe().context("cannot find this sigma binary")?;
    let failed = launch::install(launcher, opts, &binary, dest)?;
    let mut out = anstream::stdout().lock();
    let hosts = launcher.hosts()?.len();
    writeln!(
        out,
        "installed {} to {dest} on {} of {hosts} nodes",
        binary.display(),
        hosts.saturating_sub(failed.len())
    )?;
    for (host, reason) in &failed {
        writeln!(out, "  {host}: {reason}")?;
    }
    Ok(if failed.is_empty() {
        0
    } else {
        fleet::EXIT_NO_ANSWER
    })
}

/// A progress bar over the nodes on a terminal (hidden otherwise).
fn progress_bar(nodes: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(nodes as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} nodes {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
