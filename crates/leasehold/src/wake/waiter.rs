//! [`Waiter`]: a place in a channel's queue, and the queue as one waiter
//! sees it: woken, trying, back at the head after a refusal, leaving.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::queue::{Channel, Shared, Slot, State, promote};
use super::sync::{Arc, Ordering};

/// How long a client hands over locally after stepping back found other
/// clients' subscriptions idle; then it steps back once more to check. A
/// misjudgement (a loaded machine slower than [`STEP_BACK`]) costs the other
/// clients at most this long.
///
/// [`STEP_BACK`]: super::STEP_BACK
const OTHERS_IDLE: Duration = Duration::from_millis(200);

/// A place in a channel's queue. Dropping it leaves the queue, and passes on
/// a wake it received but did not act on.
pub(crate) struct Waiter {
    pub(super) shared: Arc<Shared>,
    pub(super) channel: Arc<[u8]>,
    pub(super) slot: Arc<Slot>,
}

impl Waiter {
    /// Completes when this waiter is woken (a release, a new subscription).
    /// Cancel safe: a wake that arrives while nobody polls is kept.
    pub(crate) async fn woken(&self) {
        self.slot.notify.notified().await;
    }

    /// Call before trying the script: consumes a pending wake, if any.
    /// False when a local release has the lease on its way to this waiter
    /// (offered or granted): then it must not try, but wait for the grant.
    /// Until [`attempt_failed`](Waiter::attempt_failed), the waiter counts
    /// as trying (see [`WakeHub::offer`](super::WakeHub::offer)).
    pub(crate) fn begin_attempt(&self) -> bool {
        {
            // Under the lock, against an offer taking it meanwhile.
            let _channels = self.shared.lock();
            if matches!(self.slot.state.load(), State::Offered | State::Granted) {
                return false;
            }
            self.slot.trying.store(true, Ordering::Release);
        }
        // The step back, if any, ends with this attempt.
        self.slot.step_back.store(false, Ordering::Release);
        if self.slot.state.advance(State::Woken, State::Out) {
            self.shared.waiters.fetch_sub(1, Ordering::AcqRel);
            let mut channels = self.shared.lock();
            if let Some(ch) = channels.get_mut(&self.channel) {
                self.slot.missed_seen.store(ch.missed, Ordering::Release);
                ch.woken -= 1;
                if !ch.busy() {
                    ch.idle_since = Some(Instant::now());
                }
            }
        }
        true
    }

    /// A lease handed over to this waiter by a local release: its fence and
    /// the instant the hand-over was sent (the lease's TTL runs from no
    /// earlier). Settles the hand-over.
    pub(super) fn take_grant(&self) -> Option<(u64, Instant, u64)> {
        let mut channels = self.shared.lock();
        if self.slot.state.load() != State::Granted {
            return None;
        }
        self.slot.state.store(State::Out);
        self.settle_count(&mut channels);
        self.slot
            .grant
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Completes when this waiter becomes the head of its queue (or may
    /// have: a spurious completion is harmless). Cancel safe.
    pub(crate) async fn promoted(&self) {
        self.slot.promoted.notified().await;
    }

    /// Whether this waiter needs a fallback timer of its own. In a queue of
    /// plain leases, a release hands the lease over or wakes the head, and
    /// what a release cannot signal (a holder whose TTL runs out, a foreign
    /// client) the head's timer finds; the head's own release then serves
    /// the next. So only the head polls, and ten thousand waiters cost one
    /// timer's commands, not ten thousand. Other kinds (semaphores, rw-locks,
    /// fair queues), where one release can let several in, keep a timer each.
    pub(crate) fn needs_timer(&self) -> bool {
        if self.slot.handover.is_none() {
            return true;
        }
        let channels = self.shared.lock();
        self.slot.state.load() != State::Queued
            || channels
                .get(&self.channel)
                .and_then(|ch| ch.queue.front())
                .is_none_or(|head| Arc::ptr_eq(head, &self.slot))
    }

    /// This waiter stepped back for other clients' waiters and then got the
    /// lease itself: they only linger. Hand over locally for a while.
    pub(crate) fn others_idle(&self) {
        let mut channels = self.shared.lock();
        if let Some(ch) = channels.get_mut(&self.channel) {
            ch.others_idle_until = Some(Instant::now() + OTHERS_IDLE);
        }
    }

    /// Whether its client freed the lease for others instead of handing it
    /// to this waiter (see [`Offer::requeue`]), and it has not tried since.
    ///
    /// [`Offer::requeue`]: super::handover::Offer::requeue
    pub(crate) fn steps_back(&self) -> bool {
        self.slot.step_back.load(Ordering::Acquire)
    }

    /// A local release is handing the lease to this waiter right now: do not
    /// try for it, wait for the outcome.
    pub(crate) fn is_offered(&self) -> bool {
        self.slot.state.load() == State::Offered
    }

    /// The waiter got the lease by its own attempt: it leaves, and nobody
    /// may release the lease on its behalf. Under one lock: a slot still
    /// queued (the head's timer attempt, a step back, a look once more) is
    /// taken out of the queue, so that no local release can offer it the
    /// lease it already holds; a hand-over to the same token that raced the
    /// attempt is settled as kept.
    pub(super) fn keep(self) {
        let mut channels = self.shared.lock();
        match self.slot.state.load() {
            State::Offered | State::Granted => {
                self.slot.state.store(State::Kept);
                self.settle_count(&mut channels);
            }
            State::Queued => {
                self.slot.state.store(State::Out);
                if let Some(ch) = channels.get_mut(&self.channel) {
                    self.dequeue(ch);
                }
            }
            // Woken: dropping it below passes the wake on.
            _ => {}
        }
        drop(channels);
    }

    /// The waiter gives up: it leaves its queue (passing on a wake it did
    /// not act on). Returns whether its token may hold the lease without a
    /// guard (a hand-over is under way or done): then the caller must
    /// release it, and a releaser still handing over releases it too.
    pub(super) fn abandon(self) -> bool {
        self.leave()
    }

    /// Leaves the queue; see [`abandon`](Waiter::abandon). Idempotent: the
    /// slot ends out of the queue, abandoned or kept.
    fn leave(&self) -> bool {
        let mut channels = self.shared.lock();
        let Some(ch) = channels.get_mut(&self.channel) else {
            return self.slot.unsure.swap(false, Ordering::AcqRel);
        };
        ch.by_id.remove(&self.slot.id);
        // Woken after a hand-over of unknown outcome, and no attempt sent
        // since: the token may hold the lease.
        let unsure = self.slot.unsure.swap(false, Ordering::AcqRel);
        let may_hold = match self.slot.state.load() {
            State::Queued => {
                self.slot.state.store(State::Out);
                // First in line and stepping back after a freeing release
                // (nobody else was told): the next steps back in its place.
                if self.slot.step_back.swap(false, Ordering::AcqRel)
                    && ch.queue.front().is_some_and(|h| Arc::ptr_eq(h, &self.slot))
                    && let Some(next) = ch.queue.get(1)
                {
                    next.step_back.store(true, Ordering::Release);
                }
                self.dequeue(ch);
                unsure
            }
            State::Woken => {
                // Woken for a release we will not act on: hand it on.
                self.slot.state.store(State::Out);
                self.shared.waiters.fetch_sub(1, Ordering::AcqRel);
                ch.woken -= 1;
                self.shared.wake_head(ch);
                unsure
            }
            State::Offered | State::Granted => {
                // The releaser (offered) or our pending token (granted)
                // releases the lease, which hands it on.
                self.slot.state.store(State::Abandoned);
                self.shared.waiters.fetch_sub(1, Ordering::AcqRel);
                ch.woken -= 1;
                true
            }
            State::Out => unsure,
            State::Abandoned | State::Kept => false,
        };
        if !ch.busy() && ch.idle_since.is_none() {
            ch.idle_since = Some(Instant::now());
            drop(channels);
            self.shared.dirty.notify_one();
        }
        may_hold
    }

    /// Takes the slot out of its channel's queue and the count of waiters.
    fn dequeue(&self, ch: &mut Channel) {
        if let Some(i) = ch.queue.iter().position(|s| Arc::ptr_eq(s, &self.slot)) {
            ch.queue.remove(i);
            if i == 0 {
                promote(ch);
            }
            self.shared.waiters.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Stops counting an offered or granted waiter as woken.
    fn settle_count(&self, channels: &mut HashMap<Arc<[u8]>, Channel>) {
        self.shared.waiters.fetch_sub(1, Ordering::AcqRel);
        if let Some(ch) = channels.get_mut(&self.channel) {
            ch.woken -= 1;
            if !ch.busy() {
                ch.idle_since = Some(Instant::now());
            }
        }
    }

    /// Call after the script said "held": a waiter that had been woken goes
    /// back to the head of the queue (it was first in line). If a release
    /// found nobody queued while the attempt was out, the attempt may have
    /// been refused just before that release freed the lease, and nobody
    /// else was woken for it: the waiter is woken again at once, or steps
    /// back if the release was this client's freeing one.
    pub(crate) fn attempt_failed(&self) {
        let mut channels = self.shared.lock();
        self.slot.trying.store(false, Ordering::Release);
        // Under the lock: a wake cannot slip in between the check and the move.
        if !self.slot.state.advance(State::Out, State::Queued) {
            return; // still queued (timer path), or woken again meanwhile
        }
        let ch = channels.entry(Arc::clone(&self.channel)).or_default();
        if self.slot.id.len() > 2 {
            ch.by_id
                .entry(self.slot.id.clone())
                .or_insert_with(|| Arc::clone(&self.slot));
        }
        ch.queue.push_front(Arc::clone(&self.slot));
        ch.idle_since = None;
        self.shared.waiters.fetch_add(1, Ordering::AcqRel);
        if ch.missed != self.slot.missed_seen.load(Ordering::Acquire) {
            if ch.missed_freed {
                // Back at the head: the acquire loop reads this next.
                self.slot.step_back.store(true, Ordering::Release);
            } else {
                self.shared.wake_head(ch);
            }
        }
        if !ch.confirmed {
            // The channel lingered out while we tried (a slow reply): have
            // the subscriber task subscribe it again.
            drop(channels);
            self.shared.dirty.notify_one();
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.leave();
        self.shared.registered.fetch_sub(1, Ordering::AcqRel);
    }
}
