//! `dmesg` and `journalctl -k`, answered from the node's kernel log.
//!
//! Wall-clock times are the boot time (`taken_at` minus the host's uptime)
//! plus each line's seconds since boot. The simulated log never grows:
//! `dmesg -w` prints it and returns. Clearing it (`-c`, `-C`) fails as it
//! does for an unprivileged user.
//!
//! The journal holds one boot, the current one: `journalctl --list-boots`
//! lists it (from the boot time to `taken_at`, in systemd 249's format, as
//! on Ubuntu 22.04) with a boot ID derived from the host name and boot
//! time, and `-b` accepts `0` or that ID.

use chrono::{DateTime, Duration, Utc};
use regex::RegexBuilder;
use sha2::{Digest, Sha256};

use super::{CommandOutput, SimNode, taken_at};

/// Syslog level names, by number.
const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
];

/// One kernel log line taken apart.
struct Line<'a> {
    /// Seconds since boot, when the line has a timestamp.
    secs: Option<f64>,
    /// The message after the timestamp.
    msg: &'a str,
    /// The full line as plain `dmesg` prints it.
    full: &'a str,
    /// Syslog level.
    level: u8,
}

/// The node's log lines, taken apart.
fn lines(node: &SimNode) -> Vec<Line<'_>> {
    node.kernel_log
        .iter()
        .zip(&node.kernel_levels)
        .map(|(full, &level)| {
            let parsed = full.strip_prefix('[').and_then(|rest| rest.split_once(']'));
            let (secs, msg) =
                match parsed.and_then(|(ts, msg)| Some((ts.trim().parse().ok()?, msg))) {
                    Some((secs, msg)) => (Some(secs), msg.strip_prefix(' ').unwrap_or(msg)),
                    None => (None, full.as_str()),
                };
            Line {
                secs,
                msg,
                full,
                level,
            }
        })
        .collect()
}

/// Boot time: `taken_at` minus uptime.
fn boot_time(node: &SimNode) -> DateTime<Utc> {
    let uptime = i64::try_from(node.snapshot.host.uptime_s).unwrap_or(0);
    taken_at(&node.snapshot) - Duration::seconds(uptime)
}

/// The current boot's ID as journalctl prints it (32 hex digits): a random
/// (version 4) UUID on a real node, here derived from the host name and
/// boot time so it stays the same from run to run.
fn boot_id(node: &SimNode) -> String {
    let seed = format!(
        "{} {}",
        node.snapshot.host.hostname,
        boot_time(node).to_rfc3339()
    );
    let mut id: [u8; 16] = Sha256::digest(seed.as_bytes())[..16]
        .try_into()
        .unwrap_or_default();
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// `journalctl --list-boots`: the one boot the journal holds, from boot
/// to `taken_at` (the node's present), as systemd 249 prints it.
fn list_boots(node: &SimNode) -> String {
    let stamp = |t: DateTime<Utc>| t.format("%a %Y-%m-%d %H:%M:%S UTC").to_string();
    format!(
        "{:>2} {} {}\u{2014}{}\n",
        0,
        boot_id(node),
        stamp(boot_time(node)),
        stamp(taken_at(&node.snapshot))
    )
}

/// Wall time of a line.
fn wall(boot: DateTime<Utc>, line: &Line) -> DateTime<Utc> {
    let micros = (line.secs.unwrap_or(0.0) * 1e6).round() as i64;
    boot + Duration::microseconds(micros)
}

/// A level given by name or number.
fn level(name: &str) -> Option<u8> {
    LEVELS
        .iter()
        .position(|l| l.eq_ignore_ascii_case(name))
        .or_else(|| name.parse::<usize>().ok().filter(|n| *n < 8))
        .map(|n| n as u8)
}

/// Splits GNU-style arguments into (flag, inline value) pairs: `--opt=v`,
/// `-abc` (three flags), `-lerr` (flag `l` with value `err` when `l` takes
/// one). `takes_value` says which short flags take a value.
fn split_flags(args: &[String], takes_value: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for arg in args {
        if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((f, v)) => out.push((format!("--{f}"), Some(v.to_string()))),
                None => out.push((arg.clone(), None)),
            }
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            for (i, c) in short.char_indices() {
                if takes_value.contains(c) {
                    let rest = &short[i + c.len_utf8()..];
                    let v = (!rest.is_empty()).then(|| rest.to_string());
                    out.push((format!("-{c}"), v));
                    break;
                }
                out.push((format!("-{c}"), None));
            }
        } else {
            out.push((arg.clone(), None));
        }
    }
    out
}

/// Takes a flag's value: inline, or the next pair when that is a bare word.
fn take_value(
    pairs: &mut std::iter::Peekable<std::vec::IntoIter<(String, Option<String>)>>,
    inline: Option<String>,
) -> Option<String> {
    inline.or_else(|| {
        pairs
            .next_if(|(f, v)| v.is_none() && (!f.starts_with('-') || f.parse::<i64>().is_ok()))
            .map(|(f, _)| f)
    })
}

/// Answers `dmesg ARGS`.
pub(crate) fn dmesg(node: &SimNode, args: &[String]) -> CommandOutput {
    let usage = |msg: String| {
        CommandOutput::fail(
            format!("dmesg: {msg}\nTry 'dmesg --help' for more information.\n"),
            1,
        )
    };
    let pairs = split_flags(args, "lfnsF");
    #[derive(PartialEq)]
    enum Time {
        Mono,
        Ctime,
        Iso,
        None,
    }
    let (mut time, mut raw, mut decode) = (Time::Mono, false, false);
    let mut levels: Option<Vec<u8>> = None;
    let mut pairs = pairs.into_iter().peekable();
    while let Some((flag, inline)) = pairs.next() {
        match flag.as_str() {
            "-T" | "--ctime" => time = Time::Ctime,
            "-t" | "--notime" => time = Time::None,
            "-r" | "--raw" => raw = true,
            "-x" | "--decode" => decode = true,
            "-k" | "--kernel" | "-P" | "--nopager" | "-w" | "--follow" | "-L" | "--color" => {}
            "--time-format" => match take_value(&mut pairs, inline).as_deref() {
                Some("ctime") => time = Time::Ctime,
                Some("iso") => time = Time::Iso,
                Some("notime") => time = Time::None,
                Some("raw") => time = Time::Mono,
                Some(other) => return usage(format!("unknown time format: {other}")),
                None => return usage("option '--time-format' requires an argument".into()),
            },
            "-l" | "--level" => {
                let Some(list) = take_value(&mut pairs, inline) else {
                    return usage("option requires an argument -- 'l'".into());
                };
                let mut wanted = Vec::new();
                for name in list.split(',') {
                    match level(name.trim()) {
                        Some(l) => wanted.push(l),
                        None => return usage(format!("unknown level '{name}'")),
                    }
                }
                levels = Some(wanted);
            }
            "-c" | "--read-clear" | "-C" | "--clear" => {
                return CommandOutput::fail(
                    "dmesg: klogctl failed: Operation not permitted\n".into(),
                    1,
                );
            }
            f if f.starts_with("--") => return usage(format!("unrecognized option '{f}'")),
            f if f.starts_with('-') => {
                return usage(format!("invalid option -- '{}'", &f[1..]));
            }
            f => return usage(format!("bad usage: unexpected argument '{f}'")),
        }
    }
    let boot = boot_time(node);
    let mut out = String::new();
    for l in lines(node) {
        if levels.as_ref().is_some_and(|w| !w.contains(&l.level)) {
            continue;
        }
        if decode {
            out += &format!("kern  :{:<6}: ", LEVELS[usize::from(l.level)]);
        } else if raw {
            out += &format!("<{}>", l.level);
        }
        let body = match time {
            Time::Mono => l.full.to_string(),
            Time::None => l.msg.to_string(),
            Time::Ctime => format!(
                "[{}] {}",
                wall(boot, &l).format("%a %b %e %H:%M:%S %Y"),
                l.msg
            ),
            Time::Iso => format!(
                "{} {}",
                wall(boot, &l).format("%Y-%m-%dT%H:%M:%S,%6f+00:00"),
                l.msg
            ),
        };
        out += &body;
        out.push('\n');
    }
    CommandOutput::ok(out)
}

/// Answers `journalctl ARGS` (kernel messages only: the simulated journal
/// holds nothing else).
pub(crate) fn journalctl(node: &SimNode, args: &[String]) -> CommandOutput {
    let usage = |msg: String| CommandOutput::fail(format!("journalctl: {msg}\n"), 1);
    let pairs = split_flags(args, "bopgn");
    let mut boots = false;
    let mut output = "short".to_string();
    let mut grep = None;
    let mut max_level = 7u8;
    let mut limit: Option<usize> = None;
    let mut pairs = pairs.into_iter().peekable();
    while let Some((flag, inline)) = pairs.next() {
        match flag.as_str() {
            "-k" | "--dmesg" | "--no-pager" | "-q" | "--quiet" | "--no-hostname" => {}
            "--list-boots" => boots = true,
            "-b" | "--boot" => {
                if let Some(b) = take_value(&mut pairs, inline)
                    && !["0", "-0", "all"].contains(&b.as_str())
                    && !b.eq_ignore_ascii_case(&boot_id(node))
                {
                    return usage(format!(
                        "Data from the specified boot ({b}) is not available: No such boot ID in journal"
                    ));
                }
            }
            "-o" | "--output" => match take_value(&mut pairs, inline) {
                Some(o) => output = o,
                None => return usage("option requires an argument -- 'o'".into()),
            },
            "-g" | "--grep" => match take_value(&mut pairs, inline) {
                Some(g) => grep = Some(g),
                None => return usage("option requires an argument -- 'g'".into()),
            },
            "-p" | "--priority" => {
                match take_value(&mut pairs, inline).as_deref().and_then(level) {
                    Some(l) => max_level = l,
                    None => return usage("Failed to parse log level".into()),
                }
            }
            "-n" | "--lines" => match take_value(&mut pairs, inline).map(|n| n.parse()) {
                Some(Ok(n)) => limit = Some(n),
                _ => return usage("Failed to parse lines".into()),
            },
            f if f.starts_with("--") => return usage(format!("unrecognized option '{f}'")),
            f if f.starts_with('-') => return usage(format!("invalid option -- '{}'", &f[1..])),
            f => return usage(format!("Failed to add match '{f}': Invalid argument")),
        }
    }
    if boots {
        return CommandOutput::ok(list_boots(node));
    }
    let pattern = match grep {
        Some(g) => {
            // journalctl is case-insensitive when the pattern is all lower case.
            let smart = !g.chars().any(char::is_uppercase);
            match RegexBuilder::new(&g).case_insensitive(smart).build() {
                Ok(r) => Some(r),
                Err(e) => return usage(format!("Failed to compile pattern: {e}")),
            }
        }
        None => None,
    };
    let host = &node.snapshot.host.hostname;
    let boot = boot_time(node);
    let mut rendered = Vec::new();
    for l in lines(node) {
        if l.level > max_level || pattern.as_ref().is_some_and(|p| !p.is_match(l.msg)) {
            continue;
        }
        let t = wall(boot, &l);
        rendered.push(match output.as_str() {
            "short" => format!("{} {host} kernel: {}", t.format("%b %d %H:%M:%S"), l.msg),
            "short-iso" => format!(
                "{} {host} kernel: {}",
                t.format("%Y-%m-%dT%H:%M:%S+00:00"),
                l.msg
            ),
            "short-precise" => format!(
                "{} {host} kernel: {}",
                t.format("%b %d %H:%M:%S%.6f"),
                l.msg
            ),
            "short-monotonic" => {
                format!("[{:>12.6}] {host} kernel: {}", l.secs.unwrap_or(0.0), l.msg)
            }
            "cat" => l.msg.to_string(),
            other => return usage(format!("Unknown output format '{other}'.")),
        });
    }
    if let Some(n) = limit {
        let skip = rendered.len().saturating_sub(n);
        rendered.drain(..skip);
    }
    let mut out = rendered.join("\n");
    if rendered.is_empty() {
        out.push_str("-- No entries --");
    }
    out.push('\n');
    CommandOutput::ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_by_name_or_number() {
        assert_eq!(level("err"), Some(3));
        assert_eq!(level("WARN"), Some(4));
        assert_eq!(level("7"), Some(7));
        assert_eq!(level("8"), None);
        assert_eq!(level("loud"), None);
    }

    #[test]
    fn splits_short_long_and_inline_values() {
        let args: Vec<String> = ["-Tx", "-lerr", "--level=warn", "-l", "info"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = split_flags(&args, "l");
        assert_eq!(p[0], ("-T".into(), None));
        assert_eq!(p[1], ("-x".into(), None));
        assert_eq!(p[2], ("-l".into(), Some("err".into())));
        assert_eq!(p[3], ("--level".into(), Some("warn".into())));
        assert_eq!(p[4], ("-l".into(), None));
        assert_eq!(p[5], ("info".into(), None));
    }
}
