//! A lease: a named lock that expires, and the ways to take it.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, ErrorKind, Result};
use crate::guard::{Guard, ttl_ms};
use crate::keys::{Kind, LeaseKeys, MAX_NAME_LEN};
use crate::scripts::{self, Acquired, WaitInfo};
use crate::token::Token;
use crate::wake::{Claim, Handover, STEP_BACK, Waiter, Won};

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
    client: Client,
    keys: Arc<LeaseKeys>,
    /// Why the name was refused; reported by every acquire.
    name_error: Option<String>,
    ttl: Duration,
    wait: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    auto_renew: bool,
}

enum Attempt {
    /// Taken, with this fence; the script was sent at that instant.
    Got(u64, Instant),
    /// Held by someone else, with their PTTL in ms (-1: no TTL).
    Held(i64),
}

impl Lease {
    pub(crate) fn new(client: &Client, name: &[u8]) -> Lease {
        Lease::with_keys(client, name, LeaseKeys::new(name))
    }

    /// A lease-like handle on other keys of `name` (a semaphore's permits).
    pub(crate) fn with_keys(client: &Client, name: &[u8], keys: LeaseKeys) -> Lease {
        Lease {
            client: client.clone(),
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
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long [`acquire`](Lease::acquire) waits for the lease (default
    /// 10 s). `Duration::ZERO` tries once, like
    /// [`try_acquire`](Lease::try_acquire) but reported as a timeout.
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
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// Whether the guard renews the lease by itself every `ttl/3` (default
    /// on). Off, the lease lives one ttl unless [`Guard::extend`] is called,
    /// and [`Guard::lost`] completes when that ttl runs out.
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// Fair mode (default off): the lease goes to waiters in the order they
    /// came, across all clients, and a release wakes only the waiter whose
    /// turn it is.
    ///
    /// Waiters stand in a queue in Redis (`leasehold:{N}:queue`); a new
    /// `acquire` or `try_acquire` does not get the lease while others wait
    /// for it. A waiter that gives up (its `acquire` timed out or was
    /// dropped) leaves the queue at once; one whose process dies leaves it
    /// three fallback periods (`backoff` max, at least 1 s) after its last
    /// attempt, so it delays the others by at most that long. The
    /// lease itself is the same key as in normal mode: fair and normal
    /// holders exclude each other, but only fair waiters keep their turn.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let guard = client.lease("printer").fair(true).acquire().await?;
    /// # Ok(()) }
    /// ```
    pub fn fair(mut self, on: bool) -> Self {
        let name = self.keys.name();
        match (self.keys.kind(), on) {
            (Kind::Lease, true) => self.keys = Arc::new(LeaseKeys::fair(name)),
            (Kind::Fair(_), false) => self.keys = Arc::new(LeaseKeys::new(name)),
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
    pub fn local_waiters(&self) -> usize {
        self.client.inner.hub.waiters(self.keys.wake())
    }

    fn check(&self) -> Result<()> {
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

    /// Takes the lease if it is free; never waits.
    ///
    /// Fails with [`ErrorKind::Held`] (see [`Error::is_held`]) when someone
    /// else holds it.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// match client.lease("cron/cleanup").try_acquire().await {
    ///     Ok(guard) => { /* run the job */ guard.release().await?; }
    ///     Err(e) if e.is_held() => println!("another host runs it: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// If the future is dropped after the script was sent, the lease may
    /// have been taken; a background task then releases it by its token at
    /// once (the release runs after the acquire on the same connection).
    pub async fn try_acquire(&self) -> Result<Guard> {
        self.check()?;
        let token = Token::random();
        let mut pending = Pending::new(self, token);
        match self.attempt(&mut pending, None).await? {
            Attempt::Got(fence, sent) => {
                let won = pending.claim.won(fence, sent);
                Ok(pending.into_guard(won))
            }
            Attempt::Held(pttl) => Err(ErrorKind::Held {
                name: self.keys.display().to_owned(),
                remaining: remaining(pttl),
            }
            .into()),
        }
    }

    /// Takes the lease, waiting up to the [`wait`](Lease::wait) timeout for
    /// its holder to let go.
    ///
    /// A waiter sends nothing while it waits: it is woken by the holder's
    /// release (published by the release script), or by its fallback timer.
    /// Local waiters of one name are served in the order they came, and a
    /// new `acquire` does not jump ahead of them. Connection errors and
    /// Redis's "not now" replies ([`Error::is_retryable`]) are retried until
    /// the wait runs out.
    ///
    /// Fails with [`ErrorKind::Timeout`] (see [`Error::is_timeout`]) naming
    /// the holder's token prefix and remaining TTL.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits just leaves the queue (a wake it
    /// had received goes to the next waiter). Dropping it after the script
    /// was sent, or while a local release hands the lease over to it (or
    /// after a hand-over whose reply was lost): the lease may have been
    /// taken, and a background task then releases it by its token at once;
    /// if that fails too, the TTL ends it.
    pub async fn acquire(&self) -> Result<Guard> {
        self.check()?;
        let started = Instant::now();
        let deadline = started.checked_add(self.wait);
        let hub = &self.client.inner.hub;
        let channel = self.keys.wake();
        let mut pending = Pending::new(self, Token::random());
        // Names this waiter in a fair queue (not a secret, unlike the token).
        let waiter_id = self.keys.is_fair().then(Token::random);
        // Until it gets the lease, a fair waiter that gives up leaves the
        // queue (see `Pending`); the acquire script takes it out on success.
        pending.fair_id = waiter_id;
        let waiter_id = waiter_id.as_ref().map_or("", Token::as_str);
        // A plain lease can be handed straight to this waiter's token by a
        // local release (see `Client::release_raw`).
        let handover = matches!(self.keys.kind(), Kind::Lease).then(|| Handover {
            token: pending.token,
            ttl_ms: ttl_ms(self.ttl),
        });
        let mut pttl = -1;
        let backoff_max = self.fallback_max();
        let mut backoff = self.backoff_min.min(backoff_max);
        let mut last_error: Option<Error> = None;
        // The next attempt follows a step back for other clients' waiters.
        let mut stepped_back = false;
        // Do not jump ahead of local waiters of this name. In fair mode the
        // queue in Redis keeps the order: try at once, so that the first
        // attempt takes this waiter's place in it as it arrives.
        let mut try_now = self.keys.is_fair() || !hub.has_waiters(channel);
        if self.keys.is_fair() && hub.is_subscribed(channel) {
            // Stand in the local queue before the first attempt, which may
            // queue this waiter in Redis: a release naming it right after
            // then finds it, and no second look is needed.
            let (w, _) = hub.register(channel, self.keys.wakes_all(), waiter_id, handover);
            pending.claim.join(w);
        }
        loop {
            if try_now {
                if let Some(w) = pending.claim.waiter() {
                    w.begin_attempt();
                }
                let patience =
                    deadline.map_or(MAX_TTL, |d| d.saturating_duration_since(Instant::now()));
                // With no time left, a refusal ends the call: no intent, no queue.
                let waiting = (!patience.is_zero()).then_some((waiter_id, patience));
                match self.attempt(&mut pending, waiting).await {
                    Ok(Attempt::Got(fence, sent)) => {
                        if let Some(w) = pending.claim.waiter()
                            && stepped_back
                        {
                            // Nobody took it while we stood back.
                            w.others_idle();
                        }
                        // A hand-over to this token that raced the attempt
                        // is this very lease (see `Claim::won`).
                        let won = pending.claim.won(fence, sent);
                        return Ok(pending.into_guard(won));
                    }
                    Ok(Attempt::Held(p)) => {
                        pttl = p;
                        last_error = None;
                        stepped_back = false;
                    }
                    Err(e) if e.is_retryable() => last_error = Some(e),
                    Err(e) => return Err(e),
                }
                if let Some(w) = pending.claim.waiter() {
                    w.attempt_failed();
                }
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(match last_error {
                    Some(e) => e,
                    None => self.timeout_error(now - started, pttl).await,
                });
            }
            if pending.claim.waiter().is_none() {
                let (w, confirmed) =
                    hub.register(channel, self.keys.wakes_all(), waiter_id, handover);
                pending.claim.join(w);
                if confirmed && try_now {
                    // A release between our attempt and joining the queue
                    // published to nobody: look once more.
                    continue;
                }
            }
            let waiter = pending.claim.waiter().expect("registered above");
            let mut nap = backoff.mul_f64(rand::rng().random_range(0.5..=1.0));
            if pttl >= 0 {
                nap = nap.min(Duration::from_millis(pttl as u64 + 1));
            }
            if waiter.steps_back() {
                // Our release freed the lease for other clients' waiters.
                nap = STEP_BACK;
                stepped_back = true;
            }
            // Behind the head of a plain lease's queue, no timer but the deadline.
            let timer = waiter.needs_timer();
            let wake_at = match (deadline, timer) {
                (Some(d), true) => d.min(now + nap),
                (Some(d), false) => d,
                (None, true) => now + nap,
                (None, false) => now + MAX_TTL,
            };
            tokio::select! {
                biased;
                _ = waiter.woken() => {
                    // Woken by a release: if it was another client's, they
                    // are not idle.
                    stepped_back = false;
                }
                _ = waiter.promoted() => {
                    // Now the head: set its fallback timer (or step back).
                    try_now = false;
                    continue;
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    backoff = backoff.saturating_mul(2).min(backoff_max);
                }
            }
            // Settles the claim: an earlier attempt that failed on the wire
            // left it armed, and must not release this lease.
            if let Some(won) = pending.claim.take_grant() {
                return Ok(pending.into_guard(won));
            }
            // While a local release hands the lease over, wait for it.
            try_now = !pending.claim.waiter().is_some_and(Waiter::is_offered);
        }
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
        self.client.release_raw(&self.keys, token).await
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
        scripts::extend(
            &mut self.client.conn(),
            &self.keys,
            token.as_bytes(),
            ttl_ms(self.ttl),
        )
        .await
        .map_err(|e| Error::redis("the extend script", self.client.addr(), e))
    }

    /// The longest fallback period: the backoff max, counted as at most
    /// [`MAX_TTL`] so that `Duration::MAX` ("no cap") cannot overflow.
    fn fallback_max(&self) -> Duration {
        self.backoff_max.min(MAX_TTL)
    }

    /// Three fallback periods: how long a waiter's mark in Redis (a
    /// writer's intent, a fair waiter's place) lasts unless its next
    /// attempt refreshes it.
    fn three_fallbacks(&self) -> Duration {
        self.fallback_max().saturating_mul(3)
    }

    /// One run of the acquire script. `waiting` is `Some((waiter id, how
    /// long it will still wait))` when a refusal will be followed by a wait:
    /// then a writer leaves its intent and a fair waiter joins the queue.
    async fn attempt(
        &self,
        pending: &mut Pending<'_>,
        waiting: Option<(&str, Duration)>,
    ) -> Result<Attempt> {
        let wait = match waiting {
            Some((waiter_id, patience)) => WaitInfo {
                // A waiting writer keeps readers out for a few of its fallback
                // periods; it refreshes this at every attempt.
                intent_ms: ttl_ms(self.three_fallbacks()).max(100),
                waiter_id,
                // A fair waiter keeps its place three fallback periods (its
                // timer comes back within one): a dead one blocks only that long.
                patience_ms: ttl_ms(
                    patience.min(self.three_fallbacks().max(Duration::from_secs(1))),
                )
                .max(1),
            },
            None => WaitInfo::default(),
        };
        let waiting = waiting.is_some();
        let sent = Instant::now();
        pending.claim.sending();
        let reply = self
            .client
            .acquire_script(&self.keys, pending.token, ttl_ms(self.ttl), &wait)
            .await
            .map_err(|e| Error::redis("the acquire script", self.client.addr(), e))?;
        // A definite answer: the token holds the lease only if it says so.
        // (A waiting writer may hold an intent, though: withdraw it if the
        // wait ends without the lock.) A guard is only made by
        // `Pending::into_guard`, which settles the claim.
        Ok(match reply {
            Acquired::Yes(fence) => Attempt::Got(fence, sent),
            Acquired::No(pttl) => {
                pending
                    .claim
                    .refused(waiting && matches!(self.keys.kind(), Kind::Write(_)));
                Attempt::Held(pttl)
            }
            Acquired::LimitMismatch(theirs) => {
                pending.claim.refused(false);
                let Kind::Permit { limit, .. } = self.keys.kind() else {
                    unreachable!("only semaphores have limits")
                };
                return Err(Error::invalid(
                    "limit",
                    format!(
                        "semaphore `{}` is in use with limit {theirs}, not {limit}: every caller must give the same limit (it can change once no permit is held)",
                        self.keys.display()
                    ),
                ));
            }
        })
    }

    /// The guard of `token`'s acquisition with `fence`, sent at `sent`.
    pub(crate) fn guard(&self, token: Token, fence: u64, sent: Instant) -> Guard {
        Guard::new(
            &self.client,
            Arc::clone(&self.keys),
            token,
            fence,
            self.ttl,
            sent,
            self.auto_renew,
        )
    }

    async fn timeout_error(&self, waited: Duration, pttl: i64) -> Error {
        // Who holds it, for the message: a prefix of the holder's token
        // (a semaphore has many holders: none is named).
        let holder: Option<String> = if !matches!(self.keys.kind(), Kind::Lease) {
            None
        } else {
            redis::cmd("GET")
                .arg(self.keys.name())
                .query_async::<Option<String>>(&mut self.client.conn())
                .await
                .ok()
                .flatten()
                .map(|t| t.chars().take(8).collect())
        };
        ErrorKind::Timeout {
            name: self.keys.display().to_owned(),
            waited,
            holder,
            remaining: remaining(pttl),
        }
        .into()
    }
}

fn remaining(pttl: i64) -> Option<Duration> {
    (pttl >= 0).then(|| Duration::from_millis(pttl as u64))
}

/// The token of an acquire in progress, and what it may hold without a
/// guard (see [`Claim`]): dropping `Pending` unsettled releases that in the
/// background. A guard is made by [`into_guard`](Pending::into_guard) from
/// a [`Won`], which only the claim's settling methods give.
struct Pending<'a> {
    lease: &'a Lease,
    token: Token,
    claim: Claim,
    /// A fair waiter's id until it gets the lease: dropping `Pending` then
    /// takes it out of the queue in Redis, so that the waiters behind it do
    /// not wait for its deadline.
    fair_id: Option<Token>,
}

impl<'a> Pending<'a> {
    fn new(lease: &'a Lease, token: Token) -> Self {
        Pending {
            lease,
            token,
            claim: Claim::default(),
            fair_id: None,
        }
    }

    /// The guard of a settled claim. The acquire script took a fair
    /// waiter out of the queue along with granting: nothing is left to
    /// leave.
    fn into_guard(mut self, won: Won) -> Guard {
        self.fair_id = None;
        self.lease.guard(self.token, won.fence(), won.sent())
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let release = self.claim.abandon().then_some(self.token);
        if release.is_some() || self.fair_id.is_some() {
            self.lease.client.settle_in_background(
                Arc::clone(&self.lease.keys),
                release,
                self.fair_id,
            );
        }
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
