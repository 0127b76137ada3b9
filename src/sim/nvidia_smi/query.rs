//! `--query-gpu=FIELDS`, `--query-compute-apps=FIELDS` and
//! `--query-remapped-rows=FIELDS` with `--format=csv[,noheader][,nounits]`:
//! the field tables and the CSV writer.

use std::sync::LazyLock;

use super::{
    CommandOutput, EXIT_USAGE, driver_version, memory_free, needs_reset, pci_device_id, per_gpu,
    printed, taken_at, usage_error,
};
use crate::probe::{ClockEventReason, Gpu, Snapshot};

/// A value as `--query-gpu` prints it.
enum V {
    /// A value; the field's unit follows it unless `nounits`.
    Val(String),
    /// `[N/A]`.
    NA,
    /// `[Not Supported]`.
    NotSupported,
}

/// `2026/11/28 07:00:00.000`, as the `timestamp` field prints it.
fn timestamp(s: &Snapshot) -> V {
    V::Val(taken_at(s).format("%Y/%m/%d %H:%M:%S%.3f").to_string())
}

fn n<T: ToString>(v: Option<T>) -> V {
    v.map_or(V::NA, |v| V::Val(v.to_string()))
}

fn watts(v: Option<f64>) -> V {
    v.map_or(V::NA, |w| V::Val(format!("{w:.2}")))
}

fn enabled(v: Option<bool>) -> V {
    v.map_or(V::NA, |b| {
        V::Val(if b { "Enabled" } else { "Disabled" }.to_string())
    })
}

fn yes_no(b: bool) -> V {
    V::Val(if b { "Yes" } else { "No" }.to_string())
}

fn reason(g: &Gpu, r: ClockEventReason) -> V {
    V::Val(
        if g.clock_event_reasons.contains(&r) {
            "Active"
        } else {
            "Not Active"
        }
        .to_string(),
    )
}

/// NVML's bit for each reason (`nvmlClocksEventReason*`).
fn reason_bit(r: ClockEventReason) -> u64 {
    use ClockEventReason as R;
    match r {
        R::GpuIdle => 0x1,
        R::ApplicationsClocksSetting => 0x2,
        R::SwPowerCap => 0x4,
        R::HwSlowdown => 0x8,
        R::SyncBoost => 0x10,
        R::SwThermalSlowdown => 0x20,
        R::HwThermalSlowdown => 0x40,
        R::HwPowerBrakeSlowdown => 0x80,
        R::DisplayClockSetting => 0x100,
    }
}

/// `temperature.gpu.tlimit`: degrees left before the slowdown threshold
/// (NVML's margin temperature, `nvmlDeviceGetMarginTemperature`); negative
/// once the GPU is past it.
fn tlimit(g: &Gpu) -> V {
    match (g.temperature_slowdown_c, g.temperature_c) {
        (Some(slowdown), Some(now)) => V::Val((i64::from(slowdown) - i64::from(now)).to_string()),
        _ => V::NA,
    }
}

/// `fabric.state`: `[N/A]` on a GPU without an NVLink fabric.
fn fabric_state(g: &Gpu) -> V {
    g.fabric.as_ref().map_or(V::NA, |f| V::Val(f.state.clone()))
}

/// `fabric.status`. Before registration completes nvidia-smi prints a bare
/// `N/A` here (not `[N/A]`), as its state is known but has no result yet.
fn fabric_status(g: &Gpu) -> V {
    g.fabric.as_ref().map_or(V::NA, |f| {
        V::Val(f.status.clone().unwrap_or_else(|| "N/A".to_string()))
    })
}

fn mask(reasons: &[ClockEventReason]) -> V {
    V::Val(format!(
        "0x{:016X}",
        reasons.iter().map(|r| reason_bit(*r)).sum::<u64>()
    ))
}

fn ecc(g: &Gpu, f: fn(&crate::probe::Ecc) -> u64) -> V {
    n(g.ecc.as_ref().map(f))
}

fn retired(g: &Gpu, f: fn(&crate::probe::RetiredPages) -> V) -> V {
    g.retired_pages.as_ref().map_or(V::NotSupported, f)
}

fn remapped(g: &Gpu, f: fn(&crate::probe::RemappedRows) -> V) -> V {
    g.remapped_rows.as_ref().map_or(V::NotSupported, f)
}

fn pcie(g: &Gpu, f: fn(&crate::probe::PcieLink) -> u32) -> V {
    n(g.pcie.as_ref().map(f))
}

/// One `--query-gpu` field.
struct Field {
    name: &'static str,
    unit: Option<&'static str>,
    get: fn(&Gpu, &Snapshot) -> V,
}

const fn f(name: &'static str, get: fn(&Gpu, &Snapshot) -> V) -> Field {
    Field {
        name,
        unit: None,
        get,
    }
}

const fn u(name: &'static str, unit: &'static str, get: fn(&Gpu, &Snapshot) -> V) -> Field {
    Field {
        name,
        unit: Some(unit),
        get,
    }
}

/// Every `--query-gpu` field the simulator answers, with its aliases.
static FIELDS: &[Field] = {
    use ClockEventReason as R;
    &[
        f("timestamp", |_, s| timestamp(s)),
        f("driver_version", |_, s| V::Val(driver_version(s))),
        f("count", |_, s| V::Val(s.gpus.len().to_string())),
        f("name", |g, _| V::Val(g.name.clone())),
        f("gpu_name", |g, _| V::Val(g.name.clone())),
        f("serial", |g, _| n(g.serial.as_ref())),
        f("gpu_serial", |g, _| n(g.serial.as_ref())),
        f("uuid", |g, _| V::Val(g.uuid.clone())),
        f("gpu_uuid", |g, _| V::Val(g.uuid.clone())),
        f("index", |g, _| V::Val(g.index.to_string())),
        f("pci.bus_id", |g, _| V::Val(g.pci_bus_id.clone())),
        f("gpu_bus_id", |g, _| V::Val(g.pci_bus_id.clone())),
        f("pci.device_id", |g, s| n(pci_device_id(s, g))),
        f("vbios_version", |g, _| n(g.vbios_version.as_ref())),
        f("persistence_mode", |g, _| enabled(g.persistence_mode)),
        f("mig.mode.current", |g, _| {
            g.mig_mode.map_or(V::NotSupported, |m| enabled(Some(m)))
        }),
        f("mig.mode.pending", |g, _| {
            g.mig_mode.map_or(V::NotSupported, |m| enabled(Some(m)))
        }),
        f("compute_mode", |g, _| n(g.compute_mode.as_ref())),
        f("pstate", |g, _| n(g.pstate.as_ref())),
        u("fan.speed", "%", |g, _| n(g.fan_pct)),
        f("temperature.gpu", |g, _| n(g.temperature_c)),
        f("temperature.gpu.tlimit", |g, _| tlimit(g)),
        f("temperature.memory", |g, _| n(g.memory_temperature_c)),
        u("power.draw", "W", |g, _| watts(g.power_draw_w)),
        u("power.limit", "W", |g, _| watts(g.power_limit_w)),
        u("enforced.power.limit", "W", |g, _| watts(g.power_limit_w)),
        u("power.default_limit", "W", |g, _| {
            watts(g.power_default_limit_w)
        }),
        u("power.min_limit", "W", |g, _| watts(g.power_min_limit_w)),
        u("power.max_limit", "W", |g, _| watts(g.power_max_limit_w)),
        u("clocks.current.graphics", "MHz", |g, _| n(g.clock_sm_mhz)),
        u("clocks.gr", "MHz", |g, _| n(g.clock_sm_mhz)),
        u("clocks.current.sm", "MHz", |g, _| n(g.clock_sm_mhz)),
        u("clocks.sm", "MHz", |g, _| n(g.clock_sm_mhz)),
        u("clocks.current.memory", "MHz", |g, _| n(g.clock_mem_mhz)),
        u("clocks.mem", "MHz", |g, _| n(g.clock_mem_mhz)),
        u("clocks.max.graphics", "MHz", |g, _| n(g.clock_sm_max_mhz)),
        u("clocks.max.gr", "MHz", |g, _| n(g.clock_sm_max_mhz)),
        u("clocks.max.sm", "MHz", |g, _| n(g.clock_sm_max_mhz)),
        u("clocks.max.memory", "MHz", |g, _| n(g.clock_mem_max_mhz)),
        u("clocks.max.mem", "MHz", |g, _| n(g.clock_mem_max_mhz)),
        u("utilization.gpu", "%", |g, _| n(g.utilization_gpu_pct)),
        u("utilization.memory", "%", |g, _| n(g.utilization_mem_pct)),
        u("memory.total", "MiB", |g, _| n(g.memory_total_mib)),
        u("memory.used", "MiB", |g, _| n(g.memory_used_mib)),
        u("memory.free", "MiB", |g, _| n(memory_free(g))),
        f("ecc.mode.current", |g, _| {
            enabled(g.ecc.as_ref().map(|e| e.enabled))
        }),
        f("ecc.mode.pending", |g, _| {
            enabled(g.ecc.as_ref().map(|e| e.enabled))
        }),
        f("ecc.errors.corrected.volatile.total", |g, _| {
            ecc(g, |e| e.corrected_volatile)
        }),
        f("ecc.errors.corrected.aggregate.total", |g, _| {
            ecc(g, |e| e.corrected_aggregate)
        }),
        f("ecc.errors.uncorrected.volatile.total", |g, _| {
            ecc(g, |e| e.uncorrected_volatile)
        }),
        f("ecc.errors.uncorrected.aggregate.total", |g, _| {
            ecc(g, |e| e.uncorrected_aggregate)
        }),
        f("retired_pages.single_bit_ecc.count", |g, _| {
            retired(g, |r| n(Some(r.single_bit)))
        }),
        f("retired_pages.sbe", |g, _| {
            retired(g, |r| n(Some(r.single_bit)))
        }),
        f("retired_pages.double_bit.count", |g, _| {
            retired(g, |r| n(Some(r.double_bit)))
        }),
        f("retired_pages.dbe", |g, _| {
            retired(g, |r| n(Some(r.double_bit)))
        }),
        f("retired_pages.pending", |g, _| {
            retired(g, |r| yes_no(r.pending))
        }),
        f("remapped_rows.correctable", |g, _| {
            remapped(g, |r| n(Some(r.correctable)))
        }),
        f("remapped_rows.uncorrectable", |g, _| {
            remapped(g, |r| n(Some(r.uncorrectable)))
        }),
        f("remapped_rows.pending", |g, _| {
            remapped(g, |r| yes_no(r.pending))
        }),
        f("remapped_rows.failure", |g, _| {
            remapped(g, |r| yes_no(r.failure))
        }),
        f("reset_status.reset_required", |g, _| yes_no(needs_reset(g))),
        f("reset_status.drain_and_reset_recommended", |g, _| {
            yes_no(needs_reset(g))
        }),
        f("clocks_event_reasons.supported", |_, _| {
            mask(&ClockEventReason::ALL)
        }),
        f("clocks_event_reasons.active", |g, _| {
            mask(&g.clock_event_reasons)
        }),
        f("clocks_event_reasons.gpu_idle", |g, _| {
            reason(g, R::GpuIdle)
        }),
        f(
            "clocks_event_reasons.applications_clocks_setting",
            |g, _| reason(g, R::ApplicationsClocksSetting),
        ),
        f("clocks_event_reasons.sw_power_cap", |g, _| {
            reason(g, R::SwPowerCap)
        }),
        f("clocks_event_reasons.hw_slowdown", |g, _| {
            reason(g, R::HwSlowdown)
        }),
        f("clocks_event_reasons.sync_boost", |g, _| {
            reason(g, R::SyncBoost)
        }),
        f("clocks_event_reasons.sw_thermal_slowdown", |g, _| {
            reason(g, R::SwThermalSlowdown)
        }),
        f("clocks_event_reasons.hw_thermal_slowdown", |g, _| {
            reason(g, R::HwThermalSlowdown)
        }),
        f("clocks_event_reasons.hw_power_brake_slowdown", |g, _| {
            reason(g, R::HwPowerBrakeSlowdown)
        }),
        f("clocks_event_reasons.display_clock_setting", |g, _| {
            reason(g, R::DisplayClockSetting)
        }),
        f("clocks_throttle_reasons.supported", |_, _| {
            mask(&ClockEventReason::ALL)
        }),
        f("clocks_throttle_reasons.active", |g, _| {
            mask(&g.clock_event_reasons)
        }),
        f("clocks_throttle_reasons.gpu_idle", |g, _| {
            reason(g, R::GpuIdle)
        }),
        f(
            "clocks_throttle_reasons.applications_clocks_setting",
            |g, _| reason(g, R::ApplicationsClocksSetting),
        ),
        f("clocks_throttle_reasons.sw_power_cap", |g, _| {
            reason(g, R::SwPowerCap)
        }),
        f("clocks_throttle_reasons.hw_slowdown", |g, _| {
            reason(g, R::HwSlowdown)
        }),
        f("clocks_throttle_reasons.sync_boost", |g, _| {
            reason(g, R::SyncBoost)
        }),
        f("clocks_throttle_reasons.sw_thermal_slowdown", |g, _| {
            reason(g, R::SwThermalSlowdown)
        }),
        f("clocks_throttle_reasons.hw_thermal_slowdown", |g, _| {
            reason(g, R::HwThermalSlowdown)
        }),
        f("clocks_throttle_reasons.hw_power_brake_slowdown", |g, _| {
            reason(g, R::HwPowerBrakeSlowdown)
        }),
        f("clocks_throttle_reasons.display_clock_setting", |g, _| {
            reason(g, R::DisplayClockSetting)
        }),
        f("pcie.link.gen.current", |g, _| pcie(g, |p| p.gen_current)),
        f("pcie.link.gen.gpucurrent", |g, _| {
            pcie(g, |p| p.gen_current)
        }),
        f("pcie.link.gen.max", |g, _| pcie(g, |p| p.gen_max)),
        f("pcie.link.gen.gpumax", |g, _| pcie(g, |p| p.gen_max)),
        f("pcie.link.gen.hostmax", |g, _| pcie(g, |p| p.gen_max)),
        f("pcie.link.width.current", |g, _| {
            pcie(g, |p| p.width_current)
        }),
        f("pcie.link.width.max", |g, _| pcie(g, |p| p.width_max)),
        f("pcie.replay_counter", |g, _| {
            n(g.pcie.as_ref().and_then(|p| p.replay_count))
        }),
        f("fabric.state", |g, _| fabric_state(g)),
        f("fabric.status", |g, _| fabric_status(g)),
    ]
};

static FIELD_NAMES: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| FIELDS.iter().map(|f| f.name).collect());

/// Every `--query-gpu` field name the simulator answers (aliases and both
/// `clocks_event_reasons` / `clocks_throttle_reasons` spellings included).
pub fn query_gpu_fields() -> &'static [&'static str] {
    &FIELD_NAMES
}

/// `--format=csv[,noheader][,nounits]`: (header, units), or `None` when
/// nvidia-smi would reject it.
fn csv_format(format: Option<&str>) -> Option<(bool, bool)> {
    let mut parts = format?.split(',').map(str::trim);
    if parts.next() != Some("csv") {
        return None;
    }
    let (mut header, mut units) = (true, true);
    for p in parts {
        match p {
            "noheader" => header = false,
            "nounits" => units = false,
            _ => return None,
        }
    }
    Some((header, units))
}

/// The field list, or nvidia-smi's error for the first unknown field.
fn resolve<'a, T>(
    fields: &str,
    table: &'a [T],
    name: fn(&T) -> &str,
) -> Result<Vec<(&'a T, String)>, CommandOutput> {
    fields
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|want| {
            table
                .iter()
                .find(|t| name(t).eq_ignore_ascii_case(want))
                .map(|t| (t, want.to_string()))
                .ok_or_else(|| {
                    printed(
                        format!(
                            "Field \"{want}\" is not a valid field to query.

"
                        ),
                        EXIT_USAGE,
                    )
                })
        })
        .collect()
}

/// Formats one CSV row.
fn csv_row(values: impl Iterator<Item = (V, Option<&'static str>)>, units: bool) -> String {
    let cells: Vec<String> = values
        .map(|(v, unit)| match v {
            V::Val(s) => match unit {
                Some(u) if units => format!("{s} {u}"),
                _ => s,
            },
            V::NA => "[N/A]".to_string(),
            V::NotSupported => "[Not Supported]".to_string(),
        })
        .collect();
    format!("{}\n", cells.join(", "))
}

/// The CSV header line.
fn csv_header(names: impl Iterator<Item = (String, Option<&'static str>)>, units: bool) -> String {
    let cells: Vec<String> = names
        .map(|(n, unit)| match unit {
            Some(u) if units => format!("{n} [{u}]"),
            _ => n,
        })
        .collect();
    format!("{}\n", cells.join(", "))
}

pub(super) fn query_gpu(
    snap: &Snapshot,
    gpus: &[&Gpu],
    fields: &str,
    format: Option<&str>,
) -> CommandOutput {
    let Some((header, units)) = csv_format(format) else {
        return usage_error();
    };
    let fields = match resolve(fields, FIELDS, |f| f.name) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let mut out = per_gpu(gpus, |g, o| {
        o.push_str(&csv_row(
            fields.iter().map(|(f, _)| ((f.get)(g, snap), f.unit)),
            units,
        ));
    });
    if header {
        let h = csv_header(fields.iter().map(|(f, n)| (n.clone(), f.unit)), units);
        out.stdout.insert_str(0, &h);
    }
    out
}

/// The fields `--query-remapped-rows` takes (`--help-query-remapped-rows`).
/// Each is also a `--query-gpu` field with the same values, one row per GPU.
const REMAPPED_FIELDS: [&str; 6] = [
    "gpu_bus_id",
    "gpu_uuid",
    "remapped_rows.correctable",
    "remapped_rows.uncorrectable",
    "remapped_rows.pending",
    "remapped_rows.failure",
];

/// `--query-remapped-rows=FIELDS`: `--query-gpu` limited to
/// [`REMAPPED_FIELDS`], so both print the same values.
pub(super) fn query_remapped(
    snap: &Snapshot,
    gpus: &[&Gpu],
    fields: &str,
    format: Option<&str>,
) -> CommandOutput {
    if let Err(e) = resolve(fields, &REMAPPED_FIELDS, |f| *f) {
        return e;
    }
    query_gpu(snap, gpus, fields, format)
}

/// One `--query-compute-apps` field.
struct AppField {
    name: &'static str,
    unit: Option<&'static str>,
    get: fn(&crate::probe::GpuProcess, &Gpu, &Snapshot) -> V,
}

static APP_FIELDS: &[AppField] = &[
    AppField {
        name: "timestamp",
        unit: None,
        get: |_, _, s| timestamp(s),
    },
    AppField {
        name: "pid",
        unit: None,
        get: |p, _, _| V::Val(p.pid.to_string()),
    },
    AppField {
        name: "process_name",
        unit: None,
        get: |p, _, _| V::Val(p.name.clone()),
    },
    AppField {
        name: "name",
        unit: None,
        get: |p, _, _| V::Val(p.name.clone()),
    },
    AppField {
        name: "used_memory",
        unit: Some("MiB"),
        get: |p, _, _| n(p.used_memory_mib),
    },
    AppField {
        name: "used_gpu_memory",
        unit: Some("MiB"),
        get: |p, _, _| n(p.used_memory_mib),
    },
    AppField {
        name: "gpu_uuid",
        unit: None,
        get: |_, g, _| V::Val(g.uuid.clone()),
    },
    AppField {
        name: "gpu_bus_id",
        unit: None,
        get: |_, g, _| V::Val(g.pci_bus_id.clone()),
    },
    AppField {
        name: "gpu_name",
        unit: None,
        get: |_, g, _| V::Val(g.name.clone()),
    },
    AppField {
        name: "gpu_serial",
        unit: None,
        get: |_, g, _| n(g.serial.as_ref()),
    },
];

pub(super) fn query_apps(
    snap: &Snapshot,
    gpus: &[&Gpu],
    fields: &str,
    format: Option<&str>,
) -> CommandOutput {
    let Some((header, units)) = csv_format(format) else {
        return usage_error();
    };
    let fields = match resolve(fields, APP_FIELDS, |f| f.name) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let mut out = per_gpu(gpus, |g, o| {
        for p in &g.processes {
            o.push_str(&csv_row(
                fields.iter().map(|(f, _)| ((f.get)(p, g, snap), f.unit)),
                units,
            ));
        }
    });
    if header {
        let h = csv_header(fields.iter().map(|(f, n)| (n.clone(), f.unit)), units);
        out.stdout.insert_str(0, &h);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_format_options() {
        assert_eq!(csv_format(Some("csv")), Some((true, true)));
        assert_eq!(
            csv_format(Some("csv,noheader,nounits")),
            Some((false, false))
        );
        assert_eq!(csv_format(Some("json")), None);
        assert_eq!(csv_format(None), None);
    }

    fn shown(v: V) -> String {
        csv_row(std::iter::once((v, None)), true)
    }

    #[test]
    fn tlimit_is_the_margin_to_slowdown() {
        let mut g = Gpu {
            temperature_c: Some(52),
            temperature_slowdown_c: Some(87),
            ..Gpu::default()
        };
        assert_eq!(shown(tlimit(&g)), "35\n");
        g.temperature_c = Some(89);
        assert_eq!(shown(tlimit(&g)), "-2\n");
        g.temperature_slowdown_c = None;
        assert_eq!(shown(tlimit(&g)), "[N/A]\n");
    }

    #[test]
    fn fabric_is_na_without_nvswitch_and_status_waits_for_completion() {
        let mut g = Gpu::default();
        assert_eq!(shown(fabric_state(&g)), "[N/A]\n");
        assert_eq!(shown(fabric_status(&g)), "[N/A]\n");
        g.fabric = Some(crate::probe::GpuFabric {
            state: "In Progress".into(),
            status: None,
        });
        assert_eq!(shown(fabric_state(&g)), "In Progress\n");
        assert_eq!(shown(fabric_status(&g)), "N/A\n");
    }

    #[test]
    fn remapped_rows_take_only_their_own_fields() {
        let snap = Snapshot::default();
        let out = query_remapped(&snap, &[], "gpu_uuid,index", Some("csv"));
        assert_eq!(
            out.stdout,
            "Field \"index\" is not a valid field to query.\n\n"
        );
        assert_eq!(out.exit_code, EXIT_USAGE);
        let out = query_remapped(&snap, &[], "gpu_uuid,remapped_rows.pending", Some("csv"));
        assert_eq!(out.stdout, "gpu_uuid, remapped_rows.pending\n");
    }

    #[test]
    fn field_names_are_unique() {
        let mut names = query_gpu_fields().to_vec();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
