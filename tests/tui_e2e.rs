//! Issue 8 end to end: the real `sigma` binary in tmux on a simulated node,
//! with the tiny model. Keys go in with `send-keys`, the screen comes back
//! with `capture-pane`.
//!
//! Each test drives a whole session: the GPU table shows the node's GPUs;
//! a question asked with `/` gets an answer that streams (the status line
//! shows generation with tokens/s) and proposals; Enter on a read-only
//! proposal shows its output; a state-changing command asks for its
//! program's name; `q` leaves the alternate screen and the shell prompt is
//! back. Once at 120x40 with two rounds (the output goes back to the
//! model), once at 80x24 with `--ascii`.
//!
//! Where the full-screen UI cannot run (`TERM=dumb`, a pipe) the plain
//! report comes instead. tmux is required: without it the tests fail and
//! say so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// The simulated node.
const SIM: &str = "h100x8-thermal-throttle";
/// The tiny model: fast enough for a test on two cores.
const MODEL: &str = "smollm2-135m";
/// How long an answer may take (a 2-core machine, tests in parallel).
const ANSWER: Duration = Duration::from_secs(240);
/// How long a screen change may take.
const QUICK: Duration = Duration::from_secs(30);
/// The shell's prompt in the pane.
const PROMPT: &str = "e2e$ ";

/// A private tmux server with one pane running bash.
struct Tmux {
    socket: String,
    /// The socket's file, removed at the end (kill-server may leave it).
    socket_path: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts a server on a socket of its own, with a `width`x`height`
    /// pane running bash with [`PROMPT`], the state directory in a temp dir.
    fn start(tag: &str, width: u16, height: u16) -> Tmux {
        match Command::new("tmux").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            _ => panic!(
                "tmux is needed for the TUI end-to-end tests and was not found: \
                 install it (apt-get install tmux)"
            ),
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("tmux.conf");
        // No status line: the pane is the whole window. No escape delay:
        // Esc reaches the app at once.
        std::fs::write(&conf, "set -g status off\nset -sg escape-time 0\n").expect("tmux.conf");
        let mut tmux = Tmux {
            socket: format!("sigma-test-{}-{tag}", std::process::id()),
            socket_path: None,
            dir,
        };
        let shell = format!(
            "env -u SIGMA_SIMULATE -u NO_COLOR SIGMA_STATE_DIR='{}' PS1='{PROMPT}' \
             bash --norc --noprofile",
            tmux.state_dir().display()
        );
        let (w, h) = (width.to_string(), height.to_string());
        tmux.run(&[
            "-f",
            conf.to_str().expect("UTF-8 path"),
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            &w,
            "-y",
            &h,
            &shell,
        ]);
        let size = tmux.run(&[
            "display-message",
            "-p",
            "-t",
            "e2e",
            "#{pane_width}x#{pane_height}",
        ]);
        assert_eq!(size.trim(), format!("{width}x{height}"), "pane size");
        let socket_path = tmux.run(&["display-message", "-p", "#{socket_path}"]);
        tmux.socket_path = Some(PathBuf::from(socket_path.trim()));
        // capture-pane drops trailing blanks.
        tmux.wait("the shell prompt", QUICK, |s| s.contains(PROMPT.trim_end()));
        tmux
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs `tmux -L SOCKET ARGS`, panicking with its stderr on failure.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Presses keys by tmux name (`Enter`, `Escape`, `q`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "e2e"];
        args.extend(keys);
        self.run(&args);
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "e2e", "-l", text]);
    }

    /// The pane's text now.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "e2e"])
    }

    /// Whether the pane shows the alternate screen (the TUI is up).
    fn alternate_on(&self) -> bool {
        self.run(&["display-message", "-p", "-t", "e2e", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// The program in the pane's foreground.
    fn foreground(&self) -> String {
        let command = self.run(&[
            "display-message",
            "-p",
            "-t",
            "e2e",
            "#{pane_current_command}",
        ]);
        command.trim().to_string()
    }

    /// Polls the screen until `done` holds, passing every capture to
    /// `seen` too; panics with the last screen after `timeout`.
    fn wait_seeing(
        &self,
        what: &str,
        timeout: Duration,
        mut seen: impl FnMut(&str),
        done: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            seen(&s);
            if done(&s) {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "waited {timeout:?} for {what}; the screen:\n{s}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait(&self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        self.wait_seeing(what, timeout, |_| {}, done)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // The server may already be gone; nothing else to clean.
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The status line: the last non-empty line of the screen.
fn status(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
}

/// `(index, temperature)` of each GPU of the simulated node, from `sigma
/// snapshot --json`.
fn sim_gpus() -> Vec<(u64, u64)> {
    let out = Command::new(env!("CARGO_BIN_EXE_sigma"))
        .args(["--simulate", SIM, "snapshot", "--json"])
        .env_remove("SIGMA_SIMULATE")
        .output()
        .expect("sigma runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).expect("snapshot JSON");
    snap["gpus"]
        .as_array()
        .expect("gpus")
        .iter()
        .map(|g| {
            (
                g["index"].as_u64().expect("index"),
                g["temperature_c"].as_u64().expect("temperature"),
            )
        })
        .collect()
}

/// True when every GPU has a row: its index (marked `!` when it has a
/// finding) first, its temperature in the row.
fn shows_gpu_rows(screen: &str, gpus: &[(u64, u64)]) -> bool {
    gpus.iter().all(|(index, temp)| {
        screen.lines().any(|l| {
            let row = l.trim_start_matches(['|', '│', ' ']);
            row.split_whitespace()
                .next()
                .is_some_and(|w| w.trim_start_matches('!') == index.to_string())
                && row.contains(&format!("{temp}C"))
        })
    })
}

/// The tier tag and command of the first proposal on screen.
fn first_proposal(screen: &str) -> Option<(String, String)> {
    screen.lines().find_map(|l| {
        ["[ro] ", "[hv] ", "[rw] ", "[no] "].iter().find_map(|tag| {
            let at = l.find(tag)?;
            let rest = &l[at + tag.len()..];
            let command = rest.split(['|', '│']).next().unwrap_or(rest).trim();
            Some((tag.trim().to_string(), command.to_string()))
        })
    })
}

/// The audit log's records of `kind`.
fn audit(state: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(state.join("audit.jsonl"))
        .expect("the TUI writes the audit log")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter(|v| v["kind"] == kind)
        .collect()
}

/// One whole session; see the module docs.
fn drive(tag: &str, width: u16, height: u16, ascii: bool, rounds: u8) {
    let t = Tmux::start(tag, width, height);
    let check_ascii = |s: &str| {
        if ascii {
            let bad: Vec<char> = s.chars().filter(|c| !c.is_ascii()).collect();
            assert!(bad.is_empty(), "--ascii drew {bad:?}:\n{s}");
        }
    };
    let mut command = format!(
        "{} --simulate {SIM} tui --model {MODEL} --rounds {rounds}",
        env!("CARGO_BIN_EXE_sigma")
    );
    if ascii {
        command.push_str(" --ascii");
    }
    t.type_text(&command);
    t.keys(&["Enter"]);

    // The dashboard: every GPU of the node in the table.
    let gpus = sim_gpus();
    let s = t.wait("the GPU table", QUICK, |s| shows_gpu_rows(s, &gpus));
    assert!(t.alternate_on(), "the TUI draws on the alternate screen");
    assert!(s.contains("8 GPUs"), "header:\n{s}");
    assert!(s.contains("!2"), "GPU 2 has a finding and is marked:\n{s}");
    check_ascii(&s);

    // A question: the answer streams, then proposals come.
    t.type_text("/");
    t.type_text("why is GPU 2 slow?");
    t.keys(&["Enter"]);
    let (mut asked, mut generating, mut answer) = (false, false, false);
    let s = t.wait_seeing(
        "an answer with proposals",
        ANSWER,
        |s| {
            generating |= status(s).contains("generating") && status(s).contains("tok/s");
            // At 80x24 the question scrolls away once the answer is long.
            asked |= s.contains("you: why is GPU 2 slow?");
            // The answer (the checks' diagnosis) arrives whole, and at 80x24
            // its first line, with the label, may scroll away at once.
            answer |= s.contains("sigma: ") || s.contains("thermally throttled");
            check_ascii(s);
        },
        |s| s.contains("Proposals from sigma") && status(s).contains("ready"),
    );
    assert!(
        generating,
        "the status line never showed generation progress"
    );
    assert!(answer, "no answer text appeared while generating");
    assert!(asked, "the question never showed in the conversation");
    let (tier, proposed) = first_proposal(&s).expect("a proposal on screen");

    // A read-only proposal runs at once and its output shows. Should the
    // model's first proposal not be read-only, it is edited into one.
    let ran = if tier == "[ro]" {
        proposed
    } else {
        t.keys(&["e"]);
        t.keys(&["-N", "400", "BSpace"]);
        t.type_text("nvidia-smi -L");
        t.keys(&["Enter"]);
        t.wait("the edited proposal", QUICK, |s| {
            s.contains("[ro] nvidia-smi -L")
        });
        "nvidia-smi -L".to_string()
    };
    // The conversation wraps long commands: the program is on the `$` line.
    let program = ran
        .split_whitespace()
        .next()
        .expect("a command")
        .to_string();
    let run_line = format!("$ {program}");
    t.keys(&["Enter"]);
    let mut run_seen = false;
    let s = t.wait_seeing(
        "the command's output",
        QUICK,
        |s| run_seen |= s.contains(&run_line),
        // The answer that follows may push the exit code out of a small
        // pane; the audit log says the run ended either way.
        |s| s.contains("exit code ") || !audit(&t.state_dir(), "execution").is_empty(),
    );
    check_ascii(&s);
    let runs = audit(&t.state_dir(), "execution");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0]["exit_code"].is_i64(), "{runs:?}");
    let logged = runs[0]["command"].as_str().expect("command");
    assert!(
        logged.starts_with(ran.trim_end_matches('.')),
        "{logged} vs {ran}"
    );

    if rounds > 1 {
        // The output goes back to the model for another answer.
        let s = t.wait("the follow-up answer", ANSWER, |s| {
            status(s).contains("ready")
                && (audit(&t.state_dir(), "answer").len() == 2 || s.contains("no answer:"))
        });
        assert_eq!(audit(&t.state_dir(), "answer").len(), 2, "{s}");
    }
    if !run_seen {
        // A long output pushes the `$` line out of a small pane: scroll
        // the conversation back to it, then focus the proposals again.
        // Done after the follow-up answer, which scrolls to its start.
        t.keys(&["Tab"]);
        for _ in 0..60 {
            if t.screen().contains(&run_line) {
                break;
            }
            t.keys(&["k"]);
        }
        assert!(t.screen().contains(&run_line), "{}", t.screen());
        t.keys(&["BTab"]);
    }

    // A state-changing command asks for its program's name; Esc cancels.
    t.keys(&["e"]);
    t.keys(&["-N", "400", "BSpace"]);
    t.type_text("nvidia-smi -r -i 3");
    t.keys(&["Enter"]);
    t.wait("the edited proposal", QUICK, |s| {
        s.contains("[rw] nvidia-smi -r -i 3")
    });
    t.keys(&["Enter"]);
    let s = t.wait("the confirmation", QUICK, |s| {
        s.contains("Type 'nvidia-smi'")
    });
    assert!(s.contains("changes the node"), "{s}");
    check_ascii(&s);
    t.keys(&["Escape"]);
    t.wait("the confirmation to close", QUICK, |s| {
        !s.contains("Type 'nvidia-smi'")
    });
    assert_eq!(
        audit(&t.state_dir(), "execution").len(),
        1,
        "the reset did not run"
    );

    // q restores the terminal: the alternate screen is left, the shell is back.
    t.keys(&["q"]);
    let start = Instant::now();
    while t.alternate_on() || t.foreground() != "bash" {
        assert!(
            start.elapsed() < QUICK,
            "sigma did not leave ({}):\n{}",
            t.foreground(),
            t.screen()
        );
        thread::sleep(Duration::from_millis(100));
    }
    t.type_text("echo rc=$?");
    t.keys(&["Enter"]);
    t.wait("the shell after sigma", QUICK, |s| s.contains("rc=0"));

    let kinds = [
        "session",
        "question",
        "answer",
        "proposal",
        "approval",
        "execution",
    ];
    for kind in kinds {
        assert!(
            !audit(&t.state_dir(), kind).is_empty(),
            "no {kind} in the audit log"
        );
    }
    assert_eq!(audit(&t.state_dir(), "session")[0]["front_end"], "tui");
}

#[test]
fn tui_answers_runs_and_confirms_at_120x40() {
    drive("wide", 120, 40, false, 2);
}

#[test]
fn tui_answers_runs_and_confirms_at_80x24_in_ascii() {
    drive("ascii", 80, 24, true, 1);
}

/// `TERM=dumb` on a real terminal: no full-screen UI, no escape codes, the
/// doctor's report in plain text instead. `CI=true` is set because it makes
/// anstream colour a terminal it would otherwise leave plain.
#[test]
fn term_dumb_falls_back_to_plain_text() {
    let t = Tmux::start("dumb", 80, 24);
    t.type_text(&format!(
        "TERM=dumb CI=true {} --simulate {SIM} tui; echo rc=$?",
        env!("CARGO_BIN_EXE_sigma")
    ));
    t.keys(&["Enter"]);
    let s = t.wait("sigma to finish", QUICK, |s| s.contains("rc=0"));
    assert!(!t.alternate_on(), "{s}");
    assert!(s.contains("the full-screen UI needs a terminal"), "{s}");
    assert!(s.contains("simulated: h100x8-thermal-throttle"), "{s}");
    // With -e, capture-pane writes the pane's colours and attributes as
    // escape codes: there must be none.
    let raw = t.run(&["capture-pane", "-p", "-e", "-t", "e2e"]);
    assert!(!raw.contains('\u{1b}'), "{raw:?}");
}

/// Standard output not a terminal: the report in plain text, no escape codes.
#[test]
fn piped_tui_prints_the_plain_report() {
    let out = Command::new(env!("CARGO_BIN_EXE_sigma"))
        .args(["--simulate", SIM, "tui"])
        .env_remove("SIGMA_SIMULATE")
        .env_remove("NO_COLOR")
        .output()
        .expect("sigma runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("simulated: h100x8-thermal-throttle"),
        "{stdout}"
    );
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("standard output is not a terminal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
