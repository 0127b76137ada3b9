//! Styles and symbols of the TUI, in one place: colour or not, Unicode or
//! plain ASCII.
//!
//! Drawing code never names a colour or a box-drawing character; it asks the
//! [`Theme`]. Without colour (`NO_COLOR`, `--no-color`) styles keep only
//! modifiers (bold, reverse), so the selection and severities stay visible.
//! In ASCII mode (`--ascii`) borders are `+-|` and every string from the
//! node goes through [`Theme::clean`], so nothing outside ASCII reaches the
//! screen.

use std::borrow::Cow;

use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::border;

use crate::checks::Severity;

/// Borders drawn with ASCII only.
const ASCII_BORDER: border::Set<'static> = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

/// How the TUI looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// Use colours (off with `NO_COLOR` or `--no-color`).
    pub color: bool,
    /// Draw with ASCII only.
    pub ascii: bool,
}

impl Theme {
    /// Border characters of every pane.
    pub fn border(&self) -> border::Set<'static> {
        if self.ascii {
            ASCII_BORDER
        } else {
            border::ROUNDED
        }
    }

    /// Separator between the parts of a header line.
    pub fn separator(&self) -> &'static str {
        if self.ascii { " | " } else { " · " }
    }

    /// Text from the node made safe to show: control characters and the
    /// characters that reorder or hide text (bidi overrides, zero-width)
    /// become `?`;
    /// in ASCII mode a few common symbols are spelled out (`°` is dropped,
    /// `…` becomes `...`) and everything else outside ASCII becomes `?`.
    pub fn clean<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let bad = |c: char| {
            c.is_control()
                || crate::checks::is_bidi_or_invisible(c)
                || (self.ascii && !c.is_ascii())
        };
        if !s.chars().any(bad) {
            return Cow::Borrowed(s);
        }
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                c if !bad(c) => out.push(c),
                '\u{b0}' if self.ascii => {}
                '\u{2026}' if self.ascii => out.push_str("..."),
                _ => out.push('?'),
            }
        }
        Cow::Owned(out)
    }

    /// `style` with its colours dropped when colour is off.
    fn paint(&self, style: Style) -> Style {
        if self.color {
            style
        } else {
            Style {
                fg: None,
                bg: None,
                ..style
            }
        }
    }

    /// A severity label (`CRIT`, `WARN`, `INFO`).
    pub fn severity(&self, s: Severity) -> Style {
        self.paint(match s {
            Severity::Critical => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            Severity::Warning => Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Severity::Info => Style::new().fg(Color::Cyan),
        })
    }

    /// The selected row of the focused pane.
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// The selected row of a pane without focus.
    pub fn selected_unfocused(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// Border of the focused pane.
    pub fn focused_border(&self) -> Style {
        self.paint(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD))
    }

    /// Border of the other panes.
    pub fn border_style(&self) -> Style {
        Style::new()
    }

    /// Column headers and labels.
    pub fn heading(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// Secondary text (purposes, evidence, hints).
    pub fn dim(&self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    /// Something broken (a lost GPU, a blocked command, an error note).
    pub fn bad(&self) -> Style {
        self.paint(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
    }

    /// Something that needs care (a state-changing command, stale data).
    pub fn caution(&self) -> Style {
        self.paint(Style::new().fg(Color::Yellow))
    }

    /// Something fine (a read-only command).
    pub fn good(&self) -> Style {
        self.paint(Style::new().fg(Color::Green))
    }

    /// The user's lines in the conversation.
    pub fn user(&self) -> Style {
        self.paint(Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_border_is_ascii() {
        let t = Theme {
            color: false,
            ascii: true,
        };
        let b = t.border();
        for s in [
            b.top_left,
            b.top_right,
            b.bottom_left,
            b.bottom_right,
            b.vertical_left,
            b.horizontal_top,
        ] {
            assert!(s.is_ascii(), "{s:?}");
        }
        assert!(t.separator().is_ascii());
    }

    #[test]
    fn clean_replaces_control_and_non_ascii() {
        let ascii = Theme {
            color: true,
            ascii: true,
        };
        let unicode = Theme {
            color: true,
            ascii: false,
        };
        assert_eq!(ascii.clean("gpu\u{1b}[2Jé"), "gpu?[2J?");
        assert_eq!(ascii.clean("86 °C…"), "86 C...");
        assert_eq!(unicode.clean("gpu\u{1b}é"), "gpu?é");
        assert_eq!(unicode.clean("a\u{202E}b\u{200B}\u{9b}c\r"), "a?b??c?");
        assert!(matches!(unicode.clean("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn no_color_keeps_modifiers_only() {
        let t = Theme {
            color: false,
            ascii: false,
        };
        let s = t.severity(Severity::Critical);
        assert_eq!(s.fg, None);
        assert!(s.add_modifier.contains(Modifier::BOLD));
        assert_eq!(
            Theme {
                color: true,
                ascii: false
            }
            .severity(Severity::Critical)
            .fg,
            Some(Color::Red)
        );
    }
}
