//! What an acquire in progress may hold without a guard ([`Claim`]), and
//! the only way from it to a guard ([`Won`]).

use std::time::Duration;

use tokio::time::Instant;

use super::sync::Ordering;
use super::waiter::Waiter;

/// What an acquire in progress may hold without a guard: the lease itself
/// while a script was sent and no definite reply came back (`armed`), a
/// waiting writer's intent, or a lease handed over to its waiter. Dropped
/// unsettled (the acquire failed or was cancelled), the caller releases the
/// token if [`abandon`](Claim::abandon) says so.
///
/// A guard is made from a [`Won`], and the only ways to one settle the
/// claim ([`won`](Claim::won), [`take_grant`](Claim::take_grant)): whichever
/// path returns the guard, nothing is left to release the lease behind the
/// caller's back.
#[derive(Default)]
pub(crate) struct Claim {
    /// A script was sent and no definite reply came back: a transport error
    /// leaves the claim armed, for the script may have run.
    armed: bool,
    /// A waiting writer left its intent; withdrawn unless it got the lock.
    intent: bool,
    /// The place in the local queue, once the acquire waits.
    waiter: Option<Waiter>,
    /// A fair lease's waiter: a release may give it the lease in the
    /// release script (see `scripts::fair`).
    fair: bool,
    /// A fair lease's waiter: its last attempts that left a claim, as
    /// (number, send, claim window): a release's grant names the one that
    /// set the deadline it was cut to (see [`Claim::fair_attempt`]).
    attempts: Vec<(u64, Instant, Duration)>,
}

impl Claim {
    /// The claim of a fair lease's waiter, whose grant may come from a
    /// release of another process (see [`Claim::take_grant`]).
    pub(crate) fn fair() -> Claim {
        Claim {
            fair: true,
            ..Claim::default()
        }
    }

    /// How many of a fair waiter's last attempts are kept: a grant names
    /// the last one that ran before the release, and the attempts are sent
    /// one after the other (only those lost on the wire come between).
    const ATTEMPTS_KEPT: usize = 8;

    /// A fair waiter's attempt, sent at `sent`, that leaves its claim with
    /// a place lasting `window` (min of ttl and patience) if refused: its
    /// number, to send with it. Its script sets the waiter's deadline to
    /// its server time + patience, at or after `sent`, and a release's
    /// grant that names it lasts `min(ttl, deadline - then)`, so until
    /// `sent + window` at least.
    pub(crate) fn fair_attempt(&mut self, sent: Instant, window: Duration) -> u64 {
        let number = self.attempts.last().map_or(1, |a| a.0 + 1);
        if self.attempts.len() == Claim::ATTEMPTS_KEPT {
            self.attempts.remove(0);
        }
        self.attempts.push((number, sent, window));
        number
    }

    /// The place in the local queue, if the acquire stands in one.
    pub(crate) fn waiter(&self) -> Option<&Waiter> {
        self.waiter.as_ref()
    }

    /// Stands in the local queue from now on.
    pub(crate) fn join(&mut self, waiter: Waiter) {
        self.waiter = Some(waiter);
    }

    /// An acquire script is about to be sent. It follows any hand-over of
    /// unknown outcome on the same connection: its definite answer says
    /// whether the token holds the lease, and meanwhile the claim is armed.
    pub(crate) fn sending(&mut self) {
        self.armed = true;
        if let Some(w) = &self.waiter {
            w.slot.unsure.store(false, Ordering::Release);
        }
    }

    /// The script said the lease is held by another; `intent` when it left
    /// this waiting writer's intent.
    pub(crate) fn refused(&mut self, intent: bool) {
        self.armed = false;
        self.intent |= intent;
    }

    /// The acquire script gave the token the lease with `fence`, sent at
    /// `sent`: nothing is left to release, and the waiter leaves its queue
    /// (see [`Waiter::keep`]).
    pub(crate) fn won(&mut self, fence: u64, sent: Instant) -> Won {
        self.armed = false;
        self.intent = false;
        if let Some(w) = self.waiter.take() {
            w.keep();
        }
        Won {
            fence,
            sent,
            window: None,
        }
    }

    /// A lease handed over to this waiter by a local release (see
    /// [`Waiter::take_grant`]), settled as [`won`](Claim::won): an earlier
    /// attempt that failed on the wire left the claim armed, and must not
    /// release the lease that was handed over.
    ///
    /// A fair lease's grant, by a release of any process: it holds from the
    /// send of the waiter's attempt it names, for the claim window (see
    /// [`fair_attempt`](Claim::fair_attempt)); with that attempt not known
    /// (cannot happen: a waiter joins the queue by an attempt, and keeps
    /// its last few), for no time at all, which the caller confirms by an
    /// attempt.
    pub(crate) fn take_grant(&mut self) -> Option<Won> {
        let (fence, at, attempt) = self.waiter.as_ref()?.take_grant()?;
        let fair = self.fair.then(|| {
            self.attempts
                .iter()
                .find(|a| a.0 == attempt)
                .map_or((at, Duration::ZERO), |a| (a.1, a.2))
        });
        let mut won = self.won(fence, at);
        if let Some((sent, window)) = fair {
            won.sent = sent;
            won.window = Some(window);
        }
        Some(won)
    }

    /// The acquire ends without a guard: leaves the queue, and returns
    /// whether the token may hold something that must be released.
    pub(crate) fn abandon(&mut self) -> bool {
        let handed = self.waiter.take().is_some_and(Waiter::abandon);
        std::mem::take(&mut self.armed) | std::mem::take(&mut self.intent) | handed
    }
}

/// A settled [`Claim`]: the token holds the lease with this fence, from no
/// earlier than `sent`. The only way to a guard (`Pending::into_guard`).
#[derive(Debug)]
#[must_use = "a won lease is held: make its guard"]
pub(crate) struct Won {
    fence: u64,
    sent: Instant,
    /// A fair grant by a release: the lease lasts this long from `sent`
    /// at least, less than its ttl maybe, until the first renewal. `None`:
    /// its ttl (the script that granted it set the ttl).
    window: Option<Duration>,
}

impl Won {
    pub(crate) fn fence(&self) -> u64 {
        self.fence
    }

    pub(crate) fn sent(&self) -> Instant {
        self.sent
    }

    pub(crate) fn window(&self) -> Option<Duration> {
        self.window
    }
}
