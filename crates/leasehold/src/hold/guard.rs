//! The proof of holding a lease: fencing token, self-renewal, loss signal.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backend::{Extended, Held};
use crate::engine::Core;
use crate::engine::schedule::Entry;
use crate::error::{Error, Result};
use crate::keys::LeaseKeys;
use crate::observe::{self, Loss};
use crate::token::Token;

/// What one holding of a lease shares between its re-entered guards and its
/// renewals.
pub(crate) struct Holding {
    pub(crate) core: Arc<Core>,
    pub(crate) keys: Arc<LeaseKeys>,
    pub(crate) token: Token,
    pub(crate) fence: u64,
    pub(crate) ttl: Duration,
    /// When the granting command was sent: the start of the hold time.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    granted: Instant,
    /// Set when the hold ends for the metrics (released, dropped, lost):
    /// it is counted once.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    ended: AtomicBool,
    /// Until when the lease is proved held, by the backend's validity rule
    /// applied to the last successful acquire or extend.
    /// A std mutex: it is held for a copy, never across an await.
    valid_until: Mutex<Instant>,
    /// Guards (the first and its re-entries) still holding.
    holders: AtomicUsize,
    /// Set by [`Guard::detach`]: the lease now belongs to whoever has the
    /// token, so the re-entered guards left neither renew nor release it.
    detached: AtomicBool,
    /// Cancelled once the lease is known lost (or can no longer be proved
    /// held). Never un-cancelled.
    pub(crate) lost: CancellationToken,
    /// Stops renewing: cancelled when the last guard lets go.
    pub(crate) stop: CancellationToken,
    /// Its place in the client's renewal schedule, while it has one.
    renewal: Mutex<Option<Entry>>,
    /// Renews every `ttl/3`; off, it renews only to lengthen a grant
    /// shorter than its ttl (a fair release's claim window), once.
    pub(crate) auto_renew: bool,
}

impl Holding {
    pub(crate) fn valid_until(&self) -> Instant {
        *self.valid_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn confirmed(&self, until: Instant) {
        let mut v = self.valid_until.lock().unwrap_or_else(|e| e.into_inner());
        if until > *v {
            *v = until;
        }
    }

    fn is_lost(&self) -> bool {
        self.lost.is_cancelled() || Instant::now() >= self.valid_until()
    }

    /// Enters this holding in its client's renewal schedule, due at `at`.
    pub(crate) fn schedule_renewal(self: &Arc<Self>, at: Instant) {
        let due: Arc<dyn crate::engine::schedule::Due> = Arc::clone(self) as _;
        self.core.renewals.enter(due, at);
    }

    pub(crate) fn lock_entry(&self) -> MutexGuard<'_, Option<Entry>> {
        self.renewal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last guard let go: no more renewals.
    fn stop(&self) {
        self.stop.cancel();
        self.core.renewals.remove(self);
    }

    /// Marks the lease lost, for `cause` (told as `why`): a `WARN` event,
    /// and the loss and the hold time in the metrics. Once.
    pub(crate) fn mark_lost(&self, cause: Loss, why: &str) {
        if !self.lost.is_cancelled() {
            tracing::warn!(
                target: observe::TARGET,
                name = self.keys.display(),
                kind = self.keys.kind(),
                token = self.token.prefix(),
                fence = self.fence,
                cause = cause.as_str(),
                "leasehold: lease lost: {why}"
            );
            self.lost.cancel();
            observe::loss(self.keys.kind(), cause);
            self.ended();
        }
    }

    /// The hold ends (released, dropped or lost): its time goes to the
    /// metrics, once.
    #[inline]
    fn ended(&self) {
        #[cfg(feature = "metrics")]
        if !self.ended.swap(true, Ordering::AcqRel) {
            observe::held(self.keys.kind(), self.granted);
        }
    }

    /// Resets the lease to its full ttl; fails with `LeaseLost` (and
    /// marks the holding lost) when the token no longer holds it, or when
    /// the extend was sent after the validity had run out.
    pub(crate) async fn extend(&self) -> Result<()> {
        if self.lost.is_cancelled() {
            return Err(Error::lost(self.keys.display()));
        }
        match self
            .core
            .backend
            .extend(&self.keys, &self.token, self.ttl)
            .await?
        {
            Extended::Held { sent, valid_until }
                if !self.lost.is_cancelled() && sent < self.valid_until() =>
            {
                self.confirmed(valid_until);
                Ok(())
            }
            // Released (or detached) meanwhile: the release may have run
            // first on another connection. Not a loss for anyone to see.
            _ if self.stop.is_cancelled() => Err(Error::lost(self.keys.display())),
            _ => {
                self.mark_lost(
                    Loss::Gone,
                    "the key was gone or held by another token when extending",
                );
                Err(Error::lost(self.keys.display()))
            }
        }
    }
}

/// Proof that this process holds a lease. Returned by
/// [`Lease::acquire`](crate::Lease::acquire) and friends.
///
/// - [`fence`](Guard::fence) is the fencing token: pass it with every write
///   to the protected resource, and have the resource refuse writes whose
///   fence is lower than one it has seen. That is what keeps a holder that
///   paused past its TTL from corrupting data.
/// - The guard renews the lease every `ttl/3` in the background (unless the
///   lease was built with `auto_renew(false)`).
/// - [`lost`](Guard::lost) completes as soon as the lease is known lost:
///   renewal found the key gone or taken, or the validity ran out without a
///   successful renewal. Use it in `select!` to stop work at once.
/// - Dropping the guard releases the lease in the background; it never
///   blocks and never panics. [`release`](Guard::release) does the same and
///   tells the outcome.
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
/// let guard = client.lease("billing/close-month").acquire().await?;
/// tokio::select! {
///     _ = guard.lost() => eprintln!("lost the lease; stopping"),
///     _ = async { /* the work, writing with guard.fence() */ } => {}
/// }
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[must_use = "the lease is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct Guard {
    holding: Arc<Holding>,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Counted in `holders`.
    Holding,
    /// The last holder, in the middle of `release().await`.
    Releasing,
    /// Nothing left to do on drop.
    Done,
}

impl Guard {
    pub(crate) fn new(
        core: &Arc<Core>,
        keys: Arc<LeaseKeys>,
        token: Token,
        held: Held,
        (ttl, window): (Duration, Duration),
        auto_renew: bool,
    ) -> Guard {
        let Held {
            fence,
            sent,
            valid_until,
        } = held;
        let holding = Arc::new(Holding {
            core: Arc::clone(core),
            keys,
            token,
            fence,
            ttl,
            granted: sent,
            ended: AtomicBool::new(false),
            valid_until: Mutex::new(valid_until),
            holders: AtomicUsize::new(1),
            detached: AtomicBool::new(false),
            lost: CancellationToken::new(),
            stop: CancellationToken::new(),
            renewal: Mutex::new(None),
            auto_renew,
        });
        // A grant shorter than the ttl (a fair release's claim window) is
        // lengthened within a third of it, off the critical path, with or
        // without auto-renewal.
        if auto_renew || window < ttl {
            holding.schedule_renewal(sent + window / 3);
        }
        Guard {
            holding,
            state: State::Holding,
        }
    }

    /// The fencing token: strictly greater than the fence of every earlier
    /// acquisition of this name, by any client, even if Redis lost its
    /// counter since (a restart without persistence, eviction): fences are
    /// floored at the Redis server's clock (ms × 1024), so this holds as
    /// long as that clock does not step back. Not a count of acquisitions:
    /// it jumps with time.
    ///
    /// Pass it with every write, so the store can refuse a stale holder
    /// (see [`FenceGate`](crate::FenceGate)):
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client, mut db: redis::aio::MultiplexedConnection) -> leasehold::Result<()> {
    /// let guard = client.lease("orders/42").acquire().await?;
    /// // The store keeps the highest fence and refuses lower ones.
    /// let () = redis::cmd("HSET")
    ///     .arg("orders:42").arg("status").arg("paid").arg("fence").arg(guard.fence())
    ///     .query_async(&mut db).await.expect("write");
    /// # Ok(()) }
    /// ```
    pub fn fence(&self) -> u64 {
        self.holding.fence
    }

    /// The owner token. A secret: it is what lets its holder extend and
    /// release the lease. Its `Display` shows only a prefix.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let guard = client.lease("deploy").acquire().await?;
    /// println!("held by {}", guard.token());     // a prefix only
    /// let secret: &str = guard.token().as_str(); // the whole token, for `leasehold release`
    /// # Ok(()) }
    /// ```
    pub fn token(&self) -> &Token {
        &self.holding.token
    }

    /// The lease's name, as given.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let guard = client.lease("deploy").acquire().await?;
    /// assert_eq!(guard.name(), b"deploy");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &[u8] {
        self.holding.keys.name()
    }

    /// The ttl the lease was taken with (and is renewed to).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let guard = client.lease("deploy").ttl(Duration::from_secs(20)).acquire().await?;
    /// assert_eq!(guard.ttl(), Duration::from_secs(20));
    /// # Ok(()) }
    /// ```
    pub fn ttl(&self) -> Duration {
        self.holding.ttl
    }

    /// How much longer the lease is proved held, by this host's clock, with
    /// the drift margin taken off; zero once it is lost.
    ///
    /// Check it before a step that must not outlive the lease:
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let guard = client.lease("compaction").acquire().await?;
    /// if guard.remaining() < Duration::from_secs(2) {
    ///     guard.extend().await?; // or give up before starting
    /// }
    /// # Ok(()) }
    /// ```
    pub fn remaining(&self) -> Duration {
        if self.holding.lost.is_cancelled() {
            return Duration::ZERO;
        }
        self.holding
            .valid_until()
            .saturating_duration_since(Instant::now())
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.holding.core
    }

    pub(crate) fn keys(&self) -> &LeaseKeys {
        &self.holding.keys
    }

    pub(crate) fn mark_lost(&self, cause: Loss, why: &str) {
        self.holding.mark_lost(cause, why);
    }

    /// True once the lease is known lost or can no longer be proved held.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client, batches: Vec<Vec<u8>>) -> leasehold::Result<()> {
    /// let guard = client.lease("import").acquire().await?;
    /// for batch in batches {
    ///     if guard.is_lost() {
    ///         break; // another holder may be importing now
    ///     }
    ///     // ... write `batch`, with `guard.fence()` ...
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_lost(&self) -> bool {
        self.holding.is_lost()
    }

    /// Completes as soon as the lease is known lost, or can no longer be
    /// proved held (its validity ran out without a renewal). Never completes
    /// while the lease is held.
    ///
    /// Race it against the work, to stop as soon as the lease is gone:
    ///
    /// ```no_run
    /// # async fn work() {}
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let guard = client.lease("reindex").acquire().await?;
    /// tokio::select! {
    ///     () = work() => guard.release().await?,
    ///     () = guard.lost() => eprintln!("lease lost; work abandoned"),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches; dropping it changes nothing.
    pub async fn lost(&self) {
        loop {
            let until = self.holding.valid_until();
            tokio::select! {
                _ = self.holding.lost.cancelled() => return,
                _ = tokio::time::sleep_until(until) => {
                    if Instant::now() >= self.holding.valid_until() {
                        self.holding
                            .mark_lost(Loss::Expired, "its validity ran out without a renewal");
                        return;
                    }
                }
            }
        }
    }

    /// Resets the lease's TTL to its full ttl now (the background renewal
    /// does this by itself every `ttl/3`).
    ///
    /// Fails with [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost) when
    /// the key no longer holds this guard's token; the guard is then lost for
    /// good.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// // No background renewal: extend by hand between steps.
    /// let guard = client.lease("migration").auto_renew(false).acquire().await?;
    /// for step in 0..10 {
    ///     // ... step `step`, shorter than the ttl ...
    ///     guard.extend().await?; // fails with LeaseLost if it was taken meanwhile
    /// }
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// If dropped after the script was sent, the extension may still happen;
    /// the guard's validity is then simply not raised.
    pub async fn extend(&self) -> Result<()> {
        self.holding.extend().await
    }

    /// Another guard on the same holding, for re-entry by the owner: the
    /// lease ends when the last of them is released or dropped. Both share
    /// the fence, token, renewal and loss signal.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let outer = client.lease("ledger").acquire().await?;
    /// let inner = outer.reenter();
    /// inner.release().await?; // still held by `outer`
    /// outer.release().await?; // now released
    /// # Ok(()) }
    /// ```
    pub fn reenter(&self) -> Guard {
        self.holding.holders.fetch_add(1, Ordering::AcqRel);
        Guard {
            holding: Arc::clone(&self.holding),
            state: State::Holding,
        }
    }

    /// Lets go of the lease and reports the outcome.
    ///
    /// With re-entered guards alive, this only drops this one. The last one
    /// stops the renewal and runs the release script: `Ok(())` when the
    /// lease was still ours and is now free (the next waiter is woken),
    /// [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost) when it had
    /// already expired or been taken (whatever was done under it may have
    /// overlapped with another holder). Any other error (a broken
    /// connection) leaves the outcome unknown: the release is tried once
    /// more in the background, so that the lease does not stay held for
    /// its whole TTL. After [`detach`](Guard::detach) of a re-entered
    /// guard, the last one only lets go: the lease is the token's.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let guard = client.lease("nightly").acquire().await?;
    /// // ... the job ...
    /// match guard.release().await {
    ///     Ok(()) => {}
    ///     Err(e) if e.is_lost() => eprintln!("the job may have overlapped another holder: {e}"),
    ///     Err(e) => return Err(e), // unknown; the lease ends by its TTL at the latest
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped before it completes, the guard's drop
    /// releases the lease in the background, as for any dropped guard.
    pub async fn release(mut self) -> Result<()> {
        if self.holding.holders.fetch_sub(1, Ordering::AcqRel) > 1 {
            self.state = State::Done;
            return Ok(());
        }
        if self.holding.detached.load(Ordering::Acquire) {
            // The lease was detached: it is the token holder's to release.
            self.state = State::Done;
            return Ok(());
        }
        self.state = State::Releasing;
        self.holding.stop();
        let holding = &self.holding;
        let span = observe::release_span!(holding.keys, holding.token, holding.fence);
        let was_lost = holding.lost.is_cancelled();
        // Boxed: the release's state (the backend's request) is most of
        // this future, which a task waiting to acquire carries all along.
        let result = Box::pin(holding.core.release(&holding.keys, &holding.token))
            .instrument(span.clone())
            .await;
        self.state = State::Done;
        let released = match result {
            Ok(released) => released,
            Err(e) => {
                span.record("outcome", "error");
                // The hold ends here for the metrics, whatever became of it.
                self.holding.ended();
                // It may not have run (a broken connection): try once more
                // in the background rather than leave the lease held until
                // its TTL. By token, so a no-op if the first one ran.
                self.holding
                    .core
                    .release_in_background(Arc::clone(&self.holding.keys), self.holding.token);
                return Err(e);
            }
        };
        match released {
            true if !was_lost => {
                span.record("outcome", "released");
                self.holding.ended();
                Ok(())
            }
            _ => {
                span.record("outcome", "lost");
                self.holding
                    .mark_lost(Loss::Gone, "it was no longer held when released");
                // Lost before (the loss counted then): the hold ends now.
                self.holding.ended();
                Err(Error::lost(self.holding.keys.display()))
            }
        }
    }
}

/// A lease left held in Redis with nobody renewing it: what
/// [`Guard::detach`] returns. It ends when its TTL runs out, or when
/// someone releases it with the token.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Detached {
    /// The owner token (a secret: its `Display` shows only a prefix).
    pub token: Token,
    /// The fencing token of the acquisition.
    pub fence: u64,
    /// The TTL the lease was last set to.
    pub ttl: Duration,
    /// How long it is still proved held, as [`Guard::remaining`] said.
    pub remaining: Duration,
}

impl Guard {
    /// Stops renewing and lets go of the guard **without** releasing the
    /// lease: it stays held until its TTL runs out or someone releases it
    /// by its token. This is how `leasehold acquire` hands a lease to a
    /// shell script. Re-entered guards of the same holding are lost from
    /// then on (the token's holder may release the lease at any time), and
    /// releasing or dropping them leaves the lease alone.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let d = client.lease("deploy").acquire().await?.detach();
    /// println!("{} {}", d.token.as_str(), d.fence); // for a later `leasehold release`
    /// # Ok(()) }
    /// ```
    pub fn detach(mut self) -> Detached {
        let remaining = self.remaining();
        // Before counting this guard out: the last of the others to let go
        // then sees it, and leaves the lease alone.
        self.holding.detached.store(true, Ordering::Release);
        if self.holding.holders.fetch_sub(1, Ordering::AcqRel) > 1 {
            // Whoever has the token may release it at any time now: the
            // re-entered guards left can no longer prove they hold it.
            self.holding.lost.cancel();
        }
        self.holding.stop();
        self.state = State::Done;
        Detached {
            token: self.holding.token,
            fence: self.holding.fence,
            ttl: self.holding.ttl,
            remaining,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let last = match self.state {
            State::Done => false,
            State::Releasing => true,
            State::Holding => {
                self.holding.holders.fetch_sub(1, Ordering::AcqRel) == 1
                    && !self.holding.detached.load(Ordering::Acquire)
            }
        };
        if last {
            self.holding.stop();
            self.holding.ended();
            self.holding
                .core
                .release_in_background(Arc::clone(&self.holding.keys), self.holding.token);
        }
    }
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("name", &self.holding.keys.display())
            .field("fence", &self.holding.fence)
            .field("token", &self.holding.token)
            .field("remaining", &self.remaining())
            .finish()
    }
}
