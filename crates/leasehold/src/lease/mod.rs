//! A lease: a named lock that expires, and the ways to take it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

mod acquire;

/// The options and the ways to take it, for a type that wraps a [`Lease`]
/// in a field `lease` (a semaphore, a side of a read-write lock): the same
/// methods, documented once, on [`Lease`].
macro_rules! lease_like {
    ($what:literal) => {
        #[doc = concat!("How long ", $what, " lives unless renewed (see [`Lease::ttl`](crate::Lease::ttl)).")]
        pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
            self.lease = self.lease.ttl(ttl);
            self
        }

        #[doc = concat!("How long `acquire` waits for ", $what, " (see [`Lease::wait`](crate::Lease::wait)).")]
        pub fn wait(mut self, wait: std::time::Duration) -> Self {
            self.lease = self.lease.wait(wait);
            self
        }

        /// The fallback timer of a waiter (see
        /// [`Lease::backoff`](crate::Lease::backoff)).
        pub fn backoff(mut self, min: std::time::Duration, max: std::time::Duration) -> Self {
            self.lease = self.lease.backoff(min, max);
            self
        }

        /// Whether guards renew themselves every `ttl/3` (see
        /// [`Lease::auto_renew`](crate::Lease::auto_renew)).
        pub fn auto_renew(mut self, on: bool) -> Self {
            self.lease = self.lease.auto_renew(on);
            self
        }

        /// The name, as given.
        pub fn name(&self) -> &[u8] {
            self.lease.name()
        }

        /// How many tasks of this process wait for it right now (see
        /// [`Lease::local_waiters`](crate::Lease::local_waiters)).
        pub fn local_waiters(&self) -> usize {
            self.lease.local_waiters()
        }

        #[doc = concat!("Takes ", $what, " if free; never waits (see [`Lease::try_acquire`](crate::Lease::try_acquire)).")]
        ///
        /// # Cancel safety
        ///
        /// As [`Lease::try_acquire`](crate::Lease::try_acquire)'s.
        pub async fn try_acquire(&self) -> crate::Result<crate::Guard> {
            self.lease.try_acquire().await
        }

        #[doc = concat!("Takes ", $what, ", waiting up to the wait timeout (see [`Lease::acquire`](crate::Lease::acquire)).")]
        ///
        /// # Cancel safety
        ///
        /// As [`Lease::acquire`](crate::Lease::acquire)'s.
        pub async fn acquire(&self) -> crate::Result<crate::Guard> {
            self.lease.acquire().await
        }

        #[doc = concat!("Takes ", $what, ", runs `f` with the guard, and lets go (see [`Lease::with`](crate::Lease::with)).")]
        ///
        /// # Cancel safety
        ///
        /// As [`Lease::with`](crate::Lease::with)'s.
        pub async fn with<T>(&self, f: impl AsyncFnOnce(&crate::Guard) -> T) -> crate::Result<T> {
            self.lease.with(f).await
        }
    };
}
pub(crate) use lease_like;

use crate::backend::{Extended, Held};
use crate::engine::Core;
use crate::error::{Error, ErrorKind, Result};
use crate::hold::Guard;
use crate::keys::{Family, LeaseKeys, MAX_NAME_LEN};
use crate::token::Token;

/// The shortest ttl accepted: the lease must outlive a round trip to Redis
/// and the drift margin (1 % + 2 ms).
pub const MIN_TTL: Duration = Duration::from_millis(10);

/// The longest ttl accepted: 365 days. Redis itself overflows only past
/// millions of years, but a lease is meant to be renewed, not held for ever.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// A lease on one name, with its options. Cheap to clone; build it once and
/// acquire it as often as needed.
///
/// Options (each has a default; a new option never breaks a signature):
///
/// | option | default | meaning |
/// |---|---|---|
/// | [`ttl`](Lease::ttl) | 30 s | how long the lease lives without renewal |
/// | [`wait`](Lease::wait) | 10 s | how long [`acquire`](Lease::acquire) waits |
/// | [`backoff`](Lease::backoff) | 50 ms .. 1 s | the fallback timer of a waiter |
/// | [`auto_renew`](Lease::auto_renew) | on | renew every ttl/3 while the guard lives |
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
/// use std::time::Duration;
/// let lease = client
///     .lease("deploy/production")
///     .ttl(Duration::from_secs(10))
///     .wait(Duration::from_secs(60));
/// let guard = lease.acquire().await?;
/// // ... deploy, passing guard.fence() along ...
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Lease {
    core: Arc<Core>,
    keys: Arc<LeaseKeys>,
    /// Why the name was refused; reported by every acquire.
    name_error: Option<String>,
    ttl: Duration,
    wait: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    auto_renew: bool,
}

impl Lease {
    pub(crate) fn new(core: &Arc<Core>, name: &[u8]) -> Lease {
        Lease::with_keys(core, name, LeaseKeys::new(name))
    }

    /// A lease-like handle on other keys of `name` (a semaphore's permits).
    pub(crate) fn with_keys(core: &Arc<Core>, name: &[u8], keys: LeaseKeys) -> Lease {
        Lease {
            core: Arc::clone(core),
            name_error: Lease::check_name(name)
                .err()
                .and_then(|e| match e.into_kind() {
                    ErrorKind::InvalidArgument { why, .. } => Some(why),
                    _ => None,
                }),
            keys: Arc::new(keys),
            ttl: Duration::from_secs(30),
            wait: Duration::from_secs(10),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            auto_renew: true,
        }
    }

    /// Checks a name: 1 to 1024 bytes, any bytes.
    ///
    /// ```
    /// assert!(leasehold::Lease::check_name(b"jobs/nightly").is_ok());
    /// assert!(leasehold::Lease::check_name(b"").is_err());
    /// assert!(leasehold::Lease::check_name(&[b'x'; 1025]).is_err());
    /// ```
    pub fn check_name(name: &[u8]) -> Result<()> {
        if name.is_empty() {
            Err(Error::invalid(
                "name",
                "empty: give the lease a name of 1 to 1024 bytes",
            ))
        } else if name.len() > MAX_NAME_LEN {
            Err(Error::invalid(
                "name",
                format!(
                    "{} bytes is longer than 1024 bytes: shorten it, or hash it into a fixed-size name",
                    name.len()
                ),
            ))
        } else {
            Ok(())
        }
    }

    /// How long the lease lives unless renewed: 10 ms to 365 days, default
    /// 30 s. While a guard lives, it renews the lease every `ttl/3`; the ttl
    /// is how long the lease outlives a holder that crashed or froze.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// // A crashed holder blocks the others for 15 s at most.
    /// let guard = client.lease("billing").ttl(Duration::from_secs(15)).acquire().await?;
    /// # Ok(()) }
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long [`acquire`](Lease::acquire) waits for the lease (default
    /// 10 s). `Duration::ZERO` tries once, like
    /// [`try_acquire`](Lease::try_acquire) but reported as a timeout.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let guard = client.lease("billing").wait(Duration::from_secs(60)).acquire().await?;
    /// # Ok(()) }
    /// ```
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The fallback timer of a waiter (default 50 ms growing to 1 s).
    ///
    /// Waiters are woken by the release itself; this timer only covers what
    /// a release notification cannot: a holder whose TTL runs out, a foreign
    /// client (redis-py, redsync) that does not publish, a notification lost
    /// while the subscriber reconnects. A waiter sleeps at most the holder's
    /// remaining TTL, and otherwise `min` doubling up to `max`, with jitter.
    /// Of a plain lease's local waiters only the first runs this timer; the
    /// others wait for it to hand the lease on. A max past 365 days (say
    /// `Duration::MAX`, for "no cap") counts as 365 days.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// // A foreign client (no release notification) holds it often: look
    /// // again within 200 ms at the latest.
    /// let guard = client
    ///     .lease("shared-with-python")
    ///     .backoff(Duration::from_millis(20), Duration::from_millis(200))
    ///     .acquire()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// Whether the guard renews the lease by itself every `ttl/3` (default
    /// on). Off, the lease lives one ttl unless [`Guard::extend`] is called,
    /// and [`Guard::lost`] completes when that ttl runs out.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let guard = client
    ///     .lease("batch")
    ///     .ttl(Duration::from_secs(60))
    ///     .auto_renew(false)
    ///     .acquire()
    ///     .await?;
    /// // ... work; call guard.extend() before the minute is up ...
    /// # Ok(()) }
    /// ```
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// Fair mode (default off): the lease goes to waiters in the order they
    /// came, across all clients, and a release gives it straight to the
    /// waiter whose turn it is.
    ///
    /// Waiters stand in a queue in Redis (`leasehold:{N}:queue`), each with
    /// the owner token it drew for itself; a new `acquire` or `try_acquire`
    /// does not get the lease while others wait for it. The release script
    /// gives the lease to the first waiter's token, with the next fence,
    /// and tells that waiter alone, in whichever process: one script per
    /// hand-over, and the waiter sends nothing before its `acquire`
    /// returns. A waiter that gives up (its `acquire` timed out or was
    /// dropped) leaves the queue at once, and gives on a lease handed to it
    /// meanwhile; one whose process dies leaves it three fallback periods
    /// (`backoff` max, at least 1 s) after its last attempt, so it delays
    /// the others by at most that long, even when a release handed it the
    /// lease (it holds it until then, not for its ttl). The lease itself
    /// is the same key as in normal mode: fair and normal holders exclude
    /// each other, but only fair waiters keep their turn.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let guard = client.lease("printer").fair(true).acquire().await?;
    /// # Ok(()) }
    /// ```
    pub fn fair(mut self, on: bool) -> Self {
        let name = self.keys.name();
        match (self.keys.family(), on) {
            (Family::Lease, true) => self.keys = Arc::new(LeaseKeys::fair(name)),
            (Family::Fair(_), false) => self.keys = Arc::new(LeaseKeys::new(name)),
            _ => {}
        }
        self
    }

    /// The same options on other keys of the name (a semaphore switching
    /// fair mode on or off).
    pub(crate) fn set_keys(&mut self, keys: LeaseKeys) {
        self.keys = Arc::new(keys);
    }

    /// The name, as given.
    ///
    /// ```no_run
    /// # fn f(client: leasehold::Client) {
    /// assert_eq!(client.lease("deploy").name(), b"deploy");
    /// # }
    /// ```
    pub fn name(&self) -> &[u8] {
        self.keys.name()
    }

    pub(crate) fn keys(&self) -> &Arc<LeaseKeys> {
        &self.keys
    }

    pub(crate) fn configured_ttl(&self) -> Duration {
        self.ttl
    }

    /// How many tasks of this process wait for this name right now (queued,
    /// or woken and about to try). Other processes' waiters are not counted.
    ///
    /// ```no_run
    /// # fn f(client: leasehold::Client) {
    /// let lease = client.lease("thumbnails");
    /// if lease.local_waiters() > 100 {
    ///     println!("a queue is building up for {:?}", lease.name());
    /// }
    /// # }
    /// ```
    pub fn local_waiters(&self) -> usize {
        self.core.hub.waiters(self.keys.wake())
    }

    pub(super) fn check(&self) -> Result<()> {
        if let Some(why) = &self.name_error {
            return Err(Error::invalid("name", why.clone()));
        }
        if self.ttl < MIN_TTL {
            return Err(Error::invalid(
                "ttl",
                format!(
                    "{:?} is too short: at least 10ms, so that the lease outlives a round trip to Redis",
                    self.ttl
                ),
            ));
        }
        if self.ttl > MAX_TTL {
            return Err(Error::invalid(
                "ttl",
                format!(
                    "{}s is too long: at most 365 days (a lease is renewed while held; a long ttl only delays recovery from a crashed holder)",
                    self.ttl.as_secs()
                ),
            ));
        }
        if let Family::Permit { limit: 0, .. } = self.keys.family() {
            return Err(Error::invalid(
                "limit",
                "0 permits would let nobody in: give a limit of at least 1",
            ));
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return Err(Error::invalid(
                "backoff",
                format!(
                    "min {:?} and max {:?}: min must be more than zero and at most max",
                    self.backoff_min, self.backoff_max
                ),
            ));
        }
        Ok(())
    }

    /// Acquires the lease (waiting as [`acquire`](Lease::acquire) does),
    /// runs `f` with the guard, and releases the lease.
    ///
    /// `Ok(value)` means `f` ran to the end while the lease was held. If the
    /// lease is lost while `f` runs, `f` is cancelled at its next `.await`
    /// and the result is [`ErrorKind::LeaseLost`].
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let rows = client
    ///     .lease("reports/nightly")
    ///     .with(async |guard| {
    ///         // write the report, tagging each write with guard.fence()
    ///         42
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels `f` and drops the guard, which releases
    /// the lease in the background.
    pub async fn with<T>(&self, f: impl AsyncFnOnce(&Guard) -> T) -> Result<T> {
        let guard = self.acquire().await?;
        let value = {
            let work = f(&guard);
            tokio::select! {
                v = work => Some(v),
                _ = guard.lost() => None,
            }
        };
        match value {
            Some(v) => guard.release().await.map(|()| v),
            None => {
                drop(guard);
                Err(Error::lost(self.keys.display()))
            }
        }
    }

    /// Releases the lease if, and only if, `token` holds it; for holders
    /// that keep the token instead of a [`Guard`] (shell scripts through
    /// `leasehold release`). Returns whether it was released; `false` means
    /// the lease was free, expired, or someone else's, and was left alone.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let token = leasehold::Token::parse("00112233445566778899aabbccddeeff")?;
    /// let released = client.lease("deploy").release_by_token(&token).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// If dropped after the script was sent, the release still happens.
    pub async fn release_by_token(&self, token: &Token) -> Result<bool> {
        if let Some(why) = &self.name_error {
            return Err(Error::invalid("name", why.clone()));
        }
        self.core.release(&self.keys, token).await
    }

    /// Resets the lease's TTL to this lease's [`ttl`](Lease::ttl) if, and
    /// only if, `token` holds it. Returns whether it was extended.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client, token: leasehold::Token) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let lease = client.lease("deploy").ttl(Duration::from_secs(60));
    /// if !lease.extend_by_token(&token).await? {
    ///     eprintln!("lost the lease");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// If dropped after the script was sent, the extension still happens.
    pub async fn extend_by_token(&self, token: &Token) -> Result<bool> {
        self.check()?;
        Ok(matches!(
            self.core
                .backend
                .extend(&self.keys, token, self.ttl)
                .await?,
            Extended::Held { .. }
        ))
    }

    /// The longest fallback period: the backoff max, counted as at most
    /// [`MAX_TTL`] so that `Duration::MAX` ("no cap") cannot overflow.
    pub(super) fn fallback_max(&self) -> Duration {
        self.backoff_max.min(MAX_TTL)
    }

    /// Three fallback periods: how long a waiter's mark in Redis (a
    /// writer's intent, a fair waiter's place) lasts unless its next
    /// attempt refreshes it.
    pub(super) fn three_fallbacks(&self) -> Duration {
        self.fallback_max().saturating_mul(3)
    }

    /// The guard of `token`'s acquisition with `fence`, sent at `sent`.
    pub(crate) fn guard(&self, token: Token, fence: u64, sent: Instant) -> Guard {
        self.guard_within(token, fence, sent, None)
    }

    /// The same for a grant that lasts `window` from `sent` (a fair
    /// release's, for the waiter's claim window), or the ttl (`None`).
    /// A window shorter than the ttl is lengthened by the guard's first
    /// renewal, due within a third of it, even without `auto_renew`.
    pub(crate) fn guard_within(
        &self,
        token: Token,
        fence: u64,
        sent: Instant,
        window: Option<Duration>,
    ) -> Guard {
        let window = window.map_or(self.ttl, |w| w.min(self.ttl));
        let held = Held {
            fence,
            sent,
            valid_until: self.core.backend.valid_until(sent, window),
        };
        Guard::new(
            &self.core,
            Arc::clone(&self.keys),
            token,
            held,
            (self.ttl, window),
            self.auto_renew,
        )
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.keys.display())
            .field("ttl", &self.ttl)
            .field("wait", &self.wait)
            .field("auto_renew", &self.auto_renew)
            .finish()
    }
}
