//! One Redis server: the shared connection, connections of their own, and
//! the address every error from it carries.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};

use super::WakeSource;
use super::direct::{Express, Lane};
use super::sentinel::{self, Follower};
use crate::error::{Error, ErrorKind, Result};

/// Idle dedicated connections kept (beyond these, one given back closes).
const POOL_MAX: usize = 16;

/// How to reach a server and how long to wait for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Reaching the server.
    pub(crate) connect: Duration,
    /// One command's reply.
    pub(crate) response: Duration,
}

/// One Redis server, as the backends use it.
pub(crate) struct Node {
    /// The server, or the master of a Sentinel service.
    link: Link,
    /// Printable address, never with a password (a Sentinel URL for a
    /// Sentinel service).
    addr: String,
    timeouts: Timeouts,
    /// Dedicated connections given back by transactions (WATCH needs a
    /// connection of its own), ready for the next.
    idle: Mutex<Vec<MultiplexedConnection>>,
    /// The runtime the node was connected on, where its connection's task
    /// lives: background work that uses the connection runs there.
    runtime: tokio::runtime::Handle,
    /// Connections read by their callers, for the operations that go out
    /// alone (plain `redis://` only; see [`direct`](super::direct)).
    lane: Option<Arc<Lane>>,
}

/// Where a node's commands go.
// One per client: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Link {
    /// One server, for ever.
    Fixed {
        /// The multiplexed connection that every lease of the client
        /// shares and that reconnects by itself. Never carries a blocking
        /// command.
        conn: ConnectionManager,
        /// For connections of their own (a renewal whose reply is stuck on
        /// the shared connection, transactions, the subscriber).
        redis: redis::Client,
    },
    /// The master of a Sentinel service, whichever it is at the moment.
    Sentinel(Arc<Follower>),
}

/// The shared connection: to one server, a `ConnectionManager` behind one
/// match (no lock, no allocation of ours); to a Sentinel service's master,
/// through its [`Follower`], which reads the master of the moment once per
/// command and follows a failover on `READONLY` or a broken link.
#[derive(Clone)]
pub(crate) enum Shared {
    Fixed(ConnectionManager),
    Sentinel(Arc<Follower>),
}

impl ConnectionLike for Shared {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Shared::Fixed(c) => c.req_packed_command(cmd),
            Shared::Sentinel(f) => f.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Shared::Fixed(c) => c.req_packed_commands(pipeline, offset, count),
            Shared::Sentinel(f) => f.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Shared::Fixed(c) => c.get_db(),
            Shared::Sentinel(f) => f.db(),
        }
    }
}

impl Node {
    /// Connects to `url` and checks the server answers (one PING); for a
    /// `redis+sentinel://` URL, finds the master through the sentinels
    /// first and follows it from then on.
    pub(crate) async fn connect(url: &str, timeouts: Timeouts, tls: &Tls) -> Result<Node> {
        if sentinel::is_sentinel_url(url) {
            let target = sentinel::parse(url)?;
            if !tls.is_default() {
                return Err(Error::unsupported(
                    "TLS CA and client certificate files",
                    "Sentinel",
                    "TLS through Sentinel is not supported yet",
                ));
            }
            let follower = Follower::connect(target, timeouts).await?;
            return Ok(Node {
                addr: follower.display().to_owned(),
                link: Link::Sentinel(follower),
                timeouts,
                idle: Mutex::new(Vec::new()),
                runtime: tokio::runtime::Handle::current(),
                lane: None,
            });
        }
        let redis = open_with(url, tls)?;
        let addr = redis.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.response))
            // Reconnects retry once, quickly; the lease code retries commands
            // itself within its own deadlines.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let conn = connect_and_probe(
            ConnectionManager::new_with_config(redis.clone(), config),
            "the connection",
            &addr,
            timeouts.connect,
        )
        .await?;
        Ok(Node {
            lane: Lane::new(redis.get_connection_info(), timeouts),
            link: Link::Fixed { conn, redis },
            addr,
            timeouts,
            idle: Mutex::new(Vec::new()),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// The shared connection (a cheap handle).
    pub(crate) fn conn(&self) -> Shared {
        match &self.link {
            Link::Fixed { conn, .. } => Shared::Fixed(conn.clone()),
            Link::Sentinel(f) => Shared::Sentinel(Arc::clone(f)),
        }
    }

    /// The connection for an operation that goes out alone: a direct one
    /// when one is idle, else the shared one.
    pub(crate) fn express(&self) -> Express {
        Express {
            lane: self.lane.clone(),
            shared: self.conn(),
        }
    }

    /// Waits until no cancelled operation's command may still run on a
    /// direct connection (see [`Lane::settled`]).
    pub(crate) async fn settled(&self) {
        if let Some(lane) = &self.lane {
            lane.settled().await;
        }
    }

    /// Direct connections open (see [`direct`](super::direct)).
    pub(crate) fn direct_connections(&self) -> usize {
        self.lane.as_ref().map_or(0, |l| l.open())
    }

    /// The runtime the connection lives on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The server's printable address.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// How long one command waits for its reply.
    pub(crate) fn response_timeout(&self) -> Duration {
        self.timeouts.response
    }

    /// Where waiters hear of releases: this server, or the master of the
    /// moment.
    pub(crate) fn wake_source(&self) -> WakeSource {
        match &self.link {
            Link::Fixed { redis, .. } => WakeSource::PubSub(redis.clone()),
            Link::Sentinel(f) => WakeSource::Sentinel(Arc::clone(f)),
        }
    }

    /// A client of this server, or of the master of the moment (for
    /// `doctor` and its probes, which take what they are given).
    pub(crate) fn redis(&self) -> redis::Client {
        match &self.link {
            Link::Fixed { redis, .. } => redis.clone(),
            Link::Sentinel(f) => f.current().redis.clone(),
        }
    }

    /// The client for connections of their own: this server's, or the
    /// master's once no failover holds commands back (at most `patience`).
    async fn client(&self, patience: Duration) -> redis::RedisResult<redis::Client> {
        match &self.link {
            Link::Fixed { redis, .. } => Ok(redis.clone()),
            Link::Sentinel(f) => Ok(f.ready(patience).await?.redis.clone()),
        }
    }

    /// Every key of this server matching `pattern`, by SCAN.
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>> {
        scan_keys(&mut self.conn(), pattern)
            .await
            .map_err(|e| Error::redis("scanning for leases", &self.addr, e))
    }

    /// A new connection used by nobody else, that waits for the connection
    /// and for each reply at most `patience`.
    pub(crate) async fn alone(
        &self,
        doing: &'static str,
        patience: Duration,
    ) -> Result<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(patience))
            .set_response_timeout(Some(patience));
        let client = self
            .client(patience)
            .await
            .map_err(|e| Error::redis(doing, &self.addr, e))?;
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| Error::redis(doing, &self.addr, e))
    }

    /// A dedicated connection: an idle one given back earlier, or a new one.
    pub(crate) async fn dedicated(&self, doing: &'static str) -> Result<MultiplexedConnection> {
        if let Some(conn) = self.lock_idle().pop() {
            return Ok(conn);
        }
        let client = self
            .client(self.timeouts.response)
            .await
            .map_err(|e| Error::redis(doing, &self.addr, e))?;
        client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| Error::redis(doing, &self.addr, e))
    }

    /// Keeps a dedicated connection, in a clean state, for the next user.
    /// Not through Sentinel: a connection given back after a failover
    /// would still go to the old master.
    pub(crate) fn give_back(&self, conn: MultiplexedConnection) {
        if let Link::Sentinel(_) = self.link {
            return;
        }
        let mut idle = self.lock_idle();
        if idle.len() < POOL_MAX {
            idle.push(conn);
        }
    }

    /// Dedicated connections kept idle.
    pub(crate) fn idle(&self) -> usize {
        self.lock_idle().len()
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<MultiplexedConnection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Link::Sentinel(f) = &self.link {
            f.shut_down();
        }
    }
}

/// Awaits `connecting` at most `within` (else [`ErrorKind::ConnectTimeout`]
/// at `addr`), then sends one PING, so that a server that wants a password
/// (or is still loading its data) says so now, not at the first lease.
pub(crate) async fn connect_and_probe<C: redis::aio::ConnectionLike + Clone>(
    connecting: impl std::future::Future<Output = redis::RedisResult<C>>,
    what: &'static str,
    addr: &str,
    within: Duration,
) -> Result<C> {
    let conn = match tokio::time::timeout(within, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(Error::redis(what, addr, e)),
        Err(_) => {
            crate::observe::connect_timeout();
            return Err(ErrorKind::ConnectTimeout {
                addr: addr.to_owned(),
                after: within,
            }
            .into());
        }
    };
    let mut probe = conn.clone();
    redis::cmd("PING")
        .exec_async(&mut probe)
        .await
        .map_err(|e| Error::redis("the connection check (PING)", addr, e))?;
    Ok(conn)
}

/// Every key matching `pattern` on the server behind `conn`, by SCAN.
pub(crate) async fn scan_keys(
    conn: &mut impl redis::aio::ConnectionLike,
    pattern: &str,
) -> redis::RedisResult<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            return Ok(keys);
        }
    }
}

/// The certificates a `rediss://` connection uses instead of the system's
/// (see [`ClientBuilder::tls_ca_file`](crate::ClientBuilder::tls_ca_file)).
/// Paths, read at each connect, so that renewed files are picked up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tls {
    /// PEM file of the CA(s) to trust, instead of the system's roots.
    pub(crate) ca: Option<PathBuf>,
    /// PEM files of the client certificate and its private key.
    pub(crate) client: Option<(PathBuf, PathBuf)>,
}

impl Tls {
    /// True when no certificate was given: the system's roots, no client
    /// certificate.
    pub(crate) fn is_default(&self) -> bool {
        self.ca.is_none() && self.client.is_none()
    }

    /// Reads the files, each error naming its file.
    pub(crate) fn certificates(&self) -> Result<redis::TlsCertificates> {
        let client_tls = match &self.client {
            Some((cert, key)) => Some(redis::ClientTlsConfig {
                client_cert: read_pem("TLS client certificate", cert)?,
                client_key: read_pem("TLS client key", key)?,
            }),
            None => None,
        };
        let root_cert = match &self.ca {
            Some(ca) => Some(read_pem("TLS CA", ca)?),
            None => None,
        };
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::invalid(what, format!("cannot read {}: {e}", path.display())))
}

/// The client for `url`, its commands sent as soon as they are made; with
/// the certificates of `tls`, which need a `rediss://` URL.
pub(crate) fn open_with(url: &str, tls: &Tls) -> Result<redis::Client> {
    let info = parse_url(url)?;
    let certs = if tls.is_default() {
        None
    } else {
        no_tls_url(&info, url)?;
        Some(tls.certificates()?)
    };
    open_info(info, certs, &redact(url))
}

/// Refuses TLS certificates for `url` (parsed as `info`) unless it is a
/// `rediss://` URL: they would be ignored.
pub(crate) fn no_tls_url(info: &redis::ConnectionInfo, url: &str) -> Result<()> {
    if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        return Ok(());
    }
    Err(Error::invalid(
        "url",
        format!(
            "`{}` is no TLS URL, but TLS certificates are given; use rediss://host:port",
            redact(url)
        ),
    ))
}

/// The client for the settings `info` (printed as `addr`), with the
/// certificates `certs` instead of the system's roots when given.
pub(crate) fn open_info(
    info: redis::ConnectionInfo,
    certs: Option<redis::TlsCertificates>,
    addr: &str,
) -> Result<redis::Client> {
    // Nagle's algorithm would hold a small command back while an earlier
    // one is unacknowledged, which is most of the time when many tasks
    // share the connection.
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    let info = info.set_tcp_settings(tcp);
    match certs {
        None => redis::Client::open(info),
        Some(certs) => redis::Client::build_with_tls(info, certs),
    }
    .map_err(|e| Error::redis("the connection settings", addr, e))
}

/// Reads `url` as Redis's connection settings, or says why it is no
/// Redis URL (never printing its password).
pub(crate) fn parse_url(url: &str) -> Result<redis::ConnectionInfo> {
    redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| {
        Error::invalid(
            "url",
            format!(
                "`{}` is not a Redis URL ({e}); use redis://host:port, rediss://host:port or unix:///path",
                redact(url)
            ),
        )
    })
}

/// Hides the password of a URL for messages.
pub(crate) fn redact(url: &str) -> String {
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
