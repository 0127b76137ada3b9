//! `nvidia-smi` output read back into facts: the detailed report (`-q`,
//! `-q -d SECTIONS`), `--query-gpu` and `--query-compute-apps` CSV, the
//! summary table, `-L`, `dmon`, `pmon`, `nvlink -s/-e` and `topo -m`.
//!
//! Fields are named as `--query-gpu` names them (`temperature.gpu`,
//! `clocks_event_reasons.hw_thermal_slowdown`, ...), so the same fact reads
//! the same whichever form showed it, and [`apply`] has one name to match.
//! Layouts follow driver 535-570; older spellings (`Clocks Throttle
//! Reasons`, `Power Readings`) are read too.

use std::sync::LazyLock;

use regex::Regex;

use super::{Command, Fact, split_unit};
use crate::probe::{
    ClockEventReason, Ecc, GpuProcess, NvLink, PcieLink, RemappedRows, RetiredPages, Snapshot,
};

/// Reads `text`, the output of `command` (an `nvidia-smi` invocation).
pub fn read(command: &Command<'_>, text: &str) -> Vec<Fact> {
    let args = command.args();
    let first = args.first().map(String::as_str);
    let mut facts = lost_gpus(command, text);
    facts.extend(match first {
        Some("dmon") => dmon(text),
        Some("pmon") => pmon(text),
        Some("nvlink") => nvlink(text),
        Some("topo") => topo(text),
        _ if command.option("--query-gpu", "--query-gpu").is_some() => query_gpu(command, text),
        _ if command
            .option("--query-compute-apps", "--query-compute-apps")
            .is_some() =>
        {
            query_apps(command, text)
        }
        _ if args.iter().any(|a| a == "-L" || a == "--list-gpus") => list(text),
        _ if args.iter().any(|a| a == "-q" || a == "--query") => report(command, text),
        _ => summary(text),
    });
    facts
}

/// `Unable to determine the device handle for GPU0000:5D:00.0: Unknown
/// Error`: nvidia-smi's word for a GPU that fell off the bus.
fn lost_gpus(command: &Command<'_>, text: &str) -> Vec<Fact> {
    static LOST: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)unable to determine the device handle for gpu\s*([0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}(?:\.[0-7])?)")
            .expect("valid regex")
    });
    LOST.captures_iter(text)
        .filter_map(|c| command.gpu_of(&c[1]))
        .map(|gpu| Fact::new(Some(gpu), "gpu.lost", "Yes", None))
        .collect()
}

// ---------------------------------------------------------------- -q

/// A line of the `-q` report: its depth (indent / 4) and its key and value.
struct Line<'a> {
    depth: usize,
    key: &'a str,
    value: Option<&'a str>,
}

fn parse_line(raw: &str) -> Option<Line<'_>> {
    let trimmed = raw.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('=') {
        return None;
    }
    let indent = raw.len() - trimmed.len();
    let (key, value) = match trimmed
        .split_once(" : ")
        .or_else(|| trimmed.split_once(": "))
    {
        Some((k, v)) => (k.trim(), Some(v.trim())),
        None => (trimmed.trim_end_matches(':').trim(), None),
    };
    Some(Line {
        depth: indent / 4,
        key,
        value,
    })
}

/// The detailed report. GPU blocks start at `GPU 00000000:3A:00.0`; a
/// report cut by a filter (`| grep Temp`) has no such line and is about the
/// GPU `-i` selected, when it selected one.
fn report(command: &Command<'_>, text: &str) -> Vec<Fact> {
    let selected = command.selected_gpus().unwrap_or_default();
    let mut gpu = (selected.len() == 1).then(|| selected[0]);
    let mut path: Vec<String> = Vec::new();
    let mut facts = Vec::new();
    let mut ecc = EccSums::default();
    let mut process: Option<String> = None;
    for raw in text.lines() {
        let Some(line) = parse_line(raw) else {
            continue;
        };
        if line.depth == 0 {
            if let Some(bus) = line.key.strip_prefix("GPU ") {
                ecc.flush(gpu, &mut facts);
                gpu = command.gpu_of(bus.trim());
                path.clear();
                process = None;
            }
            continue;
        }
        path.truncate(line.depth.saturating_sub(1));
        let Some(value) = line.value else {
            path.push(line.key.to_string());
            continue;
        };
        let parents: Vec<&str> = path.iter().map(String::as_str).collect();
        if parents.first() == Some(&"Processes") {
            if line.key == "Process ID" {
                process = Some(value.to_string());
            } else if let Some(pid) = &process {
                let field = match line.key {
                    "Name" => Some("process.name"),
                    "Used GPU Memory" => Some("process.used_memory"),
                    _ => None,
                };
                if let Some(field) = field {
                    let (v, unit) = split_unit(value);
                    facts.push(
                        Fact::new(gpu, field, v, unit.as_deref()).about(format!("pid {pid}")),
                    );
                }
            }
            continue;
        }
        if ecc.add(&parents, line.key, value) {
            continue;
        }
        let field = report_field(&parents, line.key).or_else(|| {
            // A filter (`| grep Temp`) drops the headings: a key that only
            // one heading has is still known.
            command.is_filtered().then(|| key_alone(line.key)).flatten()
        });
        if let Some(field) = field {
            if is_missing(value) {
                continue;
            }
            let (v, unit) = split_unit(value);
            facts.push(Fact::new(gpu, &field, v, unit.as_deref()));
        }
    }
    ecc.flush(gpu, &mut facts);
    facts
}

/// The query-field name of a `-q` key under `parents`, for the keys the
/// checks and the copilot use.
fn report_field(parents: &[&str], key: &str) -> Option<String> {
    let parent = parents.last().copied().unwrap_or("");
    let field = match (parent, key) {
        ("", "Product Name") => "name",
        ("", "Persistence Mode") => "persistence_mode",
        ("", "Serial Number") => "serial",
        ("", "GPU UUID") => "uuid",
        ("", "VBIOS Version") => "vbios_version",
        ("", "Fan Speed") => "fan.speed",
        ("", "Performance State") => "pstate",
        ("", "Compute Mode") => "compute_mode",
        ("MIG Mode", "Current") => "mig.mode.current",
        ("MIG Mode", "Pending") => "mig.mode.pending",
        ("GPU Reset Status", "Reset Required") => "reset_status.reset_required",
        ("GPU Reset Status", "Drain and Reset Recommended") => {
            "reset_status.drain_and_reset_recommended"
        }
        ("PCI", "Bus Id") => "pci.bus_id",
        ("PCI", "Replays Since Reset") => "pcie.replay_counter",
        ("PCIe Generation", "Max") => "pcie.link.gen.max",
        ("PCIe Generation", "Current") => "pcie.link.gen.current",
        ("PCIe Generation", "Device Max") => "pcie.link.gen.gpumax",
        ("PCIe Generation", "Device Current") => "pcie.link.gen.gpucurrent",
        ("PCIe Generation", "Host Max") => "pcie.link.gen.hostmax",
        ("Link Width", "Max") => "pcie.link.width.max",
        ("Link Width", "Current") => "pcie.link.width.current",
        ("FB Memory Usage", "Total") => "memory.total",
        ("FB Memory Usage", "Used") => "memory.used",
        ("FB Memory Usage", "Free") => "memory.free",
        ("FB Memory Usage", "Reserved") => "memory.reserved",
        ("Utilization", "Gpu") => "utilization.gpu",
        ("Utilization", "Memory") => "utilization.memory",
        ("ECC Mode", "Current") => "ecc.mode.current",
        ("ECC Mode", "Pending") => "ecc.mode.pending",
        ("Retired Pages", "Pending Page Blacklist" | "Pending") => "retired_pages.pending",
        ("Single Bit ECC", "Count") => "retired_pages.single_bit_ecc.count",
        ("Double Bit ECC", "Count") => "retired_pages.double_bit.count",
        ("Remapped Rows", "Correctable Error") => "remapped_rows.correctable",
        ("Remapped Rows", "Uncorrectable Error") => "remapped_rows.uncorrectable",
        ("Remapped Rows", "Pending") => "remapped_rows.pending",
        ("Remapped Rows", "Remapping Failure Occurred") => "remapped_rows.failure",
        ("Temperature", "GPU Current Temp") => "temperature.gpu",
        ("Temperature", "GPU Shutdown Temp") => "temperature.gpu.shutdown",
        ("Temperature", "GPU Slowdown Temp") => "temperature.gpu.slowdown",
        ("Temperature", "GPU Max Operating Temp") => "temperature.gpu.max_operating",
        ("Temperature", "Memory Current Temp") => "temperature.memory",
        ("GPU Power Readings" | "Power Readings", "Power Draw" | "Average Power Draw") => {
            "power.draw"
        }
        ("GPU Power Readings" | "Power Readings", "Current Power Limit" | "Power Limit") => {
            "power.limit"
        }
        ("GPU Power Readings" | "Power Readings", "Default Power Limit") => "power.default_limit",
        ("GPU Power Readings" | "Power Readings", "Enforced Power Limit") => "enforced.power.limit",
        ("GPU Power Readings" | "Power Readings", "Min Power Limit") => "power.min_limit",
        ("GPU Power Readings" | "Power Readings", "Max Power Limit") => "power.max_limit",
        ("Clocks", "Graphics") => "clocks.gr",
        ("Clocks", "SM") => "clocks.sm",
        ("Clocks", "Memory") => "clocks.mem",
        ("Max Clocks", "Graphics") => "clocks.max.gr",
        ("Max Clocks", "SM") => "clocks.max.sm",
        ("Max Clocks", "Memory") => "clocks.max.mem",
        (p, k) if is_reasons_block(p) || parents.iter().any(|p| is_reasons_block(p)) => {
            return reason_of(k).map(|r| format!("clocks_event_reasons.{}", r.field_name()));
        }
        _ => return None,
    };
    Some(field.to_string())
}

/// The field of a `-q` key whose heading a filter removed, when only one
/// heading has that key (`GPU Current Temp`, not `Current`).
fn key_alone(key: &str) -> Option<String> {
    const HEADINGS: [&str; 16] = [
        "",
        "MIG Mode",
        "GPU Reset Status",
        "PCI",
        "PCIe Generation",
        "Link Width",
        "FB Memory Usage",
        "Utilization",
        "ECC Mode",
        "Retired Pages",
        "Remapped Rows",
        "Temperature",
        "GPU Power Readings",
        "Clocks",
        "Max Clocks",
        "Clocks Event Reasons",
    ];
    let mut found = HEADINGS.iter().filter_map(|h| {
        let parents: &[&str] = if h.is_empty() {
            &[]
        } else {
            std::slice::from_ref(h)
        };
        report_field(parents, key)
    });
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

fn is_reasons_block(key: &str) -> bool {
    matches!(key, "Clocks Event Reasons" | "Clocks Throttle Reasons")
}

/// The clock-event reason a `-q` key names.
fn reason_of(key: &str) -> Option<ClockEventReason> {
    use ClockEventReason as R;
    Some(match key {
        "Idle" => R::GpuIdle,
        "Applications Clocks Setting" => R::ApplicationsClocksSetting,
        "SW Power Cap" => R::SwPowerCap,
        "HW Slowdown" => R::HwSlowdown,
        "HW Thermal Slowdown" => R::HwThermalSlowdown,
        "HW Power Brake Slowdown" => R::HwPowerBrakeSlowdown,
        "Sync Boost" => R::SyncBoost,
        "SW Thermal Slowdown" => R::SwThermalSlowdown,
        "Display Clock Setting" => R::DisplayClockSetting,
        _ => return None,
    })
}

/// `N/A`, `[N/A]`, `[Not Supported]`, `Not Available`: no value.
fn is_missing(value: &str) -> bool {
    let v = value.trim().trim_start_matches('[').trim_end_matches(']');
    v.is_empty()
        || v.eq_ignore_ascii_case("N/A")
        || v.eq_ignore_ascii_case("Not Supported")
        || v.eq_ignore_ascii_case("Not Available")
        || v.eq_ignore_ascii_case("Unknown Error")
}

/// ECC counts of one GPU block, summed over SRAM and DRAM (driver 550+)
/// or read from the `Single Bit`/`Double Bit` totals (older drivers).
#[derive(Default)]
struct EccSums {
    /// `[volatile, aggregate] x [corrected, uncorrected]`, when seen.
    counts: [[Option<u64>; 2]; 2],
}

impl EccSums {
    /// Takes a line under `ECC Errors`; whether it was one.
    fn add(&mut self, parents: &[&str], key: &str, value: &str) -> bool {
        if parents.first() != Some(&"ECC Errors") {
            return false;
        }
        let scope = match parents.get(1) {
            Some(&"Volatile") => 0,
            Some(&"Aggregate") => 1,
            _ => return true,
        };
        let old_kind = parents.get(2).copied();
        let kind = if key.contains("Uncorrectable") || old_kind == Some("Double Bit") {
            1
        } else if key.contains("Correctable") || old_kind == Some("Single Bit") {
            0
        } else {
            return true;
        };
        if old_kind.is_some() && key != "Total" {
            return true;
        }
        if let Ok(n) = value.trim().parse::<u64>() {
            let slot = &mut self.counts[scope][kind];
            *slot = Some(slot.unwrap_or(0) + n);
        }
        true
    }

    /// Emits the sums as facts and starts over.
    fn flush(&mut self, gpu: Option<u32>, facts: &mut Vec<Fact>) {
        const NAMES: [[&str; 2]; 2] = [
            [
                "ecc.errors.corrected.volatile.total",
                "ecc.errors.uncorrected.volatile.total",
            ],
            [
                "ecc.errors.corrected.aggregate.total",
                "ecc.errors.uncorrected.aggregate.total",
            ],
        ];
        for (scope, kinds) in self.counts.iter().enumerate() {
            for (kind, count) in kinds.iter().enumerate() {
                if let Some(n) = count {
                    facts.push(Fact::new(gpu, NAMES[scope][kind], n.to_string(), None));
                }
            }
        }
        *self = EccSums::default();
    }
}

// ---------------------------------------------------------------- CSV

/// Splits a CSV line as nvidia-smi writes it (`, ` between values, no
/// quoting; names never contain commas in practice).
fn csv_cells(line: &str) -> Vec<&str> {
    line.split(',').map(str::trim).collect()
}

/// `name [unit]` -> (`name`, `unit`).
fn header_cell(cell: &str) -> (String, Option<String>) {
    match cell.split_once(" [") {
        Some((name, unit)) => (
            name.trim().to_string(),
            Some(unit.trim_end_matches(']').to_string()),
        ),
        None => (cell.trim().to_string(), None),
    }
}

/// The field list the command asked for (`--query-gpu=a,b`), used when the
/// output has no header.
fn asked_fields(command: &Command<'_>, option: &str) -> Vec<String> {
    command
        .option(option, option)
        .map(|f| f.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default()
}

/// `--query-gpu` CSV: one row per GPU. A row's GPU comes from its `index`,
/// `pci.bus_id` or `uuid` column, else from its place among the GPUs `-i`
/// selected (or all of them, lost ones left out: they print an error line).
fn query_gpu(command: &Command<'_>, text: &str) -> Vec<Fact> {
    let mut lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("Unable to determine"));
    let asked = asked_fields(command, "--query-gpu");
    let mut columns: Vec<(String, Option<String>)> =
        asked.iter().map(|f| (f.clone(), None)).collect();
    let mut rows: Vec<&str> = Vec::new();
    if let Some(first) = lines.next() {
        let cells = csv_cells(first);
        let is_header =
            !asked.is_empty() && cells.first().map(|c| header_cell(c).0) == asked.first().cloned();
        if is_header {
            columns = cells.iter().map(|c| header_cell(c)).collect();
        } else {
            rows.push(first);
        }
    }
    rows.extend(lines);
    let order: Vec<u32> = command.selected_gpus().unwrap_or_else(|| {
        command
            .snapshot
            .gpus
            .iter()
            .filter(|g| !g.lost)
            .map(|g| g.index)
            .collect()
    });
    let key_column = ["index", "pci.bus_id", "gpu_bus_id", "uuid", "gpu_uuid"]
        .iter()
        .find_map(|k| columns.iter().position(|(name, _)| name == k));
    let mut facts = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let cells = csv_cells(row);
        let gpu = match key_column {
            Some(k) => cells.get(k).and_then(|id| command.gpu_of(id)),
            None => order.get(n).copied(),
        };
        for ((name, unit), cell) in columns.iter().zip(&cells) {
            if is_missing(cell) || name.is_empty() {
                continue;
            }
            let (value, shown_unit) = split_unit(cell);
            let unit = shown_unit.or_else(|| unit.clone());
            facts.push(Fact::new(gpu, name, value, unit.as_deref()));
        }
    }
    facts
}

/// `--query-compute-apps` CSV: one row per process.
fn query_apps(command: &Command<'_>, text: &str) -> Vec<Fact> {
    let asked = asked_fields(command, "--query-compute-apps");
    let mut columns: Vec<(String, Option<String>)> =
        asked.iter().map(|f| (f.clone(), None)).collect();
    let mut facts = Vec::new();
    for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let cells = csv_cells(line);
        if n == 0 && cells.first().map(|c| header_cell(c).0) == asked.first().cloned() {
            columns = cells.iter().map(|c| header_cell(c)).collect();
            continue;
        }
        let cell = |name: &str| {
            columns
                .iter()
                .position(|(c, _)| c == name)
                .and_then(|i| cells.get(i).copied())
        };
        let gpu = ["gpu_bus_id", "gpu_uuid", "gpu_serial"]
            .iter()
            .find_map(|k| cell(k).and_then(|id| command.gpu_of(id)));
        let pid = cell("pid").unwrap_or("?");
        for ((name, unit), value) in columns.iter().zip(&cells) {
            if matches!(
                name.as_str(),
                "pid" | "gpu_bus_id" | "gpu_uuid" | "gpu_serial"
            ) || is_missing(value)
            {
                continue;
            }
            let (v, shown) = split_unit(value);
            let field = format!("process.{name}").replace("process.process_name", "process.name");
            facts.push(
                Fact::new(gpu, &field, v, shown.or_else(|| unit.clone()).as_deref())
                    .about(format!("pid {pid}")),
            );
        }
    }
    facts
}

// ---------------------------------------------------------------- tables

/// `nvidia-smi -L`: each GPU's name and UUID.
fn list(text: &str) -> Vec<Fact> {
    static GPU: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^GPU (\d+): (.+?) \(UUID: (GPU-[0-9a-fA-F-]+)\)").expect("valid regex")
    });
    text.lines()
        .filter_map(|l| GPU.captures(l.trim()))
        .flat_map(|c| {
            let gpu = c[1].parse().ok();
            [
                Fact::new(gpu, "name", &c[2], None),
                Fact::new(gpu, "uuid", &c[3], None),
            ]
        })
        .collect()
}

/// The summary table of plain `nvidia-smi`: each GPU's two rows, then the
/// process table.
fn summary(text: &str) -> Vec<Fact> {
    static FIRST: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^\|\s+(\d+)\s+(.+?)\s+(On|Off)\s+\|\s+([0-9A-Fa-f]+:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d)\s+\S+\s+\|\s+(\S+)\s+\|")
            .expect("valid regex")
    });
    static SECOND: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^\|\s+(\S+)\s+(\S+?)C?\s+(P\d+)\s+(?:\S+\s+)?(\S+?)W?\s*/\s*(\S+?)W\s+\|\s+(\d+)MiB\s*/\s*(\d+)MiB\s+\|\s+(\S+?)%?\s+(\S+)\s+\|")
            .expect("valid regex")
    });
    static PROCESS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^\|\s+(\d+)\s+\S+\s+\S+\s+(\d+)\s+(C|G|C\+G)\s+(.+?)\s+(\d+)MiB\s+\|")
            .expect("valid regex")
    });
    let mut facts = Vec::new();
    let mut gpu: Option<u32> = None;
    for line in text.lines() {
        if let Some(c) = FIRST.captures(line) {
            gpu = c[1].parse().ok();
            facts.push(Fact::new(gpu, "name", &c[2], None));
            facts.push(Fact::new(gpu, "persistence_mode", &c[3], None));
            facts.push(Fact::new(gpu, "pci.bus_id", &c[4], None));
            if !is_missing(&c[5]) {
                facts.push(Fact::new(
                    gpu,
                    "ecc.errors.uncorrected.volatile.total",
                    &c[5],
                    None,
                ));
            }
        } else if let Some(c) = SECOND.captures(line) {
            let pairs = [
                ("fan.speed", &c[1], "%"),
                ("temperature.gpu", &c[2], "C"),
                ("pstate", &c[3], ""),
                ("power.draw", &c[4], "W"),
                ("power.limit", &c[5], "W"),
                ("memory.used", &c[6], "MiB"),
                ("memory.total", &c[7], "MiB"),
                ("utilization.gpu", &c[8], "%"),
                ("compute_mode", &c[9], ""),
            ];
            for (field, value, unit) in pairs {
                let value = value.trim_end_matches('%');
                if !is_missing(value) {
                    let unit = (!unit.is_empty()).then_some(unit);
                    facts.push(Fact::new(gpu, field, value, unit));
                }
            }
        } else if let Some(c) = PROCESS.captures(line) {
            let gpu = c[1].parse().ok();
            let pid = format!("pid {}", &c[2]);
            facts.push(Fact::new(gpu, "process.name", c[4].trim(), None).about(pid.clone()));
            facts.push(Fact::new(gpu, "process.used_memory", &c[5], Some("MiB")).about(pid));
        }
    }
    facts
}

/// `dmon`: one row per GPU per sample under a `# gpu pwr gtemp ...` header.
/// The last sample of each GPU wins.
fn dmon(text: &str) -> Vec<Fact> {
    let mut columns: Vec<String> = Vec::new();
    let mut units: Vec<String> = Vec::new();
    let mut latest: Vec<(u32, Vec<Fact>)> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"#") {
            if columns.is_empty() {
                columns = words[1..].iter().map(|w| w.to_string()).collect();
            } else if units.is_empty() {
                units = words[1..].iter().map(|w| w.to_string()).collect();
            }
            continue;
        }
        let Some(gpu) = words.first().and_then(|w| w.parse::<u32>().ok()) else {
            continue;
        };
        let mut facts = Vec::new();
        for (i, (col, value)) in columns.iter().zip(&words).enumerate().skip(1) {
            if *value == "-" {
                continue;
            }
            let unit = units.get(i).map(String::as_str).filter(|u| *u != "-");
            let field = match col.as_str() {
                "pwr" => "power.draw".to_string(),
                "gtemp" => "temperature.gpu".to_string(),
                "mtemp" => "temperature.memory".to_string(),
                "sm" => "utilization.gpu".to_string(),
                "mem" => "utilization.memory".to_string(),
                "mclk" => "clocks.mem".to_string(),
                "pclk" => "clocks.gr".to_string(),
                other => format!("dmon.{other}"),
            };
            facts.push(Fact::new(Some(gpu), &field, *value, unit));
        }
        match latest.iter_mut().find(|(g, _)| *g == gpu) {
            Some(slot) => slot.1 = facts,
            None => latest.push((gpu, facts)),
        }
    }
    latest.into_iter().flat_map(|(_, f)| f).collect()
}

/// `pmon`: one row per process per sample (`gpu pid type sm mem ... command`).
fn pmon(text: &str) -> Vec<Fact> {
    let mut facts = Vec::new();
    let mut seen: Vec<(u32, String)> = Vec::new();
    for line in text.lines().rev() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 4 || words[0] == "#" {
            continue;
        }
        let (Ok(gpu), Ok(pid)) = (words[0].parse::<u32>(), words[1].parse::<u32>()) else {
            continue;
        };
        let key = (gpu, pid.to_string());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let about = format!("pid {pid}");
        if let Some(sm) = words.get(3).filter(|w| **w != "-") {
            facts.push(Fact::new(Some(gpu), "process.sm", *sm, Some("%")).about(about.clone()));
        }
        if let Some(name) = words.last().filter(|w| words.len() > 4 && **w != "-") {
            facts.push(Fact::new(Some(gpu), "process.name", *name, None).about(about));
        }
    }
    facts.reverse();
    facts
}

/// `nvlink -s` (`Link N: 26.562 GB/s` or `<inactive>`) and `nvlink -e`
/// (`Link N: Replay Errors: 0`), under `GPU N: NAME (UUID: ...)` lines.
fn nvlink(text: &str) -> Vec<Fact> {
    static LINK: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^Link (\d+):\s*(?:(.+?):\s*)?(.+)$").expect("valid regex"));
    let mut facts = Vec::new();
    let mut gpu = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("GPU ") {
            gpu = rest.split(':').next().and_then(|n| n.trim().parse().ok());
            continue;
        }
        let Some(c) = LINK.captures(t) else {
            continue;
        };
        let link = format!("link {}", &c[1]);
        let value = c[3].trim();
        let fact = match c.get(2).map(|m| m.as_str()) {
            None if value.contains("inactive") => Fact::new(gpu, "nvlink.state", "inactive", None),
            None => {
                let (v, unit) = split_unit(value);
                Fact::new(gpu, "nvlink.speed", v, unit.as_deref())
            }
            Some(counter) => {
                let name = counter.to_ascii_lowercase().replace(' ', "_");
                Fact::new(gpu, &format!("nvlink.{name}"), value, None)
            }
        };
        facts.push(fact.about(link));
    }
    facts
}

/// `topo -m`: the link between each pair of GPUs, and each GPU's CPU and
/// NUMA affinity.
fn topo(text: &str) -> Vec<Fact> {
    let mut header: Vec<String> = Vec::new();
    let mut facts = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('\t').map(str::trim).collect();
        if header.is_empty() {
            if cells.iter().any(|c| c.starts_with("GPU0")) {
                header = cells.iter().map(|c| c.to_string()).collect();
            }
            continue;
        }
        let Some(gpu) = cells
            .first()
            .and_then(|c| c.strip_prefix("GPU"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            if line.trim().is_empty() {
                break;
            }
            continue;
        };
        for (name, cell) in header.iter().zip(&cells).skip(1) {
            if cell.is_empty() || *cell == "X" || is_missing(cell) {
                continue;
            }
            let fact = match name.as_str() {
                "CPU Affinity" => Fact::new(Some(gpu), "topo.cpu_affinity", *cell, None),
                "NUMA Affinity" => Fact::new(Some(gpu), "topo.numa_affinity", *cell, None),
                peer if peer.starts_with("GPU") && !peer.contains(' ') => {
                    Fact::new(Some(gpu), "topo.link", *cell, None).about(peer.to_string())
                }
                _ => continue,
            };
            facts.push(fact);
        }
    }
    facts
}

// ---------------------------------------------------------------- apply

/// Writes a fact about an NVIDIA GPU into the snapshot, where the snapshot
/// has a field for it.
pub fn apply(snapshot: &mut Snapshot, fact: &Fact) {
    let Some(index) = fact.gpu else {
        return;
    };
    let Some(g) = snapshot.gpus.iter_mut().find(|g| g.index == index) else {
        return;
    };
    let n = fact.number();
    let int = || n.filter(|v| *v >= 0.0).map(|v| v.round() as u64);
    let small = || int().and_then(|v| u32::try_from(v).ok());
    let field = fact.field.as_str();
    match field {
        "gpu.lost" => g.lost = fact.is_on(),
        "name" => g.name.clone_from(&fact.value),
        "uuid" => g.uuid.clone_from(&fact.value),
        "serial" => g.serial = Some(fact.value.clone()),
        "vbios_version" => g.vbios_version = Some(fact.value.clone()),
        "pstate" => g.pstate = Some(fact.value.clone()),
        "compute_mode" => g.compute_mode = Some(fact.value.clone()),
        "persistence_mode" => g.persistence_mode = Some(fact.is_on()),
        "mig.mode.current" => g.mig_mode = Some(fact.is_on()),
        "fan.speed" => g.fan_pct = small().or(g.fan_pct),
        "temperature.gpu" => g.temperature_c = small().or(g.temperature_c),
        "temperature.gpu.slowdown" => {
            g.temperature_slowdown_c = small().or(g.temperature_slowdown_c);
        }
        "temperature.gpu.shutdown" => {
            g.temperature_shutdown_c = small().or(g.temperature_shutdown_c);
        }
        "temperature.memory" => g.memory_temperature_c = small().or(g.memory_temperature_c),
        "power.draw" => g.power_draw_w = n.or(g.power_draw_w),
        "power.limit" | "enforced.power.limit" => g.power_limit_w = n.or(g.power_limit_w),
        "power.default_limit" => g.power_default_limit_w = n.or(g.power_default_limit_w),
        "power.min_limit" => g.power_min_limit_w = n.or(g.power_min_limit_w),
        "power.max_limit" => g.power_max_limit_w = n.or(g.power_max_limit_w),
        "clocks.sm" => g.clock_sm_mhz = small().or(g.clock_sm_mhz),
        "clocks.max.sm" => g.clock_sm_max_mhz = small().or(g.clock_sm_max_mhz),
        "clocks.mem" => g.clock_mem_mhz = small().or(g.clock_mem_mhz),
        "clocks.max.mem" => g.clock_mem_max_mhz = small().or(g.clock_mem_max_mhz),
        "utilization.gpu" => g.utilization_gpu_pct = small().or(g.utilization_gpu_pct),
        "utilization.memory" => g.utilization_mem_pct = small().or(g.utilization_mem_pct),
        "memory.used" => g.memory_used_mib = int().or(g.memory_used_mib),
        "memory.total" => g.memory_total_mib = int().or(g.memory_total_mib),
        "ecc.mode.current" => g.ecc.get_or_insert_with(Ecc::default).enabled = fact.is_on(),
        "ecc.errors.corrected.volatile.total" => {
            set(
                &mut g.ecc.get_or_insert_with(Ecc::default).corrected_volatile,
                int(),
            );
        }
        "ecc.errors.uncorrected.volatile.total" => {
            set(
                &mut g.ecc.get_or_insert_with(Ecc::default).uncorrected_volatile,
                int(),
            );
        }
        "ecc.errors.corrected.aggregate.total" => {
            set(
                &mut g.ecc.get_or_insert_with(Ecc::default).corrected_aggregate,
                int(),
            );
        }
        "ecc.errors.uncorrected.aggregate.total" => {
            set(
                &mut g.ecc.get_or_insert_with(Ecc::default).uncorrected_aggregate,
                int(),
            );
        }
        "retired_pages.single_bit_ecc.count" => {
            set(
                &mut g
                    .retired_pages
                    .get_or_insert_with(RetiredPages::default)
                    .single_bit,
                int(),
            );
        }
        "retired_pages.double_bit.count" => {
            set(
                &mut g
                    .retired_pages
                    .get_or_insert_with(RetiredPages::default)
                    .double_bit,
                int(),
            );
        }
        "retired_pages.pending" => {
            g.retired_pages
                .get_or_insert_with(RetiredPages::default)
                .pending = fact.is_on();
        }
        "remapped_rows.correctable" => {
            set(
                &mut g
                    .remapped_rows
                    .get_or_insert_with(RemappedRows::default)
                    .correctable,
                int(),
            );
        }
        "remapped_rows.uncorrectable" => {
            let rows = g.remapped_rows.get_or_insert_with(RemappedRows::default);
            set(&mut rows.uncorrectable, int());
        }
        "remapped_rows.pending" => {
            g.remapped_rows
                .get_or_insert_with(RemappedRows::default)
                .pending = fact.is_on();
        }
        "remapped_rows.failure" => {
            g.remapped_rows
                .get_or_insert_with(RemappedRows::default)
                .failure = fact.is_on();
        }
        "pcie.link.gen.current" => set(&mut pcie(g).gen_current, small()),
        "pcie.link.gen.max" => set(&mut pcie(g).gen_max, small()),
        "pcie.link.width.current" => set(&mut pcie(g).width_current, small()),
        "pcie.link.width.max" => set(&mut pcie(g).width_max, small()),
        "pcie.replay_counter" => pcie(g).replay_count = int().or(pcie(g).replay_count),
        _ if field.starts_with("clocks_event_reasons.") => {
            let name = &field["clocks_event_reasons.".len()..];
            if let Some(r) = ClockEventReason::ALL
                .iter()
                .find(|r| r.field_name() == name)
            {
                g.clock_event_reasons.retain(|x| x != r);
                if fact.is_on() {
                    g.clock_event_reasons.push(*r);
                    g.clock_event_reasons.sort();
                }
            }
        }
        "process.name" | "process.used_memory" => {
            let Some(pid) = fact
                .subject
                .as_deref()
                .and_then(|s| s.strip_prefix("pid "))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                return;
            };
            let p = match g.processes.iter_mut().position(|p| p.pid == pid) {
                Some(i) => &mut g.processes[i],
                None => {
                    g.processes.push(GpuProcess {
                        pid,
                        ..GpuProcess::default()
                    });
                    g.processes.last_mut().expect("just pushed")
                }
            };
            if field == "process.name" {
                p.name.clone_from(&fact.value);
            } else {
                p.used_memory_mib = int().or(p.used_memory_mib);
            }
        }
        _ if field.starts_with("nvlink.") => {
            let Some(link) = fact
                .subject
                .as_deref()
                .and_then(|s| s.strip_prefix("link "))
                .and_then(|l| l.parse::<u32>().ok())
            else {
                return;
            };
            let l = match g.nvlinks.iter_mut().position(|l| l.link == link) {
                Some(i) => &mut g.nvlinks[i],
                None => {
                    g.nvlinks.push(NvLink {
                        link,
                        ..NvLink::default()
                    });
                    g.nvlinks.last_mut().expect("just pushed")
                }
            };
            match field {
                "nvlink.state" => {
                    l.active = false;
                    l.speed_gbps = None;
                }
                "nvlink.speed" => {
                    l.active = true;
                    l.speed_gbps = n;
                }
                "nvlink.replay_errors" => set(&mut l.replay_errors, int()),
                "nvlink.recovery_errors" => set(&mut l.recovery_errors, int()),
                "nvlink.crc_flit_errors" => set(&mut l.crc_flit_errors, int()),
                "nvlink.crc_data_errors" => set(&mut l.crc_data_errors, int()),
                _ => {}
            }
        }
        _ => {}
    }
}

/// The GPU's PCIe link, created when the snapshot had none.
fn pcie(g: &mut crate::probe::Gpu) -> &mut PcieLink {
    g.pcie.get_or_insert_with(PcieLink::default)
}

/// Sets `slot` when a value was read.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Ended, read as read_output};
    use super::*;
    use crate::sim;

    /// Runs `line` on the simulated node `name` and reads what it printed.
    fn read_on(name: &str, line: &str) -> (Snapshot, Vec<Fact>) {
        let node = sim::load(name).expect("simulated node");
        let verdict = crate::guard::check(line);
        let argv: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let out = node.run(&argv);
        let reading = read_output(
            &verdict.pipeline,
            &out.stdout,
            Ended::Exited(out.exit_code),
            &node.snapshot,
        );
        (node.snapshot, reading.facts)
    }

    fn value<'a>(facts: &'a [Fact], gpu: u32, field: &str) -> Option<&'a str> {
        facts
            .iter()
            .find(|f| f.gpu == Some(gpu) && f.field == field)
            .map(|f| f.value.as_str())
    }

    #[test]
    fn the_report_gives_the_thermal_facts_of_the_hot_gpu() {
        let (_, facts) = read_on("h100x8-thermal-throttle", "nvidia-smi -q -i 2");
        assert_eq!(value(&facts, 2, "temperature.gpu"), Some("86"));
        assert_eq!(value(&facts, 2, "temperature.gpu.slowdown"), Some("87"));
        assert_eq!(value(&facts, 2, "temperature.memory"), Some("91"));
        assert_eq!(value(&facts, 2, "power.draw"), Some("463.27"));
        assert_eq!(value(&facts, 2, "power.limit"), Some("700.00"));
        assert_eq!(
            value(&facts, 2, "clocks_event_reasons.hw_thermal_slowdown"),
            Some("Active")
        );
        assert_eq!(
            value(&facts, 2, "clocks_event_reasons.sw_power_cap"),
            Some("Not Active")
        );
        assert_eq!(
            value(&facts, 2, "ecc.errors.uncorrected.volatile.total"),
            Some("0")
        );
        let unit = facts
            .iter()
            .find(|f| f.field == "temperature.gpu")
            .and_then(|f| f.unit.as_deref());
        assert_eq!(unit, Some("C"));
    }

    #[test]
    fn a_filtered_report_is_about_the_selected_gpu() {
        let node = sim::load("h100x8-thermal-throttle").expect("node");
        let pipeline = vec![
            vec!["nvidia-smi", "-q", "-d", "TEMPERATURE", "-i", "2"],
            vec!["grep", "-i", "temp"],
        ]
        .into_iter()
        .map(|s| s.into_iter().map(str::to_string).collect())
        .collect::<Vec<Vec<String>>>();
        let text = "        GPU Current Temp                  : 86 C\n        GPU Slowdown Temp                 : 87 C\n";
        let r = read_output(&pipeline, text, Ended::Exited(0), &node.snapshot);
        assert_eq!(value(&r.facts, 2, "temperature.gpu"), Some("86"));
        assert_eq!(value(&r.facts, 2, "temperature.gpu.slowdown"), Some("87"));
        // An ambiguous key without its heading is not guessed.
        let r = read_output(
            &pipeline,
            "    Current : 5\n",
            Ended::Exited(0),
            &node.snapshot,
        );
        assert!(r.facts.is_empty(), "{:?}", r.facts);
    }

    #[test]
    fn csv_with_and_without_a_header_reads_the_same() {
        let line = "nvidia-smi --query-gpu=index,temperature.gpu,power.draw,clocks_event_reasons.hw_thermal_slowdown --format=csv";
        let (_, with_header) = read_on("h100x8-thermal-throttle", line);
        assert_eq!(value(&with_header, 2, "temperature.gpu"), Some("86"));
        assert_eq!(value(&with_header, 2, "power.draw"), Some("463.27"));
        let bare =
            "nvidia-smi --query-gpu=temperature.gpu,power.draw --format=csv,noheader,nounits -i 2";
        let (_, bare) = read_on("h100x8-thermal-throttle", bare);
        assert_eq!(value(&bare, 2, "temperature.gpu"), Some("86"));
        assert_eq!(value(&bare, 2, "power.draw"), Some("463.27"));
    }

    #[test]
    fn a_lost_gpu_is_a_fact() {
        let (_, facts) = read_on("h100x8-xid79", "nvidia-smi -L");
        assert_eq!(value(&facts, 3, "gpu.lost"), Some("Yes"));
        assert_eq!(value(&facts, 0, "name"), Some("NVIDIA H100 80GB HBM3"));
    }

    #[test]
    fn summary_dmon_pmon_nvlink_and_topo_are_read() {
        let (_, s) = read_on("h100x8-thermal-throttle", "nvidia-smi");
        assert_eq!(value(&s, 2, "temperature.gpu"), Some("86"));
        assert_eq!(value(&s, 2, "power.draw"), Some("463"));
        assert_eq!(value(&s, 2, "memory.used"), Some("74730"));
        assert_eq!(value(&s, 2, "process.name"), Some("python3"));
        let (_, d) = read_on("h100x8-thermal-throttle", "nvidia-smi dmon -c 1");
        assert_eq!(value(&d, 2, "temperature.memory"), Some("91"));
        let (_, p) = read_on("h100x8-thermal-throttle", "nvidia-smi pmon -c 1");
        assert_eq!(value(&p, 2, "process.name"), Some("python3"));
        let (_, e) = read_on("h100x8-nvlink-errors", "nvidia-smi nvlink -e");
        assert!(
            e.iter()
                .any(|f| f.field == "nvlink.crc_flit_errors" && f.number() > Some(0.0))
        );
        let (_, t) = read_on("h100x8-thermal-throttle", "nvidia-smi topo -m");
        assert_eq!(value(&t, 0, "topo.link"), Some("NV18"));
        assert_eq!(value(&t, 4, "topo.numa_affinity"), Some("1"));
    }

    /// The simulator prints from the snapshot; reading its output back into
    /// a snapshot whose GPU values were wiped must restore them.
    #[test]
    fn reading_the_simulators_output_restores_the_snapshot() {
        for name in [
            "h100x8-thermal-throttle",
            "a100x4-ecc-remap-pending",
            "a100x8-ecc-dbe",
            "h100x8-power-cap",
            "l40s-pcie-degraded",
            "h100x8-nvlink-errors",
        ] {
            let node = sim::load(name).expect("node");
            let original = node.snapshot.clone();
            let mut wiped = original.clone();
            for g in &mut wiped.gpus {
                *g = crate::probe::Gpu {
                    index: g.index,
                    pci_bus_id: g.pci_bus_id.clone(),
                    uuid: g.uuid.clone(),
                    lost: g.lost,
                    ..Default::default()
                };
            }
            let mut facts = Vec::new();
            for line in [
                "nvidia-smi -q",
                "nvidia-smi nvlink -e",
                "nvidia-smi nvlink -s",
            ] {
                facts.extend(read_on(name, line).1);
            }
            super::super::apply(&mut wiped, &facts);
            for (got, want) in wiped.gpus.iter().zip(&original.gpus) {
                let i = want.index;
                assert_eq!(got.temperature_c, want.temperature_c, "{name} GPU {i} temp");
                assert_eq!(
                    got.temperature_slowdown_c, want.temperature_slowdown_c,
                    "{name} GPU {i} slowdown"
                );
                assert_eq!(
                    got.power_limit_w, want.power_limit_w,
                    "{name} GPU {i} limit"
                );
                assert_eq!(got.ecc, want.ecc, "{name} GPU {i} ecc");
                assert_eq!(
                    got.remapped_rows, want.remapped_rows,
                    "{name} GPU {i} remap"
                );
                assert_eq!(
                    got.retired_pages, want.retired_pages,
                    "{name} GPU {i} retired"
                );
                assert_eq!(
                    got.clock_event_reasons, want.clock_event_reasons,
                    "{name} GPU {i} reasons"
                );
                assert_eq!(
                    got.utilization_gpu_pct, want.utilization_gpu_pct,
                    "{name} GPU {i}"
                );
                assert_eq!(got.memory_used_mib, want.memory_used_mib, "{name} GPU {i}");
                let link = |p: &Option<PcieLink>| {
                    p.as_ref()
                        .map(|p| (p.gen_current, p.gen_max, p.width_current, p.width_max))
                };
                assert_eq!(link(&got.pcie), link(&want.pcie), "{name} GPU {i} pcie");
                let errors = |l: &[NvLink]| -> Vec<(u32, bool, u64, u64)> {
                    let mut v: Vec<_> = l
                        .iter()
                        .map(|l| (l.link, l.active, l.crc_flit_errors, l.replay_errors))
                        .collect();
                    v.sort_unstable();
                    v
                };
                assert_eq!(
                    errors(&got.nvlinks),
                    errors(&want.nvlinks),
                    "{name} GPU {i} nvlink"
                );
            }
            assert_eq!(
                crate::checks::run_all(&wiped)
                    .iter()
                    .filter(|f| f.severity >= crate::checks::Severity::Warning)
                    .map(|f| (&f.id, f.gpu))
                    .collect::<Vec<_>>(),
                crate::checks::run_all(&original)
                    .iter()
                    .filter(|f| f.severity >= crate::checks::Severity::Warning)
                    .map(|f| (&f.id, f.gpu))
                    .collect::<Vec<_>>(),
                "{name}: the checks on what the commands showed"
            );
        }
    }
}
