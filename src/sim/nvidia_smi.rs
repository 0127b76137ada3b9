//! `nvidia-smi`, answered from the snapshot.
//!
//! Supported: the summary table (no arguments), `-L`, `-q` with
//! `-d SECTION[,SECTION]`, `--query-gpu=FIELDS --format=csv[,noheader][,nounits]`
//! ([`query_gpu_fields`] lists the fields), `--query-compute-apps=...`,
//! `topo -m`, `topo -p2p r|w|n|a|p`, `nvlink -s` / `-e`, and `dmon` / `pmon`
//! (in [`super::nvidia_monitor`]); `-i`/`--id` (index, UUID or bus id)
//! filters all of them. Layouts follow driver 550. A GPU with `lost = true` answers
//! `Unable to determine the device handle ...` and the exit code is 15, as
//! with the real tool. State-changing flags (`-r`, `-pm`, `-pl`, ...) answer
//! "Insufficient Permissions" (exit 4): a simulated node never changes.

use std::fmt::Write as _;
use std::sync::LazyLock;

use super::{CommandOutput, SimNode, nvidia_monitor, taken_at};
use crate::probe::{ClockEventReason, Gpu, Snapshot, normalize_bus_id};

/// nvidia-smi's exit code for a malformed command line.
const EXIT_USAGE: i32 = 2;
/// nvidia-smi's exit code when the user lacks permission.
const EXIT_PERMISSION: i32 = 4;
/// nvidia-smi's exit code when `-i` names no GPU.
const EXIT_NOT_FOUND: i32 = 6;
/// nvidia-smi's exit code when a GPU has fallen off the bus.
const EXIT_GPU_LOST: i32 = 15;

const USAGE_ERROR: &str =
    "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Mode {
    Summary,
    Help,
    List,
    Query,
    QueryGpu(String),
    QueryApps(String),
    Topo,
    /// `topo -p2p CAP`: the peer-to-peer status matrix for one capability.
    P2p(P2pCap),
    NvlinkStatus,
    NvlinkErrors,
    /// A flag that changes GPU state; the text names the action.
    StateChange(&'static str),
}

/// A `topo -p2p` capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P2pCap {
    /// `r`: peer reads.
    Read,
    /// `w`: peer writes.
    Write,
    /// `n`: peer access over NVLink.
    Nvlink,
    /// `a`: peer atomics.
    Atomics,
    /// `p`: peer access over PCIe.
    Pcie,
}

impl P2pCap {
    /// The capability `topo -p2p` names with `letter`.
    fn from_letter(letter: &str) -> Option<Self> {
        Some(match letter {
            "r" => Self::Read,
            "w" => Self::Write,
            "n" => Self::Nvlink,
            "a" => Self::Atomics,
            "p" => Self::Pcie,
            _ => return None,
        })
    }
}

/// The parsed command line.
#[derive(Debug)]
struct Args {
    mode: Mode,
    ids: Option<String>,
    display: Option<String>,
    format: Option<String>,
}

/// Flags that change GPU state, whether they take a value, and what
/// nvidia-smi says it was unable to do.
const STATE_FLAGS: &[(&str, &str, bool, &str)] = &[
    ("-r", "--gpu-reset", false, "reset GPU"),
    ("-pm", "--persistence-mode", true, "set persistence mode"),
    ("-e", "--ecc-config", true, "set ECC mode"),
    ("-p", "--reset-ecc-errors", true, "reset ECC error counts"),
    ("-c", "--compute-mode", true, "set compute mode"),
    ("-pl", "--power-limit", true, "set power limit"),
    ("-lgc", "--lock-gpu-clocks", true, "lock GPU clocks"),
    ("-rgc", "--reset-gpu-clocks", false, "reset GPU clocks"),
    ("-lmc", "--lock-memory-clocks", true, "lock memory clocks"),
    (
        "-rmc",
        "--reset-memory-clocks",
        false,
        "reset memory clocks",
    ),
    (
        "-ac",
        "--applications-clocks",
        true,
        "set applications clocks",
    ),
    (
        "-rac",
        "--reset-applications-clocks",
        false,
        "reset applications clocks",
    ),
    ("-mig", "--multi-instance-gpu", true, "set MIG mode"),
];

/// Answers `nvidia-smi ARGS`.
pub(crate) fn run(node: &SimNode, args: &[String]) -> CommandOutput {
    match args.first().map(String::as_str) {
        Some("dmon") => return nvidia_monitor::dmon(node, &args[1..]),
        Some("pmon") => return nvidia_monitor::pmon(node, &args[1..]),
        _ => {}
    }
    let Some(parsed) = parse_args(args) else {
        return usage_error();
    };
    let snap = &node.snapshot;
    let gpus = match selected(snap, parsed.ids.as_deref()) {
        Ok(g) => g,
        Err(not_found) => return not_found,
    };
    match parsed.mode {
        Mode::Help => CommandOutput::ok(help()),
        Mode::Summary => whole_node(&gpus, || summary(snap, &gpus)),
        Mode::Topo => whole_node(&gpus, || topo(snap, &gpus)),
        Mode::P2p(cap) => whole_node(&gpus, || p2p(snap, &gpus, cap)),
        Mode::List => per_gpu(&gpus, |g, out| {
            let _ = writeln!(out, "GPU {}: {} (UUID: {})", g.index, g.name, g.uuid);
        }),
        Mode::Query => query(snap, &gpus, parsed.display.as_deref()),
        Mode::QueryGpu(fields) => query_gpu(snap, &gpus, &fields, parsed.format.as_deref()),
        Mode::QueryApps(fields) => query_apps(snap, &gpus, &fields, parsed.format.as_deref()),
        Mode::NvlinkStatus => per_gpu(&gpus, |g, out| {
            let _ = writeln!(out, "GPU {}: {} (UUID: {})", g.index, g.name, g.uuid);
            for l in &g.nvlinks {
                match (l.active, l.speed_gbps) {
                    (true, Some(s)) => {
                        let _ = writeln!(out, "\t Link {}: {s:.3} GB/s", l.link);
                    }
                    _ => {
                        let _ = writeln!(out, "\t Link {}: <inactive>", l.link);
                    }
                }
            }
        }),
        Mode::NvlinkErrors => per_gpu(&gpus, |g, out| {
            let _ = writeln!(out, "GPU {}: {} (UUID: {})", g.index, g.name, g.uuid);
            for l in &g.nvlinks {
                let n = l.link;
                let _ = writeln!(out, "\t Link {n}: Replay Errors: {}", l.replay_errors);
                let _ = writeln!(out, "\t Link {n}: Recovery Errors: {}", l.recovery_errors);
                let _ = writeln!(out, "\t Link {n}: CRC Flit Errors: {}", l.crc_flit_errors);
                let _ = writeln!(out, "\t Link {n}: CRC Data Errors: {}", l.crc_data_errors);
            }
        }),
        Mode::StateChange(action) => {
            let mut stdout = String::new();
            if let Some(g) = gpus.first() {
                let _ = writeln!(
                    stdout,
                    "Unable to {action} for GPU {}: Insufficient Permissions",
                    g.pci_bus_id
                );
            }
            stdout.push_str("Terminating early due to previous errors.\n");
            printed(stdout, EXIT_PERMISSION)
        }
    }
}

/// Output nvidia-smi prints on stdout (it writes its errors there too).
pub(super) fn printed(stdout: String, exit_code: i32) -> CommandOutput {
    CommandOutput {
        stdout,
        stderr: String::new(),
        exit_code,
    }
}

/// nvidia-smi's answer to a command line it rejects.
pub(super) fn usage_error() -> CommandOutput {
    printed(USAGE_ERROR.to_string(), EXIT_USAGE)
}

/// Parses the arguments; `None` for a command line nvidia-smi rejects.
fn parse_args(args: &[String]) -> Option<Args> {
    let mut out = Args {
        mode: Mode::Summary,
        ids: None,
        display: None,
        format: None,
    };
    let mut rest = args.iter().map(String::as_str);
    let first = args.first().map(String::as_str);
    let sub = match first {
        Some("topo") | Some("nvlink") => {
            rest.next();
            first
        }
        _ => None,
    };
    let set_mode = |out: &mut Args, m: Mode| {
        if out.mode != Mode::Summary {
            return None;
        }
        out.mode = m;
        Some(())
    };
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg, None),
        };
        let value = |rest: &mut dyn Iterator<Item = &str>| {
            inline.clone().or_else(|| rest.next().map(str::to_string))
        };
        match (sub, flag) {
            (_, "-i" | "--id") => out.ids = Some(value(&mut rest)?),
            (Some("topo"), "-m" | "--matrix") => set_mode(&mut out, Mode::Topo)?,
            (Some("topo"), "-p2p" | "--p2pstatus") => {
                let cap = P2pCap::from_letter(&value(&mut rest)?)?;
                set_mode(&mut out, Mode::P2p(cap))?
            }
            (Some("nvlink"), "-s" | "--status") => set_mode(&mut out, Mode::NvlinkStatus)?,
            (Some("nvlink"), "-e" | "--errorcounters") => set_mode(&mut out, Mode::NvlinkErrors)?,
            (Some(_), _) => return None,
            (None, "-h" | "--help") => set_mode(&mut out, Mode::Help)?,
            (None, "-L" | "--list-gpus") => set_mode(&mut out, Mode::List)?,
            (None, "-q" | "--query") => set_mode(&mut out, Mode::Query)?,
            (None, "-d" | "--display") => out.display = Some(value(&mut rest)?),
            (None, "--format") => out.format = Some(value(&mut rest)?),
            (None, "--query-gpu") => {
                let v = value(&mut rest)?;
                set_mode(&mut out, Mode::QueryGpu(v))?
            }
            (None, "--query-compute-apps") => {
                let v = value(&mut rest)?;
                set_mode(&mut out, Mode::QueryApps(v))?
            }
            (None, f) => {
                let &(_, _, takes_value, action) = STATE_FLAGS
                    .iter()
                    .find(|(short, long, _, _)| f == *short || f == *long)?;
                if takes_value {
                    value(&mut rest)?;
                }
                set_mode(&mut out, Mode::StateChange(action))?
            }
        }
    }
    let valid = match (&out.mode, sub) {
        (_, Some(_)) => matches!(
            out.mode,
            Mode::Topo | Mode::P2p(_) | Mode::NvlinkStatus | Mode::NvlinkErrors
        ),
        (Mode::Query, _) => out.format.is_none(),
        (Mode::QueryGpu(_) | Mode::QueryApps(_), _) => out.format.is_some(),
        _ => out.display.is_none() && out.format.is_none(),
    };
    valid.then_some(out)
}

/// The GPUs `-i` selects (all without it), in index order, or nvidia-smi's
/// answer when an id names no GPU.
pub(super) fn selected<'a>(
    snap: &'a Snapshot,
    ids: Option<&str>,
) -> Result<Vec<&'a Gpu>, CommandOutput> {
    select(snap, ids).map_err(|()| printed("No devices were found\n".to_string(), EXIT_NOT_FOUND))
}

/// The GPUs `-i` selects (all without it), in index order; `Err` when an id
/// names no GPU.
fn select<'a>(snap: &'a Snapshot, ids: Option<&str>) -> Result<Vec<&'a Gpu>, ()> {
    let mut gpus: Vec<&Gpu> = snap.gpus.iter().collect();
    gpus.sort_by_key(|g| g.index);
    let Some(ids) = ids else {
        return Ok(gpus);
    };
    let mut chosen = Vec::new();
    for id in ids.split(',').map(str::trim) {
        let g = gpus
            .iter()
            .find(|g| {
                id.parse::<u32>().ok() == Some(g.index)
                    || g.uuid.eq_ignore_ascii_case(id)
                    || (id.contains(':') && normalize_bus_id(id) == normalize_bus_id(&g.pci_bus_id))
            })
            .ok_or(())?;
        if !chosen.iter().any(|c: &&Gpu| c.index == g.index) {
            chosen.push(*g);
        }
    }
    Ok(chosen)
}

/// The error nvidia-smi prints for a GPU that fell off the bus.
fn lost_line(g: &Gpu) -> String {
    let bus = g.pci_bus_id.to_ascii_uppercase();
    let (domain, rest) = bus.split_once(':').unwrap_or(("0", &bus));
    let domain = u32::from_str_radix(domain, 16).unwrap_or(0);
    format!("Unable to determine the device handle for GPU{domain:04X}:{rest}: Unknown Error\n")
}

/// A command about the whole node: any lost GPU makes it fail outright.
pub(super) fn whole_node(gpus: &[&Gpu], render: impl FnOnce() -> String) -> CommandOutput {
    let lost: String = gpus
        .iter()
        .filter(|g| g.lost)
        .map(|g| lost_line(g))
        .collect();
    if lost.is_empty() {
        CommandOutput::ok(render())
    } else {
        printed(lost, EXIT_GPU_LOST)
    }
}

/// A command answered GPU by GPU: a lost GPU prints its error in its place
/// and makes the exit code 15.
fn per_gpu(gpus: &[&Gpu], mut render: impl FnMut(&Gpu, &mut String)) -> CommandOutput {
    let mut stdout = String::new();
    let mut exit_code = 0;
    for g in gpus {
        if g.lost {
            stdout.push_str(&lost_line(g));
            exit_code = EXIT_GPU_LOST;
        } else {
            render(g, &mut stdout);
        }
    }
    printed(stdout, exit_code)
}

fn help() -> String {
    "NVIDIA System Management Interface -- v(simulated)\n\n\
     Simulated by sigma. Supported: (no options), -L, -q [-d SECTIONS], \
     --query-gpu=FIELDS --format=csv[,noheader][,nounits], \
     --query-compute-apps=FIELDS --format=csv, topo -m, topo -p2p r|w|n|a|p, \
     nvlink -s|-e, dmon, pmon, -i ID.\n"
        .to_string()
}

/// `Sat Nov 28 07:00:00 2026`.
fn ctime(snap: &Snapshot) -> String {
    taken_at(snap).format("%a %b %e %H:%M:%S %Y").to_string()
}

fn na<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "N/A".to_string(), |v| v.to_string())
}

fn driver_version(snap: &Snapshot) -> String {
    na(snap.nvidia.as_ref().map(|n| n.driver_version.clone()))
}

fn cuda_version(snap: &Snapshot) -> String {
    na(snap.nvidia.as_ref().and_then(|n| n.cuda_version.clone()))
}

/// Memory not in use, MiB.
fn memory_free(g: &Gpu) -> Option<u64> {
    Some(g.memory_total_mib?.saturating_sub(g.memory_used_mib?))
}

// ---------------------------------------------------------------------------
// Summary table

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

fn summary(snap: &Snapshot, gpus: &[&Gpu]) -> String {
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

// ---------------------------------------------------------------------------
// -q

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

fn query(snap: &Snapshot, gpus: &[&Gpu], display: Option<&str>) -> CommandOutput {
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

/// `0x233010DE`: device and vendor id from the matching PCI device.
fn pci_device_id(snap: &Snapshot, g: &Gpu) -> Option<String> {
    let want = normalize_bus_id(&g.pci_bus_id);
    snap.pci_gpus
        .iter()
        .find(|p| normalize_bus_id(&p.bdf) == want)
        .map(|p| {
            format!(
                "0x{}{}",
                p.device_id.to_ascii_uppercase(),
                p.vendor_id.to_ascii_uppercase()
            )
        })
}

// ---------------------------------------------------------------------------
// --query-gpu / --query-compute-apps

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

/// The driver wants the GPU reset: a pending row remap or page retirement
/// takes effect only then (`-q -d RESET_STATUS` and the `reset_status.*`
/// fields both answer from this).
fn needs_reset(g: &Gpu) -> bool {
    let remap = g.remapped_rows.as_ref().is_some_and(|r| r.pending);
    let retire = g.retired_pages.as_ref().is_some_and(|r| r.pending);
    remap || retire
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
        f("temperature.memory", |g, _| n(g.memory_temperature_c)),
        u("power.draw", "W", |g, _| watts(g.power_draw_w)),
        u("power.limit", "W", |g, _| watts(g.power_limit_w)),
        u("enforced.power.limit", "W", |g, _| watts(g.power_limit_w)),
        u("power.default_limit", "W", |g, _| {
            watts(g.power_default_limit_w)
        }),
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

fn query_gpu(snap: &Snapshot, gpus: &[&Gpu], fields: &str, format: Option<&str>) -> CommandOutput {
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

fn query_apps(snap: &Snapshot, gpus: &[&Gpu], fields: &str, format: Option<&str>) -> CommandOutput {
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

// ---------------------------------------------------------------------------
// topo -m

/// NUMA node of a GPU, from the matching PCI device.
fn numa(snap: &Snapshot, g: &Gpu) -> Option<i32> {
    let want = normalize_bus_id(&g.pci_bus_id);
    snap.pci_gpus
        .iter()
        .find(|p| normalize_bus_id(&p.bdf) == want)
        .and_then(|p| p.numa_node)
        .filter(|n| *n >= 0)
}

fn topo(snap: &Snapshot, gpus: &[&Gpu]) -> String {
    let numas: Vec<Option<i32>> = gpus.iter().map(|g| numa(snap, g)).collect();
    let nodes = snap
        .pci_gpus
        .iter()
        .filter_map(|p| p.numa_node)
        .max()
        .map_or(1, |m| m.max(0) as u32 + 1);
    let per_node = (snap.host.cpu_count / nodes).max(1);
    let mut o = String::from("\t");
    for g in gpus {
        let _ = write!(o, "GPU{}\t", g.index);
    }
    o += "CPU Affinity\tNUMA Affinity\tGPU NUMA ID\n";
    for (i, a) in gpus.iter().enumerate() {
        let _ = write!(o, "GPU{}\t", a.index);
        for (j, b) in gpus.iter().enumerate() {
            let links = a.nvlinks.iter().filter(|l| l.active).count();
            let cell = if i == j {
                " X ".to_string()
            } else if links > 0 && on_nvlink(b) {
                format!("NV{links}")
            } else if numas[i].is_some() && numas[i] == numas[j] {
                "NODE".to_string()
            } else {
                "SYS".to_string()
            };
            let _ = write!(o, "{cell}\t");
        }
        let (cpus, node) = match numas[i] {
            Some(n) => {
                let first = n as u32 * per_node;
                (format!("{first}-{}", first + per_node - 1), n.to_string())
            }
            None => ("N/A".to_string(), "N/A".to_string()),
        };
        let _ = writeln!(o, "{cpus}\t{node}\t\tN/A");
    }
    o += "\nLegend:\n\n";
    for line in [
        "X    = Self",
        "SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)",
        "NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node",
        "PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)",
        "PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)",
        "PIX  = Connection traversing at most a single PCIe bridge",
        "NV#  = Connection traversing a bonded set of # NVLinks",
    ] {
        let _ = writeln!(o, "  {line}");
    }
    o
}

/// Whether a GPU has an active NVLink (and so reaches its peers over the
/// NVLink fabric, as `topo -m` draws it).
fn on_nvlink(g: &Gpu) -> bool {
    g.nvlinks.iter().any(|l| l.active)
}

/// `topo -p2p CAP`: the status of each GPU pair for one capability. Peers
/// on NVLink support every capability; over PCIe, peers in one NUMA node
/// support reads, writes and PCIe access but not NVLink or atomics, and
/// peers in different NUMA nodes meet a chipset that does not support P2P.
fn p2p(snap: &Snapshot, gpus: &[&Gpu], cap: P2pCap) -> String {
    let numas: Vec<Option<i32>> = gpus.iter().map(|g| numa(snap, g)).collect();
    let mut o = String::from(" \t");
    for g in gpus {
        let _ = write!(o, "GPU{}\t", g.index);
    }
    o.push('\n');
    for (i, a) in gpus.iter().enumerate() {
        let _ = write!(o, " GPU{}\t", a.index);
        for (j, b) in gpus.iter().enumerate() {
            let same_node = numas[i].is_some() && numas[i] == numas[j];
            let cell = if i == j {
                "X"
            } else if on_nvlink(a) && on_nvlink(b) {
                "OK"
            } else {
                match cap {
                    P2pCap::Nvlink | P2pCap::Atomics => "NS",
                    _ if same_node => "OK",
                    _ => "CNS",
                }
            };
            let _ = write!(o, "{cell}\t");
        }
        o.push('\n');
    }
    o += "\nLegend:\n\n";
    for line in [
        "X    = Self",
        "OK   = Status Ok",
        "CNS  = Chipset not supported",
        "GNS  = GPU not supported",
        "TNS  = Topology not supported",
        "NS   = Not supported",
        "DR   = Disabled by regkey",
        "U    = Unknown",
    ] {
        let _ = writeln!(o, "  {line}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_modes_and_values() {
        let a = parse_args(&args("--query-gpu=index,name --format csv -i 0")).unwrap();
        assert_eq!(a.mode, Mode::QueryGpu("index,name".into()));
        assert_eq!(a.format.as_deref(), Some("csv"));
        assert_eq!(a.ids.as_deref(), Some("0"));
        assert_eq!(parse_args(&args("topo -m")).unwrap().mode, Mode::Topo);
        assert_eq!(
            parse_args(&args("nvlink -e -i 1")).unwrap().mode,
            Mode::NvlinkErrors
        );
    }

    #[test]
    fn rejects_bad_combinations() {
        assert!(parse_args(&args("--bogus")).is_none());
        assert!(parse_args(&args("-L -q")).is_none());
        assert!(parse_args(&args("--query-gpu=index")).is_none());
        assert!(parse_args(&args("topo")).is_none());
        assert!(parse_args(&args("nvlink -m")).is_none());
        assert!(parse_args(&args("-i")).is_none());
    }

    #[test]
    fn state_flags_are_recognised_with_their_values() {
        let a = parse_args(&args("-pm 1 -i 0")).unwrap();
        assert_eq!(a.mode, Mode::StateChange("set persistence mode"));
        assert_eq!(a.ids.as_deref(), Some("0"));
        assert_eq!(
            parse_args(&args("-r")).unwrap().mode,
            Mode::StateChange("reset GPU")
        );
    }

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

    #[test]
    fn lost_line_uses_four_digit_upper_case_domain() {
        let g = Gpu {
            pci_bus_id: "00000000:5d:00.0".into(),
            ..Gpu::default()
        };
        assert_eq!(
            lost_line(&g),
            "Unable to determine the device handle for GPU0000:5D:00.0: Unknown Error\n"
        );
    }

    #[test]
    fn field_names_are_unique() {
        let mut names = query_gpu_fields().to_vec();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn long_names_are_cut_from_the_front() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("/usr/bin/python3", 10), "...python3");
    }
}
