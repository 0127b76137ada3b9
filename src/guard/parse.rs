//! Shell parsing: a command line becomes the argv of each pipeline segment,
//! and every shell feature beyond a plain pipeline is refused.
//!
//! The line is parsed with `brush-parser` (a bash grammar), so quoting works
//! as in bash, and then walked: only one pipeline of simple commands made of
//! literal words survives. Lists (`;`, `&&`, `||`, newline) are refused
//! rather than validated part by part: one proposal is one pipeline, which
//! keeps confirmation honest and the rules simple. Words may be quoted and
//! escaped but never expanded: command and process substitution, variables,
//! arithmetic, `~`, globs and brace expansion are refused, because the
//! executor runs argv without a shell and the guard must see exactly what
//! will run. The only redirections are `>/dev/null`, `2>/dev/null`,
//! `&>/dev/null` and `2>&1`.

use std::panic::{self, AssertUnwindSafe};

use brush_parser::ast::{
    Command, CommandPrefixOrSuffixItem, CompoundCommand, IoFileRedirectKind, IoFileRedirectTarget,
    IoRedirect, SeparatorOperator,
};
use brush_parser::word::WordPiece;
use brush_parser::{ParserOptions, Token, parse_tokens, tokenize_str_with_options};

/// The longest command line the guard reads, in bytes.
pub const MAX_LEN: usize = 4096;

/// The most `(` a command line may hold (see `precheck`).
const MAX_PARENS: usize = 8;

/// Where a segment's standard output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum StdoutTo {
    /// The next segment, or the captured output for the last one.
    #[default]
    Pipe,
    /// Discarded (`>/dev/null`).
    Null,
}

/// Where a segment's standard error goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum StderrTo {
    /// Captured as the command's error output.
    #[default]
    Capture,
    /// Discarded (`2>/dev/null`).
    Null,
    /// Where standard output went before any `>/dev/null` that follows (`2>&1`).
    Pipe,
}

/// The redirections of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Redirects {
    /// Standard output.
    pub stdout: StdoutTo,
    /// Standard error.
    pub stderr: StderrTo,
    /// Each redirection in canonical spelling, in order.
    pub text: Vec<String>,
}

/// One command of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Program and arguments after quote removal.
    pub argv: Vec<String>,
    /// Its redirections.
    pub redirects: Redirects,
}

/// Parses `command` into pipeline segments, or says which rule refuses it.
pub(crate) fn parse(command: &str) -> Result<Vec<Segment>, String> {
    precheck(command)?;
    // brush-parser unwraps in a few places; a panic on hostile input that
    // the prechecks let through must become a refusal, never a crash.
    panic::catch_unwind(AssertUnwindSafe(|| pipeline(command)))
        .unwrap_or_else(|_| Err("the command could not be parsed".to_string()))
}

/// The segments of `command`, which passed [`precheck`].
fn pipeline(command: &str) -> Result<Vec<Segment>, String> {
    let options = ParserOptions::default();
    let unparsed = |e: &dyn std::fmt::Display| format!("the command could not be parsed: {e}");
    let tokens = tokenize_str_with_options(command, &options.tokenizer_options())
        .map_err(|e| unparsed(&e))?;
    // `cmd;` parses as one command, so the `;` is looked for in the tokens.
    let semicolon = tokens
        .iter()
        .any(|t| matches!(t, Token::Operator(op, _) if op.starts_with(';')));
    let parsed = parse_tokens(&tokens, &options).map_err(|e| unparsed(&e))?;

    const LIST: &str = "command lists (;, &&, ||, newline) are not allowed: propose one pipeline";
    let [complete] = parsed.complete_commands.as_slice() else {
        return Err(if parsed.complete_commands.is_empty() {
            "empty command".to_string()
        } else {
            LIST.to_string()
        });
    };
    let [item] = complete.0.as_slice() else {
        return Err(LIST.to_string());
    };
    if matches!(item.1, SeparatorOperator::Async) {
        return Err("running in the background (&) is not allowed".into());
    }
    let and_or = &item.0;
    if !and_or.additional.is_empty() {
        return Err(LIST.to_string());
    }
    let pipeline = &and_or.first;
    if pipeline.timed.is_some() {
        return Err("'time' is not allowed".into());
    }
    if pipeline.bang {
        return Err("'!' (negating the exit status) is not allowed".into());
    }
    let segments: Result<Vec<Segment>, String> =
        pipeline.seq.iter().map(|c| segment(c, &options)).collect();
    // Last, so a group or a loop is refused by its own name.
    if semicolon && segments.is_ok() {
        return Err(LIST.to_string());
    }
    segments
}

/// Refuses what must never reach the parser: oversize input, control
/// characters, non-ASCII look-alikes, and descriptor numbers that overflow.
fn precheck(command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err("empty command".into());
    }
    if command.len() > MAX_LEN {
        return Err(format!(
            "the command is {} bytes; the limit is {MAX_LEN}",
            command.len()
        ));
    }
    for (at, c) in command.char_indices() {
        if c == '\n' || c == '\r' {
            return Err("newlines are not allowed: propose one pipeline on one line".into());
        }
        if !c.is_ascii() {
            return Err(format!(
                "non-ASCII character U+{:04X} at byte {at} is not allowed (look-alike characters can disguise a command)",
                c as u32
            ));
        }
        if c.is_ascii_control() && c != '\t' {
            return Err(format!(
                "control character 0x{:02x} at byte {at} is not allowed",
                c as u32
            ));
        }
    }
    // The shell parser backtracks: its time doubles with each unmatched
    // `(` (12 take 20 s), so a hostile line could hang the guard. No command
    // Sigma proposes needs more (a quoted regex's groups included).
    let parens = command.matches('(').count();
    if parens > MAX_PARENS {
        return Err(format!(
            "{parens} parentheses are more than the {MAX_PARENS} the guard reads: propose a simpler command"
        ));
    }
    // brush-parser's tokenizer loops for ever, growing until it is killed,
    // on some here-documents (`x <<'' #c`), and its word parser panics on a
    // `~` before a number too big for it (found: 25 digits). On hostile lines the parser can read
    // quotes differently from the scan below, so these two are refused
    // wherever they are, quoted or not: no command Sigma proposes needs them
    // (on one line a here-document has no body).
    if command.contains("<<") {
        return Err(
            "here-documents and here-strings (<<, <<<) are not allowed, quoted or not".into(),
        );
    }
    let bytes = command.as_bytes();
    for (at, _) in command.match_indices('~') {
        let sign = usize::from(matches!(bytes.get(at + 1), Some(b'+' | b'-')));
        let digits = bytes[at + 1 + sign..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 9 {
            return Err("a directory-stack reference (~N) that large is not allowed".into());
        }
    }
    // The constructs it reads recursively (a `$( )` inside double quotes)
    // and the others it misreads are refused before it sees them too.
    if let Some(refusal) = fragile_construct(command) {
        return Err(refusal.into());
    }
    let mut run = 0;
    for &b in bytes {
        if b.is_ascii_digit() {
            run += 1;
        } else {
            if run > 9 && (b == b'<' || b == b'>') {
                return Err("a file descriptor number that large is not allowed".into());
            }
            run = 0;
        }
    }
    Ok(())
}

/// The first construct in `command` that brush-parser reads recursively
/// or cannot be trusted with, as the guard's refusal of it: `$( )`,
/// `$(( ))`, `${ }`, `$[ ]`, `$'...'`, `$"..."` and backquotes outside
/// single quotes; `<( )`, `>( )`, extended globs (`+( )`) and a `~`
/// starting a word outside any quotes.
fn fragile_construct(command: &str) -> Option<&'static str> {
    let bytes = command.as_bytes();
    let (mut single, mut double, mut at) = (false, false, 0);
    while at < bytes.len() {
        let next = |n: usize| bytes.get(at + n).copied();
        let unquoted = !single && !double;
        let word_start = at == 0 || b" \t=:|&;<>(".contains(&bytes[at - 1]);
        match bytes[at] {
            b'\\' if !single => at += 1,
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'`' if !single => return Some("command substitution $(...) or `...` is not allowed"),
            b'$' if !single => match (next(1), next(2)) {
                (Some(b'('), Some(b'(')) | (Some(b'['), _) => {
                    return Some("arithmetic expansion $((...)) is not allowed");
                }
                (Some(b'('), _) => {
                    return Some("command substitution $(...) or `...` is not allowed");
                }
                (Some(b'{'), _) => return Some("variable expansion ${...} is not allowed"),
                (Some(b'\''), _) => return Some("ANSI-C quoting $'...' is not allowed"),
                (Some(b'"'), _) => return Some("locale quoting $\"...\" is not allowed"),
                _ => {}
            },
            b'<' | b'>' if unquoted && next(1) == Some(b'(') => {
                return Some("process substitution <(...) / >(...) is not allowed");
            }
            b'?' | b'*' | b'+' | b'@' | b'!' if unquoted && next(1) == Some(b'(') => {
                return Some("extended glob patterns such as +(...) are not allowed");
            }
            b'~' if unquoted && word_start => {
                return Some("home directory expansion (~) is not allowed");
            }
            _ => {}
        }
        at += 1;
    }
    None
}

/// One pipeline segment: a simple command of literal words.
fn segment(command: &Command, options: &ParserOptions) -> Result<Segment, String> {
    let simple = match command {
        Command::Simple(s) => s,
        Command::Compound(CompoundCommand::Subshell(_), _) => {
            return Err("subshells ( ... ) are not allowed".into());
        }
        Command::Compound(CompoundCommand::BraceGroup(_), _) => {
            return Err("command groups { ...; } are not allowed".into());
        }
        Command::Compound(..) => {
            return Err("loops, conditionals and other compound commands are not allowed".into());
        }
        Command::Function(_) => return Err("defining functions is not allowed".into()),
        Command::ExtendedTest(..) => return Err("[[ ... ]] tests are not allowed".into()),
    };
    let mut argv = Vec::new();
    let mut redirects = Redirects::default();
    let prefix = simple.prefix.iter().flat_map(|p| p.0.iter());
    for item in prefix {
        match item {
            CommandPrefixOrSuffixItem::AssignmentWord(..) => {
                return Err("variable assignment (NAME=value) is not allowed".into());
            }
            other => item_into(other, options, &mut argv, &mut redirects)?,
        }
    }
    if let Some(name) = &simple.word_or_name {
        argv.push(expand(&name.value, options)?);
    }
    for item in simple.suffix.iter().flat_map(|s| s.0.iter()) {
        item_into(item, options, &mut argv, &mut redirects)?;
    }
    if argv.is_empty() {
        return Err("no program is named".into());
    }
    Ok(Segment { argv, redirects })
}

/// Adds one prefix or suffix item to the segment.
fn item_into(
    item: &CommandPrefixOrSuffixItem,
    options: &ParserOptions,
    argv: &mut Vec<String>,
    redirects: &mut Redirects,
) -> Result<(), String> {
    match item {
        // `a=b` after the program name is an ordinary argument to it.
        CommandPrefixOrSuffixItem::Word(w) | CommandPrefixOrSuffixItem::AssignmentWord(_, w) => {
            argv.push(expand(&w.value, options)?);
        }
        CommandPrefixOrSuffixItem::IoRedirect(r) => redirect(r, options, redirects)?,
        CommandPrefixOrSuffixItem::ProcessSubstitution(..) => {
            return Err("process substitution <(...) / >(...) is not allowed".into());
        }
    }
    Ok(())
}

/// Applies one redirection, allowing only the harmless ones.
fn redirect(r: &IoRedirect, options: &ParserOptions, to: &mut Redirects) -> Result<(), String> {
    let refuse = |what: String| {
        Err(format!(
            "redirection {what} is not allowed; only >/dev/null, 2>/dev/null, &>/dev/null and 2>&1 are"
        ))
    };
    match r {
        IoRedirect::File(fd, kind, target) => match (kind, target) {
            (
                IoFileRedirectKind::Write
                | IoFileRedirectKind::Append
                | IoFileRedirectKind::Clobber,
                IoFileRedirectTarget::Filename(w),
            ) => {
                let path = expand(&w.value, options)?;
                let fd = fd.unwrap_or(1);
                if path != "/dev/null" || !(fd == 1 || fd == 2) {
                    return refuse(format!("{r}"));
                }
                if fd == 1 {
                    to.stdout = StdoutTo::Null;
                    to.text.push(">/dev/null".into());
                } else {
                    to.stderr = StderrTo::Null;
                    to.text.push("2>/dev/null".into());
                }
            }
            (IoFileRedirectKind::DuplicateOutput, target) => {
                let source = match target {
                    IoFileRedirectTarget::Fd(n) => n.to_string(),
                    IoFileRedirectTarget::Duplicate(w) => expand(&w.value, options)?,
                    _ => return refuse(format!("{r}")),
                };
                if fd.unwrap_or(1) != 2 || source != "1" {
                    return refuse(format!("{r}"));
                }
                to.stderr = match to.stdout {
                    StdoutTo::Null => StderrTo::Null,
                    StdoutTo::Pipe => StderrTo::Pipe,
                };
                to.text.push("2>&1".into());
            }
            _ => return refuse(format!("{r}")),
        },
        IoRedirect::OutputAndError(w, _) => {
            if expand(&w.value, options)? != "/dev/null" {
                return refuse(format!("{r}"));
            }
            to.stdout = StdoutTo::Null;
            to.stderr = StderrTo::Null;
            to.text.push("&>/dev/null".into());
        }
        IoRedirect::HereDocument(..) => return Err("here-documents (<<) are not allowed".into()),
        IoRedirect::HereString(..) => return Err("here-strings (<<<) are not allowed".into()),
    }
    Ok(())
}

/// Removes quotes and escapes from a word, refusing every expansion.
fn expand(raw: &str, options: &ParserOptions) -> Result<String, String> {
    let pieces = brush_parser::word::parse(raw, options)
        .map_err(|e| format!("the word {raw} could not be parsed: {e}"))?;
    let mut out = String::new();
    for p in &pieces {
        piece(&p.piece, false, raw, &mut out)?;
    }
    Ok(out)
}

/// Appends the literal text of one word piece.
fn piece(p: &WordPiece, quoted: bool, raw: &str, out: &mut String) -> Result<(), String> {
    match p {
        WordPiece::Text(s) => {
            if !quoted && s.contains(['*', '?', '[', ']', '(', ')']) {
                return Err(format!(
                    "glob in {raw} is not allowed: commands run without a shell, so name each path (quote a pattern meant for the program)"
                ));
            }
            // A `$` bash leaves literal (`f$/0`, a trailing `$`) reads as an
            // expansion to a person approving it: refused, as expansions are.
            if !quoted && s.contains('$') {
                return Err(format!(
                    "a bare $ in {raw} is not allowed: quote it if the program needs a literal $"
                ));
            }
            // `{a,b}` and `{1..3}` expand in bash; a lone `{}` does not.
            if !quoted && s.contains('{') && (s.contains(',') || s.contains("..")) {
                return Err(format!("brace expansion in {raw} is not allowed"));
            }
            out.push_str(s);
        }
        WordPiece::SingleQuotedText(s) => out.push_str(s),
        WordPiece::DoubleQuotedSequence(inner) => {
            for q in inner {
                piece(&q.piece, true, raw, out)?;
            }
        }
        WordPiece::EscapeSequence(s) => out.push_str(s.strip_prefix('\\').unwrap_or(s)),
        WordPiece::CommandSubstitution(_) | WordPiece::BackquotedCommandSubstitution(_) => {
            return Err("command substitution $(...) or `...` is not allowed".into());
        }
        WordPiece::ParameterExpansion(_) => {
            return Err(format!("variable expansion in {raw} is not allowed"));
        }
        WordPiece::ArithmeticExpression(_) => {
            return Err("arithmetic expansion $((...)) is not allowed".into());
        }
        WordPiece::TildeExpansion(_) => {
            return Err("home directory expansion (~) is not allowed".into());
        }
        WordPiece::AnsiCQuotedText(_) => {
            return Err("ANSI-C quoting $'...' is not allowed".into());
        }
        WordPiece::GettextDoubleQuotedSequence(_) => {
            return Err("locale quoting $\"...\" is not allowed".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(command: &str) -> Vec<Vec<String>> {
        parse(command)
            .unwrap_or_else(|e| panic!("{command}: {e}"))
            .into_iter()
            .map(|s| s.argv)
            .collect()
    }

    fn refusal(command: &str) -> String {
        match parse(command) {
            Ok(s) => panic!("{command} parsed: {s:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn quotes_are_removed() {
        assert_eq!(
            argv(r#"nvidia-smi -L | grep 'GPU 3' | grep "a\"b" | grep c\ d"#),
            vec![
                vec!["nvidia-smi", "-L"],
                vec!["grep", "GPU 3"],
                vec!["grep", "a\"b"],
                vec!["grep", "c d"],
            ]
        );
    }

    #[test]
    fn quoted_glob_is_literal() {
        assert_eq!(argv("grep -E 'a*|b?'")[0][2], "a*|b?");
    }

    #[test]
    fn assignment_after_the_program_is_an_argument() {
        assert_eq!(
            argv("nvidia-smi --query-gpu=index,name --format=csv")[0][1],
            "--query-gpu=index,name"
        );
        assert_eq!(argv("x a=b")[0][1], "a=b");
    }

    #[test]
    fn harmless_redirections_are_recorded() {
        let s = parse("nvidia-smi -q 2>/dev/null").unwrap();
        assert_eq!(s[0].redirects.stderr, StderrTo::Null);
        assert_eq!(s[0].argv, vec!["nvidia-smi", "-q"]);
        let s = parse("nvidia-smi 2>&1 | grep x").unwrap();
        assert_eq!(s[0].redirects.stderr, StderrTo::Pipe);
        let s = parse("nvidia-smi >/dev/null 2>&1").unwrap();
        assert_eq!(s[0].redirects.stdout, StdoutTo::Null);
        assert_eq!(s[0].redirects.stderr, StderrTo::Null);
        let s = parse("nvidia-smi &>/dev/null").unwrap();
        assert_eq!(s[0].redirects.text, vec!["&>/dev/null"]);
    }

    #[test]
    fn shell_features_are_refused() {
        for (cmd, expect) in [
            ("nvidia-smi; rm -rf /", "command lists"),
            ("nvidia-smi && reboot", "command lists"),
            ("nvidia-smi || reboot", "command lists"),
            ("nvidia-smi &", "background"),
            ("echo $(curl x)", "command substitution"),
            ("echo `id`", "command substitution"),
            ("cat <(ls)", "process substitution"),
            ("(nvidia-smi)", "subshells"),
            ("{ nvidia-smi; }", "command groups"),
            ("FOO=1 nvidia-smi", "variable assignment"),
            ("echo $HOME", "variable expansion"),
            ("echo \"$HOME\"", "variable expansion"),
            ("echo $((1+2))", "arithmetic"),
            ("cat ~/.ssh/id_rsa", "home directory"),
            ("cat /proc/*/environ", "glob"),
            ("cat /sys/{a,b}", "brace expansion"),
            ("nvidia-smi -q > /etc/passwd", "redirection"),
            ("nvidia-smi >> /tmp/x", "redirection"),
            ("grep x < /etc/shadow", "redirection"),
            ("cat <<EOF\nx\nEOF", "newlines"),
            ("cat <<< x", "here-strings"),
            ("cat <<EOF", "here-documents"),
            ("x <<'' #c", "here-documents"),
            ("x <<\"\" | (sh)#c", "here-documents"),
            ("grep '<<' f", "quoted or not"),
            ("ls ~-22222222222222222222 /", "directory-stack"),
            ("grep 'a~+12345678901' f", "directory-stack"),
            ("nvidia-smi 1>&2", "redirection"),
            ("time nvidia-smi", "'time'"),
            ("! nvidia-smi", "negating"),
            ("for i in 1; do nvidia-smi; done", "compound"),
            ("f() { nvidia-smi; }", "functions"),
            ("echo $'\\x41'", "ANSI-C"),
            ("nvidia\u{2010}smi", "non-ASCII"),
            ("nvidia-smi\u{7}", "control character"),
            ("99999999999>x", "file descriptor"),
            ("ls ~22222222222222222222222 /", "directory-stack"),
            ("   ", "empty"),
        ] {
            let e = refusal(cmd);
            assert!(e.contains(expect), "{cmd}: {e}");
        }
    }

    #[test]
    fn fragile_constructs_are_found_where_the_shell_reads_them() {
        for literal in [
            "grep -c '<' f",
            "grep '$(x)' f",
            "grep \\$\\( f",
            "grep \"<(\" f",
            "grep 'a+(b)' f",
            "ls /tmp/a~b",
            "grep '~2' f",
        ] {
            assert_eq!(fragile_construct(literal), None, "{literal}");
        }
        for (command, refusal) in [
            ("echo \"$(x)\"", "command substitution"),
            ("echo \"`id`\"", "command substitution"),
            ("echo \"$[1]\"", "arithmetic"),
            ("echo \"${x:-y}\"", "variable expansion"),
            ("diff <(a) >(b)", "process substitution"),
            ("echo $'\\x41'", "ANSI-C"),
            ("echo $\"x\"", "locale quoting"),
            ("ls +(a|b)", "extended glob"),
            ("a=~x", "home directory"),
        ] {
            let found = fragile_construct(command).unwrap_or_default();
            assert!(found.contains(refusal), "{command}: {found}");
        }
    }

    #[test]
    fn oversize_input_is_refused() {
        let long = format!("nvidia-smi {}", "-q ".repeat(2000));
        assert!(refusal(&long).contains("limit is 4096"));
    }
}
