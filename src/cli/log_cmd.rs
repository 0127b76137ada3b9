//! `sigma log`: show the audit log (see [`crate::audit`]).

use std::io::Write;

use anyhow::Context;
use chrono::Local;

use crate::audit::{self, Entry, Record};
use crate::checks::printable;
use crate::checks::truncate;
use crate::report::render::WIDTH;

/// Arguments of `sigma log`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show only the last N entries (0 shows them all).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub last: usize,

    /// Print the entries as JSON lines, as they are stored.
    #[arg(long)]
    pub json: bool,
}

/// Columns taken by the time and kind before each summary.
const PREFIX: usize = 19 + 2 + 9 + 2;

/// Runs `sigma log`: one line per entry, oldest first.
pub fn run(args: &Args) -> anyhow::Result<i32> {
    let path = audit::log_path().with_context(|| {
        format!(
            "no state directory for the audit log; set {} or XDG_STATE_HOME",
            audit::STATE_DIR_ENV
        )
    })?;
    let mut out = anstream::stdout().lock();
    let Some(contents) = audit::read(&path)? else {
        if !args.json {
            writeln!(out, "no audit log yet at {}", path.display())?;
        }
        return Ok(0);
    };
    if contents.unreadable > 0 {
        eprintln!(
            "sigma: warning: {} unreadable lines in {} skipped",
            contents.unreadable,
            path.display()
        );
    }
    let skip = match args.last {
        0 => 0,
        n => contents.entries.len().saturating_sub(n),
    };
    for (entry, line) in &contents.entries[skip..] {
        if args.json {
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}", human(entry))?;
        }
    }
    Ok(0)
}

/// One entry in at most [`WIDTH`] columns: local time, kind, summary.
pub fn human(entry: &Entry) -> String {
    let time = entry.time.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S");
    let summary = truncate(&summary(&entry.record), WIDTH - PREFIX);
    format!("{time}  {:<9}  {summary}", entry.record.kind())
}

/// What a record says, on one line; text from users, models and nodes is
/// made printable and its line breaks folded.
fn summary(record: &Record) -> String {
    let text = match record {
        Record::Session {
            pid,
            uid,
            user,
            host,
            node,
            front_end,
            version,
            run_mode,
            model,
        } => {
            let model = model.as_deref().unwrap_or("no model");
            let user = match user.as_str() {
                "" => format!("uid {uid}"),
                name => name.to_string(),
            };
            format!(
                "{front_end} on {node} · {user}@{host} · --run {run_mode} · {model} · pid {pid} · sigma {version}"
            )
        }
        Record::Question { text } => text.clone(),
        Record::Answer {
            model,
            chars,
            total_ms,
        } => format!("{model}: {chars} chars in {:.1} s", total_ms / 1000.0),
        Record::Proposal {
            n, command, tier, ..
        } => format!("[{n}] {tier}  {command}"),
        Record::Approval {
            command,
            approved,
            by,
            reason,
        } => {
            let verb = if *approved { "approved" } else { "refused" };
            format!("{verb} by {by}: {command} ({reason})")
        }
        Record::Execution {
            command,
            exit_code,
            duration_ms,
            output_bytes,
            error,
            ..
        } => match (exit_code, error) {
            (Some(code), _) => format!(
                "exit {code} · {:.2} s · {output_bytes} B · {command}",
                *duration_ms as f64 / 1000.0
            ),
            (None, error) => format!(
                "could not run {command}: {}",
                error.as_deref().unwrap_or("unknown error")
            ),
        },
    };
    printable(&text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::copilot::approval::{Decider, RunMode};
    use crate::guard::Tier;

    fn entry(record: Record) -> Entry {
        Entry {
            time: Utc::now(),
            session: "s".into(),
            record,
        }
    }

    #[test]
    fn each_kind_fits_one_line_of_80_columns() {
        let long =
            "nvidia-smi --query-gpu=index,clocks_event_reasons.hw_thermal_slowdown --format=csv";
        let records = [
            Record::session(
                "chat",
                "simulated: h100x8-thermal-throttle",
                RunMode::Confirm,
                None,
            ),
            Record::Question {
                text: "why\nis GPU 3 \u{1b}[31mslow".into(),
            },
            Record::Answer {
                model: "qwen".into(),
                chars: 120,
                total_ms: 2500.0,
            },
            Record::Proposal {
                n: 2,
                command: long.into(),
                purpose: "p".into(),
                tier: Tier::ReadOnly,
                rule: "r".into(),
            },
            Record::Approval {
                command: "nvidia-smi -r -i 3".into(),
                approved: false,
                by: Decider::User,
                reason: "declined".into(),
            },
            Record::Execution {
                command: "nvidia-smi -L".into(),
                exit_code: Some(0),
                duration_ms: 120,
                output_bytes: 512,
                dropped_bytes: 0,
                error: None,
                programs: Vec::new(),
            },
        ];
        for r in records {
            let line = human(&entry(r));
            assert!(line.chars().count() <= WIDTH, "{line}");
            assert!(!line.contains(['\n', '\u{1b}']), "{line}");
        }
    }

    #[test]
    fn summaries_say_what_happened() {
        let line = human(&entry(Record::Approval {
            command: "nvidia-smi -r -i 3".into(),
            approved: false,
            by: Decider::User,
            reason: "declined".into(),
        }));
        assert!(
            line.ends_with("  approval   refused by user: nvidia-smi -r -i 3 (declined)"),
            "{line}"
        );
        let line = human(&entry(Record::Execution {
            command: "nvidia-smi -L".into(),
            exit_code: Some(0),
            duration_ms: 120,
            output_bytes: 512,
            dropped_bytes: 0,
            error: None,
            programs: Vec::new(),
        }));
        assert!(
            line.ends_with("  execution  exit 0 · 0.12 s · 512 B · nvidia-smi -L"),
            "{line}"
        );
        let line = human(&entry(Record::Question {
            text: "why\nslow".into(),
        }));
        assert!(line.ends_with("  question   why slow"), "{line}");
    }
}
