//! The subscriber over independent masters (Redlock): one classic pub/sub
//! connection per master, all subscribed to the same wake channels.
//!
//! A release publishes on every master it reaches, so a waiter wakes on
//! the first copy to arrive ([`Seen`] tells it from the copies the other
//! masters deliver): one release wakes one waiter, not one per master. The
//! later copies are for that waiter alone: its attempt may have reached
//! their masters before the release did, and been refused, so each copy
//! has it try again once refused (see `Shared::on_copy`). A master that
//! subscribes after a release was heard elsewhere may have published its
//! copy before it listened: its subscription stands for that copy. A
//! master that is down or frozen must not hold the others back: each
//! master has a link task of its own, which opens its connection (within
//! [`CONNECT_TIMEOUT`]), subscribes and reconnects with back-off alone;
//! the live links keep their subscriptions meanwhile. Whatever a silent
//! master would have told is caught by the waiters' fallback timers.
//!
//! The links talk to their owner through [`Listener`], so that they run
//! (and are tested against real servers) without the hub's state, whose
//! locks are shuttle's in test builds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::queue::Shared;
use super::subscriber::{LINGER, Plan, RECONNECT_MAX, RECONNECT_MIN};

/// Opening one master's connection, and one SUBSCRIBE or UNSUBSCRIBE
/// reply: past it, the master counts as down and its link starts over
/// (a frozen master accepts the TCP connection and then says nothing).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the links ask of their owner and tell it.
pub(super) trait Listener: Send + Sync + 'static {
    /// Channels `master`'s link must subscribe and unsubscribe (it holds
    /// `subscribed` now), and when to look again.
    fn plan(&self, master: usize, subscribed: &HashSet<Arc<[u8]>>) -> Plan;
    /// `master` confirmed the subscription of `channels`.
    fn subscribed(&self, master: usize, channels: &[Arc<[u8]>]);
    /// `master`'s connection is gone, and every subscription on it.
    fn lost(&self, master: usize);
    /// A message from `master`.
    fn message(&self, master: usize, channel: &[u8], payload: &[u8]);
    /// Told when a channel must be (un)subscribed.
    fn dirty(&self) -> &Notify;
    /// Cancelled when the client is dropped.
    fn shutdown(&self) -> &CancellationToken;
}

/// Runs one link per master until shutdown, passing each change of the
/// wanted channels on to every link.
pub(super) async fn run<L: Listener>(listener: Arc<L>, clients: Vec<redis::Client>) {
    let kicks: Vec<Arc<Notify>> = clients.iter().map(|_| Arc::new(Notify::new())).collect();
    let links: Vec<_> = clients
        .into_iter()
        .zip(&kicks)
        .enumerate()
        .map(|(master, (client, kick))| {
            tokio::spawn(link(
                Arc::clone(&listener),
                master,
                client,
                Arc::clone(kick),
            ))
        })
        .collect();
    loop {
        tokio::select! {
            _ = listener.shutdown().cancelled() => break,
            _ = listener.dirty().notified() => {
                // `notify_one` keeps a permit for a link busy elsewhere.
                for kick in &kicks {
                    kick.notify_one();
                }
            }
        }
    }
    for link in links {
        link.abort();
    }
}

/// One master's link: its connection, subscriptions and reconnects, alone.
async fn link<L: Listener>(
    listener: Arc<L>,
    master: usize,
    client: redis::Client,
    kick: Arc<Notify>,
) {
    let shutdown = listener.shutdown().clone();
    let mut backoff = RECONNECT_MIN;
    loop {
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = open(&listener, master, &client) => r,
        };
        let (mut sink, reader, lost) = match opened {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(master, error = %e, "leasehold: subscriber connection to a master failed; the other masters' wake waiters meanwhile");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        // A frozen master accepts connections and never answers: back off
        // until one answers, not only until one opens.
        let mut answered = false;
        let mut subscribed: HashSet<Arc<[u8]>> = HashSet::new();
        loop {
            let (to_sub, to_unsub, next_check) = listener.plan(master, &subscribed);
            if !to_unsub.is_empty() {
                let names: Vec<&[u8]> = to_unsub.iter().map(|c| &**c).collect();
                if !replied(sink.unsubscribe(names)).await {
                    break;
                }
                answered = true;
                for c in &to_unsub {
                    subscribed.remove(c);
                }
            }
            if !to_sub.is_empty() {
                let names: Vec<&[u8]> = to_sub.iter().map(|c| &**c).collect();
                if !replied(sink.subscribe(names)).await {
                    break;
                }
                answered = true;
                listener.subscribed(master, &to_sub);
                subscribed.extend(to_sub);
                continue;
            }
            let idle_check = async {
                match next_check {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => { reader.abort(); return; }
                _ = lost.cancelled() => break,
                _ = kick.notified() => {}
                _ = idle_check => {}
            }
        }
        reader.abort();
        listener.lost(master);
        tracing::debug!(
            master,
            "leasehold: subscriber connection to a master lost; reconnecting"
        );
        if answered {
            backoff = RECONNECT_MIN;
        } else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RECONNECT_MAX);
        }
    }
}

/// Whether a SUBSCRIBE or UNSUBSCRIBE got its reply in time.
async fn replied(op: impl Future<Output = redis::RedisResult<()>>) -> bool {
    matches!(tokio::time::timeout(CONNECT_TIMEOUT, op).await, Ok(Ok(())))
}

type Opened = (
    redis::aio::PubSubSink,
    tokio::task::JoinHandle<()>,
    CancellationToken,
);

/// Opens `master`'s connection and starts its reader, which delivers
/// messages until the connection ends (then cancels the token it returns).
async fn open<L: Listener>(
    listener: &Arc<L>,
    master: usize,
    client: &redis::Client,
) -> redis::RedisResult<Opened> {
    let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer within the connect timeout",
            ))
        })??;
    let (sink, mut stream) = pubsub.split();
    let lost = CancellationToken::new();
    let reader = {
        let listener = Arc::clone(listener);
        let lost = lost.clone();
        tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                // Names are bytes, not always UTF-8: read the channel raw.
                if let Ok(channel) = msg.get_channel::<Vec<u8>>() {
                    listener.message(master, &channel, msg.get_payload_bytes());
                }
            }
            lost.cancel();
        })
    };
    Ok((sink, reader, lost))
}

/// Tells the first copy of a release from the copies the other masters
/// deliver. A release publishes the same payload on every master, once
/// each; so master `m`'s k-th message with a payload on a channel stands
/// for the k-th such release, and a message is news when it takes its
/// master's count past every other master's. (A release that reached
/// only some masters can make a later one look like a copy, which still
/// wakes the waiter the last release woke, if it is back at the head;
/// the waiters' fallback timers cover the rest.)
#[derive(Default)]
pub(super) struct Seen {
    /// Per channel, per payload: how many messages each master delivered.
    counts: HashMap<Arc<[u8]>, Counts>,
}

/// Per payload: how many messages each master delivered.
type Counts = HashMap<Box<[u8]>, Vec<u64>>;

/// Payloads remembered per channel; past it the channel starts afresh (a
/// few copies may then wake a waiter each). Fair releases name waiters, so
/// a busy channel sees new payloads all the time.
const SEEN_MAX: usize = 256;

impl Seen {
    /// Counts `master`'s message (of `masters`); true when it is news.
    pub(super) fn first(
        &mut self,
        masters: usize,
        master: usize,
        channel: &[u8],
        payload: &[u8],
    ) -> bool {
        let by_payload = match self.counts.get_mut(channel) {
            Some(p) => p,
            None => self.counts.entry(channel.into()).or_default(),
        };
        if by_payload.len() >= SEEN_MAX && !by_payload.contains_key(payload) {
            by_payload.clear();
        }
        let counts = by_payload
            .entry(payload.into())
            .or_insert_with(|| vec![0; masters]);
        let most = counts.iter().copied().max().unwrap_or(0);
        counts[master] += 1;
        let news = counts[master] > most;
        if counts.iter().all(|&c| c == counts[master]) {
            // Every master delivered every copy: nothing left to drop.
            by_payload.remove(payload);
        }
        news
    }

    /// `master` (re)subscribed `channel`: what it missed while it was not
    /// subscribed will never come, so it starts level with the others.
    /// Returns the payloads of which it missed copies.
    pub(super) fn level(&mut self, master: usize, channel: &[u8]) -> Vec<Box<[u8]>> {
        let mut missed = Vec::new();
        for (payload, counts) in self.counts.get_mut(channel).into_iter().flatten() {
            let most = counts.iter().copied().max().unwrap_or(0);
            if counts[master] < most {
                counts[master] = most;
                missed.push(payload.clone());
            }
        }
        missed
    }

    /// `channel` is no longer subscribed anywhere.
    pub(super) fn forget(&mut self, channel: &[u8]) {
        self.counts.remove(channel);
    }
}

/// The hub's side of the links.
pub(super) struct Hub {
    pub(super) shared: Arc<Shared>,
    pub(super) masters: usize,
    pub(super) seen: std::sync::Mutex<Seen>,
}

impl Hub {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        // Short sections that do not panic: a poisoned lock is consistent.
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Listener for Hub {
    fn plan(&self, master: usize, subscribed: &HashSet<Arc<[u8]>>) -> Plan {
        let now = Instant::now();
        let mut to_sub = Vec::new();
        let mut next: Option<Instant> = None;
        let mut gone = Vec::new();
        let mut channels = self.shared.lock();
        channels.retain(|name, ch| {
            if ch.busy() {
                if !ch.masters.contains(&master) {
                    to_sub.push(Arc::clone(name));
                }
                return true;
            }
            let since = *ch.idle_since.get_or_insert(now);
            if now >= since + LINGER {
                // Out of the map now, so a new waiter subscribes it anew;
                // each link drops its subscription when it sees it gone.
                gone.push(Arc::clone(name));
                return false;
            }
            next = Some(next.map_or(since + LINGER, |n| n.min(since + LINGER)));
            true
        });
        let to_unsub = subscribed
            .iter()
            .filter(|c| !channels.contains_key(&***c))
            .cloned()
            .collect();
        drop(channels);
        let mut seen = self.seen();
        for c in gone {
            seen.forget(&c);
        }
        (to_sub, to_unsub, next)
    }

    fn subscribed(&self, master: usize, names: &[Arc<[u8]>]) {
        let mut channels = self.shared.lock();
        for c in names {
            if let Some(ch) = channels.get_mut(c) {
                // Confirmed means subscribed on at least one master: every
                // release publishes on every master it reaches, so from
                // then on a release is heard, and a waiter relies on the
                // wake. Waiting for all masters would keep every waiter on
                // its fallback timer while one master is down. Only the
                // first master's subscription wakes the head: a release may
                // have come before it. A later one adds no release that
                // the first did not hear, only perhaps a copy it missed
                // (below).
                let first = ch.masters.is_empty();
                ch.masters.insert(master);
                ch.confirmed = true;
                if first {
                    self.shared.wake(ch);
                }
            }
        }
        drop(channels);
        let missed: Vec<_> = {
            let mut seen = self.seen();
            names
                .iter()
                .flat_map(|c| seen.level(master, c).into_iter().map(move |p| (c, p)))
                .collect()
        };
        // A release heard from other masters that this one may have
        // published before it listened: as good as its copy.
        for (c, payload) in missed {
            self.shared.on_copy(c, &payload);
        }
    }

    fn lost(&self, master: usize) {
        for ch in self.shared.lock().values_mut() {
            ch.masters.remove(&master);
            ch.confirmed = !ch.masters.is_empty();
        }
    }

    fn message(&self, master: usize, channel: &[u8], payload: &[u8]) {
        if self.seen().first(self.masters, master, channel, payload) {
            self.shared.on_message(channel, payload);
        } else {
            self.shared.on_copy(channel, payload);
        }
    }

    fn dirty(&self) -> &Notify {
        &self.shared.dirty
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.shared.shutdown
    }
}

#[cfg(test)]
mod tests {
    //! The links against real servers (through [`Listener`], not the hub,
    //! whose locks are shuttle's in test builds), and [`Seen`].

    use std::sync::Mutex;

    use super::*;

    const CHANNEL: &[u8] = b"lh:{job}:wake";

    /// A listener that wants [`CHANNEL`] and records what the links say.
    #[derive(Default)]
    struct Probe {
        /// Per master: the channels it confirmed.
        on: Mutex<Vec<HashSet<Arc<[u8]>>>>,
        /// (master, payload) of each message.
        heard: Mutex<Vec<(usize, Vec<u8>)>>,
        dirty: Notify,
        shutdown: CancellationToken,
    }

    impl Listener for Probe {
        fn plan(&self, master: usize, subscribed: &HashSet<Arc<[u8]>>) -> Plan {
            let on = self.on.lock().unwrap();
            let confirmed = on.get(master).is_some_and(|c| c.contains(CHANNEL));
            let to_sub = if confirmed {
                vec![]
            } else {
                vec![Arc::from(CHANNEL)]
            };
            let to_unsub = subscribed
                .iter()
                .filter(|c| ***c != *CHANNEL)
                .cloned()
                .collect();
            (to_sub, to_unsub, None)
        }
        fn subscribed(&self, master: usize, channels: &[Arc<[u8]>]) {
            let mut on = self.on.lock().unwrap();
            if on.len() <= master {
                on.resize_with(master + 1, HashSet::new);
            }
            on[master].extend(channels.iter().cloned());
        }
        fn lost(&self, master: usize) {
            if let Some(c) = self.on.lock().unwrap().get_mut(master) {
                c.clear();
            }
        }
        fn message(&self, master: usize, channel: &[u8], payload: &[u8]) {
            assert_eq!(channel, CHANNEL);
            self.heard.lock().unwrap().push((master, payload.to_vec()));
        }
        fn dirty(&self) -> &Notify {
            &self.dirty
        }
        fn shutdown(&self) -> &CancellationToken {
            &self.shutdown
        }
    }

    impl Probe {
        fn subscribed_on(&self, master: usize) -> bool {
            self.on
                .lock()
                .unwrap()
                .get(master)
                .is_some_and(|c| c.contains(CHANNEL))
        }

        fn heard(&self, master: usize, payload: &str) -> usize {
            let heard = self.heard.lock().unwrap();
            heard
                .iter()
                .filter(|(m, p)| *m == master && p == payload.as_bytes())
                .count()
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    /// Three servers and the links to them, running.
    fn start() -> (Vec<testkit::RedisServer>, Arc<Probe>) {
        let servers = testkit::RedisServer::start_many(3).expect("start 3 redis-servers");
        let probe = Arc::new(Probe::default());
        let clients = servers
            .iter()
            .map(|s| redis::Client::open(s.url()).unwrap())
            .collect();
        tokio::spawn(run(Arc::clone(&probe), clients));
        (servers, probe)
    }

    async fn publish(server: &testkit::RedisServer, payload: &str) {
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(payload)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// Waits for `cond` with a deadline (generous: the machine is loaded).
    async fn eventually(within: Duration, what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + within;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Half a waiter's fallback timer at its default ceiling (1 s), and
    /// far above a local publish's delivery, even on a loaded machine.
    const PROMPT: Duration = Duration::from_millis(500);
    const SETTLE: Duration = Duration::from_secs(15);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_publish_on_any_master_is_heard() {
        let (servers, probe) = start();
        for m in 0..3 {
            eventually(SETTLE, &format!("master {m} subscribed"), || {
                probe.subscribed_on(m)
            })
            .await;
        }
        for (m, server) in servers.iter().enumerate() {
            let payload = format!("release-{m}");
            publish(server, &payload).await;
            eventually(PROMPT, &format!("the publish on master {m}"), || {
                probe.heard(m, &payload) == 1
            })
            .await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frozen_master_holds_back_no_other() {
        let servers = testkit::RedisServer::start_many(3).expect("start 3 redis-servers");
        // Frozen before the links open: its connection never completes.
        servers[0].pause();
        let probe = Arc::new(Probe::default());
        let clients = servers
            .iter()
            .map(|s| redis::Client::open(s.url()).unwrap())
            .collect();
        tokio::spawn(run(Arc::clone(&probe), clients));
        for m in [1, 2] {
            eventually(SETTLE, &format!("master {m} subscribed"), || {
                probe.subscribed_on(m)
            })
            .await;
        }
        assert!(
            !probe.subscribed_on(0),
            "a frozen master confirmed a subscription"
        );
        let sent = Instant::now();
        publish(&servers[2], "release").await;
        eventually(PROMPT, "the publish on a live master", || {
            probe.heard(2, "release") == 1
        })
        .await;
        assert!(sent.elapsed() < PROMPT);
        // Thawed, it is subscribed by its own link's retries.
        servers[0].resume();
        eventually(SETTLE, "master 0 subscribed after SIGCONT", || {
            probe.subscribed_on(0)
        })
        .await;
        publish(&servers[0], "thawed").await;
        eventually(PROMPT, "the publish on the thawed master", || {
            probe.heard(0, "thawed") == 1
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_master_is_resubscribed_alone() {
        let (mut servers, probe) = start();
        for m in 0..3 {
            eventually(SETTLE, &format!("master {m} subscribed"), || {
                probe.subscribed_on(m)
            })
            .await;
        }
        let live = [
            subscriber_ids(&servers[0]).await,
            subscriber_ids(&servers[2]).await,
        ];
        assert!(
            live.iter().all(|ids| ids.len() == 1),
            "one subscriber per master: {live:?}"
        );
        servers[1].kill();
        eventually(SETTLE, "master 1's link to see its loss", || {
            !probe.subscribed_on(1)
        })
        .await;
        // The others stay subscribed on the connections they had.
        publish(&servers[0], "while-down").await;
        eventually(PROMPT, "a publish on a live master", || {
            probe.heard(0, "while-down") == 1
        })
        .await;
        assert!(probe.subscribed_on(0) && probe.subscribed_on(2));
        servers[1].restart().expect("restart master 1");
        eventually(SETTLE, "master 1 subscribed again", || {
            probe.subscribed_on(1)
        })
        .await;
        publish(&servers[1], "back").await;
        eventually(PROMPT, "the publish on the restarted master", || {
            probe.heard(1, "back") == 1
        })
        .await;
        assert_eq!(subscriber_ids(&servers[1]).await.len(), 1);
        let after = [
            subscriber_ids(&servers[0]).await,
            subscriber_ids(&servers[2]).await,
        ];
        assert_eq!(after, live, "the live masters' connections were reopened");
    }

    /// The ids of the pub/sub connections a server has.
    async fn subscriber_ids(server: &testkit::RedisServer) -> Vec<String> {
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .unwrap();
        list.lines()
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn copies_of_one_release_are_dropped() {
        let mut seen = Seen::default();
        let c: &[u8] = b"ch";
        // One release, three copies in any order: one is news.
        assert!(seen.first(3, 1, c, b"a"));
        assert!(!seen.first(3, 0, c, b"a"));
        assert!(!seen.first(3, 2, c, b"a"));
        // The next release of the same payload is news again, from whichever
        // master comes first, even before the slow one delivered the first.
        assert!(seen.first(3, 0, c, b"a"));
        assert!(!seen.first(3, 2, c, b"a"));
        // Another releaser's payload is counted apart.
        assert!(seen.first(3, 2, c, b"b"));
        // Master 1 resubscribes: the copy it never delivered is not
        // waited for, so its next message is the next release.
        seen.level(1, c);
        assert!(seen.first(3, 1, c, b"a"));
        assert!(!seen.first(3, 0, c, b"a"));
        seen.forget(c);
        assert!(seen.first(3, 2, c, b"a"));
    }
}
