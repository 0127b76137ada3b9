//! Loading simulated nodes: the TOML format, `[gpu_defaults]` merging and
//! error reporting with file, line and column.
//!
//! The format is documented in `assets/sim/README.md`. Sections that mirror
//! the snapshot (`[host]`, `[nvidia]`, `[[pci_gpus]]`, ...) deserialise
//! straight into the [`crate::probe`] types, so those types stay the one
//! source of truth; each `[[gpus]]` entry is deep-merged over
//! `[gpu_defaults]` first. XID events are derived from `kernel_log` with the
//! probe's own parser, never written by hand.

use std::ops::Range;
use std::path::Path;

use chrono::{DateTime, Utc};
use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};
use toml::{Spanned, Table, Value};

use super::CommandOutput;
use super::kernel_log::{boot_time, lines, wall};
use crate::checks::Severity;
use crate::probe::kernel_log::parse_xids;
use crate::probe::{
    AmdGpu, Gpu, Host, NvidiaDriver, PciGpu, SCHEMA_VERSION, Snapshot, Source, Unavailable,
};

/// The shipped simulated nodes, embedded in the binary.
static SIMS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets/sim");

/// A simulated node: a full snapshot plus what its commands answer.
#[derive(Debug, Clone)]
pub struct SimNode {
    /// The node's name (the file stem).
    pub name: String,
    /// One line saying what is wrong (or right) with the node.
    pub description: String,
    /// The node's state, as the live probe would have read it.
    pub snapshot: Snapshot,
    /// The kernel log as plain `dmesg` prints it, oldest first.
    pub kernel_log: Vec<String>,
    /// What `sigma doctor` must report on this node.
    pub expect: Expectation,
    /// Syslog level (0 emerg .. 7 debug) of each line of `kernel_log`.
    pub(crate) kernel_levels: Vec<u8>,
    /// Fixed answers to exact command lines, checked before the simulators.
    pub(crate) canned: Vec<Canned>,
    /// Earlier boots the journal still holds, most recent first.
    pub(crate) previous_boots: Vec<PreviousBoot>,
    /// Programs that never exit on this node (`[node] hung`), by file name.
    pub(crate) hung_programs: Vec<String>,
}

/// An earlier boot in the node's journal (`journalctl -b -1`).
#[derive(Debug, Clone)]
pub(crate) struct PreviousBoot {
    /// When it booted.
    pub(crate) booted_at: DateTime<Utc>,
    /// Its kernel log as plain `dmesg` printed it, oldest first.
    pub(crate) log: Vec<String>,
    /// Syslog level of each line of `log`.
    pub(crate) levels: Vec<u8>,
}

/// What `sigma doctor` must report on a simulated node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Expected exit code: 0 healthy, 3 warnings, 4 critical.
    pub doctor_exit: i32,
    /// Findings that must be present (others may be too).
    pub findings: Vec<ExpectedFinding>,
}

/// One finding that must be present.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFinding {
    /// Finding id, e.g. `xid-79`.
    pub id: String,
    /// NVML index of the GPU concerned, when the finding is about one GPU.
    #[serde(default)]
    pub gpu: Option<u32>,
    /// Required severity.
    pub severity: Severity,
}

/// A shipped simulated node, for listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimSummary {
    /// Name to pass to [`load`].
    pub name: String,
    /// One line saying what the node shows (or why it failed to load).
    pub description: String,
    /// GPUs on the node (NVIDIA or AMD, as many as any source reports).
    pub gpu_count: usize,
}

/// A fixed answer to one exact command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Canned {
    /// The command line, word by word.
    pub(crate) argv: Vec<String>,
    /// What it answers.
    pub(crate) output: CommandOutput,
}

/// Why a simulated node could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No shipped node has this name.
    #[error("unknown simulated node '{name}'; known: {known} (or give a path to a .toml file)")]
    UnknownName {
        /// The name asked for.
        name: String,
        /// The shipped names, comma separated.
        known: String,
    },
    /// The file could not be read.
    #[error("cannot read simulated node file '{path}': {source}")]
    Unreadable {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid simulated node.
    #[error("malformed simulated node file {file}:{line}:{column}: {message}")]
    Malformed {
        /// File name (path, or `assets/sim/<name>.toml` for shipped nodes).
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// Loads a shipped node by name (`h100x8-xid79`) or a node file by path
/// (anything containing `/` or ending in `.toml`).
pub fn load(name_or_path: &str) -> Result<SimNode, SimError> {
    if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
        let path = Path::new(name_or_path);
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Unreadable {
            path: name_or_path.to_string(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        return parse(&name, name_or_path, &text);
    }
    match embedded(name_or_path) {
        Some(text) => parse(
            name_or_path,
            &format!("assets/sim/{name_or_path}.toml"),
            text,
        ),
        None => Err(SimError::UnknownName {
            name: name_or_path.to_string(),
            known: names().join(", "),
        }),
    }
}

/// The shipped nodes, sorted by name.
pub fn list() -> Vec<SimSummary> {
    names()
        .into_iter()
        .map(|name| match load(&name) {
            Ok(node) => SimSummary {
                gpu_count: node.gpu_count(),
                description: node.description,
                name,
            },
            Err(e) => SimSummary {
                description: e.to_string(),
                gpu_count: 0,
                name,
            },
        })
        .collect()
}

/// Names of the shipped nodes, sorted.
fn names() -> Vec<String> {
    let mut names: Vec<String> = SIMS
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "toml"))
        .filter_map(|f| f.path().file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The text of the shipped node `name`.
fn embedded(name: &str) -> Option<&'static str> {
    SIMS.get_file(format!("{name}.toml"))
        .and_then(|f| f.contents_utf8())
}

impl SimNode {
    /// GPUs on the node, as many as any source (NVML, PCI, AMD) reports.
    pub fn gpu_count(&self) -> usize {
        let s = &self.snapshot;
        s.gpus.len().max(s.pci_gpus.len()).max(s.amd_gpus.len())
    }
}

/// The file as written, before merging.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimFile {
    node: NodeSection,
    expect: ExpectSection,
    host: Host,
    #[serde(default)]
    nvidia: Option<NvidiaDriver>,
    #[serde(default)]
    gpu_defaults: Table,
    #[serde(default)]
    gpus: Vec<Spanned<Table>>,
    #[serde(default)]
    pci_gpus: Vec<PciGpu>,
    #[serde(default)]
    amd_gpus: Vec<AmdGpu>,
    #[serde(default)]
    unavailable: Vec<Unavailable>,
    #[serde(default)]
    kernel: KernelSection,
    #[serde(default)]
    canned: Vec<Spanned<CannedEntry>>,
}

/// `[node]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSection {
    description: String,
    taken_at: Spanned<String>,
    #[serde(default)]
    hung: Vec<String>,
}

/// `[expect]` as written, with spans for error messages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSection {
    doctor_exit: Spanned<i32>,
    #[serde(default)]
    findings: Vec<Spanned<ExpectedFinding>>,
}

/// `[kernel]`: the kernel log and where the probe would have read it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelSection {
    #[serde(default = "default_kernel_log_source")]
    source: Option<String>,
    #[serde(default)]
    log: String,
    #[serde(default)]
    previous_boots: Vec<PreviousBootEntry>,
}

impl Default for KernelSection {
    fn default() -> Self {
        Self {
            source: default_kernel_log_source(),
            log: String::new(),
            previous_boots: Vec::new(),
        }
    }
}

/// `[[kernel.previous_boots]]`: an earlier boot's kernel log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviousBootEntry {
    booted_at: Spanned<String>,
    log: String,
}

fn default_kernel_log_source() -> Option<String> {
    Some("/dev/kmsg".to_string())
}

/// `[[canned]]`: exactly one of `argv` and `command`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CannedEntry {
    #[serde(default)]
    argv: Option<Vec<String>>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
    #[serde(default)]
    exit_code: i32,
}

/// A node file's name and text, for error messages.
struct FileText<'a> {
    file: &'a str,
    text: &'a str,
}

impl FileText<'_> {
    /// A [`SimError::Malformed`] at the start of `span` (the file's start
    /// when there is none).
    fn error(&self, span: Option<Range<usize>>, message: &str) -> SimError {
        let (line, column) = line_column(self.text, span.map_or(0, |s| s.start));
        SimError::Malformed {
            file: self.file.to_string(),
            line,
            column,
            message: message.trim().replace('\n', "; "),
        }
    }
}

/// Parses the text of a node file; `file` names it in errors.
fn parse(name: &str, file: &str, text: &str) -> Result<SimNode, SimError> {
    let ctx = FileText { file, text };
    let raw: SimFile = toml::from_str(text).map_err(|e| ctx.error(e.span(), e.message()))?;
    let taken_at = &raw.node.taken_at;
    chrono::DateTime::parse_from_rfc3339(taken_at.get_ref()).map_err(|e| {
        ctx.error(
            Some(taken_at.span()),
            &format!("taken_at is not an RFC 3339 time: {e}"),
        )
    })?;
    let gpus = merge_gpus(&ctx, &raw.gpu_defaults, raw.gpus)?;
    let expect = expectation(&ctx, raw.expect, &gpus)?;
    let canned = canned(&ctx, raw.canned)?;
    let (kernel_log, kernel_levels) = split_levels(&raw.kernel.log);
    let snapshot = Snapshot {
        schema_version: SCHEMA_VERSION,
        taken_at: raw.node.taken_at.into_inner(),
        source: Source::Simulated {
            name: name.to_string(),
        },
        host: raw.host,
        nvidia: raw.nvidia,
        gpus,
        pci_gpus: raw.pci_gpus,
        amd_gpus: raw.amd_gpus,
        xid_events: parse_xids(kernel_log.iter().map(String::as_str)),
        kernel_log_source: raw.kernel.source,
        unavailable: raw.unavailable,
    };
    let previous_boots = previous_boots(&ctx, raw.kernel.previous_boots, boot_time(&snapshot))?;
    Ok(SimNode {
        name: name.to_string(),
        description: raw.node.description,
        snapshot,
        kernel_log,
        expect,
        kernel_levels,
        canned,
        previous_boots,
        hung_programs: raw.node.hung,
    })
}

/// The `[[kernel.previous_boots]]` entries, checked: each `booted_at` is
/// RFC 3339 and each boot ends (its last line) before the next one starts,
/// most recent first, so `-b -1` is the first entry.
fn previous_boots(
    ctx: &FileText,
    entries: Vec<PreviousBootEntry>,
    current_boot: DateTime<Utc>,
) -> Result<Vec<PreviousBoot>, SimError> {
    let mut next_start = current_boot;
    let mut boots = Vec::new();
    for entry in entries {
        let span = entry.booted_at.span();
        let booted_at = DateTime::parse_from_rfc3339(entry.booted_at.get_ref())
            .map_err(|e| {
                ctx.error(
                    Some(span.clone()),
                    &format!("booted_at is not an RFC 3339 time: {e}"),
                )
            })?
            .with_timezone(&Utc);
        let (log, levels) = split_levels(&entry.log);
        let ended_at = lines(&log, &levels)
            .last()
            .map_or(booted_at, |l| wall(booted_at, l));
        if ended_at >= next_start {
            return Err(ctx.error(
                Some(span),
                "a previous boot must end before the next one starts (list the most recent first)",
            ));
        }
        next_start = booted_at;
        boots.push(PreviousBoot {
            booted_at,
            log,
            levels,
        });
    }
    Ok(boots)
}

/// Each `[[gpus]]` entry merged over `[gpu_defaults]` (except lost GPUs,
/// which answer nothing) and deserialised; indexes must be unique.
fn merge_gpus(
    ctx: &FileText,
    defaults: &Table,
    entries: Vec<Spanned<Table>>,
) -> Result<Vec<Gpu>, SimError> {
    let mut gpus: Vec<Gpu> = Vec::with_capacity(entries.len());
    for entry in entries {
        let span = entry.span();
        let entry = entry.into_inner();
        let lost = entry.get("lost").and_then(Value::as_bool).unwrap_or(false);
        let table = if lost {
            entry
        } else {
            merge(defaults.clone(), entry)
        };
        let gpu: Gpu = Value::Table(table)
            .try_into()
            .map_err(|e| ctx.error(Some(span.clone()), &format!("in [[gpus]]: {}", e.message())))?;
        if gpus.iter().any(|g| g.index == gpu.index) {
            return Err(ctx.error(
                Some(span),
                &format!("two [[gpus]] entries have index {}", gpu.index),
            ));
        }
        gpus.push(gpu);
    }
    Ok(gpus)
}

/// `[expect]`, checked: a known exit code, and findings that name GPUs the
/// node has.
fn expectation(ctx: &FileText, raw: ExpectSection, gpus: &[Gpu]) -> Result<Expectation, SimError> {
    let doctor_exit = *raw.doctor_exit.get_ref();
    if ![0, 3, 4].contains(&doctor_exit) {
        return Err(ctx.error(
            Some(raw.doctor_exit.span()),
            &format!(
                "expect.doctor_exit is {doctor_exit}; expected 0 (healthy), 3 (warnings) or 4 (critical)"
            ),
        ));
    }
    let mut findings = Vec::with_capacity(raw.findings.len());
    for f in raw.findings {
        let span = f.span();
        let f = f.into_inner();
        if let Some(i) = f.gpu
            && !gpus.iter().any(|g| g.index == i)
        {
            return Err(ctx.error(
                Some(span),
                &format!(
                    "expected finding '{}' names gpu {i}, which the node does not have",
                    f.id
                ),
            ));
        }
        findings.push(f);
    }
    Ok(Expectation {
        doctor_exit,
        findings,
    })
}

/// `[[canned]]` entries, each with exactly one of `argv` and `command`
/// (split like a shell would).
fn canned(ctx: &FileText, entries: Vec<Spanned<CannedEntry>>) -> Result<Vec<Canned>, SimError> {
    let mut canned = Vec::with_capacity(entries.len());
    for entry in entries {
        let span = entry.span();
        let c = entry.into_inner();
        let argv = match (c.argv, c.command) {
            (Some(argv), None) => argv,
            (None, Some(command)) => shell_words::split(&command).map_err(|e| {
                ctx.error(
                    Some(span.clone()),
                    &format!("cannot split command '{command}': {e}"),
                )
            })?,
            _ => {
                return Err(ctx.error(
                    Some(span),
                    "a [[canned]] entry needs exactly one of `argv` and `command`",
                ));
            }
        };
        if argv.is_empty() {
            return Err(ctx.error(Some(span), "a [[canned]] command is empty"));
        }
        canned.push(Canned {
            argv,
            output: CommandOutput {
                stdout: c.stdout,
                stderr: c.stderr,
                exit_code: c.exit_code,
                hung: false,
            },
        });
    }
    Ok(canned)
}

/// Deep merge: keys of `over` replace those of `base`, except that two
/// tables under the same key are merged in turn. Arrays are replaced whole.
fn merge(mut base: Table, over: Table) -> Table {
    for (key, value) in over {
        match (base.remove(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => {
                base.insert(key, Value::Table(merge(b, o)));
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
    base
}

/// Splits the `kernel_log` text into plain `dmesg` lines and their syslog
/// levels. A line may start with `<N>` as `dmesg -r` prints it; without one
/// the level is 6 (info). Blank lines are dropped.
fn split_levels(text: &str) -> (Vec<String>, Vec<u8>) {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let line = line.trim_start();
            let prefixed = line
                .strip_prefix('<')
                .and_then(|rest| rest.split_once('>'))
                .and_then(|(n, rest)| n.parse::<u8>().ok().map(|n| (n & 7, rest)));
            match prefixed {
                Some((level, rest)) => (rest.to_string(), level),
                None => (line.to_string(), 6),
            }
        })
        .unzip()
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_is_deep_and_replaces_arrays() {
        let base: Table = toml::from_str("a = 1\nl = [1, 2]\n[t]\nx = 1\ny = 2\n").unwrap();
        let over: Table = toml::from_str("l = [3]\n[t]\ny = 5\n").unwrap();
        let m = merge(base, over);
        assert_eq!(m["a"].as_integer(), Some(1));
        assert_eq!(m["l"].as_array().map(Vec::len), Some(1));
        assert_eq!(m["t"]["x"].as_integer(), Some(1));
        assert_eq!(m["t"]["y"].as_integer(), Some(5));
    }

    #[test]
    fn line_column_counts_from_one() {
        let text = "ab\ncd\nef";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (2, 2));
        assert_eq!(line_column(text, 99), (3, 3));
    }

    #[test]
    fn levels_come_from_raw_prefixes() {
        let (lines, levels) = split_levels("<3>[ 1.0] bad\n\n[ 2.0] fine\n<12>[ 3.0] user warn");
        assert_eq!(lines, ["[ 1.0] bad", "[ 2.0] fine", "[ 3.0] user warn"]);
        assert_eq!(levels, [3, 6, 4]);
    }

    #[test]
    fn previous_boots_load_most_recent_first_and_must_not_overlap() {
        let base = "[node]\ndescription = \"t\"\ntaken_at = \"2026-11-28T07:00:00Z\"\n\
                    [expect]\ndoctor_exit = 0\n[host]\nhostname = \"t\"\nuptime_s = 3600\n";
        let boot = |at: &str, last: &str| {
            format!("[[kernel.previous_boots]]\nbooted_at = \"{at}\"\nlog = \"[{last}] reboot\"\n")
        };
        let good = format!(
            "{base}{}{}",
            boot("2026-11-27T00:00:00Z", "60.0"),
            boot("2026-11-26T00:00:00Z", "0.5")
        );
        let node = parse("t", "t.toml", &good).unwrap();
        let starts: Vec<String> = node
            .previous_boots
            .iter()
            .map(|b| b.booted_at.to_rfc3339())
            .collect();
        assert_eq!(
            starts,
            ["2026-11-27T00:00:00+00:00", "2026-11-26T00:00:00+00:00"]
        );
        // The current boot started at 06:00; a boot still logging then overlaps.
        let overlapping = format!("{base}{}", boot("2026-11-28T05:59:00Z", "120.0"));
        let err = parse("t", "t.toml", &overlapping).unwrap_err().to_string();
        assert!(err.contains("must end before the next one starts"), "{err}");
        let oldest_first = format!(
            "{base}{}{}",
            boot("2026-11-26T00:00:00Z", "0.5"),
            boot("2026-11-27T00:00:00Z", "60.0")
        );
        assert!(parse("t", "t.toml", &oldest_first).is_err());
        let bad_time = format!("{base}{}", boot("yesterday", "1.0"));
        let err = parse("t", "t.toml", &bad_time).unwrap_err().to_string();
        assert!(err.contains("booted_at is not an RFC 3339 time"), "{err}");
    }

    #[test]
    fn every_shipped_file_is_listed() {
        let listed = list();
        assert!(listed.len() >= 8);
        for s in &listed {
            assert!(
                !s.description.contains("malformed"),
                "{}: {}",
                s.name,
                s.description
            );
        }
    }
}
