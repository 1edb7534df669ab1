//! The fair (FIFO) lease: waiters stand in a queue in Redis, each with its
//! claim (owner token and ttl), and a release gives the lease to the
//! waiter whose turn it is in the release script itself. Its extend is the
//! plain lease's.
//!
//! # The hand-over, across processes, in one script
//!
//! A fair waiter that will wait joins the queue with its first refused
//! `fair_acquire`, leaving its place (arrival ticket), its deadline (server
//! ms: now + its patience, refreshed by each attempt) and its claim: the
//! owner token it drew beforehand, its ttl, and the number of the attempt
//! (each attempt of a waiter is numbered). `fair_release` checks the
//! releaser's token, drops the waiters past their deadline if the head is
//! one of them, and sets the lease to the head's token (over the released
//! one) for its *claim window*, `min(ttl, deadline - now)`, with the next
//! fence; the head
//! leaves the queue and alone is told, `g:<id>:<fence>:<attempt>` on the
//! wake channel. The waiter sends nothing: it holds the lease from then on.
//! A head of the releasing client itself (its id ends with that client's
//! mark, see [`waiter_id`]) is told by the script's reply alone, which the
//! client reads: nothing is published.
//!
//! - Its guard counts its validity from what the waiter knows: the lease
//!   lives at least `min(ttl, patience)` from the send of the attempt the
//!   grant names, the one that set the deadline in force (the release came
//!   after that attempt ran, and the deadline is that attempt's server
//!   time + patience), less the drift margin. Naming the attempt makes
//!   this hold however the message and the replies of later attempts are
//!   ordered: a grant whose window, so counted, has passed (a message that
//!   came late) is confirmed by an attempt first. Its first renewal,
//!   within a third of the window, lengthens the lease to the full ttl off
//!   the critical path.
//! - A head that died while queued holds the lease no longer than its place
//!   would have blocked the queue anyway: until its deadline.
//! - A lost message (a subscriber reconnecting), or, for a head of the
//!   releasing client, a lost reply: the waiter's fallback timer runs
//!   `fair_acquire`, which finds the lease holding its token and answers
//!   the fence of that grant. (A client whose reply is lost wakes its
//!   local head at once, which is most often the one.)
//! - A waiter that gives up after the grant and before it took it:
//!   `fair_cancel` (sent on cancel) releases the lease its token holds and
//!   hands it on to the next head, in the same script.
//! - A head that left no claim (a client of an older version) is named
//!   (`w:<id>`), and tries for itself, as before.
//!
//! Fair semaphores keep their own rule (`sem_fair_release` names the
//! waiters, which try for themselves); they leave with `fair_leave`.

use std::sync::LazyLock;

use redis::RedisResult;
use redis::aio::ConnectionLike;

use super::{Acquired, Lua, Pubsub, Released, WaitInfo, Waking, acquired};
use crate::keys::{FairQueue, Family, LeaseKeys};
use crate::token::Token;

static FAIR_ACQUIRE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(with_fences!("fair_queue.lua", "fair_acquire.lua")));
static FAIR_RELEASE: LazyLock<Waking> = LazyLock::new(|| {
    waking!(
        fences,
        "fair_queue.lua",
        "fair_hand_on.lua",
        "fair_release.lua"
    )
});
static FAIR_CANCEL: LazyLock<Waking> = LazyLock::new(|| {
    waking!(
        fences,
        "fair_queue.lua",
        "fair_hand_on.lua",
        "fair_cancel.lua"
    )
});
static FAIR_LEAVE: LazyLock<Waking> = LazyLock::new(|| waking!("fair_leave.lua"));

/// How many hex digits of a client's id mark the ids of its fair waiters
/// (the last ones of each): 64 bits, so that no two clients share a mark
/// but by a chance that does not happen; the other 64 of a waiter's id are
/// random. (Were two to share one, a waiter of the one not releasing would
/// miss a grant's message and find the grant by its fallback timer.)
const MARK: usize = 16;

/// The mark of the client whose id is `publisher` (see [`waiter_id`]).
fn mark(publisher: &[u8]) -> &[u8] {
    &publisher[publisher.len().saturating_sub(MARK)..]
}

/// A new id for a fair waiter of the client whose id is `publisher`: it
/// ends with that client's mark. A release or leave by that client that
/// gives the lease to this waiter publishes nothing (`g:` would only come
/// back to the client that granted the waiter from the script's reply):
/// one PUBLISH, its delivery and the subscriber's wake-up less per local
/// hand-over.
pub(crate) fn waiter_id(publisher: &Token) -> Token {
    Token::random_ending_with(mark(publisher.as_bytes()))
}

/// fair_acquire(N, fence, queue, deadlines, ticket, claims; token, ttl_ms,
/// waiter id, patience_ms, attempt) -> {1, fence} | {0, pttl}.
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
            &[
                keys.name(),
                keys.fence(),
                &q.queue,
                &q.deadlines,
                &q.ticket,
                &q.claims,
            ],
            |argv| {
                argv.arg(token)
                    .arg(ttl_ms)
                    .arg(wait.waiter_id)
                    .arg(wait.patience_ms)
                    .arg(wait.attempt);
            },
        )
        .await?;
    Ok(acquired(ok, n))
}

/// fair_release(N, fence, wake, queue, deadlines, claims; token, publisher
/// id, its mark) -> {3, fence, id, attempt} granted to the head (published
/// unless `id` is the publisher's waiter's), {1, 0, id, 0} the head named,
/// {2, 0, '', 0} released with nobody queued (the publisher id published),
/// {0, 0, '', 0} not held.
pub(super) async fn fair_release(
    conn: &mut impl ConnectionLike,
    pubsub: Pubsub,
    keys: &LeaseKeys,
    q: &FairQueue,
    token: &[u8],
    publisher: &[u8],
) -> RedisResult<Released> {
    let (code, fence, id, attempt): (i64, i64, String, u64) = FAIR_RELEASE
        .get(pubsub)
        .call(
            conn,
            &[
                keys.name(),
                keys.fence(),
                keys.wake(),
                &q.queue,
                &q.deadlines,
                &q.claims,
            ],
            |argv| {
                argv.arg(token).arg(publisher).arg(mark(publisher));
            },
        )
        .await?;
    Ok(match code {
        0 => Released::NotHeld,
        2 => Released::Yes,
        _ => granted(fence, &id, attempt),
    })
}

/// A hand-over's part of a fair lease's reply: granted to the waiter `id`
/// with `fence` (> 0), from its claim of `attempt`, or `id` named.
fn granted(fence: i64, id: &str, attempt: u64) -> Released {
    match Token::parse(id) {
        Ok(to) if fence > 0 => Released::Granted {
            fence: fence as u64,
            to,
            attempt,
        },
        _ => Released::Named,
    }
}

/// A fair release's reply (sem_fair_release) as [`Released`].
pub(super) fn named(n: i64) -> Released {
    match n {
        0 => Released::NotHeld,
        1 => Released::Named,
        _ => Released::Yes,
    }
}

/// What a fair lease's waiter that gave up left behind ([`fair_leave`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Left {
    /// It stood in the queue.
    pub(crate) queued: bool,
    /// Its token held the lease (a grant it did not take), now released.
    pub(crate) released: bool,
    /// What became of the lease: [`Released::Granted`] to the next head,
    /// [`Released::Named`], or [`Released::NotHeld`] for nothing handed on.
    pub(crate) handed: Released,
}

/// Takes the waiter `waiter_id` out of `keys`' queue: for fair leases
/// fair_cancel(N, fence, wake, queue, deadlines, claims; waiter id, token,
/// the mark of `publisher`, the caller's id), which also releases a grant
/// `token` did not take and hands it on; for
/// fair semaphores fair_leave(queue, deadlines, wake; waiter id, front).
/// A no-op for other kinds.
pub(crate) async fn fair_leave(
    conn: &mut impl ConnectionLike,
    pubsub: Pubsub,
    keys: &LeaseKeys,
    waiter_id: &str,
    token: &[u8],
    publisher: &[u8],
) -> RedisResult<Left> {
    let (q, front) = match keys.family() {
        Family::Fair(q) => {
            let (queued, released, fence, id, attempt): (i64, i64, i64, String, u64) = FAIR_CANCEL
                .get(pubsub)
                .call(
                    conn,
                    &[
                        keys.name(),
                        keys.fence(),
                        keys.wake(),
                        &q.queue,
                        &q.deadlines,
                        &q.claims,
                    ],
                    |argv| {
                        argv.arg(waiter_id).arg(token).arg(mark(publisher));
                    },
                )
                .await?;
            return Ok(Left {
                queued: queued == 1,
                released: released == 1,
                handed: if id.is_empty() {
                    Released::NotHeld
                } else {
                    granted(fence, &id, attempt)
                },
            });
        }
        Family::Permit {
            fair: Some(q),
            limit,
            ..
        } => (q, *limit),
        _ => {
            return Ok(Left {
                queued: false,
                released: false,
                handed: Released::NotHeld,
            });
        }
    };
    let n: i64 = FAIR_LEAVE
        .get(pubsub)
        .call(conn, &[&q.queue, &q.deadlines, keys.wake()], |argv| {
            argv.arg(waiter_id).arg(front);
        })
        .await?;
    Ok(Left {
        queued: n == 1,
        released: false,
        handed: Released::NotHeld,
    })
}
