//! The summary table plain `nvidia-smi` prints: the driver header, one box
//! per GPU, then the processes.

use super::{ctime, cuda_version, driver_version};
use crate::probe::{Gpu, Snapshot};

/// Pads or cuts `inner` to `width` characters and wraps it in `|`.
fn boxed(inner: &str, width: usize) -> String {
    let cut: String = inner.chars().take(width).collect();
    format!("|{cut:<width$}|\n")
}

/// Cuts `s` to `width` characters, marking the cut with `...` at the start
/// as nvidia-smi does for long process names.
fn fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        s.to_string()
    } else {
        let tail: String = s.chars().skip(n + 3 - width).collect();
        format!("...{tail}")
    }
}

pub(super) fn summary(snap: &Snapshot, gpus: &[&Gpu]) -> String {
    const W: usize = 89;
    let line = format!("+{}+\n", "-".repeat(W));
    // A rule across the three columns: `left`, the fill, `+` joints, `right`.
    let cols = |left: char, fill: &str, right: char| {
        format!(
            "{left}{}+{}+{}{right}\n",
            fill.repeat(41),
            fill.repeat(24),
            fill.repeat(22)
        )
    };
    let mut o = format!("{:<31}\n", ctime(snap));
    o += &line;
    o += &boxed(
        &format!(
            " NVIDIA-SMI {:<23}Driver Version: {:<15}CUDA Version: {:<9}",
            driver_version(snap),
            driver_version(snap),
            cuda_version(snap)
        ),
        W,
    );
    o += &cols('|', "-", '+');
    o += "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |\n";
    o += "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |\n";
    o += "|                                         |                        |               MIG M. |\n";
    o += &cols('|', "=", '|');
    for g in gpus {
        let pm = match g.persistence_mode {
            Some(true) => "On",
            Some(false) => "Off",
            None => "N/A",
        };
        let name: String = g.name.chars().take(29).collect();
        let ecc = g.ecc.as_ref().map_or("N/A".to_string(), |e| {
            if e.enabled {
                e.uncorrected_volatile.to_string()
            } else {
                "Off".to_string()
            }
        });
        let fan = g.fan_pct.map_or("N/A".to_string(), |f| format!("{f}%"));
        let temp = g
            .temperature_c
            .map_or("N/A".to_string(), |t| format!("{t}C"));
        let watts = |w: Option<f64>| w.map_or("N/A".to_string(), |w| format!("{w:.0}W"));
        let mem = |m: Option<u64>| m.map_or("N/A".to_string(), |m| format!("{m}MiB"));
        let util = g
            .utilization_gpu_pct
            .map_or("N/A".to_string(), |u| format!("{u}%"));
        let compute = match g.compute_mode.as_deref() {
            Some("Exclusive_Process") => "E. Process",
            Some("Prohibited") => "Prohibited",
            Some(_) => "Default",
            None => "N/A",
        };
        let mig = match g.mig_mode {
            Some(true) => "Enabled",
            Some(false) => "Disabled",
            None => "N/A",
        };
        o += &format!(
            "|{:>4}  {name:<29} {pm:>3}  |   {:<16} Off |{ecc:>21} |\n",
            g.index, g.pci_bus_id
        );
        o += &format!(
            "| {fan:>3} {temp:>5}    {:<2} {:>15} / {:>5} |{:>11} / {:>9} |{util:>8}{compute:>13} |\n",
            g.pstate.as_deref().unwrap_or("N/A"),
            watts(g.power_draw_w),
            watts(g.power_limit_w),
            mem(g.memory_used_mib),
            mem(g.memory_total_mib),
        );
        o += &format!("|{:41}|{:24}|{mig:>21} |\n", "", "");
        o += &cols('+', "-", '+');
    }
    o += &format!("{:>91}\n", "");
    o += &line;
    o += &boxed(" Processes:", W);
    o += &boxed(
        "  GPU   GI   CI        PID   Type   Process name                              GPU Memory ",
        W,
    );
    o += &boxed(
        "        ID   ID                                                               Usage      ",
        W,
    );
    o += &format!("|{}|\n", "=".repeat(W));
    let mut any = false;
    for g in gpus {
        for p in &g.processes {
            any = true;
            let used = p
                .used_memory_mib
                .map_or("N/A".to_string(), |m| format!("{m}MiB"));
            o += &boxed(
                &format!(
                    " {:>4}   N/A  N/A  {:>9}      C   {:<41}{used:>10} ",
                    g.index,
                    p.pid,
                    fit(&p.name, 38)
                ),
                W,
            );
        }
    }
    if !any {
        o += &boxed("  No running processes found", W);
    }
    o += &line;
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_cut_from_the_front() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("/usr/bin/python3", 10), "...python3");
    }
}
