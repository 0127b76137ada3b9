//! Throttling and temperature.
//!
//! - `throttle-thermal` (warning): a thermal slowdown reason is active while
//!   the GPU is busy. `hw_slowdown` without `hw_power_brake_slowdown` counts
//!   as thermal: older drivers report heat only through it.
//! - `throttle-power`: `sw_power_cap` or `hw_power_brake_slowdown` while
//!   busy. A power brake is an external signal (power supply, chassis) and
//!   always a warning. Running at the power cap under full load is how many
//!   data-centre GPUs normally work: boost clocks are governed by power. So
//!   the cap is a warning only when it costs real speed, the SM clock below
//!   [`POWER_CAP_CLOCK_RATIO`] of its maximum, and an info otherwise (or
//!   when the clocks are unknown).
//! - `temperature-near-slowdown`: within [`NEAR_SLOWDOWN_C`] of the slowdown
//!   temperature (warning) or at/over it (critical). Not reported for a GPU
//!   that `throttle-thermal` already reports: that GPU is protecting itself
//!   as designed, and one finding says it.
//!
//! An idle GPU is not judged on throttle reasons (an idle GPU's clocks are
//! low anyway), but a hot idle GPU still gets `temperature-near-slowdown`:
//! heat without load means the cooling has failed.

use std::collections::BTreeMap;

use super::common::{evidence, is_busy, live_gpus, nvidia_smi_sections, utilization};
use super::{Finding, Severity};
use crate::probe::{ClockEventReason, Gpu, Snapshot};

/// Degrees (°C) below the slowdown temperature that count as near it.
const NEAR_SLOWDOWN_C: u32 = 5;

/// Below this fraction of the maximum SM clock, a power cap is a warning.
const POWER_CAP_CLOCK_RATIO: f64 = 0.75;

/// Rule: `throttle-thermal` for busy GPUs slowed down by heat.
pub(super) fn throttle_thermal(snapshot: &Snapshot) -> Vec<Finding> {
    live_gpus(snapshot)
        .filter(|g| thermally_throttled(g))
        .map(|g| {
            let temp = g
                .temperature_c
                .map_or_else(String::new, |t| format!(" at {t} °C"));
            let mut ev = throttle_evidence(g, &thermal_reasons(g));
            ev.insert("temperature.gpu".into(), opt(g.temperature_c));
            ev.insert(
                "temperature.gpu.slowdown".into(),
                opt(g.temperature_slowdown_c),
            );
            if let Some(fan) = g.fan_pct {
                ev.insert("fan.speed".into(), format!("{fan}%"));
            }
            Finding {
                id: "throttle-thermal".into(),
                severity: Severity::Warning,
                gpu: Some(g.index),
                title: format!("Thermal slowdown while busy{temp}"),
                evidence: ev,
                commands: vec![nvidia_smi_sections(
                    g.index,
                    "PERFORMANCE,TEMPERATURE,POWER",
                )],
                why: "The GPU is lowering its clocks to protect itself from heat while it \
                      works: jobs on it run slower. Check the cooling: fans and airflow, \
                      inlet temperature, blocked filters, the exhaust of neighbouring GPUs; \
                      compare with the other GPUs in the node. HW slowdown can also come \
                      from the power supply."
                    .into(),
            }
        })
        .collect()
}

/// Rule: `throttle-power` for busy GPUs held back by power.
pub(super) fn throttle_power(snapshot: &Snapshot) -> Vec<Finding> {
    live_gpus(snapshot)
        .filter(|g| is_busy(g))
        .filter_map(|g| {
            let brake = g
                .clock_event_reasons
                .contains(&ClockEventReason::HwPowerBrakeSlowdown);
            let cap = g
                .clock_event_reasons
                .contains(&ClockEventReason::SwPowerCap);
            let ratio = sm_clock_ratio(g);
            let pct = ratio.map(|r| format!("{:.0}%", r * 100.0));
            let (severity, title, mut why) = if brake {
                (
                    Severity::Warning,
                    "Hardware power brake slows the GPU while busy".to_string(),
                    String::from(
                        "The hardware power brake is asserted: an external signal from the \
                         power supply or chassis is holding the GPU's clocks down. Check the \
                         node's power supplies and their event log (BMC), and the power \
                         cabling.",
                    ),
                )
            } else if cap && ratio.is_some_and(|r| r < POWER_CAP_CLOCK_RATIO) {
                (
                    Severity::Warning,
                    format!(
                        "Power cap holds the SM clock at {} of max",
                        pct.as_deref().unwrap_or("?")
                    ),
                    String::from(
                        "The GPU draws its full power limit and runs well below its maximum \
                         clock: the power cap is costing real speed. Check the power limit \
                         against the default, the cooling (a hot GPU draws more power for \
                         the same work) and whether the workload is unusually power-hungry.",
                    ),
                )
            } else if cap {
                let at = pct.map_or_else(String::new, |p| format!(" (SM clock {p} of max)"));
                (
                    Severity::Info,
                    format!("At its power limit under load{at}"),
                    String::from(
                        "The GPU runs at its power limit with clocks near their maximum: \
                         normal for a fully loaded data-centre GPU, whose boost clock is \
                         governed by power. Nothing to do unless the limit was lowered on \
                         purpose.",
                    ),
                )
            } else {
                return None;
            };
            if let (Some(limit), Some(default)) = (g.power_limit_w, g.power_default_limit_w)
                && limit < default
            {
                why.push_str(&format!(
                    " The power limit ({limit:.0} W) is below the default ({default:.0} W): \
                     someone lowered it."
                ));
            }
            let reasons: Vec<ClockEventReason> = g
                .clock_event_reasons
                .iter()
                .copied()
                .filter(|r| {
                    matches!(
                        r,
                        ClockEventReason::SwPowerCap | ClockEventReason::HwPowerBrakeSlowdown
                    )
                })
                .collect();
            let mut ev = throttle_evidence(g, &reasons);
            ev.insert("power.draw".into(), opt_w(g.power_draw_w));
            ev.insert("power.limit".into(), opt_w(g.power_limit_w));
            ev.insert("power.default_limit".into(), opt_w(g.power_default_limit_w));
            Some(Finding {
                id: "throttle-power".into(),
                severity,
                gpu: Some(g.index),
                title,
                evidence: ev,
                commands: vec![nvidia_smi_sections(g.index, "PERFORMANCE,POWER,CLOCK")],
                why,
            })
        })
        .collect()
}

/// Rule: `temperature-near-slowdown` for GPUs close to or past their
/// slowdown temperature that `throttle-thermal` does not already report.
pub(super) fn temperature_near_slowdown(snapshot: &Snapshot) -> Vec<Finding> {
    live_gpus(snapshot)
        .filter(|g| !thermally_throttled(g))
        .filter_map(|g| {
            let (temp, slowdown) = (g.temperature_c?, g.temperature_slowdown_c?);
            let shutdown = g
                .temperature_shutdown_c
                .map_or_else(String::new, |s| format!(" (shutdown at {s} °C)"));
            let (severity, title, why) = if temp >= slowdown {
                (
                    Severity::Critical,
                    format!("{temp} °C: at or over the slowdown point ({slowdown} °C)"),
                    format!(
                        "The GPU is at or above its slowdown temperature{shutdown}, and \
                         is not reported as thermally throttling under load: it is hot \
                         while idle or its protection has not caught up. The cooling has \
                         likely failed: check fans, airflow and inlet temperature now, \
                         and drain the GPU if it keeps climbing."
                    ),
                )
            } else if temp + NEAR_SLOWDOWN_C >= slowdown {
                (
                    Severity::Warning,
                    format!(
                        "{temp} °C: within {} °C of slowdown ({slowdown} °C)",
                        slowdown - temp
                    ),
                    "The GPU is a few degrees from the temperature at which it slows down; \
                     more load or a warmer inlet will make it throttle. Check fans, airflow \
                     and inlet temperature, and compare with the other GPUs in the node."
                        .to_string(),
                )
            } else {
                return None;
            };
            Some(Finding {
                id: "temperature-near-slowdown".into(),
                severity,
                gpu: Some(g.index),
                title,
                evidence: evidence([
                    ("temperature.gpu", temp.to_string()),
                    ("temperature.gpu.slowdown", slowdown.to_string()),
                    ("temperature.gpu.shutdown", opt(g.temperature_shutdown_c)),
                    ("utilization.gpu", utilization(g)),
                ]),
                commands: vec![nvidia_smi_sections(g.index, "TEMPERATURE,PERFORMANCE")],
                why,
            })
        })
        .collect()
}

/// The active reasons that mean heat.
fn thermal_reasons(gpu: &Gpu) -> Vec<ClockEventReason> {
    let reasons = &gpu.clock_event_reasons;
    let brake = reasons.contains(&ClockEventReason::HwPowerBrakeSlowdown);
    reasons
        .iter()
        .copied()
        .filter(|r| match r {
            ClockEventReason::SwThermalSlowdown | ClockEventReason::HwThermalSlowdown => true,
            ClockEventReason::HwSlowdown => !brake,
            _ => false,
        })
        .collect()
}

/// The GPU is busy and slowed by heat: what `throttle-thermal` reports.
fn thermally_throttled(gpu: &Gpu) -> bool {
    is_busy(gpu) && !thermal_reasons(gpu).is_empty()
}

/// Current SM clock over its maximum, when both are known.
fn sm_clock_ratio(gpu: &Gpu) -> Option<f64> {
    match (gpu.clock_sm_mhz, gpu.clock_sm_max_mhz) {
        (Some(now), Some(max)) if max > 0 => Some(f64::from(now) / f64::from(max)),
        _ => None,
    }
}

/// Evidence every throttle finding carries: the reasons, load and clocks.
fn throttle_evidence(gpu: &Gpu, reasons: &[ClockEventReason]) -> BTreeMap<String, String> {
    let names: Vec<&str> = reasons.iter().map(|r| r.field_name()).collect();
    evidence([
        ("clocks_event_reasons", names.join(", ")),
        ("utilization.gpu", utilization(gpu)),
        ("clocks.sm", opt(gpu.clock_sm_mhz)),
        ("clocks.max.sm", opt(gpu.clock_sm_max_mhz)),
    ])
}

/// A value or `unknown`.
fn opt(value: Option<u32>) -> String {
    value.map_or_else(|| "unknown".into(), |v| v.to_string())
}

/// Watts or `unknown`.
fn opt_w(value: Option<f64>) -> String {
    value.map_or_else(|| "unknown".into(), |w| format!("{w:.0} W"))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{gpu, idle, ids, node, run};
    use super::*;
    use ClockEventReason::*;

    fn throttled(reasons: &[ClockEventReason]) -> Gpu {
        let mut g = gpu(0);
        g.clock_event_reasons = reasons.to_vec();
        g
    }

    #[test]
    fn thermal_slowdown_while_busy_is_a_warning() {
        let mut g = throttled(&[HwThermalSlowdown, SwThermalSlowdown]);
        g.temperature_c = Some(88);
        g.clock_sm_mhz = Some(1200);
        let f = run(throttle_thermal, &node(vec![g]));
        assert_eq!(ids(&f), ["throttle-thermal"]);
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].title, "Thermal slowdown while busy at 88 °C");
        assert_eq!(
            f[0].evidence["clocks_event_reasons"],
            "hw_thermal_slowdown, sw_thermal_slowdown"
        );
    }

    #[test]
    fn thermal_slowdown_on_an_idle_gpu_or_none_at_all_is_not_throttling() {
        assert!(
            run(
                throttle_thermal,
                &node(vec![idle(throttled(&[SwThermalSlowdown]))])
            )
            .is_empty()
        );
        assert!(run(throttle_thermal, &node(vec![gpu(0)])).is_empty());
        // hw_slowdown with the power brake is power, not heat.
        assert!(
            run(
                throttle_thermal,
                &node(vec![throttled(&[HwSlowdown, HwPowerBrakeSlowdown])])
            )
            .is_empty()
        );
    }

    #[test]
    fn hw_slowdown_alone_counts_as_thermal() {
        let f = run(throttle_thermal, &node(vec![throttled(&[HwSlowdown])]));
        assert_eq!(ids(&f), ["throttle-thermal"]);
    }

    #[test]
    fn power_cap_with_clocks_near_max_is_info() {
        let mut g = throttled(&[SwPowerCap]);
        g.power_draw_w = Some(699.0);
        g.clock_sm_mhz = Some(1755);
        let f = run(throttle_power, &node(vec![g]));
        assert_eq!(ids(&f), ["throttle-power"]);
        assert_eq!(f[0].severity, Severity::Info);
        assert_eq!(
            f[0].title,
            "At its power limit under load (SM clock 89% of max)"
        );
    }

    #[test]
    fn power_cap_with_clocks_far_below_max_is_a_warning() {
        let mut g = throttled(&[SwPowerCap]);
        g.clock_sm_mhz = Some(1200);
        g.power_limit_w = Some(400.0);
        let f = run(throttle_power, &node(vec![g]));
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].title, "Power cap holds the SM clock at 61% of max");
        assert!(f[0].why.contains("below the default"));
        assert_eq!(f[0].evidence["power.limit"], "400 W");
    }

    #[test]
    fn power_brake_is_a_warning_and_idle_power_cap_is_nothing() {
        let f = run(
            throttle_power,
            &node(vec![throttled(&[HwSlowdown, HwPowerBrakeSlowdown])]),
        );
        assert_eq!(
            (f[0].id.as_str(), f[0].severity),
            ("throttle-power", Severity::Warning)
        );
        assert!(run(throttle_power, &node(vec![idle(throttled(&[SwPowerCap]))])).is_empty());
        assert!(run(throttle_power, &node(vec![gpu(0)])).is_empty());
    }

    #[test]
    fn near_slowdown_is_a_warning_and_over_is_critical() {
        let mut g = gpu(0);
        g.temperature_c = Some(83);
        let f = run(temperature_near_slowdown, &node(vec![g.clone()]));
        assert_eq!(ids(&f), ["temperature-near-slowdown"]);
        assert_eq!(f[0].severity, Severity::Warning);
        assert_eq!(f[0].title, "83 °C: within 4 °C of slowdown (87 °C)");

        g.temperature_c = Some(89);
        let f = run(temperature_near_slowdown, &node(vec![idle(g)]));
        assert_eq!(f[0].severity, Severity::Critical);
    }

    #[test]
    fn cool_gpu_is_fine() {
        assert!(run(temperature_near_slowdown, &node(vec![gpu(0)])).is_empty());
    }

    #[test]
    fn temperature_is_not_repeated_when_thermal_throttle_reports_it() {
        let mut g = throttled(&[HwThermalSlowdown]);
        g.temperature_c = Some(90);
        let snapshot = node(vec![g]);
        assert_eq!(ids(&run(throttle_thermal, &snapshot)), ["throttle-thermal"]);
        assert!(run(temperature_near_slowdown, &snapshot).is_empty());
    }
}
