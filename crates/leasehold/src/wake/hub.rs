//! [`WakeHub`]: the per-`Client` handle on local waiters, which the rest of
//! the crate calls to wait, wake and hand over.

use std::collections::HashMap;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::handover::Offer;
use super::masters;
use super::queue::{AtomicState, Channel, Shared, Slot, State, Successor, promote};
use super::subscriber::subscriber;
use super::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};
use super::waiter::Waiter;
use crate::backend::WakeSource;

/// The per-`Client` hub of local waiters and the subscriber task.
pub(crate) struct WakeHub {
    /// What its waiters, offers and subscriber task share (and the model
    /// in `tests` looks into).
    pub(super) shared: Arc<Shared>,
}

impl WakeHub {
    pub(crate) fn new(
        source: WakeSource,
        own_id: &[u8],
        runtime: tokio::runtime::Handle,
    ) -> WakeHub {
        WakeHub {
            shared: Arc::new(Shared {
                channels: Mutex::new(HashMap::new()),
                waiters: AtomicUsize::new(0),
                registered: AtomicUsize::new(0),
                dirty: Notify::new(),
                own_id: own_id.into(),
                freed_id: [b"*", own_id].concat().into(),
                source,
                shutdown: CancellationToken::new(),
                started: std::sync::Once::new(),
                runtime,
            }),
        }
    }

    /// True when some local task waits (queued or woken) on `channel`.
    pub(crate) fn has_waiters(&self, channel: &[u8]) -> bool {
        if self.shared.waiters.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.shared.lock().get(channel).is_some_and(Channel::busy)
    }

    /// Whether the subscriber connection listens on `channel` (confirmed).
    pub(crate) fn is_subscribed(&self, channel: &[u8]) -> bool {
        self.shared
            .lock()
            .get(channel)
            .is_some_and(|ch| ch.confirmed)
    }

    /// The payload of this client's releases that free a lease for every
    /// client's waiters.
    pub(crate) fn freed_payload(&self) -> &[u8] {
        &self.shared.freed_id
    }

    /// Local tasks waiting (queued or woken) on `channel`.
    pub(crate) fn waiters(&self, channel: &[u8]) -> usize {
        self.shared
            .lock()
            .get(channel)
            .map_or(0, |ch| ch.queue.len() + ch.woken)
    }

    /// Joins the back of `channel`'s queue; `waiter_id` names the waiter for
    /// fair releases (empty outside fair mode). Returns the waiter and whether
    /// the channel was already confirmed subscribed (if so, a release that
    /// happened just before may have been missed: try once more).
    pub(crate) fn register(
        &self,
        channel: &Arc<[u8]>,
        wake_all: bool,
        waiter_id: &str,
        handover: Option<Successor>,
    ) -> (Waiter, bool) {
        let shared = &self.shared;
        shared.started.call_once(|| match &shared.source {
            WakeSource::Masters(clients) => {
                let hub = masters::Hub {
                    shared: Arc::clone(shared),
                    masters: clients.len(),
                    seen: Default::default(),
                };
                shared
                    .runtime
                    .spawn(masters::run(Arc::new(hub), clients.clone()));
            }
            _ => {
                shared.runtime.spawn(subscriber(Arc::clone(shared)));
            }
        });
        let slot = Arc::new(Slot {
            notify: Notify::new(),
            state: AtomicState::new(State::Queued),
            id: [b"w:", waiter_id.as_bytes()].concat().into(),
            handover,
            grant: Mutex::new(None),
            promoted: Notify::new(),
            step_back: AtomicBool::new(false),
            unsure: AtomicBool::new(false),
            missed_seen: AtomicU64::new(0),
            trying: AtomicBool::new(false),
        });
        let confirmed;
        {
            let mut channels = shared.lock();
            let ch = channels.entry(Arc::clone(channel)).or_default();
            ch.queue.push_back(Arc::clone(&slot));
            if !waiter_id.is_empty() {
                ch.by_id.insert(slot.id.clone(), Arc::clone(&slot));
            }
            ch.idle_since = None;
            ch.wake_all |= wake_all;
            confirmed = ch.confirmed;
            shared.waiters.fetch_add(1, Ordering::AcqRel);
            shared.registered.fetch_add(1, Ordering::AcqRel);
        }
        if !confirmed {
            shared.dirty.notify_one();
        }
        let waiter = Waiter {
            shared: Arc::clone(shared),
            channel: Arc::clone(channel),
            slot,
        };
        (waiter, confirmed)
    }

    /// Wakes the head of `channel`'s queue (or all of it, for a read-write
    /// lock): this client just released the lease itself.
    pub(crate) fn wake(&self, channel: &[u8]) {
        // Skipped only when no waiter exists at all: a woken head whose
        // attempt is out is not in `waiters`, and its attempt may have been
        // refused just before this release ran (see `Shared::wake`). An
        // acquire not yet registered looks once more when it registers on
        // a confirmed channel, or when the confirmation comes.
        if self.shared.registered.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut channels = self.shared.lock();
        if let Some(ch) = channels.get_mut(channel) {
            self.shared.wake(ch);
        }
    }

    /// A script of this client gave a fair lease to the waiter
    /// `waiter_id`, with `fence`, from the claim of its attempt number
    /// `attempt`: if it waits here, it takes it now (see
    /// `Shared::fair_grant`).
    pub(crate) fn grant(&self, channel: &[u8], waiter_id: &str, fence: u64, attempt: u64) {
        // Not skipped when no waiter is counted: one whose attempt is out
        // is not, and may be the one.
        let id = [b"w:", waiter_id.as_bytes()].concat();
        let mut channels = self.shared.lock();
        if let Some(ch) = channels.get_mut(channel) {
            self.shared.fair_grant(ch, &id, fence, attempt);
        }
    }

    /// A hand-over found the lease not held by the releaser: `offer`'s
    /// waiter is woken to try for itself ([`Offer::withdraw`]), and the
    /// channel's head too. This may be the second run of a release whose
    /// first, of unknown outcome, gave the lease to another waiter's token
    /// (the guard releases again after a dropped release): that waiter
    /// was woken then, and its attempt may have been refused before the
    /// hand-over ran. Returns false when the offered waiter is gone.
    pub(crate) fn withdraw(&self, offer: Offer, channel: &[u8]) -> bool {
        let delivered = offer.withdraw();
        self.wake(channel);
        delivered
    }

    /// Takes the head of `channel`'s queue for a hand-over, if it can take
    /// one: this client is about to release the lease and may give it to
    /// that waiter in the same script. The waiter stays counted (as woken)
    /// until the offer is settled. Over Redlock, not while the head's own
    /// attempt is out.
    pub(crate) fn offer(&self, channel: &Arc<[u8]>) -> Option<Offer> {
        if self.shared.waiters.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut channels = self.shared.lock();
        let ch = channels.get_mut(channel)?;
        let head = ch.queue.front()?;
        if ch.wake_all || head.handover.is_none() {
            return None;
        }
        if matches!(self.shared.source, WakeSource::Masters(_))
            && head.trying.load(Ordering::Acquire)
        {
            // Over independent masters a refused attempt gives back what
            // it got on every master it asked, by its token: that release
            // would undo a hand-over to the same token sent meanwhile. So a
            // head whose attempt is out is passed by: the lease is freed,
            // and the head hears of it when its attempt comes back.
            return None;
        }
        let slot = ch.queue.pop_front()?;
        promote(ch);
        ch.woken += 1;
        // The lease comes to it: a step back it was taking is over.
        slot.step_back.store(false, Ordering::Release);
        slot.state.store(State::Offered);
        let handover = slot.handover?;
        Some(Offer {
            shared: Arc::clone(&self.shared),
            channel: Arc::clone(channel),
            slot,
            handover,
            tolerated: if ch.others_idle_until.is_some_and(|t| Instant::now() < t) {
                u32::MAX
            } else {
                u32::from(ch.confirmed)
            },
            settled: false,
        })
    }

    /// Number of subscriber connections this client has open or opening
    /// (0 before the first wait, then 1, or one per master over
    /// independent masters).
    pub(crate) fn subscriber_connections(&self) -> usize {
        if !self.shared.started.is_completed() {
            return 0;
        }
        match &self.shared.source {
            WakeSource::Masters(clients) => clients.len(),
            _ => 1,
        }
    }
}

impl Drop for WakeHub {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}
