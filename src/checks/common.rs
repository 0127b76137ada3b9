//! Helpers the rules share: which GPUs count as busy or idle, how untrusted
//! text from the node is made safe (and short) for titles, evidence and
//! every front end, and how the read-only commands a finding proposes are
//! spelled.
//!
//! Nothing here judges a snapshot; the rule modules do.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::probe::{Gpu, Snapshot, normalize_bus_id};

/// A GPU at or above this utilisation (percent) is busy: throttling and a
/// downclocked PCIe link cost real work.
pub(super) const BUSY_UTIL_PCT: u32 = 10;

/// A GPU below this utilisation (percent) is idle.
pub(super) const IDLE_UTIL_PCT: u32 = 5;

/// Longest untrusted value kept in evidence, in characters.
const EVIDENCE_MAX_CHARS: usize = 200;

/// GPUs NVML still reaches. The values of a lost GPU are missing or stale, so
/// rules about GPU state skip it; `presence` reports the loss itself.
pub(super) fn live_gpus(snapshot: &Snapshot) -> impl Iterator<Item = &Gpu> {
    snapshot.gpus.iter().filter(|g| !g.lost)
}

/// The GPU is doing work (utilisation known and at least [`BUSY_UTIL_PCT`]).
/// Unknown utilisation is not busy: rules do not guess.
pub(super) fn is_busy(gpu: &Gpu) -> bool {
    gpu.utilization_gpu_pct.is_some_and(|u| u >= BUSY_UTIL_PCT)
}

/// The GPU is idle (utilisation known and below [`IDLE_UTIL_PCT`]).
pub(super) fn is_idle(gpu: &Gpu) -> bool {
    gpu.utilization_gpu_pct.is_some_and(|u| u < IDLE_UTIL_PCT)
}

/// An argv from string slices.
pub(super) fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// Evidence from `(name, value)` pairs.
pub(super) fn evidence<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `nvidia-smi -i GPU -q -d SECTIONS`: the detailed, read-only report of
/// some sections (`ECC,PAGE_RETIREMENT,ROW_REMAPPER`, `PERFORMANCE`, ...).
pub(super) fn nvidia_smi_sections(gpu: u32, sections: &str) -> Vec<String> {
    argv(&["nvidia-smi", "-i", &gpu.to_string(), "-q", "-d", sections])
}

/// `dmesg -T`: the kernel log with wall-clock times.
pub(super) fn dmesg() -> Vec<String> {
    argv(&["dmesg", "-T"])
}

/// `nvidia-bug-report.sh --safe-mode`: NVIDIA's diagnostic bundle, collected
/// before any reset destroys the state it records.
pub(super) fn bug_report() -> Vec<String> {
    argv(&["nvidia-bug-report.sh", "--safe-mode"])
}

/// The PCI slot (`0000:18:00`) of a bus id in any of the formats NVML, lspci
/// and the kernel log use, for `lspci -s`. `None` when the text is not a PCI
/// address: bus ids come from the node, and only a well-formed one may go
/// into a command.
pub(super) fn pci_slot(bus_id: &str) -> Option<String> {
    let slot = normalize_bus_id(bus_id);
    let sizes: Vec<usize> = slot.split(':').map(str::len).collect();
    let well_formed = sizes == [4, 2, 2] && slot.chars().all(|c| c == ':' || c.is_ascii_hexdigit());
    well_formed.then_some(slot)
}

/// `lspci -nnk -s SLOT` for a well-formed bus id, else `lspci -nnk -d 10de:`
/// (every NVIDIA device, with the kernel driver in use).
pub(super) fn lspci_device(bus_id: &str) -> Vec<String> {
    match pci_slot(bus_id) {
        Some(slot) => argv(&["lspci", "-nnk", "-s", &slot]),
        None => argv(&["lspci", "-nnk", "-d", "10de:"]),
    }
}

/// Untrusted text from the node made safe to print: control and
/// bidirectional-override characters escaped, length capped.
pub(super) fn untrusted(text: &str) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == EVIDENCE_MAX_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() || is_bidi_or_invisible(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Untrusted multi-line text (command output, model text) made safe for a
/// terminal: line breaks and tabs kept, every other control character and
/// the characters that reorder or hide text escaped. No length cap.
pub fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| (c.is_control() && c != '\n' && c != '\t') || is_bidi_or_invisible(c);
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// JSON text with every control, bidi and invisible character written as a
/// `\uXXXX` escape. serde_json escapes only C0 controls; a raw C1 control
/// (`U+009B` is CSI) or a bidi override inside a string would still act on
/// a terminal showing the JSON. Such characters only occur inside JSON
/// strings, where the escape means the same character.
pub fn inert_json(json: &str) -> Cow<'_, str> {
    let live = |c: char| c.is_control() || is_bidi_or_invisible(c);
    if !json.chars().any(live) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if live(c) && c != '\n' {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Cuts `s` to at most `max` characters, marking the cut with `…`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Untrusted text for a title, quoted, with every special character escaped
/// as Rust's `Debug` form of a string does, and cut (`…`) so the text
/// between the quotes, escapes included, is at most `max_chars` long.
pub(super) fn quoted(text: &str, max_chars: usize) -> String {
    let mut body = String::new();
    let mut len = 0;
    for c in text.chars() {
        let piece: String = if is_bidi_or_invisible(c) {
            c.escape_unicode().collect()
        } else {
            c.escape_debug().collect()
        };
        len += piece.chars().count();
        if len > max_chars {
            body.push('…');
            break;
        }
        body.push_str(&piece);
    }
    format!("\"{body}\"")
}

/// Characters that reorder or hide text in a terminal (used to disguise a
/// process name).
/// Characters that reorder or hide text on a terminal (bidi overrides and
/// isolates, zero-width characters, the BOM).
pub fn is_bidi_or_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// The GPU's utilisation as evidence: `90%`, or `unknown`.
pub(super) fn utilization(gpu: &Gpu) -> String {
    gpu.utilization_gpu_pct
        .map_or_else(|| "unknown".into(), |u| format!("{u}%"))
}

/// Mebibytes as GiB with one decimal (`38.2 GiB`).
pub(super) fn gib(mib: u64) -> String {
    format!("{:.1} GiB", mib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_slot_accepts_every_format_and_rejects_junk() {
        assert_eq!(pci_slot("00000000:18:00.0").as_deref(), Some("0000:18:00"));
        assert_eq!(pci_slot("0000:9A:00").as_deref(), Some("0000:9a:00"));
        assert_eq!(pci_slot("0000:18:00; rm -rf /"), None);
        assert_eq!(pci_slot("-s"), None);
        assert_eq!(pci_slot("1:2:3"), None);
    }

    #[test]
    fn lspci_falls_back_to_vendor_for_bad_bus_ids() {
        assert_eq!(
            lspci_device("0000:18:00.0"),
            argv(&["lspci", "-nnk", "-s", "0000:18:00"])
        );
        assert_eq!(
            lspci_device("--evil"),
            argv(&["lspci", "-nnk", "-d", "10de:"])
        );
    }

    #[test]
    fn untrusted_escapes_controls_and_caps_length() {
        assert_eq!(untrusted("py\u{1b}[31mthon\n"), "py\\u{1b}[31mthon\\n");
        assert_eq!(untrusted("a\u{202E}b"), "a\\u{202e}b");
        assert_eq!(untrusted("ok name"), "ok name");
        let long = "x".repeat(500);
        assert_eq!(untrusted(&long).chars().count(), EVIDENCE_MAX_CHARS + 1);
    }

    #[test]
    fn inert_json_escapes_c1_and_bidi_and_stays_the_same_json() {
        let value = serde_json::json!({"name": "a\u{9b}2J\u{202e}b\u{1b}c", "n": 1});
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let inert = inert_json(&pretty);
        assert!(
            !inert.contains('\u{9b}') && !inert.contains('\u{202e}'),
            "{inert}"
        );
        assert!(
            inert.contains("\\u009b") && inert.contains("\\u202e"),
            "{inert}"
        );
        let back: serde_json::Value = serde_json::from_str(&inert).unwrap();
        assert_eq!(back, value);
        assert!(matches!(inert_json("{\"a\": 1}"), Cow::Borrowed(_)));
    }

    #[test]
    fn printable_keeps_lines_and_escapes_the_rest() {
        assert_eq!(printable("GPU 0\tok\nGPU 1\n"), "GPU 0\tok\nGPU 1\n");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(printable("a\u{1b}]0;x\u{7}b\r"), "a\\u{1b}]0;x\\u{7}b\\r");
        assert_eq!(printable("a\u{202E}b"), "a\\u{202e}b");
    }

    #[test]
    fn quoted_truncates_and_escapes() {
        assert_eq!(quoted("python3", 20), "\"python3\"");
        assert_eq!(quoted("abcdef", 3), "\"abc…\"");
        assert_eq!(quoted("a\"b\nc", 20), "\"a\\\"b\\nc\"");
        assert_eq!(quoted("a\u{202E}b", 20), "\"a\\u{202e}b\"");
        assert_eq!(quoted("\u{1b}\u{1b}", 8), "\"\\u{1b}…\"");
    }

    #[test]
    fn busy_and_idle_need_a_known_utilisation() {
        let mut gpu = Gpu::default();
        assert!(!is_busy(&gpu) && !is_idle(&gpu));
        gpu.utilization_gpu_pct = Some(BUSY_UTIL_PCT);
        assert!(is_busy(&gpu) && !is_idle(&gpu));
        gpu.utilization_gpu_pct = Some(0);
        assert!(!is_busy(&gpu) && is_idle(&gpu));
    }
}
