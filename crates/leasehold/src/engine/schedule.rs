//! One timer per client for all its self-renewing guards.
//!
//! A guard that renews itself is entered here, ordered by when it is next
//! due. One task per client sleeps until the earliest entry is due and then
//! fires the entries that are due, each in a task of its own (which enters
//! its guard again for the next period). Taking and giving back a lease
//! thus costs an entry in a map, not a task and a timer of its own: the
//! cost that dominated short leases.
//!
//! The schedule knows nothing of leases: what it fires is a [`Due`], which
//! the guard's holding implements (`hold::renew`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// While entries are in, the task wakes at least this often, so that
/// entering one that is due later than that never has to wake it.
const TICK: Duration = Duration::from_secs(1);

/// With nothing entered for this many ticks, the task sleeps until told.
const IDLE_TICKS: u32 = 10;

/// When an entry is due, and a sequence number that makes it unique.
pub(crate) type Entry = (Instant, u64);

/// Something to run when it is due.
pub(crate) trait Due: Send + Sync + 'static {
    /// Its place in the schedule while it has one (kept by the schedule).
    fn entry(&self) -> MutexGuard<'_, Option<Entry>>;
    /// True once it must not be entered again.
    fn stopped(&self) -> bool;
    /// The work, run in a task of its own when it is due (at `due`: it may
    /// run a little later).
    fn fire(self: Arc<Self>, due: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The per-client schedule and its task.
pub(crate) struct Schedule {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the task: an entry is due before it would wake by itself.
    wake: Notify,
    seq: AtomicU64,
    started: std::sync::Once,
    runtime: tokio::runtime::Handle,
    shutdown: CancellationToken,
}

#[derive(Default)]
struct State {
    due: BTreeMap<Entry, Weak<dyn Due>>,
    /// When the task wakes by itself; `None` while it waits to be told.
    wakes_at: Option<Instant>,
}

impl Schedule {
    pub(crate) fn new(runtime: tokio::runtime::Handle) -> Schedule {
        Schedule {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                seq: AtomicU64::new(0),
                started: std::sync::Once::new(),
                runtime,
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// Enters `due` to fire at `at` (unless it stops first).
    pub(crate) fn enter(&self, due: Arc<dyn Due>, at: Instant) {
        let shared = &self.shared;
        shared.started.call_once(|| {
            shared.runtime.spawn(run(Arc::clone(shared)));
        });
        let entry = (at, shared.seq.fetch_add(1, Ordering::Relaxed));
        let tell = {
            let mut state = shared.lock();
            if due.stopped() {
                return; // stopped while its work was under way
            }
            state.due.insert(entry, Arc::downgrade(&due));
            *due.entry() = Some(entry);
            let tell = state.wakes_at.is_none_or(|w| at < w);
            if tell {
                state.wakes_at = Some(at);
            }
            tell
        };
        if tell {
            shared.wake.notify_one();
        }
    }

    /// Takes `due` out of the schedule.
    pub(crate) fn remove(&self, due: &dyn Due) {
        let mut state = self.shared.lock();
        if let Some(entry) = due.entry().take() {
            state.due.remove(&entry);
        }
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Short, non-panicking sections: a poisoned lock still holds
        // consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The client's schedule task: sleeps until the earliest entry is due, then
/// fires the entries that are due.
async fn run(shared: Arc<Shared>) {
    let mut idle = 0;
    loop {
        let (ready, wakes_at) = {
            let mut state = shared.lock();
            let now = Instant::now();
            let mut ready = Vec::new();
            while let Some(first) = state.due.first_entry() {
                if first.key().0 > now {
                    break;
                }
                let at = first.key().0;
                if let Some(due) = first.remove().upgrade() {
                    *due.entry() = None;
                    ready.push((due, at));
                }
            }
            let wakes_at = match state.due.first_key_value() {
                Some((entry, _)) => {
                    idle = 0;
                    Some(entry.0.min(now + TICK))
                }
                None if idle < IDLE_TICKS => {
                    idle += 1;
                    Some(now + TICK)
                }
                None => None,
            };
            state.wakes_at = wakes_at;
            (ready, wakes_at)
        };
        for (due, at) in ready {
            shared.runtime.spawn(due.fire(at));
        }
        let sleep = async {
            match wakes_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = shared.wake.notified() => {}
            _ = sleep => {}
        }
    }
}
