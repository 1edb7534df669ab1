//! The faults, and the scheduler that injects them while the workers run.
//!
//! Every fault is undone by the time its `inject` returns (a paused server
//! resumed, a memory limit lifted, a proxy healed), so faults can be drawn
//! at random in any order. Each injection is logged as an [`Op::Fault`]
//! event from its start (`t`) to its end (`valid_until`); the checkers
//! measure recovery from the end.
//!
//! With `--cluster` the lock is a Redis Cluster, and the faults of one
//! server hit the master that serves the lease's slot (as of the last
//! settle): its scripts flushed, its clients killed or paused, the process
//! stopped, its memory squeezed, a long script run on it. Three faults exist
//! only there: the slot moved to another master and back, a graceful
//! failover, and a killed master whose replica takes over. The faults that
//! need one server's process or a proxy in front of it have no counterpart
//! ([`Fault::on_cluster`]).
//!
//! With `--sentinel` the lock is a master, its replica and three
//! sentinels; the faults of one server's commands hit the master of the
//! moment, and two exist only there: a graceful failover (`SENTINEL
//! FAILOVER`) and a killed master.
//!
//! With `--redlock` the lock is 5 independent masters. `SCRIPT FLUSH`,
//! `CLIENT KILL` and `CLIENT PAUSE` hit every master at once; the faults of
//! one process hit some of them, drawn at random ([`Fault::MemberStop`],
//! [`Fault::MemberKill`], [`Fault::BareQuorumRestart`],
//! [`Fault::MemberClockJump`]). Faults on members run one at a time (see
//! [`Lab::inject`]), so two of them never add up to a majority by chance:
//! a scenario stops a majority only when it says so.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::history::{Event, Kind, Op, Sink, now};
use crate::workers::Processes;

/// One kind of fault, with how long it lasts where that applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `SCRIPT FLUSH`: every cached script is gone (NOSCRIPT next).
    ScriptFlush,
    /// `CLIENT KILL TYPE normal`: every command connection is cut.
    KillNormal,
    /// `CLIENT KILL TYPE pubsub`: every subscriber connection is cut.
    KillPubsub,
    /// `CLIENT PAUSE ms ALL`: the server answers nobody for that long.
    ClientPause(Duration),
    /// SIGSTOP of redis-server for that long, then SIGCONT.
    ServerStop(Duration),
    /// SIGKILL of redis-server, down for that long, then a restart (which
    /// keeps the data only if the server runs with an append-only file).
    ServerKill(Duration),
    /// The proxy holds every reply that long (past the ttl, say), for the
    /// second duration.
    ProxyDelay(Duration, Duration),
    /// The proxy resets a connection after its next command, before the
    /// reply.
    ProxyReset,
    /// The proxy forwards nothing for that long, closing nothing.
    ProxyBlackhole(Duration),
    /// `maxmemory 1` with `noeviction` for that long: every write is
    /// refused with OOM.
    Oom(Duration),
    /// `maxmemory 1` with `allkeys-lru` for that long: keys are evicted,
    /// the lease and its fence counter among them.
    Evict(Duration),
    /// `REPLICAOF` another (empty) server for that long: writes fail with
    /// READONLY and the data is replaced by the master's; then
    /// `REPLICAOF NO ONE`.
    ReadOnly(Duration),
    /// A script that runs for that long: others get BUSY until `SCRIPT KILL`.
    Busy(Duration),
    /// `SAVE` of a large dataset then a restart: clients get LOADING while
    /// it loads, and the data comes back as of the snapshot.
    Loading,
    /// SIGSTOP of a process that holds the lock (caught between its read
    /// and its write if possible) for that long, then SIGCONT.
    HolderStop(Duration),
    /// SIGKILL of a process that holds the lock; a new process takes its
    /// place.
    HolderKill,
    /// SIGKILL of a `leasehold run` supervisor whose command holds the
    /// lease (the OOM killer, a deploy tool); its command must not outlive
    /// it past the ttl.
    RunKill,
    /// A holder process gets a fifth of the CPU (stopped 40 ms of every 50)
    /// for that long.
    HolderStarve(Duration),
    /// The Redis host's wall clock jumps forward that many seconds for the
    /// duration, then back.
    ClockJump(i64, Duration),
    /// Cluster only: the lease's slot moves to another master (or back
    /// home), in steps: `MIGRATING`/`IMPORTING` set (the lease's keys
    /// answer `ASK` when missing), after the duration one key migrated (the
    /// lease's keys split between two nodes: `TRYAGAIN` for its scripts),
    /// after the duration again the rest, and the slot assigned.
    SlotMove(Duration),
    /// Cluster only: `CLUSTER FAILOVER` on the replica of the lease's
    /// master; the master stops writes until the replica has caught up, so
    /// nothing acknowledged is lost.
    Failover,
    /// Cluster only: SIGKILL of the lease's master; its replica is elected
    /// in its place (node timeout plus a second or two), then the killed
    /// node is restarted empty and rejoins as the new master's replica.
    /// Writes not yet replicated are lost, as after `restart-volatile`.
    MasterKill,
    /// Sentinel only: `SENTINEL FAILOVER`; the replica is promoted, the
    /// clients follow it, and the old master becomes its replica (some
    /// 10 s in all).
    SentinelFailover,
    /// Sentinel only: SIGKILL of the master; the sentinels promote the
    /// replica (down-after plus an election), and the killed one comes
    /// back, empty, as its replica. Writes not yet replicated are lost.
    SentinelMasterKill,
    /// Redlock only: SIGSTOP of that many masters (drawn at random) for
    /// the duration, then SIGCONT.
    MemberStop(usize, Duration),
    /// Redlock only: SIGKILL of that many masters, down for the duration,
    /// then restarted: with their data under `aof` (`appendfsync always`),
    /// empty without.
    MemberKill(usize, Duration),
    /// Redlock only, Kleppmann's restart: two masters stopped; after the
    /// duration (a holder then has a bare quorum of the other three) one of
    /// the three is killed and restarted at once (empty without `aof`), and
    /// the two resume: a quorum of it and the two can grant the lease again
    /// while the first holder still believes it holds.
    BareQuorumRestart(Duration),
    /// Redlock only: the wall clock of one master (the first, run under
    /// libfaketime) jumps forward that many seconds for the duration, then
    /// back.
    MemberClockJump(i64, Duration),
}

impl Fault {
    /// A short name for logs and tables.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::ScriptFlush => "script-flush",
            Fault::KillNormal => "client-kill-normal",
            Fault::KillPubsub => "client-kill-pubsub",
            Fault::ClientPause(_) => "client-pause",
            Fault::ServerStop(_) => "server-sigstop",
            Fault::ServerKill(_) => "server-sigkill",
            Fault::ProxyDelay(..) => "proxy-delay",
            Fault::ProxyReset => "proxy-reset",
            Fault::ProxyBlackhole(_) => "proxy-blackhole",
            Fault::Oom(_) => "oom",
            Fault::Evict(_) => "evict",
            Fault::ReadOnly(_) => "readonly",
            Fault::Busy(_) => "busy",
            Fault::Loading => "loading",
            Fault::HolderStop(_) => "sigstop-holder",
            Fault::HolderKill => "sigkill-holder",
            Fault::HolderStarve(_) => "starve-holder",
            Fault::RunKill => "sigkill-run",
            Fault::ClockJump(..) => "clock-jump",
            Fault::SlotMove(_) => "slot-move",
            Fault::Failover => "failover",
            Fault::MasterKill => "master-kill",
            Fault::SentinelFailover => "sentinel-failover",
            Fault::SentinelMasterKill => "sentinel-master-kill",
            Fault::MemberStop(1, _) => "member-sigstop-1",
            Fault::MemberStop(2, _) => "member-sigstop-2",
            Fault::MemberStop(3, _) => "member-sigstop-3",
            Fault::MemberStop(..) => "member-sigstop-n",
            Fault::MemberKill(..) => "member-sigkill",
            Fault::BareQuorumRestart(_) => "bare-quorum-restart",
            Fault::MemberClockJump(..) => "member-clock-jump",
        }
    }

    /// Whether the fault can be injected into a Redis Cluster (see the
    /// module's documentation for how).
    ///
    /// Not there: a restart of *the* server (the cluster's counterpart is
    /// [`Fault::MasterKill`], its data kept by a replica rather than a
    /// file), `REPLICAOF` (refused in cluster mode: [`Fault::Failover`]
    /// makes a master a replica), LOADING (its filler script would touch
    /// keys of other nodes' slots), the clock of one libfaketime server,
    /// the proxy (the cluster client connects to the nodes the cluster
    /// names, not through a proxy).
    pub fn on_cluster(&self) -> bool {
        !matches!(
            self,
            Fault::ServerKill(_)
                | Fault::ProxyDelay(..)
                | Fault::ProxyReset
                | Fault::ProxyBlackhole(_)
                | Fault::ReadOnly(_)
                | Fault::Loading
                | Fault::ClockJump(..)
        ) && !self.redlock_only()
            && !self.sentinel_only()
    }

    /// Whether the fault can be injected into a Sentinel deployment (its
    /// commands hit the master of the moment): those of the workers'
    /// processes, the commands, and the failovers.
    ///
    /// Not there: the faults of *the* server's process (a restart of the
    /// master is [`Fault::SentinelMasterKill`]), a proxy (the client
    /// connects where the sentinels say), `REPLICAOF` (Sentinel would
    /// undo it), LOADING and a faked clock.
    pub fn on_sentinel(&self) -> bool {
        matches!(
            self,
            Fault::ScriptFlush
                | Fault::KillNormal
                | Fault::KillPubsub
                | Fault::ClientPause(_)
                | Fault::Oom(_)
                | Fault::Evict(_)
                | Fault::Busy(_)
                | Fault::HolderStop(_)
                | Fault::HolderKill
                | Fault::RunKill
                | Fault::HolderStarve(_)
        ) || self.sentinel_only()
    }

    /// Whether the fault needs a Sentinel deployment.
    pub fn sentinel_only(&self) -> bool {
        matches!(self, Fault::SentinelFailover | Fault::SentinelMasterKill)
    }

    /// Whether the fault needs a Redis Cluster.
    pub fn cluster_only(&self) -> bool {
        matches!(
            self,
            Fault::SlotMove(_) | Fault::Failover | Fault::MasterKill
        )
    }

    /// Whether the fault can be injected into independent masters
    /// (Redlock): the faults of the workers' processes, the commands that
    /// then hit every master, and the faults of members.
    ///
    /// Not there: the faults of *the* server (a stop, a restart, a clock:
    /// their counterparts pick members), of a proxy, and those that need
    /// one server's memory, role or script engine (OOM, eviction,
    /// READONLY, BUSY, LOADING), which on one member of five are a member
    /// failing, as a stop already is.
    pub fn on_redlock(&self) -> bool {
        matches!(
            self,
            Fault::ScriptFlush
                | Fault::KillNormal
                | Fault::KillPubsub
                | Fault::ClientPause(_)
                | Fault::HolderStop(_)
                | Fault::HolderKill
                | Fault::RunKill
                | Fault::HolderStarve(_)
        ) || self.redlock_only()
    }

    /// Whether the fault needs independent masters (Redlock).
    pub fn redlock_only(&self) -> bool {
        self.on_members()
    }

    /// Whether the fault stops, kills or skews members of a Redlock
    /// deployment (one such fault at a time).
    fn on_members(&self) -> bool {
        matches!(
            self,
            Fault::MemberStop(..)
                | Fault::MemberKill(..)
                | Fault::BareQuorumRestart(_)
                | Fault::MemberClockJump(..)
        )
    }

    /// Whether it leaves fewer than `quorum` of `masters` answering while
    /// it lasts (no grant can then be made), or only a minority silent
    /// (grants must go on).
    pub fn stops(&self, masters: usize, quorum: usize) -> Option<bool> {
        match self {
            Fault::MemberStop(n, _) => Some(masters - n < quorum),
            _ => None,
        }
    }

    /// Whether the fault fails a master over (the cluster then needs a
    /// replica of each master).
    pub fn fails_over(&self) -> bool {
        matches!(self, Fault::Failover | Fault::MasterKill)
    }
}

/// The lock's Redis.
pub enum Lock {
    /// One redis-server.
    Server {
        /// The server. A std mutex: restarts block, and run on a blocking
        /// thread.
        server: Arc<Mutex<testkit::RedisServer>>,
        /// Its port (the same across restarts).
        port: u16,
    },
    /// A Redis Cluster; the faults of one server hit the master of `slot`.
    Cluster {
        /// The cluster. An async mutex: its changes block for seconds (on
        /// a blocking thread), and fault tasks wait for them without
        /// holding a runtime thread.
        cluster: Arc<tokio::sync::Mutex<testkit::RedisCluster>>,
        /// The lease's hash slot.
        slot: u16,
        /// The master that served it at the start: a slot move goes away
        /// from it and back.
        home: usize,
        /// The cluster's `cluster-node-timeout`.
        node_timeout: Duration,
        /// When each master (by node index) was last failed over.
        failed_over: Mutex<HashMap<usize, Instant>>,
    },
    /// A master, its replica and three sentinels; the faults of one server
    /// hit the master of the moment.
    Sentinel {
        /// The deployment. An async mutex: a failover blocks for seconds
        /// (on a blocking thread).
        sentinel: Arc<tokio::sync::Mutex<testkit::RedisSentinel>>,
    },
    /// Independent masters (Redlock). Std mutexes, as for one server.
    Redlock {
        /// The masters, in the order the workers are given them.
        masters: Vec<Arc<Mutex<testkit::RedisServer>>>,
        /// Their ports (the same across restarts).
        ports: Vec<u16>,
    },
}

/// Everything a fault may act on.
pub struct Lab {
    /// The lock's Redis: one server or a cluster.
    pub lock: Lock,
    /// The proxy the workers go through, if any.
    pub proxy: Option<testkit::FaultProxy>,
    /// An empty server for `REPLICAOF`, if any.
    pub master: Option<testkit::RedisServer>,
    /// The worker processes, if any.
    pub procs: Option<Arc<Processes>>,
    /// The `leasehold run` workers, if any.
    pub runs: Option<Arc<crate::workers::RunWorkers>>,
    /// Where fault events go.
    pub sink: Sink,
    /// Held by a fault on members while it lasts: one at a time.
    pub members_busy: tokio::sync::Mutex<()>,
    /// The masters (by index) stopped or killed right now: the faults of
    /// every master leave them out rather than wait for them.
    pub members_down: Mutex<Vec<usize>>,
}

/// Why an admin command failed: its connection was cut, or anything else.
enum CommandError {
    Connection(String),
    Other(String),
}

/// How long an admin command may take before the fault gives up on it.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

impl Lab {
    /// The port of the node the faults of one server hit: the server, or
    /// the master of the lease's slot.
    async fn target(&self) -> u16 {
        match &self.lock {
            Lock::Server { port, .. } => *port,
            Lock::Cluster { cluster, slot, .. } => {
                let cluster = cluster.lock().await;
                cluster.node(cluster.master_of_slot(*slot)).port()
            }
            Lock::Redlock { ports, .. } => ports[0],
            Lock::Sentinel { sentinel } => sentinel.lock().await.master_port(),
        }
    }

    /// The ports of the nodes that hold data: the server, or every master.
    pub async fn data_nodes(&self) -> Vec<u16> {
        match &self.lock {
            Lock::Server { port, .. } => vec![*port],
            Lock::Cluster { cluster, .. } => {
                let cluster = cluster.lock().await;
                let masters = cluster.masters();
                masters
                    .into_iter()
                    .map(|m| cluster.node(m).port())
                    .collect()
            }
            Lock::Redlock { ports, .. } => ports.clone(),
            Lock::Sentinel { sentinel } => vec![sentinel.lock().await.master_port()],
        }
    }

    /// Runs `args` on the server, the lease's master on a cluster, or
    /// every running master of a Redlock deployment (all of them tried;
    /// the first error returned).
    async fn command_each(&self, args: &[&str]) -> Result<redis::Value, String> {
        let Lock::Redlock { ports, .. } = &self.lock else {
            return self.command(args).await;
        };
        let down = self.down().clone();
        let all = ports
            .iter()
            .enumerate()
            .filter(|(i, _)| !down.contains(i))
            .map(|(_, p)| self.command_on(*p, args));
        let replies = futures_util::future::join_all(all).await;
        let mut last = Ok(redis::Value::Nil);
        for r in replies {
            match r {
                Err(e) => return Err(e),
                ok => last = ok,
            }
        }
        last
    }

    /// The masters of a Redlock deployment.
    fn members(&self) -> Result<&[Arc<Mutex<testkit::RedisServer>>], String> {
        match &self.lock {
            Lock::Redlock { masters, .. } => Ok(masters),
            _ => Err("needs independent masters (--redlock)".into()),
        }
    }

    fn down(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.members_down.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks masters down (`true`) or up again.
    fn mark(&self, members: &[usize], down: bool) {
        let mut list = self.down();
        list.retain(|i| !members.contains(i));
        if down {
            list.extend_from_slice(members);
        }
    }

    /// `n` masters drawn at random, by index.
    fn draw(&self, n: usize) -> Result<Vec<usize>, String> {
        let count = self.members()?.len();
        if n > count {
            return Err(format!("{n} masters asked, {count} there"));
        }
        Ok(rand::seq::index::sample(&mut rand::rng(), count, n).into_vec())
    }

    fn member(&self, i: usize) -> Result<std::sync::MutexGuard<'_, testkit::RedisServer>, String> {
        Ok(self.members()?[i].lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Kills master `i` at once and restarts it after `down` (on a
    /// blocking thread: a restart waits for its PING).
    async fn kill_member(&self, i: usize, down: Duration) -> Result<(), String> {
        self.member(i)?.kill();
        tokio::time::sleep(down).await;
        let server = Arc::clone(&self.members()?[i]);
        tokio::task::spawn_blocking(move || {
            server
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .restart()
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// A fresh connection straight to the node at `port` (never through the
    /// proxy, and new each time so that killed connections do not matter).
    async fn admin(&self, port: u16) -> Result<redis::aio::MultiplexedConnection, String> {
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{port}")).map_err(|e| e.to_string())?;
        tokio::time::timeout(ADMIN_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| "admin connection timed out".to_string())?
            .map_err(|e| e.to_string())
    }

    /// Runs one admin command on the server (on a cluster: the lease's
    /// master); errors are returned as text. A connection cut under it (a
    /// `CLIENT KILL` injected at the same moment) is tried once more on a
    /// new one.
    pub async fn command(&self, args: &[&str]) -> Result<redis::Value, String> {
        let port = self.target().await;
        self.command_on(port, args).await
    }

    /// As [`command`](Self::command), on the node at `port`.
    pub async fn command_on(&self, port: u16, args: &[&str]) -> Result<redis::Value, String> {
        match self.command_once(port, args).await {
            Err(CommandError::Connection(_)) => self.command_once(port, args).await,
            other => other,
        }
        .map_err(|(CommandError::Connection(e) | CommandError::Other(e))| e)
    }

    async fn command_once(&self, port: u16, args: &[&str]) -> Result<redis::Value, CommandError> {
        let mut conn = self.admin(port).await.map_err(CommandError::Other)?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        tokio::time::timeout(ADMIN_TIMEOUT, cmd.query_async::<redis::Value>(&mut conn))
            .await
            .map_err(|_| CommandError::Other(format!("{} timed out", args[0])))?
            .map_err(|e| {
                if e.is_io_error() || e.is_connection_dropped() {
                    CommandError::Connection(e.to_string())
                } else {
                    CommandError::Other(e.to_string())
                }
            })
    }

    fn server(&self) -> Result<&Arc<Mutex<testkit::RedisServer>>, String> {
        match &self.lock {
            Lock::Server { server, .. } => Ok(server),
            Lock::Cluster { .. } => Err("not on a cluster".into()),
            Lock::Redlock { .. } => Err("not on independent masters".into()),
            Lock::Sentinel { .. } => Err("not through Sentinel".into()),
        }
    }

    async fn restart(&self) -> Result<(), String> {
        let server = Arc::clone(self.server()?);
        tokio::task::spawn_blocking(move || {
            server
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .restart()
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    fn with_server(&self, f: impl FnOnce(&mut testkit::RedisServer)) -> Result<(), String> {
        f(&mut self.server()?.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(())
    }

    /// Runs `f` on the cluster on a blocking thread (its changes block
    /// until the cluster has settled) and returns what it returns, or why
    /// it failed (a panic too: a master without a replica, say).
    async fn with_cluster<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut testkit::RedisCluster, u16, usize) -> Result<T, testkit::Error>
        + Send
        + 'static,
    ) -> Result<T, String> {
        let Lock::Cluster {
            cluster,
            slot,
            home,
            ..
        } = &self.lock
        else {
            return Err("needs a cluster (--cluster)".into());
        };
        let (slot, home) = (*slot, *home);
        let mut cluster = Arc::clone(cluster).lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut cluster, slot, home).map_err(|e| e.to_string()))
            .await
            .map_err(|e| format!("panicked: {e}"))?
    }

    /// Injects `fault` and undoes it; logs it. `Ok(false)`: nothing to do
    /// (no holder to stop, say).
    ///
    /// Faults on members wait for the one before to end, and their start
    /// is taken after that wait: the checkers read when a majority was
    /// stopped from it.
    pub async fn inject(&self, fault: Fault) -> Result<bool, String> {
        let _one_at_a_time = if fault.on_members() {
            Some(self.members_busy.lock().await)
        } else {
            None
        };
        let start = now();
        let done = self.apply(fault).await;
        if matches!(done, Ok(true)) {
            let mut e = Event::new("faults", Kind::Ok, Op::Fault);
            e.t = start;
            e.valid_until = Some(now());
            e.why = Some(fault.name().into());
            self.sink.log(e);
        }
        done
    }

    async fn apply(&self, fault: Fault) -> Result<bool, String> {
        match fault {
            Fault::ScriptFlush => self.command_each(&["SCRIPT", "FLUSH"]).await.map(|_| true),
            Fault::KillNormal => self
                .command_each(&["CLIENT", "KILL", "TYPE", "normal"])
                .await
                .map(|_| true),
            Fault::KillPubsub => self
                .command_each(&["CLIENT", "KILL", "TYPE", "pubsub"])
                .await
                .map(|_| true),
            Fault::ClientPause(d) => {
                self.command_each(&["CLIENT", "PAUSE", &d.as_millis().to_string(), "ALL"])
                    .await?;
                tokio::time::sleep(d).await;
                Ok(true)
            }
            Fault::ServerStop(d) if matches!(self.lock, Lock::Cluster { .. }) => {
                // Shorter than the node timeout: paused, not failed over.
                let node = self
                    .with_cluster(|c, slot, _| {
                        let node = c.master_of_slot(slot);
                        c.pause(node);
                        Ok(node)
                    })
                    .await?;
                tokio::time::sleep(d).await;
                self.with_cluster(move |c, _, _| {
                    c.resume(node);
                    Ok(true)
                })
                .await
            }
            Fault::ServerStop(d) => {
                self.with_server(|s| s.pause())?;
                tokio::time::sleep(d).await;
                self.with_server(|s| s.resume())?;
                Ok(true)
            }
            Fault::ServerKill(d) => {
                self.with_server(|s| s.kill())?;
                tokio::time::sleep(d).await;
                self.restart().await.map(|()| true)
            }
            Fault::ProxyDelay(delay, hold) => {
                let proxy = self.proxy.as_ref().ok_or("no proxy")?;
                proxy.delay_replies(delay);
                tokio::time::sleep(hold).await;
                proxy.heal();
                Ok(true)
            }
            Fault::ProxyReset => {
                self.proxy
                    .as_ref()
                    .ok_or("no proxy")?
                    .reset_after_next_command();
                Ok(true)
            }
            Fault::ProxyBlackhole(d) => {
                let proxy = self.proxy.as_ref().ok_or("no proxy")?;
                proxy.blackhole();
                tokio::time::sleep(d).await;
                proxy.heal();
                Ok(true)
            }
            Fault::Oom(d) => self.squeeze("noeviction", d).await,
            Fault::Evict(d) => self.squeeze("allkeys-lru", d).await,
            Fault::ReadOnly(d) => {
                let master = self.master.as_ref().ok_or("no master to replicate")?;
                self.command(&["REPLICAOF", "127.0.0.1", &master.port().to_string()])
                    .await?;
                tokio::time::sleep(d).await;
                self.command(&["REPLICAOF", "NO", "ONE"])
                    .await
                    .map(|_| true)
            }
            Fault::Busy(d) => {
                let port = self.target().await;
                self.command_on(port, &["CONFIG", "SET", "busy-reply-threshold", "50"])
                    .await?;
                let mut conn = self.admin(port).await?;
                let runner = tokio::spawn(async move {
                    let busy = redis::Script::new(
                        "local s = redis.call('TIME') local t0 = s[1] * 1000000 + s[2] \
                         while true do local n = redis.call('TIME') \
                         if n[1] * 1000000 + n[2] - t0 > tonumber(ARGV[1]) then break end end return 1",
                    );
                    let _: redis::RedisResult<i64> = busy
                        .arg(d.as_micros() as u64 * 2)
                        .invoke_async(&mut conn)
                        .await;
                });
                tokio::time::sleep(d).await;
                // The script is read-only, so SCRIPT KILL can end it.
                let _ = self.command_on(port, &["SCRIPT", "KILL"]).await;
                let _ = tokio::time::timeout(ADMIN_TIMEOUT, runner).await;
                Ok(true)
            }
            Fault::Loading => {
                // 400k small keys load in a noticeable fraction of a second.
                let size: i64 = match self.command(&["DBSIZE"]).await? {
                    redis::Value::Int(n) => n,
                    _ => 0,
                };
                if size < 400_000 {
                    for chunk in 0..8 {
                        let fill = format!(
                            "for i = {}, {} do redis.call('SET', 'junk:' .. i, 'x', 'PX', 3600000) end return 1",
                            chunk * 50_000,
                            chunk * 50_000 + 49_999
                        );
                        self.command(&["EVAL", &fill, "0"]).await?;
                    }
                }
                self.command(&["SAVE"]).await?;
                self.with_server(|s| s.kill())?;
                self.restart().await.map(|()| true)
            }
            Fault::HolderStop(d) => {
                let procs = self.procs.as_ref().ok_or("no worker processes")?;
                let Some(pid) = procs.holder() else {
                    return Ok(false);
                };
                procs.signal(pid, libc::SIGSTOP);
                tokio::time::sleep(d).await;
                procs.signal(pid, libc::SIGCONT);
                Ok(true)
            }
            Fault::HolderKill => {
                let procs = self.procs.as_ref().ok_or("no worker processes")?;
                let Some(pid) = procs.holder() else {
                    return Ok(false);
                };
                procs.signal(pid, libc::SIGKILL);
                procs.spawn(procs.run_for())?;
                Ok(true)
            }
            Fault::RunKill => {
                let runs = self.runs.as_ref().ok_or("no leasehold run workers")?;
                let Some(pid) = runs.holder() else {
                    return Ok(false);
                };
                runs.kill(pid);
                Ok(true)
            }
            Fault::HolderStarve(d) => {
                let procs = self.procs.as_ref().ok_or("no worker processes")?;
                let Some(pid) = procs.holder() else {
                    return Ok(false);
                };
                let until = tokio::time::Instant::now() + d;
                while tokio::time::Instant::now() < until {
                    procs.signal(pid, libc::SIGSTOP);
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    procs.signal(pid, libc::SIGCONT);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(true)
            }
            Fault::ClockJump(secs, d) => {
                let jump = |offset| {
                    let server = self.server()?.lock().unwrap_or_else(|e| e.into_inner());
                    server.shift_clock(offset).map_err(|e| e.to_string())
                };
                jump(secs)?;
                tokio::time::sleep(d).await;
                jump(0)?;
                Ok(true)
            }
            Fault::SlotMove(d) => {
                let to = self
                    .with_cluster(|c, slot, home| {
                        let from = c.master_of_slot(slot);
                        let to = if from == home {
                            let other = c.masters().into_iter().find(|m| *m != from);
                            other.expect("a cluster of several masters")
                        } else {
                            home
                        };
                        c.begin_slot_move(slot, to)?;
                        Ok(to)
                    })
                    .await?;
                tokio::time::sleep(d).await;
                let split = self
                    .with_cluster(move |c, slot, _| c.migrate_keys(slot, to, 1))
                    .await;
                tokio::time::sleep(d).await;
                // Finished even if the split failed: no slot is left half-way.
                let finished = self
                    .with_cluster(move |c, slot, _| c.finish_slot_move(slot, to))
                    .await;
                split.and(finished).map(|_| true)
            }
            Fault::Failover => {
                let Lock::Cluster {
                    node_timeout,
                    failed_over,
                    ..
                } = &self.lock
                else {
                    return Err("needs a cluster (--cluster)".into());
                };
                let master = self
                    .with_cluster(|c, slot, _| Ok(c.master_of_slot(slot)))
                    .await?;
                // The masters vote for a replica of one master once per two
                // node timeouts: a failover of the same master sooner stops
                // its writes for 5 s, then is given up. Not yet, then.
                let last = failed_over
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&master)
                    .copied();
                if last
                    .is_some_and(|t| t.elapsed() < *node_timeout * 2 + Duration::from_millis(500))
                {
                    return Ok(false);
                }
                self.with_cluster(move |c, _, _| c.failover(master)).await?;
                failed_over
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(master, Instant::now());
                Ok(true)
            }
            Fault::MasterKill => {
                self.with_cluster(|c, slot, _| {
                    let old = c.master_of_slot(slot);
                    c.kill_master(old)?;
                    // Back as the new master's replica, for the next kill.
                    c.restart(old)
                })
                .await?;
                Ok(true)
            }
            Fault::SentinelFailover | Fault::SentinelMasterKill => {
                let Lock::Sentinel { sentinel } = &self.lock else {
                    return Err("needs Sentinel (--sentinel)".into());
                };
                let mut sentinel = Arc::clone(sentinel).lock_owned().await;
                tokio::task::spawn_blocking(move || {
                    if fault == Fault::SentinelFailover {
                        sentinel.failover()
                    } else {
                        sentinel.kill_master()
                    }
                    .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| format!("panicked: {e}"))??;
                Ok(true)
            }
            Fault::MemberStop(n, d) => {
                let chosen = self.draw(n)?;
                self.mark(&chosen, true);
                for &i in &chosen {
                    self.member(i)?.pause();
                }
                tokio::time::sleep(d).await;
                for &i in &chosen {
                    self.member(i)?.resume();
                }
                self.mark(&chosen, false);
                Ok(true)
            }
            Fault::MemberKill(n, d) => {
                let chosen = self.draw(n)?;
                self.mark(&chosen, true);
                let killed = chosen.iter().map(|&i| self.kill_member(i, d));
                let restarted = futures_util::future::join_all(killed).await;
                self.mark(&chosen, false);
                restarted.into_iter().collect::<Result<Vec<()>, _>>()?;
                Ok(true)
            }
            Fault::BareQuorumRestart(d) => {
                let chosen = self.draw(3)?;
                let (stopped, restarted) = (&chosen[..2], chosen[2]);
                self.mark(&chosen, true);
                for &i in stopped {
                    self.member(i)?.pause();
                }
                tokio::time::sleep(d).await;
                let result = self.kill_member(restarted, Duration::ZERO).await;
                for &i in stopped {
                    self.member(i)?.resume();
                }
                self.mark(&chosen, false);
                result.map(|()| true)
            }
            Fault::MemberClockJump(secs, d) => {
                let jump = |offset| {
                    self.member(0)?
                        .shift_clock(offset)
                        .map_err(|e| e.to_string())
                };
                jump(secs)?;
                tokio::time::sleep(d).await;
                jump(0)?;
                Ok(true)
            }
        }
    }

    /// `maxmemory 1` under `policy` for `d`, then no limit again.
    async fn squeeze(&self, policy: &str, d: Duration) -> Result<bool, String> {
        self.command(&["CONFIG", "SET", "maxmemory-policy", policy])
            .await?;
        self.command(&["CONFIG", "SET", "maxmemory", "1"]).await?;
        tokio::time::sleep(d).await;
        self.command(&["CONFIG", "SET", "maxmemory", "0"]).await?;
        self.command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
            .await?;
        Ok(true)
    }

    /// Puts everything back after the run, whatever state the faults left:
    /// server running and resumed, proxy healed, a master again.
    pub async fn heal(&self) {
        if let Lock::Cluster { .. } = self.lock {
            // Every node running and resumed, and the cluster settled.
            let _ = self
                .with_cluster(|c, _, _| {
                    for node in 0..c.nodes().len() {
                        if c.node(node).server().pid().is_some() {
                            c.resume(node);
                        } else {
                            c.restart(node)?;
                        }
                    }
                    c.wait_settled()
                })
                .await;
            let _ = self.command(&["CONFIG", "SET", "maxmemory", "0"]).await;
            return;
        }
        if let Lock::Sentinel { .. } = self.lock {
            let _ = self.command(&["CONFIG", "SET", "maxmemory", "0"]).await;
            return;
        }
        if let Lock::Redlock { masters, .. } = &self.lock {
            for (i, server) in masters.iter().enumerate() {
                let down = {
                    let server = server.lock().unwrap_or_else(|e| e.into_inner());
                    server.resume();
                    server.pid().is_none()
                };
                if down {
                    let _ = self.kill_member(i, Duration::ZERO).await;
                }
            }
            return;
        }
        let _ = self.with_server(|s| s.resume());
        let down = self
            .server()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).pid().is_none())
            .unwrap_or(false);
        if down {
            let _ = self.restart().await;
        }
        if let Some(proxy) = &self.proxy {
            proxy.heal();
        }
        let _ = self.command(&["CONFIG", "SET", "maxmemory", "0"]).await;
        let _ = self.command(&["REPLICAOF", "NO", "ONE"]).await;
    }
}

/// A fault to draw, and how often on average.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// The fault.
    pub fault: Fault,
    /// The mean time between two injections (each gap is drawn uniformly
    /// from half to one and a half of it).
    pub every: Duration,
}

/// Injects each scheduled fault at random times until `stop` is set; one
/// task per entry. Returns the errors of faults that could not be injected.
pub async fn run(lab: Arc<Lab>, plan: Vec<Schedule>, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut tasks = Vec::new();
    for entry in plan {
        let (lab, stop) = (Arc::clone(&lab), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            loop {
                let gap = entry.every.mul_f64(rand::rng().random_range(0.5..1.5));
                // Sleep in short steps so a stop is noticed quickly.
                let until = tokio::time::Instant::now() + gap;
                while tokio::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20).min(gap)).await;
                }
                if stop.load(Ordering::Relaxed) {
                    return errors;
                }
                if let Err(e) = lab.inject(entry.fault).await {
                    errors.push(format!("{}: {e}", entry.fault.name()));
                }
            }
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        if let Ok(mut e) = t.await {
            errors.append(&mut e);
        }
    }
    errors
}
