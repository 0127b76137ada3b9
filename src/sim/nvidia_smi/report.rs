//! `nvidia-smi -q [-d SECTIONS]`: the detailed per-GPU report, section by
//! section in nvidia-smi's order.

use std::fmt::Write as _;

use super::{
    CommandOutput, ctime, cuda_version, driver_version, memory_free, na, needs_reset,
    pci_device_id, per_gpu, usage_error,
};
use crate::probe::{ClockEventReason, Gpu, Snapshot};

/// `-d` sections, in the order nvidia-smi prints them. A full `-q` prints
/// [`IDENTITY_SECTION`] inside the identity block, before the PCI lines.
const SECTIONS: &[&str] = &[
    IDENTITY_SECTION,
    "PERFORMANCE",
    "MEMORY",
    "COMPUTE",
    "UTILIZATION",
    "ECC",
    "PAGE_RETIREMENT",
    "ROW_REMAPPER",
    "TEMPERATURE",
    "POWER",
    "CLOCK",
    "PIDS",
];

/// The `-d` section a full `-q` prints among the identity lines.
const IDENTITY_SECTION: &str = "RESET_STATUS";

/// A `-q` line: keys padded so the colon lands in column 43.
fn kv(out: &mut String, indent: usize, key: &str, value: impl std::fmt::Display) {
    let width = 42usize.saturating_sub(indent);
    let _ = writeln!(out, "{:indent$}{key:<width$}: {value}", "");
}

/// A `-q` heading line (a key with nested lines below).
fn head(out: &mut String, indent: usize, title: &str) {
    let _ = writeln!(out, "{:indent$}{title}", "");
}

pub(super) fn query(snap: &Snapshot, gpus: &[&Gpu], display: Option<&str>) -> CommandOutput {
    let wanted: Vec<&str> = match display {
        None => SECTIONS
            .iter()
            .copied()
            .filter(|s| *s != IDENTITY_SECTION)
            .collect(),
        Some(d) => {
            let mut w = Vec::new();
            for s in d.split(',').map(str::trim) {
                match SECTIONS.iter().find(|k| k.eq_ignore_ascii_case(s)) {
                    Some(k) => w.push(*k),
                    None => {
                        return usage_error();
                    }
                }
            }
            w
        }
    };
    let mut o = String::from("\n==============NVSMI LOG==============\n\n");
    kv(&mut o, 0, "Timestamp", ctime(snap));
    kv(&mut o, 0, "Driver Version", driver_version(snap));
    kv(&mut o, 0, "CUDA Version", cuda_version(snap));
    o.push('\n');
    kv(&mut o, 0, "Attached GPUs", snap.gpus.len());
    let body = per_gpu(gpus, |g, out| {
        let _ = writeln!(out, "GPU {}", g.pci_bus_id);
        if display.is_none() {
            general(snap, g, out);
        }
        for section in SECTIONS.iter().filter(|s| wanted.contains(s)) {
            query_section(section, g, out);
        }
        out.push('\n');
    });
    o.push_str(&body.stdout);
    CommandOutput { stdout: o, ..body }
}

/// The identity and PCI lines of a full `-q`.
fn general(snap: &Snapshot, g: &Gpu, o: &mut String) {
    let enabled = |b: Option<bool>| match b {
        Some(true) => "Enabled",
        Some(false) => "Disabled",
        None => "N/A",
    };
    kv(o, 4, "Product Name", &g.name);
    kv(o, 4, "Persistence Mode", enabled(g.persistence_mode));
    head(o, 4, "MIG Mode");
    kv(o, 8, "Current", enabled(g.mig_mode));
    kv(o, 8, "Pending", enabled(g.mig_mode));
    kv(o, 4, "Serial Number", na(g.serial.as_ref()));
    kv(o, 4, "GPU UUID", &g.uuid);
    kv(o, 4, "Minor Number", g.index);
    kv(o, 4, "VBIOS Version", na(g.vbios_version.as_ref()));
    query_section(IDENTITY_SECTION, g, o);
    head(o, 4, "PCI");
    let bus = g.pci_bus_id.to_ascii_uppercase();
    let parts: Vec<&str> = bus.split([':', '.']).collect();
    if let [domain, b, dev, _] = parts.as_slice() {
        kv(o, 8, "Bus", format!("0x{b}"));
        kv(o, 8, "Device", format!("0x{dev}"));
        kv(
            o,
            8,
            "Domain",
            format!("0x{}", &domain[domain.len().saturating_sub(4)..]),
        );
    }
    if let Some(id) = pci_device_id(snap, g) {
        kv(o, 8, "Device Id", id);
    }
    kv(o, 8, "Bus Id", &g.pci_bus_id);
    head(o, 8, "GPU Link Info");
    head(o, 12, "PCIe Generation");
    kv(o, 16, "Max", na(g.pcie.as_ref().map(|p| p.gen_max)));
    kv(o, 16, "Current", na(g.pcie.as_ref().map(|p| p.gen_current)));
    kv(
        o,
        16,
        "Device Current",
        na(g.pcie.as_ref().map(|p| p.gen_current)),
    );
    kv(o, 16, "Device Max", na(g.pcie.as_ref().map(|p| p.gen_max)));
    kv(o, 16, "Host Max", na(g.pcie.as_ref().map(|p| p.gen_max)));
    head(o, 12, "Link Width");
    kv(
        o,
        16,
        "Max",
        na(g.pcie.as_ref().map(|p| format!("{}x", p.width_max))),
    );
    kv(
        o,
        16,
        "Current",
        na(g.pcie.as_ref().map(|p| format!("{}x", p.width_current))),
    );
    kv(
        o,
        8,
        "Replays Since Reset",
        na(g.pcie.as_ref().and_then(|p| p.replay_count)),
    );
    kv(o, 4, "Fan Speed", na(g.fan_pct.map(|f| format!("{f} %"))));
}

/// One `-d` section of `-q` for one GPU.
fn query_section(section: &str, g: &Gpu, o: &mut String) {
    let unit = |v: Option<u64>, u: &str| na(v.map(|v| format!("{v} {u}")));
    let watts = |v: Option<f64>| na(v.map(|v| format!("{v:.2} W")));
    let yes_no = |b: bool| if b { "Yes" } else { "No" };
    match section {
        "RESET_STATUS" => {
            let reset = yes_no(needs_reset(g));
            head(o, 4, "GPU Reset Status");
            kv(o, 8, "Reset Required", reset);
            kv(o, 8, "Drain and Reset Recommended", reset);
        }
        "PERFORMANCE" => {
            kv(o, 4, "Performance State", na(g.pstate.as_ref()));
            head(o, 4, "Clocks Event Reasons");
            let active = |r| {
                if g.clock_event_reasons.contains(&r) {
                    "Active"
                } else {
                    "Not Active"
                }
            };
            use ClockEventReason as R;
            kv(o, 8, "Idle", active(R::GpuIdle));
            kv(
                o,
                8,
                "Applications Clocks Setting",
                active(R::ApplicationsClocksSetting),
            );
            kv(o, 8, "SW Power Cap", active(R::SwPowerCap));
            kv(o, 8, "HW Slowdown", active(R::HwSlowdown));
            kv(o, 12, "HW Thermal Slowdown", active(R::HwThermalSlowdown));
            kv(
                o,
                12,
                "HW Power Brake Slowdown",
                active(R::HwPowerBrakeSlowdown),
            );
            kv(o, 8, "Sync Boost", active(R::SyncBoost));
            kv(o, 8, "SW Thermal Slowdown", active(R::SwThermalSlowdown));
            kv(
                o,
                8,
                "Display Clock Setting",
                active(R::DisplayClockSetting),
            );
        }
        "MEMORY" => {
            head(o, 4, "FB Memory Usage");
            kv(o, 8, "Total", unit(g.memory_total_mib, "MiB"));
            kv(o, 8, "Used", unit(g.memory_used_mib, "MiB"));
            kv(o, 8, "Free", unit(memory_free(g), "MiB"));
        }
        "COMPUTE" => kv(o, 4, "Compute Mode", na(g.compute_mode.as_ref())),
        "UTILIZATION" => {
            head(o, 4, "Utilization");
            kv(o, 8, "Gpu", unit(g.utilization_gpu_pct.map(u64::from), "%"));
            kv(
                o,
                8,
                "Memory",
                unit(g.utilization_mem_pct.map(u64::from), "%"),
            );
        }
        "ECC" => {
            head(o, 4, "ECC Mode");
            let mode = na(g
                .ecc
                .as_ref()
                .map(|e| if e.enabled { "Enabled" } else { "Disabled" }));
            kv(o, 8, "Current", &mode);
            kv(o, 8, "Pending", &mode);
            head(o, 4, "ECC Errors");
            let e = g.ecc.as_ref();
            for (title, corrected, uncorrected) in [
                (
                    "Volatile",
                    e.map(|e| e.corrected_volatile),
                    e.map(|e| e.uncorrected_volatile),
                ),
                (
                    "Aggregate",
                    e.map(|e| e.corrected_aggregate),
                    e.map(|e| e.uncorrected_aggregate),
                ),
            ] {
                head(o, 8, title);
                // The snapshot keeps totals; nvidia-smi splits SRAM and DRAM.
                // Totals are reported as DRAM, SRAM as zero.
                let sram = e.map(|_| 0u64);
                kv(o, 12, "SRAM Correctable", na(sram));
                kv(o, 12, "SRAM Uncorrectable", na(sram));
                kv(o, 12, "DRAM Correctable", na(corrected));
                kv(o, 12, "DRAM Uncorrectable", na(uncorrected));
            }
        }
        "PAGE_RETIREMENT" => match &g.retired_pages {
            Some(r) => {
                head(o, 4, "Retired Pages");
                kv(o, 8, "Single Bit ECC", r.single_bit);
                kv(o, 8, "Double Bit ECC", r.double_bit);
                kv(o, 8, "Pending Page Blacklist", yes_no(r.pending));
            }
            None => kv(o, 4, "Retired Pages", "N/A"),
        },
        "ROW_REMAPPER" => match &g.remapped_rows {
            Some(r) => {
                head(o, 4, "Remapped Rows");
                kv(o, 8, "Correctable Error", r.correctable);
                kv(o, 8, "Uncorrectable Error", r.uncorrectable);
                kv(o, 8, "Pending", yes_no(r.pending));
                kv(o, 8, "Remapping Failure Occurred", yes_no(r.failure));
            }
            None => kv(o, 4, "Remapped Rows", "N/A"),
        },
        "TEMPERATURE" => {
            let c = |v: Option<u32>| na(v.map(|v| format!("{v} C")));
            head(o, 4, "Temperature");
            kv(o, 8, "GPU Current Temp", c(g.temperature_c));
            kv(o, 8, "GPU Shutdown Temp", c(g.temperature_shutdown_c));
            kv(o, 8, "GPU Slowdown Temp", c(g.temperature_slowdown_c));
            kv(o, 8, "Memory Current Temp", c(g.memory_temperature_c));
        }
        "POWER" => {
            head(o, 4, "GPU Power Readings");
            kv(o, 8, "Power Draw", watts(g.power_draw_w));
            kv(o, 8, "Current Power Limit", watts(g.power_limit_w));
            kv(o, 8, "Default Power Limit", watts(g.power_default_limit_w));
            kv(o, 8, "Min Power Limit", watts(g.power_min_limit_w));
            kv(o, 8, "Max Power Limit", watts(g.power_max_limit_w));
        }
        "CLOCK" => {
            let mhz = |v: Option<u32>| unit(v.map(u64::from), "MHz");
            head(o, 4, "Clocks");
            kv(o, 8, "Graphics", mhz(g.clock_sm_mhz));
            kv(o, 8, "SM", mhz(g.clock_sm_mhz));
            kv(o, 8, "Memory", mhz(g.clock_mem_mhz));
            head(o, 4, "Max Clocks");
            kv(o, 8, "Graphics", mhz(g.clock_sm_max_mhz));
            kv(o, 8, "SM", mhz(g.clock_sm_max_mhz));
            kv(o, 8, "Memory", mhz(g.clock_mem_max_mhz));
        }
        "PIDS" => {
            if g.processes.is_empty() {
                kv(o, 4, "Processes", "None");
            } else {
                head(o, 4, "Processes");
                for p in &g.processes {
                    kv(o, 8, "GPU instance ID", "N/A");
                    kv(o, 8, "Compute instance ID", "N/A");
                    kv(o, 8, "Process ID", p.pid);
                    kv(o, 12, "Type", "C");
                    kv(o, 12, "Name", &p.name);
                    kv(o, 12, "Used GPU Memory", unit(p.used_memory_mib, "MiB"));
                }
            }
        }
        _ => {}
    }
}
