//! Where each pane goes: pure geometry, shared by drawing ([`super::ui`])
//! and by the app, which needs the conversation pane's size to scroll it.
//!
//! ```text
//! header                                   (1 row)
//! GPU table                                (GPUs + 3 rows, at most half)
//! findings          | proposals            (wide: two columns)
//!                   | conversation
//! status line                              (1 row)
//! ```
//! Below [`NARROW`] columns the three lower panes stack instead.

use ratatui::layout::{Constraint, Layout, Rect};

/// Below this many columns the lower panes stack vertically.
pub const NARROW: u16 = 70;

/// The rectangles of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// Host, driver, CUDA, GPU count, refresh time.
    pub header: Rect,
    /// The GPU table (with borders).
    pub gpus: Rect,
    /// Findings list or details (with borders).
    pub findings: Rect,
    /// Proposed commands (with borders).
    pub proposals: Rect,
    /// The conversation (with borders).
    pub conversation: Rect,
    /// Model state, hints, notes, or the input line.
    pub status: Rect,
}

/// Splits `area` for a node with `gpus` GPU rows and `proposal_lines` lines
/// of proposals.
pub fn areas(area: Rect, gpus: usize, proposal_lines: usize) -> Areas {
    let [header, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let table_rows = u16::try_from(gpus.max(1) + 3).unwrap_or(u16::MAX);
    let [gpus, lower] = Layout::vertical([
        Constraint::Length(table_rows.min(body.height / 2)),
        Constraint::Fill(1),
    ])
    .areas(body);
    let proposal_rows = u16::try_from(proposal_lines.max(1) + 2).unwrap_or(u16::MAX);
    let (findings, proposals, conversation) = if area.width < NARROW {
        let [f, p, c] = Layout::vertical([
            Constraint::Fill(1),
            Constraint::Length(proposal_rows.min(lower.height / 3)),
            Constraint::Fill(1),
        ])
        .areas(lower);
        (f, p, c)
    } else {
        let [f, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(lower);
        let [p, c] = Layout::vertical([
            Constraint::Length(proposal_rows.min(right.height * 2 / 5)),
            Constraint::Fill(1),
        ])
        .areas(right);
        (f, p, c)
    };
    Areas {
        header,
        gpus,
        findings,
        proposals,
        conversation,
        status,
    }
}

/// The inside of a bordered pane.
pub fn inner(r: Rect) -> Rect {
    Rect {
        x: r.x.saturating_add(1),
        y: r.y.saturating_add(1),
        width: r.width.saturating_sub(2),
        height: r.height.saturating_sub(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_gpus_fit_at_80x24() {
        let a = areas(Rect::new(0, 0, 80, 24), 8, 2);
        assert_eq!(a.gpus.height, 11, "8 rows + header + borders");
        assert_eq!(a.status.y, 23);
        assert!(a.conversation.height >= 4);
        assert_eq!(a.findings.y, a.proposals.y, "two columns when wide");
    }

    #[test]
    fn narrow_stacks_the_lower_panes() {
        let a = areas(Rect::new(0, 0, 60, 40), 8, 2);
        assert_eq!(a.findings.x, a.proposals.x);
        assert!(a.proposals.y > a.findings.y && a.conversation.y > a.proposals.y);
    }

    #[test]
    fn many_gpus_take_at_most_half() {
        let a = areas(Rect::new(0, 0, 80, 24), 64, 1);
        assert_eq!(a.gpus.height, 11);
    }
}
