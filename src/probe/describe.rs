//! Short text forms of a GPU's readings, the same wherever they are shown:
//! the plain-text reports, the TUI's GPU table and the copilot's prompt.
//!
//! Formatting only: nothing here judges a value (the checks do).

use super::Gpu;

/// Power draw against the limit, `463/700W`.
pub fn gpu_power(g: &Gpu) -> String {
    match (g.power_draw_w, g.power_limit_w) {
        (Some(d), Some(l)) => format!("{d:.0}/{l:.0}W"),
        (Some(d), None) => format!("{d:.0}W"),
        _ => "-".into(),
    }
}

/// PCIe link as generation x width, current/max: `4x16/5x16`.
pub fn gpu_pcie(g: &Gpu) -> String {
    g.pcie.as_ref().map_or_else(
        || "-".into(),
        |p| {
            format!(
                "{}x{}/{}x{}",
                p.gen_current, p.width_current, p.gen_max, p.width_max
            )
        },
    )
}

/// Active throttle reasons, most serious first, in short words; `-` for none.
pub fn gpu_throttle(g: &Gpu) -> String {
    use super::ClockEventReason as R;
    const ORDER: [(R, &str); 5] = [
        (R::HwThermalSlowdown, "hw-therm"),
        (R::HwPowerBrakeSlowdown, "hw-brake"),
        (R::HwSlowdown, "hw-slow"),
        (R::SwThermalSlowdown, "sw-therm"),
        (R::SwPowerCap, "pwr-cap"),
    ];
    let active: Vec<&str> = ORDER
        .iter()
        .filter(|(r, _)| g.clock_event_reasons.contains(r))
        .map(|(_, w)| *w)
        .collect();
    if active.is_empty() {
        "-".into()
    } else {
        active.join(",")
    }
}

/// `NVIDIA H100 80GB HBM3` -> `H100 80GB HBM3`.
pub fn short_name(name: &str) -> &str {
    name.strip_prefix("NVIDIA ").unwrap_or(name)
}
