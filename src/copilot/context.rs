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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copilot::sim_node as node;

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
