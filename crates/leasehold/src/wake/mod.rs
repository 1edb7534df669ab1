//! Waiting for a lease: one subscriber connection per [`Client`](crate::Client),
//! fanning release notifications out to local waiters.
//!
//! # How a waiter is woken
//!
//! The release script publishes on the lease's wake channel. Each `Client`
//! owns one pub/sub connection (opened on the first wait, not before) that is
//! subscribed to the wake channels of every name some local task waits for:
//! ten thousand waiters cost one connection, not ten thousand.
//!
//! Local waiters of a name stand in a FIFO queue. A release wakes **one** of
//! them, the head: the others would only lose the race and send a command
//! for nothing (a thundering herd). The woken waiter tries the acquire
//! script; if another process was faster, it goes back to the head of the
//! queue. A waiter that is woken and then dropped (its `acquire()` future was
//! cancelled, or timed out) passes the wake on to the next one, so a wake is
//! never swallowed. Nor is a release that comes while the woken waiter's
//! attempt is out, finding nobody queued: were the attempt refused, just
//! before that release in Redis, the waiter tries again (or steps back,
//! after this client's freeing release) instead of going back to sleep.
//!
//! When this client releases a plain lease that a local task waits for, it
//! does not free the lease at all: one script (`handover.lua`) checks the
//! releaser's token and gives the lease, with a new fence and the waiter's
//! TTL, to the head waiter's token. The waiter is told by the script's reply
//! and returns its guard without a round trip of its own: a hand-over costs
//! one script call. The hand-over is settled whatever gives up half-way: a
//! waiter dropped before the reply leaves its token to be released (which
//! hands the lease on again), and a releaser dropped before the reply (or
//! whose reply was lost) wakes the waiter, whose own attempt with the same
//! token takes the lease if the hand-over happened; a waiter that gives up
//! before that attempt releases its token.
//!
//! A hand-over happens only while no other client waits for the name: the
//! script counts the subscribers of the wake channel. When others wait, it
//! frees the lease and publishes a wake for them, and this client's first
//! waiter steps back for 5 ms before it tries: a process does not keep a
//! lease among its own tasks while other processes starve, and two busy
//! processes take turns. If nobody took the lease while it stood back, the
//! others' subscriptions only linger (a client stays subscribed for 2 s
//! after its last wait): the client hands over locally again, and checks
//! again by stepping back 200 ms later. Arrival order across processes is
//! what fair mode is for.
//!
//! Other releases by this client (semaphores, rw-locks, no local waiter)
//! wake the local head at once, without waiting for its own publish to come
//! back through Redis; the publish carries the client's id, so the echo is
//! skipped. Fair leases and fair semaphores are the exception. A fair
//! lease's release gives the lease, in the release script, to the token
//! its queue's head left in Redis, and publishes `g:<waiter id>:<fence>`:
//! in whichever process that waiter is, it is granted the lease with that
//! fence (`Shared::fair_grant`) and takes it without a script of its own;
//! when this client sent the release, the script's reply grants it at
//! once, and nothing is published for it (its id ends with the client's
//! mark: see `scripts::fair`). (How the guard counts the grant's
//! validity, and what happens to a grant whose message is lost or whose
//! waiter gave up, is in `scripts::fair`.) A fair semaphore's release
//! publishes `w:<waiter id>` for each waiter whose turn it is, and only
//! those are woken, to try for themselves (as a fair lease's waiter that
//! left no claim is, from a client of an older version). What is owed to
//! nobody queued in Redis (an empty queue) is published and woken as for
//! other kinds. A writer that gives up withdraws its intent the same way,
//! waking the readers it held back.
//!
//! In a queue of plain leases only the head runs a fallback timer: the
//! others wait for the head to hand the lease on. In other queues, where one
//! release can let several waiters in, every waiter keeps its timer.
//!
//! A newly subscribed channel wakes its head once the subscription is
//! confirmed: a release that happened between the head's failed attempt and
//! the subscription would otherwise go unseen. After the subscriber
//! connection breaks and comes back, every channel is subscribed anew and
//! every head is woken for the same reason. Whatever still slips through
//! (a holder whose TTL simply runs out, a foreign client that does not
//! publish) is caught by each waiter's fallback timer.
//!
//! Over independent masters (Redlock) the client has one pub/sub
//! connection per master, each opening, subscribing and reconnecting on its
//! own, so that a master down or frozen holds back no other. A release
//! publishes on every master; the first copy wakes the head. The others
//! wake nobody new, but the woken waiter may have reached their masters
//! before the release did, and been refused: each later copy has it try
//! again (at once if it is back at the head, else once its attempt is
//! refused), so it gets the lease when the release reaches a quorum, not
//! when its timer fires. A channel counts as confirmed once one master
//! listens, and only that first subscription wakes its head; a later one
//! counts as the copies that master may have published before it
//! listened (see `masters`).
//!
//! # Layout
//!
//! Each file uses only the ones listed before it (and `sync`, below):
//!
//! - `queue`: what the hub keeps under one lock: each name's channel with
//!   its FIFO queue of slots, and each waiter's state, an enum.
//! - `waiter`: [`Waiter`], a place in a queue, and the queue as one waiter
//!   sees it (woken, trying, back at the head, leaving).
//! - `handover`: `Offer`, a local hand-over in progress, and how it is
//!   settled; [`STEP_BACK`].
//! - `claim`: [`Claim`] and [`Won`], what an acquire in progress may hold.
//! - `subscriber`: the pub/sub connection task: subscriptions, linger,
//!   reconnects.
//! - `masters`: the same over independent masters (Redlock): a link per
//!   master, each reconnecting alone; a release wakes on its first copy.
//! - `hub`: [`WakeHub`], the per-`Client` handle the rest of the crate
//!   calls.
//! - `tests`: the state machine model-checked with shuttle.

mod claim;
mod handover;
mod hub;
mod masters;
mod queue;
mod subscriber;
mod waiter;

#[cfg(test)]
mod tests;

pub(crate) use claim::{Claim, Won};
pub(crate) use handover::STEP_BACK;
pub(crate) use hub::WakeHub;
pub(crate) use queue::Successor;
pub(crate) use waiter::Waiter;

/// The model check (`tests`) runs this state machine under shuttle, whose
/// scheduler must see every lock and atomic to interleave them; other
/// builds use std's.
mod sync {
    #[cfg(test)]
    pub(super) use shuttle::sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering},
    };
    #[cfg(not(test))]
    pub(super) use std::sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering},
    };
}
