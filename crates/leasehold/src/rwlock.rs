//! Read-write locks: many readers or one writer, each guard a lease.

use std::time::Duration;

use crate::client::Client;
use crate::keys::LeaseKeys;
use crate::lease::Lease;

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
    read: Lease,
    write: Lease,
}

impl Client {
    /// A read-write lock on `name`; take it with [`RwLock::read`] or
    /// [`RwLock::write`].
    pub fn rwlock(&self, name: impl AsRef<[u8]>) -> RwLock {
        let name = name.as_ref();
        RwLock {
            read: Lease::with_keys(self, name, LeaseKeys::rwlock(name, false)),
            write: Lease::with_keys(self, name, LeaseKeys::rwlock(name, true)),
        }
    }
}

impl RwLock {
    /// Sets the ttl of both read and write guards (see [`Lease::ttl`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.read = self.read.ttl(ttl);
        self.write = self.write.ttl(ttl);
        self
    }

    /// Sets how long both kinds of acquire wait (see [`Lease::wait`]).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.read = self.read.wait(wait);
        self.write = self.write.wait(wait);
        self
    }

    /// Sets the fallback timer of waiters (see [`Lease::backoff`]); the
    /// writer's intent lives three times `max`.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.read = self.read.backoff(min, max);
        self.write = self.write.backoff(min, max);
        self
    }

    /// Whether guards renew themselves (see [`Lease::auto_renew`]).
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.read = self.read.auto_renew(on);
        self.write = self.write.auto_renew(on);
        self
    }

    /// The read side: `try_acquire`, `acquire`, `with` as on any [`Lease`].
    /// Readers share the lock with each other, never with a writer.
    pub fn read(&self) -> &Lease {
        &self.read
    }

    /// The write side: `try_acquire`, `acquire`, `with` as on any [`Lease`].
    /// The writer holds the lock alone.
    pub fn write(&self) -> &Lease {
        &self.write
    }
}
