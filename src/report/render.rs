//! Human-readable rendering of snapshots and doctor reports: `sigma
//! snapshot`, `sigma doctor`, the chat's `/doctor` and `/snapshot`, and the
//! plain report printed where the TUI cannot run.
//!
//! Output is compact and fits 80 columns. Colour goes through `anstream`,
//! which drops escape codes when stdout is not a terminal, when `NO_COLOR`
//! is set, or after `--no-color`; renderers just write styled text.

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};

use super::{DoctorReport, Status};
use crate::checks::{Finding, Severity, truncate};
use crate::probe::describe::{gpu_pcie, gpu_power, gpu_throttle, short_name};
use crate::probe::{Gpu, Snapshot, Source};

/// Width human output is wrapped to.
pub const WIDTH: usize = 80;

const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const LOST_STYLE: Style = AnsiColor::Red.on_default().bold();

fn severity_style(s: Severity) -> Style {
    match s {
        Severity::Critical => AnsiColor::Red.on_default().bold(),
        Severity::Warning => AnsiColor::Yellow.on_default().bold(),
        Severity::Info => AnsiColor::Cyan.on_default(),
    }
}

/// Label of a severity as printed in the findings list.
fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "CRIT",
        Severity::Warning => "WARN",
        Severity::Info => "INFO",
    }
}

/// One-line description of the node: host, source, driver, GPU count.
pub fn node_line(s: &Snapshot) -> String {
    let mut parts = vec![s.host.hostname.clone()];
    if let Source::Simulated { name } = &s.source {
        parts.push(format!("simulated: {name}"));
    }
    if let Some(nv) = &s.nvidia {
        parts.push(format!("driver {}", nv.driver_version));
        if let Some(cuda) = &nv.cuda_version {
            parts.push(format!("CUDA {cuda}"));
        }
    }
    parts.push(gpu_count(s));
    pack(&parts, " · ", WIDTH)
}

/// The node's GPU count, for headers: the GPUs NVML and ROCm list, or, when they
/// list none, the NVIDIA GPUs on PCI that NVML could not reach.
pub fn gpu_count(s: &Snapshot) -> String {
    let listed = s.gpus.len() + s.amd_gpus.len();
    let on_pci = s.nvidia_on_pci().count();
    match (listed, on_pci) {
        (0, 0) => "no GPU".into(),
        (0, 1) => "1 GPU on PCI, none in NVML".into(),
        (0, n) => format!("{n} GPUs on PCI, none in NVML"),
        (1, _) => "1 GPU".into(),
        (n, _) => format!("{n} GPUs"),
    }
}

/// Joins `parts` with `sep`, starting a new line wherever the next part would
/// pass `width` columns.
fn pack(parts: &[String], sep: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for part in parts {
        let len = part.chars().count();
        if line_len > 0 && line_len + sep.len() + len > width {
            out.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            out.push_str(sep);
            line_len += sep.chars().count();
        }
        out.push_str(part);
        line_len += len;
    }
    out
}

/// Writes `sigma snapshot`'s human output.
pub fn snapshot(out: &mut impl Write, s: &Snapshot) -> io::Result<()> {
    writeln!(out, "{BOLD}{}{BOLD:#}", node_line(s))?;
    host_lines(out, s)?;
    if !s.gpus.is_empty() {
        writeln!(out)?;
        gpu_table(out, s)?;
    }
    if !s.amd_gpus.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{BOLD}{:>2} {:<18} {:>4} {:>9} {:>4} {:>13} pci{BOLD:#}",
            "#", "AMD GPU", "temp", "power", "util", "memory MiB"
        )?;
    }
    for amd in &s.amd_gpus {
        let power = match (amd.power_draw_w, amd.power_cap_w) {
            (Some(d), Some(c)) => format!("{d:.0}/{c:.0}W"),
            (Some(d), None) => format!("{d:.0}W"),
            _ => "-".into(),
        };
        writeln!(
            out,
            "{:>2} {:<18} {:>4} {:>9} {:>4} {:>13} {}",
            amd.index,
            truncate(
                amd.name
                    .as_deref()
                    .unwrap_or("AMD GPU")
                    .trim_start_matches("AMD "),
                18
            ),
            opt(amd.temperature_c.map(|t| format!("{t:.0}C"))),
            power,
            opt(amd.utilization_pct.map(|u| format!("{u}%"))),
            match (amd.memory_used_mib, amd.memory_total_mib) {
                (Some(u), Some(t)) => format!("{u}/{t}"),
                _ => "-".into(),
            },
            amd.bdf,
        )?;
    }
    let nvml_bus: Vec<String> = s
        .gpus
        .iter()
        .map(|g| crate::probe::normalize_bus_id(&g.pci_bus_id))
        .collect();
    let pci_only: Vec<_> = s
        .pci_gpus
        .iter()
        .filter(|p| {
            p.vendor_id == "10de" && !nvml_bus.contains(&crate::probe::normalize_bus_id(&p.bdf))
        })
        .collect();
    if !pci_only.is_empty() {
        writeln!(out, "\nOn PCI but not reported by NVML:")?;
        for p in pci_only {
            writeln!(
                out,
                "  {} [{}:{}] rev {} driver {}",
                p.bdf,
                p.vendor_id,
                p.device_id,
                p.revision.as_deref().unwrap_or("?"),
                p.driver.as_deref().unwrap_or("none")
            )?;
        }
    }
    if !s.xid_events.is_empty() {
        writeln!(out, "\nXID events ({}):", s.xid_events.len())?;
        for e in s.xid_events.iter().rev().take(10) {
            let line = format!(
                "  [{}] {} Xid {}: {}",
                e.timestamp.as_deref().unwrap_or("?"),
                e.pci_bus_id,
                e.xid,
                e.message
            );
            writeln!(out, "{}", truncate(&line, WIDTH))?;
        }
    }
    unavailable_lines(out, s)
}

fn host_lines(out: &mut impl Write, s: &Snapshot) -> io::Result<()> {
    let h = &s.host;
    let os = [h.os.as_deref(), h.kernel.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" · kernel ");
    writeln!(out, "{os} · up {}", duration(h.uptime_s))?;
    writeln!(
        out,
        "CPU {} x{} · load {:.2} {:.2} {:.2}",
        h.cpu_model.as_deref().unwrap_or("?"),
        h.cpu_count,
        h.load_avg[0],
        h.load_avg[1],
        h.load_avg[2]
    )?;
    let used = h
        .memory_total_bytes
        .saturating_sub(h.memory_available_bytes);
    writeln!(
        out,
        "Memory {} used of {} · swap {} of {}",
        gib(used),
        gib(h.memory_total_bytes),
        gib(h.swap_used_bytes),
        gib(h.swap_total_bytes)
    )?;
    for d in &h.disks {
        let used = d.total_bytes.saturating_sub(d.available_bytes);
        let pct = (used * 100).checked_div(d.total_bytes).unwrap_or(0);
        writeln!(out, "Disk {} {}% of {}", d.mount, pct, gib(d.total_bytes))?;
    }
    Ok(())
}

/// The GPU table: one row per NVML GPU, fits 80 columns.
fn gpu_table(out: &mut impl Write, s: &Snapshot) -> io::Result<()> {
    writeln!(
        out,
        "{BOLD}{:>2} {:<18} {:>4} {:>9} {:>4} {:>11} {:>9} flags{BOLD:#}",
        "#", "name", "temp", "power", "util", "memory MiB", "pcie"
    )?;
    for g in &s.gpus {
        if g.lost {
            writeln!(
                out,
                "{:>2} {:<18} {}GPU is lost (fell off the bus){}",
                g.index,
                truncate(short_name(&g.name), 18),
                LOST_STYLE.render(),
                LOST_STYLE.render_reset()
            )?;
            continue;
        }
        let row = format!(
            "{:>2} {:<18} {:>4} {:>9} {:>4} {:>11} {:>9}",
            g.index,
            truncate(short_name(&g.name), 18),
            opt(g.temperature_c.map(|t| format!("{t}C"))),
            gpu_power(g),
            opt(g.utilization_gpu_pct.map(|u| format!("{u}%"))),
            match (g.memory_used_mib, g.memory_total_mib) {
                (Some(u), Some(t)) => format!("{u}/{t}"),
                _ => "-".into(),
            },
            gpu_pcie(g),
        );
        let room = WIDTH.saturating_sub(row.chars().count() + 1);
        writeln!(out, "{row} {}", truncate(&flags(g), room))?;
    }
    Ok(())
}

/// Short flags for a GPU row: throttle reasons, ECC, remap, persistence.
fn flags(g: &Gpu) -> String {
    let mut f = Vec::new();
    if !g.clock_event_reasons.iter().all(|r| !r.is_throttle()) {
        f.push(gpu_throttle(g));
    }
    if let Some(e) = &g.ecc
        && e.uncorrected_volatile > 0
    {
        f.push(format!("ecc-dbe:{}", e.uncorrected_volatile));
    }
    if let Some(r) = &g.remapped_rows {
        if r.failure {
            f.push("remap-failed".into());
        } else if r.pending {
            f.push("remap-pending".into());
        }
    }
    if g.persistence_mode == Some(false) {
        f.push("pm-off".into());
    }
    f.join(",")
}

fn unavailable_lines(out: &mut impl Write, s: &Snapshot) -> io::Result<()> {
    if s.unavailable.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{DIM}Not available:{DIM:#}")?;
    for u in &s.unavailable {
        let text = format!("{}: {}", u.source, u.reason);
        for (i, line) in textwrap::wrap(&text, wrap_options(WIDTH - 4))
            .iter()
            .enumerate()
        {
            let indent = if i == 0 { "  " } else { "    " };
            writeln!(out, "{DIM}{indent}{line}{DIM:#}")?;
        }
    }
    Ok(())
}

/// Writes `sigma doctor`'s human output.
pub fn doctor(out: &mut impl Write, r: &DoctorReport) -> io::Result<()> {
    writeln!(out, "{BOLD}{}{BOLD:#}", node_line(&r.snapshot))?;
    if r.findings.is_empty() {
        writeln!(out, "No findings.")?;
    }
    for f in &r.findings {
        writeln!(out)?;
        finding(out, f)?;
    }
    writeln!(out)?;
    let status_style = match r.status {
        Status::Healthy => AnsiColor::Green.on_default().bold(),
        Status::Warning => severity_style(Severity::Warning),
        Status::Critical => severity_style(Severity::Critical),
    };
    let status = match r.status {
        Status::Healthy => "healthy",
        Status::Warning => "warnings",
        Status::Critical => "critical",
    };
    writeln!(
        out,
        "{status_style}{status}{status_style:#}: {} critical, {} warning, {} info",
        r.summary.critical, r.summary.warning, r.summary.info
    )
}

/// One finding: a headline, then indented evidence, why and next commands.
pub fn finding(out: &mut impl Write, f: &Finding) -> io::Result<()> {
    let style = severity_style(f.severity);
    let gpu = f.gpu.map(|g| format!("GPU {g} ")).unwrap_or_default();
    let head = truncate(&format!("{gpu}{}", f.title), WIDTH - 6);
    writeln!(
        out,
        "{style}{}{style:#}  {BOLD}{head}{BOLD:#}",
        severity_label(f.severity)
    )?;
    let indent = "      ";
    if !f.evidence.is_empty() {
        let ev = f
            .evidence
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        wrapped(out, &ev, indent, DIM)?;
    }
    wrapped(out, &f.why, indent, Style::new())?;
    for argv in &f.commands {
        command(out, argv)?;
    }
    Ok(())
}

/// A command to paste, `    $ cmd`, continued with ` \\` on the next line
/// where it would pass [`WIDTH`]. A single word longer than a line is never
/// cut: a command must survive copy and paste.
fn command(out: &mut impl Write, argv: &[String]) -> io::Result<()> {
    const FIRST: &str = "    ";
    const NEXT: &str = "        ";
    let mut line = String::new();
    let mut lines = Vec::new();
    for word in argv.iter().map(|w| crate::guard::quote(w)) {
        let indent = if lines.is_empty() {
            FIRST.len() + 2
        } else {
            NEXT.len()
        };
        if !line.is_empty() && indent + line.len() + 1 + word.len() + 2 > WIDTH {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    lines.push(line);
    let last = lines.len() - 1;
    for (i, l) in lines.iter().enumerate() {
        let cont = if i < last { " \\" } else { "" };
        if i == 0 {
            writeln!(out, "{FIRST}{DIM}${DIM:#} {l}{cont}")?;
        } else {
            writeln!(out, "{NEXT}{l}{cont}")?;
        }
    }
    Ok(())
}

fn wrapped(out: &mut impl Write, text: &str, indent: &str, style: Style) -> io::Result<()> {
    for line in textwrap::wrap(text, wrap_options(WIDTH - indent.len())) {
        writeln!(out, "{indent}{style}{line}{style:#}")?;
    }
    Ok(())
}

/// Wrapping at spaces only: `--safe-mode` must never break at its hyphen.
fn wrap_options(width: usize) -> textwrap::Options<'static> {
    textwrap::Options::new(width).word_splitter(textwrap::WordSplitter::NoHyphenation)
}

fn opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// `93784` -> `1d 2h`.
fn duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m")
    }
}
