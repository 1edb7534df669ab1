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
//! it is made ([`Replies`]), and an operation is always one command: our
//! scripts are loaded on each master when it connects, and an EVALSHA that
//! finds none (a master restarted empty) is not followed by an EVAL, which
//! a later command could overtake; it fails for that master alone
//! (`TRYAGAIN`) while the script is loaded again ([`Master`]).
//!
//! Fair leases and semaphores (their queue lives on one server) and
//! read-write locks are refused with [`ErrorKind::Unsupported`], as are
//! your scripts and transactions (on which master would the data live?).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use redis::aio::{ConnectionLike, ConnectionManager};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::node::{Node, Timeouts, parse_url};
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

/// Reconnect back-off for a master that could not be reached at start.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// N independent masters.
pub(crate) struct Redlock {
    members: Arc<[Member]>,
    /// Printable: every master, comma-separated.
    addr: String,
    node_timeout: Duration,
    timeouts: Timeouts,
    publisher: Token,
    runtime: tokio::runtime::Handle,
    /// Stops the reconnect tasks when the client goes.
    closed: CancellationToken,
}

/// One master: connected, or being retried in the background.
struct Member {
    url: String,
    addr: String,
    node: RwLock<Option<Arc<Node>>>,
}

impl Member {
    fn node(&self) -> Option<Arc<Node>> {
        self.node.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Redlock {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl Redlock {
    /// Connects to every master in `urls` at once. Fails when a URL is
    /// malformed or given twice, or when fewer than a majority answer
    /// within the connect timeout; the ones that did not are retried in
    /// the background meanwhile, and count as failed until they answer.
    pub(crate) async fn connect(
        urls: &[String],
        timeouts: Timeouts,
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
        let mut addrs: Vec<String> = Vec::with_capacity(urls.len());
        for url in urls {
            let addr = parse_url(url)?.addr().to_string();
            if addrs.contains(&addr) {
                return Err(Error::invalid(
                    "Redlock masters",
                    format!(
                        "{addr} is given twice: each master must be a different server, or one server would count twice towards the quorum"
                    ),
                ));
            }
            addrs.push(addr);
        }
        let connected =
            futures_util::future::join_all(urls.iter().map(|u| connect_master(u, timeouts))).await;
        let mut failures = Vec::new();
        let members: Arc<[Member]> = urls
            .iter()
            .zip(addrs)
            .zip(connected)
            .map(|((url, addr), node)| Member {
                url: url.clone(),
                node: RwLock::new(match node {
                    Ok(n) => Some(Arc::new(n)),
                    Err(cause) => {
                        failures.push(NodeFailure {
                            addr: addr.clone(),
                            cause,
                        });
                        None
                    }
                }),
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
        let redlock = Redlock {
            addr: members
                .iter()
                .map(|m| m.addr.as_str())
                .collect::<Vec<_>>()
                .join(","),
            members,
            node_timeout,
            timeouts,
            publisher,
            runtime: tokio::runtime::Handle::current(),
            closed: CancellationToken::new(),
        };
        for f in failures {
            tracing::warn!(
                master = f.addr,
                error = %f.cause,
                "leasehold: a Redlock master did not answer; it counts as failed until a background reconnect reaches it"
            );
        }
        for i in 0..n {
            if redlock.members[i].node().is_none() {
                redlock.reconnect_in_background(i);
            }
        }
        Ok(redlock)
    }

    fn reconnect_in_background(&self, i: usize) {
        let members = Arc::clone(&self.members);
        let closed = self.closed.clone();
        let timeouts = self.timeouts;
        self.runtime.spawn(async move {
            let m = &members[i];
            let mut backoff = RECONNECT_MIN;
            loop {
                tokio::select! {
                    _ = closed.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                if let Ok(node) = connect_master(&m.url, timeouts).await {
                    *m.node.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(node));
                    tracing::info!(master = m.addr, "leasehold: Redlock master reached");
                    return;
                }
                backoff = (backoff * 2).min(RECONNECT_MAX);
            }
        });
    }

    /// Every master, comma-separated.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// How many masters.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// The client for each master, for the subscribers.
    pub(crate) fn redis_clients(&self) -> Vec<redis::Client> {
        self.members
            .iter()
            .filter_map(|m| redis::Client::open(m.url.as_str()).ok())
            .collect()
    }

    /// How long one command waits for its reply.
    pub(crate) fn response_timeout(&self) -> Duration {
        self.timeouts.response
    }

    /// How many masters must agree for `keys`, or why it cannot be done here.
    pub(crate) fn quorum(&self, keys: &LeaseKeys) -> Result<usize> {
        let n = self.members.len();
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
        self.node_timeout
            .min(ttl / 10)
            .max(Duration::from_millis(1))
    }

    /// Runs `op` on the masters `on` picks, all at once, each within
    /// `within`; answers come as they arrive (see [`Replies`]). Every
    /// command is on its master's connection when this returns.
    fn on_every<T, Fut>(
        &self,
        doing: &'static str,
        within: Duration,
        on: impl Fn(usize) -> bool,
        op: impl Fn(Master) -> Fut,
    ) -> Replies<T>
    where
        T: Send + Unpin + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
    {
        let mut pending = FuturesUnordered::new();
        for (i, m) in self.members.iter().enumerate() {
            if !on(i) {
                continue;
            }
            let addr = m.addr.clone();
            let fut: BoxFuture<'static, (usize, Result<T>)> = match m.node() {
                Some(node) => {
                    let call = op(Master(node.conn()));
                    // Outside tokio's cooperative budget: a task whose
                    // budget ran out would find the connection's queue
                    // "not ready" at the first poll, and the command
                    // would be queued later, after a later one.
                    Box::pin(tokio::task::coop::unconstrained(async move {
                        let r = match tokio::time::timeout(within, call).await {
                            Ok(r) => r,
                            Err(_) => {
                                Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into())
                            }
                        };
                        (i, r.map_err(|e| Error::redis(doing, &addr, e)))
                    }))
                }
                None => Box::pin(async move {
                    let e: redis::RedisError =
                        std::io::Error::from(std::io::ErrorKind::NotConnected).into();
                    (i, Err(Error::redis(doing, &addr, e)))
                }),
            };
            pending.push(Eager::new(fut));
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
            runtime: self.runtime.clone(),
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
        let n = self.members.len();
        let within = self.within(ttl);
        let ttl_ms = ttl_ms(ttl);
        let sent = Instant::now();
        let mut granted: Vec<(usize, u64)> = Vec::new();
        let mut answered = vec![false; n];
        let mut busy: Vec<(usize, i64)> = Vec::new();
        let mut mismatch = None;
        let mut failures = Vec::new();
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
            let mut replies = self.on_every("the acquire script", within, |i| ask.contains(&i), {
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
            });
            while let Some((i, answer)) = replies.next().await {
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
        let needed = majority(self.members.len());
        let at: Vec<usize> = granted
            .iter()
            .filter(|&&(_, f)| f == fence)
            .map(|&(i, _)| i)
            .collect();
        let mut have = at.len();
        if have >= needed {
            return Ok(());
        }
        let mut replies = self.on_every("raising the fence", within, |i| !at.contains(&i), {
            let keys = Arc::clone(keys);
            move |mut conn| {
                let keys = Arc::clone(&keys);
                async move { scripts::raise_fence(&mut conn, &keys, fence).await }
            }
        });
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
        let publisher = self.publisher;
        self.on_every("the release script", within, |_| true, {
            let keys = Arc::clone(keys);
            move |mut conn| {
                let keys = Arc::clone(&keys);
                async move {
                    scripts::release(
                        &mut conn,
                        Pubsub::Classic,
                        &keys,
                        token.as_bytes(),
                        publisher.as_bytes(),
                    )
                    .await
                }
            }
        })
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
        let n = self.members.len();
        let ttl_ms = ttl_ms(ttl);
        let token = *token;
        let sent = Instant::now();
        let mut replies = self.on_every("the extend script", self.within(ttl), |_| true, {
            let keys = Arc::clone(keys);
            move |mut conn| {
                let keys = Arc::clone(&keys);
                async move { scripts::extend(&mut conn, &keys, token.as_bytes(), ttl_ms).await }
            }
        });
        let (mut extended, mut gone) = (0, 0);
        let mut failures = Vec::new();
        while let Some((i, answer)) = replies.next().await {
            match answer {
                Ok(true) => extended += 1,
                Ok(false) => gone += 1,
                Err(cause) => failures.push(self.failure(i, cause)),
            }
            if extended >= quorum {
                return Ok(Extended::Held {
                    sent,
                    valid_until: sent + ttl.saturating_sub(drift(ttl)),
                });
            }
            if n - gone < quorum {
                // Too few masters still have it to ever make a quorum.
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
        let n = self.members.len();
        let mut replies = self.release_on_all(keys, token, self.node_timeout);
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
        let n = self.members.len();
        let within = self.within(next_ttl);
        let token = *token;
        let freed_payload: Arc<[u8]> = freed_payload.into();
        let mut replies = self.on_every("the release script", within, |_| true, {
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
            self.node_timeout,
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
        for m in self.members.iter() {
            match m.node() {
                Some(node) => match node.scan(pattern).await {
                    Ok(keys) => all.extend(keys),
                    Err(cause) => failures.push(NodeFailure {
                        addr: m.addr.clone(),
                        cause,
                    }),
                },
                None => failures.push(NodeFailure {
                    addr: m.addr.clone(),
                    cause: Error::redis(
                        "scanning for leases",
                        &m.addr,
                        std::io::Error::from(std::io::ErrorKind::NotConnected).into(),
                    ),
                }),
            }
        }
        let n = self.members.len();
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
            self.timeouts.response,
            |_| true,
            move |mut conn| {
                let pipe = Arc::clone(&pipe);
                async move { pipe.query_async::<Vec<redis::Value>>(&mut conn).await }
            },
        );
        let mut out = vec![None; self.members.len()];
        while let Some((i, answer)) = replies.next().await {
            out[i] = answer.ok();
        }
        out
    }

    fn failure(&self, i: usize, cause: Error) -> NodeFailure {
        NodeFailure {
            addr: self.members[i].addr.clone(),
            cause,
        }
    }
}

/// Answers of an operation on many masters, as they come. Dropped with
/// answers still out, it leaves them to finish in a background task: a
/// master that is slow or frozen is never waited for, and its command is
/// still carried out (and its connection kept in order).
struct Replies<T: Send + Unpin + 'static> {
    pending: FuturesUnordered<Eager<T>>,
    runtime: tokio::runtime::Handle,
}

impl<T: Send + Unpin + 'static> Replies<T> {
    async fn next(&mut self) -> Option<(usize, Result<T>)> {
        self.pending.next().await
    }
}

/// One master's part of an operation, which can be polled once before
/// anybody awaits it ([`Eager::kick`]), keeping its answer if it came
/// at once.
struct Eager<T> {
    fut: BoxFuture<'static, (usize, Result<T>)>,
    done: Option<(usize, Result<T>)>,
}

impl<T: Unpin> Eager<T> {
    fn new(fut: BoxFuture<'static, (usize, Result<T>)>) -> Self {
        Eager { fut, done: None }
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
    type Output = (usize, Result<T>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.done.take() {
            Some(out) => Poll::Ready(out),
            None => self.fut.as_mut().poll(cx),
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
pub(crate) struct Master(ConnectionManager);

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
async fn connect_master(url: &str, timeouts: Timeouts) -> Result<Node> {
    let node = Node::connect(url, timeouts).await?;
    let mut load = redis::pipe();
    for script in scripts::redlock_scripts() {
        load.cmd("SCRIPT").arg("LOAD").arg(script.src()).ignore();
    }
    load.exec_async(&mut node.conn())
        .await
        .map_err(|e| Error::redis("loading the scripts", node.addr(), e))?;
    Ok(node)
}

impl<T: Send + Unpin + 'static> Drop for Replies<T> {
    fn drop(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut rest = std::mem::take(&mut self.pending);
        self.runtime
            .spawn(async move { while rest.next().await.is_some() {} });
    }
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
}
