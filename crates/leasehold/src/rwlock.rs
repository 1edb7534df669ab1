//! Read-write locks: many readers or one writer, each guard a lease.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::Core;
use crate::keys::LeaseKeys;
use crate::lease::{Lease, lease_like};

/// Many readers or one writer, across every client.
///
/// Each read or write guard is a lease: its own token, TTL, self-renewal,
/// [`Guard::lost`](crate::Guard::lost) and fencing token. Readers and writers share one fence
/// counter, so a write guard's fence is greater than that of every earlier
/// read or write guard of the name.
///
/// A writer is not starved by a stream of readers: a writer that has to
/// wait leaves an *intent* in Redis, and new readers wait behind it until
/// the writer got in. The intent lives three fallback periods of the
/// writer (3 s by default) and is refreshed at each of its attempts, so a
/// writer that died while waiting keeps readers out only that long.
///
/// Reader expiry is judged by the Redis server's clock. A release wakes
/// every local waiter of the name (readers can go in together), and so does
/// a writer that stops waiting: its intent is withdrawn at once, and the
/// readers it held back, in every client, are woken.
///
/// Data in Redis: `leasehold:{N}:readers` (sorted set: token → expiry in
/// server ms), `leasehold:{N}:fences` (hash: reader's token → its fence,
/// expiring with the readers), `leasehold:{N}:writer` (the writer's token,
/// with PX), `leasehold:{N}:intent`, the fence counter, and the wake
/// channel `leasehold:{N}:rwwake`.
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
/// let config = client.rwlock("config/routing");
/// let r = config.read().acquire().await?;   // many at once
/// r.release().await?;
/// let w = config.write().acquire().await?;  // alone
/// println!("writing with fence {}", w.fence());
/// w.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RwLock {
    read: RwSide,
    write: RwSide,
}

/// One side of a [`RwLock`]: its readers ([`RwLock::read`]) or its writer
/// ([`RwLock::write`]). Taken like a [`Lease`], with the same options but
/// no fair mode (a writer's intent keeps it from starving instead).
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
/// use std::time::Duration;
/// let lock = client.rwlock("config/routing");
/// // A writer that waits at most 2 s, on a copy of the write side.
/// let writer = lock.write().clone().wait(Duration::from_secs(2));
/// let w = writer.acquire().await?;
/// w.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RwSide {
    lease: Lease,
}

impl RwSide {
    lease_like!("this side of the lock");
}

impl RwLock {
    /// A read-write lock on `name`; see [`Client::rwlock`](crate::Client::rwlock).
    pub(crate) fn new(core: &Arc<Core>, name: &[u8]) -> RwLock {
        let side = |write| RwSide {
            lease: Lease::with_keys(core, name, LeaseKeys::rwlock(name, write)),
        };
        RwLock {
            read: side(false),
            write: side(true),
        }
    }

    /// Sets the ttl of both read and write guards (see [`Lease::ttl`]).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let lock = client.rwlock("config").ttl(Duration::from_secs(10));
    /// let reader = lock.read().acquire().await?;
    /// # Ok(()) }
    /// ```
    pub fn ttl(self, ttl: Duration) -> Self {
        self.both(|s| s.ttl(ttl))
    }

    /// Sets how long both kinds of acquire wait (see [`Lease::wait`]).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let lock = client.rwlock("config").wait(Duration::from_secs(60));
    /// let writer = lock.write().acquire().await?;
    /// # Ok(()) }
    /// ```
    pub fn wait(self, wait: Duration) -> Self {
        self.both(|s| s.wait(wait))
    }

    /// Sets the fallback timer of waiters (see [`Lease::backoff`]); the
    /// writer's intent lives three times `max`.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let lock = client
    ///     .rwlock("config")
    ///     .backoff(Duration::from_millis(20), Duration::from_millis(500));
    /// # Ok(()) }
    /// ```
    pub fn backoff(self, min: Duration, max: Duration) -> Self {
        self.both(|s| s.backoff(min, max))
    }

    /// Whether guards renew themselves (see [`Lease::auto_renew`]).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let lock = client.rwlock("config").auto_renew(false);
    /// let writer = lock.write().acquire().await?;
    /// writer.extend().await?; // by hand, within the ttl
    /// # Ok(()) }
    /// ```
    pub fn auto_renew(self, on: bool) -> Self {
        self.both(|s| s.auto_renew(on))
    }

    fn both(self, f: impl Fn(RwSide) -> RwSide) -> Self {
        RwLock {
            read: f(self.read),
            write: f(self.write),
        }
    }

    /// The read side: readers share the lock with each other, never with
    /// a writer.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let r = client.rwlock("config/routing").read().acquire().await?;
    /// r.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn read(&self) -> &RwSide {
        &self.read
    }

    /// The write side: the writer holds the lock alone.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let w = client.rwlock("config/routing").write().acquire().await?;
    /// println!("writing with fence {}", w.fence());
    /// w.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn write(&self) -> &RwSide {
        &self.write
    }
}
