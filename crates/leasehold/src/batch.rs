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
//!   are in flight; what arrives meanwhile waits for the next one, so the
//!   batches grow with the load.
//!
//! An operation that raised an error inside the batch (a key of another
//! type, say) is run again alone, so that its caller gets the same error
//! as without batching.
//!
//! A batch spans many names, so it needs them on one server: it fits the
//! client's one connection, not a Cluster.
//!
//! # Cancellation
//!
//! A caller that gives up leaves its operation in the queue. If the
//! batch's reply says an abandoned acquire took the lease, the flusher
//! releases it at once (the caller's own background release may have run
//! before the batch did, and found nothing to release).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redis::RedisResult;
use tokio::sync::oneshot;

use crate::client::Client;
use crate::keys::{Kind, LeaseKeys};
use crate::scripts::{self, Acquired, BatchOp, WaitInfo};
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

/// The queue of one client.
#[derive(Default)]
pub(crate) struct Batcher {
    /// Operations started and not yet answered, alone or queued.
    in_flight: AtomicUsize,
    queue: Mutex<Queue>,
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
enum Route<'a> {
    /// Run in a batch: the two integers of its reply.
    Batched(i64, i64),
    /// To be sent alone (counted in flight while this lives, if a plain
    /// lease's).
    Alone(Option<Counted<'a>>),
}

/// Counts one operation as in flight until dropped.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Batcher {
    /// Counts an operation in; says whether it goes alone.
    fn enter(&self) -> (Counted<'_>, bool) {
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        (Counted(&self.in_flight), before < ALONE_BELOW)
    }
}

impl Client {
    /// The acquire script of `keys`' kind; a plain lease's may go in a batch.
    pub(crate) async fn acquire_script(
        &self,
        keys: &Arc<LeaseKeys>,
        token: Token,
        ttl_ms: u64,
        wait: &WaitInfo<'_>,
    ) -> RedisResult<Acquired> {
        match self.route(BatchOp::Acquire { ttl_ms }, keys, token).await? {
            Route::Batched(ok, n) => Ok(scripts::acquired(ok, n)),
            Route::Alone(_counted) => {
                scripts::acquire(&mut self.conn(), keys, token.as_bytes(), ttl_ms, wait).await
            }
        }
    }

    /// The release script of `keys`' kind; a plain lease's may go in a batch.
    pub(crate) async fn release_script(
        &self,
        keys: &Arc<LeaseKeys>,
        token: Token,
    ) -> RedisResult<scripts::Released> {
        match self.route(BatchOp::Release, keys, token).await? {
            Route::Batched(1, _) => Ok(scripts::Released::Yes),
            Route::Batched(..) => Ok(scripts::Released::NotHeld),
            Route::Alone(_counted) => {
                scripts::release(
                    &mut self.conn(),
                    keys,
                    token.as_bytes(),
                    self.inner.id.as_bytes(),
                )
                .await
            }
        }
    }

    /// Runs `op` in a batch if it is a plain lease's and enough others are
    /// in flight; otherwise says to send it alone (counted in flight, for
    /// a plain lease, while the returned count lives).
    async fn route(
        &self,
        op: BatchOp,
        keys: &Arc<LeaseKeys>,
        token: Token,
    ) -> RedisResult<Route<'_>> {
        if !matches!(keys.kind(), Kind::Lease) {
            return Ok(Route::Alone(None));
        }
        let (counted, alone) = self.inner.batcher.enter();
        if !alone && let Answer::Done(a, b) = self.queue(op, keys, token).await? {
            return Ok(Route::Batched(a, b));
        }
        Ok(Route::Alone(Some(counted)))
    }

    /// Queues `op` and waits for its batch's answer.
    async fn queue(&self, op: BatchOp, keys: &Arc<LeaseKeys>, token: Token) -> RedisResult<Answer> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut q = self.batch_queue();
            q.ops.push(Queued {
                op,
                keys: Arc::clone(keys),
                token,
                reply,
            });
            let start = q.flushers < MAX_BATCHES;
            q.flushers += usize::from(start);
            start
        };
        if start {
            // On the client's runtime, where its connection lives, not the
            // caller's, which may be gone before the batch is answered.
            let flusher = Flusher {
                client: self.clone(),
                counted: true,
            };
            drop(self.inner.runtime.spawn(flusher.run()));
        }
        answer.await.unwrap_or_else(|_| {
            Err(std::io::Error::other("the batch of this operation was dropped unanswered").into())
        })
    }

    fn batch_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner
            .batcher
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A flusher, counted in [`Queue::flushers`] until it finds the queue
/// empty or is dropped.
struct Flusher {
    client: Client,
    counted: bool,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if !self.counted {
            return;
        }
        // Dropped before the queue was empty: its runtime is shutting down.
        let mut q = self.client.batch_queue();
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
                let mut q = self.client.batch_queue();
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
            let client = &self.client;
            let sent: Vec<_> = ops
                .iter()
                .map(|o| (o.op, &*o.keys, o.token.as_bytes()))
                .collect();
            let answers =
                scripts::batch(&mut client.conn(), &sent, client.inner.id.as_bytes()).await;
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
                    client.release_in_background(o.keys, o.token);
                }
            }
            // Let the tasks just answered run first: most of them queue
            // their next operation at once, and it joins the next batch
            // rather than a batch of one or two.
            tokio::task::yield_now().await;
        }
    }
}
