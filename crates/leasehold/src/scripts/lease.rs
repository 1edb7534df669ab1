//! The plain lease: acquire, release, extend, handover, and many of them
//! in one batch.

use std::sync::LazyLock;

use redis::RedisResult;
use redis::aio::ConnectionLike;

use super::{Acquired, Lua, Pubsub, Released, Waking, acquired};
use crate::keys::{Family, LeaseKeys};

static ACQUIRE: LazyLock<Lua> = LazyLock::new(|| Lua::new(with_lease_ops!("acquire.lua")));
static RELEASE: LazyLock<Waking> =
    LazyLock::new(|| waking!(fences, "lease_ops.lua", "release.lua"));
static BATCH: LazyLock<Lua> = LazyLock::new(|| Lua::new(with_lease_ops!("batch.lua")));
static BATCH_NODE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(concat!(
        include_str!("fence.lua"),
        include_str!("wake_sharded.lua"),
        include_str!("lease_ops.lua"),
        include_str!("batch_node.lua")
    ))
});
static EXTEND: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("extend.lua")));
static HANDOVER: LazyLock<Waking> = LazyLock::new(|| waking!(fences, "handover.lua"));
static RAISE_FENCE: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("raise_fence.lua")));
static BUMP_FENCE: LazyLock<Lua> = LazyLock::new(|| Lua::new(with_fences!("bump_fence.lua")));

/// The plain lease's scripts that Redlock runs.
pub(super) fn redlock_scripts() -> Vec<&'static Lua> {
    vec![
        &*ACQUIRE,
        RELEASE.get(Pubsub::Classic),
        &*EXTEND,
        HANDOVER.get(Pubsub::Classic),
        &*RAISE_FENCE,
    ]
}

/// acquire(N, fence; token, ttl_ms) -> {1, fence} | {0, pttl}.
pub(super) async fn acquire(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
    token: &[u8],
    ttl_ms: u64,
) -> RedisResult<Acquired> {
    let (ok, n): (i64, i64) = ACQUIRE
        .call(conn, &[keys.name(), keys.fence()], |argv| {
            argv.arg(token).arg(ttl_ms);
        })
        .await?;
    Ok(acquired(ok, n))
}

/// release(N, wake; token, publisher id) -> 1 released, 0 not held.
pub(super) async fn release(
    conn: &mut impl ConnectionLike,
    pubsub: Pubsub,
    keys: &LeaseKeys,
    token: &[u8],
    publisher: &[u8],
) -> RedisResult<Released> {
    let n: i64 = RELEASE
        .get(pubsub)
        .call(conn, &[keys.name(), keys.wake()], |argv| {
            argv.arg(token).arg(publisher);
        })
        .await?;
    Ok(match n {
        0 => Released::NotHeld,
        _ => Released::Yes,
    })
}

/// extend(key; token, ttl_ms) -> extended? `key` is a string holding the
/// token: a lease, a fair lease or the writer of a read-write lock.
pub(super) async fn extend(
    conn: &mut impl ConnectionLike,
    key: &[u8],
    token: &[u8],
    ttl_ms: u64,
) -> RedisResult<bool> {
    let n: i64 = EXTEND
        .call(conn, &[key], |argv| {
            argv.arg(token).arg(ttl_ms);
        })
        .await?;
    Ok(n == 1)
}

/// raise_fence(fence counter; fence): lifts `keys`' fencing counter to at
/// least `fence` (Redlock: see `backend::redlock`). Any kind of name.
pub(crate) async fn raise_fence(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
    fence: u64,
) -> RedisResult<()> {
    let _: i64 = RAISE_FENCE
        .call(conn, &[keys.fence()], |argv| {
            argv.arg(fence);
        })
        .await?;
    Ok(())
}

/// bump_fence(fence counter): moves `keys`' fencing counter past every
/// fence granted so far, as a grant would; answers the counter now. Any
/// kind of name.
pub(crate) async fn bump_fence(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
) -> RedisResult<u64> {
    BUMP_FENCE.call(conn, &[keys.fence()], |_| {}).await
}

/// What the handover script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandoverReply {
    /// The next owner holds the lease, with this fence.
    To(u64),
    /// Other clients wait too: the lease was freed and every client told.
    Freed,
    /// `token` did not hold the lease: nothing changed.
    NotHeld,
}

/// Whom a hand-over gives the lease to, and when it may.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Next<'a> {
    /// The next owner's token.
    pub(crate) token: &'a [u8],
    /// The ttl to set for it, in ms.
    pub(crate) ttl_ms: u64,
    /// How many other listeners on the wake channel still allow a
    /// hand-over (this client's own subscriptions).
    pub(crate) tolerated: u32,
}

/// handover(N, fence, wake; token, next token, next ttl_ms, tolerated
/// subscribers, freed payload). Plain leases only.
pub(crate) async fn handover(
    conn: &mut impl ConnectionLike,
    pubsub: Pubsub,
    keys: &LeaseKeys,
    token: &[u8],
    next: Next<'_>,
    freed_payload: &[u8],
) -> RedisResult<HandoverReply> {
    debug_assert!(matches!(keys.family(), Family::Lease));
    let reply: i64 = HANDOVER
        .get(pubsub)
        .call(conn, &[keys.name(), keys.fence(), keys.wake()], |argv| {
            argv.arg(token)
                .arg(next.token)
                .arg(next.ttl_ms)
                .arg(next.tolerated)
                .arg(freed_payload);
        })
        .await?;
    Ok(match reply {
        f if f > 0 => HandoverReply::To(f as u64),
        -1 => HandoverReply::Freed,
        _ => HandoverReply::NotHeld,
    })
}

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
/// raised an error. See `batch.lua` and `backend::batch`.
pub(crate) async fn batch(
    conn: &mut impl ConnectionLike,
    ops: &[(BatchOp, &LeaseKeys, &[u8])],
    publisher: &[u8],
) -> RedisResult<Vec<(i64, i64)>> {
    let keys: Vec<&[u8]> = ops
        .iter()
        .flat_map(|(op, keys, _)| {
            let second: &[u8] = match op {
                BatchOp::Acquire { .. } => keys.fence(),
                BatchOp::Release => keys.wake(),
            };
            [keys.name(), second]
        })
        .collect();
    let flat: Vec<i64> = BATCH
        .call(conn, &keys, |argv| {
            for (op, _, token) in ops {
                match op {
                    BatchOp::Acquire { ttl_ms } => argv.arg("a").arg(*token).arg(*ttl_ms),
                    BatchOp::Release => argv.arg("r").arg(*token).arg(publisher),
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

/// batch_node(; N1, fence1 or wake1, op1, token1, ttl1 or publisher, ...)
/// -> as [`batch`]: for one node of a cluster, no keys declared (see
/// `batch_node.lua`); `conn` must send it to the node that serves every
/// name. An operation whose key the node does not serve answers `(-9, 0)`.
pub(crate) async fn batch_on_node(
    conn: &mut impl ConnectionLike,
    ops: &[(BatchOp, &LeaseKeys, &[u8])],
    publisher: &[u8],
) -> RedisResult<Vec<(i64, i64)>> {
    let flat: Vec<i64> = BATCH_NODE
        .call(conn, &[], |argv| {
            for (op, keys, token) in ops {
                argv.arg(keys.name());
                match op {
                    BatchOp::Acquire { ttl_ms } => {
                        argv.arg(keys.fence()).arg("a").arg(*token).arg(*ttl_ms)
                    }
                    BatchOp::Release => argv.arg(keys.wake()).arg("r").arg(*token).arg(publisher),
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
