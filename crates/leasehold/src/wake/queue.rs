//! What the hub keeps under one lock: each wake channel with its FIFO
//! queue of local waiters' slots, and each waiter's state, an enum.

use std::collections::{BTreeSet, HashMap, VecDeque};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sync::{Arc, AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering};
use crate::token::Token;

/// Where a waiter stands. Changed under the channels' lock, except the
/// waiter's own `Woken -> Out` in [`Waiter::begin_attempt`].
///
/// [`Waiter::begin_attempt`]: super::Waiter::begin_attempt
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum State {
    /// In its channel's queue.
    Queued,
    /// Taken off the queue by a wake it has not acted on yet.
    Woken,
    /// Neither: trying the script, or done.
    Out,
    /// Taken off the queue by a local release that hands the lease to it.
    Offered,
    /// The hand-over happened: the lease is held by the waiter's token.
    Granted,
    /// Dropped while offered or granted: whoever hands the lease over
    /// releases it.
    Abandoned,
    /// Got the lease by its own attempt while offered or granted (same
    /// token): nobody releases it.
    Kept,
}

/// A [`State`] in an atomic, read without the lock by the waiter's polls.
pub(super) struct AtomicState(AtomicU8);

impl AtomicState {
    const ALL: [State; 7] = [
        State::Queued,
        State::Woken,
        State::Out,
        State::Offered,
        State::Granted,
        State::Abandoned,
        State::Kept,
    ];

    pub(super) fn new(s: State) -> AtomicState {
        AtomicState(AtomicU8::new(s as u8))
    }

    pub(super) fn load(&self) -> State {
        AtomicState::ALL[usize::from(self.0.load(Ordering::Acquire))]
    }

    pub(super) fn store(&self, s: State) {
        self.0.store(s as u8, Ordering::Release);
    }

    /// Moves `from -> to`; false when the state was not `from`.
    pub(super) fn advance(&self, from: State, to: State) -> bool {
        self.0
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// What a waiter that can take a hand-over tells a releaser: the token to
/// hand the lease to, and the ttl in ms to set on it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Successor {
    pub(crate) token: Token,
    pub(crate) ttl_ms: u64,
}

/// One waiter's mailbox.
pub(super) struct Slot {
    /// `notify_one` stores a permit when the waiter is not polling yet, so a
    /// wake that arrives between two polls is not lost.
    pub(super) notify: Notify,
    /// Where it stands (see [`State`]).
    pub(super) state: AtomicState,
    /// `w:<waiter id>`: the payload of a fair release meant for this waiter
    /// (`w:` alone outside fair mode, where releases name nobody).
    pub(super) id: Box<[u8]>,
    /// Set for plain leases: a local release may hand the lease straight to
    /// this waiter's token instead of freeing it.
    pub(super) handover: Option<Successor>,
    /// The fence and send instant of a hand-over, once granted.
    /// For a fair grant, the number of the waiter's attempt it names
    /// (0 for a local hand-over).
    pub(super) grant: Mutex<Option<(u64, Instant, u64)>>,
    /// Told when the slot becomes the head of its queue: in a queue that
    /// hands over, only the head runs a fallback timer.
    pub(super) promoted: Notify,
    /// Its client freed the lease for other clients' waiters instead of
    /// handing it to this one: retry after [`STEP_BACK`], not at once. Set
    /// until its next attempt (or an offer): a waiter that leaves the head
    /// of the queue before it passes the step back on.
    ///
    /// [`STEP_BACK`]: super::STEP_BACK
    pub(super) step_back: AtomicBool,
    /// Woken after a hand-over whose outcome is unknown (see
    /// [`Offer::unknown`]): the token may hold the lease until the waiter's
    /// next attempt is sent.
    ///
    /// [`Offer::unknown`]: super::handover::Offer::unknown
    pub(super) unsure: AtomicBool,
    /// The channel's `missed` count when the waiter's attempt began (see
    /// [`Waiter::attempt_failed`]).
    ///
    /// [`Waiter::attempt_failed`]: super::Waiter::attempt_failed
    pub(super) missed_seen: AtomicU64,
    /// Between [`Waiter::begin_attempt`] and [`Waiter::attempt_failed`]:
    /// its acquire is out (see [`WakeHub::offer`]).
    ///
    /// [`Waiter::begin_attempt`]: super::Waiter::begin_attempt
    /// [`Waiter::attempt_failed`]: super::Waiter::attempt_failed
    /// [`WakeHub::offer`]: super::WakeHub::offer
    pub(super) trying: AtomicBool,
}

#[derive(Default)]
pub(super) struct Channel {
    pub(super) queue: VecDeque<Arc<Slot>>,
    /// Every registered waiter by id, queued or not: a fair release names
    /// its waiter, which may be in the middle of an attempt.
    pub(super) by_id: HashMap<Box<[u8]>, Arc<Slot>>,
    /// Woken waiters that have not acted yet; they keep the channel busy.
    pub(super) woken: usize,
    /// Subscribed and confirmed on the current subscriber connection (over
    /// independent masters: on at least one of them, see `masters`).
    pub(super) confirmed: bool,
    /// Over independent masters: the indexes of the masters whose
    /// connection confirmed the subscription. Empty otherwise.
    pub(super) masters: BTreeSet<usize>,
    /// When the queue last became empty (for the subscriber's `LINGER`).
    pub(super) idle_since: Option<Instant>,
    /// Wake every waiter on a release, not only the head: for read-write
    /// locks, where one release can let many readers in, or a writer that
    /// is not at the head.
    pub(super) wake_all: bool,
    /// Until then, hand over locally even though other clients are
    /// subscribed: the last time this client stepped back for them, none
    /// took the lease (their subscriptions only linger).
    pub(super) others_idle_until: Option<Instant>,
    /// Releases that found nobody queued to wake, or to step back (see
    /// [`Offer::requeue`]), and over independent masters the later copies
    /// of a release (see [`Shared::on_copy`]). A woken waiter is out of
    /// the queue while its attempt is in flight: an attempt refused in
    /// Redis just before such a release freed the lease would otherwise go
    /// back to the queue and sleep through its fallback timer (see
    /// [`Waiter::attempt_failed`]).
    ///
    /// [`Offer::requeue`]: super::handover::Offer::requeue
    /// [`Waiter::attempt_failed`]: super::Waiter::attempt_failed
    pub(super) missed: u64,
    /// The last missed release was this client's freeing one: the waiter
    /// that missed it steps back rather than trying at once.
    pub(super) missed_freed: bool,
    /// The waiter the last wake went to. Over independent masters, the
    /// later copies of a release are for it alone (see
    /// [`Shared::on_copy`]).
    pub(super) last_woken: Option<Arc<Slot>>,
}

impl Channel {
    pub(super) fn busy(&self) -> bool {
        !self.queue.is_empty() || self.woken > 0
    }
}

pub(super) struct Shared {
    pub(super) channels: Mutex<HashMap<Arc<[u8]>, Channel>>,
    /// Waiters queued or woken, in all channels: lets `acquire` skip the
    /// map lookup when nobody waits at all (the uncontended fast path).
    pub(super) waiters: AtomicUsize,
    /// Waiters registered and not yet dropped, in all channels, whatever
    /// their state (one whose attempt is out is not in `waiters`): a
    /// release of this client skips the map when it is 0.
    pub(super) registered: AtomicUsize,
    /// Wakes the subscriber task when a channel must be (un)subscribed.
    pub(super) dirty: Notify,
    /// The payload this client publishes on release.
    pub(super) own_id: Box<[u8]>,
    /// `*` and `own_id`: the payload of a release that freed the lease
    /// because other clients wait (see `Offer::requeue`).
    pub(super) freed_id: Box<[u8]>,
    /// Where the subscriber listens (classic or sharded pub/sub, or classic
    /// on each of several masters).
    pub(super) source: crate::backend::WakeSource,
    pub(super) shutdown: CancellationToken,
    pub(super) started: std::sync::Once,
    pub(super) runtime: tokio::runtime::Handle,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<Arc<[u8]>, Channel>> {
        // The map is only touched in short, non-panicking sections; a poisoned
        // lock still holds consistent data.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn wake_head(&self, ch: &mut Channel) {
        self.wake_at(ch, 0);
    }

    fn wake_at(&self, ch: &mut Channel, i: usize) {
        if let Some(slot) = ch.queue.remove(i) {
            if i == 0 {
                promote(ch);
            }
            // Queued -> woken: still counted in `waiters`.
            ch.woken += 1;
            ch.last_woken = Some(Arc::clone(&slot));
            slot.state.store(State::Woken);
            slot.notify.notify_one();
            if !ch.busy() {
                ch.idle_since = Some(Instant::now());
            }
        }
    }

    /// A release happened: wake the head, or everyone on a wake-all channel.
    pub(super) fn wake(&self, ch: &mut Channel) {
        if ch.queue.is_empty() {
            // A waiter whose attempt is in flight may need it.
            ch.missed += 1;
            ch.missed_freed = false;
        }
        if ch.wake_all {
            while !ch.queue.is_empty() {
                self.wake_head(ch);
            }
        } else {
            self.wake_head(ch);
        }
    }

    pub(super) fn on_message(&self, channel: &[u8], payload: &[u8]) {
        if payload == &*self.own_id || payload == &*self.freed_id {
            // Our own release: its waiter was woken (or told to step back)
            // when the script returned.
            return;
        }
        let mut channels = self.lock();
        let Some(ch) = channels.get_mut(channel) else {
            return;
        };
        if let Some(grant) = payload.strip_prefix(b"g:") {
            // A fair release gave the lease to the waiter it names, with
            // this fence, from the claim its attempt left:
            // `g:<id>:<fence>:<attempt>`.
            let mut parts = grant.rsplitn(3, |&b| b == b':');
            let number = |p: Option<&[u8]>| std::str::from_utf8(p?).ok()?.parse::<u64>().ok();
            let (attempt, fence) = (number(parts.next()), number(parts.next()));
            if let (Some(attempt), Some(fence), Some(id)) = (attempt, fence, parts.next()) {
                let id = [b"w:", id].concat();
                self.fair_grant(ch, &id, fence, attempt);
            }
        } else if payload.starts_with(b"w:") {
            // A fair release names the waiter whose turn it is; it may be in
            // another process.
            let Some(slot) = ch.by_id.get(payload).cloned() else {
                return;
            };
            match slot.state.load() {
                State::Queued => {
                    if let Some(i) = ch.queue.iter().position(|s| Arc::ptr_eq(s, &slot)) {
                        self.wake_at(ch, i);
                    }
                }
                State::Out => {
                    // Its attempt raced the release: have it try again.
                    self.waiters.fetch_add(1, Ordering::AcqRel);
                    ch.woken += 1;
                    slot.state.store(State::Woken);
                    slot.notify.notify_one();
                }
                _ => {}
            }
        } else {
            self.wake(ch);
        }
    }

    /// A fair release (or a leaving waiter) gave the lease to the waiter
    /// `id` (`w:<waiter id>`) of this channel, with `fence`, from the claim
    /// its attempt number `attempt` left. Told by the publish, or by the
    /// script's reply alone when this client sent it (nothing is published
    /// for a waiter of the client that sent the script). The waiter takes
    /// it without a script of its own ([`Waiter::take_grant`]).
    ///
    /// - Queued (the fallback timer's attempt may be out): taken off the
    ///   queue and granted.
    /// - Woken (it has not tried yet) or out with its attempt: granted;
    ///   that attempt, if it ran after the grant in Redis, answers the same
    ///   fence, and keeps it ([`Waiter::keep`]); if it ran before, it was
    ///   refused, and the waiter takes the grant next.
    /// - Otherwise (granted already, kept, out and not trying: it took the
    ///   grant already, or it is not registered any more): nothing. A
    ///   waiter that gave up releases the grant by its fair_cancel.
    ///
    /// [`Waiter::take_grant`]: super::Waiter::take_grant
    /// [`Waiter::keep`]: super::Waiter::keep
    pub(super) fn fair_grant(&self, ch: &mut Channel, id: &[u8], fence: u64, attempt: u64) {
        let Some(slot) = ch.by_id.get(id).cloned() else {
            return;
        };
        // Read by `take_grant` under the lock we hold, once granted.
        let mut grant = slot.grant.lock().unwrap_or_else(|e| e.into_inner());
        let previous = grant.replace((fence, Instant::now(), attempt));
        // Woken -> granted: counted as woken already. The one change of
        // state made without the lock is the waiter's own Woken -> Out
        // (`begin_attempt`), so this one is a compare-and-swap: had the
        // waiter just begun its attempt, it is out, and counted as such.
        if slot.state.advance(State::Woken, State::Granted) {
            drop(grant);
            slot.notify.notify_one();
            return;
        }
        match slot.state.load() {
            State::Queued => {
                let Some(i) = ch.queue.iter().position(|s| Arc::ptr_eq(s, &slot)) else {
                    *grant = previous;
                    return;
                };
                ch.queue.remove(i);
                if i == 0 {
                    promote(ch);
                }
                // Queued -> granted: still counted in `waiters`.
                ch.woken += 1;
            }
            State::Out if slot.trying.load(Ordering::Acquire) => {
                self.waiters.fetch_add(1, Ordering::AcqRel);
                ch.woken += 1;
            }
            _ => {
                *grant = previous;
                return;
            }
        }
        drop(grant);
        slot.state.store(State::Granted);
        slot.notify.notify_one();
    }

    /// Over independent masters: another master's copy of a release
    /// already heard (or a master that subscribed after it may have
    /// missed one; see `masters::Seen`). The first copy woke a waiter,
    /// whose attempt may have reached this master before the release did
    /// and been refused: the copy says this master is free now. So it is
    /// for that waiter alone (waking the next one would only split the
    /// vote): while its attempt is out, the copy counts as a release it
    /// missed (see [`Waiter::attempt_failed`]); back at the head after a
    /// refusal, it is woken again. Each master's copy can wake it once:
    /// at most one attempt per master per release.
    ///
    /// [`Waiter::attempt_failed`]: super::Waiter::attempt_failed
    pub(super) fn on_copy(&self, channel: &[u8], payload: &[u8]) {
        if payload == &*self.own_id || payload == &*self.freed_id {
            // Our own release woke its waiter once a quorum had freed it.
            return;
        }
        let mut channels = self.lock();
        let Some(ch) = channels.get_mut(channel) else {
            return;
        };
        ch.missed += 1;
        ch.missed_freed = false;
        let again = ch.woken == 0
            && ch
                .queue
                .front()
                .zip(ch.last_woken.as_ref())
                .is_some_and(|(head, last)| Arc::ptr_eq(head, last));
        if again {
            self.wake_head(ch);
        }
    }
}

/// Tells the new head of a queue that it is the head now.
pub(super) fn promote(ch: &Channel) {
    if let Some(head) = ch.queue.front() {
        head.promoted.notify_one();
    }
}
