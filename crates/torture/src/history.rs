//! What the workers did and when: the events the checkers read.
//!
//! Every worker, in this process or another, logs events as JSON Lines:
//!
//! ```json
//! {"worker":"p3.1","kind":"ok","op":"acquire","fence":17,"token":12345,"t":81234567890,"valid_until":81734567890}
//! ```
//!
//! Times are nanoseconds of `CLOCK_MONOTONIC`, which is one clock for every
//! process of the machine, so events of different processes compare. Tokens
//! are logged as a 64-bit hash, never whole: a token is a secret.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Nanoseconds of `CLOCK_MONOTONIC`, the same clock tokio's `Instant` reads
/// on Linux, so a guard's `remaining()` can be added to it.
pub fn now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC
    // always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Where an operation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Sent (or about to be): the time is the send time.
    Invoke,
    /// Completed with a reply.
    Ok,
    /// Completed with a definite failure.
    Fail,
    /// Its outcome is unknown: cancelled (dropped by a timeout) after it may
    /// have been sent, or its process died.
    Unknown,
}

/// What was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Taking the lock. `ok` carries the fence, token hash and validity.
    Acquire,
    /// The holder looked at its guard: `valid_until` is what it claims now
    /// (renewals raise it; zero remaining means it knows it lost the lock).
    Valid,
    /// A fenced read of the counter; `ok` carries `value` and `accepted`.
    Read,
    /// A fenced write of `value`; `ok` carries `accepted`.
    Write,
    /// Letting go with `release().await`.
    Release,
    /// Letting go by dropping the guard (a background release).
    Drop,
    /// A fault the scheduler injected; `value` is its index in the fault
    /// list, `t` its start and `valid_until` its end.
    Fault,
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Who: `t<client>.<task>` for tasks, `p<process>.<task>` for processes,
    /// `faults` for the scheduler.
    pub worker: String,
    /// Invoke, ok, fail or unknown.
    pub kind: Kind,
    /// The operation.
    pub op: Op,
    /// The fence the operation used or got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<u64>,
    /// A hash of the owner token (see [`token_hash`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
    /// Monotonic nanoseconds ([`now`]).
    pub t: u64,
    /// Until when the holder claims the lock (monotonic nanoseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<u64>,
    /// A value read or written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    /// Whether the fenced store accepted the access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<bool>,
    /// The pid of the process the worker runs in (for signalling holders).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Why it failed, briefly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl Event {
    /// An event of `worker` at [`now`], with nothing else filled in.
    pub fn new(worker: &str, kind: Kind, op: Op) -> Event {
        Event {
            worker: worker.to_owned(),
            kind,
            op,
            fence: None,
            token: None,
            t: now(),
            valid_until: None,
            value: None,
            accepted: None,
            pid: None,
            why: None,
        }
    }
}

/// A 64-bit FNV-1a hash of a token: tells holders apart without revealing
/// the secret.
pub fn token_hash(token: &[u8]) -> u64 {
    token.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where events go: the shared, in-memory history of a scenario, or a
/// worker process's stdout (read back by the parent into its history).
#[derive(Clone)]
pub enum Sink {
    /// In this process.
    Memory(Arc<Mutex<Vec<Event>>>),
    /// One JSON line per event on stdout, flushed at once so nothing is lost
    /// when the process is killed right after.
    Stdout,
}

impl Sink {
    /// A new empty in-memory history.
    pub fn memory() -> Sink {
        Sink::Memory(Arc::default())
    }

    /// Records `event`.
    pub fn log(&self, event: Event) {
        match self {
            Sink::Memory(events) => events.lock().unwrap_or_else(|e| e.into_inner()).push(event),
            Sink::Stdout => {
                use std::io::Write;
                let mut event = event;
                event.pid = Some(std::process::id());
                let line = serde_json::to_string(&event).expect("events serialize");
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    }

    /// Everything recorded so far, in the order it was recorded (empty for
    /// stdout).
    pub fn events(&self) -> Vec<Event> {
        match self {
            Sink::Memory(events) => events.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            Sink::Stdout => Vec::new(),
        }
    }
}
