//! Redis Sentinel: the master found through the sentinels, and followed
//! across failovers.
//!
//! A `redis+sentinel://` URL names sentinels and a service; the master is
//! whatever they name, checked with `ROLE`. redis-rs resolves the master
//! once per connection and never again, so the [`Follower`] does the
//! following: it owns the current master (its address, client and shared
//! connection) behind a lock that each command reads once, and changes it
//! when
//!
//! - a sentinel announces `+switch-master` for the service (the follower
//!   listens on every sentinel, so that it hears the one that led the
//!   failover at once, not 2 s later through the others' hellos);
//! - a command fails for want of a connection, or answers `READONLY` (the
//!   old master became a replica); and
//! - every [`POLL`], in case a sentinel's message was missed.
//!
//! Each of these asks for a *resolution*: `SENTINEL MASTER` on every
//! sentinel at once, the answer of the latest configuration epoch chosen
//! (a sentinel that has not heard of a failover yet still names the old
//! master, which keeps taking writes for seconds: it must not win), then
//! `PING` and `ROLE` on the address named.
//! One resolution runs at a time, at most one every [`MIN_INTERVAL`]; a
//! caller that saw the old master waits for the running one rather than
//! starting another.
//!
//! # The failover window
//!
//! Sentinel promotes the replica (`REPLICAOF NO ONE`) about a second before
//! it announces the new master, and turns the old master into a replica
//! some 8 s after that: meanwhile the old master still takes writes, which
//! the new one never sees. A lease acquired or extended there is proved by
//! nothing that will survive. So the follower also listens for the first
//! steps of a failover (`+failover-state-select-slave`, `+selected-slave`,
//! `+failover-state-send-slaveof-noone`, published by the sentinel leading
//! it some 100-200 ms before the promotion): from then on, until the new
//! master is followed (or the failover is aborted, or [`HOLD_MAX`] passes),
//! commands wait instead of going to the old master. A command sent before
//! that warning and not yet replicated when the replica was promoted is
//! still lost: Sentinel's replication is asynchronous, which only waiting
//! for replicas' acknowledgement closes.
//!
//! A plain `redis://` client has no follower: its shared connection is a
//! `ConnectionManager` reached through one enum match, with no lock.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::node::{Timeouts, connect_and_probe};
use crate::error::{Error, Result};

/// The URL scheme of a Sentinel deployment.
pub(crate) const SCHEME: &str = "redis+sentinel://";
/// Sentinel's port when the URL gives none.
const DEFAULT_PORT: u16 = 26379;
/// How often the sentinels are asked whether the master changed, besides
/// their announcements.
const POLL: Duration = Duration::from_secs(2);
/// Resolutions start at most this often.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// How long commands are held back after a sentinel announced a failover
/// that is then neither finished nor aborted.
const HOLD_MAX: Duration = Duration::from_secs(10);
/// Reconnect back-off of the links to the sentinels.
const RELINK_MIN: Duration = Duration::from_millis(100);
const RELINK_MAX: Duration = Duration::from_secs(2);

/// What a `redis+sentinel://` URL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The sentinels' hosts and ports, in the URL's order.
    pub(crate) sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the master under.
    pub(crate) service: String,
    /// The database, user and password for the master (not the sentinels).
    pub(crate) db: i64,
    username: Option<String>,
    password: Option<String>,
    /// The URL without its password, for messages.
    pub(crate) display: String,
}

/// True for a URL leasehold reads as a Sentinel deployment's.
pub(crate) fn is_sentinel_url(url: &str) -> bool {
    url.starts_with(SCHEME) || url.starts_with("rediss+sentinel://")
}

/// Reads `redis+sentinel://[user:password@]host[:port][,host[:port]...]/SERVICE[/DB]`,
/// or says what is wrong with it (never printing its password).
pub(crate) fn parse(url: &str) -> Result<Target> {
    let display = super::node::redact(url);
    let bad = |why: String| {
        Error::invalid(
            "url",
            format!(
                "`{display}` is not a Sentinel URL: {why}; use redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[/DB]"
            ),
        )
    };
    let Some(rest) = url.strip_prefix(SCHEME) else {
        return Err(if url.starts_with("rediss+sentinel://") {
            Error::invalid(
                "url",
                format!(
                    "`{display}`: TLS through Sentinel is not supported yet; use redis+sentinel:// (sentinels and master without TLS)"
                ),
            )
        } else {
            bad("it does not start with redis+sentinel://".into())
        });
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (u, None),
            };
            let user = decode(user).ok_or_else(|| bad("the user name is badly escaped".into()))?;
            let pass = match pass {
                Some(p) => {
                    Some(decode(p).ok_or_else(|| bad("the password is badly escaped".into()))?)
                }
                None => None,
            };
            ((!user.is_empty()).then_some(user), pass)
        }
    };
    let mut sentinels = Vec::new();
    for host in hosts.split(',') {
        if host.is_empty() {
            return Err(bad("a sentinel's address is empty".into()));
        }
        // `[::1]:26379`, `host:26379` or `host`.
        let (name, port) = if let Some(v6) = host.strip_prefix('[') {
            let (name, after) = v6
                .split_once(']')
                .ok_or_else(|| bad(format!("`{host}` has no closing `]`")))?;
            (name, after.strip_prefix(':'))
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (host, None),
            }
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(format!("`{p}` in `{host}` is no port number")))?,
        };
        if name.is_empty() {
            return Err(bad(format!("`{host}` has no host name")));
        }
        sentinels.push((name.to_owned(), port));
    }
    let (service, db) = match path.split_once('/') {
        Some((service, db)) => (service, Some(db)),
        None => (path, None),
    };
    if service.is_empty() {
        return Err(bad(
            "it names no service (the name in the sentinels' `sentinel monitor` line)".into(),
        ));
    }
    let service = decode(service).ok_or_else(|| bad("the service name is badly escaped".into()))?;
    let db = match db.filter(|d| !d.is_empty()) {
        None => 0,
        Some(d) => d
            .parse::<i64>()
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| bad(format!("`{d}` is no database number")))?,
    };
    Ok(Target {
        sentinels,
        service,
        db,
        username,
        password,
        display,
    })
}

/// `%XX` escapes decoded; `None` for a bad escape or bytes that are not
/// UTF-8.
fn decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// The master of the moment.
pub(crate) struct Master {
    /// `host:port`.
    pub(crate) addr: String,
    /// For connections of its own (renewals, transactions, the subscriber).
    pub(crate) redis: redis::Client,
    /// The shared connection to it.
    pub(crate) conn: ConnectionManager,
    /// Bumped at each switch: connections of an older one are dropped.
    pub(crate) generation: u64,
    /// The sentinels' configuration epoch that named it: a sentinel that
    /// has not heard of a failover yet names the old master under an
    /// older epoch, and is not followed back there.
    epoch: u64,
}

/// Follows the master of a Sentinel service (see the module's docs).
pub(crate) struct Follower {
    target: Target,
    timeouts: Timeouts,
    current: RwLock<Arc<Master>>,
    /// The current master's generation, for waiters of a switch.
    switched: watch::Sender<u64>,
    /// Until when commands are held back: a sentinel announced a failover.
    hold: watch::Sender<Option<Instant>>,
    /// When the last resolution started; locked by the one running.
    resolving: tokio::sync::Mutex<Option<Instant>>,
    /// Ends the listeners when the client goes.
    shutdown: CancellationToken,
    runtime: tokio::runtime::Handle,
    me: Weak<Follower>,
}

impl Follower {
    /// Finds the master of `target` through its sentinels, connects to it,
    /// and starts listening to the sentinels.
    pub(crate) async fn connect(target: Target, timeouts: Timeouts) -> Result<Arc<Follower>> {
        let master = find_and_connect(&target, timeouts, 0).await?;
        let follower = Arc::new_cyclic(|me| Follower {
            target,
            timeouts,
            current: RwLock::new(Arc::new(master)),
            switched: watch::Sender::new(0),
            hold: watch::Sender::new(None),
            resolving: tokio::sync::Mutex::new(None),
            shutdown: CancellationToken::new(),
            runtime: tokio::runtime::Handle::current(),
            me: me.clone(),
        });
        for i in 0..follower.target.sentinels.len() {
            follower.runtime.spawn(listen(Arc::downgrade(&follower), i));
        }
        follower.runtime.spawn(poll(Arc::downgrade(&follower)));
        Ok(follower)
    }

    /// The master of the moment.
    pub(crate) fn current(&self) -> Arc<Master> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The URL without its password.
    pub(crate) fn display(&self) -> &str {
        &self.target.display
    }

    /// A receiver that changes at each switch of master.
    pub(crate) fn switches(&self) -> watch::Receiver<u64> {
        self.switched.subscribe()
    }

    /// Stops the listeners.
    pub(crate) fn shut_down(&self) {
        self.shutdown.cancel();
    }

    /// The master to send to, once no failover holds commands back; an
    /// error if one still does after `patience` (the old master may be
    /// cut off already: nothing goes there).
    pub(crate) async fn ready(&self, patience: Duration) -> redis::RedisResult<Arc<Master>> {
        let mut hold = self.hold.subscribe();
        let give_up = Instant::now() + patience;
        loop {
            let until = *hold.borrow_and_update();
            match until {
                Some(until) if Instant::now() < until => {
                    if Instant::now() >= give_up {
                        return Err(RedisError::from(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "a Sentinel failover of `{}` is under way; commands wait for the new master",
                                self.target.service
                            ),
                        )));
                    }
                    tokio::select! {
                        _ = hold.changed() => {}
                        _ = tokio::time::sleep_until(until.min(give_up)) => {}
                    }
                }
                _ => return Ok(self.current()),
            }
        }
    }

    /// Sends `req` on the current master's shared connection. `READONLY`
    /// (the master became a replica; the command did not run) has it
    /// follow the master and send it once more there; a broken link
    /// starts a resolution in the background and returns the error (the
    /// command may have run: the caller decides whether to retry).
    async fn run(&self, req: Req<'_>) -> redis::RedisResult<Reply> {
        let master = self.ready(self.timeouts.response).await?;
        let result = req.send(master.conn.clone()).await;
        let Err(e) = &result else {
            return result;
        };
        if is_read_only(e) {
            let seen = master.generation;
            let _ = tokio::time::timeout(self.timeouts.response, self.resolve(seen)).await;
            let now = self.ready(self.timeouts.response).await?;
            if now.generation != seen {
                return req.send(now.conn.clone()).await;
            }
        } else if is_link_error(e) {
            self.resolve_soon(master.generation);
        }
        result
    }

    /// Starts a resolution in the background unless the master changed
    /// since `seen`.
    pub(crate) fn resolve_soon(&self, seen: u64) {
        if let Some(me) = self.me.upgrade() {
            self.runtime.spawn(async move { me.resolve(seen).await });
        }
    }

    /// Asks the sentinels for the master and follows it, unless the
    /// master changed since `seen` (another resolution did it).
    async fn resolve(&self, seen: u64) {
        let mut last = self.resolving.lock().await;
        if *self.switched.borrow() != seen {
            return;
        }
        if let Some(at) = *last {
            tokio::time::sleep_until(at + MIN_INTERVAL).await;
        }
        *last = Some(Instant::now());
        let current = self.current();
        let named = match ask_sentinels(&self.target, self.timeouts).await {
            Ok(named) => named,
            Err(e) => {
                tracing::warn!(error = %e, service = %self.target.service, "leasehold: no sentinel named the master; staying with {}", current.addr);
                return;
            }
        };
        if named.addr == current.addr || named.epoch < current.epoch {
            return;
        }
        match connect_master(&self.target, self.timeouts, &named, seen + 1).await {
            Ok(master) => {
                tracing::info!(service = %self.target.service, from = %current.addr, to = %master.addr, "leasehold: the master changed; following it");
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(master);
                self.switched.send_replace(seen + 1);
                self.hold.send_replace(None);
            }
            Err(e) => {
                tracing::warn!(error = %e, service = %self.target.service, "leasehold: the sentinels name {} as the master, but it cannot be used yet", named.addr);
            }
        }
    }

    /// A sentinel said `event` about our service.
    fn on_event(&self, event: &str) {
        match event {
            "+failover-state-select-slave"
            | "+selected-slave"
            | "+failover-state-send-slaveof-noone"
            | "+failover-state-wait-promotion"
            | "+promoted-slave" => {
                self.hold.send_if_modified(|hold| match hold {
                    Some(_) => false,
                    None => {
                        *hold = Some(Instant::now() + HOLD_MAX);
                        true
                    }
                });
                tracing::debug!(service = %self.target.service, event, "leasehold: a failover began; commands wait for the new master");
            }
            "+switch-master" | "+failover-end" => {
                let seen = *self.switched.borrow();
                self.resolve_soon(seen);
            }
            _ if event.starts_with("-failover-abort") => {
                self.hold.send_replace(None);
            }
            _ => {}
        }
    }
}

/// The events a follower listens for on each sentinel.
const EVENTS: &[&str] = &[
    "+switch-master",
    "+failover-end",
    "+failover-state-select-slave",
    "+selected-slave",
    "+failover-state-send-slaveof-noone",
    "+failover-state-wait-promotion",
    "+promoted-slave",
    "-failover-abort-not-elected",
    "-failover-abort-no-good-slave",
    "-failover-abort-slave-timeout",
];

/// Listens to sentinel `i`'s announcements while the follower lives,
/// reconnecting when the link breaks.
async fn listen(follower: Weak<Follower>, i: usize) {
    let mut backoff = RELINK_MIN;
    loop {
        let Some(f) = follower.upgrade() else { return };
        let shutdown = f.shutdown.clone();
        let (host, port) = f.target.sentinels[i].clone();
        let (service, timeouts) = (f.target.service.clone(), f.timeouts);
        drop(f);
        let link = async {
            let client = sentinel_client(&host, port)?;
            let mut pubsub = tokio::time::timeout(timeouts.connect, client.get_async_pubsub())
                .await
                .map_err(|_| {
                    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
                })??;
            pubsub.subscribe(EVENTS).await?;
            Ok::<_, RedisError>(pubsub)
        };
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = link => r,
        };
        match pubsub {
            Ok(pubsub) => {
                backoff = RELINK_MIN;
                let mut messages = pubsub.into_on_message();
                loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = messages.next() => m,
                    };
                    let Some(msg) = msg else { break };
                    let payload = String::from_utf8_lossy(msg.get_payload_bytes());
                    if names_service(&payload, &service) {
                        let Some(f) = follower.upgrade() else { return };
                        f.on_event(msg.get_channel_name());
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "leasehold: cannot listen to sentinel {host}:{port}; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RELINK_MAX);
    }
}

/// Whether a sentinel event's payload is about `service`: `+switch-master`
/// starts with the name; the others end with `@ name ip port`, or are
/// about the master itself (`master name ip port`).
fn names_service(payload: &str, service: &str) -> bool {
    let words: Vec<&str> = payload.split(' ').collect();
    words.first() == Some(&service)
        || words
            .windows(2)
            .any(|w| (w[0] == "@" || w[0] == "master") && w[1] == service)
}

/// Asks the sentinels every [`POLL`] whether the master changed.
async fn poll(follower: Weak<Follower>) {
    loop {
        let Some(f) = follower.upgrade() else { return };
        let shutdown = f.shutdown.clone();
        drop(f);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        let Some(f) = follower.upgrade() else { return };
        let seen = *f.switched.borrow();
        f.resolve(seen).await;
    }
}

/// A client for the sentinel at `host:port`.
fn sentinel_client(host: &str, port: u16) -> redis::RedisResult<redis::Client> {
    redis::Client::open(ConnectionAddr::Tcp(host.to_owned(), port).into_connection_info()?)
}

/// A master as the sentinels name it.
struct Named {
    /// `host:port`.
    addr: String,
    /// The configuration epoch it was named under.
    epoch: u64,
}

/// The master as the sentinels name it: every sentinel is asked at once
/// (`SENTINEL MASTER`), and the answer of the latest configuration epoch
/// wins, so that a sentinel that has not heard of a failover yet does not
/// send the client back to the old master.
async fn ask_sentinels(target: &Target, timeouts: Timeouts) -> Result<Named> {
    let asks = target.sentinels.iter().map(|(host, port)| async move {
        let asked = async {
            let client = sentinel_client(host, *port)?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeouts.connect))
                .set_response_timeout(Some(timeouts.response));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("SENTINEL")
                .arg("MASTER")
                .arg(&target.service)
                .query_async::<std::collections::HashMap<String, String>>(&mut conn)
                .await
        };
        let answer = tokio::time::timeout(timeouts.connect + timeouts.response, asked).await;
        (format!("{host}:{port}"), answer)
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut failures = Vec::new();
    let mut unknown = 0;
    let mut best: Option<Named> = None;
    for (sentinel, answer) in answers {
        match answer {
            Ok(Ok(fields)) => {
                let (Some(ip), Some(port)) = (fields.get("ip"), fields.get("port")) else {
                    failures.push(format!("{sentinel}: no address in its answer"));
                    continue;
                };
                let epoch = fields
                    .get("config-epoch")
                    .and_then(|e| e.parse().ok())
                    .unwrap_or(0);
                if best.as_ref().is_none_or(|b| epoch > b.epoch) {
                    best = Some(Named {
                        addr: format!("{ip}:{port}"),
                        epoch,
                    });
                }
            }
            Ok(Err(e)) if e.to_string().contains("No such master") => unknown += 1,
            Ok(Err(e)) => failures.push(format!("{sentinel}: {e}")),
            Err(_) => failures.push(format!("{sentinel}: no answer in time")),
        }
    }
    if let Some(best) = best {
        return Ok(best);
    }
    if unknown > 0 {
        return Err(Error::invalid(
            "sentinel service",
            format!(
                "{unknown} of the sentinels of `{}` answered and none knows a master named `{}`{}; check the name against their `sentinel monitor` lines",
                target.display,
                target.service,
                if failures.is_empty() {
                    String::new()
                } else {
                    format!(" (the others failed: {})", failures.join("; "))
                }
            ),
        ));
    }
    Err(Error::redis(
        "asking the sentinels for the master",
        &target.display,
        RedisError::from(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            format!("no sentinel answered: {}", failures.join("; ")),
        )),
    ))
}

/// Connects to the master at `addr` and checks that it is one.
async fn connect_master(
    target: &Target,
    timeouts: Timeouts,
    named: &Named,
    generation: u64,
) -> Result<Master> {
    let addr = named.addr.as_str();
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| Error::invalid("sentinel answer", format!("`{addr}` is no address")))?;
    let mut settings = RedisConnectionInfo::default().set_db(target.db);
    if let Some(user) = &target.username {
        settings = settings.set_username(user);
    }
    if let Some(pass) = &target.password {
        settings = settings.set_password(pass);
    }
    let info = ConnectionAddr::Tcp(host, port)
        .into_connection_info()
        .map_err(|e| Error::redis("the master's address", addr, e))?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    let info = info.set_tcp_settings(tcp).set_redis_settings(settings);
    let redis = redis::Client::open(info).map_err(|e| Error::redis("the master", addr, e))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(500));
    let mut conn = connect_and_probe(
        ConnectionManager::new_with_config(redis.clone(), config),
        "the connection to the master",
        addr,
        timeouts.connect,
    )
    .await?;
    let role: Vec<Value> = redis::cmd("ROLE")
        .query_async(&mut conn)
        .await
        .map_err(|e| Error::redis("checking the master's role (ROLE)", addr, e))?;
    let role = match role.first() {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    };
    if role != "master" {
        return Err(Error::invalid(
            "sentinel answer",
            format!(
                "the sentinels of `{}` name {addr} as the master of `{}`, but it answers ROLE `{role}`; a failover may be under way, try again",
                target.display, target.service
            ),
        ));
    }
    Ok(Master {
        addr: addr.to_owned(),
        redis,
        conn,
        generation,
        epoch: named.epoch,
    })
}

/// Finds the master of `target` and connects to it.
async fn find_and_connect(target: &Target, timeouts: Timeouts, generation: u64) -> Result<Master> {
    let named = ask_sentinels(target, timeouts).await?;
    connect_master(target, timeouts, &named, generation).await
}

/// `READONLY`: the server became a replica; the command did not run.
pub(crate) fn is_read_only(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
}

/// The link failed: the master may be gone.
fn is_link_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

/// A request on the shared connection.
#[derive(Clone, Copy)]
enum Req<'a> {
    One(&'a redis::Cmd),
    Many(&'a redis::Pipeline, usize, usize),
}

/// Its reply.
enum Reply {
    One(Value),
    Many(Vec<Value>),
}

impl Req<'_> {
    async fn send(self, mut conn: ConnectionManager) -> redis::RedisResult<Reply> {
        match self {
            Req::One(cmd) => conn.req_packed_command(cmd).await.map(Reply::One),
            Req::Many(p, offset, count) => conn
                .req_packed_commands(p, offset, count)
                .await
                .map(Reply::Many),
        }
    }
}

/// The shared connection of a Sentinel client, as
/// [`Shared`](super::node::Shared) uses it: each command on the master of
/// the moment.
impl Follower {
    pub(crate) fn req_packed_command<'a>(
        &'a self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.run(Req::One(cmd)).await? {
                Reply::One(v) => Ok(v),
                Reply::Many(_) => unreachable!("one command, one reply"),
            }
        })
    }

    pub(crate) fn req_packed_commands<'a>(
        &'a self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.run(Req::Many(pipeline, offset, count)).await? {
                Reply::Many(v) => Ok(v),
                Reply::One(_) => unreachable!("a pipeline, its replies"),
            }
        })
    }

    pub(crate) fn db(&self) -> i64 {
        self.target.db
    }
}

#[cfg(test)]
mod tests {
    use super::{names_service, parse};

    #[test]
    fn reads_sentinel_urls() {
        let t = parse("redis+sentinel://u:p%40ss@a:26380,b,[::1]:7/orders/3").unwrap();
        assert_eq!(
            t.sentinels,
            vec![("a".into(), 26380), ("b".into(), 26379), ("::1".into(), 7)]
        );
        assert_eq!(t.service, "orders");
        assert_eq!(t.db, 3);
        assert_eq!(t.username.as_deref(), Some("u"));
        assert_eq!(t.password.as_deref(), Some("p@ss"));
        assert!(!t.display.contains("p%40ss"), "{}", t.display);
        let t = parse("redis+sentinel://:secret@h:1/svc").unwrap();
        assert_eq!(
            (t.username, t.password.as_deref(), t.db),
            (None, Some("secret"), 0)
        );
    }

    #[test]
    fn says_what_is_wrong_with_a_sentinel_url() {
        for (url, says) in [
            ("redis+sentinel://h:1", "names no service"),
            ("redis+sentinel://h:1/", "names no service"),
            ("redis+sentinel://h:x/s", "`x` in `h:x` is no port number"),
            (
                "redis+sentinel://h:1,,k:2/s",
                "a sentinel's address is empty",
            ),
            ("redis+sentinel://h:1/s/x", "`x` is no database number"),
            (
                "rediss+sentinel://h:1/s",
                "TLS through Sentinel is not supported",
            ),
            ("redis+sentinel://u:pw@h:x/s", "no port number"),
        ] {
            let e = parse(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("pw"), "{url}: the password is shown: {e}");
        }
    }

    #[test]
    fn tells_its_services_events_from_others() {
        assert!(names_service("orders 127.0.0.1 1 127.0.0.1 2", "orders"));
        assert!(names_service(
            "slave 127.0.0.1:2 127.0.0.1 2 @ orders 127.0.0.1 1",
            "orders"
        ));
        assert!(names_service("master orders 127.0.0.1 1", "orders"));
        assert!(!names_service("other 127.0.0.1 1 127.0.0.1 2", "orders"));
        assert!(!names_service(
            "slave 127.0.0.1:2 127.0.0.1 2 @ other 127.0.0.1 1",
            "orders"
        ));
    }
}
