//! Transitions of the app, driven by events without a terminal.

use std::collections::BTreeMap;

use ratatui::crossterm::event::KeyModifiers;

use super::super::event::CommandResult;
use super::*;
use crate::copilot::worker::{self, Message};
use crate::guard::Tier;
use crate::probe::{Gpu, Host, Snapshot, Source};
use crate::session::follow_up;

fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ch(c: char) -> Event {
    key(KeyCode::Char(c))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(ch(c));
    }
}

fn finding(id: &str, severity: Severity, gpu: Option<u32>, commands: &[&str]) -> Finding {
    Finding {
        id: id.into(),
        severity,
        gpu,
        title: format!("{id} title"),
        evidence: BTreeMap::from([("k".to_string(), "v".to_string())]),
        commands: commands
            .iter()
            .map(|c| shell_words::split(c).unwrap())
            .collect(),
        why: format!("{id} why"),
    }
}

fn snapshot(gpus: u32) -> Snapshot {
    Snapshot {
        schema_version: crate::probe::SCHEMA_VERSION,
        taken_at: "2026-01-01T00:00:00Z".into(),
        source: Source::Simulated {
            name: "test".into(),
        },
        host: Host {
            hostname: "node1".into(),
            ..Default::default()
        },
        nvidia: None,
        gpus: (0..gpus)
            .map(|i| Gpu {
                index: i,
                name: format!("GPU {i}"),
                ..Default::default()
            })
            .collect(),
        pci_gpus: Vec::new(),
        amd_gpus: Vec::new(),
        xid_events: Vec::new(),
        kernel_log_source: None,
        unavailable: Vec::new(),
    }
}

fn refresh(findings: Vec<Finding>) -> Event {
    Event::SnapshotReady(Box::new(Refresh {
        snapshot: snapshot(2),
        findings,
        time: "12:00:00".into(),
        at: Instant::now(),
    }))
}

fn app_with(findings: Vec<Finding>) -> App {
    let mut app = App::new(
        Theme {
            color: false,
            ascii: true,
        },
        Duration::from_secs(2),
        Rect::new(0, 0, 80, 24),
    );
    app.update(refresh(findings));
    app
}

fn two_findings() -> Vec<Finding> {
    vec![
        finding(
            "a",
            Severity::Critical,
            Some(1),
            &["nvidia-smi -q", "nvidia-smi -r -i 1"],
        ),
        finding("b", Severity::Warning, None, &["dmesg"]),
    ]
}

#[test]
fn selection_moves_and_stops_at_the_ends() {
    let mut app = app_with(two_findings());
    assert_eq!(app.focus(), Focus::Findings);
    app.update(ch('k'));
    assert_eq!(app.selected_finding(), 0);
    app.update(ch('j'));
    app.update(key(KeyCode::Down));
    assert_eq!(app.selected_finding(), 1);
    assert_eq!(
        app.proposals()[0].command(),
        "dmesg",
        "proposals follow the finding"
    );
}

#[test]
fn selection_follows_the_finding_across_refreshes() {
    let mut app = app_with(two_findings());
    app.update(ch('j'));
    let mut reordered = two_findings();
    reordered.reverse();
    app.update(refresh(reordered));
    assert_eq!(app.findings()[app.selected_finding()].id, "b");
}

#[test]
fn tab_cycles_focus_both_ways() {
    let mut app = app_with(two_findings());
    app.update(key(KeyCode::Tab));
    assert_eq!(app.focus(), Focus::Proposals);
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::Tab));
    assert_eq!(app.focus(), Focus::Gpus);
    app.update(Event::Key(KeyEvent::new(
        KeyCode::BackTab,
        KeyModifiers::SHIFT,
    )));
    assert_eq!(app.focus(), Focus::Conversation);
}

#[test]
fn enter_opens_details_and_esc_closes_them() {
    let mut app = app_with(two_findings());
    app.update(key(KeyCode::Enter));
    assert_eq!(app.details().map(|f| f.id.as_str()), Some("a"));
    app.update(key(KeyCode::Esc));
    assert!(app.details().is_none());
    app.update(key(KeyCode::Right));
    assert!(app.details().is_some());
}

#[test]
fn enter_on_a_gpu_jumps_to_its_finding() {
    let mut app = app_with(two_findings());
    app.update(key(KeyCode::BackTab));
    assert_eq!(app.focus(), Focus::Gpus);
    app.update(ch('j'));
    app.update(key(KeyCode::Enter));
    assert_eq!(app.focus(), Focus::Findings);
    assert_eq!(app.findings()[app.selected_finding()].gpu, Some(1));
}

fn focus_proposals(app: &mut App) {
    app.update(key(KeyCode::Tab));
    assert_eq!(app.focus(), Focus::Proposals);
}

fn set_command(app: &mut App, i: usize, command: &str) {
    app.proposals[i] = Proposal::new(command, "test".into());
}

#[test]
fn proposals_carry_the_guards_verdict() {
    let app = app_with(two_findings());
    let tiers: Vec<Tier> = app.proposals().iter().map(Proposal::tier).collect();
    assert_eq!(tiers, [Tier::ReadOnly, Tier::StateChanging]);
    assert_eq!(app.proposals()[1].program(), Some("nvidia-smi"));
}

#[test]
fn read_only_runs_at_once() {
    let mut app = app_with(two_findings());
    focus_proposals(&mut app);
    assert_eq!(app.proposals()[0].tier(), Tier::ReadOnly);
    assert_eq!(
        app.update(key(KeyCode::Enter)).action,
        Some(AppAction::Run(0))
    );
    assert!(app.modal().is_none());
    assert_eq!(app.note(), Some("running: nvidia-smi -q"));
}

#[test]
fn state_changing_needs_the_exact_program_name() {
    let mut app = app_with(two_findings());
    focus_proposals(&mut app);
    app.update(ch('j'));
    assert_eq!(app.proposals()[1].tier(), Tier::StateChanging);
    assert_eq!(app.update(key(KeyCode::Enter)).action, None);
    let Some(Modal::Confirm(c)) = app.modal() else {
        panic!("no confirmation: {:?}", app.modal())
    };
    assert_eq!(c.binary, "nvidia-smi");
    type_text(&mut app, "nvidia-sm");
    assert_eq!(
        app.update(key(KeyCode::Enter)).action,
        None,
        "a prefix is not enough"
    );
    assert!(matches!(app.modal(), Some(Modal::Confirm(c)) if c.mismatch && c.typed.is_empty()));
    type_text(&mut app, "Nvidia-smi");
    assert_eq!(app.update(key(KeyCode::Enter)).action, None, "case matters");
    type_text(&mut app, "nvidia-smi");
    assert_eq!(
        app.update(key(KeyCode::Enter)).action,
        Some(AppAction::Run(1))
    );
    assert!(app.modal().is_none());
}

#[test]
fn heavy_is_confirmed_too_and_esc_cancels() {
    let mut app = app_with(two_findings());
    focus_proposals(&mut app);
    set_command(&mut app, 0, "dcgmi diag -r 3");
    assert_eq!(app.proposals()[0].tier(), Tier::Heavy);
    assert_eq!(app.update(key(KeyCode::Enter)).action, None);
    assert!(matches!(app.modal(), Some(Modal::Confirm(c)) if c.binary == "dcgmi"));
    assert_eq!(app.update(key(KeyCode::Esc)).action, None);
    assert!(app.modal().is_none(), "Esc cancels");
}

#[test]
fn blocked_never_runs() {
    let mut app = app_with(two_findings());
    focus_proposals(&mut app);
    set_command(&mut app, 0, "rm -rf /");
    assert_eq!(app.proposals()[0].tier(), Tier::Blocked);
    let mut actions = Vec::new();
    for e in [
        key(KeyCode::Enter),
        ch('r'),
        ch('m'),
        key(KeyCode::Enter),
        key(KeyCode::Enter),
    ] {
        actions.extend(app.update(e).action);
    }
    assert!(
        !actions.iter().any(|a| matches!(a, AppAction::Run(_))),
        "{actions:?}"
    );
}

#[test]
fn blocked_shows_the_guards_rule() {
    let mut app = app_with(two_findings());
    focus_proposals(&mut app);
    set_command(&mut app, 0, "nvidia-smi -q; reboot");
    let rule = app.proposals()[0].verdict.rule.clone();
    app.update(key(KeyCode::Enter));
    assert!(
        matches!(app.modal(), Some(Modal::Notice(n)) if n.contains(&rule)),
        "{rule}"
    );
    app.update(ch('z'));
    assert!(app.modal().is_none(), "any key closes a notice");
}

#[test]
fn ask_puts_the_question_in_the_conversation_and_emits_ask() {
    let mut app = app_with(Vec::new());
    app.update(ch('/'));
    type_text(&mut app, "why hot?q");
    app.update(key(KeyCode::Backspace));
    assert!(
        matches!(app.modal(), Some(Modal::Input(i)) if i.text == "why hot?"),
        "q is text here"
    );
    let out = app.update(key(KeyCode::Enter));
    assert_eq!(out.action, Some(ask_action("why hot?", 1)));
    assert_eq!(
        app.conversation(),
        [Entry {
            speaker: Speaker::You,
            text: "why hot?".into()
        }]
    );
    assert!(app.modal().is_none());
    assert_eq!(app.work(), Work::Waiting, "queued while the model loads");
}

#[test]
fn empty_question_is_not_sent() {
    let mut app = app_with(Vec::new());
    app.update(ch('/'));
    type_text(&mut app, "  ");
    assert_eq!(app.update(key(KeyCode::Enter)).action, None);
    assert!(app.conversation().is_empty());
}

#[test]
fn input_edits_in_the_middle() {
    let mut app = app_with(Vec::new());
    app.update(ch('/'));
    type_text(&mut app, "ac");
    app.update(key(KeyCode::Left));
    type_text(&mut app, "b");
    app.update(key(KeyCode::Home));
    app.update(key(KeyCode::Delete));
    assert!(matches!(app.modal(), Some(Modal::Input(i)) if i.text == "bc" && i.cursor == 0));
}

#[test]
fn edit_replaces_the_command_and_judges_it_again() {
    let mut app = app_with(two_findings());
    focus_proposals(&mut app);
    app.update(ch('e'));
    assert!(matches!(app.modal(), Some(Modal::Input(i)) if i.text == "nvidia-smi -q"));
    type_text(&mut app, " -d ECC");
    app.update(key(KeyCode::Enter));
    assert_eq!(app.proposals()[0].command(), "nvidia-smi -q -d ECC");
    assert_eq!(app.proposals()[0].tier(), Tier::ReadOnly);
    app.update(ch('e'));
    for _ in 0.."nvidia-smi -q -d ECC".len() {
        app.update(key(KeyCode::Backspace));
    }
    type_text(&mut app, "nvidia-smi -r -i 0");
    app.update(key(KeyCode::Enter));
    assert_eq!(app.proposals()[0].tier(), Tier::StateChanging);
    app.update(refresh(two_findings()));
    assert_eq!(
        app.proposals()[0].command(),
        "nvidia-smi -r -i 0",
        "a refresh keeps edits"
    );
}

#[test]
fn explain_and_copy_act_on_the_selected_proposal() {
    let mut app = app_with(two_findings());
    focus_proposals(&mut app);
    assert_eq!(app.update(ch('x')).action, None, "the guard explains");
    let guard = app.conversation().last().expect("an explanation");
    assert_eq!(guard.speaker, Speaker::Guard);
    assert!(guard.text.starts_with("nvidia-smi: "), "{}", guard.text);
    assert!(guard.text.contains("\n-q: "), "{}", guard.text);
    assert_eq!(
        app.update(ch('c')).action,
        Some(AppAction::Copy("nvidia-smi -q".into()))
    );
    assert!(app.note().is_some_and(|n| n.contains("13 bytes")));
}

fn ask_action(prompt: &str, round: usize) -> AppAction {
    AppAction::Ask(Ask {
        prompt: prompt.into(),
        round,
    })
}

fn text(piece: &str, tokens: usize) -> Event {
    Event::Model(Message::Text {
        piece: piece.into(),
        tokens,
        tokens_per_s: 10.0,
    })
}

fn reply(answer: &str, commands: &[&str]) -> Event {
    Event::Model(Message::Done(Ok(crate::copilot::Reply {
        answer: answer.into(),
        proposals: commands
            .iter()
            .map(|c| crate::copilot::Proposal::new(*c, format!("why {c}")))
            .collect(),
        model: "tiny".into(),
        timings: crate::copilot::Timings {
            tokens_per_s: 12.5,
            ..Default::default()
        },
    })))
}

fn loaded() -> Event {
    Event::Model(Message::Loaded {
        model: "tiny".into(),
        seconds: 0.5,
    })
}

fn ask(app: &mut App, question: &str) -> Option<AppAction> {
    app.update(ch('/'));
    type_text(app, question);
    app.update(key(KeyCode::Enter)).action
}

fn done(command: &str) -> Event {
    Event::CommandDone(CommandResult {
        command: command.into(),
        output: "GPU 2: 85C\n".into(),
        status: "exit code 0".into(),
        exit_code: Some(0),
        duration_ms: 3,
        dropped_bytes: 0,
        error: None,
        ended: Some(crate::probe::interpret::Ended::Exited(0)),
    })
}

#[test]
fn tokens_stream_into_one_answer_and_the_reply_replaces_it() {
    let mut app = app_with(Vec::new());
    app.update(loaded());
    ask(&mut app, "q");
    app.update(text("hel", 1));
    app.update(text("lo", 2));
    assert_eq!(app.conversation().last().unwrap().text, "hello");
    assert_eq!(app.work(), Work::Generating(2, 10.0));
    app.update(reply("hello.", &[]));
    app.update(loaded());
    ask(&mut app, "r");
    app.update(text("next", 1));
    let texts: Vec<_> = app.conversation().iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, ["q", "hello.", strings::NO_COMMANDS, "r", "next"]);
}

#[test]
fn the_model_state_follows_the_worker() {
    let mut app = app_with(Vec::new());
    assert_eq!(app.model(), &ModelState::Loading);
    app.update(loaded());
    assert!(matches!(app.model(), ModelState::Ready { name, last_rate: None } if name == "tiny"));
    ask(&mut app, "q");
    app.update(Event::Model(Message::Prefill { done: 3, total: 9 }));
    assert_eq!(app.work(), Work::Prefill(3, 9));
    app.update(reply("a", &["nvidia-smi -L"]));
    assert_eq!(app.work(), Work::Idle);
    assert!(matches!(app.model(), ModelState::Ready { last_rate: Some(r), .. } if *r == 12.5));
    app.update(Event::Model(Message::LoadFailed("no model: x".into())));
    assert_eq!(app.model(), &ModelState::Failed("no model: x".into()));
}

#[test]
fn the_reply_brings_its_proposals_and_focus() {
    let mut app = app_with(two_findings());
    ask(&mut app, "why is GPU 1 slow?");
    app.update(reply(
        "it is hot",
        &["nvidia-smi -q -d TEMPERATURE -i 1", "nvidia-smi -r -i 1"],
    ));
    assert!(app.proposals_from_copilot());
    assert_eq!(app.focus(), Focus::Proposals);
    let commands: Vec<_> = app.proposals().iter().map(Proposal::command).collect();
    assert_eq!(
        commands,
        ["nvidia-smi -q -d TEMPERATURE -i 1", "nvidia-smi -r -i 1"]
    );
    assert_eq!(app.proposals()[1].tier(), Tier::StateChanging);
    assert_eq!(
        app.proposals()[0].purpose,
        "why nvidia-smi -q -d TEMPERATURE -i 1"
    );
    assert!(matches!(
        app.history(),
        [Turn::User(q), Turn::Assistant(a)] if q == "why is GPU 1 slow?" && a == "it is hot"
    ));
    app.update(refresh(two_findings()));
    assert!(app.proposals_from_copilot(), "a refresh keeps them");
    assert_eq!(
        app.update(key(KeyCode::Enter)).action,
        Some(AppAction::Run(0)),
        "Enter runs the first at once"
    );
    app.update(key(KeyCode::BackTab));
    app.update(ch('j'));
    assert!(
        !app.proposals_from_copilot(),
        "picking a finding shows its commands"
    );
    assert_eq!(app.proposals()[0].command(), "dmesg");
}

#[test]
fn one_question_at_a_time() {
    let mut app = app_with(Vec::new());
    assert!(ask(&mut app, "first").is_some());
    assert_eq!(ask(&mut app, "second"), None);
    assert_eq!(app.note(), Some(strings::STILL_ANSWERING));
    assert!(
        matches!(app.modal(), Some(Modal::Input(i)) if i.text == "second"),
        "the question is kept"
    );
    app.update(key(KeyCode::Esc));
    app.update(reply("a", &[]));
    assert_eq!(ask(&mut app, "third"), Some(ask_action("third", 1)));
}

#[test]
fn no_question_before_the_first_snapshot() {
    let mut app = App::new(
        Theme {
            color: false,
            ascii: true,
        },
        Duration::from_secs(2),
        Rect::new(0, 0, 80, 24),
    );
    assert_eq!(ask(&mut app, "q"), None);
    assert_eq!(app.note(), Some(strings::STILL_PROBING));
}

#[test]
fn esc_and_ctrl_c_cancel_a_generation_instead_of_quitting() {
    let ctrl_c = || Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    let mut app = app_with(two_findings());
    app.update(loaded());
    ask(&mut app, "q");
    app.update(text("par", 1));
    assert_eq!(
        app.update(key(KeyCode::Esc)).action,
        Some(AppAction::Cancel)
    );
    assert_eq!(app.work(), Work::Cancelling);
    app.update(text("tial", 2));
    assert_eq!(app.work(), Work::Cancelling, "stays cancelling until done");
    assert_eq!(app.update(ctrl_c()).action, Some(AppAction::Cancel));
    app.update(Event::Model(Message::Done(Err(worker::CANCELLED.into()))));
    assert_eq!(app.work(), Work::Idle);
    assert_eq!(app.conversation().last().unwrap().text, strings::CANCELLED);
    app.update(done("nvidia-smi -q"));
    assert_eq!(
        app.work(),
        Work::Idle,
        "a cancelled question has no follow-up"
    );
    app.update(key(KeyCode::Enter));
    assert!(app.details().is_some());
    assert_eq!(
        app.update(key(KeyCode::Esc)).action,
        None,
        "Esc is Back again"
    );
    assert!(app.details().is_none());
    assert_eq!(app.update(ctrl_c()).action, Some(AppAction::Quit));
}

#[test]
fn outputs_go_back_to_the_model_for_the_rounds_left() {
    let mut app = app_with(Vec::new()).with_rounds(2);
    app.update(loaded());
    ask(&mut app, "why slow?");
    app.update(reply("hot", &["nvidia-smi -q"]));
    let out = app.update(done("nvidia-smi -q"));
    assert_eq!(out.action, Some(ask_action(&follow_up("why slow?"), 2)));
    assert!(matches!(
        app.history().last(),
        Some(Turn::CommandOutput { command, exit_code: Some(0), output, .. })
            if command == "nvidia-smi -q" && output == "GPU 2: 85C\n"
    ));
    app.update(reply("GPU 2 is at 85C", &["nvidia-smi -q"]));
    assert!(matches!(
        &app.history()[app.history().len() - 2..],
        [Turn::User(p), Turn::Assistant(_)] if *p == follow_up("why slow?")
    ));
    assert_eq!(
        app.update(done("nvidia-smi -q")).action,
        None,
        "2 rounds at most"
    );
    assert!(matches!(
        app.history().last(),
        Some(Turn::CommandOutput { .. })
    ));
}

#[test]
fn no_follow_up_while_answering_or_without_a_model() {
    let mut app = app_with(Vec::new());
    ask(&mut app, "q");
    assert_eq!(
        app.update(done("dmesg")).action,
        None,
        "an answer is in flight"
    );
    app.update(Event::Model(Message::LoadFailed("no model: x".into())));
    app.update(Event::Model(Message::Done(Err("no model: x".into()))));
    assert_eq!(
        app.conversation().last().unwrap().text,
        "no answer: no model: x"
    );
    assert_eq!(app.update(done("dmesg")).action, None);
}

#[test]
fn a_new_answer_closes_a_confirmation_of_the_old_list() {
    let mut app = app_with(two_findings());
    focus_proposals(&mut app);
    app.update(ch('j'));
    ask(&mut app, "q");
    app.update(key(KeyCode::Enter));
    assert!(matches!(app.modal(), Some(Modal::Confirm(_))));
    app.update(reply("a", &["nvidia-smi -L", "nvidia-smi -r -i 0"]));
    assert_eq!(
        app.modal(),
        Some(&Modal::Notice(strings::PROPOSALS_CHANGED.into()))
    );
    app.update(ch('z'));
    assert!(app.modal().is_none(), "any key closes the notice");
    assert_eq!(
        app.update(key(KeyCode::Enter)).action,
        Some(AppAction::Run(0)),
        "the new list's first proposal is read-only"
    );
}

#[test]
fn audit_warnings_show_as_notes() {
    let mut app = app_with(Vec::new());
    app.update(Event::Warning("sigma: warning: audit log x: denied".into()));
    assert_eq!(app.conversation()[0].speaker, Speaker::Note);
}

#[test]
fn conversation_scrolls_within_its_lines() {
    let mut app = app_with(Vec::new());
    for i in 0..40 {
        app.push_note(&format!("line {i}"));
    }
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::Tab));
    assert_eq!(app.focus(), Focus::Conversation);
    for _ in 0..100 {
        app.update(ch('k'));
    }
    let inner = layout::inner(layout::areas(app.size(), 2, 0).conversation);
    assert_eq!(app.scroll_back(), 40 - usize::from(inner.height));
    app.update(key(KeyCode::PageDown));
    assert!(app.scroll_back() < 40 - usize::from(inner.height));
}

#[test]
fn help_opens_and_keys_do_not_leak_through() {
    let mut app = app_with(two_findings());
    app.update(ch('?'));
    assert_eq!(app.modal(), Some(&Modal::Help));
    assert_eq!(app.update(ch('j')).action, None);
    assert_eq!(app.selected_finding(), 0);
    app.update(ch('q'));
    assert!(app.modal().is_none(), "q closes help without quitting");
}

#[test]
fn quit_from_keys_and_signals() {
    let mut app = app_with(Vec::new());
    assert_eq!(app.update(ch('q')).action, Some(AppAction::Quit));
    app.update(ch('/'));
    let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(
        app.update(ctrl_c).action,
        Some(AppAction::Quit),
        "even from an input line"
    );
    assert_eq!(app.update(Event::Terminate).action, Some(AppAction::Quit));
}

#[test]
fn tick_redraws_only_when_staleness_changes() {
    let mut app = app_with(Vec::new());
    let at = app.refresh.as_ref().map(|r| r.at).unwrap();
    assert!(!app.update(Event::Tick(at + Duration::from_secs(1))).redraw);
    assert!(app.update(Event::Tick(at + Duration::from_secs(6))).redraw);
    assert_eq!(app.stale_secs(), Some(6));
}

#[test]
fn command_output_lands_in_the_conversation() {
    let mut app = app_with(two_findings());
    focus_proposals(&mut app);
    app.update(key(KeyCode::Enter));
    assert!(app.note().is_some_and(|n| n.starts_with("running")));
    app.update(done("nvidia-smi -L"));
    assert_eq!(app.conversation()[0].speaker, Speaker::Run);
    assert_eq!(app.conversation()[1].text, "GPU 2: 85C\nexit code 0");
    assert_eq!(app.note(), None, "the running note is gone");
}

#[test]
fn the_program_to_type_is_the_first_programs_file_name() {
    let p = Proposal::new("/usr/bin/nvidia-smi -r -i 0", String::new());
    assert_eq!(p.program(), Some("nvidia-smi"));
    let p = Proposal::new("nvidia-smi -q | grep -i temp", String::new());
    assert_eq!(p.program(), Some("nvidia-smi"));
}

#[test]
fn what_a_command_showed_is_read_into_the_conversation_and_the_next_question() {
    let mut app = app_with(Vec::new());
    app.update(Event::CommandDone(CommandResult {
        command: "nvidia-smi -q -d TEMPERATURE -i 2".into(),
        output: "    Temperature\n        GPU Current Temp                  : 86 C\n".into(),
        status: "exit code 0".into(),
        exit_code: Some(0),
        duration_ms: 2,
        dropped_bytes: 0,
        error: None,
        ended: Some(crate::probe::interpret::Ended::Exited(0)),
    }));
    let read = app
        .conversation()
        .iter()
        .find(|e| e.speaker == Speaker::Read)
        .expect("a read entry");
    assert_eq!(read.text, "GPU 2 temperature.gpu 86 C");
    assert_eq!(app.facts().len(), 1);
}
