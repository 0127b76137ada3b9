//! Grounding: what the model is shown about the node.
//!
//! The prompt has a static part (system rules and few-shot examples, the same
//! on every run, so its KV cache is saved to disk) and a dynamic part built
//! from here: a compact, budgeted rendering of the node and its findings
//! (the candidate commands come from [`super::rank`]). Text from the node is
//! untrusted: it is shown as quoted data, cut short, and never as
//! instructions.

use std::fmt::Write as _;

use crate::checks::{Finding, Severity};
use crate::guard;
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

/// The findings for the prompt: warnings and critical ones, worst first,
/// one line each with its first recommended command (only where an earlier
/// line has not shown the same one), at most `max` of them. Informational
/// findings (a source that could not be read) are left out: they rarely
/// change which command answers a question, and every line costs prefill
/// time.
pub fn render_findings(findings: &[Finding], max: usize) -> String {
    let mut shown: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.severity >= Severity::Warning)
        .collect();
    if shown.is_empty() {
        return "none\n".into();
    }
    shown.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let mut out = String::new();
    let mut checks: Vec<String> = Vec::new();
    for f in shown.iter().take(max) {
        let gpu = f.gpu.map(|g| format!("GPU {g}: ")).unwrap_or_default();
        let _ = write!(out, "- {} {gpu}{}", f.severity.as_str(), f.title);
        if let Some(cmd) = f.commands.first().map(|c| guard::command_line(c))
            && !checks.contains(&cmd)
        {
            let _ = write!(out, " (check: {cmd})");
            checks.push(cmd);
        }
        out.push('\n');
    }
    if shown.len() > max {
        let _ = writeln!(out, "- ... {} more", shown.len() - max);
    }
    out
}

/// A reference's purpose for the prompt: up to its first parenthesis, cut at
/// a word boundary to at most `max` characters.
pub fn short_purpose(purpose: &str, max: usize) -> &str {
    let head = purpose.split(" (").next().unwrap_or(purpose).trim_end();
    if head.len() <= max {
        return head;
    }
    let cut = head
        .char_indices()
        .take_while(|(i, _)| *i <= max)
        .filter(|(_, c)| *c == ' ')
        .map(|(i, _)| i)
        .last()
        .unwrap_or(max.min(head.len()));
    match head.get(..cut) {
        Some(h) => h.trim_end_matches([',', ';', ':']),
        None => head,
    }
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
    fn findings_rendering_names_gpu_and_check() {
        let (_, f) = node("h100x8-xid79");
        let text = render_findings(&f, 4);
        assert!(text.contains("critical GPU 3:"), "{text}");
        assert!(text.contains("(check: "), "{text}");
        assert!(!text.contains("- info "), "{text}");
    }

    #[test]
    fn findings_rendering_shows_each_check_once() {
        let (_, f) = node("a100x8-ecc-dbe");
        let text = render_findings(&f, 3);
        let checks: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once("(check: ").map(|(_, c)| c))
            .collect();
        assert!(!checks.is_empty(), "{text}");
        let mut unique = checks.clone();
        unique.dedup();
        assert_eq!(unique.len(), checks.len(), "{text}");
    }

    #[test]
    fn purposes_are_cut_at_parentheses_and_word_boundaries() {
        assert_eq!(
            short_purpose(
                "memory errors: ECC counters (pending remap means reset)",
                60
            ),
            "memory errors: ECC counters"
        );
        assert_eq!(
            short_purpose("utilisation, memory use and temperatures of every GPU", 30),
            "utilisation, memory use and"
        );
        assert_eq!(short_purpose("list GPUs", 30), "list GPUs");
    }
}
