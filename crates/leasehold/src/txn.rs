//! Optimistic transactions: WATCH, read, MULTI / EXEC, retry on conflict.
//!
//! # Why a connection of its own
//!
//! WATCH belongs to a connection, not to a caller: on the shared multiplexed
//! connection, another task's EXEC would end our WATCH, and our MULTI would
//! swallow its commands. So every transaction borrows a connection that no
//! other task uses until it is done, from a small pool kept by the
//! [`Client`]. A connection goes back to the pool only in a clean state
//! (no WATCH, no MULTI); after an error or a cancellation it is dropped
//! instead, and closing it ends whatever it had going.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use redis::aio::MultiplexedConnection;
use redis::{Cmd, FromRedisValue, ToRedisArgs, Value};

use crate::client::Client;
use crate::error::{Error, ErrorKind, Result};

/// Idle connections kept for transactions (beyond these, a finished
/// transaction closes its connection).
const POOL_MAX: usize = 16;

/// A small pool of dedicated connections for WATCH.
#[derive(Default)]
pub(crate) struct TxPool {
    idle: Mutex<Vec<MultiplexedConnection>>,
}

impl TxPool {
    fn take(&self) -> Option<MultiplexedConnection> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn give_back(&self, conn: MultiplexedConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < POOL_MAX {
            idle.push(conn);
        }
    }

    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// An optimistic transaction over some keys: built by
/// [`Client::optimistic`], run by [`Optimistic::run`].
#[derive(Debug, Clone)]
#[must_use = "nothing happens until `.run(..)` is awaited"]
pub struct Optimistic {
    client: Client,
    keys: Vec<Vec<u8>>,
    max_attempts: u32,
    backoff_min: Duration,
    backoff_max: Duration,
}

/// The outcome of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    pub async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> Result<T> {
        cmd.query_async(self.conn)
            .await
            .map_err(|e| Error::redis("a read inside a transaction", self.addr, e))
    }

    /// `GET key`, now.
    pub async fn get<T: FromRedisValue>(&mut self, key: impl ToRedisArgs) -> Result<T> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    /// Queues a write for the EXEC.
    pub fn queue(&mut self, cmd: Cmd) -> &mut Self {
        self.writes.add_command(cmd);
        self
    }

    /// Which attempt this is (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl Client {
    /// An optimistic transaction over `keys`: WATCH them, let a closure read
    /// them and queue writes, EXEC; when another client changed a watched
    /// key meanwhile, run the closure again (with backoff and jitter) up to
    /// a limit. The closure must be safe to run several times.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// // Buy one unit, never going below zero.
    /// let bought = client
    ///     .optimistic(["stock"])
    ///     .run(async |tx| {
    ///         let stock: i64 = tx.get::<Option<i64>>("stock").await?.unwrap_or(0);
    ///         if stock > 0 {
    ///             tx.queue(redis::cmd("SET").arg("stock").arg(stock - 1).clone());
    ///         }
    ///         Ok::<_, leasehold::Error>(stock > 0)
    ///     })
    ///     .await?;
    /// println!("bought: {}, after {} attempts", bought.value, bought.attempts);
    /// # Ok(()) }
    /// ```
    pub fn optimistic<K: AsRef<[u8]>>(&self, keys: impl IntoIterator<Item = K>) -> Optimistic {
        Optimistic {
            client: self.clone(),
            keys: keys.into_iter().map(|k| k.as_ref().to_vec()).collect(),
            max_attempts: 100,
            backoff_min: Duration::from_micros(100),
            backoff_max: Duration::from_millis(20),
        }
    }

    /// Idle connections kept for transactions (for tests and monitoring).
    pub fn idle_transaction_connections(&self) -> usize {
        self.inner.txns.idle()
    }

    async fn tx_connection(&self) -> Result<MultiplexedConnection> {
        if let Some(conn) = self.inner.txns.take() {
            return Ok(conn);
        }
        self.inner
            .redis
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| Error::redis("opening a transaction connection", self.addr(), e))
    }
}

impl Optimistic {
    /// Gives up after this many conflicting attempts (default 100), with
    /// [`ErrorKind::TooManyConflicts`].
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The pause between attempts: `min` doubling up to `max`, with full
    /// jitter (default 100 µs to 20 ms).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// Runs the transaction; see [`Client::optimistic`].
    ///
    /// The closure's error type needs `From<leasehold::Error>`. An error
    /// from the closure ends the transaction at once: nothing queued is
    /// executed, and the connection is UNWATCHed (or closed).
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
        let client = &self.client;
        let addr = client.addr();
        // Dropped on any early exit (error, cancellation): closing it is
        // the sure way to leave no WATCH or MULTI behind.
        let mut conn = client.tx_connection().await?;
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
                        client.inner.txns.give_back(conn);
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
                client.inner.txns.give_back(conn);
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
                client.inner.txns.give_back(conn);
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
        client.inner.txns.give_back(conn);
        Err(Error::from(ErrorKind::TooManyConflicts {
            attempts: self.max_attempts,
        })
        .into())
    }
}

impl std::fmt::Debug for TxPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxPool")
            .field("idle", &self.idle())
            .finish()
    }
}
