//! Confirming long flags against the installed tool's own help (live node
//! only): the catalogue knows current tools, the node may run older ones.
//!
//! Each `(binary, help arguments)` pair is run once per process with a 5 s
//! timeout and its text cached. A flag is confirmed when the help mentions
//! it as a whole word (`--since`, `--query-gpu=`). Help that cannot be read
//! (tool missing, hung, silent) confirms nothing and refuses nothing.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::risk::LongFlag;
use crate::probe::command::{self, CommandError};

/// How long a tool may take to print its help.
const HELP_TIMEOUT: Duration = Duration::from_secs(5);

/// Help texts by binary and arguments; `None` when unreadable.
type Cache = HashMap<(String, Vec<String>), Option<String>>;

/// The first long flag of `flags` that `binary`'s help does not mention.
pub(crate) fn first_unlisted(binary: &str, flags: &[LongFlag]) -> Option<(String, String)> {
    flags.iter().find_map(|f| {
        if f.help.iter().any(|h| h == &f.flag) {
            return None;
        }
        let text = help_text(binary, &f.help)?;
        (!mentions(&text, &f.flag)).then(|| (f.flag.clone(), f.help.join(" ")))
    })
}

/// The cached help text of `binary help...`.
fn help_text(binary: &str, help: &[String]) -> Option<String> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let key = (binary.to_string(), help.to_vec());
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().ok()?.get(&key) {
        return hit.clone();
    }
    let args: Vec<&str> = help.iter().map(String::as_str).collect();
    let text = match command::run(binary, &args, HELP_TIMEOUT) {
        Ok(out) => Some(out.stdout + &out.stderr),
        // Several tools print their help and exit non-zero.
        Err(CommandError::Failed { stdout, stderr, .. }) => Some(stdout + &stderr),
        Err(_) => None,
    }
    .filter(|t| !t.trim().is_empty());
    cache.lock().ok()?.insert(key, text.clone());
    text
}

/// Whether `text` mentions `flag` as a whole word.
fn mentions(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + flag.len()..].chars().next();
        let word =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        !word(before) && !word(after)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_word_mentions_only() {
        let help = "  -r, --gpu-reset   reset\n  --query-gpu=   fields\n  --since-boot";
        assert!(mentions(help, "--gpu-reset"));
        assert!(mentions(help, "--query-gpu"));
        assert!(!mentions(help, "--since"));
        assert!(!mentions(help, "--gpu"));
    }

    #[test]
    fn unlisted_flag_is_found_in_real_help() {
        // `cat --help` exists wherever the tests run (coreutils or busybox).
        let flags = [
            LongFlag {
                help: vec!["--help".into()],
                flag: "--number".into(),
            },
            LongFlag {
                help: vec!["--help".into()],
                flag: "--sigma-no-such-flag".into(),
            },
        ];
        assert_eq!(
            first_unlisted("cat", &flags),
            Some(("--sigma-no-such-flag".into(), "--help".into()))
        );
        assert_eq!(first_unlisted("cat", &flags[..1]), None);
    }

    #[test]
    fn unreadable_help_refuses_nothing() {
        let flags = [LongFlag {
            help: vec!["--help".into()],
            flag: "--anything".into(),
        }];
        assert_eq!(first_unlisted("sigma-no-such-program", &flags), None);
    }
}
