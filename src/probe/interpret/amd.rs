//! `rocm-smi` and `amd-smi` output read back into facts: the concise table
//! of plain `rocm-smi`, its `GPU[N] : label (unit): value` lines, the RAS
//! table, bad pages, `amd-smi metric` blocks, and both tools' JSON (read
//! by the probe's own merge functions).
//!
//! Fields are prefixed `amd.` (`amd.temperature.junction`, `amd.use`,
//! `amd.ras.uncorrectable`): AMD indexes are not NVIDIA indexes, and the
//! prefix keeps their facts apart.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::{Command, Fact, split_unit};
use crate::probe::amd::{from_pci, merge_amd_smi, merge_rocm_smi};
use crate::probe::{AmdGpu, Snapshot};

/// Reads `rocm-smi` or `amd-smi` output.
pub fn read(command: &Command<'_>, text: &str) -> Vec<Fact> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return json(command, trimmed);
    }
    let mut facts = concise(text);
    facts.extend(labelled_lines(text));
    facts.extend(amd_smi_blocks(text));
    facts
}

/// Both tools' JSON, merged into the snapshot's AMD GPUs by the probe's
/// code, then told as facts.
fn json(command: &Command<'_>, text: &str) -> Vec<Fact> {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let mut gpus = if command.snapshot.amd_gpus.is_empty() {
        from_pci(&command.snapshot.pci_gpus)
    } else {
        command
            .snapshot
            .amd_gpus
            .iter()
            .map(|g| AmdGpu {
                index: g.index,
                bdf: g.bdf.clone(),
                ..AmdGpu::default()
            })
            .collect()
    };
    if command.program() == "rocm-smi" {
        merge_rocm_smi(&mut gpus, &value);
    } else {
        merge_amd_smi(&mut gpus, &value);
    }
    let mut facts = Vec::new();
    for g in &gpus {
        let gpu = Some(g.index);
        let mut put = |field: &str, v: Option<String>, unit: Option<&str>| {
            if let Some(v) = v {
                facts.push(Fact::new(gpu, field, v, unit));
            }
        };
        put(
            "amd.temperature",
            g.temperature_c.map(|v| v.to_string()),
            Some("C"),
        );
        put(
            "amd.power",
            g.power_draw_w.map(|v| v.to_string()),
            Some("W"),
        );
        put(
            "amd.power_cap",
            g.power_cap_w.map(|v| v.to_string()),
            Some("W"),
        );
        put(
            "amd.use",
            g.utilization_pct.map(|v| v.to_string()),
            Some("%"),
        );
        put(
            "amd.vram_used",
            g.memory_used_mib.map(|v| v.to_string()),
            Some("MiB"),
        );
        put(
            "amd.vram_total",
            g.memory_total_mib.map(|v| v.to_string()),
            Some("MiB"),
        );
        put(
            "amd.ras.correctable",
            g.ras_correctable.map(|v| v.to_string()),
            None,
        );
        put(
            "amd.ras.uncorrectable",
            g.ras_uncorrectable.map(|v| v.to_string()),
            None,
        );
    }
    facts
}

/// Plain `rocm-smi`: the `Concise Info` table, one row per device.
fn concise(text: &str) -> Vec<Fact> {
    let mut facts = Vec::new();
    let mut header: Vec<&str> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"Device") && words.contains(&"Temp") {
            header = words;
            continue;
        }
        if header.is_empty() || line.starts_with('=') {
            continue;
        }
        let Some(gpu) = words.first().and_then(|w| w.parse::<u32>().ok()) else {
            continue;
        };
        // The IDs and Partitions columns hold commas and spaces: read the
        // values by their units instead of their places.
        let with_unit = |suffix: &str| -> Vec<&str> {
            words
                .iter()
                .filter(|w| w.ends_with(suffix))
                .map(|w| w.trim_end_matches(suffix))
                .collect()
        };
        let temps = with_unit("°C");
        let watts = with_unit("W");
        let percents = with_unit("%");
        if let Some(t) = temps.first() {
            facts.push(Fact::new(Some(gpu), "amd.temperature", *t, Some("C")));
        }
        if let Some(p) = watts.first() {
            facts.push(Fact::new(Some(gpu), "amd.power", *p, Some("W")));
        }
        if watts.len() > 1 {
            facts.push(Fact::new(
                Some(gpu),
                "amd.power_cap",
                watts[watts.len() - 1],
                Some("W"),
            ));
        }
        // Fan%, VRAM%, GPU% in that order; the last two are the ones read.
        if percents.len() >= 2 {
            let n = percents.len();
            facts.push(Fact::new(
                Some(gpu),
                "amd.vram_use",
                percents[n - 2],
                Some("%"),
            ));
            facts.push(Fact::new(Some(gpu), "amd.use", percents[n - 1], Some("%")));
        }
    }
    facts
}

/// `GPU[N] : label (unit): value` lines, the RAS table (`GPU[N] : UMC
/// ENABLED 117 3`) and bad pages (`GPU[N] : 0x5c3e21000 4096 pending`).
fn labelled_lines(text: &str) -> Vec<Fact> {
    static LINE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^GPU\[(\d+)\]\s*:\s*(.*)$").expect("valid regex"));
    static RAS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^([A-Z0-9_]+)\s+(ENABLED|DISABLED)\s+(\d+)\s+(\d+)$").expect("valid regex")
    });
    static PAGE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^0x[0-9a-fA-F]+\s+\d+\s+(\w+)$").expect("valid regex"));
    let mut facts = Vec::new();
    // Per GPU: RAS sums, and bad pages by status.
    let mut ras: Vec<(u32, u64, u64)> = Vec::new();
    let mut pages: Vec<(u32, usize, usize)> = Vec::new();
    for line in text.lines() {
        let Some(c) = LINE.captures(line.trim()) else {
            continue;
        };
        let Ok(gpu) = c[1].parse::<u32>() else {
            continue;
        };
        let rest = c[2].trim();
        if let Some(r) = RAS.captures(rest) {
            let (ce, ue) = (r[3].parse().unwrap_or(0), r[4].parse().unwrap_or(0));
            let block = format!("{} block", &r[1]);
            facts.push(
                Fact::new(Some(gpu), "amd.ras.correctable", ce.to_string(), None)
                    .about(block.clone()),
            );
            facts.push(
                Fact::new(Some(gpu), "amd.ras.uncorrectable", ue.to_string(), None).about(block),
            );
            match ras.iter_mut().find(|s| s.0 == gpu) {
                Some(s) => {
                    s.1 += ce;
                    s.2 += ue;
                }
                None => ras.push((gpu, ce, ue)),
            }
        } else if let Some(p) = PAGE.captures(rest) {
            let pending = usize::from(p[1].eq_ignore_ascii_case("pending"));
            match pages.iter_mut().find(|s| s.0 == gpu) {
                Some(s) => {
                    s.1 += 1;
                    s.2 += pending;
                }
                None => pages.push((gpu, 1, pending)),
            }
        } else if rest.starts_with("No bad pages") {
            pages.push((gpu, 0, 0));
        } else if let Some((label, value)) = rest.rsplit_once(':') {
            let (field, unit) = field_of(label);
            let (v, shown) = split_unit(value);
            if field != "amd." && !v.is_empty() {
                let unit = shown.or(unit);
                facts.push(Fact::new(Some(gpu), &field, v, unit.as_deref()));
            }
        }
    }
    for (gpu, ce, ue) in ras {
        facts.push(Fact::new(
            Some(gpu),
            "amd.ras.correctable",
            ce.to_string(),
            None,
        ));
        facts.push(Fact::new(
            Some(gpu),
            "amd.ras.uncorrectable",
            ue.to_string(),
            None,
        ));
    }
    for (gpu, total, pending) in pages {
        facts.push(Fact::new(
            Some(gpu),
            "amd.bad_pages",
            total.to_string(),
            None,
        ));
        facts.push(Fact::new(
            Some(gpu),
            "amd.bad_pages.pending",
            pending.to_string(),
            None,
        ));
    }
    facts
}

/// `Temperature (Sensor junction) (C)` -> (`amd.temperature.junction`,
/// `C`); `GPU use (%)` -> (`amd.use`, `%`); others slugged.
fn field_of(label: &str) -> (String, Option<String>) {
    let label = label.trim();
    let (name, unit) = match label.rsplit_once(" (") {
        Some((n, u)) if u.ends_with(')') && u.len() <= 6 => {
            (n, Some(u.trim_end_matches(')').to_string()))
        }
        _ => (label, None),
    };
    let lower = name.to_ascii_lowercase();
    let field = if let Some(sensor) = lower
        .strip_prefix("temperature (sensor ")
        .map(|s| s.trim_end_matches(')'))
    {
        format!("amd.temperature.{sensor}")
    } else if lower == "gpu use" {
        "amd.use".into()
    } else if lower == "gpu memory use" || lower == "gpu memory allocated" {
        "amd.vram_use".into()
    } else if lower.contains("graphics package power")
        || lower == "current socket graphics package power"
    {
        "amd.power".into()
    } else {
        let slug: String = lower
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("amd.{}", slug.trim_matches('_'))
    };
    (field, unit)
}

/// `amd-smi metric` text: `GPU: 4` then indented `KEY: value` lines.
fn amd_smi_blocks(text: &str) -> Vec<Fact> {
    let mut facts = Vec::new();
    let mut gpu: Option<u32> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(n) = t.strip_prefix("GPU: ") {
            gpu = n.trim().parse().ok();
            continue;
        }
        let (Some(g), Some((key, value))) = (gpu, t.split_once(':')) else {
            continue;
        };
        let field = match key.trim() {
            "TOTAL_CORRECTABLE_COUNT" => "amd.ras.correctable",
            "TOTAL_UNCORRECTABLE_COUNT" => "amd.ras.uncorrectable",
            "TOTAL_DEFERRED_COUNT" => "amd.ras.deferred",
            _ => continue,
        };
        facts.push(Fact::new(Some(g), field, value.trim(), None));
    }
    facts
}

/// Writes an AMD fact into the snapshot's AMD GPU of that index.
pub fn apply(snapshot: &mut Snapshot, fact: &Fact) {
    if !fact.field.starts_with("amd.") || fact.subject.is_some() {
        return;
    }
    let Some(g) = fact
        .gpu
        .and_then(|i| snapshot.amd_gpus.iter_mut().find(|g| g.index == i))
    else {
        return;
    };
    let n = fact.number();
    let count = || n.filter(|v| *v >= 0.0).map(|v| v as u64);
    match fact.field.as_str() {
        "amd.temperature" | "amd.temperature.edge" | "amd.temperature.junction" => {
            g.temperature_c = n.or(g.temperature_c);
        }
        "amd.power" => g.power_draw_w = n.or(g.power_draw_w),
        "amd.power_cap" => g.power_cap_w = n.or(g.power_cap_w),
        "amd.use" => g.utilization_pct = count().map(|v| v as u32).or(g.utilization_pct),
        "amd.vram_used" => g.memory_used_mib = count().or(g.memory_used_mib),
        "amd.vram_total" => g.memory_total_mib = count().or(g.memory_total_mib),
        "amd.ras.correctable" => g.ras_correctable = count().or(g.ras_correctable),
        "amd.ras.uncorrectable" => g.ras_uncorrectable = count().or(g.ras_uncorrectable),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Ended, read as read_output};
    use super::*;
    use crate::sim;

    fn read_on(name: &str, line: &str) -> (Snapshot, Vec<Fact>) {
        let node = sim::load(name).expect("node");
        let argv: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let out = node.run(&argv);
        assert_eq!(out.exit_code, 0, "{line}: {out:?}");
        let r = read_output(&[argv], &out.stdout, Ended::Exited(0), &node.snapshot);
        (node.snapshot, r.facts)
    }

    fn value<'a>(facts: &'a [Fact], gpu: u32, field: &str) -> Option<&'a str> {
        facts
            .iter()
            .find(|f| f.gpu == Some(gpu) && f.field == field && f.subject.is_none())
            .map(|f| f.value.as_str())
    }

    #[test]
    fn ras_errors_pages_and_metrics_are_read() {
        let (snap, ras) = read_on("mi300x-ras-errors", "rocm-smi --showras");
        assert_eq!(value(&ras, 4, "amd.ras.uncorrectable"), Some("3"));
        assert_eq!(value(&ras, 4, "amd.ras.correctable"), Some("117"));
        assert_eq!(value(&ras, 0, "amd.ras.uncorrectable"), Some("0"));
        let (_, pages) = read_on("mi300x-ras-errors", "rocm-smi --showpagesinfo");
        assert_eq!(value(&pages, 4, "amd.bad_pages.pending"), Some("3"));
        assert_eq!(value(&pages, 1, "amd.bad_pages"), Some("0"));
        let (_, use_) = read_on(
            "mi300x-ras-errors",
            "rocm-smi --showuse --showmemuse --showtemp",
        );
        assert_eq!(value(&use_, 5, "amd.use"), Some("100"));
        assert_eq!(value(&use_, 0, "amd.temperature.junction"), Some("52.0"));
        let (_, concise) = read_on("mi300x-ras-errors", "rocm-smi");
        assert_eq!(value(&concise, 1, "amd.power"), Some("634.0"));
        assert_eq!(value(&concise, 1, "amd.power_cap"), Some("750.0"));
        assert_eq!(value(&concise, 1, "amd.use"), Some("99"));
        let (_, ecc) = read_on("mi300x-ras-errors", "amd-smi metric --ecc -g 4");
        assert_eq!(value(&ecc, 4, "amd.ras.uncorrectable"), Some("3"));

        let mut wiped = snap.clone();
        for g in &mut wiped.amd_gpus {
            g.ras_uncorrectable = None;
        }
        super::super::apply(&mut wiped, &ras);
        assert_eq!(wiped.amd_gpus[4].ras_uncorrectable, Some(3));
    }
}
