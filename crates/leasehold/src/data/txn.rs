//! Optimistic transactions: WATCH, read, MULTI / EXEC, retry on conflict.
//!
//! # Why a connection of its own
//!
//! WATCH belongs to a connection, not to a caller: on the shared multiplexed
//! connection, another task's EXEC would end our WATCH, and our MULTI would
//! swallow its commands. So every transaction borrows a connection that no
//! other task uses until it is done, from a small pool kept by the
//! [`Client`](crate::Client). A connection goes back to the pool only in a clean state
//! (no WATCH, no MULTI); after an error or a cancellation it is dropped
//! instead, and closing it ends whatever it had going.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use redis::aio::MultiplexedConnection;
use redis::{Cmd, FromRedisValue, ToRedisArgs, Value};

use crate::engine::Core;
use crate::error::{Error, ErrorKind, Result};

/// An optimistic transaction over some keys: built by
/// [`Client::optimistic`](crate::Client::optimistic), run by [`Optimistic::run`].
#[derive(Debug, Clone)]
#[must_use = "nothing happens until `.run(..)` is awaited"]
pub struct Optimistic {
    core: Arc<Core>,
    keys: Vec<Vec<u8>>,
    max_attempts: u32,
    backoff_min: Duration,
    backoff_max: Duration,
}

/// The outcome of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Committed<T> {
    /// What the closure returned in the attempt that committed.
    pub value: T,
    /// Attempts made: 1 when nobody else touched the keys meanwhile.
    pub attempts: u32,
}

/// The transaction as the closure sees it: read through [`query`](Tx::query)
/// (the keys are WATCHed), queue writes with [`queue`](Tx::queue); the
/// writes run in one MULTI / EXEC after the closure returns, and only if no
/// watched key changed meanwhile.
pub struct Tx<'a> {
    conn: &'a mut MultiplexedConnection,
    addr: &'a str,
    writes: redis::Pipeline,
    attempt: u32,
}

impl Tx<'_> {
    /// Runs a read now, on the transaction's connection.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// client
    ///     .optimistic(["cart:7"])
    ///     .run(async |tx| {
    ///         let items: i64 = tx.query(redis::cmd("HLEN").arg("cart:7")).await?;
    ///         tx.queue(redis::cmd("HSET").arg("cart:7").arg("count").arg(items).clone());
    ///         Ok::<_, leasehold::Error>(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T> {
        cmd.query_async(self.conn)
            .await
            .map_err(|e| Error::redis("a read inside a transaction", self.addr, e))
    }

    /// `GET key`, now.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// client
    ///     .optimistic(["visits"])
    ///     .run(async |tx| {
    ///         let n: Option<i64> = tx.get("visits").await?;
    ///         tx.queue(redis::cmd("SET").arg("visits").arg(n.unwrap_or(0) + 1).clone());
    ///         Ok::<_, leasehold::Error>(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn get<T: FromRedisValue>(&mut self, key: impl ToRedisArgs) -> Result<T> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    /// Queues a write for the EXEC.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// // Move one unit from `a` to `b`, both or neither.
    /// client
    ///     .optimistic(["a", "b"])
    ///     .run(async |tx| {
    ///         tx.queue(redis::cmd("DECR").arg("a").clone())
    ///             .queue(redis::cmd("INCR").arg("b").clone());
    ///         Ok::<_, leasehold::Error>(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn queue(&mut self, cmd: Cmd) -> &mut Self {
        self.writes.add_command(cmd);
        self
    }

    /// Which attempt this is (1 for the first).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// client
    ///     .optimistic(["hot"])
    ///     .run(async |tx| {
    ///         if tx.attempt() > 10 {
    ///             eprintln!("`hot` is contended: attempt {}", tx.attempt());
    ///         }
    ///         tx.queue(redis::cmd("INCR").arg("hot").clone());
    ///         Ok::<_, leasehold::Error>(())
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl Optimistic {
    /// A transaction over `keys`; see [`Client::optimistic`](crate::Client::optimistic).
    pub(crate) fn new<K: AsRef<[u8]>>(
        core: &Arc<Core>,
        keys: impl IntoIterator<Item = K>,
    ) -> Optimistic {
        Optimistic {
            core: Arc::clone(core),
            keys: keys.into_iter().map(|k| k.as_ref().to_vec()).collect(),
            max_attempts: 100,
            backoff_min: Duration::from_micros(100),
            backoff_max: Duration::from_millis(20),
        }
    }
}

impl Optimistic {
    /// Gives up after this many conflicting attempts (default 100), with
    /// [`ErrorKind::TooManyConflicts`].
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let done = client
    ///     .optimistic(["hot"])
    ///     .max_attempts(5)
    ///     .run(async |tx| {
    ///         tx.queue(redis::cmd("INCR").arg("hot").clone());
    ///         Ok::<_, leasehold::Error>(())
    ///     })
    ///     .await;
    /// if let Err(e) = done {
    ///     assert!(matches!(e.kind(), leasehold::ErrorKind::TooManyConflicts { .. }));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The pause between attempts: `min` doubling up to `max`, with full
    /// jitter (default 100 µs to 20 ms).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let tx = client
    ///     .optimistic(["hot"])
    ///     .backoff(Duration::from_millis(1), Duration::from_millis(100));
    /// # Ok(()) }
    /// ```
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// Runs the transaction; see [`Client::optimistic`](crate::Client::optimistic).
    ///
    /// The closure's error type needs `From<leasehold::Error>`. An error
    /// from the closure ends the transaction at once: nothing queued is
    /// executed, and the connection is UNWATCHed (or closed).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let committed = client
    ///     .optimistic(["balance:7"])
    ///     .run(async |tx| {
    ///         let balance: i64 = tx.get::<Option<i64>>("balance:7").await?.unwrap_or(0);
    ///         tx.queue(redis::cmd("SET").arg("balance:7").arg(balance + 10).clone());
    ///         Ok::<_, leasehold::Error>(balance + 10)
    ///     })
    ///     .await?;
    /// println!("{} after {} attempts", committed.value, committed.attempts);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the transaction's connection, which ends
    /// its WATCH. If EXEC had already been sent, the writes may or may not
    /// have been applied.
    pub async fn run<T, E, F>(&self, mut f: F) -> std::result::Result<Committed<T>, E>
    where
        F: AsyncFnMut(&mut Tx<'_>) -> std::result::Result<T, E>,
        E: From<Error>,
    {
        if self.keys.is_empty() {
            return Err(Error::invalid(
                "keys",
                "an optimistic transaction needs at least one key to WATCH",
            )
            .into());
        }
        if self.max_attempts == 0 {
            return Err(Error::invalid("max attempts", "must be at least 1").into());
        }
        if self.backoff_min > self.backoff_max {
            return Err(Error::invalid("backoff", "min must be at most max").into());
        }
        let backend = &self.core.backend;
        let addr = backend.addr();
        // Dropped on any early exit (error, cancellation): closing it is
        // the sure way to leave no WATCH or MULTI behind.
        backend.check_one_slot(&self.keys)?;
        let mut conn = backend.dedicated(&self.keys[0]).await?;
        let mut backoff = self.backoff_min;
        for attempt in 1..=self.max_attempts {
            redis::cmd("WATCH")
                .arg(&self.keys)
                .exec_async(&mut conn)
                .await
                .map_err(|e| Error::redis("WATCH", addr, e))?;
            let mut tx = Tx {
                conn: &mut conn,
                addr,
                writes: redis::pipe(),
                attempt,
            };
            let value = match f(&mut tx).await {
                Ok(v) => v,
                Err(e) => {
                    // Leave the connection clean for the next user.
                    if redis::cmd("UNWATCH").exec_async(&mut conn).await.is_ok() {
                        backend.give_back(conn);
                    }
                    return Err(e);
                }
            };
            let mut writes = tx.writes;
            if writes.is_empty() {
                redis::cmd("UNWATCH")
                    .exec_async(&mut conn)
                    .await
                    .map_err(|e| Error::redis("UNWATCH", addr, e))?;
                backend.give_back(conn);
                return Ok(Committed {
                    value,
                    attempts: attempt,
                });
            }
            // MULTI ... EXEC; EXEC answers nil when a watched key changed.
            let reply: Value = writes
                .atomic()
                .query_async(&mut conn)
                .await
                .map_err(|e| Error::redis("EXEC", addr, e))?;
            if !matches!(reply, Value::Nil) {
                // EXEC also ended the WATCH: the connection is clean.
                backend.give_back(conn);
                return Ok(Committed {
                    value,
                    attempts: attempt,
                });
            }
            if attempt < self.max_attempts {
                let nap = backoff.mul_f64(rand::rng().random_range(0.0..=1.0));
                tokio::time::sleep(nap).await;
                backoff = (backoff * 2).min(self.backoff_max);
            }
        }
        backend.give_back(conn);
        Err(Error::from(ErrorKind::TooManyConflicts {
            attempts: self.max_attempts,
        })
        .into())
    }
}
