//! Grounding: what the model is shown about the node.
//!
//! The prompt has a static part (system rules and few-shot examples, the same
//! on every run, so its KV cache is saved to disk) and a dynamic part built
//! from here: a compact, budgeted rendering of the node and its findings
//! (the candidate commands come from [`super::rank`]). Text from the node is
//! untrusted: it is shown as quoted data, cut short, and never as
//! instructions.

use std::fmt::Write as _;

use crate::checks::Finding;
use crate::probe::Snapshot;

/// A compact rendering of the node for the prompt, at most `budget` chars:
/// one line for the host, one per GPU (findings' GPUs first), then a count of
/// what did not fit. Process names are quoted and cut: they are data.
pub fn render_node(snapshot: &Snapshot, findings: &[Finding], budget: usize) -> String {
    let h = &snapshot.host;
    let mut out = format!(
        "host {}, {} CPUs, load {:.1}, memory {} of {} GiB free",
        h.hostname,
        h.cpu_count,
        h.load_avg[0],
        h.memory_available_bytes >> 30,
        h.memory_total_bytes >> 30
    );
    if let Some(nv) = &snapshot.nvidia {
        let _ = write!(out, ", NVIDIA driver {}", nv.driver_version);
    }
    out.push('\n');
    let flagged: Vec<u32> = findings.iter().filter_map(|f| f.gpu).collect();
    let mut gpus: Vec<_> = snapshot.gpus.iter().collect();
    gpus.sort_by_key(|g| (!flagged.contains(&g.index), g.index));
    let mut left = 0;
    for g in gpus {
        let line = if g.lost {
            format!(
                "GPU {} {}: lost (NVML cannot reach it)\n",
                g.index, g.pci_bus_id
            )
        } else {
            let procs: Vec<String> = g
                .processes
                .iter()
                .take(2)
                .map(|p| format!("pid {} {:?}", p.pid, crate::checks::truncate(&p.name, 24)))
                .collect();
            format!(
                "GPU {} {} util {}% mem {}/{} MiB temp {}C power {} pcie {}{}{}\n",
                g.index,
                crate::probe::describe::short_name(&g.name),
                g.utilization_gpu_pct.map_or("?".into(), |v| v.to_string()),
                g.memory_used_mib.map_or("?".into(), |v| v.to_string()),
                g.memory_total_mib.map_or("?".into(), |v| v.to_string()),
                g.temperature_c.map_or("?".into(), |v| v.to_string()),
                crate::probe::describe::gpu_power(g),
                crate::probe::describe::gpu_pcie(g),
                match crate::probe::describe::gpu_throttle(g).as_str() {
                    "-" => String::new(),
                    t => format!(" throttle {t}"),
                },
                if procs.is_empty() {
                    String::new()
                } else {
                    format!(" procs {}", procs.join(", "))
                },
            )
        };
        if out.len() + line.len() > budget {
            left += 1;
        } else {
            out.push_str(&line);
        }
    }
    for a in &snapshot.amd_gpus {
        let line = format!(
            "AMD GPU {} {} util {}% temp {}C\n",
            a.index,
            a.name.as_deref().unwrap_or("?"),
            a.utilization_pct.map_or("?".into(), |v| v.to_string()),
            a.temperature_c.map_or("?".into(), |v| format!("{v:.0}")),
        );
        if out.len() + line.len() > budget {
            left += 1;
        } else {
            out.push_str(&line);
        }
    }
    if snapshot.gpus.is_empty() && snapshot.amd_gpus.is_empty() {
        out.push_str("no GPU found\n");
    }
    if left > 0 {
        let _ = writeln!(out, "({left} more GPUs not shown)");
    }
    out
}

/// A reference's purpose as a proposal shows it: what the command shows
/// (the text after a catalogue purpose's `question: ` head), without
/// parentheticals, and when longer than `max` characters cut at a clause
/// (or else a word) with `…`: always whole words, never a dangling `and`.
pub fn short_purpose(purpose: &str, max: usize) -> String {
    let body = purpose
        .split_once(": ")
        .map_or(purpose, |(_, rest)| rest)
        .trim();
    let mut plain = String::new();
    let mut depth = 0usize;
    for c in body.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let plain = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    let plain = plain
        .replace(" ,", ",")
        .trim_end_matches([',', ';', ' '])
        .to_string();
    if plain.chars().count() <= max {
        return plain;
    }
    let head: String = plain.chars().take(max).collect();
    let clause = head.rfind([',', ';']).filter(|&i| i >= max / 2);
    let cut = clause.unwrap_or_else(|| head.rfind(' ').unwrap_or(head.len()));
    let mut words: Vec<&str> = head[..cut].split_whitespace().collect();
    const DANGLING: &[&str] = &[
        "and", "or", "of", "the", "its", "each", "a", "an", "with", "for", "to", "in", "on", "per",
        "by",
    ];
    while words.last().is_some_and(|w| DANGLING.contains(w)) {
        words.pop();
    }
    format!("{}…", words.join(" ").trim_end_matches([',', ';', ':']))
}

/// Words that mark a line of command output as worth keeping whatever the
/// question (lower case, matched as prefixes of words).
const ALARM_WORDS: &[&str] = &[
    "error", "fail", "fatal", "xid", "nvrm", "fallen", "timeout", "timed", "ecc", "uncorr",
    "retire", "remap", "throttl", "warn", "crit", "degrad", "down", "lost", "denied", "unable",
    "killed", "panic", "reset", "hung", "stuck",
];

/// At most `budget` characters of a command's `output` for the prompt,
/// chosen by relevance, never blindly from one end: the first line (a
/// table's header), lines naming a word of `question` or an alarm word,
/// then the last lines; kept in their order, each gap marked `…`.
pub fn relevant_output(output: &str, question: &str, budget: usize) -> String {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    let whole = lines.join("\n");
    if whole.chars().count() <= budget {
        return whole;
    }
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let asked: Vec<String> = words(question)
        .into_iter()
        .filter(|w| w.len() >= 3)
        .collect();
    let asked: Vec<&str> = asked.iter().map(String::as_str).collect();
    let score = |i: usize, line: &str| {
        let own = words(line);
        let hits = |list: &[&str]| {
            own.iter()
                .filter(|w| list.iter().any(|a| w.starts_with(a)))
                .count()
        };
        let header = usize::from(i == 0);
        // Later lines break ties: a log's end is its latest state.
        (3 * header + 2 * hits(&asked) + hits(ALARM_WORDS), i)
    };
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.sort_by_cached_key(|&i| std::cmp::Reverse(score(i, lines[i])));
    let mut keep = vec![false; lines.len()];
    let mut used = 0;
    for i in order {
        let cost = lines[i].chars().count() + 2; // the line break and a possible `…`
        if used + cost <= budget {
            keep[i] = true;
            used += cost;
        }
    }
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if keep[i] {
            out.push((*line).to_string());
        } else if out.last().is_none_or(|l| l != "…") {
            out.push("…".to_string());
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copilot::sim_node as node;

    #[test]
    fn output_is_cut_by_relevance_not_from_the_end() {
        let mut log = vec!["index, name, temperature.gpu".to_string()];
        log.extend((0..40).map(|i| format!("line {i}: all quiet on this bus")));
        log[12] = "NVRM: Xid (PCI:0000:18:00): 79, GPU has fallen off the bus".into();
        log[20] = "GPU 3 temperature 91 C".into();
        let out = relevant_output(&log.join("\n"), "why is GPU 3 hot?", 200);
        assert!(out.chars().count() <= 200, "{out}");
        assert!(
            out.starts_with("index, name"),
            "the header goes first: {out}"
        );
        assert!(
            out.contains("Xid") && out.contains("GPU 3 temperature"),
            "{out}"
        );
        assert!(out.contains("…"), "the gaps are marked: {out}");
        let short = "a\n\nb";
        assert_eq!(relevant_output(short, "x", 200), "a\nb");
    }

    #[test]
    fn node_rendering_fits_its_budget_and_puts_flagged_gpus_first() {
        let (s, f) = node("h100x8-thermal-throttle");
        let text = render_node(&s, &f, 400);
        assert!(text.len() <= 400 + 40, "{text}");
        let first_gpu = text.lines().nth(1).unwrap();
        assert!(first_gpu.starts_with("GPU 2 "), "{text}");
        assert!(text.contains("more GPUs not shown"), "{text}");
    }

    #[test]
    fn purposes_are_whole_phrases() {
        assert_eq!(
            short_purpose(
                "memory errors: ECC counters (pending remap means reset)",
                60
            ),
            "ECC counters"
        );
        assert_eq!(
            short_purpose("utilisation, memory use and temperatures of every GPU", 30),
            "utilisation, memory use…"
        );
        assert_eq!(
            short_purpose(
                "is a GPU throttling and why: its performance state and each clock \
                 event (throttle) reason, active or not (thermal, power cap, HW slowdown)",
                60
            ),
            "its performance state and each clock event reason…"
        );
        assert_eq!(
            short_purpose("the power draw and the limit of each", 20),
            "the power draw…"
        );
        assert_eq!(short_purpose("list GPUs", 30), "list GPUs");
    }
}
