//! SIGINT, SIGTERM and SIGHUP, watched from the start.
//!
//! Once watched, these signals no longer kill leasehold by default: each
//! command decides. Every command but `run` drops what it was doing (an
//! `acquire` in flight is undone by the library, a private demo server is
//! stopped) and exits with 128 + N. `run` does the same until its command
//! has started, then passes each signal on to the command.

use std::future::Future;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The three signals that ask leasehold to stop.
pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Starts watching. Fails only if the signal handlers cannot be
    /// installed.
    pub fn watch() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal received: `libc::SIGINT`, `SIGTERM` or `SIGHUP`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a signal that arrives while nobody waits is kept for
    /// the next call.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
        }
    }

    /// Runs `work` unless a signal comes first: then `work` is dropped and
    /// the signal returned as the error.
    pub async fn unless<T>(&mut self, work: impl Future<Output = T>) -> Result<T, i32> {
        tokio::select! {
            out = work => Ok(out),
            sig = self.recv() => Err(sig),
        }
    }
}
