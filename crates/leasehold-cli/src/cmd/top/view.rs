//! What `top` shows and how keys change it: the rows, the rate of new
//! holders, sorting, filtering, scrolling, and the drawing. No terminal and
//! no Redis here: [`App`] is fed statuses and keys, and draws on any
//! ratatui frame (the unit tests draw on a `TestBackend`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use leasehold::{LeaseKind, LeaseStatus};
use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Row as TableRow, Table, Wrap};

use crate::json;
use crate::output;

/// How many refreshes the rate is averaged over.
const RATE_WINDOW: usize = 5;

/// What the ACQ/s column counts, for `--help`, the help screen and the docs.
pub const RATE_MEANING: &str = "ACQ/s: new holders seen per second: tokens that hold the name (as its holder, a permit, a reader or the writer) at a refresh and did not at the one before, over the last 5 refreshes. A lower bound: a holder that came and went between two refreshes is not seen (the fence cannot count them: it jumps with the server's clock).";

/// A column to sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Ttl,
    Fence,
    Waiters,
    Rate,
}

impl SortKey {
    const ALL: [SortKey; 5] = [
        SortKey::Name,
        SortKey::Ttl,
        SortKey::Fence,
        SortKey::Waiters,
        SortKey::Rate,
    ];

    fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Ttl => "ttl",
            SortKey::Fence => "fence",
            SortKey::Waiters => "waiters",
            SortKey::Rate => "rate",
        }
    }

    /// Names and TTLs read best smallest first; the others largest first.
    fn descending_by_default(self) -> bool {
        matches!(self, SortKey::Fence | SortKey::Waiters | SortKey::Rate)
    }

    fn next(self) -> SortKey {
        let i = SortKey::ALL.iter().position(|k| *k == self).unwrap_or(0);
        SortKey::ALL[(i + 1) % SortKey::ALL.len()]
    }
}

/// What a key asks of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Redraw (or nothing changed).
    Continue,
    /// Leave, restoring the terminal.
    Quit,
}

/// One name as the table shows it.
#[derive(Debug, Clone)]
struct Row {
    status: LeaseStatus,
    /// New holders per second; `None` until two refreshes were seen.
    rate: Option<f64>,
}

impl Row {
    /// Waiters: the fair queue's tasks when the name has one, else the
    /// clients listening on its wake channel.
    fn waiters(&self) -> u64 {
        self.status
            .fair_waiters
            .unwrap_or(self.status.waiting_clients)
    }

    /// The TTL left at `now`, counted down from the refresh at `at`.
    fn remaining(&self, at: Instant, now: Instant) -> Option<Duration> {
        self.status
            .remaining
            .map(|r| r.saturating_sub(now.saturating_duration_since(at)))
    }
}

/// New holders per name between refreshes, averaged over the last
/// [`RATE_WINDOW`] refreshes. See [`RATE_MEANING`].
#[derive(Debug, Default)]
struct Rates {
    /// The tokens holding each name at the last refresh.
    holders: HashMap<Vec<u8>, HashSet<String>>,
    /// Per name, (seconds between refreshes, new holders) of the last few.
    window: HashMap<Vec<u8>, VecDeque<(f64, u64)>>,
    last: Option<Instant>,
}

impl Rates {
    /// Takes in one refresh: each name with the tokens holding it, read
    /// at `at`. Returns each name's rate, in order (`None` on the first
    /// refresh).
    fn update(&mut self, names: Vec<(Vec<u8>, HashSet<String>)>, at: Instant) -> Vec<Option<f64>> {
        let elapsed = self
            .last
            .map(|last| at.saturating_duration_since(last).as_secs_f64());
        self.last = Some(at);
        let mut holders = HashMap::with_capacity(names.len());
        let mut window = HashMap::with_capacity(names.len());
        let mut rates = Vec::with_capacity(names.len());
        for (name, now) in names {
            let mut w = self.window.remove(&name).unwrap_or_default();
            let rate = match elapsed {
                Some(dt) if dt > 0.0 => {
                    // A name not seen before had nobody before.
                    let before = self.holders.get(&name);
                    let new = now
                        .iter()
                        .filter(|t| before.is_none_or(|b| !b.contains(*t)))
                        .count() as u64;
                    w.push_back((dt, new));
                    if w.len() > RATE_WINDOW {
                        w.pop_front();
                    }
                    let (secs, n) = w
                        .iter()
                        .fold((0.0, 0), |(secs, n), (dt, new)| (secs + dt, n + new));
                    Some(n as f64 / secs)
                }
                _ => None,
            };
            rates.push(rate);
            holders.insert(name.clone(), now);
            window.insert(name, w);
        }
        self.holders = holders;
        self.window = window;
        rates
    }
}

/// Everything on the screen.
#[derive(Debug)]
pub struct App {
    /// Where Redis is, without a password.
    source: String,
    pattern: String,
    interval: Duration,
    rows: Vec<Row>,
    /// When the rows were read.
    fetched: Option<Instant>,
    /// The last refresh's failure, while the rows are older.
    error: Option<(String, Instant)>,
    rates: Rates,
    sort: SortKey,
    descending: bool,
    /// A substring of the names to show (case-insensitive); empty: all.
    filter: String,
    /// Whether keys go to the filter (after `/`, until Enter or Esc).
    editing: bool,
    /// The first row shown.
    scroll: usize,
    /// Rows of the table at the last draw, for paging.
    page: usize,
    help: bool,
}

impl App {
    /// An empty view of `pattern` on `source`, refreshed every `interval`.
    pub fn new(source: String, pattern: String, interval: Duration) -> App {
        App {
            source,
            pattern,
            interval,
            rows: Vec::new(),
            fetched: None,
            error: None,
            rates: Rates::default(),
            sort: SortKey::Name,
            descending: false,
            filter: String::new(),
            editing: false,
            scroll: 0,
            page: 10,
            help: false,
        }
    }

    /// Takes in a refresh read at `at`: new rows, or a failure shown in the
    /// footer while the last rows stay.
    pub fn refreshed(&mut self, read: leasehold::Result<Vec<LeaseStatus>>, at: Instant) {
        match read {
            Ok(statuses) => {
                let names = statuses
                    .iter()
                    .map(|s| {
                        let tokens = s.holders().into_iter().map(|(_, h)| h.token).collect();
                        (s.name.clone(), tokens)
                    })
                    .collect();
                let rates = self.rates.update(names, at);
                self.rows = statuses
                    .into_iter()
                    .zip(rates)
                    .map(|(status, rate)| Row { status, rate })
                    .collect();
                self.fetched = Some(at);
                self.error = None;
            }
            Err(e) => self.error = Some((e.to_string(), at)),
        }
    }

    /// The rows to show at `now`: filtered, then sorted.
    fn shown(&self, now: Instant) -> Vec<&Row> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| needle.is_empty() || r.status.display.to_lowercase().contains(&needle))
            .collect();
        let at = self.fetched.unwrap_or(now);
        rows.sort_by(|a, b| {
            let by = match self.sort {
                SortKey::Name => a.status.name.cmp(&b.status.name),
                // Free names (no TTL) after the held ones, whichever way.
                SortKey::Ttl => {
                    let (x, y) = (a.remaining(at, now), b.remaining(at, now));
                    match (x, y) {
                        (Some(x), Some(y)) => x.cmp(&y),
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (None, None) => std::cmp::Ordering::Equal,
                    }
                }
                SortKey::Fence => a.status.fence.cmp(&b.status.fence),
                SortKey::Waiters => a.waiters().cmp(&b.waiters()),
                SortKey::Rate => a.rate.unwrap_or(0.0).total_cmp(&b.rate.unwrap_or(0.0)),
            };
            let by = if self.descending { by.reverse() } else { by };
            by.then_with(|| a.status.name.cmp(&b.status.name))
        });
        rows
    }

    fn sort_by(&mut self, key: SortKey) {
        if self.sort == key {
            self.descending = !self.descending;
        } else {
            self.sort = key;
            self.descending = key.descending_by_default();
        }
        self.scroll = 0;
    }

    /// Applies one key.
    pub fn key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Continue;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('d')) {
            return Action::Quit;
        }
        if self.editing {
            match key.code {
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.editing = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char('u') if ctrl => self.filter.clear(),
                KeyCode::Char(c) if !ctrl => self.filter.push(c),
                _ => {}
            }
            self.scroll = 0;
            return Action::Continue;
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            return match key.code {
                KeyCode::Char('q') => Action::Quit,
                _ => Action::Continue,
            };
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('?') | KeyCode::Char('h') | KeyCode::F(1) => self.help = true,
            KeyCode::Char('/') => {
                self.editing = true;
                self.filter.clear();
            }
            KeyCode::Char('s') => self.sort_by(self.sort.next()),
            KeyCode::Char('n') => self.sort_by(SortKey::Name),
            KeyCode::Char('t') => self.sort_by(SortKey::Ttl),
            KeyCode::Char('f') => self.sort_by(SortKey::Fence),
            KeyCode::Char('w') => self.sort_by(SortKey::Waiters),
            KeyCode::Char('r') => self.sort_by(SortKey::Rate),
            KeyCode::Up | KeyCode::Char('k') => self.scroll = self.scroll.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll += 1,
            KeyCode::PageUp => self.scroll = self.scroll.saturating_sub(self.page),
            KeyCode::PageDown => self.scroll += self.page,
            KeyCode::Home | KeyCode::Char('g') => self.scroll = 0,
            KeyCode::End | KeyCode::Char('G') => self.scroll = usize::MAX,
            _ => {}
        }
        Action::Continue
    }

    /// Draws the whole screen as it is at `now` (TTLs counted down).
    pub fn draw(&mut self, frame: &mut Frame<'_>, now: Instant) {
        let [title, table, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(2),
        ])
        .areas(frame.area());
        let total = self.rows.len();
        let at = self.fetched.unwrap_or(now);
        // Scroll within the rows shown, one screen's worth at most.
        self.page = usize::from(table.height.saturating_sub(1)).max(1);
        let shown_len = self.shown(now).len();
        self.scroll = self.scroll.min(shown_len.saturating_sub(self.page));
        let shown = self.shown(now);

        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::from(" leasehold top ").bold().reversed(),
                Span::from(format!(" {}  ", self.source)),
                Span::from(format!("pattern `{}`", self.pattern)).dim(),
            ])),
            title,
        );

        let arrow = if self.descending { "▼" } else { "▲" };
        let head = |label: &'static str, key: SortKey| {
            if self.sort == key {
                format!("{label}{arrow}")
            } else {
                label.to_string()
            }
        };
        let header = TableRow::new(vec![
            head("NAME", SortKey::Name),
            "KIND".into(),
            "HOLDER".into(),
            head("TTL", SortKey::Ttl),
            head("FENCE", SortKey::Fence),
            head("WAITERS", SortKey::Waiters),
            head("ACQ/s", SortKey::Rate),
        ])
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
        let body: Vec<TableRow<'_>> = shown
            .iter()
            .skip(self.scroll)
            .take(self.page)
            .map(|r| {
                let s = &r.status;
                let held = s.is_held();
                let ttl = match r.remaining(at, now) {
                    None if held => "none".to_string(),
                    None => "-".to_string(),
                    Some(d) => output::human(Some(d)),
                };
                let row = TableRow::new(vec![
                    s.display.clone(),
                    json::kind(s).to_string(),
                    holder_cell(s),
                    ttl,
                    s.fence.to_string(),
                    r.waiters().to_string(),
                    r.rate.map_or("-".to_string(), |x| format!("{x:.1}")),
                ]);
                if held { row } else { row.dim() }
            })
            .collect();
        let widths = [
            Constraint::Fill(1),
            Constraint::Length(9),
            Constraint::Length(15),
            Constraint::Length(8),
            Constraint::Length(17),
            Constraint::Length(8),
            Constraint::Length(7),
        ];
        frame.render_widget(Table::new(body, widths).header(header), table);

        let [status, keys] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(footer);
        let mut line = vec![Span::from(format!(
            "{} names{} · sorted by {} {} · ",
            total,
            if self.filter.is_empty() {
                String::new()
            } else {
                format!(" ({} match `{}`)", shown.len(), self.filter)
            },
            self.sort.label(),
            arrow,
        ))];
        match (&self.error, self.fetched) {
            (Some((e, when)), _) => line.push(
                Span::from(format!(
                    "refresh failed {} ago: {e}",
                    output::human(Some(now.saturating_duration_since(*when)))
                ))
                .red(),
            ),
            (None, Some(at)) => line.push(Span::from(format!(
                "refreshed {} ago (every {})",
                output::human(Some(now.saturating_duration_since(at))),
                output::human(Some(self.interval)),
            ))),
            (None, None) => line.push(Span::from("reading…")),
        }
        frame.render_widget(Paragraph::new(Line::from(line)).reversed(), status);
        let keys_line = if self.editing {
            Line::from(vec![
                Span::from(" filter: ").bold(),
                Span::from(format!("{}▏", self.filter)),
                Span::from("   Enter keeps it · Esc clears it").dim(),
            ])
        } else {
            Line::from(
                " q quit · ↑↓ scroll · / filter · s sort · n t f w r sort by name, ttl, fence, waiters, rate · ? help",
            )
            .dim()
        };
        frame.render_widget(Paragraph::new(keys_line), keys);

        if self.help {
            self.draw_help(frame);
        }
    }

    fn draw_help(&self, frame: &mut Frame<'_>) {
        let area = frame.area();
        let width = area.width.saturating_sub(4).min(86);
        let height = area.height.saturating_sub(2).min(24);
        let popup = Rect {
            x: area.x + (area.width - width) / 2,
            y: area.y + (area.height - height) / 2,
            width,
            height,
        };
        let text = vec![
            Line::from("Keys").bold(),
            Line::from("  q, Esc, Ctrl-C   quit"),
            Line::from("  ↑ ↓ PgUp PgDn    scroll (Home, End: first, last)"),
            Line::from(
                "  /                filter: type a part of the name; Enter keeps it, Esc clears it",
            ),
            Line::from("  s                sort by the next column"),
            Line::from(
                "  n t f w r        sort by name, TTL, fence, waiters, rate; again: reverse",
            ),
            Line::from("  ?                this help (any key closes it)"),
            Line::from(""),
            Line::from("Columns").bold(),
            Line::from("  KIND     lease, fair (fair waiters queued), semaphore, rwlock"),
            Line::from(
                "  HOLDER   a token's first 8 digits; a semaphore's permits taken/limit; w or r×N",
            ),
            Line::from("  TTL      time left, counted down between refreshes; - when free"),
            Line::from(
                "  FENCE    the fence of the latest acquisition (floored at the server's clock)",
            ),
            Line::from("  WAITERS  fair tasks queued, else clients waiting on the wake channel"),
            Line::from(format!("  {RATE_MEANING}")),
            Line::from(""),
            Line::from(format!(
                "Every {}: one SCAN walk for `{}`, then 12 read-only commands per name, pipelined.",
                output::human(Some(self.interval)),
                self.pattern
            ))
            .dim(),
        ];
        frame.render_widget(Clear, popup);
        frame.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" leasehold top: help ")),
            popup,
        );
    }
}

/// The HOLDER column: a token prefix for a lease, `2/3 permits` for a
/// semaphore, `w a1b2c3d4…` or `r×2` for a read-write lock.
fn holder_cell(s: &LeaseStatus) -> String {
    match &s.kind {
        LeaseKind::Semaphore { limit, permits, .. } => {
            format!("{}/{limit} permits", permits.len())
        }
        LeaseKind::RwLock {
            writer: Some(w), ..
        } => format!("w {}…", w.token),
        LeaseKind::RwLock { readers, .. } if !readers.is_empty() => {
            format!("r×{}", readers.len())
        }
        _ => s
            .holder
            .as_deref()
            .map_or("-".to_string(), |h| format!("{h}…")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::{Duration, Instant};

    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::{Action, App, Rates, SortKey};

    fn holders(pairs: &[(&str, &[&str])]) -> Vec<(Vec<u8>, HashSet<String>)> {
        pairs
            .iter()
            .map(|(n, t)| {
                (
                    n.as_bytes().to_vec(),
                    t.iter().map(|t| t.to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn the_rate_counts_new_holders_over_the_last_refreshes() {
        let mut rates = Rates::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(rates.update(holders(&[("a", &["x"])]), t0), [None]);
        // Same holder: nothing new. A new name's holder is new.
        assert_eq!(
            rates.update(holders(&[("a", &["x"]), ("b", &["p", "q"])]), t0 + s),
            [Some(0.0), Some(2.0)]
        );
        // a: x gone, y came (1 in 2 s); b: q stays, r came (3 in 2 s).
        assert_eq!(
            rates.update(holders(&[("a", &["y"]), ("b", &["q", "r"])]), t0 + 2 * s),
            [Some(0.5), Some(1.5)]
        );
        // Free: no new holder; the window keeps 5 refreshes.
        for i in 3..10 {
            rates.update(holders(&[("a", &[])]), t0 + i * s);
        }
        assert_eq!(
            rates.update(holders(&[("a", &["z"])]), t0 + 10 * s),
            [Some(0.2)]
        );
    }

    fn key(app: &mut App, code: KeyCode) -> Action {
        app.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn keys_sort_filter_and_quit() {
        let mut app = App::new("redis://x".into(), "*".into(), Duration::from_secs(2));
        assert_eq!(key(&mut app, KeyCode::Char('f')), Action::Continue);
        assert_eq!((app.sort, app.descending), (SortKey::Fence, true));
        key(&mut app, KeyCode::Char('f'));
        assert_eq!((app.sort, app.descending), (SortKey::Fence, false));
        key(&mut app, KeyCode::Char('s'));
        assert_eq!((app.sort, app.descending), (SortKey::Waiters, true));
        key(&mut app, KeyCode::Char('t'));
        assert_eq!((app.sort, app.descending), (SortKey::Ttl, false));

        // While filtering, q is text and Esc clears the filter.
        key(&mut app, KeyCode::Char('/'));
        assert_eq!(key(&mut app, KeyCode::Char('q')), Action::Continue);
        key(&mut app, KeyCode::Char('x'));
        key(&mut app, KeyCode::Backspace);
        assert_eq!(app.filter, "q");
        key(&mut app, KeyCode::Enter);
        assert!(!app.editing);
        assert_eq!(app.filter, "q");
        key(&mut app, KeyCode::Char('/'));
        key(&mut app, KeyCode::Esc);
        assert_eq!((app.editing, app.filter.as_str()), (false, ""));

        // The help takes one key; q, Esc and Ctrl-C quit.
        key(&mut app, KeyCode::Char('?'));
        assert!(app.help);
        assert_eq!(key(&mut app, KeyCode::Esc), Action::Continue);
        assert!(!app.help);
        assert_eq!(key(&mut app, KeyCode::Char('q')), Action::Quit);
        assert_eq!(key(&mut app, KeyCode::Esc), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.key(ctrl_c), Action::Quit);
    }
}
