//! Grounding: what the model is shown about the node, and which catalogue
//! entries are relevant to the question.
//!
//! The prompt has a static part (system rules and few-shot examples, the same
//! on every run, so its KV cache is saved to disk) and a dynamic part built
//! here: a compact, budgeted rendering of the node and its findings, the
//! catalogue examples ranked most relevant to the question (BM25 over each
//! example's command, purpose and the catalogue's description of every
//! argument), and the question itself. Text from the node is untrusted: it is
//! shown as quoted data, cut short, and never as instructions.

use std::fmt::Write as _;
use std::sync::OnceLock;

use bm25::{Language, SearchEngine, SearchEngineBuilder};

use crate::checks::{Finding, Severity};
use crate::guard::{self, Tier, catalogue::Catalogue};
use crate::probe::Snapshot;

/// A catalogue example as a reference for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The command line.
    pub command: String,
    /// What it is for.
    pub purpose: String,
    /// The guard's tier for it.
    pub tier: Tier,
}

/// Every example in the built-in catalogue, in catalogue order.
pub fn references() -> &'static [Reference] {
    static ALL: OnceLock<Vec<Reference>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut out = Vec::new();
        for tool in Catalogue::builtin().tools() {
            collect_examples(tool, &mut out);
        }
        out
    })
}

fn collect_examples(tool: &crate::guard::catalogue::Tool, out: &mut Vec<Reference>) {
    for ex in &tool.example {
        if ex.tier != Tier::Blocked {
            out.push(Reference {
                command: ex.command.clone(),
                purpose: ex.purpose.clone(),
                tier: ex.tier,
            });
        }
    }
    for sub in &tool.subcommand {
        collect_examples(sub, out);
    }
}

/// The BM25 index over [`references`]; document ids are indexes into it.
fn index() -> &'static SearchEngine<u32> {
    static INDEX: OnceLock<SearchEngine<u32>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let docs: Vec<String> = references().iter().map(document_text).collect();
        SearchEngineBuilder::<u32>::with_corpus(Language::English, docs).build()
    })
}

/// The searchable text of a reference: purpose, the command split into
/// words (`--query-gpu=temperature.gpu` gives `query gpu temperature gpu`),
/// and what the catalogue says each argument means.
fn document_text(r: &Reference) -> String {
    let mut text = format!("{}. {}", r.purpose, words(&r.command));
    for arg in guard::explain(&r.command) {
        let _ = write!(text, ". {}", arg.meaning);
    }
    text
}

/// Splits a command into plain words for ranking.
fn words(command: &str) -> String {
    command
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { ' ' })
        .collect()
}

/// The `k` references most relevant to `question` on this node: the best
/// matches of the question alone first (all but one slot), then those of the
/// question with the titles of warning and critical findings, so a question
/// that says what it wants ("reset GPU 6") is not drowned by the node's
/// problems. Both queries add the node's GPU vendor, so an AMD node ranks
/// rocm-smi above nvidia-smi, and tools of a vendor the node lacks are left
/// out.
pub fn retrieve(
    question: &str,
    snapshot: &Snapshot,
    findings: &[Finding],
    k: usize,
) -> Vec<&'static Reference> {
    let nvidia =
        !snapshot.gpus.is_empty() || snapshot.pci_gpus.iter().any(|p| p.vendor_id == "10de");
    let amd = !snapshot.amd_gpus.is_empty();
    let vendor = if amd && !nvidia {
        " amd rocm-smi amd-smi"
    } else if nvidia {
        " nvidia nvidia-smi"
    } else {
        ""
    };
    let mut with_findings = question.to_string();
    for f in findings.iter().filter(|f| f.severity >= Severity::Warning) {
        let _ = write!(with_findings, " {}", f.title);
    }
    let refs = references();
    let search = |query: String| -> Vec<&'static Reference> {
        index()
            .search(&query, k * 3)
            .into_iter()
            .filter_map(|hit| refs.get(hit.document.id as usize))
            // On a node without NVIDIA GPUs, NVIDIA tools cannot help, and
            // the other way round.
            .filter(|r| {
                let bin = r.command.split_whitespace().next().unwrap_or("");
                let nv_tool = bin.starts_with("nvidia") || bin == "dcgmi";
                let amd_tool = bin.starts_with("rocm") || bin.starts_with("amd-smi");
                let useless = (nv_tool && !nvidia && amd) || (amd_tool && !amd);
                !useless
            })
            .collect()
    };
    let mut out: Vec<&'static Reference> = Vec::with_capacity(k);
    let first = search(format!("{question}{vendor}"));
    let rest = search(format!("{with_findings}{vendor}"));
    for r in first
        .into_iter()
        .take(k.saturating_sub(1).max(1))
        .chain(rest)
    {
        if out.len() == k {
            break;
        }
        if !out.iter().any(|o| std::ptr::eq(*o, r)) {
            out.push(r);
        }
    }
    out
}

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
                .map(|p| {
                    format!(
                        "pid {} {:?}",
                        p.pid,
                        crate::cli::render::truncate(&p.name, 24)
                    )
                })
                .collect();
            format!(
                "GPU {} {} util {}% mem {}/{} MiB temp {}C power {} pcie {}{}{}\n",
                g.index,
                crate::cli::render::short_name(&g.name),
                g.utilization_gpu_pct.map_or("?".into(), |v| v.to_string()),
                g.memory_used_mib.map_or("?".into(), |v| v.to_string()),
                g.memory_total_mib.map_or("?".into(), |v| v.to_string()),
                g.temperature_c.map_or("?".into(), |v| v.to_string()),
                crate::cli::render::gpu_power(g),
                crate::cli::render::gpu_pcie(g),
                match crate::cli::render::gpu_throttle(g).as_str() {
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

    fn node(name: &str) -> (Snapshot, Vec<Finding>) {
        let node = crate::sim::load(name).expect("sim loads");
        let findings = crate::checks::run_all(&node.snapshot);
        (node.snapshot, findings)
    }

    #[test]
    fn every_reference_is_valid() {
        assert!(references().len() > 50);
        for r in references() {
            assert_ne!(
                guard::check(&r.command).tier,
                Tier::Blocked,
                "{}",
                r.command
            );
        }
    }

    #[test]
    fn retrieval_finds_row_remapper_for_a_remap_question() {
        let (s, f) = node("a100x4-ecc-remap-pending");
        let hits = retrieve("Is any GPU waiting for a row remap?", &s, &f, 5);
        assert!(
            hits.iter()
                .any(|r| r.command.contains("ROW_REMAPPER") || r.command.contains("remapped_rows")),
            "{hits:#?}"
        );
    }

    #[test]
    fn retrieval_prefers_amd_tools_on_amd_nodes() {
        let (s, f) = node("mi300x-healthy");
        let hits = retrieve("show GPU temperatures", &s, &f, 5);
        assert!(!hits.is_empty());
        assert!(
            hits.iter().all(|r| !r.command.starts_with("nvidia-smi")),
            "{hits:#?}"
        );
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
