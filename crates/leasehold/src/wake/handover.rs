//! The local hand-over: a release by this client gives the lease straight
//! to its first waiter's token ([`Offer`]), or frees it for other clients'
//! waiters while its own first waiter steps back ([`STEP_BACK`]).

use std::time::Duration;

use tokio::time::Instant;

use super::queue::{Shared, Slot, State, Successor};
use super::sync::{Arc, Ordering};

/// How long a client's first waiter lets other clients' waiters go first
/// when its client freed a lease they wait for (see `Offer::requeue`):
/// time enough for them to hear the release and try, not so long that a
/// lease nobody takes stays free for long.
pub(crate) const STEP_BACK: Duration = Duration::from_millis(5);

/// A waiter taken off its queue for a hand-over (see [`WakeHub::offer`]).
/// Settle it with [`grant`](Offer::grant), [`requeue`](Offer::requeue),
/// [`withdraw`](Offer::withdraw) or [`unknown`](Offer::unknown); dropped
/// unsettled (the release was cancelled), its outcome is unknown.
///
/// [`WakeHub::offer`]: super::WakeHub::offer
pub(crate) struct Offer {
    pub(super) shared: Arc<Shared>,
    pub(super) channel: Arc<[u8]>,
    pub(super) slot: Arc<Slot>,
    pub(super) handover: Successor,
    /// Subscribers of the channel that the handover script must not take
    /// for other clients' waiters: this client's own subscription, or all of
    /// them while the others are known idle.
    pub(super) tolerated: u32,
    pub(super) settled: bool,
}

impl Offer {
    /// The token and ttl to hand the lease to.
    pub(crate) fn successor(&self) -> Successor {
        self.handover
    }

    /// How many of the channel's subscribers are not other clients'
    /// waiters, as far as this client knows.
    pub(crate) fn tolerated(&self) -> u32 {
        self.tolerated
    }

    /// The lease was freed because other clients wait too: the waiter goes
    /// back to the head of its queue and steps back, trying again only after
    /// [`STEP_BACK`], so that the other clients' waiters, woken by the
    /// release's publish, get their turn (this client ignores that publish).
    /// Were the releaser's own first waiter to race them, it would mostly
    /// win, and the lease would stay in this process.
    pub(crate) fn requeue(mut self) {
        self.settled = true;
        let mut channels = self.shared.lock();
        let offered = self.slot.state.load() == State::Offered;
        let Some(ch) = channels.get_mut(&self.channel) else {
            if offered {
                // No queue to go back to (cannot happen while it is counted
                // as woken): let it try for itself.
                self.slot.state.store(State::Woken);
                self.slot.notify.notify_one();
            }
            return;
        };
        if offered {
            self.slot.state.store(State::Queued);
            ch.woken -= 1;
            ch.queue.push_front(Arc::clone(&self.slot));
        }
        // The first waiter (this one, or the next if this one is gone) steps
        // back and then tries: this client ignores its own release's publish.
        if let Some(head) = ch.queue.front() {
            head.step_back.store(true, Ordering::Release);
            head.promoted.notify_one();
        } else {
            // Nobody queued: a waiter whose attempt is in flight steps back
            // if it comes back refused.
            ch.missed += 1;
            ch.missed_freed = true;
        }
    }

    /// The lease now belongs to the waiter's token, with `fence`; the script
    /// was sent at `sent`. Returns false when the waiter is gone: then the
    /// caller must release the lease by the waiter's token.
    pub(crate) fn grant(mut self, fence: u64, sent: Instant) -> bool {
        self.settled = true;
        let _channels = self.shared.lock();
        match self.slot.state.load() {
            State::Offered => {
                *self.slot.grant.lock().unwrap_or_else(|e| e.into_inner()) = Some((fence, sent, 0));
                self.slot.state.store(State::Granted);
                self.slot.notify.notify_one();
                true
            }
            State::Abandoned => false,
            _ => true, // Kept: it holds the lease through its own attempt.
        }
    }

    /// The lease was not handed over (the releaser no longer held it): the
    /// waiter is woken to try for itself. Returns false when the waiter is
    /// gone.
    pub(crate) fn withdraw(mut self) -> bool {
        self.settled = true;
        self.settle_withdrawn(false)
    }

    /// It is unknown whether the lease was handed over (an error): the
    /// waiter is woken to try for itself, and its own attempt, with the same
    /// token, takes a lease that was handed over after all. That attempt
    /// may go by another connection and run before the hand-over: then it
    /// is refused, and the release's second run (the guard releases again
    /// in the background, and finds the lease given over) wakes the waiter
    /// once more (see [`WakeHub::withdraw`] and `engine::LostReply`). Until
    /// that attempt is sent, the waiter's token may hold the lease: a
    /// waiter that gives up before it releases the token (see
    /// [`Waiter::abandon`]). Returns false when the waiter is gone.
    ///
    /// [`Waiter::abandon`]: super::Waiter::abandon
    /// [`WakeHub::withdraw`]: super::WakeHub::withdraw
    pub(crate) fn unknown(mut self) -> bool {
        self.settled = true;
        self.settle_withdrawn(true)
    }

    fn settle_withdrawn(&self, unknown: bool) -> bool {
        let _channels = self.shared.lock();
        match self.slot.state.load() {
            State::Offered => {
                // Still counted as woken: begin_attempt settles the count.
                self.slot.unsure.store(unknown, Ordering::Release);
                self.slot.state.store(State::Woken);
                self.slot.notify.notify_one();
                true
            }
            State::Abandoned => false,
            _ => true,
        }
    }
}

impl Drop for Offer {
    fn drop(&mut self) {
        if !self.settled {
            // The releaser's future was dropped, the hand-over perhaps
            // sent: the waiter finds out by itself. Were it gone too, its
            // pending release covers it.
            self.settle_withdrawn(true);
        }
    }
}
