//! `sigma chat` and `sigma log` through the real binary, stdin piped.

mod common;

use std::path::Path;

use common::{stderr, stdout};

/// `sigma --simulate h100x8-thermal-throttle chat ARGS` with `input` on
/// stdin and the state directory `state`.
fn chat(state: &Path, args: &[&str], input: &str) -> std::process::Output {
    common::sigma()
        .env("SIGMA_STATE_DIR", state)
        .args(["--simulate", "h100x8-thermal-throttle", "chat"])
        .args(args)
        .write_stdin(input)
        .output()
        .expect("sigma runs")
}

fn log(state: &Path, args: &[&str]) -> std::process::Output {
    common::sigma()
        .env("SIGMA_STATE_DIR", state)
        .arg("log")
        .args(args)
        .output()
        .expect("sigma runs")
}

fn audit_lines(state: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("audit.jsonl"))
        .expect("audit log written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn doctor_in_a_piped_chat_is_plain_text() {
    let state = tempfile::tempdir().unwrap();
    let out = chat(state.path(), &[], "/doctor\n");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(text.starts_with("sigma> /doctor\n"), "{text}");
    assert!(
        text.contains("simulated: h100x8-thermal-throttle"),
        "{text}"
    );
    assert!(text.contains(" critical, "), "{text}");
    assert!(!text.contains('\u{1b}'), "escape codes:\n{text}");
    assert_eq!(stderr(&out), "");
}

#[test]
fn escape_codes_stay_off_even_when_colour_is_forced() {
    // Piped output gets no colour whatever the environment says about colour.
    let state = tempfile::tempdir().unwrap();
    let out = common::sigma()
        .env_remove("NO_COLOR")
        .env("SIGMA_STATE_DIR", state.path())
        .args(["--simulate", "h100x8-thermal-throttle", "chat"])
        .write_stdin("/doctor\n/snapshot\n")
        .output()
        .expect("sigma runs");
    assert!(!stdout(&out).contains('\u{1b}'), "{}", stdout(&out));
}

/// A model file that does not exist: the chat goes on without a model.
const NO_MODEL: &str = "/nonexistent/sigma-test-model.gguf";

#[test]
fn questions_without_a_model_say_why_and_the_session_is_audited() {
    let state = tempfile::tempdir().unwrap();
    let out = chat(
        state.path(),
        &["--run", "safe", "--model", NO_MODEL],
        "why is GPU 3 slow?\n/run 1\n/quit\n/doctor\n",
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let answer = text.lines().nth(1).expect("a line after the question");
    assert!(
        answer.starts_with("sigma: ") && answer.contains("model"),
        "{text}"
    );
    assert!(text.contains("no proposals yet"), "{text}");
    assert!(
        !text.contains("sigma> /doctor"),
        "stopped at /quit:\n{text}"
    );

    let lines = audit_lines(state.path());
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["session", "question"]);
    assert_eq!(lines[0]["front_end"], "chat");
    assert_eq!(lines[0]["node"], "simulated: h100x8-thermal-throttle");
    assert_eq!(lines[0]["run_mode"], "safe");
    assert_eq!(lines[1]["text"], "why is GPU 3 slow?");
    assert_eq!(lines[0]["session"], lines[1]["session"]);
}

#[test]
fn unwritable_state_dir_warns_once_and_the_chat_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let state = file.join("state");
    let out = chat(&state, &["--model", NO_MODEL], "one?\ntwo?\n/help\n");
    assert_eq!(out.status.code(), Some(0));
    let expected = format!(
        "sigma: warning: audit log {}: not a directory; continuing without it\n",
        state.join("audit.jsonl").display()
    );
    assert_eq!(stderr(&out), expected);
    assert!(stdout(&out).contains("/explain N"), "{}", stdout(&out));
}

#[test]
fn log_shows_one_line_per_entry_within_80_columns() {
    let state = tempfile::tempdir().unwrap();
    chat(
        state.path(),
        &["--model", NO_MODEL],
        "why is GPU 3 throttling so much today, and what should I check first?\n",
    );
    chat(state.path(), &["--model", NO_MODEL], "second session\n");
    let out = log(state.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{text}");
    assert!(
        lines[0].contains("  session    chat on simulated: h100x8-thermal-throttle"),
        "{text}"
    );
    assert!(
        lines[1].contains("  question   why is GPU 3 throttling"),
        "{text}"
    );
    assert!(lines[3].ends_with("  question   second session"), "{text}");

    let last = stdout(&log(state.path(), &["--last", "1"]));
    assert_eq!(last.lines().count(), 1, "{last}");
    assert!(last.ends_with("second session\n"), "{last}");

    let json = stdout(&log(state.path(), &["--json", "--last", "2"]));
    let kinds: Vec<String> = json
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            v["kind"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kinds, ["session", "question"]);
}

#[test]
fn log_without_a_log_says_so() {
    let state = tempfile::tempdir().unwrap();
    let out = log(state.path(), &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        format!(
            "no audit log yet at {}\n",
            state.path().join("audit.jsonl").display()
        )
    );
    let out = log(state.path(), &["--json"]);
    assert_eq!(stdout(&out), "");
}

#[test]
fn bad_run_mode_is_a_usage_error() {
    let state = tempfile::tempdir().unwrap();
    let out = chat(state.path(), &["--run", "always"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("never, safe, confirm"),
        "{}",
        stderr(&out)
    );
}

/// Issue 8: on a pipe, `sigma` alone is a plain-text chat. With the default
/// model (pulled by the test command), a question gets an answer and
/// validated proposals, and nothing on stdout is an escape code.
#[test]
fn piped_question_to_bare_sigma_is_answered_in_plain_text() {
    let state = tempfile::tempdir().unwrap();
    let out = common::sigma()
        .env("SIGMA_STATE_DIR", state.path())
        .args(["--simulate", "h100x8-thermal-throttle"])
        .write_stdin("why is GPU 2 slow?\n")
        .output()
        .expect("sigma runs");
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert!(!text.contains('\u{1b}'), "escape codes:\n{text}");
    assert!(text.contains("sigma> why is GPU 2 slow?"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("[1] ") && l.contains("nvidia-smi")),
        "no validated proposal:\n{text}"
    );
    let kinds: Vec<String> = audit_lines(state.path())
        .iter()
        .map(|l| l["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.contains(&"proposal".to_string()), "{kinds:?}");
}
