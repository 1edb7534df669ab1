//! Semaphores: at most K holders of a name at once, each permit a lease.

use std::sync::Arc;

use crate::engine::Core;
use crate::keys::LeaseKeys;
use crate::lease::{Lease, lease_like};

/// At most `limit` holders of a name at once, across every client: for
/// limiting concurrency (a job that may run on at most 3 hosts, 10
/// connections to a fragile upstream).
///
/// Each permit is a lease of its own: its own token, TTL, self-renewal,
/// [`Guard::lost`](crate::Guard::lost) and fencing token (one counter per name, shared by all
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

impl Semaphore {
    /// A semaphore of `limit` permits on `name`, with the defaults of
    /// [`Lease`]; see [`Client::semaphore`](crate::Client::semaphore).
    pub(crate) fn new(core: &Arc<Core>, name: &[u8], limit: u32) -> Semaphore {
        Semaphore {
            lease: Lease::with_keys(core, name, LeaseKeys::semaphore(name, limit, false)),
            limit,
            fair: false,
        }
    }

    lease_like!("a permit");

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
    ///
    /// ```no_run
    /// # fn f(client: leasehold::Client) {
    /// assert_eq!(client.semaphore("render-farm", 8).limit(), 8);
    /// # }
    /// ```
    pub fn limit(&self) -> u32 {
        self.limit
    }
}
