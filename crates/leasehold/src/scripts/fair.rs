//! The fair (FIFO) lease: waiters stand in a queue in Redis, and a release
//! names the waiter whose turn it is. Its extend is the plain lease's.

use std::sync::LazyLock;

use redis::RedisResult;
use redis::aio::ConnectionLike;

use super::{Acquired, Lua, Pubsub, Released, WaitInfo, Waking, acquired};
use crate::keys::{FairQueue, Family, LeaseKeys};

static FAIR_ACQUIRE: LazyLock<Lua> = LazyLock::new(|| Lua::new(with_fences!("fair_acquire.lua")));
static FAIR_RELEASE: LazyLock<Waking> = LazyLock::new(|| waking!("fair_release.lua"));
static FAIR_LEAVE: LazyLock<Waking> = LazyLock::new(|| waking!("fair_leave.lua"));

/// fair_acquire(N, fence, queue, deadlines, ticket; token, ttl_ms, waiter
/// id, patience_ms) -> {1, fence} | {0, pttl}.
pub(super) async fn fair_acquire(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
    q: &FairQueue,
    token: &[u8],
    ttl_ms: u64,
    wait: &WaitInfo<'_>,
) -> RedisResult<Acquired> {
    let (ok, n): (i64, i64) = FAIR_ACQUIRE
        .call(
            conn,
            &[keys.name(), keys.fence(), &q.queue, &q.deadlines, &q.ticket],
            |argv| {
                argv.arg(token)
                    .arg(ttl_ms)
                    .arg(wait.waiter_id)
                    .arg(wait.patience_ms);
            },
        )
        .await?;
    Ok(acquired(ok, n))
}

/// fair_release(N, wake, queue, deadlines; token, publisher id) -> 1
/// released and the head waiter named, 2 released with nobody queued (the
/// publisher id published), 0 not held.
pub(super) async fn fair_release(
    conn: &mut impl ConnectionLike,
    pubsub: Pubsub,
    keys: &LeaseKeys,
    q: &FairQueue,
    token: &[u8],
    publisher: &[u8],
) -> RedisResult<Released> {
    let n: i64 = FAIR_RELEASE
        .get(pubsub)
        .call(
            conn,
            &[keys.name(), keys.wake(), &q.queue, &q.deadlines],
            |argv| {
                argv.arg(token).arg(publisher);
            },
        )
        .await?;
    Ok(named(n))
}

/// A fair release's reply (fair_release, sem_fair_release) as [`Released`].
pub(super) fn named(n: i64) -> Released {
    match n {
        0 => Released::NotHeld,
        1 => Released::Named,
        _ => Released::Yes,
    }
}

/// fair_leave(queue, deadlines, wake; waiter id, front) -> was queued? For
/// fair leases and fair semaphores only (a no-op for other kinds).
pub(crate) async fn fair_leave(
    conn: &mut impl ConnectionLike,
    pubsub: Pubsub,
    keys: &LeaseKeys,
    waiter_id: &str,
) -> RedisResult<bool> {
    let (q, front) = match keys.family() {
        Family::Fair(q) => (q, 1),
        Family::Permit {
            fair: Some(q),
            limit,
            ..
        } => (q, *limit),
        _ => return Ok(false),
    };
    let n: i64 = FAIR_LEAVE
        .get(pubsub)
        .call(conn, &[&q.queue, &q.deadlines, keys.wake()], |argv| {
            argv.arg(waiter_id).arg(front);
        })
        .await?;
    Ok(n == 1)
}
