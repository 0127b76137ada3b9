//! `journalctl`, answered from the node's kernel logs: the current boot's
//! (`[kernel] log`) and the earlier boots the journal still holds
//! (`[[kernel.previous_boots]]`). The simulated journal holds kernel
//! messages only, so `-k` changes nothing but the default boot.
//!
//! Boots: `--list-boots` lists them oldest first in systemd 249's format
//! (as on Ubuntu 22.04), the current one from its boot time to `taken_at`,
//! earlier ones to their last line, each with a boot ID derived from the
//! host name and boot time (stable from run to run). `-b` takes an offset
//! (`0` current, `-1` previous, `1` the oldest), a boot ID with an optional
//! offset, or `all`; a boot the journal lacks fails as journalctl does
//! (`Data from the specified boot (-1) is not available: No such boot ID in
//! journal`, exit 1). With neither `-b` nor `-k` every boot is shown, a
//! `-- Boot ID --` line where one ends and the next begins.
//!
//! Times: `--since` / `--until` (see [`super::time_spec`]) filter by wall
//! time, read against the node's clock.

use chrono::{DateTime, Utc};
use regex::{Regex, RegexBuilder};
use sha2::{Digest, Sha256};

use super::kernel_log::{Line, boot_time, level, lines, split_flags, take_value, wall};
use super::{CommandOutput, SimNode, taken_at, time_spec};

/// One boot in the journal.
struct Boot<'a> {
    /// When it booted.
    start: DateTime<Utc>,
    /// When its last entry was written (`taken_at` for the current boot).
    end: DateTime<Utc>,
    /// Its kernel lines.
    lines: Vec<Line<'a>>,
}

/// The boots the journal holds, oldest first; the current one is last.
fn boots(node: &SimNode) -> Vec<Boot<'_>> {
    let mut boots: Vec<Boot> = node
        .previous_boots
        .iter()
        .rev()
        .map(|b| {
            let lines = lines(&b.log, &b.levels);
            let end = lines.last().map_or(b.booted_at, |l| wall(b.booted_at, l));
            Boot {
                start: b.booted_at,
                end,
                lines,
            }
        })
        .collect();
    boots.push(Boot {
        start: boot_time(&node.snapshot),
        end: taken_at(&node.snapshot),
        lines: lines(&node.kernel_log, &node.kernel_levels),
    });
    boots
}

/// A boot's ID as journalctl prints it (32 hex digits): a random
/// (version 4) UUID on a real node, here derived from the host name and
/// boot time so it stays the same from run to run.
fn boot_id(node: &SimNode, start: DateTime<Utc>) -> String {
    let seed = format!("{} {}", node.snapshot.host.hostname, start.to_rfc3339());
    let mut id: [u8; 16] = Sha256::digest(seed.as_bytes())[..16]
        .try_into()
        .unwrap_or_default();
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// `journalctl --list-boots`, as systemd 249 prints it: offsets right
/// aligned, the current boot 0.
fn list_boots(node: &SimNode, boots: &[Boot]) -> String {
    let stamp = |t: DateTime<Utc>| t.format("%a %Y-%m-%d %H:%M:%S UTC").to_string();
    let width = (boots.len() - 1).to_string().len() + 1;
    let newest = boots.len() - 1;
    boots
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let offset = i as i64 - newest as i64;
            format!(
                "{offset:>width$} {} {}\u{2014}{}\n",
                boot_id(node, b.start),
                stamp(b.start),
                stamp(b.end)
            )
        })
        .collect()
}

/// The boots `-b ARG` selects (indexes into `boots`), or journalctl's error.
fn select_boots(node: &SimNode, boots: &[Boot], arg: &str) -> Result<Vec<usize>, String> {
    if arg == "all" {
        return Ok((0..boots.len()).collect());
    }
    // A boot ID may carry an offset from it: ID, ID+1, ID-2.
    let (id, offset) = match arg.get(..32) {
        Some(id) if id.chars().all(|c| c.is_ascii_hexdigit()) => (Some(id), &arg[32..]),
        _ => (None, arg),
    };
    let offset: i64 = match offset {
        "" => 0,
        o => o
            .parse()
            .map_err(|_| format!("Failed to parse boot descriptor '{arg}'"))?,
    };
    let newest = boots.len() as i64 - 1;
    let index = match id {
        Some(id) => boots
            .iter()
            .position(|b| boot_id(node, b.start).eq_ignore_ascii_case(id))
            .map(|i| i as i64 + offset),
        // Offsets above zero count from the oldest boot (1 is the first).
        None if offset > 0 => Some(offset - 1),
        None => Some(newest + offset),
    };
    match index {
        Some(i) if (0..=newest).contains(&i) => Ok(vec![i as usize]),
        _ => {
            let which = match id {
                Some(id) => format!("{id}{offset:+}"),
                None => format!("{offset:+}"),
            };
            Err(format!(
                "Data from the specified boot ({which}) is not available: No such boot ID in journal"
            ))
        }
    }
}

/// What the command line asks for.
struct Request {
    list_boots: bool,
    /// `-b`'s argument: `None` without `-b`, `Some(None)` for a bare `-b`.
    boot: Option<Option<String>>,
    kernel: bool,
    quiet: bool,
    output: Output,
    grep: Option<Regex>,
    max_level: u8,
    limit: Option<usize>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

/// Parses the arguments; `Err` is journalctl's message.
fn parse_args(node: &SimNode, args: &[String]) -> Result<Request, String> {
    let now = taken_at(&node.snapshot);
    let mut r = Request {
        list_boots: false,
        boot: None,
        kernel: false,
        quiet: false,
        output: Output::Short,
        grep: None,
        max_level: 7,
        limit: None,
        since: None,
        until: None,
    };
    let mut pairs = split_flags(args, "bopgnSU").into_iter().peekable();
    while let Some((flag, inline)) = pairs.next() {
        match flag.as_str() {
            "--no-pager" | "--no-hostname" | "--utc" => {}
            "-k" | "--dmesg" => r.kernel = true,
            "-q" | "--quiet" => r.quiet = true,
            "--list-boots" => r.list_boots = true,
            "-b" | "--boot" => r.boot = Some(take_value(&mut pairs, inline)),
            "-o" | "--output" => {
                let o =
                    take_value(&mut pairs, inline).ok_or("option requires an argument -- 'o'")?;
                r.output =
                    Output::named(&o).ok_or_else(|| format!("Unknown output format '{o}'."))?;
            }
            "-g" | "--grep" => {
                let g =
                    take_value(&mut pairs, inline).ok_or("option requires an argument -- 'g'")?;
                // journalctl is case-insensitive when the pattern is all lower case.
                let smart = !g.chars().any(char::is_uppercase);
                let re = RegexBuilder::new(&g).case_insensitive(smart).build();
                r.grep = Some(re.map_err(|e| format!("Failed to compile pattern: {e}"))?);
            }
            "-p" | "--priority" => {
                r.max_level = take_value(&mut pairs, inline)
                    .as_deref()
                    .and_then(level)
                    .ok_or("Failed to parse log level")?;
            }
            "-n" | "--lines" => {
                let n = take_value(&mut pairs, inline).and_then(|n| n.parse().ok());
                r.limit = Some(n.ok_or("Failed to parse lines")?);
            }
            "-S" | "--since" | "-U" | "--until" => {
                let spec = take_value(&mut pairs, inline).unwrap_or_default();
                let t = time_spec::parse(&spec, now)
                    .ok_or_else(|| format!("Failed to parse timestamp: {spec}"))?;
                if matches!(flag.as_str(), "-S" | "--since") {
                    r.since = Some(t);
                } else {
                    r.until = Some(t);
                }
            }
            f if f.starts_with("--") => return Err(format!("unrecognized option '{f}'")),
            f if f.starts_with('-') => return Err(format!("invalid option -- '{}'", &f[1..])),
            f => return Err(format!("Failed to add match '{f}': Invalid argument")),
        }
    }
    if let (Some(since), Some(until)) = (r.since, r.until)
        && since > until
    {
        return Err("--since= must be before --until=.".into());
    }
    Ok(r)
}

/// The `-o` modes the simulator prints.
#[derive(Clone, Copy)]
enum Output {
    Short,
    ShortIso,
    ShortPrecise,
    ShortMonotonic,
    Cat,
}

impl Output {
    /// The mode `-o NAME` asks for, if simulated.
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "short" => Self::Short,
            "short-iso" => Self::ShortIso,
            "short-precise" => Self::ShortPrecise,
            "short-monotonic" => Self::ShortMonotonic,
            "cat" => Self::Cat,
            _ => return None,
        })
    }

    /// One entry, written at `t` on `host`.
    fn render(self, host: &str, t: DateTime<Utc>, l: &Line) -> String {
        match self {
            Self::Short => format!("{} {host} kernel: {}", t.format("%b %d %H:%M:%S"), l.msg),
            Self::ShortIso => format!(
                "{} {host} kernel: {}",
                t.format("%Y-%m-%dT%H:%M:%S+00:00"),
                l.msg
            ),
            Self::ShortPrecise => format!(
                "{} {host} kernel: {}",
                t.format("%b %d %H:%M:%S%.6f"),
                l.msg
            ),
            Self::ShortMonotonic => {
                format!("[{:>12.6}] {host} kernel: {}", l.secs.unwrap_or(0.0), l.msg)
            }
            Self::Cat => l.msg.to_string(),
        }
    }
}

/// Answers `journalctl ARGS`.
pub(crate) fn journalctl(node: &SimNode, args: &[String]) -> CommandOutput {
    let fail = |msg: String| CommandOutput::fail(format!("journalctl: {msg}\n"), 1);
    let r = match parse_args(node, args) {
        Ok(r) => r,
        Err(msg) => return fail(msg),
    };
    let boots = boots(node);
    if r.list_boots {
        return CommandOutput::ok(list_boots(node, &boots));
    }
    // `-k` and a bare `-b` mean the current boot; without either, all.
    let chosen = match &r.boot {
        Some(Some(arg)) => match select_boots(node, &boots, arg) {
            Ok(c) => c,
            Err(msg) => return fail(msg),
        },
        Some(None) => vec![boots.len() - 1],
        None if r.kernel => vec![boots.len() - 1],
        None => (0..boots.len()).collect(),
    };
    let host = &node.snapshot.host.hostname;
    let mut entries: Vec<(usize, String)> = Vec::new();
    for &b in &chosen {
        let boot = &boots[b];
        for l in &boot.lines {
            let t = wall(boot.start, l);
            let outside = r.since.is_some_and(|s| t < s) || r.until.is_some_and(|u| t > u);
            if outside
                || l.level > r.max_level
                || r.grep.as_ref().is_some_and(|p| !p.is_match(l.msg))
            {
                continue;
            }
            entries.push((b, r.output.render(host, t, l)));
        }
    }
    if let Some(n) = r.limit {
        entries.drain(..entries.len().saturating_sub(n));
    }
    let mut out = String::new();
    for (i, (b, line)) in entries.iter().enumerate() {
        if i > 0 && entries[i - 1].0 != *b && !r.quiet {
            out += &format!("-- Boot {} --\n", boot_id(node, boots[*b].start));
        }
        out += line;
        out.push('\n');
    }
    if entries.is_empty() && !r.quiet {
        out.push_str("-- No entries --\n");
    }
    CommandOutput::ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(node: &str, args: &[&str]) -> CommandOutput {
        let node = crate::sim::load(node).unwrap();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        journalctl(&node, &args)
    }

    #[test]
    fn boots_are_chosen_by_offset_or_id() {
        let node = crate::sim::load("h100x8-xid79").unwrap();
        let boots = boots(&node);
        assert_eq!(boots.len(), 2);
        let pick = |arg: &str| select_boots(&node, &boots, arg);
        assert_eq!(pick("0"), Ok(vec![1]));
        assert_eq!(pick("-1"), Ok(vec![0]));
        assert_eq!(pick("1"), Ok(vec![0]), "1 is the oldest boot");
        assert_eq!(pick("all"), Ok(vec![0, 1]));
        let current = boot_id(&node, boots[1].start);
        assert_eq!(pick(&current), Ok(vec![1]));
        assert_eq!(pick(&format!("{current}-1")), Ok(vec![0]));
        assert_eq!(
            pick("-2").unwrap_err(),
            "Data from the specified boot (-2) is not available: No such boot ID in journal"
        );
        assert_eq!(
            pick(&format!("{current}+1")).unwrap_err(),
            format!(
                "Data from the specified boot ({current}+1) is not available: No such boot ID in journal"
            )
        );
        assert!(pick("yesterday").is_err());
    }

    #[test]
    fn list_boots_numbers_the_previous_boot_minus_one() {
        let out = run("h100x8-xid79", &["--list-boots"]).stdout;
        let offsets: Vec<&str> = out.lines().map(|l| &l[..2]).collect();
        assert_eq!(offsets, ["-1", " 0"]);
        assert!(
            out.lines()
                .next()
                .unwrap()
                .ends_with("Tue 2026-10-20 18:42:11 UTC\u{2014}Sat 2026-11-14 04:48:51 UTC")
        );
    }

    #[test]
    fn all_boots_are_separated_and_quiet_drops_the_separator() {
        let out = run("h100x8-xid79", &["-o", "cat"]).stdout;
        let node = crate::sim::load("h100x8-xid79").unwrap();
        let current = boot_id(&node, boot_time(&node.snapshot));
        let sep = format!("-- Boot {current} --\n");
        let (before, after) = out.split_once(&sep).expect("one separator");
        assert!(before.ends_with("reboot: Restarting system\n"));
        assert!(after.starts_with("Linux version"));
        let quiet = run("h100x8-xid79", &["-o", "cat", "-q"]).stdout;
        assert_eq!(quiet, format!("{before}{after}"));
        // -k means the current boot only.
        assert_eq!(run("h100x8-xid79", &["-k", "-o", "cat"]).stdout, after);
    }

    #[test]
    fn since_and_until_filter_by_wall_time() {
        let since = run(
            "h100x8-xid79",
            &["-k", "--since", "1 hour ago", "-o", "cat"],
        );
        assert_eq!(since.stdout, "-- No entries --\n", "the XID came at 00:49");
        let today = run("h100x8-xid79", &["-k", "-S", "today", "-o", "cat"]).stdout;
        assert_eq!(today.lines().count(), 11);
        let window = run(
            "h100x8-xid79",
            &[
                "-b",
                "all",
                "--since",
                "2026-10-31",
                "--until=2026-11-01 00:00:00",
                "-o",
                "cat",
            ],
        );
        assert_eq!(window.stdout.lines().count(), 2, "{}", window.stdout);
        let bad = run("h100x8-xid79", &["--since", "last tuesday"]);
        assert_eq!(bad.exit_code, 1);
        assert_eq!(
            bad.stderr,
            "journalctl: Failed to parse timestamp: last tuesday\n"
        );
        let backwards = run("h100x8-xid79", &["-S", "today", "-U", "yesterday"]);
        assert_eq!(
            backwards.stderr,
            "journalctl: --since= must be before --until=.\n"
        );
    }
}
