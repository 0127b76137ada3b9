//! The layering rule, kept by a test rather than remembered: a front end
//! (`src/cli`, `src/repl`, `src/tui`) never imports another front end, and
//! nothing below the front ends imports one. What they share lives in
//! `src/session` and `src/report`.
//!
//! Only the dispatch may name another front end: `main.rs`, `cli/mod.rs`,
//! and the `tui` and `chat` subcommands' entry files, which hand over to
//! `tui::run` and `repl::run`.
//!
//! Every `crate::` and `super::` path in the code (comments left out) is
//! resolved to the top-level module it reaches, grouped imports
//! (`crate::{cli::Node, probe}`) included.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The front ends: top-level modules that draw or print for a user.
const FRONT_ENDS: [&str; 3] = ["cli", "repl", "tui"];

/// Files that hand over from one front end to another.
const DISPATCH: [&str; 4] = ["main.rs", "cli/mod.rs", "cli/tui_cmd.rs", "cli/chat_cmd.rs"];

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("readable source folder") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The module path of a file relative to `src/`: `tui/app.rs` ->
/// `["tui", "app"]`, `tui/mod.rs` -> `["tui"]`, `lib.rs` -> `[]`.
fn module_path(relative: &str) -> Vec<String> {
    let without_ext = relative.trim_end_matches(".rs");
    let mut parts: Vec<String> = without_ext.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// `source` without `//` comments (doc comments included) and without the
/// contents of string literals (raw ones included), so prose and messages
/// never count.
fn code_only(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    let mut in_string = false;
    let mut previous = ' ';
    while let Some(c) = chars.next() {
        let after_word = is_ident(previous);
        previous = c;
        if !in_string && c == 'r' && !after_word && matches!(chars.peek(), Some('#' | '"')) {
            skip_raw_string(&mut chars, &mut out);
            previous = '"';
            continue;
        }
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    in_string = false;
                    out.push('"');
                }
                '\n' => out.push('\n'),
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push('"');
            }
            // A char literal ('"', '\"', '\u{22}') must not open a string;
            // a lifetime ('a) has no closing quote.
            '\'' => {
                let mut ahead = chars.clone();
                let literal = match ahead.next() {
                    Some('\\') => {
                        ahead.next();
                        ahead.position(|c| c == '\'').map(|n| n + 3)
                    }
                    Some(_) if ahead.next() == Some('\'') => Some(2),
                    _ => None,
                };
                for _ in 0..literal.unwrap_or(0) {
                    chars.next();
                }
                out.push_str("''");
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Skips a raw string after its `r` (`r"..."`, `r#"..."#`), keeping its
/// line breaks; leaves anything else (`r#ident`) as code.
fn skip_raw_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String) {
    let mut hashes = 0;
    while chars.peek() == Some(&'#') {
        chars.next();
        hashes += 1;
    }
    if chars.peek() != Some(&'"') {
        out.push('r');
        out.push_str(&"#".repeat(hashes));
        return;
    }
    chars.next();
    out.push_str("\"\"");
    let mut closing = 0;
    let mut in_close = false;
    for c in chars.by_ref() {
        if c == '\n' {
            out.push('\n');
        }
        if in_close && c == '#' {
            closing += 1;
        } else {
            in_close = c == '"';
            closing = 0;
        }
        if in_close && closing == hashes {
            return;
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules that the paths in `code` reach, for a file whose
/// module path is `module`: each `crate::X`, each item of `crate::{X, ..}`,
/// and each `super::` chain resolved against `module`.
fn reached(code: &str, module: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_ident(bytes[i - 1]);
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        if starts_word && rest.starts_with("crate::") {
            i += "crate::".len();
            for first in first_segments(&bytes, &mut i) {
                found.insert(first);
            }
            continue;
        }
        if starts_word && rest.starts_with("super::") {
            let mut depth = 0;
            while bytes[i..].iter().collect::<String>().starts_with("super::") {
                depth += 1;
                i += "super::".len();
            }
            let mut base: Vec<String> = module.to_vec();
            for _ in 0..depth {
                base.pop();
            }
            match base.first() {
                Some(top) => {
                    found.insert(top.clone());
                }
                None => {
                    for first in first_segments(&bytes, &mut i) {
                        found.insert(first);
                    }
                }
            }
            continue;
        }
        i += 1;
    }
    found
}

/// The first segment of the path at `i` (`cli` in `cli::Node`), or of each
/// item of a `{...}` group; moves `i` past what it read.
fn first_segments(chars: &[char], i: &mut usize) -> Vec<String> {
    if chars.get(*i) == Some(&'{') {
        let mut depth = 0;
        let mut segments = Vec::new();
        let mut at_item_start = true;
        while *i < chars.len() {
            let c = chars[*i];
            match c {
                '{' => {
                    depth += 1;
                    at_item_start = depth == 1;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        *i += 1;
                        break;
                    }
                }
                ',' if depth == 1 => at_item_start = true,
                c if at_item_start && is_ident(c) => {
                    let start = *i;
                    while *i < chars.len() && is_ident(chars[*i]) {
                        *i += 1;
                    }
                    segments.push(chars[start..*i].iter().collect());
                    at_item_start = false;
                    continue;
                }
                _ => {}
            }
            *i += 1;
        }
        return segments;
    }
    let start = *i;
    while *i < chars.len() && is_ident(chars[*i]) {
        *i += 1;
    }
    let word: String = chars[start..*i].iter().collect();
    if word.is_empty() {
        Vec::new()
    } else {
        vec![word]
    }
}

/// The front ends a file may not reach: every other one for a front end's
/// file, all of them for the layers below, none for the dispatch.
fn forbidden(relative: &str) -> Vec<&'static str> {
    if DISPATCH.contains(&relative) {
        return Vec::new();
    }
    let own = relative.split('/').next().unwrap_or_default();
    FRONT_ENDS.into_iter().filter(|f| *f != own).collect()
}

/// Each forbidden reach in the tree, as `file -> module`.
fn violations(src: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for path in rust_files(src) {
        let relative = path
            .strip_prefix(src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let source = fs::read_to_string(&path).expect("readable source file");
        let reach = reached(&code_only(&source), &module_path(&relative));
        for target in forbidden(&relative) {
            if reach.contains(target) {
                found.push(format!("src/{relative} -> {target}"));
            }
        }
    }
    found
}

#[test]
fn no_front_end_imports_another_and_no_lower_layer_imports_one() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "front ends must not import each other, nor lower layers a front end; \
         move what they share to src/session or src/report:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn the_dispatch_files_exist() {
    // A renamed entry file would silently drop out of the allowance and,
    // worse, the rule would no longer describe the tree.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in DISPATCH {
        assert!(src.join(file).is_file(), "src/{file} is named in DISPATCH");
    }
}

#[test]
fn the_scanner_sees_every_spelling_of_a_path() {
    let module = module_path("tui/app.rs");
    assert_eq!(module, ["tui", "app"]);
    let cases = [
        ("use crate::cli::Node;", "cli"),
        ("use crate::{probe, repl::Cancel};", "repl"),
        ("use crate::{probe::{self, Snapshot}, cli};", "cli"),
        ("let x = crate::repl::PROMPT;", "repl"),
        ("use super::super::cli::render;", "cli"),
    ];
    for (code, target) in cases {
        let reach = reached(&code_only(code), &module);
        assert!(reach.contains(target), "{code}: {reach:?}");
    }
    // `super::` inside the TUI stays in the TUI.
    assert_eq!(
        reached("use super::app::App;", &module),
        BTreeSet::from(["tui".to_string()])
    );
    // Comments and strings are not code.
    let prose = "// see crate::cli\n/// [`crate::repl`]\nlet s = \"crate::tui::run\";";
    assert!(reached(&code_only(prose), &module).is_empty());
    let raw = "let s = r#\"a \"quoted\" crate::cli\"#; let q = '\"'; let e = '\\\"';\
               fn f<'a>(x: &'a str) {} use crate::repl::X;";
    assert_eq!(
        reached(&code_only(raw), &module),
        BTreeSet::from(["repl".to_string()])
    );
    // A front end's file may not reach another one; dispatch may.
    assert_eq!(forbidden("tui/app.rs"), ["cli", "repl"]);
    assert_eq!(forbidden("session/mod.rs"), FRONT_ENDS);
    assert!(forbidden("cli/chat_cmd.rs").is_empty());
}
