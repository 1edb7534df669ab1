//! What a [`Client`] can do, and how it connects ([`ClientBuilder`]).
//!
//! Every method that makes a primitive lives here, so that what a client
//! can do is read in one place; the work is done below, by the engine each
//! primitive holds. (The `Client` type itself is defined with the engine it
//! wraps, so that the data layer can take a `&Client` without depending on
//! this file.)

use std::path::PathBuf;
use std::time::Duration;

use crate::backend::node::{Timeouts, Tls};
use crate::backend::{Backend, Replicas};
use crate::data::{Optimistic, SingleFlight};
use crate::engine::{Client, Core};
use crate::error::{Error, Result};
use crate::inspect::{self, ForcedRelease, LeaseStatus};
use crate::lease::Lease;
use crate::rwlock::RwLock;
use crate::semaphore::Semaphore;
use crate::token::Token;

/// How to connect: timeouts and TLS certificates. Built by
/// [`Client::builder`].
///
/// ```no_run
/// # async fn f() -> leasehold::Result<()> {
/// use std::time::Duration;
/// let client = leasehold::Client::builder()
///     .connect_timeout(Duration::from_secs(2))
///     .response_timeout(Duration::from_secs(1))
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.connect(url)` is awaited"]
pub struct ClientBuilder {
    connect_timeout: Duration,
    response_timeout: Duration,
    tls: Tls,
    replicas: Option<Replicas>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            tls: Tls::default(),
            replicas: None,
        }
    }
}

impl ClientBuilder {
    /// How long to try to reach the server before giving up (default 5 s).
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let client = leasehold::Client::builder()
    ///     .connect_timeout(Duration::from_secs(1))
    ///     .connect("redis://127.0.0.1:6379")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Trusts the CA certificate(s) in the PEM file at `path` for
    /// `rediss://` URLs, instead of the system's roots: for servers whose
    /// certificates a private CA signed. It applies to every connection of
    /// the client: the one server's, each [Redlock](Self::redlock)
    /// master's, each [cluster](Self::cluster) node's, and their
    /// subscribers'. The file is read at connect, and an error names it.
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// let client = leasehold::Client::builder()
    ///     .tls_ca_file("/etc/redis/tls/ca.pem")
    ///     .connect("rediss://redis.internal:6380")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca = Some(path.into());
        self
    }

    /// Shows the client certificate in the PEM file `cert`, with its
    /// private key in `key`, to a `rediss://` server that asks for one
    /// (`tls-auth-clients yes`): every server, master or cluster node the
    /// client connects to. Both files are read at connect, and an error
    /// names the one that cannot be read.
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// let client = leasehold::Client::builder()
    ///     .tls_ca_file("/etc/redis/tls/ca.pem")
    ///     .tls_client_cert_files("/etc/leasehold/client.pem", "/etc/leasehold/client.key")
    ///     .connect("rediss://redis.internal:6380")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn tls_client_cert_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.tls.client = Some((cert.into(), key.into()));
        self
    }

    /// How long one command may wait for its reply before it fails (default
    /// 5 s).
    ///
    /// A guard's renewal does not wait that long when its lease is short:
    /// a renewal unanswered after the lesser of this and `ttl/6` (at least
    /// 50 ms) is sent again on a connection of its own, while the first
    /// may still answer, so that one stuck reply (a dead or congested
    /// connection) does not cost the lease while it is still valid.
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let client = leasehold::Client::builder()
    ///     .response_timeout(Duration::from_secs(2))
    ///     .connect("redis://127.0.0.1:6379")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }

    /// Returns a guard only once `count` replicas of the master acknowledged
    /// the grant (Redis's `WAIT count timeout`), for every lease,
    /// semaphore permit and lock of the client; off by default.
    ///
    /// Redis replicates asynchronously: a master that fails right after
    /// granting a lease may be replaced (by Sentinel or the cluster) by a
    /// replica that never saw the grant, and a second holder can then take
    /// it. Waiting for the replicas closes that window for the holders
    /// that got their guard. It costs a round trip to the master and the
    /// replicas' acknowledgement per acquire, on a connection of its own
    /// (never the shared one, which WAIT would block).
    ///
    /// When fewer than `count` acknowledge within `timeout`, the acquire
    /// gives the lease back and fails with
    /// [`ErrorKind::ReplicasNotReached`](crate::ErrorKind::ReplicasNotReached).
    /// `count` 0 turns it off. Refused over Redlock, whose masters are
    /// independent.
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let client = leasehold::Client::builder()
    ///     .replicas(1, Duration::from_millis(200))
    ///     .connect("redis://127.0.0.1:6379")
    ///     .await?;
    /// let guard = client.lease("payments/settle").acquire().await?; // on a replica too
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn replicas(mut self, count: u32, timeout: Duration) -> Self {
        self.replicas = (count > 0).then_some(Replicas { count, timeout });
        self
    }

    /// Connects to `url`: `redis://[user:password@]host[:port][/db]`,
    /// `rediss://...` for TLS, or `unix:///path/to/redis.sock`. Over TLS
    /// the server's certificate is verified against the system's roots, or
    /// the CA of [`tls_ca_file`](Self::tls_ca_file).
    ///
    /// Or, through Redis Sentinel,
    /// `redis+sentinel://[user:password@]host1:port1[,host2:port2...]/SERVICE[/DB]`
    /// (port 26379 by default): the master of `SERVICE` is asked of each
    /// sentinel in turn and checked with `ROLE`; the user, password and
    /// database are the master's. The client then **follows failovers**:
    /// it listens to the sentinels' announcements, and asks them again
    /// when a command answers `READONLY` or its connection breaks; the
    /// shared connection, renewals, transactions and waiters' wake-ups all
    /// move to the new master. A lease whose keys reached the new master
    /// keeps being renewed there; one whose keys did not (written in the
    /// moment the old master was cut off) is reported lost by the guard's
    /// `lost()` at its next renewal, and its fences never go back (they
    /// are floored at the server's clock). See the README's Sentinel
    /// section for the window that remains.
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// let client = leasehold::Client::connect(
    ///     "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/orders",
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Fails with [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) for a malformed URL
    /// or an unreadable certificate file (or certificates given with a URL that is not `rediss://`),
    /// or a Sentinel service that no sentinel knows (the message names it),
    /// [`ErrorKind::Connect`](crate::ErrorKind::Connect) when the server refuses or cannot be reached,
    /// or its TLS certificate cannot be verified,
    /// [`ErrorKind::ConnectTimeout`](crate::ErrorKind::ConnectTimeout) past the connect timeout, and
    /// [`ErrorKind::Redis`](crate::ErrorKind::Redis) when it answers with an error (a wrong password,
    /// say).
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let client = leasehold::Client::builder()
    ///     .connect_timeout(Duration::from_secs(2))
    ///     .connect("redis://:secret@redis.internal:6379/0")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Once connected, the client reads the server's settings in the
    /// background and warns (through `tracing`) if Redis can evict leases
    /// or loses them on restart; see [Checking a
    /// deployment](crate#checking-a-deployment).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the half-made connection; nothing is left
    /// behind.
    pub async fn connect(self, url: &str) -> Result<Client> {
        let timeouts = self.timeouts()?;
        let id = Token::random();
        let backend = Backend::single(url, timeouts, &self.tls, id).await?;
        Ok(started(backend, id, self.replicas))
    }
}

impl ClientBuilder {
    fn timeouts(&self) -> Result<Timeouts> {
        if self.connect_timeout.is_zero() {
            return Err(Error::invalid("connect timeout", "must be more than zero"));
        }
        Ok(Timeouts {
            connect: self.connect_timeout,
            response: self.response_timeout,
        })
    }

    /// Connects to a Redis Cluster instead of one server: `seeds` are the
    /// URLs of some of its nodes (`redis://host:port`); the rest of the
    /// topology is discovered, and followed as slots move and masters fail
    /// over.
    ///
    /// On a cluster every lease, semaphore and read-write lock lives in its
    /// name's hash slot (leasehold tags its companion keys so), waiters are
    /// woken by sharded pub/sub, and your scripts' and transactions' keys
    /// must share a slot (refused before sending otherwise).
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// let client = leasehold::Client::builder()
    ///     .cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
    ///     .connect()
    ///     .await?;
    /// let guard = client.lease("reports/nightly").acquire().await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn cluster<S: Into<String>>(self, seeds: impl IntoIterator<Item = S>) -> ClusterBuilder {
        ClusterBuilder {
            options: self,
            seeds: seeds.into_iter().map(Into::into).collect(),
        }
    }

    /// Connects to N independent Redis masters instead of one server
    /// (Redlock): each lease is held when a majority of them granted it,
    /// so it survives the loss of a minority of masters.
    ///
    /// Every acquire, renewal and release goes to all masters at once and
    /// returns as soon as a quorum answered; a master that is down or
    /// frozen costs nothing but its [per-node
    /// timeout](RedlockBuilder::node_timeout). The guard's fence is the
    /// highest among the granting masters, lifted on a majority before the
    /// guard is returned, so any later holder's is higher (see the
    /// README's Safety section for what a master restarting empty and a
    /// clock jump do).
    ///
    /// Plain leases and semaphores work here (a semaphore of K permits
    /// needs `⌊N·K/(K+1)⌋ + 1` masters to admit a permit: a majority only
    /// when K = 1). Fair leases and semaphores, read-write locks, your
    /// scripts, transactions and single-flight fail with
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) before
    /// anything is sent.
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// let client = leasehold::Client::builder()
    ///     .redlock(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"])
    ///     .connect()
    ///     .await?;
    /// let guard = client.lease("reports/nightly").acquire().await?;
    /// println!("fence {}", guard.fence());
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn redlock<S: Into<String>>(self, masters: impl IntoIterator<Item = S>) -> RedlockBuilder {
        RedlockBuilder {
            options: self,
            masters: masters.into_iter().map(Into::into).collect(),
            node_timeout: crate::backend::redlock::NODE_TIMEOUT,
        }
    }
}

/// How to connect to independent masters (Redlock); made by
/// [`ClientBuilder::redlock`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.connect()` is awaited"]
pub struct RedlockBuilder {
    options: ClientBuilder,
    masters: Vec<String>,
    node_timeout: Duration,
}

impl RedlockBuilder {
    /// How long one master may take to answer one operation before it
    /// counts as failed for that operation (default 100 ms; at most a
    /// tenth of the lease's ttl is used). Small against the ttl, so that a
    /// frozen master costs an acquire little when a quorum answers anyway,
    /// and an acquire that cannot reach a quorum fails quickly.
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let client = leasehold::Client::builder()
    ///     .redlock(["redis://a:6379", "redis://b:6379", "redis://c:6379"])
    ///     .node_timeout(Duration::from_millis(50))
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn node_timeout(mut self, timeout: Duration) -> RedlockBuilder {
        self.node_timeout = timeout;
        self
    }

    /// Connects to every master at once.
    ///
    /// Fails with [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
    /// for no master, a malformed URL or a master given twice (or TLS
    /// certificate files that cannot be read, or given with URLs that are
    /// not `rediss://`), and with
    /// [`ErrorKind::QuorumNotReached`](crate::ErrorKind::QuorumNotReached)
    /// when fewer than a majority answer within the connect timeout (each
    /// master's own error is listed: a TLS certificate that could not be
    /// verified, say). The masters that did not answer are tried again in
    /// the background, and count as failed until they answer.
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// let client = leasehold::Client::builder()
    ///     .redlock(["redis://a:6379", "redis://b:6379", "redis://c:6379"])
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the half-made connections.
    pub async fn connect(self) -> Result<Client> {
        let timeouts = self.options.timeouts()?;
        if self.options.replicas.is_some() {
            return Err(crate::backend::redlock::no_replicas());
        }
        let id = Token::random();
        let backend = Backend::redlock(
            &self.masters,
            timeouts,
            &self.options.tls,
            self.node_timeout,
            id,
        )
        .await?;
        Ok(started(backend, id, None))
    }
}

/// How to connect to a Redis Cluster; made by [`ClientBuilder::cluster`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `.connect()` is awaited"]
pub struct ClusterBuilder {
    options: ClientBuilder,
    seeds: Vec<String>,
}

impl ClusterBuilder {
    /// Discovers the cluster from its seeds and connects.
    ///
    /// Fails with [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
    /// for no seed or a malformed one (or TLS certificate files that cannot
    /// be read, or given with seeds that are not `rediss://`), and as
    /// [`ClientBuilder::connect`] does when no seed answers.
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// let client = leasehold::Client::builder()
    ///     .cluster(["redis://127.0.0.1:7000"])
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the half-made connections.
    pub async fn connect(self) -> Result<Client> {
        let timeouts = self.options.timeouts()?;
        let id = Token::random();
        let backend = Backend::cluster(&self.seeds, timeouts, &self.options.tls, id).await?;
        Ok(started(backend, id, self.options.replicas))
    }
}

impl Client {
    /// Connects to `url` with the default timeouts; see
    /// [`ClientBuilder::connect`].
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// let client = leasehold::Client::connect("redis://127.0.0.1:6379").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves nothing behind.
    pub async fn connect(url: &str) -> Result<Client> {
        ClientBuilder::default().connect(url).await
    }

    /// Options for connecting (timeouts); see [`ClientBuilder`].
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let client = leasehold::Client::builder()
    ///     .connect_timeout(Duration::from_secs(1))
    ///     .response_timeout(Duration::from_secs(2))
    ///     .connect("redis://127.0.0.1:6379")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A lease on `name` (any bytes, 1 to 1024 of them), with the default
    /// options: ttl 30 s, wait 10 s, self-renewing. See [`Lease`].
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let lease = client.lease("cache/rebuild").ttl(Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    pub fn lease(&self, name: impl AsRef<[u8]>) -> Lease {
        Lease::new(&self.core, name.as_ref())
    }

    /// A semaphore of `limit` permits on `name`, with the defaults of
    /// [`Lease`]: ttl 30 s, wait 10 s, self-renewing; not
    /// [fair](Semaphore::fair). See [`Semaphore`].
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let permit = client.semaphore("upstream/api", 4).acquire().await?;
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn semaphore(&self, name: impl AsRef<[u8]>, limit: u32) -> Semaphore {
        Semaphore::new(&self.core, name.as_ref(), limit)
    }

    /// A read-write lock on `name`; take it with [`RwLock::read`] or
    /// [`RwLock::write`].
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let r = client.rwlock("config/routing").read().acquire().await?;
    /// r.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn rwlock(&self, name: impl AsRef<[u8]>) -> RwLock {
        RwLock::new(&self.core, name.as_ref())
    }

    /// Single-flight rebuilds of the cache entry `cache_key`. The rebuild
    /// lease is `leasehold:rebuild:{cache_key}` (`cache_key:leasehold:rebuild`
    /// when the key has a hash tag), so on Redis Cluster it lives in the
    /// cache key's slot; ttl 30 s, wait 30 s.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let report = client
    ///     .single_flight("cache/report")
    ///     .get(async || Ok::<_, leasehold::Error>("rebuilt".to_string()))
    ///     .await?;
    /// println!("{} ({:?})", report.value, report.source);
    /// # Ok(()) }
    /// ```
    pub fn single_flight(&self, cache_key: impl AsRef<[u8]>) -> SingleFlight {
        SingleFlight::new(&self.core, cache_key.as_ref())
    }

    /// An optimistic transaction over `keys`: WATCH them, let a closure read
    /// them and queue writes, EXEC; when another client changed a watched
    /// key meanwhile, run the closure again (with backoff and jitter) up to
    /// a limit. The closure must be safe to run several times.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// // Buy one unit, never going below zero.
    /// let bought = client
    ///     .optimistic(["stock"])
    ///     .run(async |tx| {
    ///         let stock: i64 = tx.get::<Option<i64>>("stock").await?.unwrap_or(0);
    ///         if stock > 0 {
    ///             tx.queue(redis::cmd("SET").arg("stock").arg(stock - 1).clone());
    ///         }
    ///         Ok::<_, leasehold::Error>(stock > 0)
    ///     })
    ///     .await?;
    /// println!("bought: {}, after {} attempts", bought.value, bought.attempts);
    /// # Ok(()) }
    /// ```
    pub fn optimistic<K: AsRef<[u8]>>(&self, keys: impl IntoIterator<Item = K>) -> Optimistic {
        Optimistic::new(&self.core, keys)
    }

    /// Idle connections kept for transactions (for tests and monitoring).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// println!("{} idle", client.idle_transaction_connections());
    /// # Ok(()) }
    /// ```
    pub fn idle_transaction_connections(&self) -> usize {
        self.core.backend.idle_dedicated()
    }

    /// The status of the name `name`, whatever it is (lease, semaphore,
    /// read-write lock), read in one round trip.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let s = client.status("deploy").await?;
    /// println!("{} held: {}, fence {}", s.display, s.is_held(), s.fence);
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Read-only: dropping the future changes nothing.
    pub async fn status(&self, name: impl AsRef<[u8]>) -> Result<LeaseStatus> {
        inspect::status(&self.core, name.as_ref()).await
    }

    /// Ends the lease `name` whoever holds it, for an operator whose holder
    /// is gone for good (a dead host) and who cannot wait for its TTL.
    ///
    /// The hold seen is released by its own token, as its holder would
    /// (waiters are woken; a fair lease goes to its queue's head), then the
    /// fencing counter moves on as a grant would, so every fence granted
    /// before is below the next one. The holder, if it is alive after all,
    /// sees its lease gone at its next renewal ([`Guard::lost`](crate::Guard::lost)
    /// fires; `leasehold run` stops its command) and its lease-scoped
    /// writes are refused at once. `reason` is logged (`tracing`, at
    /// warn) and published on [`FORCED_CHANNEL`](crate::FORCED_CHANNEL).
    ///
    /// Nothing is forced when the name is free, or changed hands while it
    /// was read (then [`ForcedRelease::holder`] is `None`). Plain and fair
    /// leases only: a semaphore or read-write lock, a lease set by a client
    /// that is not leasehold, or an empty reason is refused with
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument);
    /// Redlock with [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let forced = client.force_release("deploy", "host web-3 is dead").await?;
    /// if let Some(holder) = forced.holder {
    ///     println!("ended {holder}…'s hold; fences now start above {}", forced.fence);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropped after the release was sent, the lease is gone but the
    /// fence may not have moved and the reason not been published.
    pub async fn force_release(
        &self,
        name: impl AsRef<[u8]>,
        reason: &str,
    ) -> Result<ForcedRelease> {
        inspect::force_release(&self.core, name.as_ref(), reason).await
    }

    /// The statuses of every lease name that matches the glob `pattern`
    /// (Redis `MATCH` syntax: `*`, `?`, `[abc]`; `*` for all), sorted by name.
    ///
    /// A name is known by its fencing counter, which leasehold creates on the
    /// first acquisition and never deletes; semaphores and read-write locks
    /// share it, so they are listed too, with their [`LeaseKind`](crate::LeaseKind). Names only
    /// ever locked by other clients (redis-py, redsync) are not listed. Walks
    /// the keyspace with SCAN, never KEYS, so a large database is not
    /// blocked; then reads the statuses of up to 64 names per round trip.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// for s in client.list("jobs/*").await? {
    ///     println!("{} {}", s.display, if s.is_held() { "held" } else { "free" });
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Read-only: dropping the future changes nothing.
    pub async fn list(&self, pattern: &str) -> Result<Vec<LeaseStatus>> {
        inspect::list(&self.core, pattern).await
    }

    /// The server's address, as leasehold prints it (without a password).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) {
    /// println!("connected to {}", client.addr());
    /// # }
    /// ```
    pub fn addr(&self) -> &str {
        self.core.addr()
    }

    /// Connections this client has open to Redis: the shared command
    /// connection, plus the subscriber once some task has waited, plus (on
    /// one `redis://` server) up to 4 direct connections that lone acquires
    /// and releases write and read themselves, skipping the shared
    /// connection's driver task. Never one per lease or per waiter.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) {
    /// assert!(client.connections() >= 1);
    /// # }
    /// ```
    pub fn connections(&self) -> usize {
        self.core.backend.connections() + self.core.hub.subscriber_connections()
    }

    /// Waits until the releases this client still runs in the background
    /// are done, or `within` has passed; returns whether they are all done.
    ///
    /// A guard dropped without [`Guard::release`](crate::Guard::release),
    /// an acquire given up after its script went out, and, over Redlock,
    /// the masters a release did not wait for once a majority answered,
    /// are released in the background. A process that exits right after
    /// (a cron job, a script, a command-line tool) stops them with its
    /// runtime, and those leases stay held until their TTL: call this
    /// first. Besides them it waits only for the batches of scripts in
    /// flight (under load, plain leases' scripts travel together, and a
    /// batch releases what it granted to an acquire given up meanwhile);
    /// not for renewals, nor for waits. The client stays usable.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let guard = client.lease("reports/nightly").acquire().await?;
    /// // ... the work; the guard is dropped on the way out ...
    /// drop(guard);
    /// if !client.settle(Duration::from_secs(1)).await {
    ///     eprintln!("a release is still under way; its lease ends with its TTL");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn settle(&self, within: Duration) -> bool {
        let core = &self.core;
        let settled = async {
            loop {
                core.background.idle().await;
                if !core.backend.out() {
                    return;
                }
                // Over Redlock, the commands of the masters a release did
                // not wait for have no task to wake this: look again soon.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(within, settled).await.is_ok()
    }
}

/// The client over a connected `backend`, whose settings it then reads
/// in the background (warning of a server that can lose leases).
fn started(backend: Backend, id: Token, replicas: Option<Replicas>) -> Client {
    let core = Core::new(backend, id, replicas);
    crate::deploy::warn_at_connect(&core);
    Client { core }
}
