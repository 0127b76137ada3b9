//! Fitting a reference command to the question: the GPUs, PCI device,
//! InfiniBand adapter or process the operator names replace the example's.
//!
//! Catalogue examples are written for some GPU or none (`nvidia-smi -q -i 3
//! -d ECC`, `ps -fp 12345`); a question names its own ("ECC counts for GPU
//! 4", "what is pid 48213 doing"). Small models copy references faithfully
//! but adapt them badly, so the adaptation is done here, deterministically,
//! and the model chooses among adapted commands.

use std::sync::OnceLock;

use regex::Regex;

use crate::guard::{self, catalogue::Catalogue, catalogue::Tool};
use crate::probe::{Snapshot, normalize_bus_id};

/// What a question points at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// GPU indexes named ("GPU 3", "GPUs 4-7", "gpus 2 and 5"); empty when
    /// none, or when the question is about every GPU.
    pub gpus: Vec<u32>,
    /// A PCI address, short form (`3d:00.0`): named in the question, or the
    /// bus of the one GPU named.
    pub bus: Option<String>,
    /// An InfiniBand adapter named (`mlx5_3`).
    pub hca: Option<String>,
    /// A process: named (`pid 48213`), or the one holding the most memory
    /// on the GPUs named.
    pub pid: Option<u32>,
    /// The process was named by its id, not inferred from the GPUs.
    pub pid_named: bool,
    /// A power limit in watts ("set it back to 700 W"): the last one named.
    pub watts: Option<u32>,
    /// Message sizes for an NCCL test ("from 8 bytes to 1 GB", "8B..1G"),
    /// in nccl-tests' notation (`8`, `1G`): the first two named.
    pub sizes: Option<(String, String)>,
    /// GPUs on the node: what an NCCL test spans (`-g`).
    pub gpu_count: usize,
    /// The question is about every GPU ("all GPUs", "each card").
    pub every: bool,
    /// The question sets the GPUs named against the others ("slower than
    /// the other 3", "Gen4 same like the other cards"): a read-only table
    /// then shows every GPU, the comparison included.
    pub compared: bool,
}

fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("valid regex"))
}

fn gpu_regex() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    regex(
        &R,
        r"(?i)\b(?:gpus?|cards?|cuda:|idx)\s*#?\s*(\d+)(?:\s*(?:-|–|to)\s*(\d+))?((?:\s*(?:,|and|&)\s*\d+)*)",
    )
}

fn compared_regex() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    regex(
        &R,
        r"(?i)\b(?:than|vs\.?|versus|like|as|to|with|against)\s+(?:(?:on|in|for)\s+)?(?:all\s+)?(?:the|its)\s+(?:others?|rest|siblings|neighbou?rs)\b|\bthe other (?:\d+|two|three|four|five|six|seven)\b",
    )
}

fn bus_regex() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    regex(
        &R,
        r"(?i)\b(?:([0-9a-f]{4,8}):)?([0-9a-f]{2}:[0-9a-f]{2}\.[0-7])\b",
    )
}

fn hca_regex() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    regex(&R, r"\bmlx5_\d+\b")
}

/// Whether `command` names a PCI address that is neither one of the node's
/// GPUs nor in `question`: an example's address left unfitted, which would
/// read a device that does not exist.
pub fn names_unknown_device(command: &str, question: &str, snapshot: &Snapshot) -> bool {
    let known = |bus: &str| {
        let want = normalize_bus_id(bus);
        snapshot
            .pci_gpus
            .iter()
            .map(|p| p.bdf.as_str())
            .chain(snapshot.gpus.iter().map(|g| g.pci_bus_id.as_str()))
            .any(|b| normalize_bus_id(b) == want)
    };
    let asked: Vec<String> = bus_regex()
        .captures_iter(question)
        .map(|c| normalize_bus_id(&c[0]))
        .collect();
    bus_regex().captures_iter(command).any(|c| {
        let bus = &c[0];
        !known(bus) && !asked.contains(&normalize_bus_id(bus))
    })
}

/// Whole numbers.
fn number_regex() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    regex(&R, r"\b\d+\b")
}

fn pid_regex() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    regex(&R, r"(?i)\b(?:pid|process|kill(?:\s+-\w+)?)\s*#?\s*(\d+)\b")
}

fn watts_regex() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    regex(&R, r"(?i)\b(\d{2,4})\s*(?:w|watts?)\b")
}

fn size_regex() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    regex(&R, r"(?i)\b(\d+)\s*(bytes?|b|kib|kb|k|mib|mb|m|gib|gb|g)\b")
}

/// A size as nccl-tests writes it: `8 bytes` gives `8`, `1 GB` gives `1G`.
fn nccl_size(number: &str, unit: &str) -> String {
    match unit.to_ascii_lowercase().chars().next() {
        Some('k') => format!("{number}K"),
        Some('m') => format!("{number}M"),
        Some('g') => format!("{number}G"),
        _ => number.to_string(),
    }
}

fn uuid_regex() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    regex(&R, r"(?i)\bGPU-[0-9a-f]{8}-[0-9a-f-]{27}\b")
}

fn every_gpu_regex() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    regex(
        &R,
        r"(?i)\b(?:every|each|all(?: the| of the)?|both|per)(?:\s+(?:\d+|two|four|eight|sixteen))?\s+(?:gpus?|cards?)\b|\b(?:every|each|all(?: the| of the)?(?:\s+\d+)?)\s+(?:[abhl]\d{2,3}[a-z]*|mi\d{3}[a-z]*|g[hb]\d{3})s?\b|\ball of (?:them|em)\b|\b(?:them|em) all\b|\ball (?:\d+|four|eight)(?:\s*(?:[.,;!?]|$)|\s+(?:back|to|at)\b)",
    )
}

/// `question` with the driver's PCI addresses (`NVRM: Xid (PCI:0000:b7:00)`,
/// no function) given their function, `0000:b7:00.0`, so they name a GPU.
fn with_nvrm_functions(question: &str) -> String {
    static R: OnceLock<Regex> = OnceLock::new();
    let nvrm = regex(&R, r"(?i)\bPCI:([0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2})\b");
    let mut out = String::with_capacity(question.len() + 8);
    let mut last = 0;
    for c in nvrm.captures_iter(question) {
        let (all, address) = (c.get(0).expect("match"), c.get(1).expect("group"));
        // `PCI:0000:b7:00.0` has its function; `PCI:0000:b7:00.` ends a sentence.
        let mut after = question[all.end()..].chars();
        if after.next() == Some('.') && after.next().is_some_and(|c| c.is_ascii_digit()) {
            continue;
        }
        out.push_str(&question[last..address.end()]);
        out.push_str(".0");
        last = address.end();
    }
    out.push_str(&question[last..]);
    out
}

/// The short, lower-case form of a PCI address (`00000000:3D:00.0` gives
/// `3d:00.0`).
pub(crate) fn short_bus(bus: &str) -> Option<String> {
    bus_regex().captures(bus).map(|c| c[2].to_ascii_lowercase())
}

impl Targets {
    /// What `question` names, resolved against the node.
    pub fn of(question: &str, snapshot: &Snapshot) -> Targets {
        let question = &with_nvrm_functions(question);
        let mut gpus = Vec::new();
        for c in gpu_regex().captures_iter(question) {
            // "GPU 00000000:B7:00.0" names a bus id, not GPU 0.
            let after = &question[c.get(0).map_or(0, |m| m.end())..];
            let mut next = after.chars();
            if matches!(
                (next.next(), next.next()),
                (Some(':'), Some('0'..='9' | 'a'..='f' | 'A'..='F')) | (Some('.'), Some('0'..='9'))
            ) {
                continue;
            }
            let Ok(first) = c[1].parse::<u32>() else {
                continue;
            };
            match c.get(2).and_then(|m| m.as_str().parse::<u32>().ok()) {
                Some(last) if last >= first && last - first < 64 => gpus.extend(first..=last),
                _ => gpus.push(first),
            }
            if let Some(more) = c.get(3) {
                gpus.extend(
                    more.as_str()
                        .split(|ch: char| !ch.is_ascii_digit())
                        .filter_map(|n| n.parse::<u32>().ok()),
                );
            }
        }
        // A GPU named by its PCI bus id or UUID is that GPU.
        for selector in bus_regex()
            .find_iter(question)
            .chain(uuid_regex().find_iter(question))
        {
            if let Some(index) = super::change::resolve_gpu(selector.as_str(), snapshot)
                && !gpus.contains(&index)
            {
                gpus.push(index);
            }
        }
        gpus.dedup();
        let named_gpus = gpus.clone();
        // "GPU 4 only, not all eight GPUs": the GPUs named win.
        static ONLY: OnceLock<Regex> = OnceLock::new();
        let only = regex(&ONLY, r"(?i)\bonly\b").is_match(question);
        let every = every_gpu_regex().is_match(question) && (!only || gpus.is_empty());
        if every {
            gpus.clear();
        }
        let bus = short_bus(question).or_else(|| match named_gpus.as_slice() {
            [one] => snapshot
                .gpus
                .iter()
                .find(|g| g.index == *one)
                .and_then(|g| short_bus(&g.pci_bus_id)),
            _ => None,
        });
        // "the FW version of each HCA (mlx5_3's port is down)" is about all.
        static EVERY_HCA: OnceLock<Regex> = OnceLock::new();
        let every_hca = regex(
            &EVERY_HCA,
            r"(?i)\b(?:each|every|all)(?: of)?(?: the)? (?:mellanox |infiniband |ib )?(?:hcas?|adapters?|nics?)\b",
        );
        let hca = (!every_hca.is_match(question))
            .then(|| hca_regex().find(question).map(|m| m.as_str().to_string()))
            .flatten();
        let named_pid = pid_regex()
            .captures(question)
            .and_then(|c| c[1].parse().ok())
            .or_else(|| {
                // a bare number that is the PID of a process on a GPU
                let on_gpus = || snapshot.gpus.iter().flat_map(|g| &g.processes);
                number_regex()
                    .find_iter(question)
                    .filter_map(|m| m.as_str().parse::<u32>().ok())
                    .find(|n| on_gpus().any(|p| p.pid == *n))
            });
        let pid = named_pid.or_else(|| {
            snapshot
                .gpus
                .iter()
                .filter(|g| named_gpus.contains(&g.index))
                .flat_map(|g| &g.processes)
                .max_by_key(|p| p.used_memory_mib.unwrap_or(0))
                .map(|p| p.pid)
        });
        let watts = watts_regex()
            .captures_iter(question)
            .filter_map(|c| c[1].parse().ok())
            .last();
        let sizes: Vec<String> = size_regex()
            .captures_iter(question)
            .map(|c| nccl_size(&c[1], &c[2]))
            .collect();
        Targets {
            gpus,
            bus,
            hca,
            pid,
            // `(pid 0)` in a pasted kernel line names no process.
            pid_named: named_pid.is_some_and(|p| p > 0),
            watts,
            sizes: match sizes.as_slice() {
                [from, to, ..] => Some((from.clone(), to.clone())),
                _ => None,
            },
            gpu_count: snapshot.gpus.len().max(snapshot.amd_gpus.len()),
            every,
            compared: compared_regex().is_match(question),
        }
    }
}

/// `command` fitted to `targets`: the GPU selector of its program set to
/// the one GPU named (added where the program takes one; removed when the
/// question names none or several, whose answer is the whole table), PCI
/// addresses, `mlx5_N` adapters, process ids, a power limit and NCCL test
/// sizes and GPU count replaced by the ones named. A command that does not
/// split into shell words comes back unchanged.
pub fn adapt(command: &str, targets: &Targets) -> String {
    let Ok(words) = shell_words::split(command) else {
        return command.to_string();
    };
    let mut segments: Vec<Vec<String>> =
        words.split(|w| w == "|").map(<[String]>::to_vec).collect();
    // A state change applies to exactly the GPUs named, several included
    // (`-i 2,5`); a read-only answer about several is the whole table.
    let exact = targets.gpus.len() > 1 && guard::check(command).tier == guard::Tier::StateChanging;
    if let Some(first) = segments.first_mut() {
        // Some reports are the node's: a process table (a stuck job holds
        // several GPUs, and the bus id column says which), AMD's RAS and
        // bad-page tables (the healthy GPUs are the comparison).
        let per_node = first.iter().any(|w| {
            w.starts_with("--query-compute-apps")
                || matches!(w.as_str(), "--showras" | "--showpagesinfo")
        });
        let whole = per_node
            || (targets.compared && guard::check(command).tier != guard::Tier::StateChanging);
        let gpus: &[u32] = if whole { &[] } else { &targets.gpus };
        scope_gpus(first, gpus, exact);
        set_values(first, targets);
        match &targets.hca {
            Some(hca) => add_adapter(first, hca),
            None => drop_adapter(first),
        }
    }
    for segment in &mut segments {
        let is_process_tool = matches!(segment.first().map(String::as_str), Some("ps" | "top"));
        for word in segment.iter_mut().skip(1) {
            if let Some(bus) = &targets.bus {
                *word = replace_bus(word, bus);
            }
            if let Some(hca) = &targets.hca {
                *word = hca_regex().replace_all(word, hca.as_str()).into_owned();
            }
            if let Some(pid) = targets.pid {
                *word = replace_pid(word, pid, is_process_tool);
            }
        }
    }
    segments
        .iter()
        .map(|s| {
            s.iter()
                .map(|w| guard::quote(w))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Drops an example's InfiniBand adapter (`ibstat mlx5_0`, `ibv_devinfo
/// -d mlx5_0`) when the question names none: the answer covers them all.
/// Paths that name one (`/sys/class/infiniband/mlx5_0/...`) keep it.
fn drop_adapter(words: &mut Vec<String>) {
    let Some(i) = words
        .iter()
        .position(|w| hca_regex().find(w).is_some_and(|m| m.as_str() == w))
    else {
        return;
    };
    let flag_before = i >= 2 && matches!(words[i - 1].as_str(), "-d" | "--ib-dev" | "-C" | "--Ca");
    let from = if flag_before { i - 1 } else { i };
    words.drain(from..=i);
}

/// Scopes an adapter tool to the InfiniBand adapter the question names
/// (`ibstat` gives `ibstat mlx5_3`, `ibv_devinfo` gives `ibv_devinfo -d
/// mlx5_3`) when the example names none.
fn add_adapter(words: &mut Vec<String>, hca: &str) {
    if words.iter().any(|w| hca_regex().is_match(w)) {
        return;
    }
    match words.first().map(String::as_str) {
        Some("ibstat") if words.len() == 1 => words.push(hca.to_string()),
        Some("ibv_devinfo") => words.extend(["-d".to_string(), hca.to_string()]),
        _ => {}
    }
}

/// Replaces the values the question gives: `nvidia-smi -pl W`, and an
/// NCCL test's `-b`/`-e` sizes and `-g` GPU count.
fn set_values(words: &mut [String], targets: &Targets) {
    let program = words.first().cloned().unwrap_or_default();
    let nccl_test = program.ends_with("_perf");
    let mut set = |flags: &[&str], value: &str| {
        if let Some(i) = words.iter().position(|w| flags.contains(&w.as_str()))
            && let Some(v) = words.get_mut(i + 1)
        {
            *v = value.to_string();
        }
    };
    if program == "nvidia-smi"
        && let Some(w) = targets.watts
    {
        set(&["-pl", "--power-limit"], &w.to_string());
    }
    if nccl_test {
        if let Some((from, to)) = &targets.sizes {
            set(&["-b", "--minbytes"], from);
            set(&["-e", "--maxbytes"], to);
        }
        if targets.gpu_count > 0 {
            set(&["-g", "--ngpus"], &targets.gpu_count.to_string());
        }
    }
}

/// Sets, adds or removes the GPU selector of one program's words. A
/// `--query-gpu` table keeps its `index` column scoped to one GPU: the
/// row says which GPU it is, as operators' tables do.
fn scope_gpus(words: &mut Vec<String>, gpus: &[u32], exact: bool) {
    let Some(tool) = words.first().and_then(|p| Catalogue::builtin().tool(p)) else {
        return;
    };
    let (scope, insert_at) = match words.get(1).and_then(|w| tool.subcommand(w)) {
        Some(sub) => (sub, 2),
        None => (tool, 1),
    };
    let Some(flag) = gpu_flag(tool, scope) else {
        return;
    };
    let short = flag.names.first().cloned().unwrap_or_default();
    let long_eq: Vec<String> = flag
        .names
        .iter()
        .filter(|n| n.starts_with("--"))
        .map(|n| format!("{n}="))
        .collect();
    let at = words
        .iter()
        .position(|w| flag.names.contains(w) || long_eq.iter().any(|p| w.starts_with(p.as_str())));
    let value = match gpus {
        [one] => Some(one.to_string()),
        [_, _, ..] if exact => Some(
            gpus.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                // NVIDIA selectors are comma-separated, `rocm-smi -d` takes words.
                .join(if flag.arg == guard::catalogue::ArgKind::Gpu {
                    ","
                } else {
                    " "
                }),
        ),
        _ => None,
    };
    match (at, value) {
        (Some(i), Some(v)) if words[i].contains('=') => {
            let name = words[i].split('=').next().unwrap_or_default().to_string();
            words[i] = format!("{name}={v}");
        }
        (Some(i), Some(v)) => match words.get_mut(i + 1) {
            Some(w) => *w = v,
            None => words.push(v),
        },
        (Some(i), None) => {
            let n = if words[i].contains('=') { 1 } else { 2 };
            words.drain(i..(i + n).min(words.len()));
        }
        (None, Some(v)) => {
            let at = insert_at.min(words.len());
            words.splice(at..at, [short, v]);
        }
        (None, None) => {}
    }
}

/// The flag of `scope` (or of `tool`, when its flags stay valid after a
/// subcommand) that selects GPUs.
fn gpu_flag<'a>(tool: &'a Tool, scope: &'a Tool) -> Option<&'a guard::catalogue::Flag> {
    let inherited: &[guard::catalogue::Flag] = if tool.global_flags { &tool.flag } else { &[] };
    scope
        .flag
        .iter()
        .chain(inherited)
        .find(|f| f.selects_gpus())
}

/// Replaces a PCI address in `word` by `bus`, keeping a domain prefix when
/// the word had one.
fn replace_bus(word: &str, bus: &str) -> String {
    bus_regex()
        .replace_all(word, |c: &regex::Captures<'_>| match c.get(1) {
            Some(domain) => format!("{}:{bus}", "0".repeat(domain.as_str().len())),
            None => bus.to_string(),
        })
        .into_owned()
}

/// Replaces a process id: `/proc/N/...` anywhere, and for `ps`/`top` a word
/// of digits (`12345`) or the digits ending a combined flag (`-fp12345`).
fn replace_pid(word: &str, pid: u32, is_process_tool: bool) -> String {
    static PROC: OnceLock<Regex> = OnceLock::new();
    let proc_path = regex(&PROC, r"^/proc/\d+/");
    if proc_path.is_match(word) {
        return proc_path
            .replace(word, format!("/proc/{pid}/").as_str())
            .into_owned();
    }
    if is_process_tool && word.len() >= 3 && word.chars().all(|c| c.is_ascii_digit()) {
        return pid.to_string();
    }
    word.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Snapshot {
        crate::sim::load(name).expect("sim loads").snapshot
    }

    #[test]
    fn a_pci_address_must_be_on_the_node_or_in_the_question() {
        let s = node("h100x8-xid79");
        let info = "cat /proc/driver/nvidia/gpus/0000:17:00.0/information";
        assert!(names_unknown_device(info, "what is wrong?", &s));
        assert!(!names_unknown_device(info, "what is 17:00.0?", &s));
        let on_node = "lspci -vvv -s 5d:00.0";
        assert!(!names_unknown_device(on_node, "what is wrong?", &s));
        assert!(!names_unknown_device("nvidia-smi -q", "why?", &s));
    }

    #[test]
    fn targets_read_gpus_ranges_buses_adapters_and_pids() {
        let s = node("h100x8-stuck-memory");
        let t = Targets::of("GPUs 4-7 are full. Who holds them?", &s);
        assert_eq!(t.gpus, vec![4, 5, 6, 7]);
        assert!(t.pid.is_some(), "the process on GPUs 4-7: {t:?}");
        let t = Targets::of("what is pid 48213 doing", &s);
        assert_eq!((t.gpus.clone(), t.pid), (vec![], Some(48213)));
        assert_eq!(Targets::of("just kill -9 48213", &s).pid, Some(48213));
        let t = Targets::of("Show mlx5_3's state and LnkSta of bus 3d:00.0", &s);
        assert_eq!(t.hca.as_deref(), Some("mlx5_3"));
        assert_eq!(t.bus.as_deref(), Some("3d:00.0"));
        let t = Targets::of("gpus 2 and 5", &s);
        assert_eq!(t.gpus, vec![2, 5]);
        assert_eq!(Targets::of("L40S idx1: LnkSta please", &s).gpus, vec![1]);
        let t = Targets::of("Show power for every GPU; GPU 2 looks hot", &s);
        assert!(t.gpus.is_empty(), "{t:?}");
        assert!(Targets::of("set them all back to 700W", &s).every);
        assert!(Targets::of("undo that: all 8 back to 700 W", &s).every);
        assert!(!Targets::of("all 8 ranks are slow", &s).every);
        assert!(Targets::of("replay counts on all the L40S in this box", &s).every);
        assert!(Targets::of("put every H100 back to 700 W", &s).every);
    }

    #[test]
    fn a_gpu_set_against_the_others_is_shown_with_them() {
        let s = node("l40s-pcie-degraded");
        let table = "nvidia-smi --query-gpu=index,pcie.link.gen.current --format=csv";
        for q in [
            "gpu1 is way slower than the other 3. did its link train down?",
            "How I check GPU 1 link is Gen4 x16 same like the other cards?",
            "H2D copies on gpu1 are 4x slower than on the others",
        ] {
            let t = Targets::of(q, &s);
            assert!(t.compared, "{q}");
            assert_eq!(adapt(table, &t), table, "{q}");
        }
        let t = Targets::of("did gpu1's link train down?", &s);
        assert!(!t.compared);
        assert_eq!(
            adapt(table, &t),
            "nvidia-smi -i 1 --query-gpu=index,pcie.link.gen.current --format=csv"
        );
        // A change stays on the GPUs named whatever the others do.
        let t = Targets::of("reset GPU 1 only, the other 3 have jobs", &s);
        assert!(t.compared);
        assert_eq!(adapt("nvidia-smi -r -i 0", &t), "nvidia-smi -r -i 1");
    }

    #[test]
    fn the_one_gpu_named_gives_its_bus() {
        let s = node("h100x8-thermal-throttle");
        let t = Targets::of("Why is GPU 2 slow?", &s);
        assert_eq!(t.gpus, vec![2]);
        let bus = s
            .gpus
            .iter()
            .find(|g| g.index == 2)
            .unwrap()
            .pci_bus_id
            .clone();
        assert_eq!(t.bus, short_bus(&bus));
    }

    #[test]
    fn gpu_selectors_are_set_added_and_removed() {
        let gpu = |g: &[u32]| Targets {
            gpus: g.to_vec(),
            ..Targets::default()
        };
        assert_eq!(
            adapt("nvidia-smi -q -i 3 -d ECC", &gpu(&[6])),
            "nvidia-smi -q -i 6 -d ECC"
        );
        assert_eq!(
            adapt("nvidia-smi -q -i 3 -d ECC", &gpu(&[])),
            "nvidia-smi -q -d ECC"
        );
        assert_eq!(
            adapt(
                "nvidia-smi --query-gpu=index,power.draw --format=csv",
                &gpu(&[4])
            ),
            "nvidia-smi -i 4 --query-gpu=index,power.draw --format=csv"
        );
        // Several GPUs: the whole table answers.
        assert_eq!(
            adapt(
                "nvidia-smi -i 3 --query-gpu=index,power.draw --format=csv",
                &gpu(&[4, 5])
            ),
            "nvidia-smi --query-gpu=index,power.draw --format=csv"
        );
        assert_eq!(
            adapt("nvidia-smi nvlink -e", &gpu(&[5])),
            "nvidia-smi nvlink -i 5 -e"
        );
        assert_eq!(
            adapt("nvidia-smi --id=1 -q", &gpu(&[2])),
            "nvidia-smi --id=2 -q"
        );
        // topo's -i only means something with -n or -p.
        assert_eq!(
            adapt("nvidia-smi topo -m", &gpu(&[4])),
            "nvidia-smi topo -m"
        );
        // Node-wide tables stay whole: the other GPUs are the comparison.
        assert_eq!(
            adapt("rocm-smi --showras", &gpu(&[4])),
            "rocm-smi --showras"
        );
        assert_eq!(
            adapt(
                "nvidia-smi -i 0 --query-compute-apps=pid,used_memory --format=csv",
                &gpu(&[6])
            ),
            "nvidia-smi --query-compute-apps=pid,used_memory --format=csv"
        );
        assert_eq!(
            adapt("amd-smi metric --ecc", &gpu(&[4])),
            "amd-smi metric -g 4 --ecc"
        );
        assert_eq!(
            adapt("amd-smi metric --ecc", &gpu(&[4, 5])),
            "amd-smi metric --ecc"
        );
        // Programs without a selector are untouched.
        assert_eq!(
            adapt("dmesg -T | grep -i xid", &gpu(&[2])),
            "dmesg -T | grep -i xid"
        );
    }

    #[test]
    fn buses_adapters_and_pids_are_replaced() {
        let t = Targets {
            bus: Some("3d:00.0".into()),
            hca: Some("mlx5_3".into()),
            pid: Some(48213),
            ..Targets::default()
        };
        assert_eq!(
            adapt("lspci -vvv -s 17:00.0 | grep -E 'LnkCap|LnkSta'", &t),
            "lspci -vvv -s 3d:00.0 | grep -E 'LnkCap|LnkSta'"
        );
        assert_eq!(
            adapt(
                "cat /sys/bus/pci/devices/0000:17:00.0/current_link_speed",
                &t
            ),
            "cat /sys/bus/pci/devices/0000:3d:00.0/current_link_speed"
        );
        assert_eq!(adapt("ibstat mlx5_0", &t), "ibstat mlx5_3");
        // The adapter named scopes a tool that takes one.
        assert_eq!(adapt("ibstat", &t), "ibstat mlx5_3");
        assert_eq!(adapt("ibv_devinfo", &t), "ibv_devinfo -d mlx5_3");
        let none = Targets::default();
        assert_eq!(adapt("ibstat mlx5_0", &none), "ibstat");
        assert_eq!(adapt("ibv_devinfo -d mlx5_0 -v", &none), "ibv_devinfo -v");
        assert_eq!(adapt("ps -fp 12345", &t), "ps -fp 48213");
        let t = Targets::of(
            "Someone capped them at 400 W. Set the power limit back to 700 W.",
            &node("h100x8-healthy"),
        );
        assert_eq!(adapt("nvidia-smi -pl 500", &t), "nvidia-smi -pl 700");
        let mut t = Targets::of("nccl allreduce test, 8B..1G", &node("h100x8-healthy"));
        assert_eq!(t.sizes, Some(("8".into(), "1G".into())));
        t.gpu_count = 4;
        assert_eq!(
            adapt("all_reduce_perf -b 8 -e 8G -f 2 -g 8", &t),
            "all_reduce_perf -b 8 -e 1G -f 2 -g 4"
        );
        let t = Targets {
            pid: Some(48213),
            ..Targets::default()
        };
        assert_eq!(adapt("ps -o pid,cmd -p 1234", &t), "ps -o pid,cmd -p 48213");
        assert_eq!(adapt("cat /proc/1234/status", &t), "cat /proc/48213/status");
    }
}
