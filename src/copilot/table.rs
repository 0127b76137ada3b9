//! Tables the question spells out: an `nvidia-smi --query-gpu` or
//! `--query-compute-apps` command with exactly the fields a question lists
//! by name ("index, temperature.gpu, power.draw as CSV"), and the CSV
//! format it asks for (no header, no units).
//!
//! The catalogue holds one table per field and a few curated ones; an
//! exporter's author lists the fields they want, and only those are right.
//! Fields are matched as the catalogue spells them, whole, so nothing is
//! guessed.

use std::sync::OnceLock;

use regex::Regex;

use crate::guard::catalogue::Catalogue;

/// The query flags whose fields a question may list, with the words one of
/// which says the question is about that table (none: any question).
const QUERIES: &[(&str, &[&str])] = &[
    ("--query-compute-apps", &["process", "pid", "app"]),
    ("--query-gpu", &[]),
];

/// The `--format` value the question asks for: `csv`, plus `noheader` and
/// `nounits` when it says to drop them.
pub fn format(question: &str) -> String {
    static NO_HEADER: OnceLock<Regex> = OnceLock::new();
    static NO_UNITS: OnceLock<Regex> = OnceLock::new();
    let no_header = NO_HEADER.get_or_init(|| {
        Regex::new(r"(?i)\b(?:no|without|drop(?:ping)?|skip|strip)\b(?: \w+){0,2} header|\bnoheader\b|\bheaderless\b")
            .expect("valid regex")
    });
    let no_units = NO_UNITS.get_or_init(|| {
        Regex::new(r"(?i)\b(?:no|without|drop(?:ping)?|skip|strip)\b(?: \w+){0,2} units\b|\bnounits\b|\bplain numbers\b")
            .expect("valid regex")
    });
    let mut out = String::from("csv");
    if no_header.is_match(question) {
        out.push_str(",noheader");
    }
    if no_units.is_match(question) {
        out.push_str(",nounits");
    }
    out
}

/// Whether the question states a CSV format at all.
pub fn asks_csv(question: &str) -> bool {
    static CSV: OnceLock<Regex> = OnceLock::new();
    CSV.get_or_init(|| Regex::new(r"(?i)\bcsv\b").expect("valid regex"))
        .is_match(question)
}

/// The table the question lists, when it asks for CSV and names at least
/// two fields of one query as the catalogue spells them, in the order it
/// names them.
pub fn listed(question: &str) -> Option<String> {
    if !asks_csv(question) {
        return None;
    }
    let smi = Catalogue::builtin().tool("nvidia-smi")?;
    let lower = question.to_ascii_lowercase();
    for (flag, about) in QUERIES {
        if !about.is_empty() && !about.iter().any(|w| lower.contains(w)) {
            continue;
        }
        let values = &smi.flag(flag)?.values;
        let mut found: Vec<(usize, &str)> = values
            .iter()
            .filter_map(|v| {
                let name = v.value.to_ascii_lowercase();
                word_at(&lower, &name).map(|at| (at, v.value.as_str()))
            })
            .collect();
        found.sort_unstable();
        found.dedup_by_key(|(at, _)| *at);
        // A field inside a longer one (`power.limit` in
        // `enforced.power.limit`) is that one.
        let spans: Vec<(usize, usize)> = found.iter().map(|(at, v)| (*at, at + v.len())).collect();
        let fields: Vec<&str> = found
            .iter()
            .filter(|(at, v)| {
                !spans
                    .iter()
                    .any(|(s, e)| (s, e) != (at, &(at + v.len())) && s <= at && at + v.len() <= *e)
            })
            .map(|(_, v)| *v)
            .collect();
        if fields.len() >= 2 {
            return Some(format!(
                "nvidia-smi {flag}={} --format={}",
                fields.join(","),
                format(question)
            ));
        }
    }
    None
}

/// Where `name` stands in `text` as a whole word (not inside a longer
/// field name: `power.draw` is not in `power.draw.average`).
fn word_at(text: &str, name: &str) -> Option<usize> {
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let mut from = 0;
    while let Some(i) = text[from..].find(name) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        // A sentence's full stop after a field is not part of it.
        let after_ok = match after {
            Some('.') => !text[at + name.len() + 1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric()),
            Some(c) => !is_part(c),
            None => true,
        };
        if !before.is_some_and(is_part) && after_ok {
            return Some(at);
        }
        from = at + name.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_listed_make_the_table_in_their_order() {
        assert_eq!(
            listed("one CSV line per GPU with exactly: index, temperature.gpu, power.draw, power.limit. No header, no units.").as_deref(),
            Some("nvidia-smi --query-gpu=index,temperature.gpu,power.draw,power.limit --format=csv,noheader,nounits")
        );
        assert_eq!(
            listed("CSV with header of every compute process with pid, process_name, used_memory and gpu_uuid").as_deref(),
            Some("nvidia-smi --query-compute-apps=pid,process_name,used_memory,gpu_uuid --format=csv")
        );
        assert_eq!(
            listed("csv: index and enforced.power.limit").as_deref(),
            Some("nvidia-smi --query-gpu=index,enforced.power.limit --format=csv")
        );
    }

    #[test]
    fn no_table_without_csv_or_with_one_field() {
        assert_eq!(listed("show temperature.gpu and power.draw"), None);
        assert_eq!(listed("temperature.gpu as csv"), None);
        assert_eq!(
            format("csv, keep the header row, drop the units"),
            "csv,nounits"
        );
    }
}
