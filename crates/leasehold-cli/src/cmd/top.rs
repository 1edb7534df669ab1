//! `top [PATTERN]`: the names in use, live, in the terminal.
//!
//! Three things run at once: a task that reads the names matching PATTERN
//! every `--interval` ([`Client::list`]: one SCAN walk, then the statuses
//! pipelined, 64 names per round trip), a thread that reads the keys
//! (crossterm's reads block), and the loop here that takes both in and
//! redraws, four times a second so that TTLs count down between refreshes.
//! What is shown, and how keys change it, is [`view::App`].
//!
//! The terminal is put back (raw mode off, the main screen back, the cursor
//! shown) however `top` ends: a key, an error, a signal (the future is
//! dropped, and [`Screen`] with it) or a panic (ratatui's panic hook).

mod view;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use leasehold::{Client, LeaseStatus};
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event};
use tokio::sync::mpsc;

use super::Address;
use crate::cli::{Cli, TopArgs};
use crate::exit::Exit;
use crate::json::{self, Record};
use crate::output;

/// How often the screen is drawn again without news (the TTLs count down).
const TICK: Duration = Duration::from_millis(250);

/// `top [PATTERN]`.
pub async fn run(
    cli: &Cli,
    client: &Client,
    address: &Address,
    args: &TopArgs,
) -> leasehold::Result<ExitCode> {
    if cli.json {
        return snapshot(client, args).await;
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        output::error(
            "top draws in a terminal, and stdin or stdout is not one: run it in a terminal, or add --json for one snapshot as JSON Lines",
        );
        return Ok(Exit::Usage.into());
    }
    // A first read before the screen changes: a wrong address or password
    // is told on one line, as by every other command.
    let first = client.list(&args.pattern).await?;
    let app = view::App::new(source(address), args.pattern.clone(), args.interval);
    match live(client, args, app, first).await {
        Ok(()) => Ok(Exit::Success.into()),
        Err(e) => {
            output::error(&format!("the terminal failed: {e}"));
            Ok(Exit::Failure.into())
        }
    }
}

/// Where Redis is, for the title line, without passwords.
fn source(address: &Address) -> String {
    match address {
        Address::Unset => super::DEFAULT_URL.to_string(),
        Address::Server(url) => super::redact(url),
        Address::Cluster(seeds) => format!(
            "cluster {}",
            seeds
                .iter()
                .map(|u| super::redact(u))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Address::Redlock(masters) => format!("Redlock over {} masters", masters.len()),
        Address::PrivateCluster => "private cluster".to_string(),
    }
}

/// The terminal in raw mode on the alternate screen, put back on drop.
struct Screen {
    terminal: Option<DefaultTerminal>,
}

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        // Built before the terminal changes, so that a failure half-way is
        // put back too. try_init also installs a panic hook that puts the
        // terminal back before the panic is printed.
        let mut screen = Screen { terminal: None };
        screen.terminal = Some(ratatui::try_init()?);
        Ok(screen)
    }

    fn terminal(&mut self) -> &mut DefaultTerminal {
        self.terminal.as_mut().expect("entered")
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if let Some(mut t) = self.terminal.take() {
            let _ = t.show_cursor();
        }
        ratatui::restore();
    }
}

/// Reads keys on a thread of its own (crossterm's reads block) until told
/// to stop or the receiver is gone.
struct Keys {
    rx: mpsc::UnboundedReceiver<std::io::Result<Event>>,
    stop: Arc<AtomicBool>,
}

impl Keys {
    fn start() -> Keys {
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Acquire) {
                // Polled, so that the thread sees `stop` within 100 ms
                // and no key is read once the terminal is given back.
                let next = match event::poll(Duration::from_millis(100)) {
                    Ok(false) => continue,
                    Ok(true) => event::read(),
                    Err(e) => Err(e),
                };
                let failed = next.is_err();
                if tx.send(next).is_err() || failed {
                    break;
                }
            }
        });
        Keys { rx, stop }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The live view, until a key quits it.
async fn live(
    client: &Client,
    args: &TopArgs,
    mut app: view::App,
    first: Vec<LeaseStatus>,
) -> std::io::Result<()> {
    app.refreshed(Ok(first), Instant::now());
    // The reader: one read per interval, never two at once; a read slower
    // than the interval delays the next instead of piling up.
    let (tx, mut reads) = mpsc::channel(1);
    let reader = {
        let client = client.clone();
        let pattern = args.pattern.clone();
        let interval = args.interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first read was done before
            loop {
                ticks.tick().await;
                let read = client.list(&pattern).await;
                if tx.send((read, Instant::now())).await.is_err() {
                    break;
                }
            }
        })
    };
    let _reader = AbortOnDrop(reader);
    let mut screen = Screen::enter()?;
    let mut keys = Keys::start();
    let mut redraw = tokio::time::interval(TICK);
    redraw.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        screen
            .terminal()
            .draw(|frame| app.draw(frame, Instant::now()))?;
        tokio::select! {
            _ = redraw.tick() => {}
            Some((read, at)) = reads.recv() => app.refreshed(read, at),
            key = keys.rx.recv() => match key {
                Some(Ok(Event::Key(key))) => {
                    if app.key(key) == view::Action::Quit {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {} // a resize: the next draw fits
                Some(Err(e)) => return Err(e),
                None => return Err(std::io::Error::other("the key reader stopped")),
            },
        }
    }
}

/// Aborts a task when dropped: the reader stops with the view.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `top --json`: two reads one `--interval` apart, then one `top` record
/// per name of the second, with the rate between them.
async fn snapshot(client: &Client, args: &TopArgs) -> leasehold::Result<ExitCode> {
    let first = client.list(&args.pattern).await?;
    let t0 = Instant::now();
    tokio::time::sleep(args.interval).await;
    let second = client.list(&args.pattern).await?;
    let secs = t0.elapsed().as_secs_f64();
    let before: std::collections::HashMap<&[u8], Vec<String>> = first
        .iter()
        .map(|s| {
            let tokens = s.holders().into_iter().map(|(_, h)| h.token).collect();
            (s.name.as_slice(), tokens)
        })
        .collect();
    for s in &second {
        let new = s
            .holders()
            .into_iter()
            .filter(|(_, h)| {
                before
                    .get(s.name.as_slice())
                    .is_none_or(|b| !b.contains(&h.token))
            })
            .count();
        Record::Top(json::Top {
            lease: json::Lease::new(s),
            new_holders: new as u64,
            over_ms: (secs * 1000.0) as u64,
            acquisitions_per_s: new as f64 / secs,
        })
        .print();
    }
    Ok(Exit::Success.into())
}
