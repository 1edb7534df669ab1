//! The connection to Redis, shared by every lease of a process.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Kind, LeaseKeys};
use crate::lease::Lease;
use crate::scripts::HandedOver;
use crate::token::Token;
use crate::wake::WakeHub;

/// A handle on one Redis deployment; cheap to clone, meant to be shared.
///
/// A `Client` owns:
/// - one multiplexed connection that every lease of the process shares
///   (commands of many tasks are pipelined on it) and that reconnects by
///   itself when it breaks. It never carries a blocking command, which would
///   stall every task behind it. When many tasks take and give back plain
///   leases at once, their scripts travel as one call that runs each in
///   turn, exactly as alone (a lone call never waits for company);
/// - one subscriber connection, opened on the first wait, through which the
///   releases of the names local tasks wait for arrive (see
///   [Waiting](crate#waiting));
/// - the handle of the tokio runtime it was created on, so that dropping a
///   guard can release its lease in the background from anywhere.
///
/// ```no_run
/// # async fn f() -> leasehold::Result<()> {
/// let client = leasehold::Client::connect("redis://127.0.0.1:6379").await?;
/// let guard = client.lease("reports/nightly").acquire().await?;
/// println!("fence {}", guard.fence());
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) conn: ConnectionManager,
    /// Printable address, never with a password.
    pub(crate) addr: String,
    /// Published by the release script; lets the wait hub skip its echo.
    pub(crate) id: Token,
    pub(crate) hub: WakeHub,
    pub(crate) runtime: tokio::runtime::Handle,
    /// For connections of their own (transactions, a renewal whose reply
    /// is stuck on the shared connection).
    pub(crate) redis: redis::Client,
    /// How long one command waits for its reply; see
    /// [`ClientBuilder::response_timeout`].
    pub(crate) response_timeout: Duration,
    /// Dedicated connections for WATCH; see [`crate::txn`].
    pub(crate) txns: crate::txn::TxPool,
    /// When each self-renewing guard is next due; see [`crate::renew`].
    renewer: crate::renew::Renewer,
    /// Plain leases' scripts, gathered under load; see [`crate::batch`].
    pub(crate) batcher: crate::batch::Batcher,
}

/// How to connect: timeouts. Built by [`Client::builder`].
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
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
        }
    }
}

impl ClientBuilder {
    /// How long to try to reach the server before giving up (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
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
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }

    /// Connects to `url`: `redis://[user:password@]host[:port][/db]`,
    /// `rediss://...` for TLS, or `unix:///path/to/redis.sock`.
    ///
    /// Fails with [`ErrorKind::InvalidArgument`] for a malformed URL,
    /// [`ErrorKind::Connect`] when the server refuses or cannot be reached,
    /// [`ErrorKind::ConnectTimeout`] past the connect timeout, and
    /// [`ErrorKind::Redis`] when it answers with an error (a wrong password,
    /// say).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the half-made connection; nothing is left
    /// behind.
    pub async fn connect(self, url: &str) -> Result<Client> {
        if self.connect_timeout.is_zero() {
            return Err(Error::invalid("connect timeout", "must be more than zero"));
        }
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| {
            Error::invalid(
                "url",
                format!(
                    "`{}` is not a Redis URL ({e}); use redis://host:port, rediss://host:port or unix:///path",
                    redact(url)
                ),
            )
        })?;
        // Small commands, sent as soon as they are made: Nagle's algorithm
        // would hold a command back while an earlier one is unacknowledged,
        // which is most of the time when many tasks share the connection.
        let tcp = info.tcp_settings().clone().set_nodelay(true);
        let client = redis::Client::open(info.set_tcp_settings(tcp))
            .map_err(|e| Error::redis("the connection settings", &redact(url), e))?;
        let addr = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            // Reconnects retry once, quickly; the lease code retries commands
            // itself within its own deadlines.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let conn = match tokio::time::timeout(
            self.connect_timeout,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(Error::redis("the connection", &addr, e)),
            Err(_) => {
                return Err(ErrorKind::ConnectTimeout {
                    addr,
                    after: self.connect_timeout,
                }
                .into());
            }
        };
        // One PING, so that a server that wants a password (or is still
        // loading its data) says so now, not at the first lease.
        let mut probe = conn.clone();
        redis::cmd("PING")
            .exec_async(&mut probe)
            .await
            .map_err(|e| Error::redis("the connection check (PING)", &addr, e))?;
        let id = Token::random();
        let runtime = tokio::runtime::Handle::current();
        let hub = WakeHub::new(client.clone(), id.as_bytes(), runtime.clone());
        Ok(Client {
            inner: Arc::new(Inner {
                conn,
                addr,
                id,
                hub,
                redis: client,
                response_timeout: self.response_timeout,
                txns: Default::default(),
                renewer: crate::renew::Renewer::new(runtime.clone()),
                batcher: Default::default(),
                runtime,
            }),
        })
    }
}

impl Client {
    /// Connects to `url` with the default timeouts; see
    /// [`ClientBuilder::connect`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves nothing behind.
    pub async fn connect(url: &str) -> Result<Client> {
        ClientBuilder::default().connect(url).await
    }

    /// Options for connecting (timeouts).
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
        Lease::new(self, name.as_ref())
    }

    /// The server's address, as leasehold prints it (without a password).
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Connections this client has open to Redis: the shared command
    /// connection, plus the subscriber once some task has waited.
    pub fn connections(&self) -> usize {
        1 + self.inner.hub.subscriber_connections()
    }

    pub(crate) fn renewer(&self) -> &crate::renew::Renewer {
        &self.inner.renewer
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// Releases `token`'s hold on `keys` in a background task; for drops.
    pub(crate) fn release_in_background(&self, keys: Arc<LeaseKeys>, token: Token) {
        self.settle_in_background(keys, Some(token), None);
    }

    /// For a dropped acquire, in a background task: releases what `token`
    /// may hold, then takes the fair waiter `leaving` out of its queue.
    pub(crate) fn settle_in_background(
        &self,
        keys: Arc<LeaseKeys>,
        token: Option<Token>,
        leaving: Option<Token>,
    ) {
        let client = self.clone();
        let fut = async move {
            if let Some(token) = token
                && let Err(e) = client.release_raw(&keys, &token).await
            {
                tracing::warn!(
                    lease = keys.display(),
                    token = %token,
                    error = %e,
                    "leasehold: background release failed; the lease ends when its TTL runs out"
                );
            }
            if let Some(id) = leaving
                && let Err(e) =
                    crate::scripts::fair_leave(&mut client.conn(), &keys, id.as_str()).await
            {
                tracing::debug!(
                    lease = keys.display(),
                    error = %e,
                    "leasehold: leaving the fair queue failed; the place ends at the waiter's deadline"
                );
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn(fut)),
            Err(_) => drop(self.inner.runtime.spawn(fut)),
        }
    }

    /// Runs the release script; wakes the next local waiter when it released.
    ///
    /// A plain lease with a local waiter at the head of its queue is handed
    /// over instead: one script frees it and gives it to that waiter's
    /// token, and the waiter takes it without a round trip of its own.
    pub(crate) async fn release_raw(&self, keys: &Arc<LeaseKeys>, token: &Token) -> Result<bool> {
        let hub = &self.inner.hub;
        if let Some(offer) = matches!(keys.kind(), Kind::Lease)
            .then(|| hub.offer(keys.wake()))
            .flatten()
        {
            let next = offer.handover();
            let sent = tokio::time::Instant::now();
            let reply = crate::scripts::handover(
                &mut self.conn(),
                keys,
                token.as_bytes(),
                next.token.as_bytes(),
                next.ttl_ms,
                offer.tolerated(),
                hub.freed_payload(),
            )
            .await;
            let (delivered, result) = match reply {
                Ok(HandedOver::To(fence)) => (offer.grant(fence, sent), Ok(true)),
                Ok(HandedOver::Freed) => {
                    // Other clients wait too: the publish wakes theirs, and
                    // ours tries again after a moment (see `Offer::requeue`).
                    offer.requeue();
                    (true, Ok(true))
                }
                Ok(HandedOver::NotHeld) => (offer.withdraw(), Ok(false)),
                Err(e) => (
                    offer.unknown(),
                    Err(Error::redis("the release script", &self.inner.addr, e)),
                ),
            };
            if !delivered {
                // The waiter gave up meanwhile: pass the lease on from
                // its token (a no-op if it was never handed over).
                self.release_in_background(Arc::clone(keys), next.token);
            }
            return result;
        }
        let released = self
            .release_script(keys, *token)
            .await
            .map_err(|e| Error::redis("the release script", &self.inner.addr, e))?;
        // Wake the next local waiter now: the echo of our own publish is
        // skipped. Not when the publish named the waiters whose turn it is
        // (fair mode), who may be in another process; but a fair release
        // that owes nobody queued wakes the local waiters too, and so does
        // a writer's withdrawn intent, which let readers in.
        if released.wakes_local() {
            hub.wake(keys.wake());
        }
        Ok(released.released())
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

/// Hides the password of a URL for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("redis://u:pw@h:1"), "redis://***@h:1");
        assert_eq!(super::redact("redis://h:1"), "redis://h:1");
    }
}
