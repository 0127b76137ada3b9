//! Timestamps as `journalctl --since` / `--until` take them (systemd.time(7)),
//! read against the simulated node's clock so answers stay reproducible:
//! "now" is the snapshot's `taken_at`, and the node's time zone is UTC.
//!
//! Accepted: `now`, `today`, `yesterday`, `tomorrow`; `@EPOCH`;
//! `YYYY-MM-DD[ HH:MM[:SS]]` (also with `T`, an optional ` UTC`);
//! `HH:MM[:SS]` (today); and spans counted from now: `1 hour ago`,
//! `-2h 30min`, `+1d`, `5 min left`.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// Span units and their length in seconds (systemd's names; a month is
/// 30.44 days and a year 365.25 days, as systemd counts them).
const UNITS: &[(&[&str], f64)] = &[
    (&["usec", "us", "µs"], 1e-6),
    (&["msec", "ms"], 1e-3),
    (&["seconds", "second", "sec", "s"], 1.0),
    (&["minutes", "minute", "min", "m"], 60.0),
    (&["hours", "hour", "hr", "h"], 3600.0),
    (&["days", "day", "d"], 86_400.0),
    (&["weeks", "week", "w"], 604_800.0),
    (&["months", "month", "M"], 2_629_800.0),
    (&["years", "year", "y"], 31_557_600.0),
];

/// The time `spec` names, `now` being the node's present; `None` when
/// journalctl could not parse it either.
pub(super) fn parse(spec: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let spec = spec.trim();
    let midnight = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    match spec {
        "now" => return Some(now),
        "today" => return Some(midnight),
        "yesterday" => return Some(midnight - Duration::days(1)),
        "tomorrow" => return Some(midnight + Duration::days(1)),
        _ => {}
    }
    if let Some(secs) = spec.strip_prefix('@') {
        return DateTime::from_timestamp(secs.parse().ok()?, 0);
    }
    if let Some(span) = spec.strip_suffix(" ago").or_else(|| spec.strip_prefix('-')) {
        return Some(now - span_of(span)?);
    }
    if let Some(span) = spec
        .strip_suffix(" left")
        .or_else(|| spec.strip_prefix('+'))
    {
        return Some(now + span_of(span)?);
    }
    absolute(spec.strip_suffix(" UTC").unwrap_or(spec), now)
}

/// A date, a date and time, or a time of today.
fn absolute(spec: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let with_time = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"];
    if let Some(t) = with_time
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(spec, f).ok())
    {
        return Some(t.and_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(spec, "%Y-%m-%d") {
        return Some(d.and_time(NaiveTime::MIN).and_utc());
    }
    ["%H:%M:%S", "%H:%M"]
        .iter()
        .find_map(|f| NaiveTime::parse_from_str(spec, f).ok())
        .map(|t| now.date_naive().and_time(t).and_utc())
}

/// A span such as `1h 30min`, `2 days` or `90s`: numbers, each followed by
/// a unit (with or without a space); a bare number is seconds.
fn span_of(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    let mut total = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let seconds = if unit.is_empty() {
            1.0
        } else {
            UNITS.iter().find(|(names, _)| names.contains(&unit))?.1
        };
        total += number * seconds;
        rest = rest[unit_len..].trim_start();
    }
    Some(Duration::microseconds((total * 1e6).round() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T07:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn words_are_read_against_the_node_clock() {
        assert_eq!(parse("now", now()), Some(now()));
        assert_eq!(parse("today", now()), Some(at("2026-11-28T00:00:00Z")));
        assert_eq!(parse("yesterday", now()), Some(at("2026-11-27T00:00:00Z")));
        assert_eq!(parse("tomorrow", now()), Some(at("2026-11-29T00:00:00Z")));
    }

    #[test]
    fn relative_spans_count_from_now() {
        assert_eq!(parse("1 hour ago", now()), Some(at("2026-11-28T06:00:00Z")));
        assert_eq!(parse("-2h 30min", now()), Some(at("2026-11-28T04:30:00Z")));
        assert_eq!(parse("3days ago", now()), Some(at("2026-11-25T07:00:00Z")));
        assert_eq!(parse("+1d", now()), Some(at("2026-11-29T07:00:00Z")));
        assert_eq!(parse("90 left", now()), Some(at("2026-11-28T07:01:30Z")));
        assert_eq!(parse("1 fortnight ago", now()), None);
        assert_eq!(parse(" ago", now()), None);
    }

    #[test]
    fn absolute_times_and_times_of_today() {
        let t = Some(at("2026-12-01T10:00:00Z"));
        assert_eq!(parse("2026-12-01 10:00:00", now()), t);
        assert_eq!(parse("2026-12-01 10:00", now()), t);
        assert_eq!(parse("2026-12-01T10:00:00", now()), t);
        assert_eq!(parse("2026-12-01 10:00:00 UTC", now()), t);
        assert_eq!(parse("2026-12-01", now()), Some(at("2026-12-01T00:00:00Z")));
        assert_eq!(parse("06:30", now()), Some(at("2026-11-28T06:30:00Z")));
        assert_eq!(parse("@0", now()), Some(at("1970-01-01T00:00:00Z")));
        assert_eq!(parse("last tuesday", now()), None);
        assert_eq!(parse("2026-13-01", now()), None);
    }
}
