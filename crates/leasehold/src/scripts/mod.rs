//! The Lua scripts of DESIGN §3, each a file under this directory, hashed
//! once, called by EVALSHA with one fallback to EVAL on NOSCRIPT (EVAL also
//! loads the script, so the next EVALSHA finds it).
//!
//! A typed wrapper per script owns the order of KEYS and ARGV; data only
//! ever travels in KEYS and ARGV, never in the script's source.

use std::borrow::Cow;
use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, RedisResult};

use crate::keys::{Kind, LeaseKeys};

/// A script's source and its SHA1, computed once per process.
pub(crate) struct Script {
    src: Cow<'static, str>,
    sha: String,
}

impl Script {
    pub(crate) fn new(src: impl Into<Cow<'static, str>>) -> Script {
        let src = src.into();
        let sha = redis::Script::new(&src).get_hash().to_owned();
        Script { src, sha }
    }

    pub(crate) fn sha(&self) -> &str {
        &self.sha
    }

    /// Runs the script: `fill` appends numkeys, KEYS and ARGV.
    pub(crate) async fn call<T: FromRedisValue>(
        &self,
        conn: &mut impl ConnectionLike,
        fill: impl Fn(&mut Cmd),
    ) -> RedisResult<T> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha);
        fill(&mut cmd);
        match cmd.query_async(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(&*self.src);
                fill(&mut cmd);
                cmd.query_async(conn).await
            }
            other => other,
        }
    }
}

/// The fencing rule (`fence.lua`: `next_fence` and the fences of shared
/// holders) as Lua functions, the head of every script that grants: one
/// rule for every kind, in one place.
macro_rules! with_fences {
    ($($file:literal),+) => {
        concat!(include_str!("fence.lua"), $(include_str!($file)),+)
    };
}

/// The plain lease's operations as Lua functions (after the fencing rule),
/// the head of the three scripts below.
macro_rules! with_lease_ops {
    ($file:literal) => {
        with_fences!("lease_ops.lua", $file)
    };
}

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(with_lease_ops!("acquire.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(with_lease_ops!("release.lua")));
static BATCH: LazyLock<Script> = LazyLock::new(|| Script::new(with_lease_ops!("batch.lua")));
static FAIR_LEAVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("fair_leave.lua")));
static HANDOVER: LazyLock<Script> = LazyLock::new(|| Script::new(with_fences!("handover.lua")));
static EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("extend.lua")));
static RW_READ_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_fences!("rw_read_acquire.lua")));
static RW_WRITE_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_fences!("rw_write_acquire.lua")));
static RW_READ_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("rw_read_release.lua")));
static RW_WRITE_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("rw_write_release.lua")));
static RW_READ_EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("rw_read_extend.lua")));
static FAIR_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_fences!("fair_acquire.lua")));
static FAIR_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("fair_release.lua")));
static SEM_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_fences!("sem_acquire.lua")));
static SEM_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("sem_release.lua")));
static SEM_FAIR_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_fences!("sem_fair_acquire.lua")));
static SEM_FAIR_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("sem_fair_release.lua")));
static SEM_EXTEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("sem_extend.lua")));

/// One operation of a batch (plain leases only).
#[derive(Debug, Clone, Copy)]
pub(crate) enum BatchOp {
    /// Take the lease for this many milliseconds.
    Acquire { ttl_ms: u64 },
    /// Give it back.
    Release,
}

/// batch(N1, fence1 or wake1, N2, ...; op1, token1, ttl1 or publisher, ...)
/// -> one pair of integers per operation, in order: an acquire's reply as
/// [`acquire`]'s, a release's `(released, 0)`, or `(-9, 0)` for one that
/// raised an error. See `scripts/batch.lua` and [`crate::batch`].
pub(crate) async fn batch(
    conn: &mut impl ConnectionLike,
    ops: &[(BatchOp, &LeaseKeys, &[u8])],
    publisher: &[u8],
) -> RedisResult<Vec<(i64, i64)>> {
    let flat: Vec<i64> = BATCH
        .call(conn, |c| {
            c.arg(2 * ops.len());
            for (op, keys, _) in ops {
                c.arg(keys.name());
                match op {
                    BatchOp::Acquire { .. } => c.arg(keys.fence()),
                    BatchOp::Release => c.arg(&**keys.wake()),
                };
            }
            for (op, _, token) in ops {
                match op {
                    BatchOp::Acquire { ttl_ms } => c.arg("a").arg(*token).arg(*ttl_ms),
                    BatchOp::Release => c.arg("r").arg(*token).arg(publisher),
                };
            }
        })
        .await?;
    if flat.len() != 2 * ops.len() {
        return Err(std::io::Error::other(format!(
            "the batch script answered {} integers for {} operations",
            flat.len(),
            ops.len()
        ))
        .into());
    }
    Ok(flat.chunks(2).map(|p| (p[0], p[1])).collect())
}

/// What a waiting acquire tells the script about itself.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WaitInfo<'a> {
    /// Write lock: how long a waiting writer's intent lives (0: no intent).
    pub(crate) intent_ms: u64,
    /// Fair lease or semaphore: the waiter's id in the queue.
    pub(crate) waiter_id: &'a str,
    /// Fair lease or semaphore: how long the waiter keeps its place in the
    /// queue unless it comes back (0: it will not wait).
    pub(crate) patience_ms: u64,
}

/// The reply of the acquire script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Taken; the fencing token.
    Yes(u64),
    /// Held by another token; its PTTL in ms (-1: no TTL). For a
    /// semaphore: all permits held, the earliest expires in this many ms.
    No(i64),
    /// A semaphore's permits are in use with another limit.
    LimitMismatch(u32),
}

/// Lease: acquire(N, fence; token, ttl_ms) -> {1, fence} | {0, pttl}.
/// Permit: sem_acquire(permits, limit, fence, fences; token, ttl_ms, K) ->
/// the same, or {-1, K'} on a limit mismatch; in fair mode
/// sem_fair_acquire(permits, limit, fence, queue, deadlines, ticket,
/// fences; token, ttl_ms, K, waiter id, patience_ms). Fair lease:
/// fair_acquire(N, fence, queue, deadlines, ticket; token, ttl_ms, waiter
/// id, patience_ms). Read / write: rw_*_acquire; a waiting writer's intent
/// lives `intent_ms`. Every fence follows `fence.lua`'s rule.
pub(crate) async fn acquire(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
    token: &[u8],
    ttl_ms: u64,
    wait: &WaitInfo<'_>,
) -> RedisResult<Acquired> {
    let (ok, n): (i64, i64) = match keys.kind() {
        Kind::Lease => {
            ACQUIRE
                .call(conn, |c| {
                    c.arg(2)
                        .arg(keys.name())
                        .arg(keys.fence())
                        .arg(token)
                        .arg(ttl_ms);
                })
                .await?
        }
        Kind::Permit {
            permits,
            limit_key,
            fences,
            limit,
            fair: Some(q),
        } => {
            SEM_FAIR_ACQUIRE
                .call(conn, |c| {
                    c.arg(7)
                        .arg(&**permits)
                        .arg(&**limit_key)
                        .arg(keys.fence())
                        .arg(&*q.queue)
                        .arg(&*q.deadlines)
                        .arg(&*q.ticket)
                        .arg(&**fences)
                        .arg(token)
                        .arg(ttl_ms)
                        .arg(*limit)
                        .arg(wait.waiter_id)
                        .arg(wait.patience_ms);
                })
                .await?
        }
        Kind::Permit {
            permits,
            limit_key,
            fences,
            limit,
            fair: None,
        } => {
            SEM_ACQUIRE
                .call(conn, |c| {
                    c.arg(4)
                        .arg(&**permits)
                        .arg(&**limit_key)
                        .arg(keys.fence())
                        .arg(&**fences)
                        .arg(token)
                        .arg(ttl_ms)
                        .arg(*limit);
                })
                .await?
        }
        Kind::Fair(q) => {
            FAIR_ACQUIRE
                .call(conn, |c| {
                    c.arg(5)
                        .arg(keys.name())
                        .arg(keys.fence())
                        .arg(&*q.queue)
                        .arg(&*q.deadlines)
                        .arg(&*q.ticket)
                        .arg(token)
                        .arg(ttl_ms)
                        .arg(wait.waiter_id)
                        .arg(wait.patience_ms);
                })
                .await?
        }
        Kind::Read(rw) => {
            RW_READ_ACQUIRE
                .call(conn, |c| {
                    c.arg(5)
                        .arg(&*rw.readers)
                        .arg(&*rw.writer)
                        .arg(&*rw.intent)
                        .arg(keys.fence())
                        .arg(&*rw.fences)
                        .arg(token)
                        .arg(ttl_ms);
                })
                .await?
        }
        Kind::Write(rw) => {
            RW_WRITE_ACQUIRE
                .call(conn, |c| {
                    c.arg(4)
                        .arg(&*rw.readers)
                        .arg(&*rw.writer)
                        .arg(&*rw.intent)
                        .arg(keys.fence())
                        .arg(token)
                        .arg(ttl_ms)
                        .arg(wait.intent_ms);
                })
                .await?
        }
    };
    Ok(acquired(ok, n))
}

/// An acquire script's reply `{ok, n}` as [`Acquired`].
pub(crate) fn acquired(ok: i64, n: i64) -> Acquired {
    match ok {
        1 => Acquired::Yes(n.max(0) as u64),
        -1 => Acquired::LimitMismatch(n.clamp(0, u32::MAX as i64) as u32),
        _ => Acquired::No(n),
    }
}

/// What a release script did, and whether the caller must wake its own
/// local waiters: the script's publish of the caller's id comes back to
/// the caller's subscriber, which skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Released {
    /// The token held nothing; nothing changed, nobody was told.
    NotHeld,
    /// Released; the publish carries the caller's id: wake local waiters.
    Yes,
    /// Released; the publish names each waiter whose turn it is, in
    /// whichever process (fair mode), and nobody else may take it.
    Named,
    /// Not held, but the token's writer intent was withdrawn: readers held
    /// back by it may go in, so wake local waiters.
    Withdrawn,
}

impl Released {
    /// Whether the token held the lease (or permit) and gave it back.
    pub(crate) fn released(self) -> bool {
        matches!(self, Released::Yes | Released::Named)
    }

    /// Whether the caller must wake its local waiters itself.
    pub(crate) fn wakes_local(self) -> bool {
        matches!(self, Released::Yes | Released::Withdrawn)
    }
}

/// release(N, wake; token, publisher id) -> [`Released`]. Each kind has its
/// own script; fair ones (fair_release, sem_fair_release) publish the ids
/// of the waiters whose turn it is, and the publisher id only when some of
/// what was freed is owed to nobody queued (their reply 2); a writer's
/// release withdraws its intent even when it no longer holds the lock
/// (reply 2).
pub(crate) async fn release(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
    token: &[u8],
    publisher: &[u8],
) -> RedisResult<Released> {
    let n: i64 = match keys.kind() {
        Kind::Lease => {
            RELEASE
                .call(conn, |c| {
                    c.arg(2)
                        .arg(keys.name())
                        .arg(&**keys.wake())
                        .arg(token)
                        .arg(publisher);
                })
                .await?
        }
        Kind::Permit {
            permits,
            limit_key,
            limit,
            fences,
            fair: Some(q),
        } => {
            SEM_FAIR_RELEASE
                .call(conn, |c| {
                    c.arg(6)
                        .arg(&**permits)
                        .arg(&**keys.wake())
                        .arg(&**limit_key)
                        .arg(&*q.queue)
                        .arg(&*q.deadlines)
                        .arg(&**fences)
                        .arg(token)
                        .arg(publisher)
                        .arg(*limit);
                })
                .await?
        }
        Kind::Permit {
            permits,
            limit_key,
            fences,
            fair: None,
            ..
        } => {
            SEM_RELEASE
                .call(conn, |c| {
                    c.arg(4)
                        .arg(&**permits)
                        .arg(&**keys.wake())
                        .arg(&**limit_key)
                        .arg(&**fences)
                        .arg(token)
                        .arg(publisher);
                })
                .await?
        }
        Kind::Fair(q) => {
            FAIR_RELEASE
                .call(conn, |c| {
                    c.arg(4)
                        .arg(keys.name())
                        .arg(&**keys.wake())
                        .arg(&*q.queue)
                        .arg(&*q.deadlines)
                        .arg(token)
                        .arg(publisher);
                })
                .await?
        }
        Kind::Read(rw) => {
            RW_READ_RELEASE
                .call(conn, |c| {
                    c.arg(3)
                        .arg(&*rw.readers)
                        .arg(&**keys.wake())
                        .arg(&*rw.fences)
                        .arg(token)
                        .arg(publisher);
                })
                .await?
        }
        Kind::Write(rw) => {
            RW_WRITE_RELEASE
                .call(conn, |c| {
                    c.arg(3)
                        .arg(&*rw.writer)
                        .arg(&*rw.intent)
                        .arg(&**keys.wake())
                        .arg(token)
                        .arg(publisher);
                })
                .await?
        }
    };
    Ok(match (n, keys.kind()) {
        (0, _) => Released::NotHeld,
        (1, Kind::Fair(_) | Kind::Permit { fair: Some(_), .. }) => Released::Named,
        (2, Kind::Write(_)) => Released::Withdrawn,
        _ => Released::Yes,
    })
}

/// What the handover script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandedOver {
    /// The next owner holds the lease, with this fence.
    To(u64),
    /// Other clients wait too: the lease was freed and every client told.
    Freed,
    /// `token` did not hold the lease: nothing changed.
    NotHeld,
}

/// handover(N, fence, wake; token, next token, next ttl_ms, tolerated
/// subscribers, freed payload). Plain leases only.
pub(crate) async fn handover(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
    token: &[u8],
    next: &[u8],
    next_ttl_ms: u64,
    tolerated: u32,
    freed_payload: &[u8],
) -> RedisResult<HandedOver> {
    debug_assert!(matches!(keys.kind(), Kind::Lease));
    let reply: i64 = HANDOVER
        .call(conn, |c| {
            c.arg(3)
                .arg(keys.name())
                .arg(keys.fence())
                .arg(&**keys.wake())
                .arg(token)
                .arg(next)
                .arg(next_ttl_ms)
                .arg(tolerated)
                .arg(freed_payload);
        })
        .await?;
    Ok(match reply {
        f if f > 0 => HandedOver::To(f as u64),
        -1 => HandedOver::Freed,
        _ => HandedOver::NotHeld,
    })
}

/// fair_leave(queue, deadlines, wake; waiter id, front) -> was queued? For
/// fair leases and fair semaphores only (a no-op for other kinds).
pub(crate) async fn fair_leave(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
    waiter_id: &str,
) -> RedisResult<bool> {
    let (q, front) = match keys.kind() {
        Kind::Fair(q) => (q, 1),
        Kind::Permit {
            fair: Some(q),
            limit,
            ..
        } => (q, *limit),
        _ => return Ok(false),
    };
    let n: i64 = FAIR_LEAVE
        .call(conn, |c| {
            c.arg(3)
                .arg(&*q.queue)
                .arg(&*q.deadlines)
                .arg(&**keys.wake())
                .arg(waiter_id)
                .arg(front);
        })
        .await?;
    Ok(n == 1)
}

/// extend(N; token, ttl_ms) -> extended?
pub(crate) async fn extend(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
    token: &[u8],
    ttl_ms: u64,
) -> RedisResult<bool> {
    let n: i64 = match keys.kind() {
        Kind::Lease | Kind::Fair(_) => {
            EXTEND
                .call(conn, |c| {
                    c.arg(1).arg(keys.name()).arg(token).arg(ttl_ms);
                })
                .await?
        }
        Kind::Permit {
            permits,
            limit_key,
            fences,
            ..
        } => {
            SEM_EXTEND
                .call(conn, |c| {
                    c.arg(3)
                        .arg(&**permits)
                        .arg(&**limit_key)
                        .arg(&**fences)
                        .arg(token)
                        .arg(ttl_ms);
                })
                .await?
        }
        Kind::Read(rw) => {
            RW_READ_EXTEND
                .call(conn, |c| {
                    c.arg(2)
                        .arg(&*rw.readers)
                        .arg(&*rw.fences)
                        .arg(token)
                        .arg(ttl_ms);
                })
                .await?
        }
        Kind::Write(rw) => {
            EXTEND
                .call(conn, |c| {
                    c.arg(1).arg(&*rw.writer).arg(token).arg(ttl_ms);
                })
                .await?
        }
    };
    Ok(n == 1)
}
