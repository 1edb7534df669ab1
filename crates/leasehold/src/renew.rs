//! Self-renewal: one timer per [`Client`](crate::Client) for all its guards.
//!
//! A guard that renews itself is entered in its client's schedule, ordered by
//! when it is next due (every `ttl/3`). One task per client sleeps until the
//! earliest entry is due and then runs the renewals that are due, each in a
//! task of its own, which enters the guard again for its next period. Taking
//! and giving back a lease thus costs an entry in a map, not a task and a
//! timer of its own: the cost that dominated short leases.
//!
//! Why `ttl/3`: a renewal that fails (a timeout, a broken connection) is
//! retried several times before the validity runs out, and even two missed
//! periods leave a third of the ttl.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::guard::Holding;

/// While guards are entered, the task wakes at least this often, so that
/// entering one that is due later than that never has to wake it.
const TICK: Duration = Duration::from_secs(1);

/// With nothing entered for this many ticks, the task sleeps until told.
const IDLE_TICKS: u32 = 10;

/// When an entry is due, and a sequence number that makes it unique.
pub(crate) type Entry = (Instant, u64);

/// The per-client renewal schedule and its task.
pub(crate) struct Renewer {
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
    due: BTreeMap<Entry, Weak<Holding>>,
    /// When the task wakes by itself; `None` while it waits to be told.
    wakes_at: Option<Instant>,
}

impl Renewer {
    pub(crate) fn new(runtime: tokio::runtime::Handle) -> Renewer {
        Renewer {
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

    /// Enters `holding` to be renewed at `at` (unless it stops first).
    pub(crate) fn schedule(&self, holding: &Arc<Holding>, at: Instant) {
        let shared = &self.shared;
        shared.started.call_once(|| {
            shared.runtime.spawn(run(Arc::clone(shared)));
        });
        let entry = (at, shared.seq.fetch_add(1, Ordering::Relaxed));
        let tell = {
            let mut state = shared.lock();
            if holding.stop.is_cancelled() {
                return; // released while its renewal was under way
            }
            state.due.insert(entry, Arc::downgrade(holding));
            *holding.lock_entry() = Some(entry);
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

    /// Takes `holding` out of the schedule: it was released or detached.
    pub(crate) fn unschedule(&self, holding: &Holding) {
        let mut state = self.shared.lock();
        if let Some(entry) = holding.lock_entry().take() {
            state.due.remove(&entry);
        }
    }
}

impl Drop for Renewer {
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

/// The client's renewal task: sleeps until the earliest entry is due, then
/// starts the renewals that are due.
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
                if let Some(holding) = first.remove().upgrade() {
                    *holding.lock_entry() = None;
                    ready.push(holding);
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
        for holding in ready {
            shared.runtime.spawn(renew_once(holding));
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

/// A renewal waits at least this long for its reply before it is sent
/// again on a connection of its own (see [`renew`]).
const MIN_PATIENCE: Duration = Duration::from_millis(50);

/// One renewal of `holding`, which enters it again for the next one.
///
/// A failure that may pass ([`Error::is_retryable`](crate::Error::is_retryable):
/// a broken connection, a reply that did not come, Redis loading or busy)
/// is retried while the lease is still valid; any other refusal (the key
/// gone or taken, a read-only replica, Redis out of memory) ends the guard
/// at once: it can no longer be proved held, and the sooner its holder
/// stops the better.
async fn renew_once(holding: Arc<Holding>) {
    if holding.stop.is_cancelled() || holding.lost.is_cancelled() {
        return;
    }
    let period = holding.ttl / 3;
    // After a failure, try again sooner, but not in a tight loop.
    let retry = (period / 4).max(Duration::from_millis(5));
    let left = holding
        .valid_until()
        .saturating_duration_since(Instant::now());
    let result = tokio::select! {
        _ = holding.stop.cancelled() => return,
        r = tokio::time::timeout(left, renew(&holding)) => r,
    };
    match result {
        Ok(Ok(())) => holding.schedule_renewal(Instant::now() + period),
        Ok(Err(e)) if e.is_lost() => {}
        Ok(Err(e)) if e.is_retryable() => {
            let now = Instant::now();
            let valid_until = holding.valid_until();
            if now >= valid_until {
                holding.mark_lost(&format!(
                    "renewal kept failing until the lease's validity ran out ({e})"
                ));
                return;
            }
            tracing::debug!(lease = holding.keys.display(), error = %e, "leasehold: renewal failed; retrying");
            holding.schedule_renewal((now + retry).min(valid_until));
        }
        Ok(Err(e)) => holding.mark_lost(&format!("Redis refused the renewal ({e})")),
        Err(_) => holding.mark_lost("no renewal was answered before the lease's validity ran out"),
    }
}

/// Runs the extend script, and sends it again on a connection of its own if
/// no reply came within the lesser of the response timeout and `ttl/6`
/// (at least [`MIN_PATIENCE`]); the first to succeed wins.
///
/// Why: the client's shared connection answers in order, so one stuck reply
/// (a dead connection that has not failed yet, a congested one) holds back
/// every later command on it, retries included, and the response timeout
/// (5 s by default) can be longer than the whole ttl. The first call is not
/// abandoned: if it answers after all, that is as good. Extending is
/// idempotent, so two calls that both land do no harm.
async fn renew(holding: &Holding) -> crate::Result<()> {
    let patience = holding
        .client
        .inner
        .response_timeout
        .min((holding.ttl / 6).max(MIN_PATIENCE));
    let first = holding.extend();
    tokio::pin!(first);
    if let Ok(r) = tokio::time::timeout(patience, &mut first).await {
        return r;
    }
    tracing::debug!(
        lease = holding.keys.display(),
        "leasehold: no reply to the renewal within {patience:?}; sending it again on a connection of its own"
    );
    let second = holding.extend_alone(patience);
    tokio::pin!(second);
    // The first success, or the last error once both failed.
    tokio::select! {
        r = &mut first => match r {
            Err(e) if !e.is_lost() => second.await,
            r => r,
        },
        r = &mut second => match r {
            Err(e) if !e.is_lost() => first.await,
            r => r,
        },
    }
}
