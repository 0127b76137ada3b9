//! The output grammar: what the model may write, as an llguidance Lark
//! grammar.
//!
//! The model's whole reply is one JSON object `{"commands": ["...", ...]}`:
//! the best-ranked candidate ([`super::rank`]) first, then up to
//! `MAX_COMMANDS - 1` more of the other candidates, word for word, none
//! twice. The candidates are already fitted to the question and judged by
//! the guard; the model chooses which others add something. (Measured on
//! the evaluation, the ranker's first choice is right more often than the
//! model's pick: `docs/EVAL.md`.) Small models choose well among
//! commands they are shown but write them badly, and they write fluent
//! causes and numbers they never saw: so they write neither commands nor
//! prose. The answer's words are the diagnosis's ([`super::diagnose`]).
//!
//! Choosing costs a token or two per command: once a choice is told apart
//! from the others, the rest of it is forced and evaluated in one batch.

use std::fmt::Write as _;
use std::ops::Range;

/// Most commands in one reply.
pub const MAX_COMMANDS: usize = 3;

/// The Lark grammar of a reply choosing among `candidates`: the first
/// candidate, then at most `MAX_COMMANDS - 1` others, none twice.
/// Without candidates the list is empty.
pub fn reply_grammar(candidates: &[String]) -> String {
    let mut g = String::new();
    let _ = writeln!(g, r#"start: "{{\"commands\": [" commands "]}}""#);
    if candidates.is_empty() {
        let _ = writeln!(g, r#"commands: """#);
        return g;
    }
    let alts: Vec<String> = choices(candidates.len())
        .iter()
        .map(|s| {
            s.iter()
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
                .join(r#" ", " "#)
        })
        .collect();
    let _ = writeln!(g, "commands: {}", alts.join(" | "));
    for (i, c) in candidates.iter().enumerate() {
        // The command is JSON string content inside the reply.
        let json = serde_json::to_string(c).unwrap_or_default();
        let _ = writeln!(g, "c{i}: {}", lit(&json));
    }
    g
}

/// Every reply the grammar allows among `n` candidates, as candidate
/// indexes: the first candidate, then distinct others, up to
/// `MAX_COMMANDS` in all.
pub fn choices(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return Vec::new();
    }
    // Few candidates, so the orderings stay few.
    let mut level: Vec<Vec<usize>> = vec![vec![0]];
    let mut all = level.clone();
    for _ in 1..MAX_COMMANDS.min(n) {
        level = level
            .iter()
            .flat_map(|s| {
                (0..n)
                    .filter(|i| !s.contains(i))
                    .map(move |i| [s.clone(), vec![i]].concat())
            })
            .collect();
        all.extend(level.iter().cloned());
    }
    all
}

/// The text of the reply that chooses `commands`, in order, as the grammar
/// spells it, and the byte range of each command's JSON string in it.
pub fn reply_text(commands: &[String]) -> (String, Vec<Range<usize>>) {
    let mut text = String::from(r#"{"commands": ["#);
    let mut spans = Vec::with_capacity(commands.len());
    for (i, command) in commands.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        let start = text.len();
        text.push_str(&serde_json::to_string(command).unwrap_or_default());
        spans.push(start..text.len());
    }
    text.push_str("]}");
    (text, spans)
}

/// A Lark string literal.
fn lit(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use llguidance::api::TopLevelGrammar;
    use llguidance::{Matcher, ParserFactory};

    use super::*;

    /// A matcher over a byte-level vocabulary: every byte is a token, so any
    /// text can be fed and checked.
    fn matcher(grammar: &str) -> Matcher {
        let env: toktrie::TokEnv = std::sync::Arc::new(toktrie::ApproximateTokEnv::single_byte());
        let factory = ParserFactory::new_simple(&env).expect("factory");
        let parser = factory
            .create_parser(TopLevelGrammar::from_lark(grammar.to_string()))
            .expect("grammar compiles");
        Matcher::new(Ok(parser))
    }

    fn accepts(grammar: &str, text: &str) -> bool {
        let mut m = matcher(grammar);
        for b in text.bytes() {
            if m.consume_token(u32::from(b)).is_err() {
                return false;
            }
        }
        m.is_accepting().unwrap_or(false)
    }

    #[test]
    fn replies_choose_among_the_candidates_once_each() {
        let candidates = [
            "nvidia-smi -q -d ECC".to_string(),
            "dmesg -T | grep -i 'xid'".to_string(),
            "nvidia-smi -L".to_string(),
            "nvidia-smi".to_string(),
        ];
        let g = reply_grammar(&candidates);
        assert!(accepts(&g, r#"{"commands": ["nvidia-smi -q -d ECC"]}"#));
        assert!(accepts(
            &g,
            r#"{"commands": ["nvidia-smi -q -d ECC", "nvidia-smi", "dmesg -T | grep -i 'xid'"]}"#
        ));
        assert!(
            !accepts(&g, r#"{"commands": ["nvidia-smi -L"]}"#),
            "the best candidate comes first"
        );
        assert!(!accepts(&g, r#"{"commands": []}"#), "one is required");
        assert!(!accepts(
            &g,
            r#"{"commands": ["nvidia-smi -L", "nvidia-smi -L"]}"#
        ));
        assert!(!accepts(
            &g,
            r#"{"commands": ["nvidia-smi -q -d ECC,PIDS"]}"#
        ));
        assert!(!accepts(
            &g,
            r#"{"commands": ["nvidia-smi -q -d ECC", "nvidia-smi -L", "nvidia-smi", "dmesg -T | grep -i 'xid'"]}"#
        ));
        for n in 1..=MAX_COMMANDS {
            assert!(accepts(&g, &reply_text(&candidates[..n]).0), "{n} commands");
        }
    }

    #[test]
    fn without_candidates_the_list_is_empty() {
        let g = reply_grammar(&[]);
        assert!(accepts(&g, r#"{"commands": []}"#));
        assert!(!accepts(&g, r#"{"commands": ["nvidia-smi"]}"#));
    }

    #[test]
    fn quotes_and_backslashes_in_candidates_are_escaped() {
        let candidates = [r#"dmesg | grep -E 'a\|b'"#.to_string()];
        let g = reply_grammar(&candidates);
        assert!(accepts(&g, r#"{"commands": ["dmesg | grep -E 'a\\|b'"]}"#));
        let (text, spans) = reply_text(&candidates);
        assert!(accepts(&g, &text));
        let json: &str = &text[spans[0].clone()];
        assert_eq!(
            serde_json::from_str::<String>(json).ok().as_ref(),
            Some(&candidates[0])
        );
    }
}
