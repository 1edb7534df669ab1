//! Redis Cluster: the topology is discovered from seeds, every script goes
//! to the master of its first key's slot (all keys of a script share that
//! slot, see `keys`), and waiters hear releases by sharded pub/sub.
//!
//! redis-rs's cluster client follows MOVED and ASK, retries TRYAGAIN and
//! CLUSTERDOWN with back-off, and refreshes its slot map by itself; what it
//! cannot do for leasehold is done here: SCAN on every master (listing) and
//! a dedicated connection to the master of a slot (WATCH).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::node::{Timeouts, Tls, connect_and_probe, no_tls_url, open_info, parse_url, redact};
use crate::error::{Error, Result};
use crate::keys::key_slot;
use crate::token::Token;

/// A cluster, as the backend uses it.
pub(crate) struct Cluster {
    conn: ClusterConnection,
    /// Which master serves which slots, for batches (refreshed when older
    /// than [`MAP_AGE`]; a stale map only sends operations alone).
    slots: std::sync::Arc<SlotMap>,
    /// The runtime the cluster connection lives on (flushers run there).
    runtime: tokio::runtime::Handle,
    /// Plain leases' scripts, gathered under load: the batchers of the
    /// masters share its count in flight and its release of abandoned
    /// grants; it batches itself only what the slot map cannot place.
    pub(crate) batcher: super::batch::Batcher,
    /// A batcher per master (`host`, `port`), made on first use.
    masters: std::sync::Mutex<HashMap<(String, u16), Arc<super::batch::Batcher>>>,
    /// What connections of its own, and the subscriber's client, are
    /// made of.
    settings: Settings,
    /// Printable: the seeds, without passwords.
    addr: String,
    /// The client's id, published by releases.
    pub(crate) publisher: Token,
}

impl Cluster {
    /// Discovers the cluster from `seeds` and checks it answers. With
    /// certificates in `tls`, every connection to every node uses them
    /// (the seeds must be `rediss://`).
    pub(crate) async fn connect(
        seeds: &[String],
        timeouts: Timeouts,
        tls: &Tls,
        publisher: Token,
    ) -> Result<Cluster> {
        if seeds.is_empty() {
            return Err(Error::invalid(
                "cluster seeds",
                "none given: pass the URL of at least one node of the cluster",
            ));
        }
        let addr = seeds
            .iter()
            .map(|s| redact(s))
            .collect::<Vec<_>>()
            .join(",");
        let certs = if tls.is_default() {
            None
        } else {
            for seed in seeds {
                no_tls_url(&parse_url(seed)?, seed)?;
            }
            Some(tls.certificates()?)
        };
        let settings = Settings {
            seeds: seeds.to_vec(),
            timeouts,
            certs,
        };
        let client = settings
            .builder(timeouts)
            .build()
            .map_err(|e| Error::invalid("cluster seeds", format!("`{addr}`: {e}")))?;
        let conn = connect_and_probe(
            client.get_async_connection(),
            "the cluster connection",
            &addr,
            timeouts.connect,
        )
        .await?;
        Ok(Cluster {
            conn,
            settings,
            addr,
            publisher,
            runtime: tokio::runtime::Handle::current(),
            slots: Default::default(),
            batcher: Default::default(),
            masters: Default::default(),
        })
    }

    /// The acquire script of `keys`' kind; a plain lease's may go in a
    /// batch with others of the same master.
    pub(crate) async fn acquire(
        &self,
        keys: &std::sync::Arc<crate::keys::LeaseKeys>,
        token: Token,
        ttl_ms: u64,
        wait: &crate::scripts::WaitInfo<'_>,
    ) -> redis::RedisResult<crate::scripts::Acquired> {
        use super::batch::Route;
        match self
            .route(crate::scripts::BatchOp::Acquire { ttl_ms }, keys, token)
            .await?
        {
            Route::Batched(ok, n) => Ok(crate::scripts::acquired(ok, n)),
            Route::Alone(_counted) => {
                crate::scripts::acquire(&mut self.conn(), keys, token.as_bytes(), ttl_ms, wait)
                    .await
            }
        }
    }

    /// The release script of `keys`' kind (sharded wake); a plain lease's
    /// may go in a batch.
    pub(crate) async fn release(
        &self,
        keys: &std::sync::Arc<crate::keys::LeaseKeys>,
        token: Token,
    ) -> redis::RedisResult<crate::scripts::Released> {
        use super::batch::Route;
        match self
            .route(crate::scripts::BatchOp::Release, keys, token)
            .await?
        {
            Route::Batched(1, _) => Ok(crate::scripts::Released::Yes),
            Route::Batched(..) => Ok(crate::scripts::Released::NotHeld),
            Route::Alone(_counted) => {
                crate::scripts::release(
                    &mut self.conn(),
                    crate::scripts::Pubsub::Sharded,
                    keys,
                    token.as_bytes(),
                    self.publisher.as_bytes(),
                )
                .await
            }
        }
    }

    async fn route(
        &self,
        op: crate::scripts::BatchOp,
        keys: &std::sync::Arc<crate::keys::LeaseKeys>,
        token: Token,
    ) -> redis::RedisResult<super::batch::Route<'_>> {
        if !matches!(keys.family(), crate::keys::Family::Lease) {
            return Ok(super::batch::Route::Alone(None));
        }
        // The map as the flushers last read it, however old, and no read
        // here: a batch groups its operations by a map of its own, so a
        // stale one only puts an operation in another master's queue.
        if let Some(ranges) = self.slots.cached()
            && let Some(master) = master_of(&ranges, key_slot(keys.name()))
        {
            let batcher = Arc::clone(
                self.masters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(master)
                    .or_insert_with(|| Arc::new(self.batcher.sibling(MASTER_BATCHES))),
            );
            return batcher
                .route(
                    op,
                    keys,
                    token,
                    || self.sender(),
                    &self.runtime,
                    self.publisher,
                )
                .await;
        }
        self.batcher
            .route(
                op,
                keys,
                token,
                || self.sender(),
                &self.runtime,
                self.publisher,
            )
            .await
    }

    /// What a batch flusher needs: the connection and the slot map.
    pub(crate) fn sender(&self) -> super::batch::Sender {
        super::batch::Sender::Cluster(self.conn(), std::sync::Arc::clone(&self.slots))
    }

    /// The shared connection: routes each command by its key.
    pub(crate) fn conn(&self) -> ClusterConnection {
        self.conn.clone()
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Which master serves `key`, for an error's message: `host:port`
    /// from the slot map (read again if older than a second, waiting at
    /// most 200 ms for it; else the last one read), else the seeds.
    pub(crate) async fn addr_of(&self, key: &[u8]) -> String {
        let slot = key_slot(key);
        let mut conn = self.conn();
        let read = tokio::time::timeout(
            Duration::from_millis(200),
            self.slots.ranges(&mut conn, MAP_AGE),
        );
        // A map that cannot be read now (the node asked may be the one
        // failing): the last one read, if any.
        let ranges = match read.await {
            Ok(Ok(ranges)) => Some(ranges),
            _ => self.slots.cached(),
        };
        match ranges.as_deref().map(|r| master_of(r, slot)) {
            Some(Some((host, port))) => format!("{host}:{port}"),
            Some(None) => format!("{} (slot {slot} has no master)", self.addr),
            None => self.addr.clone(),
        }
    }

    /// What the cluster's clients are made of.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        self.settings.timeouts
    }

    /// A cluster connection of its own (to every node), that waits for
    /// each connection and each reply at most `patience`: for a renewal
    /// whose reply is stuck on the shared one.
    pub(crate) async fn alone(&self, patience: Duration) -> Result<ClusterConnection> {
        let t = Timeouts {
            connect: patience,
            response: patience,
        };
        self.settings
            .builder(t)
            .build()
            .map_err(|e| Error::redis("a connection for the renewal", &self.addr, e))?
            .get_async_connection()
            .await
            .map_err(|e| Error::redis("a connection for the renewal", &self.addr, e))
    }

    /// The masters, as `host:port`, by a slot map read now.
    pub(crate) async fn masters(&self) -> Result<Vec<(String, u16)>> {
        let ranges = self.fresh_ranges().await?;
        let mut masters: Vec<(String, u16)> =
            ranges.iter().map(|(_, _, h, p)| (h.clone(), *p)).collect();
        masters.sort();
        masters.dedup();
        Ok(masters)
    }

    /// The slot map, read now (listing and WATCH must not act on a map a
    /// second old: a slot may just have moved).
    async fn fresh_ranges(&self) -> Result<Arc<[SlotRange]>> {
        self.slots
            .ranges(&mut self.conn(), Duration::ZERO)
            .await
            .map_err(|e| Error::redis("reading the cluster's slots", &self.addr, e))
    }

    /// Every key matching `pattern` on every master, by SCAN.
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        for (host, port) in self.masters().await? {
            let mut cursor: u64 = 0;
            loop {
                let reply = self
                    .conn()
                    .route_command(
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .clone(),
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port,
                        }),
                    )
                    .await
                    .map_err(|e| {
                        Error::redis("scanning for leases", &format!("{host}:{port}"), e)
                    })?;
                let (next, batch): (u64, Vec<Vec<u8>>) =
                    redis::FromRedisValue::from_redis_value(reply).map_err(|e| {
                        Error::redis("scanning for leases", &format!("{host}:{port}"), e.into())
                    })?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(keys)
    }

    /// How long one command waits for its reply.
    pub(crate) fn response_timeout(&self) -> Duration {
        self.settings.timeouts.response
    }

    /// A client of the node at `host:port`, with the seed's settings (user,
    /// password, database, TLS or not, certificates).
    pub(crate) fn client_to(&self, host: &str, port: u16) -> Result<redis::Client> {
        let info = parse_url(&self.settings.seeds[0])?;
        let addr = match info.addr() {
            redis::ConnectionAddr::TcpTls { insecure, .. } => redis::ConnectionAddr::TcpTls {
                host: host.to_owned(),
                port,
                insecure: *insecure,
                tls_params: None,
            },
            _ => redis::ConnectionAddr::Tcp(host.to_owned(), port),
        };
        open_info(
            info.set_addr(addr),
            self.settings.certs.clone(),
            &format!("{host}:{port}"),
        )
    }

    /// A connection of its own to the master that owns `key`'s slot (WATCH
    /// belongs to one connection on one node).
    pub(crate) async fn dedicated(&self, key: &[u8]) -> Result<MultiplexedConnection> {
        let slot = key_slot(key);
        let Some((host, port)) = master_of(&self.fresh_ranges().await?, slot) else {
            return Err(Error::redis(
                "finding the master of a slot",
                &self.addr,
                std::io::Error::other(format!("no master serves slot {slot}")).into(),
            ));
        };
        let at = format!("{host}:{port}");
        let client = self.client_to(&host, port)?;
        let timeouts = self.settings.timeouts;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.response));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| Error::redis("opening a transaction connection", &at, e))
    }
}

/// What leasehold's cluster clients are made of: the seeds, as given, the
/// timeouts, and the TLS certificates (read once, at connect).
#[derive(Clone)]
pub(crate) struct Settings {
    seeds: Vec<String>,
    timeouts: Timeouts,
    /// `None`: the system's roots for `rediss://` seeds, or no TLS.
    certs: Option<redis::TlsCertificates>,
}

impl Settings {
    /// A cluster client's settings: `timeouts`, the certificates, and
    /// retries that stay within a lease's deadlines (MOVED, ASK, TRYAGAIN,
    /// CLUSTERDOWN are retried with back-off by the client; the lease code
    /// retries what is left).
    pub(crate) fn builder(&self, timeouts: Timeouts) -> ClusterClientBuilder {
        let builder =
            ClusterClientBuilder::new(self.seeds.iter().map(String::as_str).collect::<Vec<_>>())
                .connection_timeout(timeouts.connect)
                .response_timeout(timeouts.response)
                .retries(4)
                .min_retry_wait(10)
                .max_retry_wait(200);
        match &self.certs {
            Some(certs) => builder.certs(certs.clone()),
            None => builder,
        }
    }

    /// The timeouts the client was built with.
    pub(crate) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }
}

/// `(first slot, last slot, master host, master port)` of each range of
/// a `CLUSTER SLOTS` reply.
fn slot_ranges(reply: &redis::Value) -> Vec<SlotRange> {
    let redis::Value::Array(ranges) = reply else {
        return Vec::new();
    };
    ranges
        .iter()
        .filter_map(|r| {
            let redis::Value::Array(r) = r else {
                return None;
            };
            let int = |v: &redis::Value| match v {
                redis::Value::Int(n) => Some(*n),
                _ => None,
            };
            let lo = int(r.first()?)? as u16;
            let hi = int(r.get(1)?)? as u16;
            let redis::Value::Array(master) = r.get(2)? else {
                return None;
            };
            let host = match master.first()? {
                redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                redis::Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            let port = int(master.get(1)?)? as u16;
            Some((lo, hi, host, port))
        })
        .collect()
}

/// Batch calls in flight per master. A batch of the whole client split
/// three ways (as many calls per batch as masters) paid each call's cost,
/// in the client (a socket write that wakes the node) and in Redis (a
/// request and a script call to set up), three times: 0.25 calls per W2
/// cycle against 0.10 on one server. A queue per master with one call in
/// flight lets each master's batch grow while its call runs, without
/// waiting for the other masters: 0.11 calls per cycle, and W6's CPU per
/// cycle 10–15 % lower, its throughput no lower.
const MASTER_BATCHES: usize = 1;

/// How old the slot map may be before a batch reads it again.
const MAP_AGE: Duration = Duration::from_secs(1);

/// `(first slot, last slot, master host, master port)`.
type SlotRange = (u16, u16, String, u16);

/// The masters' slot ranges, as last read, and when.
#[derive(Default)]
pub(crate) struct SlotMap {
    ranges: std::sync::Mutex<Option<(tokio::time::Instant, Arc<[SlotRange]>)>>,
}

impl SlotMap {
    /// The ranges as last read (however old), if they ever were.
    fn cached(&self) -> Option<Arc<[SlotRange]>> {
        let r = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
        r.as_ref().map(|(_, ranges)| Arc::clone(ranges))
    }

    /// The ranges, read again (`CLUSTER SLOTS` of any node) when the last
    /// read is `max_age` old or more. A failed read is not kept.
    async fn ranges(
        &self,
        conn: &mut ClusterConnection,
        max_age: Duration,
    ) -> redis::RedisResult<Arc<[SlotRange]>> {
        {
            let r = self.ranges.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, ranges)) = r.as_ref()
                && at.elapsed() < max_age
            {
                return Ok(Arc::clone(ranges));
            }
        }
        let reply = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let ranges: Arc<[SlotRange]> = slot_ranges(&reply).into();
        *self.ranges.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((tokio::time::Instant::now(), Arc::clone(&ranges)));
        Ok(ranges)
    }
}

/// The master that serves `slot`, by `ranges`.
fn master_of(ranges: &[SlotRange], slot: u16) -> Option<(String, u16)> {
    ranges
        .iter()
        .find(|(lo, hi, _, _)| (*lo..=*hi).contains(&slot))
        .map(|(_, _, h, p)| (h.clone(), *p))
}

/// Runs a batch on a cluster: one `batch_node` call per master, all at
/// once; an operation whose master is unknown, or whose node's call
/// failed as a whole, answers `(-9, 0)` (run alone, routed by its key).
pub(crate) async fn batch(
    conn: &ClusterConnection,
    slots: &SlotMap,
    ops: &[(crate::scripts::BatchOp, &crate::keys::LeaseKeys, &[u8])],
    publisher: &[u8],
) -> Vec<(i64, i64)> {
    let mut out = vec![(-9, 0); ops.len()];
    // A map that cannot be read sends every operation alone.
    let ranges = slots
        .ranges(&mut conn.clone(), MAP_AGE)
        .await
        .unwrap_or_else(|_| Arc::from([]));
    let mut groups: Vec<((String, u16), Vec<usize>)> = Vec::new();
    for (i, (_, keys, _)) in ops.iter().enumerate() {
        let Some(m) = master_of(&ranges, key_slot(keys.name())) else {
            continue;
        };
        match groups.iter_mut().find(|(g, _)| *g == m) {
            Some((_, v)) => v.push(i),
            None => groups.push((m, vec![i])),
        }
    }
    let runs = groups.into_iter().map(|((host, port), idx)| {
        let mut routed = Routed {
            conn: conn.clone(),
            to: RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port }),
        };
        let group: Vec<_> = idx.iter().map(|&i| ops[i]).collect();
        async move {
            let answers = crate::scripts::batch_on_node(&mut routed, &group, publisher).await;
            (idx, answers)
        }
    });
    for (idx, answers) in futures_util::future::join_all(runs).await {
        if let Ok(answers) = answers {
            for (i, a) in idx.into_iter().zip(answers) {
                out[i] = a;
            }
        }
    }
    out
}

/// A cluster connection whose every command goes to one node.
struct Routed {
    conn: ClusterConnection,
    to: RoutingInfo,
}

impl redis::aio::ConnectionLike for Routed {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(self.conn.route_command(cmd.clone(), self.to.clone()))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.conn.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        0
    }
}
