//! Node text stays inert in every front end: the simulated node
//! `h100x8-escape-sequences` carries CSI screen clears and cursor moves,
//! OSC 52 clipboard writes, OSC 8 links, window titles, 8-bit C1 controls,
//! carriage-return overwrites and bidi overrides in its process names, its
//! kernel log and a command's output. No byte of them may reach the
//! terminal raw: not from `doctor`, `snapshot`, `ask` (answer, proposals,
//! the output of the commands it ran), `chat`, `sim run`, `log`, nor from
//! `fleet` reading a verdict line a node forged.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const SIGMA: &str = env!("CARGO_BIN_EXE_sigma");
const NODE: &str = "h100x8-escape-sequences";

/// The characters that act on a terminal or reorder what it shows.
fn live(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || sigma::checks::is_bidi_or_invisible(c)
}

/// Asserts `out`'s standard output and error hold no live character.
fn assert_inert(what: &str, out: &Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        if let Some((at, c)) = text.char_indices().find(|(_, c)| live(*c)) {
            let from = at.saturating_sub(60);
            panic!(
                "{what}: {stream} holds {c:?} raw near: {:?}",
                &text[text.floor_char_boundary(from)
                    ..text.ceil_char_boundary(at + 20).min(text.len())]
            );
        }
    }
}

/// `sigma ARGS` on the escape node, with `stdin`, in `state`.
fn sigma(args: &[&str], stdin: &str, state: &std::path::Path) -> Output {
    let mut child = Command::new(SIGMA)
        .args(args)
        .env("SIGMA_SIMULATE", NODE)
        .env("SIGMA_STATE_DIR", state)
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_node_really_carries_the_sequences() {
    let node = sigma::sim::load(NODE).unwrap();
    let text = serde_json::to_string(&node.snapshot).unwrap();
    for needle in [
        "\\u001b]52;",
        "\\u001b]8;;",
        "\\u001b[2J",
        "\u{9b}",
        "\\r",
        "\u{202e}",
    ] {
        assert!(text.contains(needle), "{needle} missing from the node");
    }
}

#[test]
fn every_front_end_shows_node_text_inert() {
    let state = tempfile::tempdir().unwrap();
    let runs: Vec<(&str, Vec<&str>, &str)> = vec![
        ("doctor", vec!["doctor"], ""),
        ("doctor --json", vec!["doctor", "--json"], ""),
        (
            "doctor --json --compact",
            vec!["doctor", "--json", "--compact"],
            "",
        ),
        ("snapshot", vec!["snapshot"], ""),
        (
            "ask --run safe",
            vec![
                "ask",
                "--model",
                "none",
                "--run",
                "safe",
                "which processes hold memory on GPU 6 and what is the uptime?",
            ],
            "",
        ),
        (
            "sim run uptime",
            vec!["sim", "run", NODE, "--", "uptime"],
            "",
        ),
        (
            "chat",
            vec!["chat", "--model", "none", "--run", "safe"],
            "/doctor\n/snapshot\nwhat is using GPU 6?\n/run 1\n/quit\n",
        ),
        ("log", vec!["log", "--last", "50"], ""),
        ("log --json", vec!["log", "--json"], ""),
    ];
    for (what, args, stdin) in runs {
        let out = sigma(&args, stdin, state.path());
        assert!(
            !out.stdout.is_empty(),
            "{what}: no output: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_inert(what, &out);
    }
}

#[test]
fn a_forged_verdict_line_is_shown_inert_by_fleet() {
    let line = r#"evil: {"host":"n1","verdict":"critical","exit_code":4,"sigma":"9","time":"t","findings":[{"id":"xid-79\u001b[2J","severity":"critical","gpu":1,"title":"fell off\u001b]52;c;cm0K\u0007 the bus \u202etxt"}]}"#;
    let state = tempfile::tempdir().unwrap();
    let input = format!("{line}\npdsh@h: \u{202e}n2: \u{1b}]0;title\u{7} timeout\n");
    for args in [
        vec!["fleet", "--from", "-"],
        vec![
            "fleet",
            "--from",
            "-",
            "--ask",
            "which nodes should I drain?",
        ],
    ] {
        let out = sigma(&args, &input, state.path());
        assert!(String::from_utf8_lossy(&out.stdout).contains("xid-79"));
        assert_inert("fleet", &out);
    }
}
