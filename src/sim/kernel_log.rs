//! `dmesg`, answered from the node's kernel log, and the log lines, times
//! and flag parsing it shares with `journalctl` ([`super::journal`]).
//!
//! Wall-clock times are the boot time (`taken_at` minus the host's uptime)
//! plus each line's seconds since boot. The simulated log never grows:
//! `dmesg -w` prints it and returns. Clearing it (`-c`, `-C`) fails as it
//! does for an unprivileged user. `dmesg` shows the current boot only, as
//! the kernel's ring buffer does.

use chrono::{DateTime, Duration, Utc};

use super::{CommandOutput, SimNode};
use crate::probe::Snapshot;

/// Syslog level names, by number.
const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warn", "notice", "info", "debug",
];

/// One kernel log line taken apart.
pub(super) struct Line<'a> {
    /// Seconds since boot, when the line has a timestamp.
    pub(super) secs: Option<f64>,
    /// The message after the timestamp.
    pub(super) msg: &'a str,
    /// The full line as plain `dmesg` prints it.
    full: &'a str,
    /// Syslog level.
    pub(super) level: u8,
}

/// One boot's log lines (as `dmesg` prints them, with their syslog levels),
/// taken apart.
pub(super) fn lines<'a>(log: &'a [String], levels: &[u8]) -> Vec<Line<'a>> {
    log.iter()
        .zip(levels)
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

/// The current boot's time: `taken_at` minus uptime.
pub(super) fn boot_time(snap: &Snapshot) -> DateTime<Utc> {
    snap.boot_time().unwrap_or_default()
}

/// Wall time of a line.
pub(super) fn wall(boot: DateTime<Utc>, line: &Line) -> DateTime<Utc> {
    let micros = (line.secs.unwrap_or(0.0) * 1e6).round() as i64;
    boot + Duration::microseconds(micros)
}

/// A level given by name or number.
pub(super) fn level(name: &str) -> Option<u8> {
    LEVELS
        .iter()
        .position(|l| l.eq_ignore_ascii_case(name))
        .or_else(|| name.parse::<usize>().ok().filter(|n| *n < 8))
        .map(|n| n as u8)
}

/// Splits GNU-style arguments into (flag, inline value) pairs: `--opt=v`,
/// `-abc` (three flags), `-lerr` (flag `l` with value `err` when `l` takes
/// one). `takes_value` says which short flags take a value.
pub(super) fn split_flags(args: &[String], takes_value: &str) -> Vec<(String, Option<String>)> {
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
pub(super) fn take_value(
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
    let boot = boot_time(&node.snapshot);
    let mut out = String::new();
    for l in lines(&node.kernel_log, &node.kernel_levels) {
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
