//! The seam between the primitives and the deployment.
//!
//! Leases, semaphores and read-write locks never talk to Redis themselves:
//! they ask the [`Backend`] to acquire, extend and release, to take a fair
//! waiter out of its queue, and for the source of wake-ups; data commands
//! (your scripts, transactions, reading the status) get a connection from
//! it. Each answer is typed ([`Acquire`], [`Extended`], [`Released`],
//! [`HandoverReply`]) and each error names the node it came from.
//!
//! The backend also owns the **validity rule**: how long an acquire or
//! extend proves the lease held, counted from the time it was *sent*
//! ([`Backend::valid_until`]). One server's rule is the ttl minus the drift
//! margin; a quorum's (Redlock) also takes off the time the round took.
//!
//! The set of deployments is closed, so it is an enum, not a trait:
//! - `Single`: one server ([`node`]), plain leases' scripts gathered into
//!   batches under load ([`batch`]); waiters listen by classic pub/sub.
//! - `Cluster`: Redis Cluster ([`cluster`]); each script goes to its
//!   slot's master, waiters listen by sharded pub/sub.
//! - `Redlock`: N independent masters ([`redlock`]); each operation on all
//!   at once, decided by a quorum; waiters listen on every master.

pub(crate) mod background;
pub(crate) mod batch;
pub(crate) mod cluster;
pub(crate) mod direct;
pub(crate) mod node;
pub(crate) mod redlock;
pub(crate) mod sentinel;
pub(crate) mod servers;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::keys::{Family, LeaseKeys};
use crate::scripts::{self, Acquired, BatchOp};
pub(crate) use crate::scripts::{HandoverReply, Pubsub, Released, WaitInfo};
use crate::token::Token;
use batch::{Batcher, Route};
use cluster::Cluster;
pub(crate) use node::Timeouts;
use node::{Node, Tls};
use redlock::Redlock;

/// A deployment of Redis, as the primitives see it.
// One per client, inside its `Core`: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    /// One server (or a primary that Sentinel points at).
    Single(Single),
    /// Redis Cluster.
    Cluster(Cluster),
    /// Independent masters, a quorum of which holds each lease.
    Redlock(Redlock),
}

/// One server, or the master of a Sentinel service.
pub(crate) struct Single {
    node: Node,
    batcher: Batcher,
    /// The client's id, published by releases so that its own subscriber
    /// skips the echo.
    publisher: Token,
}

/// How many replicas must acknowledge a grant, and how long to wait for
/// them (`WAIT count timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Replicas {
    /// Replicas that must acknowledge.
    pub(crate) count: u32,
    /// How long Redis waits for them.
    pub(crate) timeout: Duration,
}

/// What an acquire found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquire {
    /// The token holds it now.
    Held(Held),
    /// Someone else holds it; their remaining TTL in ms (-1: no TTL). For a
    /// semaphore: every permit is held, the first ends in this many ms.
    Busy {
        /// PTTL in ms, -1 for none.
        pttl: i64,
    },
    /// A semaphore's permits are in use with this other limit.
    LimitMismatch(u32),
}

/// A grant: the fence, and until when it is proved held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// The fencing token of this acquisition.
    pub(crate) fence: u64,
    /// When the granting command was sent.
    pub(crate) sent: Instant,
    /// Until when it is proved held ([`Backend::valid_until`]).
    pub(crate) valid_until: Instant,
}

/// What an extend found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extended {
    /// Still the token's: held until then, by the extend sent at `sent`.
    Held {
        /// When the extend that answered was sent.
        sent: Instant,
        /// Until when the lease is proved held now.
        valid_until: Instant,
    },
    /// The key is gone or someone else's.
    Gone,
}

/// Where waiters hear of releases.
pub(crate) enum WakeSource {
    /// Classic pub/sub on a connection of its own to this server.
    PubSub(redis::Client),
    /// Classic pub/sub on the master of a Sentinel service, connecting
    /// again to the new master after each failover.
    Sentinel(Arc<sentinel::Follower>),
    /// Sharded pub/sub on the cluster: each channel on its slot's master,
    /// through a cluster client of its own made of these settings.
    Sharded(cluster::Settings),
    /// Classic pub/sub on each of independent masters (Redlock), a
    /// connection per master: a release publishes on every master it
    /// reaches, and a waiter wakes on the first of them, so masters that are
    /// down or frozen do not hold it back.
    Masters(Vec<redis::Client>),
}

/// A connection for data commands: your scripts, single-flight's cache,
/// inspection. Any command with keys; the backend decides where it goes.
#[derive(Clone)]
pub(crate) enum Conn {
    /// The one server's shared connection (or the Sentinel master's).
    Single(node::Shared),
    /// The cluster's: routes each command by its first key.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The safety margin taken off every validity: 1 % of the ttl for clock rate
/// differences between this host and Redis, plus 2 ms for scheduling.
pub(crate) fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// A duration as whole milliseconds, as the scripts take it.
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    ttl.as_millis() as u64
}

/// A renewal waits at least this long for its reply before it is sent
/// again on a connection of its own (see [`Backend::extend`]).
const MIN_PATIENCE: Duration = Duration::from_millis(50);

impl Backend {
    /// One server at `url`.
    pub(crate) async fn single(
        url: &str,
        timeouts: Timeouts,
        tls: &Tls,
        publisher: Token,
    ) -> Result<Backend> {
        Ok(Backend::Single(Single {
            node: Node::connect(url, timeouts, tls).await?,
            batcher: Batcher::default(),
            publisher,
        }))
    }

    /// Redis Cluster, discovered from `seeds`.
    pub(crate) async fn cluster(
        seeds: &[String],
        timeouts: Timeouts,
        tls: &Tls,
        publisher: Token,
    ) -> Result<Backend> {
        Ok(Backend::Cluster(
            Cluster::connect(seeds, timeouts, tls, publisher).await?,
        ))
    }

    /// N independent masters (Redlock), each answering an operation
    /// within `node_timeout`.
    pub(crate) async fn redlock(
        urls: &[String],
        timeouts: Timeouts,
        tls: &Tls,
        node_timeout: Duration,
        publisher: Token,
    ) -> Result<Backend> {
        Ok(Backend::Redlock(
            Redlock::connect(urls, timeouts, tls, node_timeout, publisher).await?,
        ))
    }

    /// The client's id, which its releases publish (see [`Single`]).
    pub(crate) fn publisher(&self) -> Token {
        match self {
            Backend::Single(s) => s.publisher,
            Backend::Cluster(c) => c.publisher,
            Backend::Redlock(r) => r.publisher(),
        }
    }

    /// How waiters listen, and so which flavour of the waking scripts runs.
    pub(crate) fn pubsub(&self) -> Pubsub {
        match self {
            Backend::Single(_) | Backend::Redlock(_) => Pubsub::Classic,
            Backend::Cluster(_) => Pubsub::Sharded,
        }
    }

    /// Where a lease whose abandoned acquire took it in a batch is handed
    /// back: the client's release (which may hand it to a local waiter).
    /// Set once, by the client, right after it is built.
    pub(crate) fn on_abandoned(&self, release: batch::Abandoned) {
        match self {
            Backend::Single(s) => s.batcher.on_abandoned(release),
            Backend::Cluster(c) => c.batcher.on_abandoned(release),
            // No batches: nothing is taken by an acquire its caller left.
            Backend::Redlock(_) => drop(release),
        }
    }

    /// The printable address (of the first node, for a deployment of many).
    pub(crate) fn addr(&self) -> &str {
        match self {
            Backend::Single(s) => s.node.addr(),
            Backend::Cluster(c) => c.addr(),
            Backend::Redlock(r) => r.addr(),
        }
    }

    /// The validity rule: an acquire or extend sent at `sent` with `ttl`
    /// proves the lease held until `sent + ttl - drift`. Measured from the
    /// *send* time, so a slow reply only shortens it.
    pub(crate) fn valid_until(&self, sent: Instant, ttl: Duration) -> Instant {
        match self {
            // Redlock's is the same: every master's key ends `ttl` after
            // it received the command, after `sent`; the quorum is reached
            // before the caller sees it, and a reply after `valid_until`
            // is refused.
            Backend::Single(_) | Backend::Cluster(_) | Backend::Redlock(_) => {
                sent + ttl.saturating_sub(drift(ttl))
            }
        }
    }

    /// Runs the acquire script of `keys`' kind for `token`; `wait` tells a
    /// waiting writer's intent or a fair waiter's place.
    ///
    /// # Cancel safety
    ///
    /// Dropped after the script was sent, the token may hold the lease:
    /// the caller must release it (see `Claim`). A plain lease's acquire
    /// that a batch carried is released by the batch itself.
    pub(crate) async fn acquire(
        &self,
        keys: &Arc<LeaseKeys>,
        token: Token,
        ttl: Duration,
        wait: &WaitInfo<'_>,
    ) -> Result<Acquire> {
        let sent = Instant::now();
        let reply = match self {
            Backend::Single(s) => s.acquire(keys, token, ttl_ms(ttl), wait).await,
            Backend::Cluster(c) => c.acquire(keys, token, ttl_ms(ttl), wait).await,
            Backend::Redlock(r) => return r.acquire(keys, token, ttl).await,
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => return Err(self.error("the acquire script", keys, e).await),
        };
        Ok(match reply {
            Acquired::Yes(fence) => Acquire::Held(Held {
                fence,
                sent,
                valid_until: self.valid_until(sent, ttl),
            }),
            Acquired::No(pttl) => Acquire::Busy { pttl },
            Acquired::LimitMismatch(theirs) => Acquire::LimitMismatch(theirs),
        })
    }

    /// Resets `token`'s lease to `ttl` if it still holds it.
    ///
    /// The shared connection answers in order, so one stuck reply (a dead
    /// connection that has not failed yet, a congested one) holds back
    /// every later command on it, and the response timeout can be longer
    /// than the whole ttl. So an extend unanswered after the lesser of the
    /// response timeout and `ttl/6` (at least 50 ms) is sent again on a
    /// connection of its own, while the first may still answer; the first
    /// answer wins (extending is idempotent).
    ///
    /// # Cancel safety
    ///
    /// If dropped after the script was sent, the extension may still happen.
    pub(crate) async fn extend(
        &self,
        keys: &Arc<LeaseKeys>,
        token: &Token,
        ttl: Duration,
    ) -> Result<Extended> {
        let conn = match self {
            // Every master at once, within the per-node timeout: no stuck
            // shared connection to go around.
            Backend::Redlock(r) => return r.extend(keys, token, ttl).await,
            Backend::Single(s) => Conn::Single(s.node.conn()),
            Backend::Cluster(c) => Conn::Cluster(c.conn()),
        };
        let patience = self.response_timeout().min((ttl / 6).max(MIN_PATIENCE));
        let first = self.extend_on(conn, keys, token, ttl);
        tokio::pin!(first);
        if let Ok(r) = tokio::time::timeout(patience, &mut first).await {
            return r;
        }
        tracing::debug!(
            lease = keys.display(),
            "leasehold: no reply to the extend within {patience:?}; sending it again on a connection of its own"
        );
        let second = async {
            let alone = async {
                match self {
                    Backend::Single(s) => {
                        let conn = s
                            .node
                            .alone("a connection for the renewal", patience)
                            .await?;
                        self.extend_on(conn, keys, token, ttl).await
                    }
                    Backend::Cluster(c) => {
                        let conn = c.alone(patience).await?;
                        self.extend_on(conn, keys, token, ttl).await
                    }
                    Backend::Redlock(_) => unreachable!("answered above"),
                }
            };
            // Connecting and the reply: `patience` each.
            tokio::time::timeout(patience * 2, alone)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::redis(
                        "the extend script",
                        self.addr(),
                        std::io::Error::from(std::io::ErrorKind::TimedOut).into(),
                    ))
                })
        };
        tokio::pin!(second);
        // The first answer, or the last error once both failed.
        tokio::select! {
            r = &mut first => match r {
                Err(_) => second.await,
                r => r,
            },
            r = &mut second => match r {
                Err(_) => first.await,
                r => r,
            },
        }
    }

    async fn extend_on(
        &self,
        mut conn: impl redis::aio::ConnectionLike,
        keys: &LeaseKeys,
        token: &Token,
        ttl: Duration,
    ) -> Result<Extended> {
        let sent = Instant::now();
        let held = match scripts::extend(&mut conn, keys, token.as_bytes(), ttl_ms(ttl)).await {
            Ok(held) => held,
            Err(e) => return Err(self.error("the extend script", keys, e).await),
        };
        Ok(if held {
            Extended::Held {
                sent,
                valid_until: self.valid_until(sent, ttl),
            }
        } else {
            Extended::Gone
        })
    }

    /// An error of `doing` on `keys`, naming the server: on a cluster the
    /// master of the name's slot, not the seeds.
    async fn error(&self, doing: &'static str, keys: &LeaseKeys, e: redis::RedisError) -> Error {
        match self {
            Backend::Cluster(c) => Error::redis(doing, &c.addr_of(keys.name()).await, e),
            _ => Error::redis(doing, self.addr(), e),
        }
    }

    /// Runs the release script of `keys`' kind for `token`.
    ///
    /// # Cancel safety
    ///
    /// If dropped after the script was sent, the release still happens.
    pub(crate) async fn release(&self, keys: &Arc<LeaseKeys>, token: Token) -> Result<Released> {
        let released = match self {
            Backend::Single(s) => s.release(keys, token).await,
            Backend::Cluster(c) => c.release(keys, token).await,
            Backend::Redlock(r) => return r.release(keys, token).await,
        };
        match released {
            Ok(r) => Ok(r),
            Err(e) => Err(self.error("the release script", keys, e).await),
        }
    }

    /// Releases `token`'s plain lease and gives it, with a new fence and
    /// `next_ttl`, to `next` (a local waiter's token) in one step, while no
    /// more than `tolerated` other clients listen for it; otherwise frees
    /// it and publishes `freed_payload`.
    ///
    /// # Cancel safety
    ///
    /// If dropped after the script was sent, the hand-over may happen: the
    /// waiter's own attempt with `next` then finds it.
    pub(crate) async fn handover(
        &self,
        keys: &Arc<LeaseKeys>,
        token: &Token,
        next: &Token,
        next_ttl: Duration,
        tolerated: u32,
        freed_payload: &[u8],
    ) -> Result<HandoverReply> {
        let to = scripts::Next {
            token: next.as_bytes(),
            ttl_ms: ttl_ms(next_ttl),
            tolerated,
        };
        let reply = match self {
            Backend::Single(s) => {
                scripts::handover(
                    &mut s.node.conn(),
                    Pubsub::Classic,
                    keys,
                    token.as_bytes(),
                    to,
                    freed_payload,
                )
                .await
            }
            Backend::Cluster(c) => {
                scripts::handover(
                    &mut c.conn(),
                    Pubsub::Sharded,
                    keys,
                    token.as_bytes(),
                    to,
                    freed_payload,
                )
                .await
            }
            Backend::Redlock(r) => {
                return r
                    .handover(keys, token, (*next, next_ttl, tolerated), freed_payload)
                    .await;
            }
        };
        match reply {
            Ok(r) => Ok(r),
            Err(e) => Err(self.error("the release script", keys, e).await),
        }
    }

    /// Takes the fair waiter `waiter_id` out of `keys`' queue; for a fair
    /// lease, also releases a grant that its `token` did not take (and
    /// hands it on to the next head). What it left behind.
    pub(crate) async fn leave(
        &self,
        keys: &LeaseKeys,
        waiter_id: &str,
        token: &Token,
    ) -> Result<scripts::Left> {
        let Ok(mut conn) = self.conn() else {
            // No fair queues over Redlock: nobody is queued.
            return Ok(scripts::Left {
                queued: false,
                released: false,
                handed: Released::NotHeld,
            });
        };
        let publisher = self.publisher();
        match scripts::fair_leave(
            &mut conn,
            self.pubsub(),
            keys,
            waiter_id,
            token.as_bytes(),
            publisher.as_bytes(),
        )
        .await
        {
            Ok(left) => Ok(left),
            Err(e) => Err(self.error("leaving the fair queue", keys, e).await),
        }
    }

    /// Who holds a plain or fair lease, for messages: a prefix (8
    /// characters) of the holder's token; `None` when it is free, cannot
    /// be read, or `keys` is not a lease's (a semaphore has many holders).
    pub(crate) async fn holder(&self, keys: &LeaseKeys) -> Option<String> {
        if !matches!(keys.family(), Family::Lease | Family::Fair(_)) {
            return None;
        }
        if let Backend::Redlock(r) = self {
            return r.holder(keys).await;
        }
        redis::cmd("GET")
            .arg(keys.name())
            .query_async::<Option<String>>(&mut self.conn().ok()?)
            .await
            .ok()
            .flatten()
            .map(|t| t.chars().take(8).collect())
    }

    /// Every key matching the glob `pattern` (Redis `MATCH` syntax), by
    /// SCAN (never KEYS, which would block a large database): on every
    /// node that holds keys. A key may come more than once.
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>> {
        match self {
            Backend::Single(s) => s.node.scan(pattern).await,
            Backend::Cluster(c) => c.scan(pattern).await,
            Backend::Redlock(r) => r.scan(pattern).await,
        }
    }

    /// Waits until no cancelled operation's command may still run on a
    /// connection of its own (a direct one, see [`direct`]): a release
    /// that cleans up after such an operation must not overtake it.
    pub(crate) async fn settled(&self) {
        if let Backend::Single(s) = self {
            s.node.settled().await;
        }
    }

    /// How long one command waits for its reply.
    fn response_timeout(&self) -> Duration {
        match self {
            Backend::Single(s) => s.node.response_timeout(),
            Backend::Cluster(c) => c.timeouts().response,
            Backend::Redlock(r) => r.response_timeout(),
        }
    }

    /// The count of what the client runs in the background that may
    /// release a lease: the batches in flight (whose abandoned grants are
    /// released); the client's own background releases join it.
    pub(crate) fn background(&self) -> background::Background {
        match self {
            Backend::Single(s) => s.batcher.background(),
            Backend::Cluster(c) => c.batcher.background(),
            Backend::Redlock(_) => background::Background::default(),
        }
    }

    /// Whether a command nobody awaits is still out: over Redlock, those
    /// of the masters an operation did not wait for once a majority
    /// answered (a release's, say), which no task carries.
    pub(crate) fn out(&self) -> bool {
        match self {
            Backend::Redlock(r) => r.out(),
            _ => false,
        }
    }

    /// Where waiters hear of releases.
    pub(crate) fn wake_source(&self) -> WakeSource {
        match self {
            Backend::Single(s) => s.node.wake_source(),
            Backend::Cluster(c) => WakeSource::Sharded(c.settings().clone()),
            Backend::Redlock(r) => WakeSource::Masters(r.redis_clients()),
        }
    }

    /// Connections open for the primitives (the shared one per node).
    pub(crate) fn connections(&self) -> usize {
        match self {
            // The cluster client's connections to its nodes count as one
            // handle here, like the single server's.
            Backend::Single(s) => 1 + s.node.direct_connections(),
            Backend::Cluster(_) => 1,
            Backend::Redlock(r) => r.len(),
        }
    }

    /// A connection for data commands. None over Redlock: which of the
    /// independent masters would hold your data?
    pub(crate) fn conn(&self) -> Result<Conn> {
        match self {
            Backend::Single(s) => Ok(Conn::Single(s.node.conn())),
            Backend::Cluster(c) => Ok(Conn::Cluster(c.conn())),
            Backend::Redlock(_) => Err(redlock::no_data_commands()),
        }
    }

    /// A connection used by nobody else until given back (WATCH needs
    /// one), to the node that holds `key` (every key of a transaction is
    /// in one slot on a cluster).
    pub(crate) async fn dedicated(&self, key: &[u8]) -> Result<MultiplexedConnection> {
        match self {
            Backend::Single(s) => s.node.dedicated("opening a transaction connection").await,
            Backend::Cluster(c) => c.dedicated(key).await,
            Backend::Redlock(_) => Err(redlock::no_data_commands()),
        }
    }

    /// Runs `pipes`, each of whose keys share one slot, and answers each
    /// one's replies: on one server as one pipeline (one round trip), on a
    /// cluster one pipeline per group, all at once.
    pub(crate) async fn pipelines(
        &self,
        pipes: Vec<redis::Pipeline>,
        doing: &'static str,
    ) -> Result<Vec<Vec<redis::Value>>> {
        match self {
            Backend::Single(s) => {
                let (all, sizes) = joined(&pipes);
                let replies = all
                    .query_async::<Vec<redis::Value>>(&mut s.node.conn())
                    .await
                    .map_err(|e| Error::redis(doing, self.addr(), e))?;
                Ok(split(replies, &sizes))
            }
            Backend::Redlock(_) => Err(redlock::no_data_commands()),
            Backend::Cluster(c) => {
                let runs = pipes.into_iter().map(|p| {
                    let mut conn = c.conn();
                    async move { p.query_async::<Vec<redis::Value>>(&mut conn).await }
                });
                futures_util::future::try_join_all(runs)
                    .await
                    .map_err(|e| Error::redis(doing, self.addr(), e))
            }
        }
    }

    /// How many replicas of the master holding `keys` acknowledged every
    /// write before this call, waiting for `want.count` of them at most
    /// `want.timeout` (`WAIT`).
    ///
    /// On a connection of its own, since WAIT blocks the connection it is
    /// sent on. WAIT counts the replicas that acknowledged the *sending
    /// connection's* last write, and a fresh connection has written
    /// nothing (every replica counts at once): so a write that changes
    /// nothing (`INCRBY` of the fence by 0) goes first on it. Sent after the
    /// grant's reply came back, it follows the grant in the replication
    /// stream, and a replica that acknowledged it has the grant too.
    pub(crate) async fn replicated(&self, keys: &LeaseKeys, want: Replicas) -> Result<u32> {
        const DOING: &str = "waiting for replicas to acknowledge the grant (WAIT)";
        let (mut conn, response) = match self {
            Backend::Single(s) => (s.node.dedicated(DOING).await?, s.node.response_timeout()),
            Backend::Cluster(c) => (c.dedicated(keys.fence()).await?, c.response_timeout()),
            Backend::Redlock(_) => return Err(redlock::no_replicas()),
        };
        // The reply comes when Redis stops waiting.
        conn.set_response_timeout(want.timeout + response);
        let mut pipe = redis::pipe();
        pipe.cmd("INCRBY")
            .arg(keys.fence())
            .arg(0)
            .ignore()
            .cmd("WAIT")
            .arg(want.count)
            .arg(ttl_ms(want.timeout));
        let (acked,): (u32,) = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| Error::redis(DOING, self.addr(), e))?;
        conn.set_response_timeout(response);
        self.give_back(conn);
        Ok(acked)
    }

    /// Over Redlock: how many masters there are.
    pub(crate) fn masters(&self) -> Option<usize> {
        match self {
            Backend::Redlock(r) => Some(r.len()),
            Backend::Single(_) | Backend::Cluster(_) => None,
        }
    }

    /// Over Redlock: runs `pipes` on every master at once, in one round
    /// trip each, and answers each master's replies to each pipe (`None`
    /// where the master failed). Elsewhere: `None`.
    pub(crate) async fn pipelines_per_master(
        &self,
        pipes: &[redis::Pipeline],
        doing: &'static str,
    ) -> Option<Vec<Option<Vec<Vec<redis::Value>>>>> {
        let Backend::Redlock(r) = self else {
            return None;
        };
        let (all, sizes) = joined(pipes);
        let each = r.pipeline_on_each(all, doing).await;
        Some(
            each.into_iter()
                .map(|replies| replies.map(|r| split(r, &sizes)))
                .collect(),
        )
    }

    /// On a cluster, a command's keys must share a slot: refuses `keys`
    /// that do not, before anything is sent, saying how to tag them.
    pub(crate) fn check_one_slot(&self, keys: &[Vec<u8>]) -> Result<()> {
        let Backend::Cluster(_) = self else {
            return Ok(());
        };
        let mut slots = keys.iter().map(|k| crate::keys::key_slot(k));
        let first = slots.next();
        if slots.all(|s| Some(s) == first) {
            return Ok(());
        }
        Err(Error::invalid(
            "keys",
            "they are in different hash slots of the cluster, and a transaction or script may touch one slot only: give them a common hash tag, e.g. `{order:7}:stock` and `{order:7}:paid`",
        ))
    }

    /// Keeps a dedicated connection, in a clean state, for the next user.
    pub(crate) fn give_back(&self, conn: MultiplexedConnection) {
        match self {
            Backend::Single(s) => s.node.give_back(conn),
            // One master's connection: closed rather than kept for a
            // transaction that may need another.
            Backend::Cluster(_) | Backend::Redlock(_) => drop(conn),
        }
    }

    /// Dedicated connections kept idle.
    pub(crate) fn idle_dedicated(&self) -> usize {
        match self {
            Backend::Single(s) => s.node.idle(),
            Backend::Cluster(_) | Backend::Redlock(_) => 0,
        }
    }
}

/// `pipes` as one pipeline, and how many commands each had.
fn joined(pipes: &[redis::Pipeline]) -> (redis::Pipeline, Vec<usize>) {
    let mut all = redis::pipe();
    let mut sizes = Vec::with_capacity(pipes.len());
    for p in pipes {
        sizes.push(p.cmd_iter().count());
        for c in p.cmd_iter() {
            all.add_command(c.clone());
        }
    }
    (all, sizes)
}

/// The replies of a [`joined`] pipeline, back to one run per pipe.
fn split(replies: Vec<redis::Value>, sizes: &[usize]) -> Vec<Vec<redis::Value>> {
    let mut replies: Vec<redis::Value> = replies.into_iter().rev().collect();
    sizes
        .iter()
        .map(|&n| (0..n).filter_map(|_| replies.pop()).collect())
        .collect()
}

impl Single {
    /// The acquire script of `keys`' kind; a plain lease's may go in a batch.
    async fn acquire(
        &self,
        keys: &Arc<LeaseKeys>,
        token: Token,
        ttl_ms: u64,
        wait: &WaitInfo<'_>,
    ) -> redis::RedisResult<Acquired> {
        match self.route(BatchOp::Acquire { ttl_ms }, keys, token).await? {
            Route::Batched(ok, n) => Ok(scripts::acquired(ok, n)),
            Route::Alone(_counted) => {
                scripts::acquire(
                    &mut self.node.express(),
                    keys,
                    token.as_bytes(),
                    ttl_ms,
                    wait,
                )
                .await
            }
        }
    }

    /// The release script of `keys`' kind; a plain lease's may go in a batch.
    async fn release(&self, keys: &Arc<LeaseKeys>, token: Token) -> redis::RedisResult<Released> {
        match self.route(BatchOp::Release, keys, token).await? {
            Route::Batched(1, _) => Ok(Released::Yes),
            Route::Batched(..) => Ok(Released::NotHeld),
            Route::Alone(_counted) => {
                scripts::release(
                    &mut self.node.express(),
                    Pubsub::Classic,
                    keys,
                    token.as_bytes(),
                    self.publisher.as_bytes(),
                )
                .await
            }
        }
    }

    /// Runs `op` in a batch if it is a plain lease's and enough others are
    /// in flight; otherwise says to send it alone.
    async fn route(
        &self,
        op: BatchOp,
        keys: &Arc<LeaseKeys>,
        token: Token,
    ) -> redis::RedisResult<Route<'_>> {
        if !matches!(keys.family(), Family::Lease) {
            return Ok(Route::Alone(None));
        }
        self.batcher
            .route(
                op,
                keys,
                token,
                || batch::Sender::Single(self.node.conn()),
                self.node.runtime(),
                self.publisher,
            )
            .await
    }
}
