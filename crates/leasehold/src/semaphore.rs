//! Semaphores: at most K holders of a name at once, each permit a lease.

use std::time::Duration;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::keys::LeaseKeys;
use crate::lease::Lease;

/// At most `limit` holders of a name at once, across every client: for
/// limiting concurrency (a job that may run on at most 3 hosts, 10
/// connections to a fragile upstream).
///
/// Each permit is a lease of its own: its own token, TTL, self-renewal,
/// [`Guard::lost`] and fencing token (one counter per name, shared by all
/// permits). A permit whose holder crashed or froze is reclaimed by the
/// next acquire once its TTL has passed; no sweeper process is needed.
/// Expiry is judged by the Redis server's clock (`TIME` inside the
/// scripts), never a client's, so clients with skewed clocks can neither
/// steal permits nor keep them.
///
/// Every caller must give the same `limit`. A caller with another limit is
/// refused with [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
/// while permits are held; once none is held, the next acquire sets the
/// new limit.
///
/// By default a free permit goes to whichever waiter asks first after the
/// release; waiters of one process are served in the order they came.
/// [`fair(true)`](Semaphore::fair) serves waiters in arrival order across
/// all processes, and a release wakes only the waiter whose turn it is.
///
/// Data in Redis: `leasehold:{N}:permits` (sorted set: token → expiry in
/// server milliseconds), `leasehold:{N}:limit`, `leasehold:{N}:fences`
/// (hash: token → the fence its permit was granted, so that a retried
/// acquire answers it again), and the name's fence counter and wake
/// channel. All three expire with the last permit. Fair mode adds the
/// waiters' queue (`leasehold:{N}:queue`, `…:queue-deadlines`,
/// `…:queue-ticket`), which expires with its last waiter's place.
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
/// let upstream = client.semaphore("upstream/api", 4);
/// let permit = upstream.acquire().await?; // waits while 4 are held
/// // ... call the upstream ...
/// permit.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Semaphore {
    lease: Lease,
    limit: u32,
    fair: bool,
}

impl Client {
    /// A semaphore of `limit` permits on `name`, with the defaults of
    /// [`Lease`]: ttl 30 s, wait 10 s, self-renewing; not
    /// [fair](Semaphore::fair).
    pub fn semaphore(&self, name: impl AsRef<[u8]>, limit: u32) -> Semaphore {
        let name = name.as_ref();
        Semaphore {
            lease: Lease::with_keys(self, name, LeaseKeys::semaphore(name, limit, false)),
            limit,
            fair: false,
        }
    }
}

impl Semaphore {
    /// How long a permit lives unless renewed (see [`Lease::ttl`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.lease = self.lease.ttl(ttl);
        self
    }

    /// How long [`acquire`](Semaphore::acquire) waits for a permit (see
    /// [`Lease::wait`]).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.lease = self.lease.wait(wait);
        self
    }

    /// The fallback timer of a waiter (see [`Lease::backoff`]).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.lease = self.lease.backoff(min, max);
        self
    }

    /// Whether permits renew themselves (see [`Lease::auto_renew`]).
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.lease = self.lease.auto_renew(on);
        self
    }

    /// Fair mode (default off): permits go to waiters in the order they
    /// came, across all clients, and a release wakes only the waiter whose
    /// turn it is.
    ///
    /// Waiters stand in a queue in Redis (`leasehold:{N}:queue`, the same
    /// keys as a [fair lease](Lease::fair)'s: a name is either a lease or a
    /// semaphore). While some permits are free, only as many waiters from
    /// the front of the queue may take them; a new `acquire` or
    /// `try_acquire` gets a permit only if one is left over for it. A
    /// waiter that gives up (its `acquire` timed out or was dropped) leaves
    /// the queue at once; one whose process dies leaves it three fallback
    /// periods (`backoff` max, at least 1 s) after its last attempt, so it
    /// delays the others by at most that long. The permits themselves are
    /// those of normal mode: fair and normal callers share
    /// the K permits and the fencing counter, but only fair waiters keep
    /// their turn.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let permit = client.semaphore("render-farm", 8).fair(true).acquire().await?;
    /// # Ok(()) }
    /// ```
    pub fn fair(mut self, on: bool) -> Self {
        if on != self.fair {
            let name = self.lease.name().to_vec();
            self.lease
                .set_keys(LeaseKeys::semaphore(&name, self.limit, on));
            self.fair = on;
        }
        self
    }

    /// K, the number of permits.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    fn check(&self) -> Result<()> {
        if self.limit == 0 {
            return Err(Error::invalid(
                "limit",
                "0 permits would let nobody in: give a limit of at least 1",
            ));
        }
        Ok(())
    }

    /// Takes a permit if one is free; never waits. Fails with
    /// [`ErrorKind::Held`](crate::ErrorKind::Held) when all are held.
    ///
    /// # Cancel safety
    ///
    /// As [`Lease::try_acquire`]: a permit taken by a dropped call is given
    /// back in the background.
    pub async fn try_acquire(&self) -> Result<Guard> {
        self.check()?;
        self.lease.try_acquire().await
    }

    /// Takes a permit, waiting up to the wait timeout. Waiters sleep until a
    /// release is published (each release wakes one local waiter; in
    /// [fair mode](Semaphore::fair), the waiter whose turn it is, in
    /// whichever process) or the earliest permit's TTL runs out.
    ///
    /// # Cancel safety
    ///
    /// As [`Lease::acquire`].
    pub async fn acquire(&self) -> Result<Guard> {
        self.check()?;
        self.lease.acquire().await
    }

    /// Acquires a permit, runs `f`, gives the permit back; see
    /// [`Lease::with`].
    ///
    /// # Cancel safety
    ///
    /// As [`Lease::with`].
    pub async fn with<T>(&self, f: impl AsyncFnOnce(&Guard) -> T) -> Result<T> {
        self.check()?;
        self.lease.with(f).await
    }

    /// The lease-like handle underneath, for
    /// [`release_by_token`](Lease::release_by_token) and
    /// [`extend_by_token`](Lease::extend_by_token) on a permit.
    pub fn as_lease(&self) -> &Lease {
        &self.lease
    }
}
