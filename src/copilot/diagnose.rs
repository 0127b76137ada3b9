//! The diagnosis: what is wrong, with the values that show it, what the
//! evidence rules out, and what to do next, for the question asked.
//!
//! Built deterministically from the node's snapshot, the checks' findings
//! and what the commands that ran showed (their [`Observation`]s, already
//! applied to the snapshot by [`crate::session`]). Every number and GPU in
//! it comes from those: it is the answer `--model none` gives, the notes the
//! model writes its own answer from, and the yardstick its answer is
//! checked against ([`super::grounding`]).
//!
//! # The shape of an answer
//! ```text
//! GPU 2 is thermally throttled (HW and SW thermal slowdown): 86 °C against
//! its 87 °C slowdown temperature, memory at 91 °C, SM clock 1095 of 1980 MHz;
//! the other GPUs run at 57-63 °C. Not power-limited: 463 of 700 W.
//! Next: check the fans and airflow for that slot.
//! ```
//! A question that names GPUs is answered about those GPUs; a question about
//! one subject (temperature, power, memory errors, the fabric...) is
//! answered about that subject; a node with nothing wrong gets the readings
//! that say so.

use std::fmt::Write as _;

use super::adapt::Targets;
use super::{NodeContext, Turn};
use crate::checks::{Finding, Severity, printable};
use crate::probe::interpret::Reading;
use crate::probe::{ClockEventReason, Gpu, Snapshot};

/// A command that ran for this question, and what its output gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The command line.
    pub command: String,
    /// Its exit code; `None` when it did not run to an exit.
    pub exit_code: Option<i32>,
    /// What its output gave.
    pub reading: Reading,
}

/// The commands that ran since the assistant last answered: the
/// `CommandOutput` turns that end `history`.
pub fn observations(history: &[Turn]) -> Vec<Observation> {
    let mut out: Vec<Observation> = history
        .iter()
        .rev()
        .map_while(|turn| match turn {
            Turn::CommandOutput {
                command,
                exit_code,
                reading,
                ..
            } => Some(Observation {
                command: command.clone(),
                exit_code: *exit_code,
                reading: reading.clone(),
            }),
            _ => None,
        })
        .collect();
    out.reverse();
    out
}

/// What the question is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Topic {
    Thermal,
    Power,
    Memory,
    Pcie,
    Nvlink,
    Lost,
    Xid,
    Processes,
    Network,
    Disk,
    HostMemory,
    Usage,
}

/// Words that name a topic (whole words or prefixes, lower case).
const TOPIC_WORDS: &[(Topic, &[&str])] = &[
    (
        Topic::Thermal,
        &[
            "temp", "hot", "heat", "thermal", "cool", "fan", "overheat", "degrees", "°c",
        ],
    ),
    (
        Topic::Power,
        &["power", "watt", "pwr", "cap", "capped", "limit", "psu"],
    ),
    (
        Topic::Memory,
        &[
            "ecc",
            "remap",
            "row",
            "retire",
            "page",
            "dbe",
            "sbe",
            "ras",
            "memory error",
            "bad page",
            "uncorrect",
        ],
    ),
    (
        Topic::Pcie,
        &[
            "pcie",
            "pci",
            "link width",
            "lnk",
            "gen",
            "x16",
            "x8",
            "slot",
            "riser",
            "aer",
        ],
    ),
    (
        Topic::Nvlink,
        &[
            "nvlink",
            "nvswitch",
            "fabric",
            "xid 74",
            "link",
            "nccl",
            "all-reduce",
            "allreduce",
            "collective",
        ],
    ),
    (
        Topic::Lost,
        &[
            "lost",
            "fell off",
            "fallen",
            "missing",
            "disappear",
            "gone",
            "not detected",
            "xid 79",
            "79",
        ],
    ),
    (Topic::Xid, &["xid", "nvrm", "kernel log", "dmesg"]),
    (
        Topic::Processes,
        &[
            "process",
            "pid",
            "stuck",
            "zombie",
            "hold",
            "holding",
            "who is using",
            "nothing runs",
            "running on",
            "what runs",
            "nothing is running",
            "no job",
            "idle",
        ],
    ),
    (
        Topic::Network,
        &[
            "infiniband",
            "ib",
            "mlx",
            "hca",
            "rail",
            "port",
            "nccl",
            "rdma",
            "network",
            "multi-node",
            "multinode",
        ],
    ),
    (
        Topic::Disk,
        &[
            "disk",
            "space",
            "filesystem",
            "file system",
            "mount",
            "df",
            "inode",
            "enospc",
        ],
    ),
    (Topic::HostMemory, &["ram", "host memory", "oom", "swap"]),
    (
        Topic::Usage,
        &[
            "util",
            "busy",
            "usage",
            "used",
            "vram",
            "memory use",
            "load",
            "full",
        ],
    ),
];

/// Words that ask about performance: every cause of slowness is relevant.
const SLOW_WORDS: &[&str] = &[
    "slow",
    "perf",
    "throughput",
    "speed",
    "fast",
    "lag",
    "throttl",
    "clock",
    "hang",
    "hung",
];

/// The topics of a finding, by id.
fn finding_topics(f: &Finding) -> Vec<Topic> {
    let id = f.id.as_str();
    match id {
        "throttle-thermal" | "temperature-near-slowdown" => vec![Topic::Thermal],
        "throttle-power" => vec![Topic::Power],
        "ecc-uncorrected"
        | "remap-pending"
        | "remap-failed"
        | "retired-pages-pending"
        | "amd-ras-uncorrectable" => vec![Topic::Memory],
        "pcie-link-degraded" => vec![Topic::Pcie],
        "gpu-lost" | "gpu-missing-from-nvml" | "nvml-hung" | "xid-79" | "xid-119" | "xid-120" => {
            vec![Topic::Lost, Topic::Xid]
        }
        "xid-74" => vec![Topic::Nvlink, Topic::Xid],
        "xid-48" | "xid-63" | "xid-64" | "xid-92" | "xid-94" | "xid-95" | "xid-140" => {
            vec![Topic::Memory, Topic::Xid]
        }
        "stuck-memory" => vec![Topic::Processes, Topic::Usage],
        "ib-port-down" => vec![Topic::Network],
        "disk-full" => vec![Topic::Disk],
        "host-memory-low" => vec![Topic::HostMemory],
        "dcgm-health" | "dcgm-diag-failed" => vec![Topic::Memory, Topic::Nvlink, Topic::Pcie],
        _ if id.starts_with("xid-") => vec![Topic::Xid],
        _ => Vec::new(),
    }
}

/// Topics that slow a job down.
const SLOW_TOPICS: &[Topic] = &[
    Topic::Thermal,
    Topic::Power,
    Topic::Pcie,
    Topic::Nvlink,
    Topic::Lost,
    Topic::Network,
    Topic::Processes,
];

/// What the question asks about.
struct Focus {
    /// GPUs named (by index or bus id); empty: the whole node.
    gpus: Vec<u32>,
    /// Subjects named; empty: anything wrong.
    topics: Vec<Topic>,
    /// It asks why something is slow.
    slow: bool,
}

impl Focus {
    fn of(question: &str, snapshot: &Snapshot) -> Focus {
        let mut gpus = Targets::of(question, snapshot).gpus;
        if let Some(bus) = Targets::of(question, snapshot).bus
            && gpus.is_empty()
            && let Some(g) = snapshot.gpu_by_bus_id(&bus)
        {
            gpus.push(g.index);
        }
        let lower = format!(" {} ", question.to_lowercase());
        let has = |w: &str| {
            if w.contains(' ') || w.chars().any(|c| !c.is_ascii_alphanumeric()) {
                lower.contains(w)
            } else {
                lower
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|word| word.starts_with(w))
            }
        };
        let mut topics: Vec<Topic> = TOPIC_WORDS
            .iter()
            .filter(|(_, words)| words.iter().any(|w| has(w)))
            .map(|(t, _)| *t)
            .collect();
        topics.dedup();
        let slow = SLOW_WORDS.iter().any(|w| has(w));
        Focus { gpus, topics, slow }
    }

    /// Whether `f` answers the question.
    fn wants(&self, f: &Finding) -> bool {
        if f.severity < Severity::Warning {
            return false;
        }
        let gpu_ok = self.gpus.is_empty() || f.gpu.is_none_or(|g| self.gpus.contains(&g));
        gpu_ok && self.wants_topics(f)
    }

    fn wants_topics(&self, f: &Finding) -> bool {
        let topics = finding_topics(f);
        if self.topics.is_empty() && !self.slow {
            return true;
        }
        let slow_match = self.slow && topics.iter().any(|t| SLOW_TOPICS.contains(t));
        slow_match || topics.iter().any(|t| self.topics.contains(t))
    }
}

/// The diagnosis of one question.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagnosis {
    /// Why a change the question asks for is not proposed: said first.
    pub held_back: Option<String>,
    /// The readings of the GPUs the question names, when they have no
    /// problem of the kind asked about: said first.
    pub asked: Vec<String>,
    /// What is wrong, each with its evidence: a sentence each, worst first.
    pub problems: Vec<String>,
    /// What the evidence rules out, for the GPUs concerned.
    pub ruled_out: Vec<String>,
    /// The readings that answer the question when nothing is wrong.
    pub readings: Vec<String>,
    /// What to do next.
    pub next: Option<String>,
    /// Commands whose output could not be read in full, and why.
    pub notes: Vec<String>,
    /// Read-only commands that would show what the probe cannot see and
    /// the question needs (the InfiniBand ports, for a fabric question).
    pub checks: Vec<String>,
}

impl Diagnosis {
    /// The answer as prose: problems, what is ruled out, readings, next
    /// step, then notes on unreadable output.
    pub fn text(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.held_back.iter().map(|h| sentence(h)));
        parts.extend(self.asked.iter().map(|r| sentence(r)));
        parts.extend(self.problems.iter().map(|p| sentence(p)));
        if !self.ruled_out.is_empty() {
            parts.push(sentence(&self.ruled_out.join("; ")));
        }
        parts.extend(self.readings.iter().map(|r| sentence(r)));
        if let Some(next) = &self.next {
            parts.push(sentence(&format!("Next: {next}")));
        }
        parts.extend(self.notes.iter().map(|n| sentence(&format!("Note: {n}"))));
        parts.join(" ")
    }

    /// Adds its checks (what the probe cannot see and the question needs)
    /// to `proposals`, unless proposed or run already.
    pub fn add_checks(&self, proposals: &mut Vec<super::Proposal>, seen: &[Observation]) {
        for check in &self.checks {
            let known = proposals.iter().any(|p| &p.command == check)
                || seen.iter().any(|o| &o.command == check);
            if !known {
                proposals.push(super::Proposal::new(
                    check.clone(),
                    "InfiniBand ports: state, physical state, rate",
                ));
            }
        }
    }

    /// One line for a prompt: its first problem, or that none was found.
    pub fn headline(&self) -> String {
        self.problems
            .first()
            .map_or_else(|| "none found".to_string(), |p| sentence(p))
    }

    /// Whether it found something wrong.
    pub fn found_problems(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// `text` with a capital first letter and a full stop.
fn sentence(text: &str) -> String {
    let mut s = text.trim().to_string();
    if let Some(first) = s.get(0..1)
        && first.chars().all(|c| c.is_ascii_lowercase())
    {
        s.replace_range(0..1, &first.to_ascii_uppercase());
    }
    if !s.ends_with(['.', '!', '?']) {
        s.push('.');
    }
    s
}

/// Diagnoses `question` on `node`, given what the commands that ran showed.
pub fn diagnose(question: &str, node: NodeContext<'_>, observations: &[Observation]) -> Diagnosis {
    let snapshot = node.snapshot;
    let focus = Focus::of(question, snapshot);
    let mut d = Diagnosis::default();
    let wanted: Vec<&Finding> = node.findings.iter().filter(|f| focus.wants(f)).collect();
    for group in group_by_id(&wanted).into_iter().take(3) {
        d.problems.push(problem(snapshot, &group, node.findings));
        // The GPUs named are not the only ones: say so.
        if !focus.gpus.is_empty() {
            let mut others: Vec<u32> = node
                .findings
                .iter()
                .filter(|f| f.id == group[0].id)
                .filter_map(|f| f.gpu)
                .filter(|g| !focus.gpus.contains(g))
                .collect();
            others.dedup();
            if !others.is_empty() {
                let mut all: Vec<u32> = others.iter().chain(&focus.gpus).copied().collect();
                all.sort_unstable();
                all.dedup();
                let live = snapshot.gpus.iter().filter(|g| !g.lost).count();
                d.problems.push(if all.len() == live {
                    format!(
                        "all {live} GPUs show it, not only {}",
                        gpu_list(&focus.gpus)
                    )
                } else {
                    format!("{} all show it", gpu_list(&all))
                });
            }
        }
    }
    // A problem outside the GPUs (the fabric, a disk): say the GPUs are fine.
    let gpu_problems = node
        .findings
        .iter()
        .any(|f| f.severity >= Severity::Warning && f.gpu.is_some());
    if !wanted.is_empty()
        && wanted.iter().all(|f| f.gpu.is_none())
        && !gpu_problems
        && let Some(fine) = gpus_fine(snapshot)
    {
        d.readings.push(fine);
    }
    if d.next.is_none() {
        d.next = wanted.first().map(|f| next_step(f, snapshot));
    }
    // GPUs the question names that have no problem of their own.
    let named_fine: Vec<u32> = focus
        .gpus
        .iter()
        .copied()
        .filter(|g| !wanted.iter().any(|f| f.gpu == Some(*g)))
        .collect();
    if !named_fine.is_empty() && d.problems.is_empty() {
        let elsewhere: Vec<&Finding> = node
            .findings
            .iter()
            .filter(|f| f.severity >= Severity::Warning && focus.wants_topics(f))
            .collect();
        for g in &named_fine {
            // Fine on what was asked, maybe not on something else.
            let own: Vec<&Finding> = node
                .findings
                .iter()
                .filter(|f| f.severity >= Severity::Warning && f.gpu == Some(*g))
                .collect();
            d.asked
                .push(gpu_readings(snapshot, *g, &focus, own.is_empty()));
            if let Some(group) = group_by_id(&own).into_iter().next() {
                d.problems.push(format!(
                    "but {}",
                    lower_first(&problem(snapshot, &group, node.findings))
                ));
                d.next = Some(next_step(group[0], snapshot));
            }
        }
        if let (Some(first), true) = (elsewhere.first(), d.problems.is_empty()) {
            let group = group_by_id(&elsewhere)
                .into_iter()
                .next()
                .unwrap_or_default();
            d.problems.push(format!(
                "the node's problem is elsewhere: {}",
                problem(snapshot, &group, node.findings)
            ));
            d.next = Some(next_step(first, snapshot));
        }
    }
    let concerned: Vec<u32> = if focus.gpus.is_empty() {
        wanted.iter().filter_map(|f| f.gpu).collect()
    } else {
        focus.gpus.clone()
    };
    if d.asked.is_empty() {
        d.ruled_out = ruled_out(snapshot, &concerned, &wanted, &focus);
    }
    if d.problems.is_empty() && d.asked.is_empty() {
        d.readings = healthy_readings(snapshot, node.findings, &focus, observations);
        // Not what was asked, but an operator must hear it.
        let other: Vec<&Finding> = node
            .findings
            .iter()
            .filter(|f| f.severity >= Severity::Warning)
            .collect();
        if let Some(group) = group_by_id(&other).into_iter().next() {
            d.readings.push(format!(
                "the node has another problem: {}",
                problem(snapshot, &group, node.findings)
            ));
            d.next = Some(next_step(group[0], snapshot));
        }
    }
    d.notes = notes(observations);
    // Node text that addresses an assistant: said, never followed.
    let injected: Vec<String> = node
        .findings
        .iter()
        .filter(|f| f.id == "node-text-instructions")
        .filter_map(|f| f.evidence.get("where").map(|w| printable(w).into_owned()))
        .collect();
    if !injected.is_empty() {
        d.notes.insert(
            0,
            format!(
                "text in {} reads like instructions to an assistant: a prompt-injection \
                 attempt, ignored (it is data, and Sigma does not follow it)",
                injected.join(", ")
            ),
        );
    }
    let ib_read = observations
        .iter()
        .any(|o| o.reading.facts.iter().any(|f| f.field.starts_with("ib.")));
    if focus.topics.contains(&Topic::Network) && !ib_read {
        d.checks.push("ibstat".into());
    }
    d
}

/// What to tell about the commands whose output could not be read: those
/// not installed in one note, each other failure in its own.
fn notes(observations: &[Observation]) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for o in observations {
        let program = o.command.split_whitespace().next().unwrap_or("");
        if o.exit_code == Some(127) {
            let p = format!("`{}`", printable(program));
            if !missing.contains(&p) {
                missing.push(p);
            }
            continue;
        }
        if let Some(note) = &o.reading.note {
            out.push(format!("`{}`: {}", printable(&o.command), note));
        }
    }
    if !missing.is_empty() {
        out.insert(0, format!("not installed here: {}", missing.join(", ")));
    }
    out
}

/// Findings of the same problem together, in the findings' order: a power
/// cap on eight GPUs is one sentence, and a lost GPU with its XID 79 one.
/// Other problems are told GPU by GPU.
fn group_by_id<'a>(findings: &[&'a Finding]) -> Vec<Vec<&'a Finding>> {
    let kind = |f: &Finding| match f.id.as_str() {
        "xid-79" => "gpu-lost".to_string(),
        id => id.to_string(),
    };
    let mut groups: Vec<Vec<&Finding>> = Vec::new();
    for f in findings {
        let joins = |g: &Vec<&Finding>| match kind(f).as_str() {
            "gpu-lost" => kind(g[0]) == "gpu-lost" && g.iter().any(|x| x.gpu == f.gpu),
            "throttle-power" => g[0].id == f.id,
            _ => false,
        };
        match groups.iter_mut().find(|g| joins(g)) {
            Some(g) => g.push(f),
            None => groups.push(vec![f]),
        }
    }
    groups
}

/// `GPU 2`, `GPUs 0-7`, `GPUs 1, 4 and 6`.
fn gpu_list(gpus: &[u32]) -> String {
    match gpus {
        [] => "the node".into(),
        [one] => format!("GPU {one}"),
        _ => {
            let mut sorted = gpus.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            let contiguous = sorted.windows(2).all(|w| w[1] == w[0] + 1);
            if contiguous && sorted.len() > 2 {
                format!("GPUs {}-{}", sorted[0], sorted[sorted.len() - 1])
            } else {
                let (last, rest) = sorted.split_last().expect("two or more");
                let rest: Vec<String> = rest.iter().map(u32::to_string).collect();
                format!("GPUs {} and {last}", rest.join(", "))
            }
        }
    }
}

/// A number without needless decimals: `463.27` -> `463`, `2.5` -> `2.5`.
fn num(v: f64) -> String {
    if v >= 10.0 || v.fract() == 0.0 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// `min-max` of `values`, or the one value.
fn range(values: &[f64]) -> Option<String> {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !min.is_finite() {
        return None;
    }
    Some(if (max - min).abs() < 0.5 {
        num(min)
    } else {
        format!("{}-{}", num(min), num(max))
    })
}

/// The thermal reasons active on `g`, in words.
fn thermal_words(g: &Gpu) -> Option<String> {
    let hw = g
        .clock_event_reasons
        .contains(&ClockEventReason::HwThermalSlowdown)
        || (g
            .clock_event_reasons
            .contains(&ClockEventReason::HwSlowdown)
            && !g
                .clock_event_reasons
                .contains(&ClockEventReason::HwPowerBrakeSlowdown));
    let sw = g
        .clock_event_reasons
        .contains(&ClockEventReason::SwThermalSlowdown);
    match (hw, sw) {
        (true, true) => Some("HW and SW thermal slowdown".into()),
        (true, false) => Some("HW thermal slowdown".into()),
        (false, true) => Some("SW thermal slowdown".into()),
        (false, false) => None,
    }
}

/// `SM clock 1095 of 1980 MHz`, when both are known.
fn clock_words(g: &Gpu) -> Option<String> {
    Some(format!(
        "SM clock {} of {} MHz",
        g.clock_sm_mhz?, g.clock_sm_max_mhz?
    ))
}

/// One problem sentence for findings of one rule.
fn problem(snapshot: &Snapshot, group: &[&Finding], all: &[Finding]) -> String {
    let f = group[0];
    let gpus: Vec<u32> = group.iter().filter_map(|f| f.gpu).collect();
    let gpu = f.gpu.and_then(|i| snapshot.gpu(i));
    let others = |pick: fn(&Gpu) -> Option<f64>| -> Option<String> {
        let values: Vec<f64> = snapshot
            .gpus
            .iter()
            .filter(|g| !g.lost && !gpus.contains(&g.index))
            .filter_map(pick)
            .collect();
        range(&values)
    };
    match (f.id.as_str(), gpu) {
        ("throttle-thermal" | "temperature-near-slowdown", Some(g)) => {
            let mut s = if f.id == "throttle-thermal" {
                let reasons = thermal_words(g).map_or(String::new(), |r| format!(" ({r})"));
                format!("{} is thermally throttled{reasons}", gpu_list(&gpus))
            } else {
                format!("{} runs close to its slowdown temperature", gpu_list(&gpus))
            };
            let mut evidence = Vec::new();
            match (g.temperature_c, g.temperature_slowdown_c) {
                (Some(t), Some(limit)) => {
                    evidence.push(format!(
                        "{t} °C against its {limit} °C slowdown temperature"
                    ));
                }
                (Some(t), None) => evidence.push(format!("{t} °C")),
                _ => {}
            }
            if let Some(m) = g.memory_temperature_c {
                evidence.push(format!("memory at {m} °C"));
            }
            if f.id == "throttle-thermal"
                && let Some(c) = clock_words(g)
            {
                evidence.push(c);
            }
            if !evidence.is_empty() {
                let _ = write!(s, ": {}", evidence.join(", "));
            }
            if let Some(r) = others(|g| g.temperature_c.map(f64::from)) {
                let _ = write!(s, "; the other GPUs run at {r} °C");
            }
            s
        }
        ("throttle-power", Some(g)) => {
            let subject = gpu_list(&gpus);
            let (verb, their) = if gpus.len() > 1 {
                ("are", "their")
            } else {
                ("is", "its")
            };
            let mut s = format!("{subject} {verb} held back by {their} power cap");
            let draws: Vec<f64> = group
                .iter()
                .filter_map(|f| f.gpu.and_then(|i| snapshot.gpu(i)))
                .filter_map(|g| g.power_draw_w)
                .collect();
            if let (Some(d), Some(limit)) = (range(&draws), g.power_limit_w) {
                let each = if gpus.len() > 1 { " each" } else { "" };
                let _ = write!(s, ": {d} of a {} W limit{each}", num(limit));
                if let Some(default) = g.power_default_limit_w
                    && default > limit + 1.0
                {
                    let _ = write!(s, ", below the {} W default", num(default));
                }
            }
            if let Some(c) = clock_words(g) {
                let _ = write!(s, ", {c}");
            }
            s
        }
        ("pcie-link-degraded", Some(g)) => {
            let mut s = format!("{}'s PCIe link is degraded", gpu_list(&gpus));
            if let Some(p) = &g.pcie {
                let _ = write!(
                    s,
                    ": x{} Gen{} against x{} Gen{}",
                    p.width_current, p.gen_current, p.width_max, p.gen_max
                );
                if let Some(r) = p.replay_count.filter(|r| *r > 0) {
                    let _ = write!(s, ", {r} replays");
                }
            }
            if let Some(u) = g.utilization_gpu_pct {
                let _ = write!(s, ", while {u}% busy");
            }
            s
        }
        ("gpu-lost" | "xid-79", _) => {
            let bus = f
                .evidence
                .get("pci_bus_id")
                .cloned()
                .or_else(|| gpu.map(|g| g.pci_bus_id.clone()));
            let who = match (f.gpu, &bus) {
                (Some(i), Some(b)) => format!("GPU {i} ({})", printable(b)),
                (Some(i), None) => format!("GPU {i}"),
                (None, Some(b)) => format!("the GPU at {}", printable(b)),
                (None, None) => "a GPU".into(),
            };
            let xid = all.iter().any(|x| x.id == "xid-79" && x.gpu == f.gpu);
            let answering = snapshot.gpus.iter().filter(|g| !g.lost).count();
            let mut s = format!("{who} has fallen off the bus");
            if xid {
                s.push_str(" (XID 79)");
            }
            let _ = write!(
                s,
                ": NVML can no longer reach it; {answering} GPUs still answer"
            );
            s
        }
        ("nvml-hung", _) => {
            let on_pci = f
                .evidence
                .get("nvidia_pci_gpus")
                .map_or(String::new(), |n| {
                    format!("; {} NVIDIA GPUs are on the PCI bus", printable(n))
                });
            let after = f
                .evidence
                .get("xids")
                .map_or(String::new(), |x| format!(", after {}", printable(x)));
            format!(
                "the NVIDIA driver is hung{after}: NVML did not answer within {} s, so \
                 nvidia-smi, DCGM and CUDA calls hang too{on_pci}",
                crate::probe::PROBE_DEADLINE.as_secs()
            )
        }
        ("ecc-uncorrected", Some(g)) => {
            let ecc = g.ecc.clone().unwrap_or_default();
            format!(
                "{} has {} uncorrectable ECC errors since the driver loaded ({} over its \
                 lifetime), a hardware memory fault, not the application",
                gpu_list(&gpus),
                ecc.uncorrected_volatile,
                ecc.uncorrected_aggregate
            )
        }
        ("remap-pending" | "remap-failed", Some(g)) => {
            let rows = g.remapped_rows.clone().unwrap_or_default();
            let what = if f.id == "remap-failed" {
                "failed to remap a memory row: it is an RMA candidate"
            } else {
                "has a memory row remap pending: it takes effect at the next GPU reset"
            };
            format!(
                "{} {what} (rows remapped: {} for uncorrectable errors, {} for correctable)",
                gpu_list(&gpus),
                rows.uncorrectable,
                rows.correctable
            )
        }
        ("stuck-memory", Some(g)) => {
            let held = g
                .memory_used_mib
                .map_or(String::new(), |m| format!(" {m} MiB"));
            let util = g
                .utilization_gpu_pct
                .map_or(String::new(), |u| format!(" at {u}% utilisation"));
            let procs: Vec<String> = g
                .processes
                .iter()
                .take(2)
                .map(|p| format!("pid {} ({})", p.pid, quoted_name(&p.name)))
                .collect();
            let by = if procs.is_empty() {
                String::new()
            } else {
                format!(", held by {}", procs.join(", "))
            };
            format!(
                "{} holds{held}{util} with no work running{by}: the process is idle, \
                 hung or left over",
                gpu_list(&gpus)
            )
        }
        (id, _) if id.starts_with("xid-") => {
            let n = id.trim_start_matches("xid-");
            let name = n
                .parse::<u32>()
                .ok()
                .and_then(crate::checks::xid::lookup)
                .map_or(String::new(), |i| format!(" ({})", i.name));
            let count = f
                .evidence
                .get("count")
                .filter(|c| c.as_str() != "1")
                .map_or(String::new(), |c| format!(", {} times", printable(c)));
            let mut s = format!("{} reported XID {n}{name}{count}", who_of(f, &gpus));
            if let Ok(xid) = n.parse::<u32>() {
                s.push_str(if APPLICATION_XIDS.contains(&xid) {
                    ", an application error, not the GPU"
                } else {
                    ", a fault of the GPU or its driver, not the application"
                });
            }
            if let Some(links) = gpu.and_then(link_errors) {
                let _ = write!(s, "; {links}");
            }
            s
        }
        ("amd-ras-uncorrectable", _) => {
            // AMD GPUs have no NVML index: the finding names its own.
            let index = f
                .evidence
                .get("amd_gpu")
                .and_then(|i| i.parse::<u32>().ok());
            let amd = index.and_then(|i| snapshot.amd_gpus.iter().find(|g| g.index == i));
            let ue = amd.and_then(|g| g.ras_uncorrectable).unwrap_or(0);
            let ce = amd
                .and_then(|g| g.ras_correctable)
                .map_or(String::new(), |c| format!(" ({c} correctable)"));
            let who = index.map_or_else(|| "an AMD GPU".to_string(), |i| format!("AMD GPU {i}"));
            format!(
                "{who} has {ue} uncorrectable RAS errors{ce}, a hardware memory fault, not the \
                 application"
            )
        }
        _ => {
            let who = who_of(f, &gpus);
            let title = printable(&f.title).into_owned();
            if f.gpu.is_some() {
                format!("{who}: {}", lower_first(&title))
            } else {
                title
            }
        }
    }
}

/// XIDs the application causes, leaving the GPU healthy (NVIDIA's
/// Kubernetes device plugin treats them so).
const APPLICATION_XIDS: &[u32] = &[13, 31, 43, 45, 68];

/// `link 2: 48213 CRC flit errors, 1841 replays` for each NVLink link of `g`
/// with errors, when any has.
fn link_errors(g: &Gpu) -> Option<String> {
    let parts: Vec<String> = g
        .nvlinks
        .iter()
        .filter_map(|l| {
            let counts: Vec<String> = [
                (l.crc_flit_errors, "CRC flit errors"),
                (l.crc_data_errors, "CRC data errors"),
                (l.replay_errors, "replays"),
                (l.recovery_errors, "recoveries"),
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            let down = if l.active { "" } else { " (down)" };
            (!counts.is_empty() || !l.active)
                .then(|| format!("link {}{down}: {}", l.link, counts.join(", ")))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; ").trim_end_matches(": ").to_string())
}

/// A process name from the node, quoted and cut: it is data, never advice.
fn quoted_name(name: &str) -> String {
    format!("\"{}\"", crate::checks::truncate(&printable(name), 32))
}

/// `GPU 3`, `GPUs 0-7`, or the node.
fn who_of(f: &Finding, gpus: &[u32]) -> String {
    if gpus.is_empty() {
        f.gpu.map_or("the node".into(), |g| format!("GPU {g}"))
    } else {
        gpu_list(gpus)
    }
}

fn lower_first(s: &str) -> String {
    let mut out = s.to_string();
    if let Some(first) = out.get(0..1)
        && out
            .get(1..2)
            .is_some_and(|c| c.chars().all(|c| c.is_ascii_lowercase()))
    {
        out.replace_range(0..1, &first.to_ascii_lowercase());
    }
    out
}

/// What to do about `f`, briefly.
fn next_step(f: &Finding, snapshot: &Snapshot) -> String {
    let gpu = f.gpu.map_or("the GPU".to_string(), |g| format!("GPU {g}"));
    match f.id.as_str() {
        "throttle-thermal" | "temperature-near-slowdown" => format!(
            "check the fans and airflow for {gpu}'s slot (inlet temperature, blocked filters, \
             a neighbour's exhaust) and compare with the other GPUs"
        ),
        "throttle-power" => {
            let lowered = f.gpu.and_then(|i| snapshot.gpu(i)).is_some_and(|g| {
                match (g.power_limit_w, g.power_default_limit_w) {
                    (Some(l), Some(d)) => d > l + 1.0,
                    _ => false,
                }
            });
            if lowered {
                "find out who lowered the power limit and why; restore the default limit \
                 if nothing requires the lower one"
                    .into()
            } else {
                "compare the draw with the limit under load, and check the cooling: a hot GPU \
                 draws more power for the same work"
                    .into()
            }
        }
        "pcie-link-degraded" => format!(
            "compare LnkCap with LnkSta in `lspci -vvv` for {gpu}, look for AER errors in the \
             kernel log, and reseat the GPU or its riser at the next maintenance"
        ),
        "gpu-lost" | "xid-79" => "collect `nvidia-bug-report.sh --safe-mode` before anything \
             else, drain the node and reboot it; a GPU that falls off again is a hardware case"
            .into(),
        "ecc-uncorrected" | "remap-pending" | "retired-pages-pending" => {
            format!("drain {gpu} and reset it at the next window so the memory repair takes effect")
        }
        "remap-failed" => format!("drain {gpu} and open an RMA case for it"),
        "stuck-memory" => format!(
            "find the job that owns the process on {gpu} and end it (kill it); the memory \
             comes back when the process exits, and if it cannot be killed (state D), drain \
             and reset the GPU"
        ),
        "ib-port-down" => "check the cable and transceiver at both ends and the switch port; \
             then `ibstat` again"
            .into(),
        "disk-full" => "free space on that file system (old checkpoints, logs, core dumps)".into(),
        "host-memory-low" => "find what holds the host's memory before the OOM killer does".into(),
        "amd-ras-uncorrectable" => {
            "drain the GPU, check its bad pages (`rocm-smi --showpagesinfo`) and reset it".into()
        }
        id if id.starts_with("xid-") => id
            .trim_start_matches("xid-")
            .parse::<u32>()
            .ok()
            .and_then(crate::checks::xid::lookup)
            .map(|i| first_action(&i.why))
            .unwrap_or_else(|| first_action(&f.why)),
        _ => first_action(&f.why),
    }
}

/// The first sentence of `why` that says what to do (an imperative), else
/// its last sentence.
fn first_action(why: &str) -> String {
    const VERBS: &[&str] = &[
        "Check", "Drain", "Reset", "Restart", "Run", "Collect", "Reboot", "Compare", "Look",
        "Reseat", "Find", "Free", "Follow", "Keep", "Replace", "Schedule", "Open", "Contact",
    ];
    let sentences: Vec<&str> = why
        .split(". ")
        .map(|s| s.trim().trim_end_matches('.'))
        .filter(|s| !s.is_empty())
        .collect();
    let pick = sentences
        .iter()
        .find(|s| VERBS.iter().any(|v| s.starts_with(v)))
        .or(sentences.last())
        .copied()
        .unwrap_or("look at the finding's details");
    lower_first(pick)
}

/// What the evidence rules out for the GPUs concerned: the causes of the
/// question's kind that are fine.
fn ruled_out(snapshot: &Snapshot, gpus: &[u32], wanted: &[&Finding], focus: &Focus) -> Vec<String> {
    let mut gpus = gpus.to_vec();
    gpus.sort_unstable();
    gpus.dedup();
    let [index] = gpus.as_slice() else {
        return Vec::new();
    };
    let Some(g) = snapshot.gpu(*index) else {
        return Vec::new();
    };
    if g.lost {
        return Vec::new();
    }
    let has = |id: &str| wanted.iter().any(|f| f.id == id && f.gpu == Some(*index));
    let found = |topic: Topic| wanted.iter().any(|f| finding_topics(f).contains(&topic));
    let open_question = focus.topics.is_empty() && wanted.is_empty();
    let mut out = Vec::new();
    let slowish = focus.slow
        || open_question
        || [Topic::Thermal, Topic::Power, Topic::Pcie]
            .iter()
            .any(|t| found(*t) || focus.topics.contains(t));
    if slowish
        && !has("throttle-power")
        && !g
            .clock_event_reasons
            .contains(&ClockEventReason::SwPowerCap)
        && let (Some(d), Some(l)) = (g.power_draw_w, g.power_limit_w)
    {
        out.push(format!("not power-limited: {} of {} W", num(d), num(l)));
    }
    if slowish
        && !has("throttle-thermal")
        && !has("temperature-near-slowdown")
        && thermal_words(g).is_none()
        && let Some(t) = g.temperature_c
    {
        out.push(format!("not too hot: {t} °C"));
    }
    if slowish
        && !has("pcie-link-degraded")
        && let Some(p) = &g.pcie
        && p.gen_current >= p.gen_max
        && p.width_current >= p.width_max
    {
        out.push(format!(
            "PCIe at its full x{} Gen{}",
            p.width_current, p.gen_current
        ));
    }
    let memory_asked =
        focus.topics.contains(&Topic::Memory) || found(Topic::Memory) || open_question;
    if memory_asked
        && !has("ecc-uncorrected")
        && let Some(e) = &g.ecc
        && e.uncorrected_volatile == 0
    {
        out.push("no uncorrectable ECC errors".into());
    }
    let xids = snapshot
        .xid_events
        .iter()
        .any(|e| snapshot.gpu_by_bus_id(&e.pci_bus_id).map(|x| x.index) == Some(*index));
    if !xids && (memory_asked || focus.topics.contains(&Topic::Xid)) {
        out.push("no XID for it in the kernel log".into());
    }
    out.truncate(3);
    out
}

/// What rocm-smi reports for one AMD GPU, as a reading.
fn amd_readings(g: &crate::probe::AmdGpu) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(t) = g.temperature_c {
        parts.push(format!("{t:.0} °C"));
    }
    match (g.power_draw_w, g.power_cap_w) {
        (Some(d), Some(c)) => parts.push(format!("{d:.0} of {c:.0} W")),
        (Some(d), None) => parts.push(format!("{d:.0} W")),
        _ => {}
    }
    if let Some(u) = g.utilization_pct {
        parts.push(format!("{u}% busy"));
    }
    if let (Some(u), Some(c)) = (g.ras_uncorrectable, g.ras_correctable) {
        parts.push(format!("{u} uncorrectable and {c} correctable RAS errors"));
    }
    let faulty = g.ras_uncorrectable.unwrap_or(0) > 0;
    match (parts.is_empty(), faulty) {
        (true, _) => format!("GPU {} answers", g.index),
        (false, true) => format!("GPU {}: {}", g.index, parts.join(", ")),
        (false, false) => format!("GPU {} shows no fault: {}", g.index, parts.join(", ")),
    }
}

/// The readings of one GPU that answer the question's topics.
fn gpu_readings(snapshot: &Snapshot, index: u32, focus: &Focus, no_fault: bool) -> String {
    let Some(g) = snapshot.gpu(index) else {
        if let Some(amd) = snapshot.amd_gpus.iter().find(|a| a.index == index) {
            return amd_readings(amd);
        }
        return format!(
            "GPU {index} is not on this node ({} GPUs)",
            snapshot.gpus.len().max(snapshot.amd_gpus.len())
        );
    };
    if g.lost {
        return format!("GPU {index} is lost: NVML cannot reach it");
    }
    let mut parts: Vec<String> = Vec::new();
    let all = focus.topics.is_empty() || focus.slow;
    let wants = |t: Topic| all || focus.topics.contains(&t);
    if wants(Topic::Thermal) {
        match (g.temperature_c, g.temperature_slowdown_c) {
            (Some(t), Some(s)) => parts.push(format!("{t} °C (slowdown at {s} °C)")),
            (Some(t), None) => parts.push(format!("{t} °C")),
            _ => {}
        }
    }
    if wants(Topic::Power)
        && let (Some(d), Some(l)) = (g.power_draw_w, g.power_limit_w)
    {
        parts.push(format!("{} of {} W", num(d), num(l)));
    }
    if wants(Topic::Usage) {
        if let Some(u) = g.utilization_gpu_pct {
            parts.push(format!("{u}% busy"));
        }
        if let (Some(u), Some(t)) = (g.memory_used_mib, g.memory_total_mib) {
            parts.push(format!("{u} of {t} MiB memory used"));
        }
    }
    if wants(Topic::Pcie)
        && let Some(p) = &g.pcie
    {
        parts.push(format!(
            "PCIe x{} Gen{} of x{} Gen{}",
            p.width_current, p.gen_current, p.width_max, p.gen_max
        ));
    }
    if wants(Topic::Memory)
        && let Some(e) = &g.ecc
    {
        parts.push(format!(
            "{} uncorrectable and {} correctable ECC errors since the driver loaded",
            e.uncorrected_volatile, e.corrected_volatile
        ));
    }
    if focus.topics.contains(&Topic::Nvlink) && !g.nvlinks.is_empty() {
        let up = g.nvlinks.iter().filter(|l| l.active).count();
        let errors: u64 = g
            .nvlinks
            .iter()
            .map(|l| l.crc_flit_errors + l.crc_data_errors + l.replay_errors + l.recovery_errors)
            .sum();
        parts.push(format!(
            "{up} of {} NVLink links up, {errors} link errors",
            g.nvlinks.len()
        ));
    }
    if focus.topics.contains(&Topic::Processes) {
        let procs: Vec<String> = g
            .processes
            .iter()
            .take(3)
            .map(|p| format!("pid {} ({})", p.pid, quoted_name(&p.name)))
            .collect();
        parts.push(if procs.is_empty() {
            "no processes".into()
        } else {
            format!("processes {}", procs.join(", "))
        });
    }
    let head = if no_fault {
        format!("GPU {index} shows no fault")
    } else {
        // It has a problem, but not the one asked about: say which is not.
        match focus.topics.first() {
            Some(Topic::Power) => format!("GPU {index} is not power-limited"),
            Some(Topic::Thermal) => format!("GPU {index} is not too hot"),
            Some(Topic::Memory) => format!("GPU {index} has no memory errors"),
            Some(Topic::Pcie) => format!("GPU {index}'s PCIe link is fine"),
            _ => format!("GPU {index}"),
        }
    };
    if parts.is_empty() {
        head
    } else {
        format!("{head}: {}", parts.join(", "))
    }
}

/// Node-wide readings for the subjects the question names: what an
/// operator asked to see, when nothing is wrong with it.
fn topic_readings(live: &[&Gpu], focus: &Focus) -> Vec<String> {
    let mut out = Vec::new();
    let values = |pick: &dyn Fn(&Gpu) -> Option<f64>| -> Vec<f64> {
        live.iter().filter_map(|g| pick(g)).collect()
    };
    if focus.topics.contains(&Topic::Power) {
        let draw = range(&values(&|g| g.power_draw_w));
        let limit = range(&values(&|g| g.power_limit_w));
        if let (Some(d), Some(l)) = (draw, limit) {
            out.push(format!("power {d} W drawn against {l} W limits"));
        }
    }
    if focus.topics.contains(&Topic::Usage) {
        if let Some(u) = range(&values(&|g| g.utilization_gpu_pct.map(f64::from))) {
            out.push(format!("GPU use {u}%"));
        }
        let used = range(&values(&|g| g.memory_used_mib.map(|m| m as f64)));
        let total = range(&values(&|g| g.memory_total_mib.map(|m| m as f64)));
        if let (Some(u), Some(t)) = (used, total) {
            out.push(format!("{u} of {t} MiB memory used per GPU"));
        }
    }
    if focus.topics.contains(&Topic::Processes) {
        let procs: Vec<String> = live
            .iter()
            .flat_map(|g| g.processes.iter().map(move |p| (g.index, p)))
            .take(4)
            .map(|(i, p)| {
                let mem = p
                    .used_memory_mib
                    .map_or(String::new(), |m| format!(", {m} MiB"));
                format!("pid {} {} on GPU {i}{mem}", p.pid, quoted_name(&p.name))
            })
            .collect();
        out.push(if procs.is_empty() {
            "no process on the GPUs".into()
        } else {
            format!("processes: {}", procs.join("; "))
        });
    }
    if focus.topics.contains(&Topic::Nvlink) {
        let links: Vec<&crate::probe::NvLink> = live.iter().flat_map(|g| &g.nvlinks).collect();
        if !links.is_empty() {
            let up = links.iter().filter(|l| l.active).count();
            let errors: u64 = links
                .iter()
                .map(|l| {
                    l.crc_flit_errors + l.crc_data_errors + l.replay_errors + l.recovery_errors
                })
                .sum();
            out.push(format!(
                "{up} of {} NVLink links up, {errors} link errors",
                links.len()
            ));
        }
    }
    out
}

/// `the GPUs are fine: all 8 answer, 56-63 °C, 0 uncorrectable ECC
/// errors`, for a problem outside them.
fn gpus_fine(snapshot: &Snapshot) -> Option<String> {
    let live: Vec<&Gpu> = snapshot.gpus.iter().filter(|g| !g.lost).collect();
    if live.is_empty() {
        return None;
    }
    let mut parts = vec![format!("all {} answer", live.len())];
    let temps: Vec<f64> = live
        .iter()
        .filter_map(|g| g.temperature_c.map(f64::from))
        .collect();
    if let Some(r) = range(&temps) {
        parts.push(format!("{r} °C"));
    }
    if live.iter().any(|g| g.ecc.is_some()) {
        let ue: u64 = live
            .iter()
            .filter_map(|g| g.ecc.as_ref())
            .map(|e| e.uncorrected_volatile)
            .sum();
        parts.push(format!("{ue} uncorrectable ECC errors"));
    }
    if snapshot.xid_events.is_empty() {
        parts.push("no XID".into());
    }
    Some(format!("the GPUs are fine: {}", parts.join(", ")))
}

/// The readings that say a node (or the part asked about) is fine.
fn healthy_readings(
    snapshot: &Snapshot,
    findings: &[Finding],
    focus: &Focus,
    observations: &[Observation],
) -> Vec<String> {
    let mut out = Vec::new();
    let problems = findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .count();
    let nvidia = snapshot.gpus.len();
    let amd = snapshot.amd_gpus.len();
    if nvidia == 0 && amd == 0 && snapshot.pci_gpus.is_empty() {
        out.push(
            "no GPU on this node, so nothing to check: the driver reports none and no GPU is \
             on the PCI bus"
                .into(),
        );
    }
    let ib_read = observations
        .iter()
        .any(|o| o.reading.facts.iter().any(|f| f.field.starts_with("ib.")));
    let scope = if problems > 0 {
        "Nothing wrong with what was asked about"
    } else if focus.topics.contains(&Topic::Network) && !ib_read {
        "No GPU or host problem found"
    } else {
        "This node is healthy, no problem found"
    };
    let mut readings: Vec<String> = Vec::new();
    let live: Vec<&Gpu> = snapshot.gpus.iter().filter(|g| !g.lost).collect();
    if nvidia > 0 {
        readings.push(format!("all {} GPUs answer", live.len()));
        let temps: Vec<f64> = live
            .iter()
            .filter_map(|g| g.temperature_c.map(f64::from))
            .collect();
        if let Some(r) = range(&temps) {
            readings.push(format!("{r} °C"));
        }
        let busy: Vec<f64> = live
            .iter()
            .filter_map(|g| g.utilization_gpu_pct.map(f64::from))
            .collect();
        if let Some(r) = range(&busy).filter(|_| busy.iter().any(|u| *u >= 10.0)) {
            readings.push(format!("busy at {r}% use"));
        }
        let ecc: u64 = live
            .iter()
            .filter_map(|g| g.ecc.as_ref())
            .map(|e| e.uncorrected_volatile)
            .sum();
        if live.iter().any(|g| g.ecc.is_some()) {
            readings.push(format!("{ecc} uncorrectable ECC errors"));
        }
        if snapshot.xid_events.is_empty() {
            readings.push("no XID in the kernel log".into());
        }
        if live
            .iter()
            .filter_map(|g| g.pcie.as_ref())
            .all(|p| p.gen_current >= p.gen_max && p.width_current >= p.width_max)
        {
            readings.push("every PCIe link at full speed".into());
        }
    }
    if amd > 0 {
        let ue: u64 = snapshot
            .amd_gpus
            .iter()
            .filter_map(|g| g.ras_uncorrectable)
            .sum();
        let temps: Vec<f64> = snapshot
            .amd_gpus
            .iter()
            .filter_map(|g| g.temperature_c)
            .collect();
        readings.push(format!("{amd} AMD GPUs"));
        if let Some(r) = range(&temps) {
            readings.push(format!("{r} °C"));
        }
        readings.push(format!("{ue} uncorrectable RAS errors"));
    }
    readings.extend(topic_readings(&live, focus));
    if focus.topics.contains(&Topic::Network) && !ib_read {
        readings.push("the InfiniBand ports are not read yet (`ibstat` shows them)".into());
    }
    if focus.topics.contains(&Topic::Network) {
        let ports: Vec<String> = observations
            .iter()
            .flat_map(|o| &o.reading.facts)
            .filter(|f| f.field == "ib.state")
            .filter_map(|f| {
                f.subject
                    .as_ref()
                    .map(|s| format!("{} {}", printable(s), printable(&f.value)))
            })
            .collect();
        if !ports.is_empty() {
            readings.push(format!("InfiniBand ports: {}", ports.join(", ")));
        }
    }
    if focus.topics.contains(&Topic::Disk) {
        for d in &snapshot.host.disks {
            let used = d.total_bytes.saturating_sub(d.available_bytes);
            let pct = (used * 100).checked_div(d.total_bytes).unwrap_or(0);
            readings.push(format!("{} {pct}% full", printable(&d.mount)));
        }
    }
    if nvidia + amd > 0 || !readings.is_empty() {
        out.push(format!("{scope}: {}", readings.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copilot::sim_node as node;

    fn diagnose_on(sim: &str, question: &str) -> Diagnosis {
        let (s, f) = node(sim);
        diagnose(
            question,
            NodeContext {
                snapshot: &s,
                findings: &f,
            },
            &[],
        )
    }

    #[test]
    fn the_thermal_question_names_the_cause_the_numbers_and_the_next_step() {
        let d = diagnose_on("h100x8-thermal-throttle", "why is training slow on GPU 2?");
        let text = d.text();
        for needle in [
            "GPU 2 is thermally throttled",
            "86 °C against its 87 °C slowdown temperature",
            "memory at 91 °C",
            "the other GPUs run at 57-63 °C",
            "Not power-limited: 463 of 700 W",
            "Next: check the fans and airflow",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
    }

    #[test]
    fn a_gpu_without_a_fault_says_so_and_points_at_the_real_problem() {
        let d = diagnose_on("h100x8-thermal-throttle", "why is GPU 5 slow?");
        let text = d.text();
        assert!(text.contains("GPU 5 shows no fault"), "{text}");
        assert!(text.contains("GPU 2 is thermally throttled"), "{text}");
    }

    #[test]
    fn eight_gpus_at_one_cap_are_one_problem() {
        let d = diagnose_on("h100x8-power-cap", "why are my jobs slower than last week?");
        assert_eq!(d.problems.len(), 1, "{d:?}");
        let text = d.text();
        assert!(
            text.contains("GPUs 0-7 are held back by their power cap"),
            "{text}"
        );
        assert!(
            text.contains("of a 400 W limit each, below the 700 W default"),
            "{text}"
        );
    }

    #[test]
    fn a_healthy_node_gets_its_readings() {
        let d = diagnose_on("h100x8-healthy", "is this node ok to put back in the pool?");
        assert!(!d.found_problems());
        let text = d.text();
        assert!(
            text.starts_with("This node is healthy, no problem found: all 8 GPUs answer"),
            "{text}"
        );
        assert!(text.contains("no XID in the kernel log"), "{text}");
    }

    #[test]
    fn a_lost_gpu_and_its_next_step() {
        let text = diagnose_on("h100x8-xid79", "what's wrong with this box?").text();
        assert!(text.contains("has fallen off the bus (XID 79)"), "{text}");
        assert!(text.contains("nvidia-bug-report.sh --safe-mode"), "{text}");
    }

    #[test]
    fn sentences_are_capitalised_and_closed() {
        assert_eq!(sentence("gPU 2 is hot"), "GPU 2 is hot.");
        assert_eq!(sentence("next: go"), "Next: go.");
        assert_eq!(sentence("Done?"), "Done?");
        assert_eq!(gpu_list(&[0, 1, 2, 3]), "GPUs 0-3");
        assert_eq!(gpu_list(&[1, 4, 6]), "GPUs 1, 4 and 6");
        assert_eq!(num(463.27), "463");
        assert_eq!(num(2.5), "2.5");
    }
}
