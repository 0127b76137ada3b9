//! A one-line text editor: the input line of `/` (ask) and `e` (edit).
//!
//! Keys: characters insert at the cursor; Backspace, Delete, Left, Right,
//! Home and End edit and move. Enter and Esc are the app's to handle.

use ratatui::crossterm::event::{KeyCode, KeyEvent};

/// What the input line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A question for the copilot.
    Ask,
    /// A new command line for proposal `n`.
    Edit(usize),
}

/// A line of text being typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// What it is for.
    pub kind: InputKind,
    /// The text so far.
    pub text: String,
    /// Cursor position, in characters.
    pub cursor: usize,
}

impl Input {
    /// An input line holding `text`, the cursor at its end.
    pub fn new(kind: InputKind, text: String) -> Input {
        let cursor = text.chars().count();
        Input { kind, text, cursor }
    }

    fn byte_at(&self, char_index: usize) -> usize {
        self.text
            .char_indices()
            .nth(char_index)
            .map_or(self.text.len(), |(b, _)| b)
    }

    /// Applies an editing key; false when the key does not edit.
    pub fn edit(&mut self, key: &KeyEvent) -> bool {
        let len = self.text.chars().count();
        match key.code {
            KeyCode::Char(c) => {
                let at = self.byte_at(self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                let at = self.byte_at(self.cursor);
                self.text.remove(at);
            }
            KeyCode::Delete if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.text.remove(at);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(len),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = len,
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::KeyModifiers;

    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn edits_at_the_cursor() {
        let mut i = Input::new(InputKind::Ask, "ac".into());
        assert_eq!(i.cursor, 2);
        i.edit(&key(KeyCode::Left));
        i.edit(&key(KeyCode::Char('b')));
        assert_eq!((i.text.as_str(), i.cursor), ("abc", 2));
        i.edit(&key(KeyCode::Home));
        i.edit(&key(KeyCode::Delete));
        i.edit(&key(KeyCode::End));
        i.edit(&key(KeyCode::Backspace));
        assert_eq!((i.text.as_str(), i.cursor), ("b", 1));
    }

    #[test]
    fn multibyte_text_is_edited_by_character() {
        let mut i = Input::new(InputKind::Ask, "h\u{e9}".into());
        i.edit(&key(KeyCode::Backspace));
        assert_eq!(i.text, "h");
        i.edit(&key(KeyCode::Char('\u{e9}')));
        i.edit(&key(KeyCode::Left));
        i.edit(&key(KeyCode::Char('x')));
        assert_eq!(i.text, "hx\u{e9}");
    }

    #[test]
    fn moves_stop_at_the_ends_and_other_keys_do_nothing() {
        let mut i = Input::new(InputKind::Edit(0), "a".into());
        assert!(i.edit(&key(KeyCode::Right)));
        assert_eq!(i.cursor, 1);
        i.edit(&key(KeyCode::Home));
        assert!(i.edit(&key(KeyCode::Left)));
        assert_eq!(i.cursor, 0);
        assert!(
            !i.edit(&key(KeyCode::Backspace)),
            "nothing before the cursor"
        );
        assert!(!i.edit(&key(KeyCode::F(5))));
    }
}
