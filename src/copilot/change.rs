//! State changes as a hard rule: the kind of change a question asks for,
//! the GPUs it names, and whether a state-changing command is exactly that
//! change.
//!
//! A copilot that proposes the wrong change (a power limit when a compute
//! mode was asked, every GPU when the operator said "GPU 7 only") loses the
//! operator's trust even though the front ends ask before running it. So a
//! state-changing candidate is offered only when its kind, its value (on or
//! off, the mode, the service verb) and its scope are the ones asked;
//! anything that cannot be determined holds the change back, and
//! [`Request::held_back`] says what is missing.

use std::sync::OnceLock;

use regex::Regex;

use super::adapt::Targets;
use crate::guard::{self, Canonical, Tier, catalogue::ArgKind, catalogue::Catalogue};
use crate::probe::Snapshot;

/// A kind of state change operators ask for.
#[derive(Debug)]
pub struct Kind {
    /// What answers call it ("power limit").
    pub name: &'static str,
    /// What in a request asks for it (case-insensitive regex).
    asked: &'static str,
    /// Not asked when this matches too ("set the clocks back to default" is
    /// a clock reset, not a clock lock).
    unless: &'static str,
    /// Asked only when no other kind is ("reset GPU 3" is a GPU reset,
    /// "reset the clocks" is not).
    generic: bool,
    /// What makes a command this change: `(program, subcommand, flag)` in
    /// canonical spelling, `""` for none.
    marks: &'static [(&'static str, &'static str, &'static str)],
    /// It applies to GPUs: its scope must be exactly the GPUs named.
    per_gpu: bool,
    /// How its value is chosen.
    value: Value,
}

/// How the value of a change is read from the request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    /// Whatever the command carries (a wattage is fitted elsewhere).
    Any,
    /// On (`1`) or off (`0`), from "enable"/"on" or "disable"/"off".
    Toggle,
    /// The compute mode named.
    ComputeMode,
    /// The `systemctl` verb asked (restart, stop, ...) on the unit named.
    Service,
    /// A number the request gives (watts, MHz); a change without a value
    /// (`--resetpoweroverdrive`) only when the request asks for defaults.
    Number,
}

/// Requests no command may carry out (the guard blocks them), each with
/// the read-only step that shows what it would have acted on: `(what asks
/// for it, case-insensitive regex; the step)`.
const REFUSED: &[(&str, &str)] = &[(
    r"\b(?:clear|wipe|flush|empty|erase|purge|zap)\b.{0,40}\b(?:dmesg|kernel (?:log|ring buffer|messages)|ring ?buffer|kmsg)\b|\bdmesg\s+-(?:c|C|-clear|-read-clear)\b",
    "dmesg -T",
)];

/// The read-only step to offer instead when the question asks for a change
/// the guard refuses ("wipe dmesg so we only see new stuff": the kernel log
/// as it is, with times).
pub fn instead_of_refused(question: &str) -> Option<&'static str> {
    static PATTERNS: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    PATTERNS
        .get_or_init(|| {
            REFUSED
                .iter()
                .map(|(asked, step)| {
                    (
                        Regex::new(&format!("(?i){asked}")).expect("valid regex"),
                        *step,
                    )
                })
                .collect()
        })
        .iter()
        .find(|(re, _)| re.is_match(question))
        .map(|(_, step)| *step)
}

/// Every kind, specific ones first.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "NVLink counter reset",
        asked: r"\bnvlink\b.{0,30}\b(?:counters?|counts?|errors?|control)\b|\b(?:counters?|errors?)\b.{0,30}\bnvlink\b",
        unless: "",
        generic: false,
        marks: &[
            ("nvidia-smi", "nvlink", "--resetcounters"),
            ("nvidia-smi", "nvlink", "--reseterrorcounters"),
            ("nvidia-smi", "nvlink", "--setcontrol"),
        ],
        per_gpu: true,
        value: Value::Any,
    },
    Kind {
        name: "ECC error counter reset",
        asked: r"\b(?:ecc|error)s?\b.{0,25}\b(?:counters?|counts?)\b|\bclear\b.{0,20}\b(?:ecc|errors)\b",
        unless: r"\bnvlink\b",
        generic: false,
        marks: &[("nvidia-smi", "", "--reset-ecc-errors")],
        per_gpu: true,
        value: Value::Any,
    },
    Kind {
        name: "ECC mode",
        asked: r"\becc\b.{0,15}\b(?:mode|on|off)\b|\b(?:enable|disable|turn on|turn off|switch on|switch off)\b.{0,15}\becc\b",
        unless: r"\b(?:counters?|counts?)\b",
        generic: false,
        marks: &[("nvidia-smi", "", "--ecc-config")],
        per_gpu: true,
        value: Value::Toggle,
    },
    Kind {
        name: "power limit",
        asked: r"\bpower[- ]?(?:limit|cap|capping)\b|\b\d{2,4}\s*(?:w|watts?)\b|\bwatts?\b|\bcap\b|\bpl\b",
        unless: "",
        generic: false,
        marks: &[
            ("nvidia-smi", "", "--power-limit"),
            ("rocm-smi", "", "--setpoweroverdrive"),
            ("rocm-smi", "", "--resetpoweroverdrive"),
            ("amd-smi", "set", "--power-cap"),
            ("amd-smi", "reset", "--power-cap"),
        ],
        per_gpu: true,
        value: Value::Number,
    },
    Kind {
        name: "compute mode",
        asked: r"\bcompute[- ]mode\b|\bexclusive\b|\bprohibited\b",
        unless: "",
        generic: false,
        marks: &[("nvidia-smi", "", "--compute-mode")],
        per_gpu: true,
        value: Value::ComputeMode,
    },
    Kind {
        name: "MIG instances",
        asked: r"\bmig\b.{0,30}\b(?:instances?|slices?|partitions?|profiles?)\b|\b(?:create|destroy|delete)\b.{0,30}\binstances?\b",
        unless: "",
        generic: false,
        marks: &[
            ("nvidia-smi", "mig", "--create-gpu-instance"),
            ("nvidia-smi", "mig", "--destroy-gpu-instance"),
            ("nvidia-smi", "mig", "--create-compute-instance"),
            ("nvidia-smi", "mig", "--destroy-compute-instance"),
            ("nvidia-smi", "mig", "--default-compute-instance"),
        ],
        per_gpu: true,
        value: Value::Any,
    },
    Kind {
        name: "MIG mode",
        asked: r"\bmig\b|\bmulti[- ]instance\b",
        unless: r"\binstances?\b|\bslices?\b|\bprofiles?\b",
        generic: false,
        marks: &[("nvidia-smi", "", "--multi-instance-gpu")],
        per_gpu: true,
        value: Value::Toggle,
    },
    Kind {
        name: "persistence mode",
        asked: r"\bpersistence\b|\bpersistent\b",
        unless: "",
        generic: false,
        marks: &[("nvidia-smi", "", "--persistence-mode")],
        per_gpu: true,
        value: Value::Toggle,
    },
    Kind {
        name: "accounting mode",
        asked: r"\baccounting\b|\baccounted\b",
        unless: "",
        generic: false,
        marks: &[
            ("nvidia-smi", "", "--accounting-mode"),
            ("nvidia-smi", "", "--clear-accounted-apps"),
        ],
        per_gpu: true,
        value: Value::Toggle,
    },
    Kind {
        name: "clock reset",
        asked: r"\b(?:reset|unlock|undo|restore|default)\b.{0,25}\bclocks?\b|\bclocks?\b.{0,25}\b(?:defaults?|reset|unlock(?:ed)?)\b",
        unless: "",
        generic: false,
        marks: &[
            ("nvidia-smi", "", "--reset-gpu-clocks"),
            ("nvidia-smi", "", "--reset-memory-clocks"),
            ("nvidia-smi", "", "--reset-applications-clocks"),
            ("rocm-smi", "", "--resetclocks"),
            ("amd-smi", "reset", "--clocks"),
        ],
        per_gpu: true,
        value: Value::Any,
    },
    Kind {
        name: "clock lock",
        asked: r"\bclocks?\b|\bmhz\b|\bboost\b|\bperf(?:ormance)? level\b",
        unless: r"\b(?:reset|unlock|undo|restore|defaults?)\b",
        generic: false,
        marks: &[
            ("nvidia-smi", "", "--lock-gpu-clocks"),
            ("nvidia-smi", "", "--lock-memory-clocks"),
            ("nvidia-smi", "", "--lock-memory-clocks-deferred"),
            ("nvidia-smi", "", "--applications-clocks"),
            ("nvidia-smi", "", "--applications-clocks-permission"),
            ("nvidia-smi", "", "--cuda-clocks"),
            ("nvidia-smi", "", "--auto-boost-default"),
            ("nvidia-smi", "", "--auto-boost-permission"),
            ("rocm-smi", "", "--setsclk"),
            ("rocm-smi", "", "--setmclk"),
            ("rocm-smi", "", "--setperflevel"),
            ("amd-smi", "set", "--perf-level"),
        ],
        per_gpu: true,
        value: Value::Number,
    },
    Kind {
        name: "fan speed",
        asked: r"\bfans?\b",
        unless: "",
        generic: false,
        marks: &[
            ("rocm-smi", "", "--setfan"),
            ("rocm-smi", "", "--resetfans"),
            ("amd-smi", "reset", "--fans"),
        ],
        per_gpu: true,
        value: Value::Any,
    },
    Kind {
        name: "power profile",
        asked: r"\bprofile\b",
        unless: r"\bmig\b",
        generic: false,
        marks: &[
            ("rocm-smi", "", "--setprofile"),
            ("rocm-smi", "", "--resetprofile"),
            ("amd-smi", "reset", "--profile"),
        ],
        per_gpu: true,
        value: Value::Any,
    },
    Kind {
        name: "partition mode",
        asked: r"\bpartition(?:s|ing)?\b",
        unless: r"\bmig\b",
        generic: false,
        marks: &[
            ("amd-smi", "set", "--compute-partition"),
            ("amd-smi", "set", "--memory-partition"),
        ],
        per_gpu: true,
        value: Value::Any,
    },
    Kind {
        name: "GPU drain",
        asked: r"\bdrain(?:ed|ing)?\b|\bundrain\b",
        unless: "",
        generic: false,
        marks: &[
            ("nvidia-smi", "drain", "--modify"),
            ("nvidia-smi", "drain", "--remove"),
        ],
        per_gpu: false,
        value: Value::Any,
    },
    Kind {
        name: "GPU operation mode",
        asked: r"\bgom\b|\boperation mode\b|\bdriver model\b|\bwddm\b|\btcc\b|\bvirt(?:ualization)? mode\b|\btarget temp",
        unless: "",
        generic: false,
        marks: &[
            ("nvidia-smi", "", "--gom"),
            ("nvidia-smi", "", "--driver-model"),
            ("nvidia-smi", "", "--force-driver-model"),
            ("nvidia-smi", "", "--virt-mode"),
            ("nvidia-smi", "", "--gpu-target-temp"),
        ],
        per_gpu: true,
        value: Value::Any,
    },
    Kind {
        name: "reboot",
        asked: r"\breboot\b|\brestart\b.{0,20}\b(?:node|machine|server|box|host|system)\b|\bpower[- ]?cycle\b",
        unless: "",
        generic: false,
        marks: &[("systemctl", "reboot", "")],
        per_gpu: false,
        value: Value::Any,
    },
    Kind {
        name: "power off",
        asked: r"\bpower(?:ing)? (?:it |the \w+ )?off\b|\bshut ?down\b|\bpoweroff\b",
        unless: "",
        generic: false,
        marks: &[("systemctl", "poweroff", "")],
        per_gpu: false,
        value: Value::Any,
    },
    Kind {
        name: "journal maintenance",
        asked: r"\bvacuum\b|\b(?:clean|trim|shrink|prune|free|rotate|flush|sync|seal\w*|relinquish)\b.{0,25}\b(?:journals?|logs?|keys?)\b",
        unless: "",
        generic: false,
        marks: &[
            ("journalctl", "", "--vacuum-size"),
            ("journalctl", "", "--vacuum-time"),
            ("journalctl", "", "--vacuum-files"),
            ("journalctl", "", "--rotate"),
            ("journalctl", "", "--flush"),
            ("journalctl", "", "--sync"),
            ("journalctl", "", "--relinquish-var"),
            ("journalctl", "", "--setup-keys"),
        ],
        per_gpu: false,
        value: Value::Any,
    },
    Kind {
        name: "DCGM setting",
        asked: r"\b(?:dcgm|dcgmi)\b.{0,40}\b(?:groups?|watch(?:es)?|health|stats|statistics|jobs?)\b|\b(?:groups?|watch(?:es)?|stats|statistics|jobs?)\b.{0,40}\b(?:dcgm|dcgmi)\b",
        unless: "",
        generic: false,
        marks: &[
            ("dcgmi", "health", "--set"),
            ("dcgmi", "health", "--clear"),
            ("dcgmi", "stats", "--enable"),
            ("dcgmi", "stats", "--disable"),
            ("dcgmi", "stats", "--jstart"),
            ("dcgmi", "stats", "--jstop"),
            ("dcgmi", "stats", "--jremove"),
            ("dcgmi", "group", "--create"),
            ("dcgmi", "group", "--delete"),
            ("dcgmi", "group", "--add"),
            ("dcgmi", "group", "--remove"),
        ],
        per_gpu: false,
        value: Value::Any,
    },
    Kind {
        name: "service",
        asked: r"\b(?:restart|start|stop|reload|enable|disable|mask|unmask|kill|reset-failed|daemon-reload)\b",
        unless: "",
        generic: true,
        marks: &[
            ("systemctl", "start", ""),
            ("systemctl", "stop", ""),
            ("systemctl", "restart", ""),
            ("systemctl", "try-restart", ""),
            ("systemctl", "reload", ""),
            ("systemctl", "enable", ""),
            ("systemctl", "disable", ""),
            ("systemctl", "mask", ""),
            ("systemctl", "unmask", ""),
            ("systemctl", "reset-failed", ""),
            ("systemctl", "daemon-reload", ""),
            ("systemctl", "kill", ""),
        ],
        per_gpu: false,
        value: Value::Service,
    },
    Kind {
        name: "GPU reset",
        asked: r"\b(?:reset|rst)\b|\brecover\b|\breinit\w*\b",
        unless: "",
        generic: true,
        marks: &[
            ("nvidia-smi", "", "--gpu-reset"),
            ("rocm-smi", "", "--gpureset"),
            ("amd-smi", "reset", "--gpureset"),
        ],
        per_gpu: true,
        value: Value::Any,
    },
];

/// Which GPUs a change applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// Every GPU of the node.
    All,
    /// These GPU indexes, sorted.
    Gpus(Vec<u32>),
    /// The question names none (and the node has several).
    Unnamed,
}

/// The change a question asks for, if any.
#[derive(Debug, Clone)]
pub struct Request {
    /// Whether a sentence asks for a change at all (starts with a verb that
    /// changes state).
    pub asked: bool,
    /// The kinds asked for.
    pub kinds: Vec<&'static Kind>,
    /// The GPUs named.
    pub scope: Scope,
    /// On or off, when the request says which.
    on: Option<bool>,
    /// The numbers the request gives for a value: watts ("500 W", "to
    /// 500"), clocks ("1410 MHz", "at 1410").
    numbers: Vec<u32>,
    /// The request asks for defaults ("reset the power cap").
    defaults: bool,
    /// The text of the sentences that ask, lower case.
    text: String,
}

fn regex(pattern: &str) -> Regex {
    Regex::new(&format!("(?i){pattern}")).expect("valid regex")
}

/// The compiled `asked` and `unless` patterns of [`KINDS`].
fn compiled() -> &'static [(Regex, Option<Regex>)] {
    static C: OnceLock<Vec<(Regex, Option<Regex>)>> = OnceLock::new();
    C.get_or_init(|| {
        KINDS
            .iter()
            .map(|k| {
                let unless = (!k.unless.is_empty()).then(|| regex(k.unless));
                (regex(k.asked), unless)
            })
            .collect()
    })
}

/// The kinds of change `text` names, the specific ones only when it names
/// any ("reset the power limit" is a power limit, not a GPU reset).
fn kinds_named(text: &str) -> Vec<&'static Kind> {
    let matched: Vec<&'static Kind> = KINDS
        .iter()
        .zip(compiled())
        .filter(|(_, (asked, unless))| {
            asked.is_match(text) && !unless.as_ref().is_some_and(|u| u.is_match(text))
        })
        .map(|(k, _)| k)
        .collect();
    let specific = matched.iter().any(|k| !k.generic);
    matched
        .into_iter()
        .filter(|k| !(specific && k.generic))
        .collect()
}

impl Request {
    /// Reads the change `sentences` ask for (the sentences of the question
    /// that start with a verb that changes state), resolving the GPUs the
    /// question names against the node. When they name no kind of change
    /// but a value ("put all eight back to 700 pls"), the kind is the one
    /// the rest of the `question` names, if it names exactly one and that
    /// one takes a number ("someone left a 400W cap on every H100"); the
    /// value and the GPUs still come from the request alone.
    pub fn of(
        sentences: &[&str],
        question: &str,
        targets: &Targets,
        snapshot: &Snapshot,
    ) -> Request {
        let text = sentences.join(". ").to_ascii_lowercase();
        // "on GPU 3", "on all of them": where, not whether.
        static WHERE: OnceLock<Regex> = OnceLock::new();
        let place = WHERE.get_or_init(|| {
            regex(r"\bon\s+(?:gpus?|cards?|all|every|each|the|this|that|these|those|node|box|it|them|bus|[0-9])")
        });
        let switches = place.replace_all(&text, " ").into_owned();
        let mut kinds: Vec<&'static Kind> = sentences.iter().flat_map(|s| kinds_named(s)).collect();
        let gpu_count = snapshot.gpus.len().max(snapshot.amd_gpus.len());
        let scope = if targets.every {
            Scope::All
        } else if !targets.gpus.is_empty() {
            let mut gpus = targets.gpus.clone();
            gpus.sort_unstable();
            gpus.dedup();
            Scope::Gpus(gpus)
        } else if gpu_count == 1 {
            Scope::All
        } else {
            Scope::Unnamed
        };
        static ON: OnceLock<Regex> = OnceLock::new();
        static OFF: OnceLock<Regex> = OnceLock::new();
        let on = ON.get_or_init(|| regex(r"\b(?:enable|turn on|switch on|on|activate)\b"));
        let off = OFF.get_or_init(|| regex(r"\b(?:disable|turn off|switch off|off|deactivate)\b"));
        let on = match (on.is_match(&switches), off.is_match(&switches)) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        };
        static NUMBER: OnceLock<Regex> = OnceLock::new();
        let number = NUMBER.get_or_init(|| {
            regex(r"\b(\d{3,4})\s*(?:w|watts?|mhz)\b|\b(?:to|at)\s+(\d{3,4})(?:[\s,;!?]|$)")
        });
        // "the rest stay at 750 W" gives no value for the change.
        static OTHERS: OnceLock<Regex> = OnceLock::new();
        let others = OTHERS.get_or_init(|| {
            regex(r"\b(?:the )?(?:rest|others?|other (?:\w+ )?(?:gpus?|cards?|ones|\w+))\b[^.,;:]*")
        });
        let valued = others.replace_all(&text, " ");
        let numbers: Vec<u32> = number
            .captures_iter(&valued)
            .filter_map(|c| c.get(1).or(c.get(2))?.as_str().parse().ok())
            .collect();
        // Only a value-setting kind, and only with the value asked: "I'll
        // do the reset myself" around "turn MIG on for GPU 7" must never
        // become a reset.
        if kinds.is_empty()
            && !numbers.is_empty()
            && let [one] = kinds_named(question).as_slice()
            && one.value == Value::Number
        {
            kinds.push(one);
        }
        static DEFAULTS: OnceLock<Regex> = OnceLock::new();
        let defaults = DEFAULTS
            .get_or_init(|| regex(r"\b(?:reset|restore|defaults?|unlock|undo)\b"))
            .is_match(&text);
        Request {
            asked: !sentences.is_empty(),
            kinds,
            scope,
            on,
            numbers,
            defaults,
            text,
        }
    }

    /// Whether `command` (state-changing, fitted to the question) is
    /// exactly a change asked for: its kind, its value and its scope.
    pub fn allows(&self, command: &str, snapshot: &Snapshot) -> bool {
        let Some(segments) = guard::canonical(command) else {
            return false;
        };
        let [segment] = segments.as_slice() else {
            return false;
        };
        let Some(kind) = kind_of(segment) else {
            return false;
        };
        if !self.kinds.iter().any(|k| std::ptr::eq(*k, kind)) {
            return false;
        }
        if kind.per_gpu && scope_of(segment, snapshot) != Some(self.normalised(snapshot)) {
            return false;
        }
        match kind.value {
            Value::Any => true,
            Value::Toggle => {
                let Some(on) = self.on else {
                    return false;
                };
                segment.flags.iter().any(|(name, value)| {
                    kind.marks.iter().any(|m| m.2 == name)
                        && value.as_deref().map(is_on) == Some(Some(on))
                })
            }
            Value::ComputeMode => {
                let wanted = self.compute_mode();
                segment
                    .flag("--compute-mode")
                    .flatten()
                    .is_some_and(|v| Some(compute_mode(v)) == wanted)
            }
            Value::Number => {
                let mut values = segment
                    .flags
                    .iter()
                    .filter(|(name, _)| kind.marks.iter().any(|m| m.2 == name));
                match values.next() {
                    Some((_, Some(v))) => !self.numbers.is_empty() && self.value_text(kind) == *v,
                    Some((_, None)) => self.defaults,
                    None => false,
                }
            }
            Value::Service => {
                let verb = segment
                    .subcommands
                    .first()
                    .map(String::as_str)
                    .unwrap_or("");
                let verb = verb.trim_start_matches("try-");
                let verb_asked = self
                    .text
                    .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                    .any(|w| w == verb);
                // `daemon-reload` names no unit: its verb must be said as is.
                let units_named = segment.positionals.iter().all(|u| self.names_unit(u));
                verb_asked && units_named
            }
        }
    }

    /// `command` with the value the request names: on or off for a toggle
    /// (`-pm 1` for "enable persistence"), the compute mode named. Other
    /// commands come back unchanged.
    pub fn fit(&self, command: &str) -> String {
        let Some(segment) = guard::canonical(command).and_then(|s| s.into_iter().next()) else {
            return command.to_string();
        };
        let Some(kind) = kind_of(&segment) else {
            return command.to_string();
        };
        let value = match kind.value {
            Value::Toggle => self.on.map(|on| if on { "1" } else { "0" }.to_string()),
            Value::ComputeMode => self.compute_mode().map(str::to_string),
            Value::Number if !self.numbers.is_empty() => Some(self.value_text(kind)),
            Value::Number | Value::Any | Value::Service => None,
        };
        let Some(value) = value else {
            return command.to_string();
        };
        let Some(tool) = Catalogue::builtin().tool(&segment.program) else {
            return command.to_string();
        };
        let Ok(mut words) = shell_words::split(command) else {
            return command.to_string();
        };
        for (_, sub, mark) in kind.marks.iter().filter(|m| m.0 == segment.program) {
            let scope = if sub.is_empty() {
                Some(tool)
            } else {
                tool.subcommand(sub)
            };
            let Some(flag) = scope
                .and_then(|t| t.flag.iter().find(|f| f.canonical() == *mark))
                .filter(|f| f.arg != ArgKind::None)
            else {
                continue;
            };
            if let Some(i) = words.iter().position(|w| flag.names.contains(w))
                && let Some(v) = words.get_mut(i + 1)
            {
                *v = value.clone();
            } else if let Some(w) = words
                .iter_mut()
                .find(|w| flag.names.iter().any(|n| w.starts_with(&format!("{n}="))))
            {
                let name = w.split('=').next().unwrap_or_default().to_string();
                *w = format!("{name}={value}");
            }
        }
        guard::command_line(&words)
    }

    /// The request's scope with "every GPU" spelled as the node's GPUs.
    fn normalised(&self, snapshot: &Snapshot) -> Scope {
        match &self.scope {
            Scope::Gpus(g) if *g == all_gpus(snapshot) => Scope::All,
            other => other.clone(),
        }
    }

    /// The value the request gives for a numeric kind: `500` watts, or a
    /// clock range `1410,1410` MHz (one number locks at it).
    fn value_text(&self, kind: &Kind) -> String {
        match (kind.name, self.numbers.as_slice()) {
            ("clock lock", [one]) => format!("{one},{one}"),
            ("clock lock", [low, high, ..]) => format!("{low},{high}"),
            (_, [first, ..]) => first.to_string(),
            _ => String::new(),
        }
    }

    /// The compute mode the request names.
    fn compute_mode(&self) -> Option<&'static str> {
        if self.text.contains("exclusive") {
            Some("EXCLUSIVE_PROCESS")
        } else if self.text.contains("prohibit") {
            Some("PROHIBITED")
        } else if self.text.contains("default") || self.text.contains("shared") {
            Some("DEFAULT")
        } else {
            None
        }
    }

    /// Whether the request names systemd unit `unit` (`nvidia-fabricmanager`
    /// is named by "fabric manager" or "fabricmanager").
    fn names_unit(&self, unit: &str) -> bool {
        let squash =
            |s: &str| -> String { s.chars().filter(char::is_ascii_alphanumeric).collect() };
        let core = unit.trim_end_matches(".service");
        let core = core.strip_prefix("nvidia-").unwrap_or(core);
        !core.is_empty() && squash(&self.text).contains(&squash(core))
    }

    /// When a change was asked but none can be offered, what is missing,
    /// as a sentence for the answer; `offered` says whether a change is
    /// among the proposals.
    pub fn held_back(&self, offered: bool) -> Option<String> {
        if !self.asked || offered {
            return None;
        }
        let Some(kind) = self.kinds.first() else {
            return Some(
                "No change is proposed: the request does not say which setting to change \
                 (a GPU reset, the power limit, the compute mode, MIG, persistence, clocks, ECC, a service), \
                 so only read-only steps are shown"
                    .into(),
            );
        };
        let what = if kind.per_gpu && self.scope == Scope::Unnamed {
            "say which GPUs (GPU 3, a PCI bus id, or all GPUs)".to_string()
        } else if kind.value == Value::Toggle && self.on.is_none() {
            "say whether to turn it on or off".to_string()
        } else if kind.value == Value::Number && self.numbers.is_empty() && !self.defaults {
            "say the value (watts for a power limit, MHz for clocks)".to_string()
        } else if kind.value == Value::ComputeMode && self.compute_mode().is_none() {
            "say which mode (DEFAULT, EXCLUSIVE_PROCESS or PROHIBITED)".to_string()
        } else if kind.value == Value::Service {
            "name the service and what to do with it (restart, stop, ...)".to_string()
        } else {
            "no catalogued command makes exactly that change here".to_string()
        };
        Some(format!(
            "No {} change is proposed: {what}; read-only steps come first",
            kind.name
        ))
    }
}

/// What a state-changing GPU command does, in words made from the command
/// itself ("set the power limit to 500 W on GPU 4"), so a purpose never
/// names another GPU or value than the command's; `None` for changes that
/// are not per GPU.
pub fn describe(command: &str, snapshot: &Snapshot) -> Option<String> {
    let segment = guard::canonical(command)?.into_iter().next()?;
    let kind = kind_of(&segment)?;
    let value = segment
        .flags
        .iter()
        .find(|(name, _)| kind.marks.iter().any(|m| m.2 == name))
        .and_then(|(_, v)| v.clone());
    if !kind.per_gpu {
        // The catalogue's own purpose names the unit or node it acts on.
        return None;
    }
    let scope = match scope_of(&segment, snapshot) {
        Some(Scope::Gpus(g)) if g.len() == 1 => format!(" on GPU {}", g[0]),
        Some(Scope::Gpus(g)) => format!(
            " on GPUs {}",
            g.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        ),
        _ => " on every GPU".to_string(),
    };
    Some(match (kind.value, value) {
        (Value::Toggle, Some(v)) => {
            let state = if is_on(&v)? { "on" } else { "off" };
            format!("turn {} {state}{scope}", kind.name)
        }
        (_, Some(v)) if kind.name == "power limit" => {
            format!("set the power limit to {v} W{scope}")
        }
        (Value::ComputeMode, Some(v)) => format!("set the compute mode to {v}{scope}"),
        (_, Some(v)) if kind.name == "clock lock" => {
            let range = match v.split_once(',') {
                Some((low, high)) if low == high => low.to_string(),
                Some((low, high)) => format!("{low}-{high}"),
                None => v,
            };
            format!("lock the clocks at {range} MHz{scope}")
        }
        (Value::Number, None) => format!("reset the {}{scope}", kind.name),
        _ => format!("{}{scope}", kind.name),
    })
}

/// Whether an on/off value means on.
fn is_on(value: &str) -> Option<bool> {
    match value.to_ascii_uppercase().as_str() {
        "1" | "ENABLED" | "ON" => Some(true),
        "0" | "DISABLED" | "OFF" => Some(false),
        _ => None,
    }
}

/// A compute mode's name (`3` is `EXCLUSIVE_PROCESS`).
fn compute_mode(value: &str) -> &'static str {
    match value.to_ascii_uppercase().as_str() {
        "0" | "DEFAULT" => "DEFAULT",
        "1" | "EXCLUSIVE_THREAD" => "EXCLUSIVE_THREAD",
        "2" | "PROHIBITED" => "PROHIBITED",
        "3" | "EXCLUSIVE_PROCESS" => "EXCLUSIVE_PROCESS",
        _ => "",
    }
}

/// The kind of a state-changing segment: the first of [`KINDS`] with a
/// mark it carries.
pub fn kind_of(segment: &Canonical) -> Option<&'static Kind> {
    let sub = segment
        .subcommands
        .first()
        .map(String::as_str)
        .unwrap_or("");
    KINDS.iter().find(|k| {
        k.marks.iter().any(|(program, subcommand, flag)| {
            *program == segment.program
                && *subcommand == sub
                && (flag.is_empty() || segment.flag(flag).is_some())
        })
    })
}

/// Every GPU index of the node, sorted.
fn all_gpus(snapshot: &Snapshot) -> Vec<u32> {
    let mut all: Vec<u32> = snapshot.gpus.iter().map(|g| g.index).collect();
    if all.is_empty() {
        all = snapshot.amd_gpus.iter().map(|g| g.index).collect();
    }
    all.sort_unstable();
    all
}

/// The GPUs a segment applies to: its GPU selector's indexes, bus ids and
/// UUIDs resolved against the node, or every GPU without one. `None` when
/// a selector does not resolve.
fn scope_of(segment: &Canonical, snapshot: &Snapshot) -> Option<Scope> {
    let tool = Catalogue::builtin().tool(&segment.program)?;
    let sub = segment
        .subcommands
        .first()
        .and_then(|s| tool.subcommand(s))
        .unwrap_or(tool);
    let inherited = if tool.global_flags {
        &tool.flag[..]
    } else {
        &[]
    };
    let selector = sub
        .flag
        .iter()
        .chain(inherited)
        .find(|f| f.selects_gpus())?
        .canonical()
        .to_string();
    let Some(value) = segment.flag(&selector) else {
        return Some(Scope::All);
    };
    let mut gpus = Vec::new();
    for part in value?.split([',', ' ']).filter(|p| !p.is_empty()) {
        gpus.push(resolve_gpu(part.trim(), snapshot)?);
    }
    gpus.sort_unstable();
    gpus.dedup();
    Some(if gpus == all_gpus(snapshot) {
        Scope::All
    } else {
        Scope::Gpus(gpus)
    })
}

/// Whether `command` is scoped by its GPU selector to a GPU that NVML
/// reports lost: a query there prints only "Unable to determine the
/// device handle".
pub fn selects_lost_gpu(command: &str, snapshot: &Snapshot) -> bool {
    let lost = |i: &u32| snapshot.gpus.iter().any(|g| g.index == *i && g.lost);
    guard::canonical(command)
        .and_then(|segments| scope_of(segments.first()?, snapshot))
        .is_some_and(|scope| matches!(scope, Scope::Gpus(gpus) if gpus.iter().any(lost)))
}

/// A GPU selector (index, UUID or PCI bus id in any spelling) as an index.
pub fn resolve_gpu(selector: &str, snapshot: &Snapshot) -> Option<u32> {
    if let Ok(index) = selector.parse::<u32>() {
        return Some(index);
    }
    if let Some(g) = snapshot
        .gpus
        .iter()
        .find(|g| g.uuid.eq_ignore_ascii_case(selector))
    {
        return Some(g.index);
    }
    let bus = super::adapt::short_bus(selector)?;
    snapshot
        .gpus
        .iter()
        .find(|g| super::adapt::short_bus(&g.pci_bus_id).as_deref() == Some(bus.as_str()))
        .map(|g| g.index)
        .or_else(|| {
            snapshot
                .amd_gpus
                .iter()
                .find(|g| super::adapt::short_bus(&g.bdf).as_deref() == Some(bus.as_str()))
                .map(|g| g.index)
        })
}

/// Whether the catalogue's state changes of GPU, systemd, journal and DCGM
/// tools all have a kind (a change without one could never be offered).
pub fn unkinded() -> Vec<String> {
    let mut out = Vec::new();
    for tool in Catalogue::builtin().tools() {
        let program = tool.name().to_string();
        if ![
            "nvidia-smi",
            "rocm-smi",
            "amd-smi",
            "systemctl",
            "journalctl",
            "dcgmi",
        ]
        .contains(&program.as_str())
        {
            continue;
        }
        let mut scopes = vec![("", tool)];
        scopes.extend(tool.subcommand.iter().map(|s| (s.name(), s)));
        for (sub, scope) in scopes {
            let marked = |flag: &str| {
                KINDS
                    .iter()
                    .flat_map(|k| k.marks)
                    .any(|m| m.0 == program && m.1 == sub && m.2 == flag)
            };
            if scope.tier == Tier::StateChanging && !marked("") && !marked_any(&program, sub) {
                out.push(format!("{program} {sub}"));
            }
            for f in scope.flag.iter().filter(|f| f.tier == Tier::StateChanging) {
                if !marked(f.canonical()) {
                    out.push(format!("{program} {sub} {}", f.canonical()));
                }
            }
        }
    }
    out
}

/// Whether some kind marks a flag of `program sub` (a state-changing
/// subcommand whose flags say what it changes: `amd-smi set --power-cap`).
fn marked_any(program: &str, sub: &str) -> bool {
    KINDS
        .iter()
        .flat_map(|k| k.marks)
        .any(|m| m.0 == program && m.1 == sub)
}

#[cfg(test)]
mod tests {

    #[test]
    fn refused_log_clearing_offers_the_log_instead() {
        for q in [
            "wipe dmesg so we only see new stuff during the burn in",
            "Clear the kernel log on this node after the reseat",
            "Just run dmesg -C so the alerts stop",
            "corrected aer spam is flooding dmesg. clear the ring buffer",
        ] {
            assert_eq!(instead_of_refused(q), Some("dmesg -T"), "{q}");
        }
        assert_eq!(instead_of_refused("clear the ECC counters on GPU 3"), None);
        assert_eq!(instead_of_refused("show me dmesg"), None);
    }

    use super::*;

    #[test]
    fn every_catalogued_gpu_and_service_change_has_a_kind() {
        assert_eq!(unkinded(), Vec::<String>::new());
    }

    #[test]
    fn every_mark_is_a_catalogued_state_change() {
        let catalogue = Catalogue::builtin();
        for kind in KINDS {
            for (program, sub, flag) in kind.marks {
                let tool = catalogue.tool(program).expect(program);
                let scope = if sub.is_empty() {
                    tool
                } else {
                    tool.subcommand(sub)
                        .unwrap_or_else(|| panic!("{program} {sub}"))
                };
                if flag.is_empty() {
                    assert_eq!(scope.tier, Tier::StateChanging, "{program} {sub}");
                } else {
                    let f = scope
                        .flag
                        .iter()
                        .find(|f| f.canonical() == *flag)
                        .unwrap_or_else(|| panic!("{program} {sub} {flag}"));
                    assert!(
                        f.tier == Tier::StateChanging || scope.tier == Tier::StateChanging,
                        "{program} {sub} {flag}"
                    );
                }
            }
        }
    }
}
