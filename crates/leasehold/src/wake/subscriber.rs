//! The subscriber task: one pub/sub connection per client, subscribed to
//! the wake channels local tasks wait on (plus a linger), reconnecting
//! when it breaks.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::queue::Shared;
use super::sync::Arc;
use crate::backend::WakeSource;

/// How long a channel nobody waits on stays subscribed, in case a waiter
/// comes back soon (a worker that releases and re-acquires in a loop).
pub(super) const LINGER: Duration = Duration::from_secs(2);

/// Reconnect back-off of the subscriber connection.
pub(super) const RECONNECT_MIN: Duration = Duration::from_millis(50);
pub(super) const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// The subscriber task: keeps the pub/sub connection's subscriptions equal to
/// the channels that have waiters (plus a linger), and reconnects.
pub(super) async fn subscriber(shared: Arc<Shared>) {
    let mut backoff = RECONNECT_MIN;
    let mut warned = false;
    loop {
        let opened = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = Wire::open(&shared) => r,
        };
        let (mut wire, reader, lost) = match opened {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "leasehold: subscriber connection failed; waiters fall back to timers until it is back");
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
        };
        backoff = RECONNECT_MIN;
        let mut subscribed: HashSet<Arc<[u8]>> = HashSet::new();
        // A subscription refused by ACL: not a broken connection, and
        // subscribing again at once would be refused again.
        let mut refused: Option<redis::RedisError> = None;
        loop {
            // Work out what to change, under the lock; talk to Redis outside it.
            let (to_sub, to_unsub, next_check) = plan(&shared, &subscribed);
            if !to_unsub.is_empty() {
                let names: Vec<&[u8]> = to_unsub.iter().map(|c| &**c).collect();
                if wire.unsubscribe(names).await.is_err() {
                    break;
                }
                for c in &to_unsub {
                    subscribed.remove(c);
                }
            }
            if !to_sub.is_empty() {
                let names: Vec<&[u8]> = to_sub.iter().map(|c| &**c).collect();
                if let Err(e) = wire.subscribe(names).await {
                    refused = crate::acl::refused(&e).is_some().then_some(e);
                    break;
                }
                let mut channels = shared.lock();
                for c in to_sub {
                    if let Some(ch) = channels.get_mut(&c) {
                        ch.confirmed = true;
                        // A release may have come before the subscription did.
                        shared.wake(ch);
                    }
                    subscribed.insert(c);
                }
                continue;
            }
            let idle_check = async {
                match next_check {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shared.shutdown.cancelled() => { reader.abort(); return; }
                _ = lost.cancelled() => break,
                _ = shared.dirty.notified() => {}
                _ = idle_check => {}
            }
        }
        // The connection is gone: nothing is subscribed any more.
        reader.abort();
        for ch in shared.lock().values_mut() {
            ch.confirmed = false;
        }
        if let Some(e) = refused {
            if !warned {
                warned = true;
                tracing::warn!(error = %e, "leasehold: Redis's ACL refused the subscription to a wake channel; waiters fall back to timers. Grant the channels and commands of leasehold::acl_rule (README, \"Redis ACL\")");
            }
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                _ = tokio::time::sleep(RECONNECT_MAX) => {}
            }
            continue;
        }
        tracing::debug!("leasehold: subscriber connection lost; reconnecting");
    }
}

/// The subscriber's connection: classic pub/sub on one server, or sharded
/// pub/sub on a cluster (each channel subscribed on its slot's master; the
/// cluster client follows slot moves and resubscribes by itself).
enum Wire {
    Classic(redis::aio::PubSubSink),
    Sharded(redis::cluster_async::ClusterConnection),
}

impl Wire {
    /// Opens the connection and starts its reader, which delivers messages
    /// until the connection ends (then cancels the token it returns).
    async fn open(
        shared: &Arc<Shared>,
    ) -> redis::RedisResult<(Wire, tokio::task::JoinHandle<()>, CancellationToken)> {
        let lost = CancellationToken::new();
        match &shared.source {
            WakeSource::PubSub(client) => {
                let (sink, reader) = classic(shared, client, &lost).await?;
                Ok((Wire::Classic(sink), reader, lost))
            }
            WakeSource::Sentinel(follower) => {
                // Subscribed to switches before the master is read: a
                // switch in between only costs a reconnect.
                let mut switches = follower.switches();
                let master = follower.current();
                let (sink, reader) = classic(shared, &master.redis, &lost).await?;
                // After a failover, reconnect to the new master. Releases
                // published on the old one in between were lost: the new
                // subscriptions wake every channel's head, which tries again.
                let watch = lost.clone();
                shared.runtime.spawn(async move {
                    tokio::select! {
                        _ = switches.changed() => watch.cancel(),
                        _ = watch.cancelled() => {}
                    }
                });
                Ok((Wire::Classic(sink), reader, lost))
            }
            WakeSource::Sharded(settings) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<redis::PushInfo>();
                let client = settings
                    .builder(settings.timeouts())
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(tx)
                    .build()?;
                let conn = client.get_async_connection().await?;
                let reader = {
                    let shared = Arc::clone(shared);
                    let lost = lost.clone();
                    shared.runtime.clone().spawn(async move {
                        while let Some(push) = rx.recv().await {
                            on_push(&shared, push);
                        }
                        lost.cancel();
                    })
                };
                Ok((Wire::Sharded(conn), reader, lost))
            }
            WakeSource::Masters(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "independent masters have a link each (the hub starts them)",
            ))),
        }
    }

    async fn subscribe(&mut self, names: Vec<&[u8]>) -> redis::RedisResult<()> {
        match self {
            Wire::Classic(sink) => sink.subscribe(names).await,
            Wire::Sharded(conn) => {
                // One at a time: each channel lives on its own slot's node.
                for name in names {
                    conn.ssubscribe(name).await?;
                }
                Ok(())
            }
        }
    }

    async fn unsubscribe(&mut self, names: Vec<&[u8]>) -> redis::RedisResult<()> {
        match self {
            Wire::Classic(sink) => sink.unsubscribe(names).await,
            Wire::Sharded(conn) => {
                for name in names {
                    conn.sunsubscribe(name).await?;
                }
                Ok(())
            }
        }
    }
}

/// Opens a classic pub/sub connection with `client` and starts its reader,
/// which delivers messages until the connection ends (then cancels `lost`).
async fn classic(
    shared: &Arc<Shared>,
    client: &redis::Client,
    lost: &CancellationToken,
) -> redis::RedisResult<(redis::aio::PubSubSink, tokio::task::JoinHandle<()>)> {
    let (sink, mut stream) = client.get_async_pubsub().await?.split();
    let reader = {
        let shared = Arc::clone(shared);
        let lost = lost.clone();
        shared.runtime.clone().spawn(async move {
            while let Some(msg) = stream.next().await {
                // Names are bytes, not always UTF-8: read the channel raw.
                if let Ok(channel) = msg.get_channel::<Vec<u8>>() {
                    shared.on_message(&channel, msg.get_payload_bytes());
                }
            }
            lost.cancel();
        })
    };
    Ok((sink, reader))
}

/// A push of the sharded subscriber: a message, or a (re)subscription.
/// The cluster client resubscribes by itself after a node's connection
/// broke or a slot moved; a release may have come in between, so a
/// confirmed subscription wakes the channel's waiters, as a first
/// subscription does.
fn on_push(shared: &Shared, push: redis::PushInfo) {
    let bytes = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => Some(b.clone()),
        redis::Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    };
    match push.kind {
        redis::PushKind::SMessage | redis::PushKind::Message => {
            if let (Some(channel), Some(payload)) = (
                push.data.first().and_then(bytes),
                push.data.get(1).and_then(bytes),
            ) {
                shared.on_message(&channel, &payload);
            }
        }
        redis::PushKind::SSubscribe => {
            if let Some(channel) = push.data.first().and_then(bytes) {
                let mut channels = shared.lock();
                if let Some(ch) = channels.get_mut(&channel[..]) {
                    ch.confirmed = true;
                    shared.wake(ch);
                }
            }
        }
        redis::PushKind::SUnsubscribe => {
            // A node that gave the channel's slot away unsubscribes its
            // listeners: subscribe again, which reaches the slot's new
            // owner, and let the head look now (a release may fall in the
            // gap).
            if let Some(channel) = push.data.first().and_then(bytes) {
                let mut channels = shared.lock();
                if let Some(ch) = channels.get_mut(&channel[..])
                    && ch.confirmed
                {
                    ch.confirmed = false;
                    shared.wake(ch);
                    drop(channels);
                    shared.dirty.notify_one();
                }
            }
        }
        _ => {}
    }
}

pub(super) type Plan = (Vec<Arc<[u8]>>, Vec<Arc<[u8]>>, Option<Instant>);

/// Channels to subscribe, channels to drop (idle past [`LINGER`]; removed
/// from the map now, so a new waiter re-subscribes after the UNSUBSCRIBE),
/// and when to look again for idle channels.
fn plan(shared: &Shared, subscribed: &HashSet<Arc<[u8]>>) -> Plan {
    let now = Instant::now();
    let mut to_sub = Vec::new();
    let mut to_unsub = Vec::new();
    let mut next: Option<Instant> = None;
    let mut channels = shared.lock();
    channels.retain(|name, ch| {
        if ch.busy() {
            if !ch.confirmed {
                to_sub.push(Arc::clone(name));
            }
            return true;
        }
        let since = *ch.idle_since.get_or_insert(now);
        if now >= since + LINGER {
            if subscribed.contains(name) {
                to_unsub.push(Arc::clone(name));
            }
            return false;
        }
        next = Some(next.map_or(since + LINGER, |n| n.min(since + LINGER)));
        true
    });
    (to_sub, to_unsub, next)
}
