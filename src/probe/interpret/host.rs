//! Host tools read back into facts: `df` (each file system's size, use and
//! free space) and `free` (memory and swap), with or without `-h`.

use super::{Command, Fact};
use crate::probe::Snapshot;

/// Reads `df` or `free` output.
pub fn read(command: &Command<'_>, text: &str) -> Vec<Fact> {
    let human = command.args().iter().any(|a| {
        a.starts_with('-') && !a.starts_with("--") && (a.contains('h') || a.contains('H'))
            || a == "--human-readable"
            || a == "--human"
    });
    if command.program() == "df" {
        df(text, human)
    } else {
        free(text, human)
    }
}

/// `Filesystem Size Used Avail Use% Mounted on` rows (or `1K-blocks` ones
/// without `-h`).
fn df(text: &str, human: bool) -> Vec<Fact> {
    let mut facts = Vec::new();
    let unit = if human { None } else { Some("KiB") };
    for line in text.lines().skip(1) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 6 {
            continue;
        }
        let n = words.len();
        let mount = words[n - 1].to_string();
        let (size, used, avail, pct) = (words[n - 5], words[n - 4], words[n - 3], words[n - 2]);
        facts.push(Fact::new(None, "disk.size", size, unit).about(mount.clone()));
        facts.push(Fact::new(None, "disk.used", used, unit).about(mount.clone()));
        facts.push(Fact::new(None, "disk.available", avail, unit).about(mount.clone()));
        facts.push(Fact::new(None, "disk.use", pct.trim_end_matches('%'), Some("%")).about(mount));
    }
    facts
}

/// `Mem:` and `Swap:` rows under `total used free shared buff/cache available`.
fn free(text: &str, human: bool) -> Vec<Fact> {
    let mut facts = Vec::new();
    let mut header: Vec<&str> = Vec::new();
    let unit = if human { None } else { Some("KiB") };
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"total") => header = words,
            Some(&"Mem:") | Some(&"Swap:") => {
                let what = if words[0] == "Mem:" { "memory" } else { "swap" };
                for (name, value) in header.iter().zip(&words[1..]) {
                    let name = name.replace('/', "_");
                    facts.push(Fact::new(
                        None,
                        &format!("host.{what}.{name}"),
                        *value,
                        unit,
                    ));
                }
            }
            _ => {}
        }
    }
    facts
}

/// Bytes in a `df`/`free` value: `532G`, `1.0Ti`, `64Mi`, `0B`, or a count
/// of KiB without a suffix.
fn bytes(fact: &Fact) -> Option<u64> {
    let v = fact.value.trim();
    let (digits, suffix): (String, String) =
        v.chars().partition(|c| c.is_ascii_digit() || *c == '.');
    let n: f64 = digits.parse().ok()?;
    let power = match suffix.trim_end_matches('i').trim_end_matches('B') {
        "" if fact.unit.as_deref() == Some("KiB") => 1,
        "" => 0,
        "K" | "k" => 1,
        "M" => 2,
        "G" => 3,
        "T" => 4,
        "P" => 5,
        _ => return None,
    };
    Some((n * 1024f64.powi(power)) as u64)
}

/// Writes memory and disk facts into the snapshot's host.
pub fn apply(snapshot: &mut Snapshot, fact: &Fact) {
    let host = &mut snapshot.host;
    match (fact.field.as_str(), fact.subject.as_deref()) {
        ("host.memory.total", _) => {
            host.memory_total_bytes = bytes(fact).unwrap_or(host.memory_total_bytes)
        }
        ("host.memory.available", _) => {
            host.memory_available_bytes = bytes(fact).unwrap_or(host.memory_available_bytes);
        }
        ("host.swap.total", _) => {
            host.swap_total_bytes = bytes(fact).unwrap_or(host.swap_total_bytes)
        }
        ("host.swap.used", _) => host.swap_used_bytes = bytes(fact).unwrap_or(host.swap_used_bytes),
        ("disk.size" | "disk.available", Some(mount)) => {
            if let Some(d) = host.disks.iter_mut().find(|d| d.mount == mount) {
                let value = bytes(fact);
                if fact.field == "disk.size" {
                    d.total_bytes = value.unwrap_or(d.total_bytes);
                } else {
                    d.available_bytes = value.unwrap_or(d.available_bytes);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Ended, read as read_output};
    use super::*;

    fn read_text(line: &str, text: &str) -> Vec<Fact> {
        let node = crate::sim::load("h100x8-healthy").expect("node");
        let argv: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        read_output(&[argv], text, Ended::Exited(0), &node.snapshot).facts
    }

    #[test]
    fn df_and_free_are_read_with_and_without_units() {
        let df = read_text(
            "df -h",
            "Filesystem      Size  Used Avail Use% Mounted on\n/dev/nvme0n1p2  891G  858G   33G  97% /\n",
        );
        let get = |facts: &[Fact], field: &str| {
            facts
                .iter()
                .find(|f| f.field == field)
                .map(|f| f.value.clone())
        };
        assert_eq!(get(&df, "disk.use").as_deref(), Some("97"));
        assert_eq!(df[0].subject.as_deref(), Some("/"));
        assert_eq!(bytes(&df[2]), Some(33 << 30));

        let free = read_text(
            "free -h",
            "               total        used        free      shared  buff/cache   available\nMem:           1.0Ti       297Gi       625Gi        64Mi       102Gi       727Gi\nSwap:             0B          0B          0B\n",
        );
        let avail = free
            .iter()
            .find(|f| f.field == "host.memory.available")
            .unwrap();
        assert_eq!(bytes(avail), Some(727 << 30));
        let raw = read_text(
            "free",
            "              total        used        free      shared  buff/cache   available\nMem:        1024000      512000      256000           0      256000      400000\n",
        );
        let total = raw.iter().find(|f| f.field == "host.memory.total").unwrap();
        assert_eq!(bytes(total), Some(1024000 * 1024));
    }
}
