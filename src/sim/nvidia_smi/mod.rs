//! `nvidia-smi`, answered from the snapshot.
//!
//! This module parses the command line, selects the GPUs (`-i`) and answers
//! `-L`, `nvlink` and the state-changing flags; one file each answers the
//! larger families: [`summary`] (no arguments), [`report`] (`-q`),
//! [`query`] (`--query-gpu`, `--query-compute-apps`,
//! `--query-remapped-rows`) and [`topo`].
//!
//! Supported: the summary table (no arguments), `-L`, `-q` with
//! `-d SECTION[,SECTION]`, `--query-gpu=FIELDS --format=csv[,noheader][,nounits]`
//! ([`query_gpu_fields`] lists the fields), `--query-compute-apps=...`,
//! `--query-remapped-rows=...`, `topo -m`, `topo -p2p r|w|n|a|p`,
//! `nvlink -s` / `-e` / `-c`, and `dmon` / `pmon` (in
//! [`super::nvidia_monitor`]); `-i`/`--id` (index, UUID, board serial or PCI
//! bus id in any spelling) filters all of them. Layouts follow driver 550. A GPU with `lost = true` answers
//! `Unable to determine the device handle ...` and the exit code is 15, as
//! with the real tool. State-changing flags (`-r`, `-pm`, `-pl`, ...) answer
//! "Insufficient Permissions" (exit 4): a simulated node never changes.

mod query;
mod report;
mod summary;
mod topo;

use std::fmt::Write as _;

use super::{CommandOutput, SimNode, nvidia_monitor, taken_at};
use crate::probe::{Gpu, Snapshot, normalize_bus_id};
pub use query::query_gpu_fields;
use query::{query_apps, query_gpu, query_remapped};
use report::query;
use summary::summary;
use topo::{p2p, topo};

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
    /// `--query-remapped-rows=FIELDS`.
    QueryRemapped(String),
    Topo,
    /// `topo -p2p CAP`: the peer-to-peer status matrix for one capability.
    P2p(P2pCap),
    NvlinkStatus,
    NvlinkErrors,
    /// `nvlink -c`: what each active link supports.
    NvlinkCapabilities,
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

/// `nvlink -c`'s lines for one link, in nvidia-smi's order, with the
/// answers of an SXM board on an NVLink fabric.
const NVLINK_CAPABILITIES: [(&str, bool); 6] = [
    ("P2P is supported", true),
    ("Access to system memory supported", true),
    ("P2P atomics supported", true),
    ("System memory atomics supported", true),
    ("SLI is supported", true),
    ("Link is supported", false),
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
        Mode::QueryRemapped(fields) => {
            query_remapped(snap, &gpus, &fields, parsed.format.as_deref())
        }
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
        Mode::NvlinkCapabilities => per_gpu(&gpus, |g, out| {
            let _ = writeln!(out, "GPU {}: {} (UUID: {})", g.index, g.name, g.uuid);
            // Only links that are up report capabilities; every simulated
            // link answers as an A100 or H100 SXM board's does.
            for l in g.nvlinks.iter().filter(|l| l.active) {
                for (what, supported) in NVLINK_CAPABILITIES {
                    let _ = writeln!(out, "\t Link {}, {what}: {supported}", l.link);
                }
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
        exit_code,
        ..CommandOutput::default()
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
            (Some("nvlink"), "-c" | "--capabilities") => {
                set_mode(&mut out, Mode::NvlinkCapabilities)?
            }
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
            (None, "--query-remapped-rows") => {
                let v = value(&mut rest)?;
                set_mode(&mut out, Mode::QueryRemapped(v))?
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
            Mode::Topo
                | Mode::P2p(_)
                | Mode::NvlinkStatus
                | Mode::NvlinkErrors
                | Mode::NvlinkCapabilities
        ),
        (Mode::Query, _) => out.format.is_none(),
        (Mode::QueryGpu(_) | Mode::QueryApps(_) | Mode::QueryRemapped(_), _) => {
            out.format.is_some()
        }
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
        let g = gpus.iter().find(|g| names_gpu(id, g)).ok_or(())?;
        if !chosen.iter().any(|c: &&Gpu| c.index == g.index) {
            chosen.push(*g);
        }
    }
    Ok(chosen)
}

/// Whether `-i ID` names `g`: its index, UUID, board serial number, or
/// PCI bus id (`domain:bus:device.function` in hex, the domain and the
/// function optional, any case, so `00000000:B7:00.0`, `0000:b7:00.0` and
/// `b7:00.0` are one GPU).
fn names_gpu(id: &str, g: &Gpu) -> bool {
    if id.parse::<u32>().is_ok_and(|index| index == g.index)
        || g.uuid.eq_ignore_ascii_case(id)
        || g.serial.as_deref() == Some(id)
    {
        return true;
    }
    // normalize_bus_id drops the function; a GPU is always function 0.
    let function = id.split_once('.').map_or("0", |(_, f)| f);
    id.contains(':')
        && function.trim_start_matches('0').is_empty()
        && normalize_bus_id(id) == normalize_bus_id(&g.pci_bus_id)
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
     --query-compute-apps=FIELDS --format=csv, \
     --query-remapped-rows=FIELDS --format=csv, topo -m, topo -p2p r|w|n|a|p, \
     nvlink -s|-e|-c, dmon, pmon, -i ID.\n"
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

/// The driver wants the GPU reset: a pending row remap or page retirement
/// takes effect only then (`-q -d RESET_STATUS` and the `reset_status.*`
/// fields both answer from this).
fn needs_reset(g: &Gpu) -> bool {
    let remap = g.remapped_rows.as_ref().is_some_and(|r| r.pending);
    let retire = g.retired_pages.as_ref().is_some_and(|r| r.pending);
    remap || retire
}

/// Memory not in use, MiB.
fn memory_free(g: &Gpu) -> Option<u64> {
    Some(g.memory_total_mib?.saturating_sub(g.memory_used_mib?))
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
    fn parses_remapped_rows_and_nvlink_capabilities() {
        let a = parse_args(&args("--query-remapped-rows=gpu_bus_id --format=csv -i 1")).unwrap();
        assert_eq!(a.mode, Mode::QueryRemapped("gpu_bus_id".into()));
        assert!(parse_args(&args("--query-remapped-rows=gpu_bus_id")).is_none());
        assert_eq!(
            parse_args(&args("nvlink --capabilities -i 0"))
                .unwrap()
                .mode,
            Mode::NvlinkCapabilities
        );
        assert!(parse_args(&args("-c")).is_none(), "-c needs a compute mode");
    }

    #[test]
    fn ids_name_a_gpu_by_index_uuid_serial_or_any_bus_id_spelling() {
        let g = Gpu {
            index: 3,
            uuid: "GPU-abc".into(),
            serial: Some("1654922012345".into()),
            pci_bus_id: "00000000:B7:00.0".into(),
            ..Gpu::default()
        };
        for id in [
            "3",
            "gpu-ABC",
            "1654922012345",
            "00000000:B7:00.0",
            "00000000:b7:00.0",
            "0000:b7:00.0",
            "0000:B7:00",
            "b7:00.0",
            "B7:00.0",
        ] {
            assert!(names_gpu(id, &g), "{id}");
        }
        for id in ["4", "b7:00.1", "0001:b7:00.0", "b8:00.0", "GPU-abd", "b7"] {
            assert!(!names_gpu(id, &g), "{id}");
        }
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
}
