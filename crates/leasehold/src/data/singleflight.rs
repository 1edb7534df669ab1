//! Single-flight cache rebuilds: when many callers miss a cache at once, one
//! rebuilds the value under a lease and the others wait for its result
//! instead of rebuilding too (no stampede on the database behind the cache).

use std::sync::Arc;
use std::time::Duration;

use redis::{FromRedisValue, ToRedisArgs};

use crate::engine::Core;
use crate::error::{Error, Result};
use crate::keys;
use crate::lease::Lease;

/// A cache key whose rebuilds go one at a time; built by
/// [`Client::single_flight`](crate::Client::single_flight).
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
/// use std::time::Duration;
/// let page = client
///     .single_flight("cache:home-page")
///     .cache_ttl(Duration::from_secs(60))
///     .get(async || Ok::<_, leasehold::Error>(render_home_page().await))
///     .await?;
/// println!("{} ({:?})", page.value, page.source);
/// # Ok(()) }
/// # async fn render_home_page() -> String { String::new() }
/// ```
#[derive(Debug, Clone)]
#[must_use = "nothing happens until `.get(..)` is awaited"]
pub struct SingleFlight {
    core: Arc<Core>,
    cache_key: Vec<u8>,
    lease: Lease,
    cache_ttl: Option<Duration>,
}

/// Where a [`SingleFlight::get`] value came from.
///
/// Not exhaustive: a way to serve a value may be added (a stale value
/// served while another caller rebuilds it, say), so a `match` needs a `_`
/// arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// It was in the cache.
    Cache,
    /// Another caller rebuilt it while this one waited.
    Waited,
    /// This caller rebuilt it.
    Rebuilt,
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fetched<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: Source,
}

impl SingleFlight {
    /// Single-flight rebuilds of `cache_key`; see
    /// [`Client::single_flight`](crate::Client::single_flight).
    pub(crate) fn new(core: &Arc<Core>, cache_key: &[u8]) -> SingleFlight {
        let lease_name = keys::rebuild_lease(cache_key);
        SingleFlight {
            core: Arc::clone(core),
            lease: Lease::new(core, &lease_name)
                .ttl(Duration::from_secs(30))
                .wait(Duration::from_secs(30)),
            cache_key: cache_key.to_vec(),
            cache_ttl: None,
        }
    }
}

impl SingleFlight {
    /// How long a rebuilt value stays in the cache (default: no expiry).
    ///
    /// ```no_run
    /// # async fn render() -> String { String::new() }
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let page = client
    ///     .single_flight("cache:home")
    ///     .cache_ttl(Duration::from_secs(60))
    ///     .get(async || Ok::<_, leasehold::Error>(render().await))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = Some(ttl);
        self
    }

    /// The rebuild lease's ttl (default 30 s; renewed while rebuilding).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// // A crashed rebuilder holds the others back 5 s at most.
    /// let sf = client.single_flight("cache:home").lease_ttl(Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease = self.lease.ttl(ttl);
        self
    }

    /// How long a caller waits for another's rebuild (default 30 s).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let sf = client.single_flight("cache:report").wait(Duration::from_secs(120));
    /// # Ok(()) }
    /// ```
    pub fn wait(mut self, wait: Duration) -> Self {
        self.lease = self.lease.wait(wait);
        self
    }

    /// The cached value; on a miss, the value rebuilt by exactly one caller.
    ///
    /// A miss takes the rebuild lease. Whoever gets it first looks at the
    /// cache again (someone may have just filled it), runs `rebuild`, stores
    /// the value and releases; the others are woken one by one by the
    /// release and find the value in the cache. If a rebuild fails, its
    /// error goes to its caller and the next waiter tries to rebuild.
    ///
    /// ```no_run
    /// # async fn query_db() -> String { String::new() }
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let fetched = client
    ///     .single_flight("cache:user:7")
    ///     .get(async || Ok::<_, leasehold::Error>(query_db().await))
    ///     .await?;
    /// match fetched.source {
    ///     leasehold::Source::Rebuilt => println!("rebuilt: {}", fetched.value),
    ///     _ => println!("served: {}", fetched.value),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the rebuild (if this caller was running
    /// it) and its guard, which releases the lease in the background; the
    /// next waiter then rebuilds.
    pub async fn get<T, E, F>(&self, rebuild: F) -> std::result::Result<Fetched<T>, E>
    where
        T: FromRedisValue + ToRedisArgs,
        F: AsyncFnOnce() -> std::result::Result<T, E>,
        E: From<Error>,
    {
        if let Some(value) = self.read().await? {
            return Ok(Fetched {
                value,
                source: Source::Cache,
            });
        }
        let guard = self.lease.acquire().await?;
        if let Some(value) = self.read().await? {
            guard.release().await?;
            return Ok(Fetched {
                value,
                source: Source::Waited,
            });
        }
        let value = rebuild().await?;
        let mut set = redis::cmd("SET");
        set.arg(&self.cache_key).arg(&value);
        if let Some(ttl) = self.cache_ttl {
            set.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        set.exec_async(&mut self.core.backend.conn()?)
            .await
            .map_err(|e| Error::redis("storing the rebuilt value", self.core.addr(), e))?;
        guard.release().await?;
        Ok(Fetched {
            value,
            source: Source::Rebuilt,
        })
    }

    async fn read<T: FromRedisValue>(&self) -> Result<Option<T>> {
        redis::cmd("GET")
            .arg(&self.cache_key)
            .query_async(&mut self.core.backend.conn()?)
            .await
            .map_err(|e| Error::redis("reading the cache", self.core.addr(), e))
    }
}
