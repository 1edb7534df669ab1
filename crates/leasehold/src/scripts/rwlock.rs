//! The read-write lock: readers in a sorted set, one writer in a string,
//! and the intent of a waiting writer that keeps new readers out. A
//! writer's extend is the plain lease's.

use std::sync::LazyLock;

use redis::RedisResult;
use redis::aio::ConnectionLike;

use super::{Acquired, Lua, Pubsub, Released, Waking, acquired};
use crate::keys::{LeaseKeys, RwKeys};

static RW_READ_ACQUIRE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(with_fences!("rw_read_acquire.lua")));
static RW_WRITE_ACQUIRE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(with_fences!("rw_write_acquire.lua")));
static RW_READ_RELEASE: LazyLock<Waking> = LazyLock::new(|| waking!("rw_read_release.lua"));
static RW_WRITE_RELEASE: LazyLock<Waking> = LazyLock::new(|| waking!("rw_write_release.lua"));
static RW_READ_EXTEND: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("rw_read_extend.lua")));

/// rw_read_acquire(readers, writer, intent, fence, fences; token, ttl_ms)
/// -> {1, fence} | {0, pttl}.
pub(super) async fn rw_read_acquire(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
    rw: &RwKeys,
    token: &[u8],
    ttl_ms: u64,
) -> RedisResult<Acquired> {
    let (ok, n): (i64, i64) = RW_READ_ACQUIRE
        .call(
            conn,
            &[
                &rw.readers,
                &rw.writer,
                &rw.intent,
                keys.fence(),
                &rw.fences,
            ],
            |argv| {
                argv.arg(token).arg(ttl_ms);
            },
        )
        .await?;
    Ok(acquired(ok, n))
}

/// rw_write_acquire(readers, writer, intent, fence; token, ttl_ms,
/// intent_ms) -> {1, fence} | {0, pttl}; a waiting writer's intent lives
/// `intent_ms` (0: it leaves none).
pub(super) async fn rw_write_acquire(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
    rw: &RwKeys,
    token: &[u8],
    ttl_ms: u64,
    intent_ms: u64,
) -> RedisResult<Acquired> {
    let (ok, n): (i64, i64) = RW_WRITE_ACQUIRE
        .call(
            conn,
            &[&rw.readers, &rw.writer, &rw.intent, keys.fence()],
            |argv| {
                argv.arg(token).arg(ttl_ms).arg(intent_ms);
            },
        )
        .await?;
    Ok(acquired(ok, n))
}

/// rw_read_release(readers, wake, fences; token, publisher id) -> 1
/// released, 0 not held.
pub(super) async fn rw_read_release(
    conn: &mut impl ConnectionLike,
    pubsub: Pubsub,
    keys: &LeaseKeys,
    rw: &RwKeys,
    token: &[u8],
    publisher: &[u8],
) -> RedisResult<Released> {
    let n: i64 = RW_READ_RELEASE
        .get(pubsub)
        .call(conn, &[&rw.readers, keys.wake(), &rw.fences], |argv| {
            argv.arg(token).arg(publisher);
        })
        .await?;
    Ok(match n {
        0 => Released::NotHeld,
        _ => Released::Yes,
    })
}

/// rw_write_release(writer, intent, wake; token, publisher id) -> 1
/// released, 2 not held but the token's intent withdrawn, 0 neither. The
/// intent goes even when the lock is no longer held.
pub(super) async fn rw_write_release(
    conn: &mut impl ConnectionLike,
    pubsub: Pubsub,
    keys: &LeaseKeys,
    rw: &RwKeys,
    token: &[u8],
    publisher: &[u8],
) -> RedisResult<Released> {
    let n: i64 = RW_WRITE_RELEASE
        .get(pubsub)
        .call(conn, &[&rw.writer, &rw.intent, keys.wake()], |argv| {
            argv.arg(token).arg(publisher);
        })
        .await?;
    Ok(match n {
        0 => Released::NotHeld,
        2 => Released::Withdrawn,
        _ => Released::Yes,
    })
}

/// rw_read_extend(readers, fences; token, ttl_ms) -> extended?
pub(super) async fn rw_read_extend(
    conn: &mut impl ConnectionLike,
    rw: &RwKeys,
    token: &[u8],
    ttl_ms: u64,
) -> RedisResult<bool> {
    let n: i64 = RW_READ_EXTEND
        .call(conn, &[&rw.readers, &rw.fences], |argv| {
            argv.arg(token).arg(ttl_ms);
        })
        .await?;
    Ok(n == 1)
}
