//! Reading what a command showed: the output of the catalogue's read-only
//! commands turned into typed [`Fact`]s, and those facts applied to a
//! [`Snapshot`] so the checks run on what the command showed.
//!
//! The probe reads the node through NVML, sysfs and the kernel log; an
//! operator (or the copilot) reads it through `nvidia-smi`, `lspci`,
//! `dmesg`, `ibstat` and friends. Both land in the same types: a finding
//! from `nvidia-smi -q -d ECC` output is the finding the probe would give,
//! because [`apply`] writes the facts into the snapshot's fields and the same
//! rules run over them.
//!
//! # Modules
//! | module | reads |
//! |---|---|
//! | [`nvidia_smi`] | `-q [-d ...]`, `--query-gpu` and `--query-compute-apps` CSV, `dmon`, `pmon`, `nvlink -s/-e`, `topo -m`, `-L` |
//! | [`pci`] | `lspci -vv[v]`: link capability and status |
//! | [`kernel_log`] | `dmesg`, `journalctl -k`: XID lines |
//! | [`fabric`] | `ibstat`, `ibv_devinfo`, `dcgmi health` and `dcgmi diag` |
//! | [`amd`] | `rocm-smi` and `amd-smi`, text and JSON |
//! | [`host`] | `df`, `free` |
//!
//! # Untrusted, odd or missing output
//! Output is text from the node: parsers never panic and never trust it
//! (values are parsed, names are kept as data). Output that no parser
//! understands, and output that is empty, binary, cut off or enormous,
//! gives a [`Reading`] with a note and a trimmed excerpt, never an error.

pub mod amd;
pub mod fabric;
pub mod host;
pub mod kernel_log;
pub mod nvidia_smi;
pub mod pci;

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Snapshot, normalize_bus_id};

/// Most bytes of output a parser reads: more is cut (and said so).
pub const MAX_READ_BYTES: usize = 1 << 20;

/// Most characters of the excerpt kept when nothing could be parsed.
pub const EXCERPT_CHARS: usize = 600;

/// One value a command showed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fact {
    /// The GPU it is about: NVIDIA index for NVIDIA tools, the AMD index for
    /// AMD ones; `None` for the host or the fabric.
    pub gpu: Option<u32>,
    /// What it is about when not (only) a GPU: an InfiniBand port
    /// (`mlx5_3 port 1`), a mount point, a PCI device, an NVLink link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The field, named as nvidia-smi's `--query-gpu` fields where one
    /// exists (`temperature.gpu`, `power.draw`), else in the same style
    /// (`nvlink.crc_flit_errors`, `ib.state`, `disk.use`).
    pub field: String,
    /// The value as the tool showed it, unit removed (`86`, `Active`).
    pub value: String,
    /// The unit, when the value has one (`C`, `W`, `MiB`, `%`, `GT/s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl Fact {
    /// A fact about GPU `gpu` (or the host when `None`).
    pub fn new(
        gpu: Option<u32>,
        field: &str,
        value: impl Into<String>,
        unit: Option<&str>,
    ) -> Fact {
        Fact {
            gpu,
            subject: None,
            field: field.to_string(),
            value: value.into(),
            unit: unit.map(str::to_string),
        }
    }

    /// The same fact about `subject`.
    pub fn about(mut self, subject: impl Into<String>) -> Fact {
        self.subject = Some(subject.into());
        self
    }

    /// The value as a number, when it is one.
    pub fn number(&self) -> Option<f64> {
        self.value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
    }

    /// Whether the value says a flag is on (`Active`, `Yes`, `Enabled`).
    pub fn is_on(&self) -> bool {
        matches!(
            self.value.trim().to_ascii_lowercase().as_str(),
            "active" | "yes" | "enabled" | "on" | "true" | "1"
        )
    }
}

impl fmt::Display for Fact {
    /// `GPU 2 temperature.gpu 86 C`, `mlx5_3 port 1 ib.state Down`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(g) = self.gpu {
            write!(f, "GPU {g} ")?;
        }
        if let Some(s) = &self.subject {
            write!(f, "{s} ")?;
        }
        write!(f, "{} {}", self.field, self.value)?;
        if let Some(u) = &self.unit {
            write!(f, " {u}")?;
        }
        Ok(())
    }
}

/// What one command's output gave.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    /// The facts read, in the order the output showed them.
    pub facts: Vec<Fact>,
    /// Why the output could not be read in full (empty, binary, cut off,
    /// timed out, not understood), when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The output's first lines, trimmed, when no fact could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
}

impl Reading {
    /// The telling facts, at most `max`, as one line (`GPU 2
    /// temperature.gpu 86 C; GPU 2 clocks_event_reasons.hw_thermal_slowdown
    /// Active`), with the count of the rest; or the note when nothing could
    /// be read. Routine facts (names, ids, inactive reasons, zero error
    /// counters) are left out; problems come first.
    pub fn summary(&self, max: usize) -> String {
        let mut telling: Vec<&Fact> = self.facts.iter().filter(|f| is_telling(f)).collect();
        telling.sort_by_key(|f| rank(f));
        let mut parts: Vec<String> = telling.iter().take(max).map(|f| f.to_string()).collect();
        if telling.len() > max {
            parts.push(format!("{} more", telling.len() - max));
        }
        if parts.is_empty() && !self.facts.is_empty() {
            parts.push(format!("{} values, nothing unusual", self.facts.len()));
        }
        if let Some(note) = &self.note {
            parts.push(note.clone());
        }
        parts.join("; ")
    }
}

/// Whether a fact says something: not an identity field, not an inactive
/// reason, not a zero error counter.
fn is_telling(f: &Fact) -> bool {
    let field = f.field.as_str();
    const ROUTINE: &[&str] = &[
        "name",
        "uuid",
        "serial",
        "vbios_version",
        "pci.bus_id",
        "persistence_mode",
        "compute_mode",
        "mig.mode.current",
        "mig.mode.pending",
        "ecc.mode.current",
        "ecc.mode.pending",
        "topo.cpu_affinity",
        "topo.numa_affinity",
        "topo.link",
        "ib.firmware",
        "process.name",
        "process.used_memory",
        "process.sm",
        "memory.free",
        "memory.reserved",
        "memory.total",
        "clocks.gr",
        "clocks.max.gr",
        "clocks.max.mem",
        "fan.speed",
        "pcie.link.gen.gpumax",
        "pcie.link.gen.gpucurrent",
        "pcie.link.gen.hostmax",
    ];
    if ROUTINE.contains(&field) {
        return false;
    }
    if field.starts_with("clocks_event_reasons.") {
        return f.is_on() && field != "clocks_event_reasons.gpu_idle";
    }
    let counter = field.contains("error")
        || field.starts_with("remapped_rows.")
        || field.starts_with("retired_pages.")
        || field.starts_with("reset_status.")
        || field.starts_with("amd.ras")
        || field.starts_with("amd.bad_pages")
        || field == "pcie.replay_counter";
    if counter {
        return f.number().is_some_and(|n| n > 0.0) || f.is_on();
    }
    match field {
        "ib.state" => !f.value.eq_ignore_ascii_case("active"),
        "ib.physical_state" => !f.value.eq_ignore_ascii_case("linkup"),
        "dcgm.health" => !f.value.eq_ignore_ascii_case("healthy"),
        "dcgm.diag" => !f.value.eq_ignore_ascii_case("pass"),
        _ => true,
    }
}

/// Problems first, then temperatures and power, then the rest.
fn rank(f: &Fact) -> u8 {
    let field = f.field.as_str();
    if matches!(
        field,
        "gpu.lost" | "xid" | "ib.state" | "pci.link.downgraded"
    ) || field.starts_with("dcgm")
    {
        0
    } else if field.starts_with("clocks_event_reasons.") || field.contains("error") {
        1
    } else if field.starts_with("temperature") || field.starts_with("power") {
        2
    } else {
        3
    }
}

/// How a command ended, as far as reading its output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// It was killed at the time limit.
    TimedOut,
    /// A signal killed it.
    Killed,
}

/// The command as the parsers see it: its pipeline's argv, and the GPUs
/// its `-i`/`--id` selects, resolved against the snapshot.
#[derive(Debug, Clone)]
pub struct Command<'a> {
    /// argv of each pipeline segment.
    pub pipeline: &'a [Vec<String>],
    /// The snapshot, to map bus ids and UUIDs to indexes.
    pub snapshot: &'a Snapshot,
}

impl Command<'_> {
    /// The first segment's program, as a file name (`/usr/bin/nvidia-smi` ->
    /// `nvidia-smi`).
    pub fn program(&self) -> &str {
        self.pipeline
            .first()
            .and_then(|argv| argv.first())
            .map_or("", |p| p.rsplit('/').next().unwrap_or(p))
    }

    /// The first segment's arguments.
    pub fn args(&self) -> &[String] {
        self.pipeline
            .first()
            .map_or(&[], |argv| &argv[1.min(argv.len())..])
    }

    /// Whether a filter after a pipe may have dropped lines a parser needs
    /// for context (a header, a GPU block's first line).
    pub fn is_filtered(&self) -> bool {
        self.pipeline.len() > 1
    }

    /// The value of option `short`/`long` (`-i 2`, `-i=2`, `--id=2`, `-d X`).
    pub fn option(&self, short: &str, long: &str) -> Option<&str> {
        let args = self.args();
        for (i, a) in args.iter().enumerate() {
            if a == short || a == long {
                return args.get(i + 1).map(String::as_str);
            }
            for name in [short, long] {
                if let Some(v) = a.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                    return Some(v);
                }
            }
        }
        None
    }

    /// The NVIDIA GPUs `-i`/`--id` selects (index, bus id or UUID, comma
    /// separated), in the order given; `None` when the command selects none.
    pub fn selected_gpus(&self) -> Option<Vec<u32>> {
        let ids = self.option("-i", "--id")?;
        Some(ids.split(',').filter_map(|id| self.gpu_of(id)).collect())
    }

    /// The NVIDIA index that `id` names: an index, a bus id, or a UUID.
    pub fn gpu_of(&self, id: &str) -> Option<u32> {
        gpu_index(self.snapshot, id)
    }
}

/// The NVIDIA index that `id` names in `snapshot`: an index, a PCI bus id in
/// any spelling, or a `GPU-...` UUID.
pub fn gpu_index(snapshot: &Snapshot, id: &str) -> Option<u32> {
    let id = id.trim();
    if let Ok(i) = id.parse::<u32>() {
        return Some(i);
    }
    if id.starts_with("GPU-") || id.starts_with("MIG-") {
        return snapshot.gpus.iter().find(|g| g.uuid == id).map(|g| g.index);
    }
    let want = normalize_bus_id(id);
    snapshot
        .gpus
        .iter()
        .find(|g| normalize_bus_id(&g.pci_bus_id) == want)
        .map(|g| g.index)
}

/// Reads the output of the command whose pipeline is `pipeline`, as the
/// node in `snapshot` answered it. Never fails: what cannot be read is
/// noted, with an excerpt.
pub fn read(pipeline: &[Vec<String>], output: &str, ended: Ended, snapshot: &Snapshot) -> Reading {
    let command = Command { pipeline, snapshot };
    let mut notes = Vec::new();
    match ended {
        Ended::TimedOut => notes.push("it timed out; the output may be incomplete".to_string()),
        Ended::Killed => notes.push("it was killed; the output may be incomplete".to_string()),
        Ended::Exited(0) => {}
        Ended::Exited(code) => notes.push(format!("it failed (exit code {code})")),
    }
    if output.trim().is_empty() {
        notes.push("it printed nothing".into());
        return Reading {
            facts: Vec::new(),
            note: Some(notes.join("; ")),
            excerpt: None,
        };
    }
    if looks_binary(output) {
        notes.push("its output is binary, not text".into());
        return Reading {
            facts: Vec::new(),
            note: Some(notes.join("; ")),
            excerpt: None,
        };
    }
    let text = if output.len() > MAX_READ_BYTES {
        // In words: a note's numbers would read as claims about the node.
        notes.push("its output is larger than a mebibyte; only the start was read".into());
        let mut end = MAX_READ_BYTES;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        &output[..end]
    } else {
        output
    };
    let facts = match command.program() {
        "nvidia-smi" => nvidia_smi::read(&command, text),
        "lspci" => pci::read(&command, text),
        "dmesg" | "journalctl" => kernel_log::read(&command, text),
        "ibstat" | "ibv_devinfo" | "dcgmi" => fabric::read(&command, text),
        "rocm-smi" | "amd-smi" => amd::read(&command, text),
        "df" | "free" => host::read(&command, text),
        _ => Vec::new(),
    };
    let excerpt = if facts.is_empty() {
        if !matches!(
            command.program(),
            "dmesg" | "journalctl" // a log without XIDs is a finding too
        ) {
            notes.push("no values could be read from it".into());
        }
        Some(excerpt(text))
    } else {
        None
    };
    Reading {
        facts,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        excerpt,
    }
}

/// The first lines of `text`, at most [`EXCERPT_CHARS`] characters, with
/// control characters other than line breaks and tabs removed.
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for c in text.trim().chars() {
        if out.chars().count() >= EXCERPT_CHARS {
            out.push('…');
            break;
        }
        if !c.is_control() || c == '\n' || c == '\t' {
            out.push(c);
        }
    }
    out
}

/// Whether `text` is binary: NUL bytes, or mostly control characters.
fn looks_binary(text: &str) -> bool {
    let sample: Vec<char> = text.chars().take(4096).collect();
    let controls = sample
        .iter()
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        .count();
    sample.contains(&'\0') || controls * 10 > sample.len()
}

/// Splits `value` into a number and its unit: `463.27 W` -> `("463.27",
/// Some("W"))`, `86 C` -> `("86", Some("C"))`, `16x` -> `("16", Some("x"))`,
/// `Active` -> `("Active", None)`.
pub fn split_unit(value: &str) -> (String, Option<String>) {
    let v = value.trim();
    let number_end = v
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && c == '-')))
        .map_or(v.len(), |(i, _)| i);
    if number_end == 0 || v[..number_end].parse::<f64>().is_err() {
        return (v.to_string(), None);
    }
    let unit = v[number_end..].trim();
    (
        v[..number_end].to_string(),
        (!unit.is_empty()).then(|| unit.to_string()),
    )
}

/// Writes `facts` into `snapshot`'s fields, as if the probe had read them:
/// the checks then judge what the commands showed. Facts about GPUs the
/// snapshot does not know, and fields without a home in it, are left out.
pub fn apply(snapshot: &mut Snapshot, facts: &[Fact]) {
    for fact in facts {
        nvidia_smi::apply(snapshot, fact);
        pci::apply(snapshot, fact);
        kernel_log::apply(snapshot, fact);
        amd::apply(snapshot, fact);
        host::apply(snapshot, fact);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<Vec<String>> {
        line.split(" | ")
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn a_summary_tells_what_matters_first() {
        let facts = vec![
            Fact::new(Some(2), "name", "NVIDIA H100", None),
            Fact::new(Some(2), "temperature.gpu", "86", Some("C")),
            Fact::new(
                Some(2),
                "clocks_event_reasons.sw_power_cap",
                "Not Active",
                None,
            ),
            Fact::new(
                Some(2),
                "clocks_event_reasons.hw_thermal_slowdown",
                "Active",
                None,
            ),
            Fact::new(Some(2), "ecc.errors.uncorrected.volatile.total", "0", None),
        ];
        let r = Reading {
            facts,
            note: None,
            excerpt: None,
        };
        assert_eq!(
            r.summary(5),
            "GPU 2 clocks_event_reasons.hw_thermal_slowdown Active; GPU 2 temperature.gpu 86 C"
        );
        assert_eq!(
            r.summary(1),
            "GPU 2 clocks_event_reasons.hw_thermal_slowdown Active; 1 more"
        );
        let quiet = Reading {
            facts: vec![Fact::new(Some(0), "name", "x", None)],
            note: None,
            excerpt: None,
        };
        assert_eq!(quiet.summary(5), "1 values, nothing unusual");
    }

    #[test]
    fn units_split_from_numbers() {
        assert_eq!(split_unit("463.27 W"), ("463.27".into(), Some("W".into())));
        assert_eq!(split_unit("86 C"), ("86".into(), Some("C".into())));
        assert_eq!(split_unit("16x"), ("16".into(), Some("x".into())));
        assert_eq!(split_unit("Not Active"), ("Not Active".into(), None));
        assert_eq!(split_unit("-5"), ("-5".into(), None));
        assert_eq!(split_unit("5.5.5"), ("5.5.5".into(), None));
    }

    fn node() -> Snapshot {
        crate::sim::load("h100x8-healthy").expect("node").snapshot
    }

    #[test]
    fn odd_output_is_noted_never_an_error() {
        let snap = node();
        let cmd = argv("nvidia-smi -q");
        let empty = read(&cmd, "  \n", Ended::Exited(0), &snap);
        assert!(empty.facts.is_empty());
        assert_eq!(empty.note.as_deref(), Some("it printed nothing"));

        let binary = read(&cmd, "\0\u{1}\u{2}ELF", Ended::Exited(0), &snap);
        assert!(binary.note.unwrap().contains("binary"));

        let unknown = read(&cmd, "something else entirely", Ended::TimedOut, &snap);
        let note = unknown.note.unwrap();
        assert!(
            note.contains("timed out") && note.contains("no values"),
            "{note}"
        );
        assert_eq!(unknown.excerpt.as_deref(), Some("something else entirely"));

        let huge = "x".repeat(10 << 20);
        let big = read(&cmd, &huge, Ended::Exited(0), &snap);
        assert!(big.note.unwrap().contains("only the start was read"));
        assert!(big.excerpt.unwrap().chars().count() <= EXCERPT_CHARS + 1);
    }

    #[test]
    fn selected_gpus_resolve_indexes_bus_ids_and_uuids() {
        let mut snap = node();
        snap.gpus = (0..4)
            .map(|i| crate::probe::Gpu {
                index: i,
                pci_bus_id: format!("00000000:{:02X}:00.0", 0x18 + i * 0x10),
                uuid: format!("GPU-{i}"),
                ..Default::default()
            })
            .collect();
        let cmd = argv("nvidia-smi -q -i 2");
        let c = Command {
            pipeline: &cmd,
            snapshot: &snap,
        };
        assert_eq!(c.selected_gpus(), Some(vec![2]));
        for id in ["0000:38:00.0", "38:00.0", "00000000:38:00.0", "GPU-2"] {
            assert_eq!(gpu_index(&snap, id), Some(2), "{id}");
        }
        let cmd = argv("nvidia-smi --id=GPU-1,3 -q | grep Temp");
        let c = Command {
            pipeline: &cmd,
            snapshot: &snap,
        };
        assert_eq!(c.selected_gpus(), Some(vec![1, 3]));
        assert!(c.is_filtered());
        assert_eq!(c.program(), "nvidia-smi");
    }
}
