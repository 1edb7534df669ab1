//! Printing: lines on stdout, messages on stderr.
//!
//! With `--json`, stdout carries only JSON Lines, the records of
//! [`crate::json`] (`run` is the exception only in that its command's own
//! output passes through untouched). Messages for people go to stderr, one
//! line each, starting with `leasehold: `.
//!
//! A closed stdout (`leasehold list | head -1`) is not an error: the reader
//! has all it wanted. [`line`] notes it, [`closed`] completes, and `main`
//! ends the command with exit code 0, running destructors on the way (a
//! private demo server is stopped, not orphaned).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Set once a write to stdout met a broken pipe.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// Wakes [`closed`] when [`CLOSED`] is set; `notify_one` keeps a permit, so
/// a waiter that comes late still wakes.
static CLOSED_NOTIFY: Notify = Notify::const_new();

/// Prints one line on stdout. After a broken pipe it prints nothing more
/// and [`closed`] completes.
pub fn line(text: &str) {
    if CLOSED.load(Ordering::Acquire) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        CLOSED.store(true, Ordering::Release);
        CLOSED_NOTIFY.notify_one();
    }
}

/// Completes once stdout's reader has gone away.
///
/// # Cancel safety
///
/// Cancel safe: it only waits.
pub async fn closed() {
    while !CLOSED.load(Ordering::Acquire) {
        CLOSED_NOTIFY.notified().await;
    }
}

/// Prints `leasehold: message` on stderr. Never fails: with stderr closed
/// there is nobody to tell.
pub fn error(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "leasehold: {message}");
}

/// A duration for people: `4.2s`, `350ms`, `2m5s`, or `-`.
pub fn human(d: Option<std::time::Duration>) -> String {
    let Some(d) = d else {
        return "-".into();
    };
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1_000)
    } else {
        format!("{}h{}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}
