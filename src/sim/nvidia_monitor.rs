//! `nvidia-smi dmon` and `nvidia-smi pmon`, answered from the snapshot.
//!
//! Both print `-c COUNT` samples of the GPUs `-i` selects (all without it).
//! A simulated node never changes, so every sample repeats the snapshot;
//! `-d SECONDS` only spaces the dates and times `-o D` / `-o T` print,
//! counted from `taken_at` in UTC. Without `-c` the real tools run until
//! interrupted; here they print one sample. Layouts follow driver 550.
//!
//! # Metric groups (`-s`)
//! - `dmon`: `p` power and temperatures, `u` utilisation, `c` clocks,
//!   `v` power and thermal violations, `m` memory, `e` ECC and PCIe
//!   replays, `t` PCIe throughput; `puc` by default; columns follow the
//!   order of the letters.
//! - `pmon`: `m` memory and `u` utilisation per process; `u` by default;
//!   memory columns come first whatever the order of the letters.
//!
//! A metric the snapshot does not record prints `-`, as the real tools
//! print one they cannot read: BAR1 use and PCIe throughput, and a
//! process's utilisation when its GPU runs several processes. The video
//! engines (`enc`, `dec`, `jpg`, `ofa`) and confidential-computing memory
//! (`ccpm`) are idle on every simulated node. Any lost GPU among the
//! selected ones fails the whole command, as with `topo -m`.
//!
//! ```
//! let node = sigma::sim::load("h100x8-healthy").unwrap();
//! let argv: Vec<String> = "nvidia-smi dmon -s p -c 1 -i 0"
//!     .split(' ')
//!     .map(String::from)
//!     .collect();
//! let out = node.run(&argv);
//! assert!(out.stdout.starts_with("# gpu    pwr  gtemp  mtemp\n"));
//! ```

use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};

use super::nvidia_smi::{selected, usage_error, whole_node};
use super::{CommandOutput, SimNode, taken_at};
use crate::probe::{ClockEventReason, Ecc, Gpu, GpuProcess};

/// What `dmon` or `pmon` is asked for.
#[derive(Debug)]
struct Request {
    /// `-i`: the GPUs to sample.
    ids: Option<String>,
    /// `-c`: how many samples.
    count: u32,
    /// `-d`: seconds between samples.
    delay: u32,
    /// `-s`: metric group letters, without repeats, in the order given.
    groups: Vec<char>,
    /// `-o D`: prefix each line with the date.
    date: bool,
    /// `-o T`: prefix each line with the time.
    time: bool,
}

/// The answer to `-h` / `--help` among `args`: what the simulator supports
/// of `tool`.
fn help(args: &[String], tool: &str, groups: &str) -> Option<CommandOutput> {
    args.iter().any(|a| a == "-h" || a == "--help").then(|| {
        CommandOutput::ok(format!(
            "nvidia-smi {tool} -- simulated by sigma. Supported: -c COUNT, -s [{groups}], \
             -d SECONDS, -o [DT], -i ID.\n"
        ))
    })
}

/// A flag's value: given inline (`--count=5`) or as the next argument.
fn value<'a>(inline: Option<&'a str>, rest: &mut impl Iterator<Item = &'a str>) -> Option<String> {
    inline.or_else(|| rest.next()).map(str::to_string)
}

/// Parses `dmon`/`pmon` arguments; `None` for a command line the tool
/// rejects. `known` are the `-s` letters the tool accepts, `default` the
/// groups it samples without `-s`.
fn parse(args: &[String], known: &str, default: &str) -> Option<Request> {
    let mut r = Request {
        ids: None,
        count: 1,
        delay: 1,
        groups: default.chars().collect(),
        date: false,
        time: false,
    };
    let mut rest = args.iter().map(String::as_str);
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg, None),
        };
        match flag {
            "-i" | "--id" => r.ids = Some(value(inline, &mut rest)?),
            "-c" | "--count" => r.count = value(inline, &mut rest)?.parse().ok()?,
            "-d" | "--delay" => r.delay = value(inline, &mut rest)?.parse().ok()?,
            "-s" | "--select" => {
                let letters = value(inline, &mut rest)?;
                if letters.is_empty() || !letters.chars().all(|c| known.contains(c)) {
                    return None;
                }
                r.groups.clear();
                for c in letters.chars() {
                    if !r.groups.contains(&c) {
                        r.groups.push(c);
                    }
                }
            }
            "-o" | "--options" => {
                let letters = value(inline, &mut rest)?;
                if !letters.chars().all(|c| c == 'D' || c == 'T') {
                    return None;
                }
                r.date = letters.contains('D');
                r.time = letters.contains('T');
            }
            _ => return None,
        }
    }
    Some(r)
}

/// The start of every line: `#` on the two header lines, a space on the
/// others, then the `-o D` / `-o T` columns when asked for.
fn lead(r: &Request, mark: char, date: &str, time: &str) -> String {
    let mut s = mark.to_string();
    if r.date {
        let _ = write!(s, "{date:<12}");
    }
    if r.time {
        let _ = write!(s, "{time:<12}");
    }
    s
}

/// The date and time of sample `i`.
fn sample_time(start: DateTime<Utc>, r: &Request, i: u32) -> (String, String) {
    let t = start + Duration::seconds(i64::from(i) * i64::from(r.delay));
    (
        t.format("%Y%m%d").to_string(),
        t.format("%H:%M:%S").to_string(),
    )
}

/// The two header lines: `#`, the date and time headings, the headings of
/// the leading columns (right-aligned to their widths), then `metrics`
/// seven characters wide each, then `tail`.
fn headers(
    r: &Request,
    leading: &[(&str, &str, usize)],
    metrics: &[(&str, &str)],
    tail: Option<(&str, &str)>,
) -> String {
    let mut names = lead(r, '#', "Date", "Time");
    let mut units = lead(r, '#', "YYYYMMDD", "HH:MM:SS");
    for (name, unit, width) in leading {
        let _ = write!(names, "{name:>width$}");
        let _ = write!(units, "{unit:>width$}");
    }
    for (name, unit) in metrics {
        let _ = write!(names, "{name:>7}");
        let _ = write!(units, "{unit:>7}");
    }
    if let Some((name, unit)) = tail {
        let _ = write!(names, "    {name}");
        let _ = write!(units, "    {unit}");
    }
    format!("{names}\n{units}\n")
}

/// A metric's value, or `-` when it cannot be read.
fn cell<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// The GPU's ECC counters, when ECC is on.
fn ecc(g: &Gpu) -> Option<&Ecc> {
    g.ecc.as_ref().filter(|e| e.enabled)
}

/// Whether any of `reasons` is holding the GPU's clocks down.
fn any_active(g: &Gpu, reasons: &[ClockEventReason]) -> bool {
    reasons.iter().any(|r| g.clock_event_reasons.contains(r))
}

/// One `dmon` column: heading, unit and value.
struct Column {
    name: &'static str,
    unit: &'static str,
    get: fn(&Gpu) -> String,
}

const fn col(name: &'static str, unit: &'static str, get: fn(&Gpu) -> String) -> Column {
    Column { name, unit, get }
}

/// The `dmon` metric groups and their columns, by `-s` letter.
static DMON_GROUPS: &[(char, &[Column])] = &[
    (
        'p',
        &[
            col("pwr", "W", |g| {
                cell(g.power_draw_w.map(|w| format!("{w:.0}")))
            }),
            col("gtemp", "C", |g| cell(g.temperature_c)),
            col("mtemp", "C", |g| cell(g.memory_temperature_c)),
        ],
    ),
    (
        'u',
        &[
            col("sm", "%", |g| cell(g.utilization_gpu_pct)),
            col("mem", "%", |g| cell(g.utilization_mem_pct)),
            col("enc", "%", |_| "0".to_string()),
            col("dec", "%", |_| "0".to_string()),
            col("jpg", "%", |_| "0".to_string()),
            col("ofa", "%", |_| "0".to_string()),
        ],
    ),
    (
        'c',
        &[
            col("mclk", "MHz", |g| cell(g.clock_mem_mhz)),
            col("pclk", "MHz", |g| cell(g.clock_sm_mhz)),
        ],
    ),
    (
        'v',
        &[
            col("pviol", "%", |g| {
                let capped = any_active(
                    g,
                    &[
                        ClockEventReason::SwPowerCap,
                        ClockEventReason::HwPowerBrakeSlowdown,
                    ],
                );
                (if capped { "100" } else { "0" }).to_string()
            }),
            col("tviol", "bool", |g| {
                let hot = any_active(
                    g,
                    &[
                        ClockEventReason::SwThermalSlowdown,
                        ClockEventReason::HwThermalSlowdown,
                    ],
                );
                (if hot { "1" } else { "0" }).to_string()
            }),
        ],
    ),
    (
        'm',
        &[
            col("fb", "MB", |g| cell(g.memory_used_mib)),
            col("bar1", "MB", |_| "-".to_string()),
            col("ccpm", "MB", |_| "0".to_string()),
        ],
    ),
    (
        'e',
        &[
            col("sbecc", "errs", |g| {
                cell(ecc(g).map(|e| e.corrected_aggregate))
            }),
            col("dbecc", "errs", |g| {
                cell(ecc(g).map(|e| e.uncorrected_aggregate))
            }),
            col("pci", "errs", |g| {
                cell(g.pcie.as_ref().and_then(|p| p.replay_count))
            }),
        ],
    ),
    (
        't',
        &[
            col("rxpci", "MB/s", |_| "-".to_string()),
            col("txpci", "MB/s", |_| "-".to_string()),
        ],
    ),
];

/// Answers `nvidia-smi dmon ARGS`.
pub(crate) fn dmon(node: &SimNode, args: &[String]) -> CommandOutput {
    let known: String = DMON_GROUPS.iter().map(|(c, _)| *c).collect();
    if let Some(h) = help(args, "dmon", &known) {
        return h;
    }
    let Some(r) = parse(args, &known, "puc") else {
        return usage_error();
    };
    let snap = &node.snapshot;
    let gpus = match selected(snap, r.ids.as_deref()) {
        Ok(g) => g,
        Err(not_found) => return not_found,
    };
    let columns: Vec<&Column> = r
        .groups
        .iter()
        .filter_map(|c| DMON_GROUPS.iter().find(|(l, _)| l == c))
        .flat_map(|(_, cols)| cols.iter())
        .collect();
    whole_node(&gpus, || {
        let metrics: Vec<(&str, &str)> = columns.iter().map(|c| (c.name, c.unit)).collect();
        let mut o = headers(&r, &[("gpu", "Idx", 4)], &metrics, None);
        for i in 0..r.count {
            let (date, time) = sample_time(taken_at(snap), &r, i);
            for g in &gpus {
                o += &lead(&r, ' ', &date, &time);
                let _ = write!(o, "{:>4}", g.index);
                for c in &columns {
                    let _ = write!(o, "{:>7}", (c.get)(g));
                }
                o.push('\n');
            }
        }
        o
    })
}

/// The kernel keeps 15 characters of a process name (its `comm`), and
/// that is what `pmon` prints.
fn comm(p: &GpuProcess) -> String {
    p.name.chars().take(15).collect()
}

/// One process row of `pmon`: its metric cells, memory first.
fn pmon_cells(r: &Request, g: &Gpu, p: Option<&GpuProcess>) -> Vec<String> {
    let sole = g.processes.len() == 1;
    let mut cells = Vec::new();
    if r.groups.contains(&'m') {
        cells.push(cell(p.and_then(|p| p.used_memory_mib)));
        cells.push(cell(p.map(|_| 0)));
    }
    if r.groups.contains(&'u') {
        let util = |v: Option<u32>| cell(p.and(v).filter(|_| sole));
        cells.push(util(g.utilization_gpu_pct));
        cells.push(util(g.utilization_mem_pct));
        cells.extend(std::iter::repeat_n("-".to_string(), 4));
    }
    cells
}

/// Answers `nvidia-smi pmon ARGS`.
pub(crate) fn pmon(node: &SimNode, args: &[String]) -> CommandOutput {
    if let Some(h) = help(args, "pmon", "mu") {
        return h;
    }
    let Some(r) = parse(args, "mu", "u") else {
        return usage_error();
    };
    let snap = &node.snapshot;
    let gpus = match selected(snap, r.ids.as_deref()) {
        Ok(g) => g,
        Err(not_found) => return not_found,
    };
    let mut metrics = Vec::new();
    if r.groups.contains(&'m') {
        metrics.extend([("fb", "MB"), ("ccpm", "MB")]);
    }
    if r.groups.contains(&'u') {
        for name in ["sm", "mem", "enc", "dec", "jpg", "ofa"] {
            metrics.push((name, "%"));
        }
    }
    whole_node(&gpus, || {
        let mut o = headers(
            &r,
            &[("gpu", "Idx", 4), ("pid", "#", 12), ("type", "C/G", 7)],
            &metrics,
            Some(("command", "name")),
        );
        for i in 0..r.count {
            let (date, time) = sample_time(taken_at(snap), &r, i);
            for g in &gpus {
                let rows: Vec<Option<&GpuProcess>> = if g.processes.is_empty() {
                    vec![None]
                } else {
                    g.processes.iter().map(Some).collect()
                };
                for p in rows {
                    o += &lead(&r, ' ', &date, &time);
                    let pid = cell(p.map(|p| p.pid));
                    let kind = if p.is_some() { "C" } else { "-" };
                    let _ = write!(o, "{:>4}{pid:>11}{kind:>6}", g.index);
                    for c in pmon_cells(&r, g, p) {
                        let _ = write!(o, "{c:>7}");
                    }
                    let _ = writeln!(o, "    {}", p.map_or_else(|| "-".to_string(), comm));
                }
            }
        }
        o
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_counts_groups_and_options() {
        let r = parse(
            &args("-s pucp -c 5 --delay=2 -o DT -i 0,1"),
            "pucvmet",
            "puc",
        )
        .unwrap();
        assert_eq!(r.groups, ['p', 'u', 'c']);
        assert_eq!((r.count, r.delay, r.date, r.time), (5, 2, true, true));
        assert_eq!(r.ids.as_deref(), Some("0,1"));
        assert_eq!(parse(&[], "mu", "u").unwrap().groups, ['u']);
    }

    #[test]
    fn rejects_unknown_groups_options_and_flags() {
        assert!(parse(&args("-s x -c 1"), "pucvmet", "puc").is_none());
        assert!(parse(&args("-o X -c 1"), "pucvmet", "puc").is_none());
        assert!(parse(&args("-c many"), "pucvmet", "puc").is_none());
        assert!(parse(&args("-c"), "pucvmet", "puc").is_none());
        assert!(parse(&args("--format csv -c 1"), "pucvmet", "puc").is_none());
    }

    #[test]
    fn header_columns_are_seven_wide_after_the_gpu_index() {
        let r = parse(&args("-s p"), "p", "p").unwrap();
        let h = headers(&r, &[("gpu", "Idx", 4)], &[("pwr", "W")], None);
        assert_eq!(h, "# gpu    pwr\n# Idx      W\n");
    }
}
