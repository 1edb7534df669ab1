//! The semaphore: each holder holds one of K permits, members of a sorted
//! set that expire by the server's clock; in fair mode, in arrival order.

use std::sync::LazyLock;

use redis::RedisResult;
use redis::aio::ConnectionLike;

use super::fair::named;
use super::{Acquired, Lua, Pubsub, Released, WaitInfo, Waking, acquired};
use crate::keys::{FairQueue, Family, LeaseKeys};

static SEM_ACQUIRE: LazyLock<Lua> = LazyLock::new(|| Lua::new(with_fences!("sem_acquire.lua")));
static SEM_RELEASE: LazyLock<Waking> = LazyLock::new(|| waking!("sem_release.lua"));
static SEM_FAIR_ACQUIRE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(with_fences!("sem_fair_acquire.lua")));
static SEM_FAIR_RELEASE: LazyLock<Waking> = LazyLock::new(|| waking!("sem_fair_release.lua"));
static SEM_EXTEND: LazyLock<Lua> = LazyLock::new(|| Lua::new(include_str!("sem_extend.lua")));

/// The plain semaphore's scripts that Redlock runs.
pub(super) fn redlock_scripts() -> Vec<&'static Lua> {
    vec![
        &*SEM_ACQUIRE,
        SEM_RELEASE.get(Pubsub::Classic),
        &*SEM_EXTEND,
    ]
}

/// The keys of a semaphore's permit, taken out of its `Family::Permit`.
pub(super) struct Permit<'a> {
    /// For the fencing counter and the wake channel.
    pub(super) keys: &'a LeaseKeys,
    pub(super) permits: &'a [u8],
    pub(super) limit_key: &'a [u8],
    pub(super) fences: &'a [u8],
    /// K
    pub(super) limit: u32,
}

impl<'a> Permit<'a> {
    /// The permit view of a semaphore's keys.
    ///
    /// # Panics
    ///
    /// If `keys` are not a semaphore's: the callers match on the family
    /// first.
    pub(super) fn of(keys: &'a LeaseKeys) -> Permit<'a> {
        let Family::Permit {
            permits,
            limit_key,
            fences,
            limit,
            ..
        } = keys.family()
        else {
            unreachable!("a permit view of keys that are not a semaphore's")
        };
        Permit {
            keys,
            permits,
            limit_key,
            fences,
            limit: *limit,
        }
    }
}

/// sem_acquire(permits, limit, fence, fences; token, ttl_ms, K) -> {1,
/// fence} | {0, pttl of the earliest permit} | {-1, K'} on a limit
/// mismatch.
pub(super) async fn sem_acquire(
    conn: &mut impl ConnectionLike,
    p: &Permit<'_>,
    token: &[u8],
    ttl_ms: u64,
) -> RedisResult<Acquired> {
    let (ok, n): (i64, i64) = SEM_ACQUIRE
        .call(
            conn,
            &[p.permits, p.limit_key, p.keys.fence(), p.fences],
            |argv| {
                argv.arg(token).arg(ttl_ms).arg(p.limit);
            },
        )
        .await?;
    Ok(acquired(ok, n))
}

/// sem_fair_acquire(permits, limit, fence, queue, deadlines, ticket,
/// fences; token, ttl_ms, K, waiter id, patience_ms) -> as [`sem_acquire`].
pub(super) async fn sem_fair_acquire(
    conn: &mut impl ConnectionLike,
    p: &Permit<'_>,
    q: &FairQueue,
    token: &[u8],
    ttl_ms: u64,
    wait: &WaitInfo<'_>,
) -> RedisResult<Acquired> {
    let keys = [
        p.permits,
        p.limit_key,
        p.keys.fence(),
        &q.queue,
        &q.deadlines,
        &q.ticket,
        p.fences,
    ];
    let (ok, n): (i64, i64) = SEM_FAIR_ACQUIRE
        .call(conn, &keys, |argv| {
            argv.arg(token)
                .arg(ttl_ms)
                .arg(p.limit)
                .arg(wait.waiter_id)
                .arg(wait.patience_ms);
        })
        .await?;
    Ok(acquired(ok, n))
}

/// sem_release(permits, wake, limit, fences; token, publisher id) -> 1
/// released, 0 not held.
pub(super) async fn sem_release(
    conn: &mut impl ConnectionLike,
    pubsub: Pubsub,
    p: &Permit<'_>,
    token: &[u8],
    publisher: &[u8],
) -> RedisResult<Released> {
    let n: i64 = SEM_RELEASE
        .get(pubsub)
        .call(
            conn,
            &[p.permits, p.keys.wake(), p.limit_key, p.fences],
            |argv| {
                argv.arg(token).arg(publisher);
            },
        )
        .await?;
    Ok(match n {
        0 => Released::NotHeld,
        _ => Released::Yes,
    })
}

/// sem_fair_release(permits, wake, limit, queue, deadlines, fences; token,
/// publisher id, K) -> as [`fair_release`](super::fair::fair_release): the
/// publisher id only when some freed permit is owed to nobody queued.
pub(super) async fn sem_fair_release(
    conn: &mut impl ConnectionLike,
    pubsub: Pubsub,
    p: &Permit<'_>,
    q: &FairQueue,
    token: &[u8],
    publisher: &[u8],
) -> RedisResult<Released> {
    let keys = [
        p.permits,
        p.keys.wake(),
        p.limit_key,
        &q.queue,
        &q.deadlines,
        p.fences,
    ];
    let n: i64 = SEM_FAIR_RELEASE
        .get(pubsub)
        .call(conn, &keys, |argv| {
            argv.arg(token).arg(publisher).arg(p.limit);
        })
        .await?;
    Ok(named(n))
}

/// sem_extend(permits, limit, fences; token, ttl_ms) -> extended?
pub(super) async fn sem_extend(
    conn: &mut impl ConnectionLike,
    p: &Permit<'_>,
    token: &[u8],
    ttl_ms: u64,
) -> RedisResult<bool> {
    let n: i64 = SEM_EXTEND
        .call(conn, &[p.permits, p.limit_key, p.fences], |argv| {
            argv.arg(token).arg(ttl_ms);
        })
        .await?;
    Ok(n == 1)
}
