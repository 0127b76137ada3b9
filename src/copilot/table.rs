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
use serde::Deserialize;

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
        let fields: Vec<&str> = if keyed_by_bus(question) {
            fields.into_iter().filter(|f| *f != "index").collect()
        } else {
            fields
        };
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

/// How operators name `--query-gpu` fields in prose, embedded.
const FIELDS: &str = include_str!("../../prompts/fields.toml");

/// A field or a report section, and what in a question names it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    name: String,
    asked: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldsFile {
    field: Vec<Named>,
    section: Vec<Named>,
}

/// Each entry's name and compiled pattern, in file order.
fn compiled(
    entries: impl Fn(&'static FieldsFile) -> &'static [Named],
) -> Vec<(&'static str, Regex)> {
    static FILE: OnceLock<FieldsFile> = OnceLock::new();
    let file = FILE.get_or_init(|| toml::from_str(FIELDS).expect("prompts/fields.toml parses"));
    entries(file)
        .iter()
        .map(|n| {
            let re =
                Regex::new(&format!("(?i){}", n.asked)).expect("prompts/fields.toml: valid regex");
            (n.name.as_str(), re)
        })
        .collect()
}

/// The prose names of fields (`{period}` unresolved) and of report sections.
fn described_fields() -> &'static [(&'static str, Regex)] {
    static ALL: OnceLock<Vec<(&'static str, Regex)>> = OnceLock::new();
    ALL.get_or_init(|| compiled(|f| &f.field))
}

fn described_sections() -> &'static [(&'static str, Regex)] {
    static ALL: OnceLock<Vec<(&'static str, Regex)>> = OnceLock::new();
    ALL.get_or_init(|| compiled(|f| &f.section))
}

/// The `nvidia-smi -q -d` sections the question names, in the file's
/// order, when it names two or more ("hot and slow": PERFORMANCE and
/// TEMPERATURE).
pub fn sections(question: &str) -> Option<Vec<&'static str>> {
    let all = described_sections();
    // "Do NOT change clocks or power limits": what a sentence forbids
    // touching is not what it asks to see.
    static NEGATION: OnceLock<Regex> = OnceLock::new();
    let negation = NEGATION
        .get_or_init(|| Regex::new(r"(?i)\b(?:not|don'?t|never|no)\b").expect("valid regex"));
    let negated = |at: usize| {
        let start = question[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| matches!(c, '.' | '!' | '?' | ';' | '—'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        negation.is_match(&question[start..at])
    };
    let named: Vec<&'static str> = all
        .iter()
        .filter(|(_, re)| re.find_iter(question).any(|m| !negated(m.start())))
        .map(|(name, _)| *name)
        .collect();
    (named.len() >= 2).then_some(named)
}

/// The table a question describes in prose, when it asks for CSV or for
/// each GPU and names at least two `--query-gpu` fields by what they are
/// ("model, serial, vbios and driver version as csv", "ECC mode, current
/// and pending, for each GPU"), or one field per GPU as CSV: `index` first (or the bus id
/// first, without `index`, when the rows are keyed by bus id), then the bus
/// id when named, then the fields in the order the question names them.
pub fn described(question: &str) -> Option<String> {
    let csv = asks_csv(question);
    if !csv && !per_gpu(question) {
        return None;
    }
    let period = if asks_lifetime(question) {
        "aggregate"
    } else {
        "volatile"
    };
    let queryable = Catalogue::builtin()
        .tool("nvidia-smi")
        .and_then(|smi| smi.flag("--query-gpu"))
        .map(|f| f.values.iter().map(|v| v.value.clone()).collect::<Vec<_>>())
        .unwrap_or_default();
    // (where its words stand, file order, field)
    let mut found: Vec<(std::ops::Range<usize>, usize, String)> = Vec::new();
    for (order, (field, re)) in described_fields().iter().enumerate() {
        let Some(c) = re.captures(question) else {
            continue;
        };
        let at = re
            .capture_names()
            .flatten()
            .filter(|n| n.starts_with("at"))
            .find_map(|n| c.name(n))
            .or_else(|| c.get(0))
            .map(|m| m.range())
            .unwrap_or_default();
        let field = field.replace("{period}", period);
        if queryable.contains(&field) {
            found.push((at, order, field));
        }
    }
    let inside = |a: &std::ops::Range<usize>, b: &std::ops::Range<usize>| {
        a != b && b.start <= a.start && a.end <= b.end
    };
    let spans: Vec<std::ops::Range<usize>> = found.iter().map(|(at, ..)| at.clone()).collect();
    found.retain(|(at, ..)| !spans.iter().any(|other| inside(at, other)));
    found.sort_by_key(|(at, order, _)| (at.start, *order));
    let mut fields: Vec<&str> = found.iter().map(|(.., f)| f.as_str()).collect();
    let bus = fields
        .iter()
        .position(|f| *f == "pci.bus_id")
        .map(|i| fields.remove(i));
    // One field is a table when the question asks for it as CSV per GPU.
    let named = fields.len() + usize::from(bus.is_some());
    if named == 0 || (named == 1 && !(csv && per_gpu(question))) {
        return None;
    }
    let mut columns: Vec<&str> = Vec::new();
    if !(bus.is_some() && keyed_by_bus(question)) {
        columns.push("index");
    }
    columns.extend(bus);
    columns.extend(fields);
    Some(format!(
        "nvidia-smi --query-gpu={} --format={}",
        columns.join(","),
        format(question)
    ))
}

/// The CSV table the question asks for, by field names or by what the
/// fields are: the one with more columns when both read one.
pub fn asked(question: &str) -> Option<String> {
    let columns = |c: &String| c.split(',').count();
    match (listed(question), described(question)) {
        (Some(l), Some(d)) if columns(&d) > columns(&l) => Some(d),
        (Some(l), _) => Some(l),
        (None, d) => d,
    }
}

/// Whether the question asks for something per GPU ("per GPU", "for each
/// GPU", "all 8 GPUs", "one line per").
fn per_gpu(question: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    regex(
        &R,
        r"(?i)\b(?:per|each|every)[- ](?:gpu|card)s?\b|\ball (?:the )?(?:\d+ |eight )?(?:gpus|cards)\b|\bone (?:line|row) (?:per|for each)\b",
    )
    .is_match(question)
}

/// Whether the rows are keyed by PCI bus id rather than GPU index ("I key
/// my metrics on PCI bus id, not index").
fn keyed_by_bus(question: &str) -> bool {
    static R: OnceLock<Regex> = OnceLock::new();
    regex(
        &R,
        r"(?i)\b(?:key(?:ed)?|index(?:ed)?) (?:\w+ ){0,2}(?:on|by) (?:the )?(?:pci )?bus[- ]?ids?\b|\bnot (?:by )?(?:the )?index\b",
    )
    .is_match(question)
}

/// A pattern compiled once.
fn regex(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("valid regex"))
}

/// Whether the question asks for lifetime (aggregate) counters rather than
/// those since the driver loaded: "lifetime", "aggregate", "survive
/// reboots", unless negated ("not the lifetime total").
fn asks_lifetime(question: &str) -> bool {
    static LIFETIME: OnceLock<Regex> = OnceLock::new();
    static NEGATION: OnceLock<Regex> = OnceLock::new();
    let lifetime = LIFETIME.get_or_init(|| {
        Regex::new(r"(?i)\b(?:lifetime|aggregate|surviv\w*|all[- ]time|over (?:the|its|their) (?:gpu'?s? )?li(?:fe|ves))\b")
            .expect("valid regex")
    });
    let negation = NEGATION.get_or_init(|| {
        Regex::new(
            r"(?i)\b(?:not|no|don'?t want|never|instead of|rather than)\b(?:\s+\w+){0,2}\s*$",
        )
        .expect("valid regex")
    });
    lifetime
        .find_iter(question)
        .any(|m| !negation.is_match(&question[..m.start()]))
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
    fn fields_described_in_prose_make_the_table() {
        assert_eq!(
            described(
                "need per GPU: model, board serial, vbios and driver version as csv, index first"
            )
            .as_deref(),
            Some(
                "nvidia-smi --query-gpu=index,name,serial,vbios_version,driver_version --format=csv"
            )
        );
        // The bus id comes right after the index; "current vs max" reaches
        // both nouns after it.
        assert_eq!(
            described("current vs max pcie gen and link width per gpu, with the bus id, as csv")
                .as_deref(),
            Some(
                "nvidia-smi --query-gpu=index,pci.bus_id,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max --format=csv"
            )
        );
        // A field whose words lie inside another's is that other one.
        assert_eq!(
            described(
                "csv with current power limit, enforced limit, default limit and max limit per GPU"
            )
            .as_deref(),
            Some(
                "nvidia-smi --query-gpu=index,power.limit,enforced.power.limit,power.default_limit,power.max_limit --format=csv"
            )
        );
        assert_eq!(
            described("one CSV line per GPU: the power it is drawing and the power limit it is actually enforcing, no units").as_deref(),
            Some("nvidia-smi --query-gpu=index,power.draw,enforced.power.limit --format=csv,nounits")
        );
    }

    #[test]
    fn counters_are_lifetime_only_when_asked_and_not_negated() {
        let lifetime = "CSV per GPU of lifetime corrected and uncorrected ECC errors, the ones that survive reboots";
        assert_eq!(
            described(lifetime).as_deref(),
            Some(
                "nvidia-smi --query-gpu=index,ecc.errors.corrected.aggregate.total,ecc.errors.uncorrected.aggregate.total --format=csv"
            )
        );
        let volatile = "corrected ECC errors since the driver loaded, we don't want the lifetime total. CSV, one line per GPU";
        assert_eq!(
            described(volatile).as_deref(),
            Some("nvidia-smi --query-gpu=index,ecc.errors.corrected.volatile.total --format=csv")
        );
        assert!(!asks_lifetime("volatile, not aggregate"));
    }

    #[test]
    fn rows_keyed_by_bus_id_have_no_index_column() {
        assert_eq!(
            asked("I key my metrics on PCI bus id, not index. CSV: pci.bus_id, remapped_rows.pending, remapped_rows.failure").as_deref(),
            Some("nvidia-smi --query-gpu=pci.bus_id,remapped_rows.pending,remapped_rows.failure --format=csv")
        );
        // Both readers find a table: the one with more columns wins.
        assert_eq!(
            asked("per GPU: model, serial, vbios and driver version as csv, index first")
                .as_deref(),
            Some(
                "nvidia-smi --query-gpu=index,name,serial,vbios_version,driver_version --format=csv"
            )
        );
    }

    #[test]
    fn report_sections_named_and_not_negated() {
        assert_eq!(
            sections("one GPU is hot and slow"),
            Some(vec!["PERFORMANCE", "TEMPERATURE"])
        );
        assert_eq!(
            sections("GPU 2 is running slow. Do NOT change clocks, power limits or anything else."),
            None
        );
        assert_eq!(
            sections("how many uncorrected errors and is a row remap pending"),
            Some(vec!["ECC", "ROW_REMAPPER"])
        );
        // A dash of several bytes ends a clause without splitting a char.
        assert_eq!(
            sections("don't touch anything — one GPU is hot and slow"),
            Some(vec!["PERFORMANCE", "TEMPERATURE"])
        );
    }

    #[test]
    fn every_described_field_is_a_catalogued_field() {
        let smi = Catalogue::builtin().tool("nvidia-smi").expect("nvidia-smi");
        let values: Vec<&str> = smi
            .flag("--query-gpu")
            .expect("--query-gpu")
            .values
            .iter()
            .map(|v| v.value.as_str())
            .collect();
        for (field, _) in described_fields() {
            for period in ["volatile", "aggregate"] {
                let field = field.replace("{period}", period);
                assert!(
                    values.contains(&field.as_str()),
                    "prompts/fields.toml: {field} is not a --query-gpu field"
                );
            }
        }
        let display = smi.flag("-d").expect("-d");
        for (name, _) in described_sections() {
            assert!(
                display.values.iter().any(|v| v.value == *name),
                "prompts/fields.toml: {name} is not a -q -d section"
            );
        }
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
