//! Render tests: whole frames drawn on ratatui's `TestBackend` from a
//! simulated node, checked for the strings that must be on screen.

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::Color;

use super::app::App;
use super::event::{CommandResult, Event, Refresh};
use super::theme::Theme;
use super::ui;
use crate::checks;
use crate::copilot::worker::Message;
use crate::copilot::{Proposal as CopilotProposal, Reply, Timings};

const NODE: &str = "h100x8-thermal-throttle";

fn app(theme: Theme, width: u16, height: u16) -> App {
    let node = crate::sim::load(NODE).expect("simulated node");
    let findings = checks::run_all(&node.snapshot);
    let mut app = App::new(
        theme,
        Duration::from_secs(2),
        Rect::new(0, 0, width, height),
    );
    app.update(Event::SnapshotReady(Box::new(Refresh {
        snapshot: node.snapshot,
        findings,
        time: "07:00:00".into(),
        at: Instant::now(),
    })));
    app
}

fn unicode() -> Theme {
    Theme {
        color: true,
        ascii: false,
    }
}

fn ascii() -> Theme {
    Theme {
        color: true,
        ascii: true,
    }
}

fn draw(app: &App) -> Buffer {
    let size = app.size();
    let mut terminal =
        Terminal::new(TestBackend::new(size.width, size.height)).expect("test terminal");
    terminal.draw(|f| ui::draw(f, app)).expect("draw");
    terminal.backend().buffer().clone()
}

/// The screen as text, one line per row.
fn text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        for x in 0..area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn screen(app: &App) -> String {
    text(&draw(app))
}

fn press(app: &mut App, code: KeyCode) {
    app.update(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

/// Every simulated GPU has a row: its index and its temperature.
fn assert_gpu_rows(screen: &str) {
    let node = crate::sim::load(NODE).expect("simulated node");
    for g in &node.snapshot.gpus {
        let temp = format!("{}C", g.temperature_c.expect("sim GPUs have a temperature"));
        let row = screen.lines().find(|l| {
            let mut words = l.trim_start_matches(['|', '│', ' ']).split_whitespace();
            words
                .next()
                .is_some_and(|w| w.trim_start_matches('!') == g.index.to_string())
        });
        let row = row.unwrap_or_else(|| panic!("no row for GPU {}:\n{screen}", g.index));
        assert!(
            row.contains(&temp),
            "GPU {} row lacks {temp}: {row}\n{screen}",
            g.index
        );
    }
}

#[test]
fn at_80x24_the_header_table_findings_and_status_show() {
    let s = screen(&app(unicode(), 80, 24));
    assert!(
        s.lines()
            .next()
            .is_some_and(|l| l.starts_with("gpu-h100-023 · 8 GPUs · refreshed 07:00:00")),
        "{s}"
    );
    assert!(s.contains("simulated: h100x8-thermal-throttle"), "{s}");
    assert_gpu_rows(&s);
    assert!(s.contains("!2"), "GPU 2 has a finding and is marked:\n{s}");
    assert!(!s.contains("!0"), "GPU 0 is healthy:\n{s}");
    assert!(
        s.contains("hw-therm,hw-slow"),
        "throttle flags, worst first:\n{s}"
    );
    assert!(s.contains("WARN GPU 2"), "findings pane:\n{s}");
    assert!(s.contains("model: loading..."), "{s}");
    assert_eq!(s.lines().count(), 24);
}

#[test]
fn at_120x40_every_column_shows() {
    let s = screen(&app(unicode(), 120, 40));
    for head in [
        "name", "util", "memory", "temp", "power", "throttle", "ecc", "pcie",
    ] {
        assert!(s.contains(head), "column {head} missing:\n{s}");
    }
    assert!(s.contains("H100 80GB HBM3"), "{s}");
    assert!(
        s.contains("driver 550.54.15 · CUDA 12.4"),
        "the wide header has room:\n{s}"
    );
    assert!(s.contains("5x16/5x16"), "{s}");
    assert!(s.contains("/700W"), "{s}");
    assert_gpu_rows(&s);
}

#[test]
fn narrow_layout_still_shows_the_table() {
    let s = screen(&app(unicode(), 50, 30));
    assert_gpu_rows(&s);
    assert!(s.contains("temp") && s.contains("util"), "{s}");
    assert!(
        !s.contains("H100 80GB"),
        "the name column is dropped first:\n{s}"
    );
}

#[test]
fn ascii_mode_draws_only_ascii() {
    for (w, h) in [(80, 24), (120, 40), (50, 30)] {
        let mut a = app(ascii(), w, h);
        let s = screen(&a);
        assert!(s.is_ascii(), "non-ASCII at {w}x{h}:\n{s}");
        assert!(s.contains("+-"), "ASCII borders:\n{s}");
        press(&mut a, KeyCode::Char('?'));
        assert!(screen(&a).is_ascii(), "help overlay at {w}x{h}");
        press(&mut a, KeyCode::Esc);
        press(&mut a, KeyCode::Enter);
        assert!(screen(&a).is_ascii(), "details at {w}x{h}");
        ask_to_run(&mut a, "nvidia-smi -r -i 2");
        assert!(screen(&a).is_ascii(), "confirmation at {w}x{h}");
    }
}

#[test]
fn unicode_mode_draws_box_borders() {
    let s = screen(&app(unicode(), 80, 24));
    assert!(s.contains('╭') && s.contains('·'), "{s}");
}

#[test]
fn no_color_draws_no_colour() {
    let a = app(
        Theme {
            color: false,
            ascii: false,
        },
        80,
        24,
    );
    let buffer = draw(&a);
    let coloured = buffer
        .content()
        .iter()
        .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
        .count();
    assert_eq!(coloured, 0);
    let with_colour = draw(&app(unicode(), 80, 24));
    assert!(
        with_colour.content().iter().any(|c| c.fg != Color::Reset),
        "the colour theme does colour"
    );
}

#[test]
fn details_show_evidence_why_and_commands() {
    let mut a = app(unicode(), 120, 40);
    press(&mut a, KeyCode::Enter);
    let s = screen(&a);
    assert!(s.contains("evidence") && s.contains("why"), "{s}");
    let f = &a.findings()[0];
    let (k, _) = f.evidence.iter().next().expect("the finding has evidence");
    assert!(s.contains(k.as_str()), "evidence key {k}:\n{s}");
    let cmd = crate::guard::command_line(&f.commands[0]);
    assert!(s.contains(&format!("$ {cmd}")), "command {cmd}:\n{s}");
}

/// Focuses the proposals, replaces the first with `command` (typed into
/// the edit line) and presses Enter on it.
fn ask_to_run(a: &mut App, command: &str) {
    press(a, KeyCode::Tab);
    press(a, KeyCode::Char('e'));
    for _ in 0..200 {
        press(a, KeyCode::Backspace);
    }
    for c in command.chars() {
        press(a, KeyCode::Char(c));
    }
    press(a, KeyCode::Enter);
    press(a, KeyCode::Enter);
}

#[test]
fn proposals_show_the_command_tier_and_rule() {
    let a = app(unicode(), 120, 40);
    let s = screen(&a);
    let p = &a.proposals()[0];
    assert!(s.contains(&format!("[ro] {}", p.command())), "{s}");
    assert!(s.contains("read-only"), "the verdict line:\n{s}");
    assert!(s.contains(&p.purpose), "the purpose:\n{s}");
}

#[test]
fn confirmation_names_the_program_to_type() {
    let mut a = app(unicode(), 80, 24);
    ask_to_run(&mut a, "nvidia-smi -r -i 2");
    let s = screen(&a);
    assert!(s.contains("changes the node"), "{s}");
    assert!(s.contains("Type 'nvidia-smi'"), "{s}");
}

#[test]
fn blocked_commands_show_the_rule_instead_of_running() {
    let mut a = app(unicode(), 80, 24);
    ask_to_run(&mut a, "rm -rf /");
    let s = screen(&a);
    assert!(s.contains("blocked by the guard"), "{s}");
    press(&mut a, KeyCode::Esc);
    let s = screen(&a);
    assert!(s.contains("[no] rm -rf /"), "{s}");
}

#[test]
fn help_lists_the_keys() {
    let mut a = app(unicode(), 80, 24);
    press(&mut a, KeyCode::Char('?'));
    let s = screen(&a);
    for want in ["q C-c", "quit", "j Down", "copy selection (OSC 52)"] {
        assert!(s.contains(want), "{want}:\n{s}");
    }
}

#[test]
fn the_input_line_and_the_question_show() {
    let mut a = app(unicode(), 80, 24);
    press(&mut a, KeyCode::Char('/'));
    for c in "is gpu 2 ok".chars() {
        press(&mut a, KeyCode::Char(c));
    }
    assert!(
        screen(&a)
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("ask> is gpu 2 ok"))
    );
    press(&mut a, KeyCode::Enter);
    let s = screen(&a);
    assert!(s.contains("you: is gpu 2 ok"), "{s}");
    assert!(s.contains("the question waits for it"), "{s}");
}

fn model(a: &mut App, m: Message) {
    a.update(Event::Model(m));
}

/// Asks `question` through the input line; the model is loaded first.
fn ask(a: &mut App, question: &str) {
    model(
        a,
        Message::Loaded {
            model: "tiny.gguf".into(),
            seconds: 0.1,
        },
    );
    press(a, KeyCode::Char('/'));
    for c in question.chars() {
        press(a, KeyCode::Char(c));
    }
    press(a, KeyCode::Enter);
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or_default()
}

#[test]
fn the_status_line_follows_the_model() {
    let mut a = app(unicode(), 80, 24);
    ask(&mut a, "why is GPU 2 slow?");
    assert!(last_line(&screen(&a)).starts_with("model: tiny.gguf starting"));
    model(
        &mut a,
        Message::Prefill {
            done: 0,
            total: 180,
        },
    );
    assert!(
        last_line(&screen(&a))
            .starts_with("model: reading the question 0/180 tokens (Esc cancels)"),
        "{}",
        screen(&a)
    );
    model(
        &mut a,
        Message::Text {
            piece: "GPU 2 is ".into(),
            tokens: 12,
            tokens_per_s: 8.46,
        },
    );
    let s = screen(&a);
    assert!(
        last_line(&s).starts_with("model: generating 12 tokens, 8.5 tok/s (Esc cancels)"),
        "{s}"
    );
    assert!(s.contains("sigma: GPU 2 is"), "the answer streams:\n{s}");
    model(&mut a, Message::Done(Ok(reply())));
    let s = screen(&a);
    assert!(
        last_line(&s).starts_with("model: tiny.gguf ready (last answer 9.0 tok/s)"),
        "{s}"
    );
    model(
        &mut a,
        Message::LoadFailed("no model: run `sigma model pull`".into()),
    );
    assert!(last_line(&screen(&a)).starts_with("model: no model: run `sigma model pull`"));
}

fn reply() -> Reply {
    Reply {
        answer: "GPU 2 is thermally throttled at 86C.".into(),
        proposals: vec![
            CopilotProposal::new("nvidia-smi -q -d TEMPERATURE -i 2", "temperatures of GPU 2"),
            CopilotProposal::new("nvidia-smi -r -i 2", "reset GPU 2"),
        ],
        model: "tiny.gguf".into(),
        timings: Timings {
            tokens_per_s: 9.0,
            ..Timings::default()
        },
    }
}

#[test]
fn a_reply_shows_its_answer_and_proposals_with_tier_rule_and_purpose() {
    for (theme, w, h) in [(unicode(), 120, 40), (ascii(), 80, 24)] {
        let mut a = app(theme, w, h);
        ask(&mut a, "why is GPU 2 slow?");
        model(&mut a, Message::Done(Ok(reply())));
        let s = screen(&a);
        assert!(s.contains("Proposals from sigma"), "{s}");
        assert!(s.contains("sigma: GPU 2 is thermally throttled"), "{s}");
        assert!(s.contains("[ro] nvidia-smi -q -d TEMPERATURE -i 2"), "{s}");
        assert!(s.contains("Proposals from sigma 1/2"), "{s}");
        if h >= 40 {
            assert!(s.contains("[rw] nvidia-smi -r -i 2"), "{s}");
        } else {
            press(&mut a, KeyCode::Char('j'));
            let s = screen(&a);
            assert!(
                s.contains("[rw] nvidia-smi -r -i 2"),
                "the list scrolls:\n{s}"
            );
            assert!(s.contains("Proposals from sigma 2/2"), "{s}");
        }
        assert!(s.contains("temperatures of GPU 2"), "the purpose:\n{s}");
        if theme.ascii {
            assert!(s.is_ascii(), "{s}");
        } else {
            assert!(s.contains("state-changing"), "the rule:\n{s}");
        }
    }
}

#[test]
fn running_shows_the_output_and_confirming_the_program() {
    let mut a = app(ascii(), 80, 24);
    ask(&mut a, "why is GPU 2 slow?");
    model(&mut a, Message::Done(Ok(reply())));
    press(&mut a, KeyCode::Enter);
    assert!(
        last_line(&screen(&a)).starts_with("running: nvidia-smi -q -d TEMPERATURE -i 2"),
        "{}",
        screen(&a)
    );
    a.update(Event::CommandDone(CommandResult {
        command: "nvidia-smi -q -d TEMPERATURE -i 2".into(),
        output: "GPU Current Temp : 86 C\n".into(),
        status: "exit code 0".into(),
        exit_code: Some(0),
        duration_ms: 2,
        dropped_bytes: 0,
        error: None,
        ended: Some(crate::probe::interpret::Ended::Exited(0)),
    }));
    let s = screen(&a);
    assert!(s.contains("$ nvidia-smi -q -d TEMPERATURE -i 2"), "{s}");
    assert!(s.contains("GPU Current Temp : 86 C"), "{s}");
    assert!(s.contains("sending the output back"), "{s}");
    model(&mut a, Message::Done(Ok(reply())));
    press(&mut a, KeyCode::Char('j'));
    press(&mut a, KeyCode::Enter);
    let s = screen(&a);
    assert!(s.contains("Type 'nvidia-smi'"), "{s}");
    assert!(s.is_ascii(), "{s}");
}

#[test]
fn resizing_redraws_at_the_new_size() {
    let mut a = app(unicode(), 120, 40);
    a.update(Event::Resize(80, 24));
    let s = screen(&a);
    assert_eq!(s.lines().count(), 24);
    assert!(s.lines().all(|l| l.chars().count() == 80));
    assert_gpu_rows(&s);
}

#[test]
fn before_the_first_refresh_it_says_so() {
    let a = App::new(unicode(), Duration::from_secs(2), Rect::new(0, 0, 80, 24));
    assert!(screen(&a).contains("probing the node"));
}
