//! Taking a lease: one attempt, the waiting loop, and what an acquire in
//! progress may hold when it is dropped.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tracing::Instrument;

use super::{Lease, MAX_TTL};
use crate::backend::{Acquire, WaitInfo, ttl_ms};
use crate::error::{Error, ErrorKind, Result};
use crate::hold::Guard;
use crate::keys::Family;
use crate::observe;
use crate::scripts;
use crate::token::Token;
use crate::wake::{Claim, STEP_BACK, Successor, Waiter, Won};

enum Attempt {
    /// Taken, with this fence; the script was sent at that instant.
    Got(u64, Instant),
    /// Held by someone else, with their PTTL in ms (-1: no TTL).
    Held(i64),
}

impl Lease {
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
        let span = observe::acquire_span!(self.keys, token, "try");
        let result = self.try_once(token).instrument(span.clone()).await;
        let outcome = self.outcome(&span, &result);
        observe::acquisition(self.keys.kind(), outcome);
        result
    }

    /// Records how an acquire call ended on its span; its outcome, for the
    /// metrics.
    fn outcome(&self, span: &tracing::Span, result: &Result<Guard>) -> &'static str {
        let outcome = match result {
            Ok(_) => "acquired",
            Err(e) if e.is_held() => "busy",
            Err(e) if e.is_timeout() => "timeout",
            Err(_) => "error",
        };
        if let Ok(guard) = result {
            span.record("fence", guard.fence());
        }
        span.record("outcome", outcome);
        outcome
    }

    async fn try_once(&self, token: Token) -> Result<Guard> {
        let mut pending = Pending::new(self, token);
        match self.attempt(&mut pending, None).await? {
            Attempt::Got(fence, sent) => {
                let won = pending.claim.won(fence, sent);
                self.replicated(pending.into_guard(won)).await
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
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let lease = client.lease("reports/nightly").wait(Duration::from_secs(30));
    /// match lease.acquire().await {
    ///     Ok(guard) => {
    ///         // ... the job, passing guard.fence() along ...
    ///         guard.release().await?;
    ///     }
    ///     Err(e) if e.is_timeout() => println!("still held after 30 s: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
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
        let token = Token::random();
        let span = observe::acquire_span!(self.keys, token, "wait");
        let result = self.wait_for(token, started).instrument(span.clone()).await;
        let outcome = self.outcome(&span, &result);
        let kind = self.keys.kind();
        observe::acquisition(kind, outcome);
        observe::waited(kind, outcome, started);
        result
    }

    /// `acquire` for `token`, called at `started`.
    async fn wait_for(&self, token: Token, started: Instant) -> Result<Guard> {
        let deadline = started.checked_add(self.wait);
        let hub = &self.core.hub;
        let channel = self.keys.wake();
        // Made at the first nap, closed when the call ends.
        let mut wait_span: Option<tracing::Span> = None;
        let mut pending = Pending::new(self, token);
        // Names this waiter in a fair queue (not a secret, unlike the token).
        // It ends with this client's mark: a release of this client that
        // gives it the lease tells it by the script's reply alone.
        let waiter_id = self
            .keys
            .is_fair()
            .then(|| scripts::waiter_id(&self.core.backend.publisher()));
        // Until it gets the lease, a fair waiter that gives up leaves the
        // queue (see `Pending`); the acquire script takes it out on success.
        pending.fair_id = waiter_id;
        let waiter_id = waiter_id.as_ref().map_or("", Token::as_str);
        // A plain lease can be handed straight to this waiter's token by a
        // local release (see `Client::release_raw`).
        let handover = matches!(self.keys.family(), Family::Lease).then(|| Successor {
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
            // Not while a local release hands the lease to this waiter:
            // it waits for the grant below.
            if try_now && pending.claim.waiter().is_none_or(Waiter::begin_attempt) {
                let patience =
                    deadline.map_or(MAX_TTL, |d| d.saturating_duration_since(Instant::now()));
                // With no time left, a refusal ends the call: no intent, no queue.
                let waiting = (!patience.is_zero()).then_some((waiter_id, patience));
                // Boxed, as the other calls below: a waiter's future lives
                // as long as it waits, and their states would be most of it
                // (W5: 10,000 waiters of one process).
                match Box::pin(self.attempt(&mut pending, waiting)).await {
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
                        return Box::pin(self.replicated(pending.into_guard(won))).await;
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
            // A fair release's grant that came with the attempt's reply
            // is this waiter's even now that its wait may be over.
            if let Some(won) = pending.claim.take_grant() {
                match self.fresh(won) {
                    Some(won) => return Box::pin(self.replicated(pending.into_guard(won))).await,
                    None => {
                        try_now = true;
                        continue;
                    }
                }
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(match last_error {
                    Some(e) => e,
                    None => Box::pin(self.timeout_error(now - started, pttl)).await,
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
            if wait_span.is_none() {
                wait_span = Some(observe::wait_span!(self.keys));
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
                match self.fresh(won) {
                    Some(won) => return Box::pin(self.replicated(pending.into_guard(won))).await,
                    None => {
                        try_now = true;
                        continue;
                    }
                }
            }
            // While a local release hands the lease over, wait for it.
            try_now = !pending.claim.waiter().is_some_and(Waiter::is_offered);
        }
    }

    /// `won`, unless it is a fair grant whose claim window, as this waiter
    /// counts it, has run out (its message came late): then nothing, and
    /// the waiter's next attempt confirms it (`fair_acquire` finds the
    /// lease holding its token, resets the ttl and answers the same
    /// fence) or finds it gone. Its claim is settled either way: a waiter
    /// that gives up before that attempt releases its token by leaving.
    fn fresh(&self, won: Won) -> Option<Won> {
        match won.window() {
            Some(window) if Instant::now() >= self.core.backend.valid_until(won.sent(), window) => {
                tracing::debug!(
                    target: observe::TARGET,
                    name = self.keys.display(),
                    fence = won.fence(),
                    "leasehold: a fair grant came after its claim window as counted here; confirming it"
                );
                None
            }
            _ => Some(won),
        }
    }

    /// One run of the acquire script. `waiting` is `Some((waiter id, how
    /// long it will still wait))` when a refusal will be followed by a wait:
    /// then a writer leaves its intent and a fair waiter joins the queue.
    async fn attempt(
        &self,
        pending: &mut Pending<'_>,
        waiting: Option<(&str, Duration)>,
    ) -> Result<Attempt> {
        let mut wait = match waiting {
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
                attempt: 0,
            },
            None => WaitInfo::default(),
        };
        let waiting = waiting.is_some();
        pending.claim.sending();
        let sent = Instant::now();
        // A fair lease's waiter that will wait leaves its claim in the
        // queue, numbered: a release's grant that names this attempt lasts
        // this window at least, from now (see `Claim::fair_attempt`).
        if waiting && matches!(self.keys.family(), Family::Fair(_)) {
            let window = self.ttl.min(Duration::from_millis(wait.patience_ms));
            wait.attempt = pending.claim.fair_attempt(sent, window);
        }
        let reply = self
            .core
            .backend
            .acquire(&self.keys, pending.token, self.ttl, &wait)
            .await?;
        // A definite answer: the token holds the lease only if it says so.
        // (A waiting writer may hold an intent, though: withdraw it if the
        // wait ends without the lock.) A guard is only made by
        // `Pending::into_guard`, which settles the claim.
        Ok(match reply {
            Acquire::Held(held) => Attempt::Got(held.fence, held.sent),
            Acquire::Busy { pttl } => {
                pending
                    .claim
                    .refused(waiting && matches!(self.keys.family(), Family::Write(_)));
                Attempt::Held(pttl)
            }
            Acquire::LimitMismatch(theirs) => {
                pending.claim.refused(false);
                let Family::Permit { limit, .. } = self.keys.family() else {
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

    /// `guard`, once the replicas the client asks for acknowledged its
    /// grant ([`ClientBuilder::replicas`](crate::ClientBuilder::replicas));
    /// else it is given back, and the error says how many did.
    ///
    /// Dropped while it waits: the guard's drop releases the lease.
    async fn replicated(&self, guard: Guard) -> Result<Guard> {
        let Some(want) = self.core.replicas else {
            return Ok(guard);
        };
        let error = match self.core.backend.replicated(&self.keys, want).await {
            Ok(acknowledged) if acknowledged >= want.count => return Ok(guard),
            Ok(acknowledged) => ErrorKind::ReplicasNotReached {
                name: self.keys.display().to_owned(),
                acknowledged,
                needed: want.count,
                waited: want.timeout,
            }
            .into(),
            Err(e) => e,
        };
        if let Err(e) = guard.release().await {
            tracing::warn!(
                lease = self.keys.display(),
                error = %e,
                "leasehold: giving back a grant the replicas did not acknowledge failed; it ends when its TTL runs out"
            );
        }
        Err(error)
    }

    async fn timeout_error(&self, waited: Duration, pttl: i64) -> Error {
        // Who holds it, for the message: a prefix of the holder's token
        // (a semaphore has many holders: none is named).
        let holder = self.core.backend.holder(&self.keys).await;
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
            claim: match lease.keys.family() {
                Family::Fair(_) => Claim::fair(),
                _ => Claim::default(),
            },
            fair_id: None,
        }
    }

    /// The guard of a settled claim. The acquire script took a fair
    /// waiter out of the queue along with granting: nothing is left to
    /// leave.
    fn into_guard(mut self, won: Won) -> Guard {
        self.fair_id = None;
        self.lease
            .guard_within(self.token, won.fence(), won.sent(), won.window())
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let release = self.claim.abandon().then_some(self.token);
        if release.is_some() || self.fair_id.is_some() {
            // A fair lease's waiter leaves with its token: a release may
            // have given it the lease that this acquire never took.
            self.lease.core.settle_in_background(
                Arc::clone(&self.lease.keys),
                release,
                self.fair_id.map(|id| (id, self.token)),
            );
        }
    }
}
