//! The conversation as plain text: proposals, command runs and argument
//! explanations, as `sigma chat`, `sigma ask` and `sigma doctor --explain`
//! write them. 80 columns, no escape codes. Every string from the model or
//! the node goes through [`printable`] first.

use std::io::{self, Write};

use super::render::WIDTH;
use crate::checks::printable;
use crate::copilot::Proposal;
use crate::guard::{ArgExplanation, Execution, Tier};

/// Continuation indent under a numbered line.
const INDENT: &str = "    ";

/// Widest argument column in `/explain`.
const ARG_COLUMN: usize = 18;

/// Wrapping at spaces only: a flag must never break at its hyphen.
fn wrap_options(initial: &str) -> textwrap::Options<'_> {
    textwrap::Options::new(WIDTH)
        .initial_indent(initial)
        .subsequent_indent(INDENT)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
}

/// The numbered proposals: `[1] read-only  CMD  — purpose`, then the
/// guard's rule for those that are not plain read-only.
pub fn proposals(out: &mut impl Write, proposals: &[Proposal]) -> io::Result<()> {
    for (i, p) in proposals.iter().enumerate() {
        let command = printable(&p.command);
        let purpose = printable(&p.purpose);
        let head = if purpose.trim().is_empty() {
            format!("{}  {command}", p.verdict.tier)
        } else {
            format!("{}  {command}  — {purpose}", p.verdict.tier)
        };
        let number = format!("[{}] ", i + 1);
        for line in textwrap::wrap(&head, wrap_options(&number)) {
            writeln!(out, "{line}")?;
        }
        if p.verdict.tier != Tier::ReadOnly {
            let rule = printable(&p.verdict.rule);
            for line in textwrap::wrap(&rule, wrap_options(INDENT)) {
                writeln!(out, "{line}")?;
            }
        }
    }
    Ok(())
}

/// What a command printed, then one status line:
/// `[1] exit code 0 · 0.12 s · 2153 bytes`.
pub fn execution(out: &mut impl Write, n: usize, run: &Execution) -> io::Result<()> {
    for text in [&run.stdout.text, &run.stderr.text] {
        if text.is_empty() {
            continue;
        }
        write!(out, "{}", printable(text))?;
        if !text.ends_with('\n') {
            writeln!(out)?;
        }
    }
    let bytes = run.stdout.text.len() + run.stderr.text.len();
    write!(
        out,
        "[{n}] {} · {:.2} s · {bytes} bytes",
        run.exit,
        run.duration.as_secs_f64()
    )?;
    // What actually ran, after PATH lookup and symlinks.
    if !run.programs.is_empty() {
        let ran: Vec<String> = run
            .programs
            .iter()
            .map(|p| printable(&p.to_string_lossy()).into_owned())
            .collect();
        write!(out, " · ran {}", ran.join(" | "))?;
    }
    writeln!(out)
}

/// `/explain`: each argument and its meaning, meanings wrapped in a column.
pub fn explanation(out: &mut impl Write, items: &[ArgExplanation]) -> io::Result<()> {
    let column = items
        .iter()
        .map(|i| i.arg.chars().count())
        .max()
        .unwrap_or(0)
        .min(ARG_COLUMN);
    let hanging = " ".repeat(2 + column + 2);
    for item in items {
        let arg = printable(&item.arg);
        let meaning = printable(&item.meaning);
        let first = if arg.chars().count() > column {
            writeln!(out, "  {arg}")?;
            hanging.clone()
        } else {
            format!("  {arg:<column$}  ")
        };
        let options = textwrap::Options::new(WIDTH)
            .initial_indent(&first)
            .subsequent_indent(&hanging)
            .word_splitter(textwrap::WordSplitter::NoHyphenation);
        for line in textwrap::wrap(&meaning, options) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn proposals_are_numbered_with_tier_and_rule() {
        let list = [
            Proposal::new("nvidia-smi -q -d ECC", "check ECC counters"),
            Proposal::new("nvidia-smi -r -i 2", "reset GPU 2"),
        ];
        let shown = text(|o| proposals(o, &list));
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines[0],
            "[1] read-only  nvidia-smi -q -d ECC  — check ECC counters"
        );
        assert_eq!(
            lines[1],
            "[2] state-changing  nvidia-smi -r -i 2  — reset GPU 2"
        );
        assert!(
            lines[2].starts_with("    ") && lines[2].contains("-r"),
            "{shown}"
        );
        assert!(shown.lines().all(|l| l.chars().count() <= WIDTH), "{shown}");
    }

    #[test]
    fn long_lines_wrap_without_breaking_flags() {
        let list = [Proposal::new(
            "nvidia-smi --query-gpu=index,clocks_event_reasons.hw_thermal_slowdown,clocks_event_reasons.sw_thermal_slowdown --format=csv",
            "see which GPUs are slowed down by heat and by the software thermal limit, in a table",
        )];
        let shown = text(|o| proposals(o, &list));
        assert!(shown.lines().count() > 1, "{shown}");
        assert!(shown.contains("--format=csv"), "{shown}");
        assert!(
            shown.lines().skip(1).all(|l| l.starts_with(INDENT)),
            "{shown}"
        );
    }

    #[test]
    fn explanation_aligns_meanings() {
        let items = [
            ArgExplanation {
                arg: "-q".into(),
                meaning: "query".into(),
            },
            ArgExplanation {
                arg: "-d ECC".into(),
                meaning: "only ECC".into(),
            },
        ];
        assert_eq!(
            text(|o| explanation(o, &items)),
            "  -q      query\n  -d ECC  only ECC\n"
        );
    }
}
