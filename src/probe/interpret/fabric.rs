//! The fabric and NVIDIA's health tooling read back into facts:
//! `ibstat` and `ibv_devinfo` (each InfiniBand port's state, physical state
//! and rate), `dcgmi health -c` (the overall verdict and each GPU's) and
//! `dcgmi diag` (each test's result).
//!
//! InfiniBand facts are about a port (`subject` = `mlx5_3 port 1`); the
//! snapshot has no home for them, so they reach the checks as facts
//! (`checks::facts`).

use std::sync::LazyLock;

use regex::Regex;

use super::{Command, Fact};

/// Reads `ibstat`, `ibv_devinfo` or `dcgmi` output.
pub fn read(command: &Command<'_>, text: &str) -> Vec<Fact> {
    match command.program() {
        "ibstat" => ibstat(text),
        "ibv_devinfo" => ibv_devinfo(text),
        _ => match command.args().first().map(String::as_str) {
            Some("health") => dcgmi_health(text),
            Some("diag") => dcgmi_diag(text),
            _ => Vec::new(),
        },
    }
}

/// `CA 'mlx5_3'` blocks with `Port 1:` sub-blocks (`State: Down`,
/// `Physical state: Polling`, `Rate: 400`); `ibstat -s` prints `Port 1:
/// Active` on one line.
fn ibstat(text: &str) -> Vec<Fact> {
    let mut facts = Vec::new();
    let mut ca: Option<String> = None;
    let mut port: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("CA '").and_then(|r| r.strip_suffix('\'')) {
            ca = Some(name.to_string());
            port = None;
            continue;
        }
        let Some(ca) = &ca else {
            continue;
        };
        if let Some((number, state)) = t.strip_prefix("Port ").and_then(|r| r.split_once(':'))
            && number.trim().chars().all(|c| c.is_ascii_digit())
        {
            port = Some(format!("{ca} port {}", number.trim()));
            if !state.trim().is_empty()
                && let Some(p) = &port
            {
                facts.push(Fact::new(None, "ib.state", state.trim(), None).about(p.clone()));
            }
            continue;
        }
        let Some(p) = &port else {
            if let Some(fw) = t.strip_prefix("Firmware version:") {
                facts.push(Fact::new(None, "ib.firmware", fw.trim(), None).about(ca.clone()));
            }
            continue;
        };
        let fact = if let Some(v) = t.strip_prefix("State:") {
            Fact::new(None, "ib.state", v.trim(), None)
        } else if let Some(v) = t.strip_prefix("Physical state:") {
            Fact::new(None, "ib.physical_state", v.trim(), None)
        } else if let Some(v) = t.strip_prefix("Rate:") {
            Fact::new(None, "ib.rate", v.trim(), Some("Gb/s"))
        } else {
            continue;
        };
        facts.push(fact.about(p.clone()));
    }
    facts
}

/// `hca_id: mlx5_3` blocks with `port: 1` sub-blocks (`state: PORT_DOWN
/// (1)`, `phys_state: POLLING (2)`).
fn ibv_devinfo(text: &str) -> Vec<Fact> {
    let mut facts = Vec::new();
    let mut hca: Option<String> = None;
    let mut port: Option<String> = None;
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "hca_id" => {
                hca = Some(value.to_string());
                port = None;
            }
            "port" => port = hca.as_ref().map(|h| format!("{h} port {value}")),
            "fw_ver" => {
                if let Some(h) = &hca {
                    facts.push(Fact::new(None, "ib.firmware", value, None).about(h.clone()));
                }
            }
            "state" | "phys_state" => {
                let Some(p) = &port else {
                    continue;
                };
                // `PORT_DOWN (1)` -> `Down`; `POLLING (2)` -> `Polling`, as ibstat says.
                let word = value.split_whitespace().next().unwrap_or(value);
                let word = word.trim_start_matches("PORT_").replace('_', " ");
                let mut shown = word.to_ascii_lowercase();
                if let Some(first) = shown.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                let field = if key.trim() == "state" {
                    "ib.state"
                } else {
                    "ib.physical_state"
                };
                facts.push(Fact::new(None, field, shown, None).about(p.clone()));
            }
            _ => {}
        }
    }
    facts
}

/// The cells of a `| a | b |` table row, trimmed; `None` for rules.
fn row(line: &str) -> Option<Vec<&str>> {
    let t = line.trim();
    if !t.starts_with('|') || t.starts_with("|--") || t.starts_with("|==") {
        return None;
    }
    Some(t.trim_matches('|').split('|').map(str::trim).collect())
}

/// `dcgmi health -c`: `Overall Health: Healthy` (one cell or two), then
/// per-GPU verdicts and their explanation lines.
fn dcgmi_health(text: &str) -> Vec<Fact> {
    static GPU: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^GPU ID:\s*(\d+)$").expect("valid regex"));
    let mut facts = Vec::new();
    let mut gpu: Option<u32> = None;
    for line in text.lines() {
        let Some(cells) = row(line) else {
            continue;
        };
        let first = cells.first().copied().unwrap_or("");
        let second = cells.get(1).copied().unwrap_or("");
        if let Some(rest) = first.strip_prefix("Overall Health") {
            let verdict = rest.trim_start_matches(':').trim();
            let verdict = if verdict.is_empty() { second } else { verdict };
            facts.push(Fact::new(None, "dcgm.health", verdict, None));
        } else if let Some(c) = GPU.captures(first) {
            gpu = c[1].parse().ok();
            facts.push(Fact::new(gpu, "dcgm.health", second, None));
        } else if first.is_empty()
            && gpu.is_some()
            && let Some((system, verdict)) = second.split_once(" system:")
        {
            facts.push(
                Fact::new(gpu, "dcgm.health", verdict.trim(), None)
                    .about(format!("{} system", system.trim())),
            );
        }
    }
    facts
}

/// `dcgmi diag`: each test's `Pass`, `Fail`, `Warn` or `Skip`.
fn dcgmi_diag(text: &str) -> Vec<Fact> {
    let mut facts = Vec::new();
    let mut in_tests = false;
    for line in text.lines() {
        if line.trim().starts_with("|-----") {
            in_tests = !line.contains("Metadata");
            continue;
        }
        let Some(cells) = row(line) else {
            continue;
        };
        let (Some(test), Some(result)) = (cells.first(), cells.get(1)) else {
            continue;
        };
        let verdict = result.split_whitespace().next().unwrap_or("");
        if in_tests
            && !test.is_empty()
            && !test.starts_with("Warning")
            && matches!(verdict, "Pass" | "Fail" | "Warn" | "Skip")
        {
            facts.push(Fact::new(None, "dcgm.diag", verdict, None).about(test.to_string()));
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::super::{Ended, read as read_output};
    use super::*;
    use crate::sim;

    fn read_on(name: &str, line: &str) -> Vec<Fact> {
        let node = sim::load(name).expect("node");
        let argv: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let out = node.run(&argv);
        assert_eq!(out.exit_code, 0, "{line} on {name}: {out:?}");
        read_output(&[argv], &out.stdout, Ended::Exited(0), &node.snapshot).facts
    }

    fn find<'a>(facts: &'a [Fact], field: &str, subject: &str) -> Option<&'a str> {
        facts
            .iter()
            .find(|f| f.field == field && f.subject.as_deref() == Some(subject))
            .map(|f| f.value.as_str())
    }

    #[test]
    fn a_down_port_reads_the_same_from_ibstat_and_ibv_devinfo() {
        let a = read_on("h100x8-ib-down", "ibstat mlx5_3");
        assert_eq!(find(&a, "ib.state", "mlx5_3 port 1"), Some("Down"));
        assert_eq!(
            find(&a, "ib.physical_state", "mlx5_3 port 1"),
            Some("Polling")
        );
        let b = read_on("h100x8-ib-down", "ibv_devinfo -d mlx5_3");
        assert_eq!(find(&b, "ib.state", "mlx5_3 port 1"), Some("Down"));
        assert_eq!(
            find(&b, "ib.physical_state", "mlx5_3 port 1"),
            Some("Polling")
        );
        let all = read_on("h100x8-ib-down", "ibstat");
        assert!(
            all.iter()
                .filter(|f| f.field == "ib.state")
                .all(|f| f.subject.as_deref().is_some_and(|s| s.ends_with(" port 1"))),
            "only real ports: {all:?}"
        );
        assert_eq!(find(&all, "ib.state", "mlx5_0 port 1"), Some("Active"));
        assert_eq!(find(&all, "ib.rate", "mlx5_0 port 1"), Some("400"));
    }

    #[test]
    fn dcgmi_verdicts_are_read() {
        let h = read_on("a100x8-ecc-dbe", "dcgmi health -c");
        assert!(
            h.iter()
                .any(|f| f.field == "dcgm.health" && f.gpu.is_none() && f.value == "Failure")
        );
        assert!(
            h.iter()
                .any(|f| f.gpu == Some(6) && f.subject.as_deref() == Some("Memory system"))
        );
        let ok = read_on("h100x8-ib-down", "dcgmi health -c");
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].value, "Healthy");
        let d = read_on("a100x8-ecc-dbe", "dcgmi diag -r 1");
        assert_eq!(
            find(&d, "dcgm.diag", "Page Retirement/Row Remap"),
            Some("Fail")
        );
        assert_eq!(find(&d, "dcgm.diag", "Inforom"), Some("Pass"));
        assert!(
            d.iter()
                .all(|f| f.subject.as_deref() != Some("DCGM Version"))
        );
    }
}
