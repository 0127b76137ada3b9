//! `lspci`, answered from the snapshot's GPU-class PCI devices.
//!
//! Only the devices in `[[pci_gpus]]` exist on a simulated node. Supported:
//! `-n`/`-nn`, `-d VENDOR:[DEVICE]`, `-s [[DOMAIN:]BUS:]SLOT[.FUNC]`, `-k`,
//! `-D`, `-v`/`-vv`/`-vvv` (`-vv` and up add the PCIe link capability and
//! status built from the device's link fields), and `-t` (the tree, with
//! names under `-v`). A device whose revision is `ff` no longer answers
//! config reads and prints as the real tool prints it.
//!
//! With no bridges on the node, `-t` draws each GPU's bus as a bus of its
//! own below the host bridge, as `lspci -t -d 10de:` does on a real node
//! (the filter drops the bridges). Like pciutils 3.7 (Ubuntu 22.04), it
//! lists the highest bus first.

use std::fmt::Write as _;

use super::{CommandOutput, SimNode};
use crate::probe::{PciGpu, normalize_bus_id};

/// The parsed command line.
#[derive(Debug, Default)]
struct Args {
    numeric: u8,
    verbose: u8,
    kernel: bool,
    domain: bool,
    tree: bool,
    vendor: Option<String>,
    device: Option<String>,
    slot: Option<String>,
}

/// Answers `lspci ARGS`.
pub(crate) fn run(node: &SimNode, args: &[String]) -> CommandOutput {
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(msg) => {
            return CommandOutput::fail(
                format!(
                    "lspci: {msg}\nUsage: lspci [<switches>]\n\nRun 'lspci --help' for the list of switches.\n"
                ),
                1,
            );
        }
    };
    let mut devices: Vec<&PciGpu> = node
        .snapshot
        .pci_gpus
        .iter()
        .filter(|p| {
            a.vendor
                .as_deref()
                .is_none_or(|v| p.vendor_id.eq_ignore_ascii_case(v))
        })
        .filter(|p| {
            a.device
                .as_deref()
                .is_none_or(|d| p.device_id.eq_ignore_ascii_case(d))
        })
        .filter(|p| a.slot.as_deref().is_none_or(|s| slot_matches(s, &p.bdf)))
        .collect();
    devices.sort_by_key(|p| p.bdf.to_ascii_lowercase());
    if a.tree {
        return CommandOutput::ok(tree(&devices, &a));
    }
    let show_domain = a.domain
        || node
            .snapshot
            .pci_gpus
            .iter()
            .any(|p| !p.bdf.starts_with("0000:"));
    let mut out = String::new();
    for p in devices {
        device(&mut out, p, &a, show_domain);
    }
    CommandOutput::ok(out)
}

/// Parses getopt-style switches (`-nnk`, `-s 18:00.0`, `-d10de:`).
fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let Some(flags) = arg
            .strip_prefix('-')
            .filter(|f| !f.is_empty() && !f.starts_with('-'))
        else {
            return Err(match arg.strip_prefix("--") {
                Some(long) => format!("unrecognized option '--{long}'"),
                None => format!("unexpected argument '{arg}'"),
            });
        };
        for (i, c) in flags.char_indices() {
            match c {
                'n' => a.numeric += 1,
                'v' => a.verbose += 1,
                'k' => a.kernel = true,
                'D' => a.domain = true,
                't' => a.tree = true,
                'd' | 's' => {
                    let rest = &flags[i + 1..];
                    let value = if rest.is_empty() {
                        it.next()
                            .cloned()
                            .ok_or_else(|| format!("option requires an argument -- '{c}'"))?
                    } else {
                        rest.to_string()
                    };
                    if c == 's' {
                        a.slot = Some(value);
                    } else {
                        let (v, d) = value.split_once(':').unwrap_or((&value, ""));
                        let hex =
                            |s: &str| s.len() <= 4 && s.chars().all(|c| c.is_ascii_hexdigit());
                        if !hex(v) || !hex(d) {
                            return Err(format!("-d: invalid vendor/device ID '{value}'"));
                        }
                        a.vendor = Some(v.to_string()).filter(|s| !s.is_empty());
                        a.device = Some(d.to_string()).filter(|s| !s.is_empty());
                    }
                    break;
                }
                other => return Err(format!("invalid option -- '{other}'")),
            }
        }
    }
    Ok(a)
}

/// `-s` matching: any of domain and bus may be left out, and the function.
fn slot_matches(want: &str, bdf: &str) -> bool {
    let (want_dev, want_fn) = match want.rsplit_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (want, None),
    };
    let fn_ok = want_fn.is_none_or(|f| bdf.rsplit_once('.').is_some_and(|(_, g)| g == f));
    fn_ok && normalize_bus_id(want_dev) == normalize_bus_id(bdf)
}

/// Vendor name as pci.ids gives it.
fn vendor_name(id: &str) -> String {
    match id.to_ascii_lowercase().as_str() {
        "10de" => "NVIDIA Corporation".to_string(),
        "1002" => "Advanced Micro Devices, Inc. [AMD/ATI]".to_string(),
        other => format!("Device {other}"),
    }
}

/// Class name and code: NVIDIA compute boards are 3D controllers, AMD
/// Instinct boards processing accelerators.
fn class(vendor: &str) -> (&'static str, &'static str) {
    match vendor.to_ascii_lowercase().as_str() {
        "10de" => ("3D controller", "0302"),
        "1002" => ("Processing accelerators", "1200"),
        _ => ("Display controller", "0380"),
    }
}

/// `2.5GT/s`, `16GT/s`.
fn speed(gts: f64) -> String {
    format!("{gts}GT/s")
}

/// The device's vendor and device as `-n` asks: names, `VENDOR:DEVICE`
/// ids, or (`-nn`) names followed by the ids in brackets.
fn device_name(p: &PciGpu, numeric: u8) -> String {
    let ids = format!("{}:{}", p.vendor_id, p.device_id);
    let names = || {
        let dev_name = p
            .name
            .clone()
            .unwrap_or_else(|| format!("Device {}", p.device_id));
        format!("{} {dev_name}", vendor_name(&p.vendor_id))
    };
    match numeric {
        0 => names(),
        1 => ids,
        _ => format!("{} [{ids}]", names()),
    }
}

/// Writes one device (its line plus the `-v`/`-k` block).
fn device(out: &mut String, p: &PciGpu, a: &Args, show_domain: bool) {
    let slot = if show_domain {
        p.bdf.as_str()
    } else {
        p.bdf.strip_prefix("0000:").unwrap_or(&p.bdf)
    };
    let (class_name, class_code) = class(&p.vendor_id);
    let rev = p.revision.as_deref().unwrap_or("00");
    let lost = rev.eq_ignore_ascii_case("ff");
    let name = device_name(p, a.numeric);
    let _ = match a.numeric {
        0 => write!(out, "{slot} {class_name}: {name} (rev {rev})"),
        1 => write!(out, "{slot} {class_code}: {name} (rev {rev})"),
        _ => write!(
            out,
            "{slot} {class_name} [{class_code}]: {name} (rev {rev})"
        ),
    };
    if lost {
        out.push_str(" (prog-if ff)");
    }
    out.push('\n');
    if a.verbose > 0 {
        if lost {
            out.push_str("\t!!! Unknown header type 7f\n");
        } else {
            if let Some(n) = p.numa_node {
                let _ = writeln!(out, "\tNUMA node: {n}");
            }
            out.push_str("\tCapabilities: [78] Express (v2) Endpoint, MSI 00\n");
            if a.verbose > 1 {
                link(out, p);
            }
        }
    }
    if (a.verbose > 0 || a.kernel)
        && let Some(d) = &p.driver
    {
        let _ = writeln!(out, "\tKernel driver in use: {d}");
        let modules = if d == "nvidia" {
            "nvidiafb, nouveau, nvidia_drm, nvidia"
        } else {
            d.as_str()
        };
        let _ = writeln!(out, "\tKernel modules: {modules}");
    }
    if a.verbose > 0 {
        out.push('\n');
    }
}

/// `-t`: the bus tree, drawn as pciutils draws it (`ls-tree.c`). Each
/// line is printed from a buffer whose drawn part then turns into the
/// continuation for the lines below: `+` and `|` become `|`, the rest
/// spaces. `devices` are sorted by address.
fn tree(devices: &[&PciGpu], a: &Args) -> String {
    /// The lines printed so far and the line being drawn.
    struct Canvas {
        out: String,
        line: String,
    }
    impl Canvas {
        fn print(&mut self) {
            self.out.push_str(&self.line);
            self.out.push('\n');
            self.line = self
                .line
                .chars()
                .map(|c| if c == '+' || c == '|' { '|' } else { ' ' })
                .collect();
        }
        /// Draws `items` from column `at`: one joined by `--`, several by
        /// `+-` and the last by `\-`, each finished by `draw`.
        fn branches<T>(&mut self, at: usize, items: &[T], mut draw: impl FnMut(&mut Self, &T)) {
            for (i, item) in items.iter().enumerate() {
                self.line.truncate(at);
                self.line
                    .push_str(match (items.len(), i + 1 == items.len()) {
                        (1, _) => "--",
                        (_, true) => "\\-",
                        _ => "+-",
                    });
                draw(self, item);
            }
        }
    }
    // Buses under the host bridge, newest first as pciutils links them.
    let mut buses: Vec<(String, Vec<&PciGpu>)> = Vec::new();
    for p in devices {
        let bdf = p.bdf.to_ascii_lowercase();
        let bus = bdf
            .rsplit_once(':')
            .map_or(bdf.as_str(), |(b, _)| b)
            .to_string();
        match buses.iter_mut().find(|(b, _)| *b == bus) {
            Some((_, on_bus)) => on_bus.push(p),
            None => buses.insert(0, (bus, vec![p])),
        }
    }
    let mut c = Canvas {
        out: String::new(),
        line: "-".to_string(),
    };
    let draw_bus = |c: &mut Canvas, on_bus: &Vec<&PciGpu>| {
        let at = c.line.len();
        c.branches(at, on_bus, |c, p| {
            let slot = p.bdf.rsplit_once(':').map_or(p.bdf.as_str(), |(_, s)| s);
            c.line.push_str(&slot.to_ascii_lowercase());
            if a.verbose > 0 {
                c.line.push_str("  ");
                c.line.push_str(&device_name(p, a.numeric));
            }
            c.print();
        });
    };
    if let [(bus, on_bus)] = buses.as_slice() {
        let _ = write!(c.line, "[{bus}]-");
        draw_bus(&mut c, on_bus);
    } else {
        c.branches(1, &buses, |c, (bus, on_bus)| {
            let _ = write!(c.line, "[{bus}]-");
            draw_bus(c, on_bus);
        });
    }
    c.out
}

/// `LnkCap` / `LnkSta` lines from the device's link fields.
fn link(out: &mut String, p: &PciGpu) {
    let cap_speed = p.link_speed_max_gts.map_or("unknown".to_string(), speed);
    let cap_width = p
        .link_width_max
        .map_or("x?".to_string(), |w| format!("x{w}"));
    let _ = writeln!(
        out,
        "\t\tLnkCap:\tPort #0, Speed {cap_speed}, Width {cap_width}, ASPM not supported"
    );
    let mark = |cur: Option<f64>, max: Option<f64>| match (cur, max) {
        (Some(c), Some(m)) if c < m => " (downgraded)",
        (Some(_), Some(_)) => " (ok)",
        _ => "",
    };
    let sta_speed = p.link_speed_gts.map_or("unknown".to_string(), speed);
    let sta_width = p.link_width.map_or("x?".to_string(), |w| format!("x{w}"));
    let _ = writeln!(
        out,
        "\t\tLnkSta:\tSpeed {sta_speed}{}, Width {sta_width}{}",
        mark(p.link_speed_gts, p.link_speed_max_gts),
        mark(p.link_width.map(f64::from), p.link_width_max.map(f64::from)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_with_or_without_domain_and_function() {
        assert!(slot_matches("18:00.0", "0000:18:00.0"));
        assert!(slot_matches("0000:18:00", "0000:18:00.0"));
        assert!(slot_matches("18:00.0", "0000:18:00.0"));
        assert!(!slot_matches("18:00.1", "0000:18:00.0"));
        assert!(!slot_matches("19:00.0", "0000:18:00.0"));
    }

    #[test]
    fn parses_combined_switches() {
        let a = parse_args(&["-nnvvvk".to_string(), "-d10de:".to_string()]).unwrap();
        assert_eq!((a.numeric, a.verbose, a.kernel), (2, 3, true));
        assert_eq!(a.vendor.as_deref(), Some("10de"));
        assert_eq!(a.device, None);
        assert!(parse_args(&["-z".to_string()]).is_err());
        assert!(parse_args(&["-s".to_string()]).is_err());
        assert!(parse_args(&["-d".to_string(), "nvidia".to_string()]).is_err());
    }

    #[test]
    fn speeds_print_like_lspci() {
        assert_eq!(speed(2.5), "2.5GT/s");
        assert_eq!(speed(16.0), "16GT/s");
    }
}
