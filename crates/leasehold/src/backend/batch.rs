//! Acquires and releases of plain leases, gathered into one script call
//! when many tasks of one client make them at once.
//!
//! An operation sent on its own costs Redis a request to read, parse and
//! answer and a Lua call to set up, and it costs the client a request of
//! its own (a message to the connection's task, a reply channel, a
//! wake-up). With 64 tasks cycling on names of their own (BENCH.md's W2),
//! that was 15.9 µs of client CPU and 13.8 µs of Redis CPU per cycle;
//! batched, about 20 operations a call, 7.0 µs and 9–10 µs. So:
//!
//! - while fewer than [`ALONE_BELOW`] operations are in flight, an
//!   operation goes out at once, alone: a lone task never waits for others;
//! - past that, operations queue, and a flusher sends all that is queued
//!   as one call of `batch.lua`, which runs them in order, each exactly as
//!   `acquire.lua` or `release.lua` would. At most [`MAX_BATCHES`] calls
//!   are in flight (on a cluster, one per master: see `cluster`); what
//!   arrives meanwhile waits for the next one, so the batches grow with
//!   the load.
//!
//! An operation that raised an error inside the batch (a key of another
//! type, say) is run again alone, so that its caller gets the same error
//! as without batching.
//!
//! A batch spans many names, so it needs them on one server: it fits
//! [`Backend::Single`](super::Backend::Single), not a Cluster.
//!
//! # Cancellation
//!
//! A caller that gives up leaves its operation in the queue. If the
//! batch's reply says an abandoned acquire took the lease, the flusher
//! hands it to the client's release at once (the caller's own background
//! release may have run before the batch did, and found nothing to
//! release).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use redis::RedisResult;
use tokio::sync::oneshot;

use super::background::Background;
use super::cluster::SlotMap;
use crate::keys::LeaseKeys;
use crate::scripts::{self, BatchOp};
use crate::token::Token;

/// Operations in flight below which one more is sent on its own. Below
/// this, the client and Redis have CPU to spare and a request of its own
/// answers soonest; W2's cycle on 2 cores: with 8 or 16 tasks, batching
/// past 4 in flight cost 15–25 % of the cycles, past 16 nothing; with 64
/// tasks, both gave 85–105k cycles/s against 50–65k alone.
const ALONE_BELOW: usize = 16;
/// Batch calls in flight at once (one per flusher).
const MAX_BATCHES: usize = 3;
/// Operations in one batch call at most.
const MAX_OPS: usize = 256;

/// What to do with a lease that an abandoned acquire took in a batch:
/// release it by its token (the client's release, which may hand it over).
pub(crate) type Abandoned = Box<dyn Fn(Arc<LeaseKeys>, Token) + Send + Sync>;

/// The queue of one server's plain leases.
pub(crate) struct Batcher {
    /// Operations started and not yet answered, alone or queued.
    in_flight: Arc<AtomicUsize>,
    shared: Arc<Shared>,
    /// Flushers (batch calls in flight) at most.
    max_batches: usize,
}

impl Default for Batcher {
    fn default() -> Batcher {
        Batcher::new(MAX_BATCHES)
    }
}

/// What the flushers share with the callers.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Shared with the batchers made by [`Batcher::sibling`].
    abandoned: Arc<OnceLock<Abandoned>>,
    /// Counts the flushers, whose batches may release abandoned grants
    /// (shared with the siblings, and the client's).
    background: Background,
}

#[derive(Default)]
struct Queue {
    ops: Vec<Queued>,
    /// Flushers running; each has at most one batch call in flight.
    flushers: usize,
}

struct Queued {
    op: BatchOp,
    keys: Arc<LeaseKeys>,
    token: Token,
    reply: oneshot::Sender<RedisResult<Answer>>,
}

/// The batch's answer to one operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The two integers of its reply (see `batch.lua`).
    Done(i64, i64),
    /// It raised an error: run it alone to see which.
    Alone,
}

/// Where an operation went.
pub(crate) enum Route<'a> {
    /// Run in a batch: the two integers of its reply.
    Batched(i64, i64),
    /// To be sent alone (counted in flight while this lives, if a plain
    /// lease's).
    Alone(Option<Counted<'a>>),
}

/// Counts one operation as in flight until dropped.
pub(crate) struct Counted<'a>(Arc<AtomicUsize>, std::marker::PhantomData<&'a ()>);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Batcher {
    /// A batcher with at most `max_batches` flushers (at least one).
    fn new(max_batches: usize) -> Batcher {
        Batcher {
            in_flight: Arc::default(),
            shared: Arc::default(),
            max_batches: max_batches.max(1),
        }
    }

    /// A batcher with a queue of its own and at most `max_batches`
    /// flushers, that shares this one's count of operations in flight
    /// (whether an operation goes alone depends on the client's whole
    /// load) and its release of abandoned grants: a cluster's batcher of
    /// one master.
    pub(crate) fn sibling(&self, max_batches: usize) -> Batcher {
        Batcher {
            in_flight: Arc::clone(&self.in_flight),
            shared: Arc::new(Shared {
                queue: Mutex::default(),
                abandoned: Arc::clone(&self.shared.abandoned),
                background: self.shared.background.clone(),
            }),
            max_batches: max_batches.max(1),
        }
    }

    /// The count of the flushers at work, which the client's background
    /// releases join.
    pub(crate) fn background(&self) -> Background {
        self.shared.background.clone()
    }

    /// Sets where abandoned grants go (once; later calls are ignored).
    pub(crate) fn on_abandoned(&self, release: Abandoned) {
        let _ = self.shared.abandoned.set(release);
    }

    /// Counts an operation in; says whether it goes alone.
    fn enter(&self) -> (Counted<'static>, bool) {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let counted = Counted(Arc::clone(&self.in_flight), std::marker::PhantomData);
        (counted, before < ALONE_BELOW)
    }

    /// Runs a plain lease's `op` in a batch if enough others are in
    /// flight; otherwise says to send it alone (counted in flight while
    /// the returned count lives).
    pub(crate) async fn route(
        &self,
        op: BatchOp,
        keys: &Arc<LeaseKeys>,
        token: Token,
        sender: impl FnOnce() -> Sender,
        runtime: &tokio::runtime::Handle,
        publisher: Token,
    ) -> RedisResult<Route<'static>> {
        let (counted, alone) = self.enter();
        if !alone
            && let Answer::Done(a, b) = self
                .queue(op, keys, token, sender, runtime, publisher)
                .await?
        {
            return Ok(Route::Batched(a, b));
        }
        Ok(Route::Alone(Some(counted)))
    }

    /// Queues `op` and waits for its batch's answer.
    async fn queue(
        &self,
        op: BatchOp,
        keys: &Arc<LeaseKeys>,
        token: Token,
        sender: impl FnOnce() -> Sender,
        runtime: &tokio::runtime::Handle,
        publisher: Token,
    ) -> RedisResult<Answer> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut q = self.shared.lock();
            q.ops.push(Queued {
                op,
                keys: Arc::clone(keys),
                token,
                reply,
            });
            let start = q.flushers < self.max_batches;
            q.flushers += usize::from(start);
            start
        };
        if start {
            // On the client's runtime, where its connection lives, not the
            // caller's, which may be gone before the batch is answered.
            let flusher = Flusher {
                shared: Arc::clone(&self.shared),
                sender: sender(),
                publisher,
                counted: true,
            };
            self.shared.background.spawn(runtime, flusher.run());
        }
        answer.await.unwrap_or_else(|_| {
            Err(std::io::Error::other("the batch of this operation was dropped unanswered").into())
        })
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a flusher sends its batches.
pub(crate) enum Sender {
    /// One server: one call of `batch.lua` for everything queued.
    Single(super::node::Shared),
    /// A cluster: one call of `batch_node.lua` per master, by the map.
    Cluster(redis::cluster_async::ClusterConnection, Arc<SlotMap>),
}

/// A flusher, counted in [`Queue::flushers`] until it finds the queue
/// empty or is dropped.
struct Flusher {
    shared: Arc<Shared>,
    sender: Sender,
    publisher: Token,
    counted: bool,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        // Dropped before the queue was empty: its runtime is shutting down.
        let mut q = self.shared.lock();
        q.flushers -= 1;
        if q.flushers == 0 {
            // Nobody is left to send these: their callers get an error
            // rather than wait for ever.
            q.ops.clear();
        }
    }
}

impl Flusher {
    /// Sends what is queued, one batch call at a time, until the queue is
    /// empty.
    async fn run(mut self) {
        loop {
            let ops: Vec<Queued> = {
                let mut q = self.shared.lock();
                if q.ops.is_empty() {
                    // Under the lock that queueing takes: an operation
                    // queued after this starts a flusher of its own.
                    q.flushers -= 1;
                    drop(q);
                    self.counted = false;
                    return;
                }
                if q.ops.len() <= MAX_OPS {
                    std::mem::take(&mut q.ops)
                } else {
                    q.ops.drain(..MAX_OPS).collect()
                }
            };
            let sent: Vec<_> = ops
                .iter()
                .map(|o| (o.op, &*o.keys, o.token.as_bytes()))
                .collect();
            let publisher = self.publisher.as_bytes();
            crate::observe::batch(sent.len());
            let answers = match &mut self.sender {
                Sender::Single(conn) => scripts::batch(conn, &sent, publisher).await,
                Sender::Cluster(conn, slots) => {
                    Ok(super::cluster::batch(conn, slots, &sent, publisher).await)
                }
            };
            drop(sent);
            for (i, o) in ops.into_iter().enumerate() {
                let answer = answers.as_ref().map_err(Clone::clone).map(|v| match v[i] {
                    (-9, _) => Answer::Alone,
                    (ok, n) => Answer::Done(ok, n),
                });
                // Whether the token may now hold a lease nobody will use.
                let may_hold = matches!(o.op, BatchOp::Acquire { .. })
                    && !matches!(answer, Ok(Answer::Done(0, _)));
                if o.reply.send(answer).is_err() && may_hold {
                    match self.shared.abandoned.get() {
                        Some(release) => release(o.keys, o.token),
                        None => tracing::warn!(
                            lease = o.keys.display(),
                            "leasehold: an abandoned acquire took the lease; it ends when its TTL runs out"
                        ),
                    }
                }
            }
            // Let the tasks just answered run first: most of them queue
            // their next operation at once, and it joins the next batch
            // rather than a batch of one or two.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::{ALONE_BELOW, Batcher};

    #[test]
    fn a_masters_batcher_shares_the_load_and_the_abandoned_release() {
        let client = Batcher::default();
        let master = client.sibling(1);
        assert_eq!(master.max_batches, 1);
        // Set on the client's batcher after the master's was made (as
        // the engine does): the master's flushers see it too.
        client.on_abandoned(Box::new(|_, _| {}));
        assert!(master.shared.abandoned.get().is_some());
        // Operations in flight on any master count towards going alone.
        let held: Vec<_> = (0..ALONE_BELOW).map(|_| client.enter()).collect();
        assert!(held.iter().all(|(_, alone)| *alone));
        let (_counted, alone) = master.enter();
        assert!(!alone, "the client's load is the masters' load");
        drop(held);
        assert_eq!(client.in_flight.load(Ordering::Relaxed), 1);
        // Each has a queue of its own.
        assert!(!std::sync::Arc::ptr_eq(&client.shared, &master.shared));
    }
}
