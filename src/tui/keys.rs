//! Key bindings, in one place: which key means what.
//!
//! [`BINDINGS`] is the only table; [`intent`] looks a key up in it and the
//! help overlay lists it through [`help_rows`], so the two cannot drift.
//! Text typed into an input line or a confirmation never comes here: the
//! app reads those keys as text.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key asks the app to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Leave the TUI.
    Quit,
    /// Show or hide the help overlay.
    Help,
    /// Open the input line to ask the copilot.
    Ask,
    /// Select the previous row (or scroll up).
    Up,
    /// Select the next row (or scroll down).
    Down,
    /// Move a page up.
    PageUp,
    /// Move a page down.
    PageDown,
    /// Focus the next pane.
    NextPane,
    /// Focus the previous pane.
    PrevPane,
    /// Open the selection: a finding's details, run a proposal.
    Activate,
    /// Show the selected finding's details.
    Details,
    /// Close details or an overlay.
    Back,
    /// Edit the selected proposal.
    Edit,
    /// Explain each argument of the selected proposal (from the guard's
    /// catalogue).
    Explain,
    /// Copy the selection to the clipboard (OSC 52).
    Copy,
    /// Refresh the snapshot and findings now.
    Refresh,
}

/// One key and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The key.
    pub code: KeyCode,
    /// Modifiers that must be held (Shift is ignored when matching).
    pub modifiers: KeyModifiers,
    /// What it does.
    pub intent: Intent,
}

const fn key(code: KeyCode, intent: Intent) -> Binding {
    Binding {
        code,
        modifiers: KeyModifiers::NONE,
        intent,
    }
}

const fn ctrl(c: char, intent: Intent) -> Binding {
    Binding {
        code: KeyCode::Char(c),
        modifiers: KeyModifiers::CONTROL,
        intent,
    }
}

/// Every binding, in the order the help overlay lists them.
pub const BINDINGS: &[Binding] = &[
    key(KeyCode::Char('?'), Intent::Help),
    key(KeyCode::Char('/'), Intent::Ask),
    key(KeyCode::Char('k'), Intent::Up),
    key(KeyCode::Up, Intent::Up),
    key(KeyCode::Char('j'), Intent::Down),
    key(KeyCode::Down, Intent::Down),
    key(KeyCode::PageUp, Intent::PageUp),
    key(KeyCode::PageDown, Intent::PageDown),
    key(KeyCode::Tab, Intent::NextPane),
    key(KeyCode::BackTab, Intent::PrevPane),
    key(KeyCode::Enter, Intent::Activate),
    key(KeyCode::Right, Intent::Details),
    key(KeyCode::Char('l'), Intent::Details),
    key(KeyCode::Esc, Intent::Back),
    key(KeyCode::Left, Intent::Back),
    key(KeyCode::Char('h'), Intent::Back),
    key(KeyCode::Char('e'), Intent::Edit),
    key(KeyCode::Char('x'), Intent::Explain),
    key(KeyCode::Char('c'), Intent::Copy),
    key(KeyCode::Char('d'), Intent::Refresh),
    key(KeyCode::Char('q'), Intent::Quit),
    ctrl('c', Intent::Quit),
];

/// The intent bound to `key`, if any.
pub fn intent(key: &KeyEvent) -> Option<Intent> {
    let mods = key.modifiers - KeyModifiers::SHIFT;
    BINDINGS
        .iter()
        .find(|b| b.code == key.code && b.modifiers - KeyModifiers::SHIFT == mods)
        .map(|b| b.intent)
}

/// True for Ctrl-C, which quits from anywhere, even an input line.
pub fn is_interrupt(key: &KeyEvent) -> bool {
    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)
}

/// The help overlay's rows: each intent once, with all its keys
/// (`"j Down"`), in [`BINDINGS`] order.
pub fn help_rows() -> Vec<(String, Intent)> {
    let mut rows: Vec<(String, Intent)> = Vec::new();
    for b in BINDINGS {
        let label = key_label(b);
        match rows.iter_mut().find(|(_, i)| *i == b.intent) {
            Some((keys, _)) => {
                keys.push(' ');
                keys.push_str(&label);
            }
            None => rows.push((label, b.intent)),
        }
    }
    rows
}

/// The first key bound to `intent`, as written in hints (`/`, `Esc`).
pub fn key_for(intent: Intent) -> String {
    BINDINGS
        .iter()
        .find(|b| b.intent == intent)
        .map(key_label)
        .unwrap_or_default()
}

/// How a binding's key is written: `j`, `Up`, `Enter`, `C-c`.
fn key_label(b: &Binding) -> String {
    let name = match b.code {
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Up => "Up".into(),
        KeyCode::Down => "Down".into(),
        KeyCode::Left => "Left".into(),
        KeyCode::Right => "Right".into(),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::PageDown => "PgDn".into(),
        KeyCode::Tab => "Tab".into(),
        KeyCode::BackTab => "S-Tab".into(),
        KeyCode::Enter => "Enter".into(),
        KeyCode::Esc => "Esc".into(),
        other => format!("{other:?}"),
    };
    if b.modifiers.contains(KeyModifiers::CONTROL) {
        format!("C-{name}")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn keys_map_to_intents() {
        assert_eq!(
            intent(&press(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(Intent::Down)
        );
        assert_eq!(
            intent(&press(KeyCode::Up, KeyModifiers::NONE)),
            Some(Intent::Up)
        );
        assert_eq!(
            intent(&press(KeyCode::Char('c'), KeyModifiers::NONE)),
            Some(Intent::Copy)
        );
        assert_eq!(
            intent(&press(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Intent::Quit)
        );
        assert_eq!(intent(&press(KeyCode::Char('z'), KeyModifiers::NONE)), None);
    }

    #[test]
    fn shift_is_ignored_for_shifted_symbols() {
        assert_eq!(
            intent(&press(KeyCode::Char('?'), KeyModifiers::SHIFT)),
            Some(Intent::Help)
        );
        assert_eq!(
            intent(&press(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Intent::PrevPane)
        );
    }

    #[test]
    fn help_lists_each_intent_once_with_all_its_keys() {
        let rows = help_rows();
        let down: Vec<_> = rows.iter().filter(|(_, i)| *i == Intent::Down).collect();
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].0, "j Down");
        let quit = rows
            .iter()
            .find(|(_, i)| *i == Intent::Quit)
            .map(|(k, _)| k.as_str());
        assert_eq!(quit, Some("q C-c"));
    }

    #[test]
    fn every_intent_has_a_key() {
        for (_, intent) in help_rows() {
            assert!(!key_for(intent).is_empty(), "{intent:?}");
        }
        assert_eq!(key_for(Intent::Back), "Esc");
    }
}
