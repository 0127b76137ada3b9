//! Drawing: one frame from an [`App`], read-only.
//!
//! [`draw`] takes `&App` and never changes it; where widgets need mutable
//! state (a table's scroll offset), a throwaway copy is built from the app's
//! selection. Panes are placed by [`layout::areas`]; styles come from the
//! app's [`Theme`](super::theme::Theme); words from [`strings`]. Narrow
//! terminals drop the GPU table's less important columns.

use std::borrow::Cow;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Cell, Clear, List, ListItem, ListState, Paragraph, Row, Table, TableState, Wrap,
};

use super::app::{App, Focus, Modal, Proposal, Speaker};
use super::input::InputKind;
use super::keys;
use super::layout::{self, Areas};
use super::strings::{self, col};
use crate::checks::{Finding, Severity};
use crate::guard::Tier;
use crate::probe::describe::{
    gpu_pcie as pcie, gpu_power as power, gpu_throttle as throttle, short_name,
};
use crate::probe::{Gpu, Source};

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let a: Areas = app.areas(frame.area());
    header(frame, app, a.header);
    gpu_table(frame, app, a.gpus);
    match app.details() {
        Some(f) => details(frame, app, f, a.findings),
        None => findings(frame, app, a.findings),
    }
    proposals(frame, app, a.proposals);
    conversation(frame, app, a.conversation);
    status(frame, app, a.status);
    match app.modal() {
        Some(Modal::Help) => help(frame, app),
        Some(Modal::Confirm(c)) => {
            let proposal = app.proposals().get(c.proposal);
            let command = proposal.map_or("", |p| p.command());
            let tier = proposal.map_or(Tier::StateChanging, |p| p.tier());
            let mut lines = vec![
                Line::raw(strings::confirm_prompt(&c.binary, tier)),
                Line::raw(""),
                Line::styled(app.theme.clean(command).into_owned(), app.theme.caution()),
                Line::raw(""),
                Line::raw(format!("> {}", app.theme.clean(&c.typed))),
            ];
            if c.mismatch {
                lines.push(Line::styled(
                    strings::confirm_mismatch(&c.binary),
                    app.theme.bad(),
                ));
            }
            popup(frame, app, strings::CONFIRM, lines);
        }
        Some(Modal::Notice(text)) => {
            popup(frame, app, strings::NOTICE, vec![Line::raw(text.clone())])
        }
        Some(Modal::Input(_)) | None => {}
    }
}

/// A bordered pane, highlighted when it has the focus.
fn pane<'a>(app: &App, title: &'a str, pane: Focus) -> Block<'a> {
    let t = &app.theme;
    let style = if app.focus() == pane {
        t.focused_border()
    } else {
        t.border_style()
    };
    Block::bordered()
        .border_set(t.border())
        .border_style(style)
        .title(format!(" {title} "))
}

fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "CRIT",
        Severity::Warning => "WARN",
        Severity::Info => "INFO",
    }
}

fn header(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let Some(s) = app.snapshot() else {
        frame.render_widget(Line::styled(strings::PROBING, t.dim()), area);
        return;
    };
    // (drop rank, part), most important first: when the line is too long
    // the highest rank goes first; rank 0 always stays, and what does not
    // fit is cut at the end.
    let mut parts: Vec<(u8, Span)> = vec![
        (
            0,
            Span::styled(t.clean(&s.host.hostname).into_owned(), t.heading()),
        ),
        (0, Span::raw(crate::report::render::gpu_count(s))),
    ];
    if let Some(time) = app.refreshed_at() {
        let stale = app.stale_secs();
        let style = if stale.is_some() {
            t.caution()
        } else {
            Style::new()
        };
        parts.push((0, Span::styled(strings::refreshed(time, stale), style)));
    }
    if let Source::Simulated { name } = &s.source {
        parts.push((
            0,
            Span::styled(format!("simulated: {}", t.clean(name)), t.caution()),
        ));
    }
    if let Some(nv) = &s.nvidia {
        parts.push((
            1,
            Span::raw(format!("driver {}", t.clean(&nv.driver_version))),
        ));
        if let Some(cuda) = &nv.cuda_version {
            parts.push((2, Span::raw(format!("CUDA {}", t.clean(cuda)))));
        }
    }
    let sep = t.separator();
    let width = |parts: &[(u8, Span)]| {
        parts.iter().map(|(_, p)| p.width()).sum::<usize>()
            + sep.len() * parts.len().saturating_sub(1)
    };
    while width(&parts) > usize::from(area.width) {
        let Some(i) = (0..parts.len())
            .filter(|&i| parts[i].0 > 0)
            .max_by_key(|&i| parts[i].0)
        else {
            break;
        };
        parts.remove(i);
    }
    let mut spans = Vec::new();
    for (i, (_, p)) in parts.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(sep, t.dim()));
        }
        spans.push(p);
    }
    frame.render_widget(Line::from(spans), area);
}

/// A GPU table column: header, width, and the cell of a live GPU.
struct Column {
    title: &'static str,
    width: Constraint,
    /// Columns are dropped highest first when the table is too narrow.
    drop_rank: u8,
    cell: fn(&Gpu) -> String,
}

const COLUMNS: &[Column] = &[
    Column {
        title: col::NAME,
        width: Constraint::Length(10),
        drop_rank: 4,
        cell: |g| short_name(&g.name).to_string(),
    },
    Column {
        title: col::UTIL,
        width: Constraint::Length(4),
        drop_rank: 0,
        cell: |g| opt(g.utilization_gpu_pct, |u| format!("{u}%")),
    },
    Column {
        title: col::MEMORY,
        width: Constraint::Length(9),
        drop_rank: 0,
        cell: memory,
    },
    Column {
        title: col::TEMP,
        width: Constraint::Length(4),
        drop_rank: 0,
        cell: |g| opt(g.temperature_c, |t| format!("{t}C")),
    },
    Column {
        title: col::POWER,
        width: Constraint::Length(9),
        drop_rank: 1,
        cell: power,
    },
    Column {
        title: col::THROTTLE,
        width: Constraint::Min(8),
        drop_rank: 0,
        cell: throttle,
    },
    Column {
        title: col::ECC,
        width: Constraint::Length(4),
        drop_rank: 3,
        cell: ecc,
    },
    Column {
        title: col::PCIE,
        width: Constraint::Length(9),
        drop_rank: 2,
        cell: pcie,
    },
];

/// From this many columns inside the table, the name column is as wide as
/// the longest name (up to 24).
const WIDE: u16 = 100;

/// Width of the index column: `!` marker and up to two digits.
const INDEX_WIDTH: u16 = 3;

fn min_width(c: Constraint) -> u16 {
    match c {
        Constraint::Length(n) | Constraint::Min(n) => n,
        _ => 0,
    }
}

/// The columns that fit in `width`, dropping by rank.
fn columns_for(width: u16) -> Vec<&'static Column> {
    let mut cols: Vec<&Column> = COLUMNS.iter().collect();
    let needed =
        |cols: &[&Column]| cols.iter().map(|c| min_width(c.width) + 1).sum::<u16>() + INDEX_WIDTH;
    while needed(&cols) > width {
        let Some((i, _)) = cols
            .iter()
            .enumerate()
            .filter(|(_, c)| c.drop_rank > 0)
            .max_by_key(|(_, c)| c.drop_rank)
        else {
            break;
        };
        cols.remove(i);
    }
    cols
}

fn gpu_table(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let block = pane(app, strings::GPUS, Focus::Gpus);
    let gpus = app.snapshot().map_or(&[][..], |s| &s.gpus[..]);
    if gpus.is_empty() {
        let text = if app.snapshot().is_some() {
            strings::NO_GPUS
        } else {
            strings::PROBING
        };
        frame.render_widget(
            Paragraph::new(Line::styled(text, t.dim())).block(block),
            area,
        );
        return;
    }
    let cols = columns_for(layout::inner(area).width);

    let head =
        std::iter::once(Cell::from(col::INDEX)).chain(cols.iter().map(|c| Cell::from(c.title)));
    let rows = gpus.iter().map(|g| {
        let worst = app.gpu_worst(g.index);
        let mark = if worst.is_some() { "!" } else { " " };
        let index = Cell::from(format!("{mark}{}", g.index))
            .style(worst.map_or(Style::new(), |s| t.severity(s)));
        let cells = cols.iter().map(|c| {
            if g.lost {
                match c.title {
                    col::NAME => Cell::from(t.clean(short_name(&g.name)).into_owned()),
                    col::THROTTLE => Cell::from(Span::styled(strings::GPU_LOST, t.bad())),
                    _ => Cell::from("-"),
                }
            } else {
                Cell::from(t.clean(&(c.cell)(g)).into_owned())
            }
        });
        Row::new(std::iter::once(index).chain(cells))
    });
    // Wide tables show whole product names.
    let inner_width = layout::inner(area).width;
    let name_width = gpus
        .iter()
        .map(|g| short_name(&g.name).chars().count())
        .max()
        .unwrap_or(0);
    let widths =
        std::iter::once(Constraint::Length(INDEX_WIDTH)).chain(cols.iter().map(
            |c| match c.title {
                col::NAME if inner_width >= WIDE => {
                    Constraint::Length(u16::try_from(name_width.clamp(10, 24)).unwrap_or(10))
                }
                _ => c.width,
            },
        ));
    let highlight = if app.focus() == Focus::Gpus {
        t.selected()
    } else {
        Style::new()
    };
    let table = Table::new(rows, widths)
        .header(Row::new(head).style(t.heading()))
        .column_spacing(1)
        .row_highlight_style(highlight)
        .block(block);
    let mut state = TableState::default().with_selected(Some(app.selected_gpu()));
    frame.render_stateful_widget(table, area, &mut state);
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

fn memory(g: &Gpu) -> String {
    match (g.memory_used_mib, g.memory_total_mib) {
        (Some(u), Some(t)) => format!("{:.1}/{:.0}G", u as f64 / 1024.0, t as f64 / 1024.0),
        _ => "-".into(),
    }
}

fn ecc(g: &Gpu) -> String {
    match &g.ecc {
        None => "-".into(),
        Some(e) if !e.enabled => "off".into(),
        Some(e) => e.uncorrected_volatile.to_string(),
    }
}

fn list_highlight(app: &App, pane: Focus) -> Style {
    if app.focus() == pane {
        app.theme.selected()
    } else {
        app.theme.selected_unfocused()
    }
}

fn findings(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let block = pane(app, strings::FINDINGS, Focus::Findings);
    if app.findings().is_empty() {
        let text = if app.snapshot().is_some() {
            strings::NO_FINDINGS
        } else {
            strings::PROBING
        };
        frame.render_widget(
            Paragraph::new(Line::styled(text, t.dim())).block(block),
            area,
        );
        return;
    }
    let items = app.findings().iter().map(|f| {
        let gpu = f
            .gpu
            .map_or_else(|| "node ".to_string(), |g| format!("GPU {g} "));
        ListItem::new(Line::from(vec![
            Span::styled(severity_label(f.severity), t.severity(f.severity)),
            Span::raw(" "),
            Span::raw(gpu),
            Span::raw(t.clean(&f.title).into_owned()),
        ]))
    });
    let list = List::new(items)
        .block(block)
        .highlight_style(list_highlight(app, Focus::Findings));
    let mut state = ListState::default().with_selected(Some(app.selected_finding()));
    frame.render_stateful_widget(list, area, &mut state);
}

fn details(frame: &mut Frame, app: &App, f: &Finding, area: Rect) {
    let t = &app.theme;
    let gpu = f.gpu.map_or_else(String::new, |g| format!("GPU {g} "));
    let mut lines = vec![
        Line::from(vec![
            Span::styled(severity_label(f.severity), t.severity(f.severity)),
            Span::raw(" "),
            Span::styled(format!("{gpu}{}", t.clean(&f.title)), t.heading()),
        ]),
        Line::styled(strings::details::EVIDENCE, t.heading()),
    ];
    for (k, v) in &f.evidence {
        lines.push(Line::styled(
            format!("  {}={}", t.clean(k), t.clean(v)),
            t.dim(),
        ));
    }
    lines.push(Line::styled(strings::details::WHY, t.heading()));
    lines.push(Line::raw(format!("  {}", t.clean(&f.why))));
    if !f.commands.is_empty() {
        lines.push(Line::styled(strings::details::COMMANDS, t.heading()));
        for argv in &f.commands {
            lines.push(Line::raw(format!(
                "  $ {}",
                t.clean(&crate::guard::command_line(argv))
            )));
        }
    }
    let block = pane(app, strings::FINDINGS, Focus::Findings)
        .title_bottom(Line::styled(strings::details_back(), t.dim()));
    let paragraph = Paragraph::new(Text::from(lines))
        .block(block)
        .wrap(Wrap { trim: false })
        .scroll((app.details_scroll(), 0));
    frame.render_widget(paragraph, area);
}

fn tier_tag(app: &App, tier: Tier) -> Span<'static> {
    let t = &app.theme;
    match tier {
        Tier::ReadOnly => Span::styled(strings::tier::READ_ONLY, t.good()),
        Tier::Heavy => Span::styled(strings::tier::HEAVY, t.caution()),
        Tier::StateChanging => Span::styled(strings::tier::STATE_CHANGING, t.caution()),
        Tier::Blocked => Span::styled(strings::tier::BLOCKED, t.bad()),
    }
}

/// The guard's word on a proposal: `read-only`, or the tier and the rule
/// that set it (a rule that already names its tier is shown as is).
fn verdict_line(p: &Proposal) -> String {
    let (tier, rule) = (p.tier().to_string(), &p.verdict.rule);
    match p.tier() {
        Tier::ReadOnly => tier,
        _ if rule.contains(&tier) => rule.clone(),
        _ => format!("{tier}: {rule}"),
    }
}

fn proposals(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let title = if app.proposals_from_copilot() {
        strings::PROPOSALS_COPILOT
    } else {
        strings::PROPOSALS
    };
    // A short pane (80x24) shows one proposal: the position tells there are more.
    let n = app.proposals().len();
    let title = if n > 1 {
        format!("{title} {}/{n}", app.selected_proposal() + 1)
    } else {
        title.to_string()
    };
    let mut block = pane(app, &title, Focus::Proposals);
    if app.proposals().is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(strings::NO_PROPOSALS, t.dim())).block(block),
            area,
        );
        return;
    }
    if let Some(p) = app.proposals().get(app.selected_proposal()) {
        block = block.title_bottom(Line::styled(t.clean(&p.purpose).into_owned(), t.dim()));
    }
    // Each item is PROPOSAL_LINES lines: the command, then the verdict.
    let items = app.proposals().iter().map(|p| {
        ListItem::new(vec![
            Line::from(vec![
                tier_tag(app, p.tier()),
                Span::raw(t.clean(p.command()).into_owned()),
            ]),
            Line::styled(format!("     {}", t.clean(&verdict_line(p))), t.dim()),
        ])
    });
    let list = List::new(items)
        .block(block)
        .highlight_style(list_highlight(app, Focus::Proposals));
    let mut state = ListState::default().with_selected(Some(app.selected_proposal()));
    frame.render_stateful_widget(list, area, &mut state);
}

fn conversation(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let block = pane(app, strings::CONVERSATION, Focus::Conversation);
    let inner = layout::inner(area);
    let lines = app.conversation_lines(inner.width);
    if lines.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(strings::conversation_empty(), t.dim())).block(block),
            area,
        );
        return;
    }
    let end = lines.len().saturating_sub(app.scroll_back());
    let start = end.saturating_sub(usize::from(inner.height));
    let shown: Vec<Line> = lines[start..end]
        .iter()
        .map(|(who, text)| {
            let style = match who {
                Speaker::You => t.user(),
                Speaker::Note | Speaker::Read => t.dim(),
                Speaker::Run => t.heading(),
                Speaker::Model | Speaker::Output | Speaker::Guard => Style::new(),
            };
            Line::styled(t.clean(text).into_owned(), style)
        })
        .collect();
    frame.render_widget(Paragraph::new(shown).block(block), area);
}

fn status(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    if let Some(Modal::Input(input)) = app.modal() {
        let prompt = match input.kind {
            InputKind::Ask => strings::ASK_PROMPT,
            InputKind::Edit(_) => strings::EDIT_PROMPT,
        };
        let prompt_w = prompt.len() as u16;
        let room = usize::from(area.width.saturating_sub(prompt_w + 1).max(1));
        let skip = input.cursor.saturating_sub(room);
        let shown: String = input.text.chars().skip(skip).collect();
        let line = Line::from(vec![
            Span::styled(prompt, t.heading()),
            Span::raw(t.clean(&shown).into_owned()),
        ]);
        frame.render_widget(line, area);
        let x = area.x + prompt_w + (input.cursor - skip) as u16;
        frame.set_cursor_position((x.min(area.right().saturating_sub(1)), area.y));
        return;
    }
    let left: Cow<str> = match app.note() {
        Some(note) => Cow::Borrowed(note),
        None => Cow::Owned(strings::model_status(app.model(), app.work())),
    };
    let line = Line::from(vec![
        Span::styled(t.clean(&left).into_owned(), t.heading()),
        Span::styled(t.separator(), t.dim()),
        Span::styled(strings::status_hint(), t.dim()),
    ]);
    frame.render_widget(line, area);
}

fn help(frame: &mut Frame, app: &App) {
    let rows = keys::help_rows();
    let key_w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let lines: Vec<Line> = rows
        .iter()
        .map(|(k, intent)| {
            Line::from(vec![
                Span::styled(format!("{k:<key_w$}  "), app.theme.heading()),
                Span::raw(strings::intent_help(*intent)),
            ])
        })
        .collect();
    popup(frame, app, strings::HELP, lines);
}

/// A centred bordered box over the panes.
fn popup(frame: &mut Frame, app: &App, title: &str, lines: Vec<Line>) {
    let area = frame.area();
    let width = area.width.min(64);
    let inner_w = usize::from(width.saturating_sub(2).max(1));
    let rows: usize = lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(inner_w))
        .sum();
    let height = u16::try_from(rows + 2).unwrap_or(u16::MAX).min(area.height);
    let rect = area.centered(Constraint::Length(width), Constraint::Length(height));
    let block = Block::bordered()
        .border_set(app.theme.border())
        .border_style(app.theme.focused_border())
        .title(format!(" {title} "));
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_lines_name_the_tier_once() {
        let line = |c: &str| verdict_line(&Proposal::new(c, String::new()));
        assert_eq!(line("nvidia-smi -q"), "read-only");
        let reset = line("nvidia-smi -r -i 0");
        assert_eq!(reset.matches("state-changing").count(), 1, "{reset}");
        let rm = line("rm -rf /");
        assert_eq!(rm.matches("blocked").count(), 1, "{rm}");
    }

    #[test]
    fn wide_tables_keep_every_column() {
        assert_eq!(columns_for(118).len(), COLUMNS.len());
        assert_eq!(columns_for(78).len(), COLUMNS.len());
    }

    #[test]
    fn narrow_tables_drop_name_first_and_keep_the_essentials() {
        let titles = |w| columns_for(w).iter().map(|c| c.title).collect::<Vec<_>>();
        let t = titles(60);
        assert!(!t.contains(&col::NAME), "{t:?}");
        let t = titles(30);
        for essential in [col::UTIL, col::MEMORY, col::TEMP, col::THROTTLE] {
            assert!(t.contains(&essential), "{t:?}");
        }
        assert!(!t.contains(&col::POWER));
    }
}
