//! Redlock: N independent masters, a lease held when a quorum of them
//! granted it, with a fence that never goes back.
//!
//! Every operation goes to all masters at once, one connection each, each
//! answer awaited at most the per-node timeout; the caller gets its answer
//! as soon as the answers in hand decide it (a quorum granted, or too few
//! can any more), and the rest finish in the background, never waited for.
//! Each master keeps the lease as the plain lease's key: the name holding
//! the token with a PX TTL, like node-redlock, redsync and rslock, so their
//! holders and ours exclude each other on one name.
//!
//! **Fences.** Each master's acquire script draws its own next fence
//! (`fence.lua`: INCR floored at that master's clock). The guard's fence is
//! the highest among the granting quorum, and before the guard is returned
//! the fencing counter is raised to it on enough masters that a majority
//! holds at least that value (when a majority of the granting ones drew it
//! already, which is usual once the counters have met, nothing more is
//! sent). Any later quorum shares a master with that majority, so its
//! highest fence is higher. A master that restarts empty draws from its
//! clock floor, above what it handed out before while its clock does not
//! step back.
//!
//! **Semaphores.** A permit holds when `q` masters admitted it, each
//! admitting at most K: H holders then take H·q admissions of at most N·K,
//! so H ≤ N·K/q, and H ≤ K needs q > N·K/(K+1). A majority is that only
//! for K = 1 (with N = 5, K = 2 a majority would let 3 holders in), so
//! permits take `⌊N·K/(K+1)⌋ + 1` masters: 4 of 5 for K = 2, all 5 for
//! K ≥ 4.
//!
//! **Order on each master.** An operation whose answer is not awaited
//! (a master too slow for the quorum) must still reach its master before
//! the next operation of the same token, or a late release could delete a
//! later grant. Each master's commands go down its one connection in the
//! order they are first polled, so every command is polled once as soon as
//! it is made ([`Replies`]); a connection never makes a command wait (its
//! queue is unbounded, and while it is down, commands fail on that master
//! at once: see [`Link`]); and an operation is always one command: our
//! scripts are loaded on each master when it connects, and an EVALSHA that
//! finds none (a master restarted empty) is not followed by an EVAL, which
//! a later command could overtake; it fails for that master alone
//! (`TRYAGAIN`) while the script is loaded again ([`Master`]).
//!
//! **Top-ups.** A lease granted by a bare quorum is one lost master away
//! from a second holder (a master restarting empty, or whose clock jumps
//! and expires its copy early). So a holder asks the masters that refused
//! it again, at once after the acquire and at every renewal, until they
//! grant or it lets go ([`Inner::top_up`]).
//!
//! Fair leases and semaphores (their queue lives on one server) and
//! read-write locks are refused with [`ErrorKind::Unsupported`], as are
//! your scripts and transactions (on which master would the data live?).

use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::node::{Timeouts, Tls, connect_and_probe, open_with, parse_url, scan_keys};
use super::{Acquire, Extended, HandoverReply, Held, Released, drift, ttl_ms};
use crate::error::{Error, ErrorKind, NodeFailure, Result};
use crate::keys::{Family, LeaseKeys};
use crate::scripts::{self, Acquired, Pubsub, WaitInfo};
use crate::token::Token;

/// The name of this deployment in messages.
pub(crate) const REDLOCK: &str = "Redlock";

/// How long one master may take to answer one operation, by default.
pub(crate) const NODE_TIMEOUT: Duration = Duration::from_millis(100);

/// How often an acquire that some masters granted asks the busy ones
/// again, and the pause before the first time (times the round after).
const RETRY_BUSY: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_micros(500);

/// How often a held lease asks the masters that refused it again (see
/// [`Inner::top_up`]), and the pause before the first time (doubled
/// each time after).
const TOP_UP_ROUNDS: u32 = 4;
const TOP_UP_PAUSE: Duration = Duration::from_millis(1);

/// Probes of a silent master: the first pause, and the longest.
const PROBE_MIN: Duration = Duration::from_millis(5);
const PROBE_MAX: Duration = Duration::from_millis(500);

/// Releases owed to one master, at most (beyond, their keys expire).
const OWED_MAX: usize = 100_000;

/// Reconnect back-off for a master whose connection is down.
const RECONNECT_MIN: Duration = Duration::from_millis(20);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Commands a master's connection takes before its writer drains them:
/// never reached, so that a command is on the connection when it is
/// first polled (a full queue would let later commands overtake).
const QUEUE: usize = 1 << 24;

/// N independent masters. Dropped, it stops the background tasks
/// (reconnects, probes); top-ups hold it weakly.
pub(crate) struct Redlock(Arc<Inner>);

pub(crate) struct Inner {
    masters: Arc<Masters>,
    /// Printable: every master, comma-separated.
    addr: String,
    /// The plain leases this client holds, each until when, for
    /// [`Inner::top_up`]: a top-up is sent only while its token is
    /// here, and a release (or hand-over) takes the token out under the
    /// same lock as it sends, so on each master a top-up never comes
    /// after the release of its token.
    held: Mutex<HashMap<Token, Instant>>,
    /// This, for the top-ups' background tasks.
    me: std::sync::Weak<Inner>,
}

impl Deref for Redlock {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The masters' connections, shared with their background tasks.
struct Masters {
    members: Vec<Member>,
    timeouts: Timeouts,
    /// How long one master may take to answer, at most.
    node_timeout: Duration,
    /// Our id, published by releases.
    publisher: Token,
    limbo: Limbo,
    runtime: tokio::runtime::Handle,
    /// Stops the background tasks when the client goes.
    closed: CancellationToken,
}

/// One master and its one connection for operations.
struct Member {
    addr: String,
    client: redis::Client,
    link: Mutex<Link>,
}

/// A master's connection, and whether commands are sent to it.
///
/// Operations never wait for a master: while its connection is down, or
/// it is silent (it let an operation's deadline pass, and has not
/// answered a probe since), commands to it fail at once, unsent. A
/// command waiting for a reconnect could be sent after a later one that
/// waited too (they are woken in no set order), and a release overtaken
/// by a later acquire of the same token would delete the grant that
/// acquire counted; and a frozen master would cost every operation the
/// sending of commands it will not answer in time.
///
/// Releases are the exception: one not sent is owed, and owed releases
/// go first when the master is back (their acquire may have reached it
/// before it went away), before anything else is sent to it.
struct Link {
    /// None while the connection is being made again.
    conn: Option<MultiplexedConnection>,
    /// Which connection (a broken one is only replaced once).
    epoch: u64,
    silent: bool,
    owed: Vec<(Arc<LeaseKeys>, Token)>,
}

/// What an operation does on a master, for when it cannot be sent.
#[derive(Clone)]
enum Sending {
    /// Asks, and only the answer matters: not sent is failed.
    Ask,
    /// Gives back `token`'s hold: not sent is owed.
    Release(Arc<LeaseKeys>, Token),
}

impl Inner {
    /// Whether a command of an operation nobody awaits any more (the
    /// masters a release did not wait for once a majority answered, say)
    /// is still out, unanswered (see [`Limbo`]).
    pub(crate) fn out(&self) -> bool {
        self.masters.limbo.out()
    }
}

impl Masters {
    /// Member `i`'s connection and which one it is, if commands go to it
    /// now; otherwise a release is owed.
    fn link(&self, i: usize, send: &Sending) -> Option<(MultiplexedConnection, u64)> {
        let mut link = lock(&self.members[i].link);
        match (&link.conn, link.silent) {
            (Some(conn), false) => Some((conn.clone(), link.epoch)),
            _ => {
                if let Sending::Release(keys, token) = send
                    && link.owed.len() < OWED_MAX
                {
                    link.owed.push((Arc::clone(keys), *token));
                }
                None
            }
        }
    }

    /// Sends member `i`'s owed releases on `link`'s connection (under its
    /// lock: before anything else). Gives what is still out of them, to be
    /// kept ([`linger`](Self::linger)) once the lock is let go: keeping
    /// looks at older operations, and the end of one may take a member's
    /// lock (this one's too), while another task that holds that lock
    /// waits to keep its own.
    #[must_use]
    fn pay(&self, i: usize, link: &mut Link) -> Option<Box<dyn Lingering>> {
        let conn = link.conn.as_ref()?;
        if link.owed.is_empty() {
            return None;
        }
        let publisher = self.publisher;
        let pending = FuturesUnordered::new();
        for (keys, token) in link.owed.drain(..) {
            let fut: BoxFuture<'static, redis::RedisResult<Released>> =
                Box::pin(tokio::task::coop::unconstrained(release(
                    Master(conn.clone()),
                    keys,
                    token,
                    publisher,
                )));
            let mut e = Eager::new(i, link.epoch, fut);
            e.kick(&mut Context::from_waker(
                futures_util::task::noop_waker_ref(),
            ));
            pending.push(e);
        }
        Some(Box::new(pending))
    }

    /// Keeps what is still out of an operation (see [`Limbo`]); the
    /// masters that missed an older one's deadline go silent.
    fn linger(self: &Arc<Self>, answered: bool, deadline: Instant, rest: Box<dyn Lingering>) {
        for (i, epoch) in self.limbo.keep(answered, deadline, rest) {
            self.silent(i, epoch);
        }
    }

    /// Member `i`'s connection `epoch` broke: it is made again in the
    /// background (once, whoever notices first).
    fn broken(self: &Arc<Self>, i: usize, epoch: u64) {
        {
            let mut link = lock(&self.members[i].link);
            if link.epoch != epoch || link.conn.is_none() {
                return;
            }
            link.conn = None;
        }
        tracing::warn!(
            master = self.members[i].addr,
            "leasehold: lost the connection to a Redlock master; it counts as failed until it is made again"
        );
        self.reconnect_in_background(i, Duration::ZERO);
    }

    /// Member `i` let an operation's deadline pass on connection `epoch`:
    /// nothing is sent to it until it answers a probe (once, whoever
    /// notices first).
    fn silent(self: &Arc<Self>, i: usize, epoch: u64) {
        let conn = {
            let mut link = lock(&self.members[i].link);
            if link.epoch != epoch || link.silent {
                return;
            }
            let Some(conn) = link.conn.clone() else {
                return;
            };
            link.silent = true;
            conn
        };
        tracing::debug!(
            master = self.members[i].addr,
            "leasehold: a Redlock master missed the node timeout; it counts as failed until it answers a probe"
        );
        let masters = Arc::clone(self);
        self.runtime.spawn(async move {
            let mut conn = conn;
            let mut pause = PROBE_MIN;
            loop {
                tokio::select! {
                    _ = masters.closed.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                // Its answer comes after everything sent before it.
                let ping = redis::cmd("PING");
                let answered = tokio::time::timeout(
                    masters.node_timeout,
                    ping.query_async::<String>(&mut conn),
                )
                .await;
                let mut link = lock(&masters.members[i].link);
                if link.epoch != epoch || link.conn.is_none() {
                    // A new connection: the reconnect clears the silence.
                    return;
                }
                match answered {
                    Ok(Ok(_)) => {
                        let paid = masters.pay(i, &mut link);
                        link.silent = false;
                        drop(link);
                        if let Some(paid) = paid {
                            masters.linger(false, Instant::now(), paid);
                        }
                        return;
                    }
                    Ok(Err(e)) if e.is_unrecoverable_error() => {
                        drop(link);
                        masters.broken(i, epoch);
                        return;
                    }
                    _ => pause = (pause * 2).min(PROBE_MAX),
                }
            }
        });
    }

    fn reconnect_in_background(self: &Arc<Self>, i: usize, first: Duration) {
        let masters = Arc::clone(self);
        let closed = self.closed.clone();
        self.runtime.spawn(async move {
            let m = &masters.members[i];
            let mut backoff = first;
            loop {
                tokio::select! {
                    _ = closed.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                if let Ok(conn) = connect_link(&m.client, &m.addr, masters.timeouts).await {
                    let mut link = lock(&m.link);
                    link.conn = Some(conn);
                    link.epoch += 1;
                    link.silent = false;
                    let paid = masters.pay(i, &mut link);
                    drop(link);
                    if let Some(paid) = paid {
                        masters.linger(false, Instant::now(), paid);
                    }
                    tracing::info!(master = m.addr, "leasehold: Redlock master reached");
                    return;
                }
                backoff = (backoff * 2).clamp(RECONNECT_MIN, RECONNECT_MAX);
            }
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Redlock {
    fn drop(&mut self) {
        self.masters.closed.cancel();
    }
}

impl Redlock {
    /// The client's id, published by releases.
    pub(crate) fn publisher(&self) -> Token {
        self.masters.publisher
    }

    /// Connects to every master in `urls` at once. Fails when a URL is
    /// malformed or given twice, or when fewer than a majority answer
    /// within the connect timeout; the ones that did not are retried in
    /// the background meanwhile, and count as failed until they answer.
    /// Every master's connections (and its subscriber's) use the
    /// certificates of `tls`.
    pub(crate) async fn connect(
        urls: &[String],
        timeouts: Timeouts,
        tls: &Tls,
        node_timeout: Duration,
        publisher: Token,
    ) -> Result<Redlock> {
        if urls.is_empty() {
            return Err(Error::invalid(
                "Redlock masters",
                "none given: pass the URLs of the independent masters (3 or 5 are usual)",
            ));
        }
        if node_timeout.is_zero() {
            return Err(Error::invalid("node timeout", "must be more than zero"));
        }
        let mut clients: Vec<(redis::Client, String)> = Vec::with_capacity(urls.len());
        for url in urls {
            let addr = parse_url(url)?.addr().to_string();
            if clients.iter().any(|(_, a)| *a == addr) {
                return Err(Error::invalid(
                    "Redlock masters",
                    format!(
                        "{addr} is given twice: each master must be a different server, or one server would count twice towards the quorum"
                    ),
                ));
            }
            clients.push((open_with(url, tls)?, addr));
        }
        let connected = futures_util::future::join_all(
            clients
                .iter()
                .map(|(client, addr)| connect_link(client, addr, timeouts)),
        )
        .await;
        let mut failures = Vec::new();
        let members: Vec<Member> = urls
            .iter()
            .zip(clients)
            .zip(connected)
            .map(|((_, (client, addr)), conn)| Member {
                link: Mutex::new(Link {
                    conn: match conn {
                        Ok(conn) => Some(conn),
                        Err(cause) => {
                            failures.push(NodeFailure {
                                addr: addr.clone(),
                                cause,
                            });
                            None
                        }
                    },
                    epoch: 0,
                    silent: false,
                    owed: Vec::new(),
                }),
                client,
                addr,
            })
            .collect();
        let n = members.len();
        let up = n - failures.len();
        if up < majority(n) {
            return Err(ErrorKind::QuorumNotReached {
                doing: "connect",
                needed: majority(n),
                got: up,
                nodes: failures,
            }
            .into());
        }
        let addr = members
            .iter()
            .map(|m| m.addr.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let masters = Arc::new(Masters {
            members,
            timeouts,
            node_timeout,
            publisher,
            limbo: Limbo {
                kept: Mutex::default(),
                grace: node_timeout.max(Duration::from_millis(100)),
            },
            runtime: tokio::runtime::Handle::current(),
            closed: CancellationToken::new(),
        });
        for f in failures {
            tracing::warn!(
                master = f.addr,
                error = %f.cause,
                "leasehold: a Redlock master did not answer; it counts as failed until a background reconnect reaches it"
            );
        }
        for i in 0..n {
            if lock(&masters.members[i].link).conn.is_none() {
                masters.reconnect_in_background(i, RECONNECT_MIN);
            }
        }
        Ok(Redlock(Arc::new_cyclic(|me| Inner {
            masters,
            addr,
            held: Mutex::new(HashMap::new()),
            me: me.clone(),
        })))
    }
}

impl Inner {
    /// Every master, comma-separated.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// How many masters.
    pub(crate) fn len(&self) -> usize {
        self.masters.members.len()
    }

    /// The client for each master, for the subscribers.
    pub(crate) fn redis_clients(&self) -> Vec<redis::Client> {
        self.masters
            .members
            .iter()
            .map(|m| m.client.clone())
            .collect()
    }

    /// How long one command waits for its reply.
    pub(crate) fn response_timeout(&self) -> Duration {
        self.masters.timeouts.response
    }

    /// How many masters must agree for `keys`, or why it cannot be done here.
    pub(crate) fn quorum(&self, keys: &LeaseKeys) -> Result<usize> {
        let n = self.masters.members.len();
        match keys.family() {
            Family::Lease => Ok(majority(n)),
            Family::Permit {
                limit, fair: None, ..
            } => Ok(permit_quorum(n, *limit)),
            Family::Fair(_) | Family::Permit { fair: Some(_), .. } => Err(Error::unsupported(
                "a fair lease or semaphore",
                REDLOCK,
                "its queue of waiters lives on one server, and a queue on each master would order waiters differently on each; use the plain lease or semaphore (waiters are still woken by releases), or a single server or Redis Cluster for fair order",
            )),
            Family::Read(_) | Family::Write(_) => Err(Error::unsupported(
                "a read-write lock",
                REDLOCK,
                "readers and a writer counted on independent masters could both reach a quorum; use a plain lease, or a single server or Redis Cluster for read-write locks",
            )),
        }
    }

    /// The per-node timeout for an operation with `ttl`: small against it.
    fn within(&self, ttl: Duration) -> Duration {
        self.masters
            .node_timeout
            .min(ttl / 10)
            .max(Duration::from_millis(1))
    }

    /// Runs `op` on the masters `on` picks, all at once, each within
    /// `within`; answers come as they arrive (see [`Replies`]). Every
    /// command is on its master's connection when this returns.
    fn on_every<T, Fut>(
        &self,
        doing: &'static str,
        sending: &Sending,
        within: Duration,
        on: impl Fn(usize) -> bool,
        op: impl Fn(Master) -> Fut,
    ) -> Replies<T>
    where
        T: Send + Unpin + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
    {
        let mut pending = FuturesUnordered::new();
        for i in 0..self.masters.members.len() {
            if !on(i) {
                continue;
            }
            let mut epoch = 0;
            let fut: BoxFuture<'static, redis::RedisResult<T>> = match self.masters.link(i, sending)
            {
                Some((conn, at)) => {
                    epoch = at;
                    let call = op(Master(conn));
                    let masters = Arc::clone(&self.masters);
                    // Outside tokio's cooperative budget: a task whose
                    // budget ran out would find the connection's queue
                    // "not ready" at the first poll, and the command
                    // would be queued later, after a later one.
                    Box::pin(tokio::task::coop::unconstrained(async move {
                        let r = call.await;
                        if let Err(e) = &r
                            && e.is_unrecoverable_error()
                        {
                            masters.broken(i, epoch);
                        }
                        r
                    }))
                }
                None => Box::pin(std::future::ready(Err(std::io::Error::from(
                    std::io::ErrorKind::NotConnected,
                )
                .into()))),
            };
            pending.push(Eager::new(i, epoch, fut));
        }
        // Polled once now: each command is queued on its connection in
        // the order the operations were made, whether or not its answer
        // is awaited.
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        for f in pending.iter_mut() {
            f.kick(&mut cx);
        }
        Replies {
            pending,
            timed_out: Vec::new(),
            answered: false,
            deadline: Instant::now() + within,
            timer: None,
            doing,
            masters: Arc::clone(&self.masters),
        }
    }

    /// Takes `keys` for `token` on a quorum of masters.
    ///
    /// # Cancel safety
    ///
    /// Dropped after the scripts were sent, the token may hold the lease
    /// on some masters: the caller releases it (see `Claim`), on all.
    pub(crate) async fn acquire(
        &self,
        keys: &Arc<LeaseKeys>,
        token: Token,
        ttl: Duration,
    ) -> Result<Acquire> {
        let quorum = self.quorum(keys)?;
        let n = self.masters.members.len();
        let within = self.within(ttl);
        let ttl_ms = ttl_ms(ttl);
        let sent = Instant::now();
        let mut granted: Vec<(usize, u64)> = Vec::new();
        let mut answered = vec![false; n];
        let mut busy: Vec<(usize, i64)> = Vec::new();
        let mut mismatch = None;
        let mut failures = Vec::new();
        let mut replies = None;
        // Round 0 asks every master. While some granted but too few, and
        // the rest said "held": a release is likely under way (a waiter
        // woken by the first master's copy of it, whose other copies are
        // dropped as duplicates), or another contender split the vote. So
        // the grants are kept and the busy masters asked again, a little
        // later, a few times, before giving up and releasing.
        for round in 0..=RETRY_BUSY {
            if round > 0 {
                if granted.is_empty() || granted.len() >= quorum || busy.is_empty() {
                    break;
                }
                let reachable = n - failures.len() - usize::from(mismatch.is_some());
                if reachable < quorum || mismatch.is_some() {
                    break;
                }
                tokio::time::sleep(RETRY_PAUSE * round).await;
            }
            let ask: Vec<usize> = if round == 0 {
                (0..n).collect()
            } else {
                busy.drain(..).map(|(i, _)| i).collect()
            };
            let round_replies =
                replies.insert(self.acquire_on(keys, token, ttl_ms, within, |i| ask.contains(&i)));
            while let Some((i, answer)) = round_replies.next().await {
                answered[i] = answer.is_ok();
                match answer {
                    Ok(Acquired::Yes(fence)) => granted.push((i, fence)),
                    Ok(Acquired::No(pttl)) => busy.push((i, pttl)),
                    Ok(Acquired::LimitMismatch(theirs)) => mismatch = Some(theirs),
                    Err(cause) => failures.push(self.failure(i, cause)),
                }
                let refused = busy.len() + failures.len() + usize::from(mismatch.is_some());
                if granted.len() >= quorum || n - refused < quorum {
                    break;
                }
            }
            // The masters still out finish in the background.
        }
        if granted.len() >= quorum {
            let valid_until = sent + ttl.saturating_sub(drift(ttl));
            let fence = granted.iter().map(|&(_, f)| f).max().unwrap_or(0);
            match self.raise(keys, fence, &granted, within).await {
                Ok(()) if Instant::now() < valid_until => {
                    if matches!(keys.family(), Family::Lease) {
                        self.hold(token, sent + ttl);
                        let refused = busy.iter().map(|&(i, _)| i).collect();
                        self.top_up(keys, token, ttl, refused, replies, |a| {
                            matches!(a, Acquired::No(_))
                        });
                    }
                    return Ok(Acquire::Held(Held {
                        fence,
                        sent,
                        valid_until,
                    }));
                }
                Ok(()) => {}
                Err(more) => failures.extend(more),
            }
        }
        // Not held: take back what was granted, on every master (the
        // silent ones too: their grant may come late, and the release
        // follows it on the same connection), before the caller tries
        // again with the same token; waiting only for the masters that
        // answered, as the silent ones would cost their timeout.
        self.release_everywhere(keys, token, within, &answered)
            .await;
        if let Some(theirs) = mismatch {
            return Ok(Acquire::LimitMismatch(theirs));
        }
        if !busy.is_empty() && n - failures.len() >= quorum {
            // Held elsewhere, or a split vote: the holder's release (or
            // the other contenders' giving back) wakes the waiters.
            let pttl = busy
                .iter()
                .map(|&(_, p)| p)
                .filter(|&p| p >= 0)
                .min()
                .unwrap_or(-1);
            return Ok(Acquire::Busy { pttl });
        }
        Err(ErrorKind::QuorumNotReached {
            doing: "acquire",
            needed: quorum,
            got: granted.len(),
            nodes: failures,
        }
        .into())
    }

    /// Runs the acquire script for `token` on the masters `on` picks.
    fn acquire_on(
        &self,
        keys: &Arc<LeaseKeys>,
        token: Token,
        ttl_ms: u64,
        within: Duration,
        on: impl Fn(usize) -> bool,
    ) -> Replies<Acquired> {
        self.on_every("the acquire script", &Sending::Ask, within, on, {
            let keys = Arc::clone(keys);
            move |mut conn| {
                let keys = Arc::clone(&keys);
                async move {
                    scripts::acquire(
                        &mut conn,
                        &keys,
                        token.as_bytes(),
                        ttl_ms,
                        &WaitInfo::default(),
                    )
                    .await
                }
            }
        })
    }

    /// `token` holds a plain lease through this client, until `until` at
    /// the latest (when its keys expire if not extended).
    fn hold(&self, token: Token, until: Instant) {
        let mut held = lock(&self.held);
        if held.len() >= 64 && held.len().is_power_of_two() {
            // Leases whose guards were detached are never released here:
            // dropped once expired, now and then (at each power of two).
            let now = Instant::now();
            held.retain(|_, &mut u| u > now);
        }
        held.insert(token, until);
    }

    /// Whether `token` still holds its lease through this client (not
    /// released meanwhile); if so, until `until` now.
    fn still_held(&self, token: Token, until: Instant) -> bool {
        match lock(&self.held).get_mut(&token) {
            Some(u) => {
                *u = until;
                true
            }
            None => false,
        }
    }

    /// Asks the masters that refused `token`'s held lease (`refused`, and
    /// those of `rest`'s late answers that `refusal` says are) to take it,
    /// a few times, in the background, for as long as it is held.
    ///
    /// A lease held on a bare quorum is one master away from being lost:
    /// a master restarting empty or whose clock jumps would let another
    /// quorum in. The masters that were busy at the acquire were mostly
    /// still carrying out the previous holder's release, and the ones
    /// whose copy expired are free again; taking them keeps the lease
    /// on as many masters as will have it. Safe as any acquire: a master
    /// grants it only where nobody holds it, and the guard's validity
    /// still comes from the quorum of its acquire or renewal alone. The
    /// release of the token can never be overtaken by a top-up (see
    /// [`Inner::held`]).
    fn top_up<T: Send + Unpin + 'static>(
        &self,
        keys: &Arc<LeaseKeys>,
        token: Token,
        ttl: Duration,
        mut refused: Vec<usize>,
        rest: Option<Replies<T>>,
        refusal: fn(&T) -> bool,
    ) {
        let Some(me) = self.me.upgrade() else { return };
        if refused.is_empty() && rest.as_ref().is_none_or(|r| r.pending.is_empty()) {
            return;
        }
        let keys = Arc::clone(keys);
        let within = self.within(ttl);
        self.masters.runtime.spawn(async move {
            if let Some(mut rest) = rest {
                while let Some((i, answer)) = rest.next().await {
                    if answer.as_ref().is_ok_and(refusal) {
                        refused.push(i);
                    }
                }
            }
            for round in 0..TOP_UP_ROUNDS {
                if refused.is_empty() {
                    return;
                }
                if round > 0 {
                    tokio::time::sleep(TOP_UP_PAUSE * (1 << (round - 1))).await;
                }
                let mut replies = {
                    let held = lock(&me.held);
                    if held.get(&token).is_none_or(|&u| u <= Instant::now()) {
                        return;
                    }
                    me.acquire_on(&keys, token, ttl_ms(ttl), within, |i| refused.contains(&i))
                };
                refused.clear();
                while let Some((i, answer)) = replies.next().await {
                    if matches!(answer, Ok(Acquired::No(_))) {
                        refused.push(i);
                    }
                }
            }
        });
    }

    /// Makes sure a majority of masters has `keys`' fencing counter at
    /// `fence` or above: the granting masters that drew `fence` have, the
    /// rest are raised.
    async fn raise(
        &self,
        keys: &Arc<LeaseKeys>,
        fence: u64,
        granted: &[(usize, u64)],
        within: Duration,
    ) -> std::result::Result<(), Vec<NodeFailure>> {
        let needed = majority(self.masters.members.len());
        let at: Vec<usize> = granted
            .iter()
            .filter(|&&(_, f)| f == fence)
            .map(|&(i, _)| i)
            .collect();
        let mut have = at.len();
        if have >= needed {
            return Ok(());
        }
        let mut replies = self.on_every(
            "raising the fence",
            &Sending::Ask,
            within,
            |i| !at.contains(&i),
            {
                let keys = Arc::clone(keys);
                move |mut conn| {
                    let keys = Arc::clone(&keys);
                    async move { scripts::raise_fence(&mut conn, &keys, fence).await }
                }
            },
        );
        let mut failures = Vec::new();
        while let Some((i, answer)) = replies.next().await {
            match answer {
                Ok(()) => have += 1,
                Err(cause) => failures.push(self.failure(i, cause)),
            }
            if have >= needed {
                return Ok(());
            }
        }
        Err(failures)
    }

    /// Releases `token` on every master, waiting (at most `within`) for
    /// those marked in `awaited`; the others finish in the background.
    async fn release_everywhere(
        &self,
        keys: &Arc<LeaseKeys>,
        token: Token,
        within: Duration,
        awaited: &[bool],
    ) {
        let mut replies = self.release_on_all(keys, token, within);
        let mut left = awaited.iter().filter(|&&a| a).count();
        while left > 0 {
            match replies.next().await {
                Some((i, _)) if awaited[i] => left -= 1,
                Some(_) => {}
                None => break,
            }
        }
    }

    fn release_on_all(
        &self,
        keys: &Arc<LeaseKeys>,
        token: Token,
        within: Duration,
    ) -> Replies<Released> {
        let publisher = self.masters.publisher;
        self.giving_up(keys, token, within, {
            let keys = Arc::clone(keys);
            move |conn| release(conn, Arc::clone(&keys), token, publisher)
        })
    }

    /// Runs `op`, which gives up `token`'s hold of `keys`, on every
    /// master. Out of `held`, and sent, under one lock: a top-up of
    /// `token` is on each master's connection before it, or never sent.
    fn giving_up<T, Fut>(
        &self,
        keys: &Arc<LeaseKeys>,
        token: Token,
        within: Duration,
        op: impl Fn(Master) -> Fut,
    ) -> Replies<T>
    where
        T: Send + Unpin + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
    {
        let mut held = lock(&self.held);
        held.remove(&token);
        self.on_every(
            "the release script",
            &Sending::Release(Arc::clone(keys), token),
            within,
            |_| true,
            op,
        )
    }

    /// Resets `token`'s lease to `ttl` where it holds it: held while a
    /// quorum of masters extended it.
    ///
    /// # Cancel safety
    ///
    /// If dropped after the scripts were sent, the extensions may happen.
    pub(crate) async fn extend(
        &self,
        keys: &Arc<LeaseKeys>,
        token: &Token,
        ttl: Duration,
    ) -> Result<Extended> {
        let quorum = self.quorum(keys)?;
        let n = self.masters.members.len();
        let ttl_ms = ttl_ms(ttl);
        let token = *token;
        let sent = Instant::now();
        let mut replies = self.on_every(
            "the extend script",
            &Sending::Ask,
            self.within(ttl),
            |_| true,
            {
                let keys = Arc::clone(keys);
                move |mut conn| {
                    let keys = Arc::clone(&keys);
                    async move { scripts::extend(&mut conn, &keys, token.as_bytes(), ttl_ms).await }
                }
            },
        );
        let mut extended = 0;
        // The masters where the token holds it no more.
        let mut refused = Vec::new();
        let mut failures = Vec::new();
        while let Some((i, answer)) = replies.next().await {
            match answer {
                Ok(true) => extended += 1,
                Ok(false) => refused.push(i),
                Err(cause) => failures.push(self.failure(i, cause)),
            }
            if extended >= quorum {
                if self.still_held(token, sent + ttl) {
                    self.top_up(keys, token, ttl, refused, Some(replies), |&extended| {
                        !extended
                    });
                }
                return Ok(Extended::Held {
                    sent,
                    valid_until: sent + ttl.saturating_sub(drift(ttl)),
                });
            }
            if n - refused.len() < quorum {
                // Too few masters still have it to ever make a quorum.
                lock(&self.held).remove(&token);
                return Ok(Extended::Gone);
            }
        }
        Err(ErrorKind::QuorumNotReached {
            doing: "extend",
            needed: quorum,
            got: extended,
            nodes: failures,
        }
        .into())
    }

    /// Releases `token`'s hold of `keys` on every master (each publishes
    /// on its wake channel). Answers once a quorum released, or once every
    /// master answered.
    ///
    /// # Cancel safety
    ///
    /// If dropped after the scripts were sent, the releases still happen.
    pub(crate) async fn release(&self, keys: &Arc<LeaseKeys>, token: Token) -> Result<Released> {
        let quorum = self.quorum(keys)?;
        let n = self.masters.members.len();
        let mut replies = self.release_on_all(keys, token, self.masters.node_timeout);
        let (mut released, mut not_held) = (0, 0);
        let mut failures = Vec::new();
        while let Some((i, answer)) = replies.next().await {
            match answer {
                Ok(r) if r.released() => released += 1,
                Ok(_) => not_held += 1,
                Err(cause) => failures.push(self.failure(i, cause)),
            }
            if released >= quorum {
                return Ok(Released::Yes);
            }
            if n - not_held < quorum {
                break;
            }
        }
        if failures.is_empty() || n - not_held < quorum {
            // It was not held by a quorum: whatever some masters had is
            // gone now, and their waiters were told.
            return Ok(Released::NotHeld);
        }
        Err(ErrorKind::QuorumNotReached {
            doing: "release",
            needed: quorum,
            got: released,
            nodes: failures,
        }
        .into())
    }

    /// Hands `token`'s plain lease to `next` (a local waiter's token) on
    /// every master at once, each master by the same script as on one
    /// server: it gives the lease over where `token` holds it and no more
    /// than `tolerated` other clients listen, and frees it (publishing
    /// `freed_payload`) where others listen.
    ///
    /// Safe as a release followed by `next`'s acquire: on each master the
    /// lease goes from one token to the other in one script, never free
    /// in between, so no master is granted to anybody else meanwhile, and
    /// `next` holds exactly the masters that handed over. It holds the
    /// lease when a quorum did ([`HandoverReply::To`], its fence raised on
    /// a majority as an acquire's); otherwise the lease was freed where it
    /// was not handed, and `next`'s own attempt takes the masters it
    /// holds already (the acquire script refreshes a key holding the
    /// token) and the rest, or its giving up releases them.
    pub(crate) async fn handover(
        &self,
        keys: &Arc<LeaseKeys>,
        token: &Token,
        (next, next_ttl, tolerated): (Token, Duration, u32),
        freed_payload: &[u8],
    ) -> Result<HandoverReply> {
        let quorum = self.quorum(keys)?;
        let n = self.masters.members.len();
        let within = self.within(next_ttl);
        let token = *token;
        let freed_payload: Arc<[u8]> = freed_payload.into();
        let mut replies = self.giving_up(keys, token, within, {
            let keys = Arc::clone(keys);
            move |mut conn| {
                let keys = Arc::clone(&keys);
                let freed = Arc::clone(&freed_payload);
                async move {
                    let next = scripts::Next {
                        token: next.as_bytes(),
                        ttl_ms: ttl_ms(next_ttl),
                        tolerated,
                    };
                    scripts::handover(
                        &mut conn,
                        Pubsub::Classic,
                        &keys,
                        token.as_bytes(),
                        next,
                        &freed,
                    )
                    .await
                }
            }
        });
        let mut to: Vec<(usize, u64)> = Vec::new();
        let (mut freed, mut not_held) = (0, 0);
        let mut failures = Vec::new();
        while let Some((i, answer)) = replies.next().await {
            match answer {
                Ok(HandoverReply::To(fence)) => to.push((i, fence)),
                Ok(HandoverReply::Freed) => freed += 1,
                Ok(HandoverReply::NotHeld) => not_held += 1,
                Err(cause) => failures.push(self.failure(i, cause)),
            }
            // Decided: `next` holds a quorum; or it cannot any more and
            // the lease was given up on a quorum; or `token` held no quorum.
            let to_impossible = n - freed - not_held - failures.len() < quorum;
            if to.len() >= quorum
                || (to_impossible && to.len() + freed >= quorum)
                || n - not_held < quorum
            {
                break;
            }
        }
        drop(replies);
        if to.len() >= quorum {
            let fence = to.iter().map(|&(_, f)| f).max().unwrap_or(0);
            if self.raise(keys, fence, &to, within).await.is_ok() {
                self.hold(next, Instant::now() + next_ttl);
                return Ok(HandoverReply::To(fence));
            }
            // Held by `next` on a quorum, but its fence is not on a
            // majority: not a grant. Its own attempt takes it again.
            return Ok(HandoverReply::Freed);
        }
        if to.len() + freed >= quorum {
            return Ok(HandoverReply::Freed);
        }
        if n - not_held < quorum {
            return Ok(HandoverReply::NotHeld);
        }
        Err(ErrorKind::QuorumNotReached {
            doing: "release",
            needed: quorum,
            got: to.len() + freed,
            nodes: failures,
        }
        .into())
    }

    /// Who holds a plain lease on most masters, for messages: a prefix (8
    /// characters) of its token.
    pub(crate) async fn holder(&self, keys: &LeaseKeys) -> Option<String> {
        let name: Arc<[u8]> = keys.name().into();
        let mut replies = self.on_every(
            "reading the holder",
            &Sending::Ask,
            self.masters.node_timeout,
            |_| true,
            move |mut conn| {
                let name = Arc::clone(&name);
                async move {
                    redis::cmd("GET")
                        .arg(&*name)
                        .query_async::<Option<String>>(&mut conn)
                        .await
                }
            },
        );
        let mut seen: Vec<(String, usize)> = Vec::new();
        while let Some((_, answer)) = replies.next().await {
            if let Ok(Some(t)) = answer {
                match seen.iter_mut().find(|(s, _)| *s == t) {
                    Some((_, c)) => *c += 1,
                    None => seen.push((t, 1)),
                }
            }
        }
        seen.into_iter()
            .max_by_key(|(_, c)| *c)
            .map(|(t, _)| t.chars().take(8).collect())
    }

    /// Every key matching `pattern` on any master, by SCAN; each once.
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>> {
        let mut all = std::collections::BTreeSet::new();
        let mut failures = Vec::new();
        for (i, m) in self.masters.members.iter().enumerate() {
            let scanned = match self.masters.link(i, &Sending::Ask) {
                Some((mut conn, _)) => scan_keys(&mut conn, pattern).await,
                None => Err(std::io::Error::from(std::io::ErrorKind::NotConnected).into()),
            };
            match scanned {
                Ok(keys) => all.extend(keys),
                Err(e) => failures.push(NodeFailure {
                    addr: m.addr.clone(),
                    cause: Error::redis("scanning for leases", &m.addr, e),
                }),
            }
        }
        let n = self.masters.members.len();
        if n - failures.len() < majority(n) {
            return Err(ErrorKind::QuorumNotReached {
                doing: "scan",
                needed: majority(n),
                got: n - failures.len(),
                nodes: failures,
            }
            .into());
        }
        Ok(all.into_iter().collect())
    }

    /// Runs `pipe` on every master at once (each within the response
    /// timeout): each master's replies, `None` where it failed.
    pub(crate) async fn pipeline_on_each(
        &self,
        pipe: redis::Pipeline,
        doing: &'static str,
    ) -> Vec<Option<Vec<redis::Value>>> {
        let pipe = Arc::new(pipe);
        let mut replies = self.on_every(
            doing,
            &Sending::Ask,
            self.masters.timeouts.response,
            |_| true,
            move |mut conn| {
                let pipe = Arc::clone(&pipe);
                async move { pipe.query_async::<Vec<redis::Value>>(&mut conn).await }
            },
        );
        let mut out = vec![None; self.masters.members.len()];
        while let Some((i, answer)) = replies.next().await {
            out[i] = answer.ok();
        }
        out
    }

    fn failure(&self, i: usize, cause: Error) -> NodeFailure {
        NodeFailure {
            addr: self.masters.members[i].addr.clone(),
            cause,
        }
    }
}

/// Answers of an operation on many masters, as they come, each master's
/// within the operation's per-node timeout. Dropped with answers still
/// out, it leaves them in [`Limbo`]: every command is on its master's
/// connection from the moment it was made (see [`Inner::on_every`]), so
/// it is still carried out, in order, and a master that is slow or frozen
/// costs neither a wait nor a task nor a timer.
struct Replies<T: Send + Unpin + 'static> {
    pending: FuturesUnordered<Eager<T>>,
    /// The masters that missed the deadline, still to be told.
    timed_out: Vec<usize>,
    /// Whether any master answered.
    answered: bool,
    deadline: Instant,
    /// One timer for the whole operation, made when first waited on.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    doing: &'static str,
    masters: Arc<Masters>,
}

impl<T: Send + Unpin + 'static> Replies<T> {
    async fn next(&mut self) -> Option<(usize, Result<T>)> {
        if self.timed_out.is_empty() && !self.pending.is_empty() {
            let answer = std::future::poll_fn(|cx| {
                if let Poll::Ready(answer) = self.pending.poll_next_unpin(cx) {
                    return Poll::Ready(answer);
                }
                let deadline = self.deadline;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            if let Some((i, answer)) = answer {
                self.answered = true;
                return Some((i, answer.map_err(|e| self.error(i, e))));
            }
            // The deadline: every master still out missed it, and is
            // silent until it answers a probe. (Unless none answered: the
            // fault is more likely ours, a stalled process or network,
            // and the masters are not to be shunned for it.)
            self.timed_out = self.pending.iter().map(|e| e.i).collect();
            if self.answered {
                for e in self.pending.iter() {
                    self.masters.silent(e.i, e.epoch);
                }
            }
            let deadline = self.deadline;
            self.masters
                .linger(false, deadline, Box::new(std::mem::take(&mut self.pending)));
        }
        let i = self.timed_out.pop()?;
        let e = std::io::Error::from(std::io::ErrorKind::TimedOut).into();
        Some((i, Err(self.error(i, e))))
    }

    fn error(&self, i: usize, e: redis::RedisError) -> Error {
        Error::redis(self.doing, &self.masters.members[i].addr, e)
    }
}

impl<T: Send + Unpin + 'static> Drop for Replies<T> {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let (answered, deadline) = (self.answered, self.deadline);
            self.masters.linger(
                answered,
                deadline,
                Box::new(std::mem::take(&mut self.pending)),
            );
        }
    }
}

/// Operations whose answers nobody awaits any more, kept unpolled for a
/// while. A command that its connection has not written yet is skipped
/// once the receiver of its reply is gone (redis-rs sheds such load): a
/// release dropped that way would leave its key behind. So each is kept
/// until its connection has surely taken it: a per-node timeout or more.
/// Then the masters that have still not answered missed their deadline,
/// and are silent (see [`Link`]).
struct Limbo {
    kept: Mutex<Kept>,
    grace: Duration,
}

#[derive(Default)]
struct Kept {
    ops: std::collections::VecDeque<Lingered>,
    /// How many of the first have had their deadline checked.
    checked: usize,
}

struct Lingered {
    at: Instant,
    deadline: Instant,
    /// Whether any master answered the operation (else the fault is more
    /// likely ours than the masters').
    answered: bool,
    rest: Box<dyn Lingering>,
}

/// The answers of an operation still out.
trait Lingering: Send {
    /// Takes the answers that came; the masters (and their connections)
    /// still out.
    fn still_out(&mut self) -> Vec<(usize, u64)>;
}

impl<T: Send + Unpin + 'static> Lingering for FuturesUnordered<Eager<T>> {
    fn still_out(&mut self) -> Vec<(usize, u64)> {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        while let Poll::Ready(Some(_)) = self.poll_next_unpin(&mut cx) {}
        self.iter().map(|e| (e.i, e.epoch)).collect()
    }
}

impl Limbo {
    /// Whether a command kept here is still unanswered.
    fn out(&self) -> bool {
        let mut kept = lock(&self.kept);
        kept.ops
            .iter_mut()
            .any(|op| !op.rest.still_out().is_empty())
    }

    /// Keeps `rest`; gives the masters that missed the deadline of the
    /// operations kept before, as their deadlines pass.
    fn keep(
        &self,
        answered: bool,
        deadline: Instant,
        rest: Box<dyn Lingering>,
    ) -> Vec<(usize, u64)> {
        let now = Instant::now();
        let mut missed = Vec::new();
        let mut kept = lock(&self.kept);
        let Kept { ops, checked } = &mut *kept;
        while let Some(op) = ops.get_mut(*checked)
            && op.deadline <= now
        {
            if op.answered {
                missed.extend(op.rest.still_out());
            }
            *checked += 1;
        }
        while ops.front().is_some_and(|op| now - op.at > self.grace) {
            ops.pop_front();
            *checked = checked.saturating_sub(1);
        }
        ops.push_back(Lingered {
            at: now,
            deadline,
            answered,
            rest,
        });
        drop(kept);
        missed.sort_unstable();
        missed.dedup();
        missed
    }
}

/// One master's part of an operation, which can be polled once before
/// anybody awaits it ([`Eager::kick`]), keeping its answer if it came
/// at once.
struct Eager<T> {
    /// Which master, on which of its connections.
    i: usize,
    epoch: u64,
    fut: BoxFuture<'static, redis::RedisResult<T>>,
    done: Option<redis::RedisResult<T>>,
}

impl<T: Unpin> Eager<T> {
    fn new(i: usize, epoch: u64, fut: BoxFuture<'static, redis::RedisResult<T>>) -> Self {
        Eager {
            i,
            epoch,
            fut,
            done: None,
        }
    }

    fn kick(&mut self, cx: &mut Context<'_>) {
        if self.done.is_none()
            && let Poll::Ready(out) = self.fut.as_mut().poll(cx)
        {
            self.done = Some(out);
        }
    }
}

impl<T: Unpin> Future for Eager<T> {
    type Output = (usize, redis::RedisResult<T>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let i = self.i;
        match self.done.take() {
            Some(out) => Poll::Ready((i, out)),
            None => self.fut.as_mut().poll(cx).map(|out| (i, out)),
        }
    }
}

/// A master's connection as Redlock's operations use it: every command
/// goes down the master's one connection, except EVAL, which our scripts
/// send after an EVALSHA that found no script (the master restarted
/// empty). An EVAL would be a second command that a later one, sent
/// meanwhile, could overtake; so it is not sent: the script is loaded
/// again and the operation fails on this master alone, with `TRYAGAIN`.
#[derive(Clone)]
pub(crate) struct Master(MultiplexedConnection);

impl ConnectionLike for Master {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        let mut args = cmd.args_iter();
        let eval =
            matches!(args.next(), Some(redis::Arg::Simple(b)) if b.eq_ignore_ascii_case(b"EVAL"));
        if !eval {
            return self.0.req_packed_command(cmd);
        }
        let src = match args.next() {
            Some(redis::Arg::Simple(b)) => b.to_vec(),
            _ => Vec::new(),
        };
        let mut conn = self.0.clone();
        Box::pin(async move {
            let loaded = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(src)
                .query_async::<String>(&mut conn)
                .await;
            Err(redis::make_extension_error(
                "TRYAGAIN".into(),
                Some(match loaded {
                    Ok(_) => {
                        "the script was not loaded on this master (restarted empty?); it is now"
                            .into()
                    }
                    Err(e) => format!(
                        "the script was not loaded on this master, and loading it failed: {e}"
                    ),
                }),
            ))
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.0.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// Connects to one master and loads the scripts Redlock runs there.
async fn connect_link(
    client: &redis::Client,
    addr: &str,
    timeouts: Timeouts,
) -> Result<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response))
        .set_pipeline_buffer_size(QUEUE);
    let mut conn = connect_and_probe(
        client.get_multiplexed_async_connection_with_config(&config),
        "the connection",
        addr,
        timeouts.connect,
    )
    .await?;
    let mut load = redis::pipe();
    for script in scripts::redlock_scripts() {
        load.cmd("SCRIPT").arg("LOAD").arg(script.src()).ignore();
    }
    load.exec_async(&mut conn)
        .await
        .map_err(|e| Error::redis("loading the scripts", addr, e))?;
    Ok(conn)
}

/// The release script for `token` on one master (publishing `publisher`).
async fn release(
    mut conn: Master,
    keys: Arc<LeaseKeys>,
    token: Token,
    publisher: Token,
) -> redis::RedisResult<Released> {
    scripts::release(
        &mut conn,
        Pubsub::Classic,
        &keys,
        token.as_bytes(),
        publisher.as_bytes(),
    )
    .await
}

/// Why data commands (your scripts, transactions, single-flight's cache,
/// WATCH) are refused over independent masters.
pub(crate) fn no_data_commands() -> Error {
    Error::unsupported(
        "a data command (your script, a transaction, single-flight's cache)",
        REDLOCK,
        "the masters are independent, so none of them is where your data lives; keep the data in its own store and pass the guard's fence along with each write",
    )
}

/// Why [`ClientBuilder::replicas`](crate::ClientBuilder::replicas) is
/// refused over Redlock.
pub(crate) fn no_replicas() -> Error {
    Error::unsupported(
        "waiting for replicas (`replicas`)",
        REDLOCK,
        "the masters are independent and a lease lives on a majority of them, which is what survives the loss of one; WAIT would count one master's replicas only",
    )
}

/// A majority of `n` masters.
pub(crate) fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Masters that must admit a permit of a semaphore of `limit` permits so
/// that no more than `limit` hold one: `⌊n·limit/(limit+1)⌋ + 1` (see the
/// module's docs).
pub(crate) fn permit_quorum(n: usize, limit: u32) -> usize {
    let k = u128::from(limit);
    ((n as u128 * k / (k + 1)) as usize + 1).min(n)
}

#[cfg(test)]
mod tests {
    use super::{majority, permit_quorum};

    #[test]
    fn quorums() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(5), 3);
        assert_eq!(majority(4), 3);
        // K = 1 is a lease: a majority.
        for n in 1..10 {
            assert_eq!(permit_quorum(n, 1), majority(n), "n = {n}");
        }
        assert_eq!(permit_quorum(5, 2), 4);
        assert_eq!(permit_quorum(5, 3), 4);
        assert_eq!(permit_quorum(5, 4), 5);
        assert_eq!(permit_quorum(5, u32::MAX), 5);
        assert_eq!(permit_quorum(3, 2), 3);
    }

    /// The counting argument behind `permit_quorum` on small deployments:
    /// K + 1 holders with a quorum each would need more admissions than
    /// N masters admitting K each can give; and the quorum is the least
    /// that does.
    #[test]
    fn no_more_than_k_permit_holders_reach_the_permit_quorum() {
        for n in 1..=5usize {
            for k in 1..=4u32 {
                let q = permit_quorum(n, k);
                // K+1 holders, each admitted by q masters: at least
                // (K+1)·q admissions, more than N·K masters can give.
                assert!((k as usize + 1) * q > n * k as usize, "n {n} k {k} q {q}");
                // And one fewer master would not do (the bound is tight).
                if q > 1 {
                    assert!((k as usize + 1) * (q - 1) <= n * k as usize);
                }
            }
        }
    }

    /// A master's commands reach it in the order they were made, even when
    /// its connection broke just before: with a connection that reconnects by
    /// itself, commands that wait for the reconnect are sent in the order
    /// their tasks wake, and a release sent after an acquire could land
    /// before it (deleting the grant that acquire counted).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_masters_commands_keep_their_order_across_a_broken_connection() {
        use super::Redlock;
        use crate::backend::node::Timeouts;
        use std::time::Duration;
        let servers = tokio::task::spawn_blocking(|| testkit::RedisServer::start_many(3))
            .await
            .unwrap()
            .expect("start redis-server (apt-get install redis-server)");
        let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
        let second = Duration::from_secs(2);
        let timeouts = Timeouts {
            connect: second,
            response: second,
        };
        let redlock = Redlock::connect(
            &urls,
            timeouts,
            &Default::default(),
            second,
            crate::Token::random(),
        )
        .await
        .unwrap();
        let mut admin = redis::Client::open(urls[0].as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let set = |v: String| {
            move |mut c: super::Master| {
                let v = v.clone();
                async move {
                    redis::cmd("SET")
                        .arg("k")
                        .arg(v)
                        .query_async::<()>(&mut c)
                        .await
                }
            }
        };
        let (mut reversed, mut both) = (0, 0);
        for round in 0..100 {
            redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"])
                .exec_async(&mut admin)
                .await
                .unwrap();
            // A command finds the connection broken (and it is being made
            // again), then two more are made, one after the other.
            let mut probe = redlock.on_every(
                "probe",
                &super::Sending::Ask,
                second,
                |i| i == 0,
                |mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await },
            );
            let _ = probe.next().await;
            let mut a = redlock.on_every(
                "a",
                &super::Sending::Ask,
                second,
                |i| i == 0,
                set(format!("a{round}")),
            );
            let mut b = redlock.on_every(
                "b",
                &super::Sending::Ask,
                second,
                |i| i == 0,
                set(format!("b{round}")),
            );
            // Each awaited by a task of its own, as a release left to the
            // background and the next acquire are.
            let a = tokio::spawn(async move { a.next().await.unwrap().1.is_ok() });
            let b = tokio::spawn(async move { b.next().await.unwrap().1.is_ok() });
            let (a_ok, b_ok) = (a.await.unwrap(), b.await.unwrap());
            let now: Option<String> = redis::cmd("GET")
                .arg("k")
                .query_async(&mut admin)
                .await
                .unwrap();
            if a_ok && b_ok {
                both += 1;
            }
            if b_ok && now == Some(format!("a{round}")) {
                reversed += 1;
            }
            // Until the master is reached again.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let mut ping = redlock.on_every(
                    "ping",
                    &super::Sending::Ask,
                    second,
                    |i| i == 0,
                    |mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await },
                );
                if ping.next().await.unwrap().1.is_ok() {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "master 0 never reached again"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert_eq!(
            reversed, 0,
            "{reversed} of 100 rounds: the later SET landed first ({both} rounds had both sent)"
        );
    }
}
