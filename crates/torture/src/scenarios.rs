//! The scenarios: which workers, which server, which faults, for how long;
//! and running one from start to verdict.
//!
//! With `--cluster` the lock is a 3-master Redis Cluster (one replica each
//! when a scenario fails masters over) and the workers use the cluster
//! client; the store, the checkers and the verdicts stay the same. A
//! scenario runs there when each of its faults has a cluster counterpart
//! ([`Fault::on_cluster`]) and it needs nothing of one server (a proxy, a
//! file, a faked clock, a master to replicate): see [`Scenario::runs_on`].
//! `leasehold run` gets the cluster's seeds as a user gives them
//! (`LEASEHOLD_URL` with commas and `LEASEHOLD_CLUSTER=1`). The scenarios
//! of slot moves, failovers and killed masters run only there.
//!
//! With `--sentinel` the lock is a master, its replica and three
//! sentinels (testkit's `RedisSentinel`); the workers and `leasehold run`
//! connect with its `redis+sentinel://` URL and follow failovers. A
//! scenario runs there when each of its faults has a Sentinel counterpart
//! ([`Fault::on_sentinel`]) and it needs nothing of one server; not the
//! control arm (its `SET NX` would need the master's own URL). The
//! failover scenarios run only there.
//!
//! With `--redlock` the lock is 5 independent masters and the workers use
//! Redlock clients (`leasehold run` gets the masters in `LEASEHOLD_URL`,
//! commas, without `LEASEHOLD_CLUSTER`); `aof` applies to every master,
//! `faketime` to the first. A scenario runs there when each of its faults
//! has a Redlock counterpart ([`Fault::on_redlock`]) and it needs no proxy
//! and no master to replicate. The faults of members (stopped, killed,
//! restarted empty, a clock jump) run only there. The control arm takes
//! its `SET NX` on the first master. Redlock adds a check, C6 (see
//! [`checker`]): no grant while a majority of masters is stopped, and
//! grants go on while only a minority is.
//!
//! With `--tls` every server of the lock listens for TLS too, with
//! certificates of one CA testkit generates, and every client of the lock
//! connects by `rediss://` trusting that CA: the workers, the control arm,
//! `leasehold run --tls-ca`; the fault proxy forwards to the TLS port (it
//! passes bytes, so TLS goes through it). The faults and the checkers keep
//! the plain ports, which stay open; the fenced store stays plain.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::checker::{self, Params};
use crate::faults::{self, Fault, Lab, Lock, Schedule};
use crate::history::{Op, Sink, now};
use crate::report::{Row, Verdict};
use crate::store::Store;
use crate::workers::{self, Arm, Processes, RunWorkers, WorkerConfig};

/// One scenario of the suite.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its name, for `--scenario`.
    pub name: &'static str,
    /// In the `--quick` set.
    pub quick: bool,
    /// Runs on this backend alone, whatever its faults (those of every
    /// server, aimed at Redlock's masters).
    pub only: Option<Backend>,
    /// The lock under test.
    pub arm: Arm,
    /// Outside what a lock on one server (or on a cluster's asynchronous
    /// replicas) can promise: its verdict is
    /// "documented" whether or not two holders overlapped (C2), as long as
    /// every other check holds (the fences kept the data right).
    pub documented: bool,
    /// Clients × tasks in this process (0 clients: none).
    pub tasks: (usize, usize),
    /// Worker processes × tasks in each (0 processes: none).
    pub processes: (usize, usize),
    /// `leasehold run` slots (0: none).
    pub runs: usize,
    /// The lease's ttl.
    pub ttl: Duration,
    /// The chance of cancelling an acquire or release.
    pub cancel: f64,
    /// The longest pause between read and write, in ms.
    pub work_ms: u64,
    /// The lock server persists with `appendfsync always`.
    pub aof: bool,
    /// The lock server runs under libfaketime.
    pub faketime: bool,
    /// The workers go through a fault proxy.
    pub proxy: bool,
    /// An empty master is started for `REPLICAOF`.
    pub master: bool,
    /// The faults and their mean intervals.
    pub faults: Vec<Schedule>,
    /// How long the workers run, in `--quick` and in the full set.
    pub secs: (u64, u64),
    /// On a cluster: `cluster-node-timeout`, roughly how long a killed
    /// master's slots stay down.
    pub node_timeout: Duration,
    /// Half the workers take the lease in fair mode (see
    /// [`WorkerConfig::fair`]); not over Redlock, which has none.
    pub fair: bool,
}

const MS: fn(u64) -> Duration = Duration::from_millis;

/// The masters of a Redlock deployment.
pub const REDLOCK_MASTERS: usize = 5;

/// Where the lock lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One redis-server.
    Single,
    /// A 3-master Redis Cluster (`--cluster`).
    Cluster,
    /// [`REDLOCK_MASTERS`] independent masters (`--redlock`).
    Redlock,
    /// A master, its replica and 3 sentinels (`--sentinel`); the workers
    /// connect with a `redis+sentinel://` URL.
    Sentinel,
}

impl Backend {
    /// How the summary names it (empty for one server).
    pub fn label(self) -> &'static str {
        match self {
            Backend::Single => "",
            Backend::Cluster => " on a 3-master Redis Cluster",
            Backend::Redlock => " on Redlock over 5 independent masters",
            Backend::Sentinel => " through Sentinel (1 master, 1 replica, 3 sentinels)",
        }
    }

    /// The flag that selects it.
    pub fn flag(self) -> &'static str {
        match self {
            Backend::Single => "without --cluster, --redlock or --sentinel",
            Backend::Cluster => "with --cluster",
            Backend::Redlock => "with --redlock",
            Backend::Sentinel => "with --sentinel",
        }
    }
}

fn every(fault: Fault, ms: u64) -> Schedule {
    Schedule {
        fault,
        every: MS(ms),
    }
}

impl Scenario {
    fn base(name: &'static str) -> Scenario {
        Scenario {
            name,
            quick: false,
            only: None,
            arm: Arm::Leasehold,
            documented: false,
            tasks: (2, 8),
            processes: (0, 0),
            runs: 0,
            ttl: MS(500),
            cancel: 0.0,
            work_ms: 2,
            aof: false,
            faketime: false,
            proxy: false,
            master: false,
            faults: Vec::new(),
            secs: (6, 15),
            node_timeout: Duration::from_secs(2),
            fair: false,
        }
    }

    /// Whether it runs on `backend`.
    pub fn runs_on(&self, backend: Backend) -> bool {
        let faults = || self.faults.iter().map(|s| s.fault);
        if self.only.is_some_and(|only| only != backend) {
            return false;
        }
        match backend {
            Backend::Single => {
                !faults().any(|f| f.cluster_only() || f.redlock_only() || f.sentinel_only())
            }
            // The control arm's SET NX needs the master's own URL.
            Backend::Sentinel => {
                let one_server = self.proxy || self.aof || self.faketime || self.master;
                self.arm == Arm::Leasehold && !one_server && faults().all(|f| f.on_sentinel())
            }
            Backend::Cluster => {
                let one_server = self.proxy || self.aof || self.faketime || self.master;
                !one_server && faults().all(|f| f.on_cluster())
            }
            Backend::Redlock => !self.proxy && !self.master && faults().all(|f| f.on_redlock()),
        }
    }

    /// Whether its cluster needs a replica of each master.
    fn fails_over(&self) -> bool {
        self.faults.iter().any(|s| s.fault.fails_over())
    }

    fn quick(mut self) -> Self {
        self.quick = true;
        self
    }

    fn with(mut self, f: impl FnOnce(&mut Scenario)) -> Self {
        f(&mut self);
        self
    }
}

/// Every scenario, the quick ones first.
pub fn all() -> Vec<Scenario> {
    let procs = |s: &mut Scenario| {
        s.tasks = (0, 0);
        s.processes = (3, 2);
        s.work_ms = 20;
    };
    vec![
        // The run that found 4-6 overlaps per 15 s on the old main.
        Scenario::base("chaos").quick().with(|s| {
            s.tasks = (2, 24);
            s.fair = true;
            s.cancel = 0.3;
            s.work_ms = 15;
            s.secs = (10, 15);
            s.faults = vec![
                every(Fault::ScriptFlush, 40),
                every(Fault::KillNormal, 150),
                every(Fault::KillPubsub, 1000),
                // Longer than the response timeout (ttl / 2): attempts in
                // flight fail on the wire, the hand-over race of issue 11.
                every(Fault::ClientPause(MS(300)), 1200),
            ];
        }),
        Scenario::base("holder-sigstop").quick().with(|s| {
            procs(s);
            s.faults = vec![every(Fault::HolderStop(MS(1200)), 1500)];
        }),
        Scenario::base("restart-volatile").quick().with(|s| {
            s.documented = true;
            s.faults = vec![every(Fault::ServerKill(MS(50)), 1500)];
        }),
        Scenario::base("proxy-reset-delay").quick().with(|s| {
            s.proxy = true;
            s.faults = vec![
                every(Fault::ProxyReset, 100),
                every(Fault::ProxyDelay(MS(800), MS(300)), 2000),
            ];
        }),
        Scenario::base("oom").quick().with(|s| {
            s.faults = vec![every(Fault::Oom(MS(600)), 1200)];
        }),
        Scenario::base("control").quick().with(|s| {
            procs(s);
            s.arm = Arm::Naive;
            s.faults = vec![every(Fault::HolderStop(MS(1200)), 1500)];
        }),
        // Cluster only. The lease's slot goes to another master and back
        // while 16 workers contend: ASK, TRYAGAIN (its keys split between
        // two nodes), MOVED, and its wake channel changing nodes.
        Scenario::base("slot-move").quick().with(|s| {
            s.faults = vec![every(Fault::SlotMove(MS(150)), 700)];
        }),
        // Graceful failovers of the lease's master while it is held: nothing
        // acknowledged is lost, so this one must pass. The same master
        // fails over again only after two node timeouts (see the fault).
        Scenario::base("failover").quick().with(|s| {
            s.secs = (8, 20);
            s.faults = vec![every(Fault::Failover, 1500)];
        }),
        // The cluster's restart-volatile: a replica promoted after a crash
        // may lack the last acquire (replication is asynchronous).
        Scenario::base("master-kill").quick().with(|s| {
            s.documented = true;
            s.node_timeout = MS(1000);
            s.secs = (10, 30);
            s.faults = vec![every(Fault::MasterKill, 2000)];
        }),
        // Sentinel only: graceful failovers while leases are held and
        // waited for. Clients hold their commands from the failover's first
        // announcement to the switch, so nothing is acquired or extended on
        // the old master after it is cut off: this one must pass. (A lease
        // whose ttl runs out meanwhile is reported lost.)
        Scenario::base("sentinel-failover").quick().with(|s| {
            s.secs = (20, 45);
            s.faults = vec![every(Fault::SentinelFailover, 2000)];
        }),
        // Sentinel only: the master killed; the replica promoted after a
        // crash may lack the last writes (asynchronous replication), and
        // clients keep writing to nothing until the sentinels agree.
        Scenario::base("sentinel-master-kill").quick().with(|s| {
            s.documented = true;
            s.secs = (15, 30);
            s.faults = vec![every(Fault::SentinelMasterKill, 2000)];
        }),
        // Redlock only, from here to `client-pause`. A minority of the 5
        // masters frozen past the ttl: a quorum of the rest keeps granting
        // (C6 checks that it does), holders on them keep renewing.
        Scenario::base("members-sigstop-minority")
            .quick()
            .with(|s| {
                s.faults = vec![
                    every(Fault::MemberStop(1, MS(700)), 900),
                    every(Fault::MemberStop(2, MS(900)), 1200),
                ];
            }),
        // A majority frozen: no grant while they are (C6), holders lose
        // their lease at their next renewal, and nobody overlaps.
        Scenario::base("members-sigstop-majority")
            .quick()
            .with(|s| {
                s.faults = vec![every(Fault::MemberStop(3, MS(800)), 1500)];
            }),
        // Kleppmann's objection, on purpose: a holder with a bare quorum
        // loses one of its masters to an empty restart, and a quorum of it
        // and the two it lacked grants again. A README Limit: C2 may fire,
        // the fences must keep the counter right (C1, C3).
        Scenario::base("members-restart-empty").quick().with(|s| {
            s.documented = true;
            s.work_ms = 30;
            s.faults = vec![
                every(Fault::MemberKill(1, MS(0)), 1500),
                every(Fault::BareQuorumRestart(MS(200)), 2500),
            ];
        }),
        // Everything at once on the masters, each fault one a Redlock must
        // survive: a minority frozen or killed (with `appendfsync always`),
        // a majority frozen for a while, scripts and connections gone
        // everywhere; and cancelled calls. (Not a clock jump: a master
        // whose keys expire early is a master that restarted empty, which
        // can let a second holder in beside one whose quorum is bare
        // because two other masters are stopped: three faults of five.)
        Scenario::base("members-chaos").quick().with(|s| {
            s.tasks = (2, 12);
            s.cancel = 0.2;
            s.work_ms = 15;
            s.aof = true;
            s.faketime = true;
            s.secs = (10, 20);
            s.faults = vec![
                every(Fault::ScriptFlush, 150),
                every(Fault::KillNormal, 400),
                every(Fault::KillPubsub, 1000),
                every(Fault::MemberStop(2, MS(600)), 1000),
                every(Fault::MemberKill(2, MS(100)), 1500),
                every(Fault::MemberStop(3, MS(400)), 3000),
                every(Fault::BareQuorumRestart(MS(200)), 2500),
            ];
        }),
        Scenario::base("client-pause").with(|s| {
            s.faults = vec![every(Fault::ClientPause(MS(700)), 1500)];
        }),
        Scenario::base("server-sigstop").with(|s| {
            s.faults = vec![every(Fault::ServerStop(MS(900)), 2000)];
        }),
        Scenario::base("restart-aof").with(|s| {
            s.aof = true;
            s.faults = vec![every(Fault::ServerKill(MS(100)), 1500)];
        }),
        Scenario::base("proxy-blackhole").with(|s| {
            s.proxy = true;
            s.faults = vec![every(Fault::ProxyBlackhole(MS(800)), 2000)];
        }),
        Scenario::base("evict").with(|s| {
            s.documented = true;
            s.faults = vec![every(Fault::Evict(MS(300)), 1500)];
        }),
        Scenario::base("readonly").with(|s| {
            s.documented = true;
            s.master = true;
            s.faults = vec![every(Fault::ReadOnly(MS(500)), 2000)];
        }),
        Scenario::base("busy").with(|s| {
            s.faults = vec![every(Fault::Busy(MS(400)), 1500)];
        }),
        Scenario::base("loading").with(|s| {
            s.documented = true;
            s.faults = vec![every(Fault::Loading, 4000)];
        }),
        Scenario::base("holder-sigkill").with(|s| {
            procs(s);
            s.faults = vec![every(Fault::HolderKill, 2000)];
        }),
        Scenario::base("holder-starve").with(|s| {
            procs(s);
            s.faults = vec![every(Fault::HolderStarve(MS(1500)), 2500)];
        }),
        // Breach 3 of issue 11: the command outliving its supervisor.
        Scenario::base("run-sigkill").with(|s| {
            s.tasks = (0, 0);
            s.runs = 3;
            s.ttl = MS(400);
            s.work_ms = 900;
            s.faults = vec![every(Fault::RunKill, 1500)];
        }),
        Scenario::base("processes-chaos").with(|s| {
            s.tasks = (1, 8);
            s.fair = true;
            s.processes = (2, 4);
            s.cancel = 0.2;
            s.faults = vec![
                every(Fault::ScriptFlush, 60),
                every(Fault::KillNormal, 500),
                every(Fault::HolderStop(MS(900)), 2500),
                every(Fault::ClientPause(MS(300)), 3000),
            ];
        }),
        Scenario::base("clock-jump").with(|s| {
            s.documented = true;
            s.faketime = true;
            // Holds long enough for a jump to land inside one.
            s.work_ms = 60;
            s.faults = vec![every(Fault::ClockJump(5, MS(100)), 700)];
        }),
        // Redlock only: killed masters come back with their data.
        Scenario::base("members-restart-aof").with(|s| {
            s.aof = true;
            s.faults = vec![
                every(Fault::MemberKill(1, MS(100)), 1000),
                every(Fault::MemberKill(2, MS(300)), 1500),
            ];
        }),
        // Redlock only: every master's scripts flushed, over and over; each
        // master loads them again and answers TRYAGAIN meanwhile.
        Scenario::base("members-script-flush").with(|s| {
            s.only = Some(Backend::Redlock);
            s.faults = vec![every(Fault::ScriptFlush, 40)];
        }),
        // Redlock only: every master cuts its connections, commands and
        // subscribers.
        Scenario::base("members-client-kill").with(|s| {
            s.only = Some(Backend::Redlock);
            s.faults = vec![every(Fault::KillNormal, 150), every(Fault::KillPubsub, 500)];
        }),
        // One master's clock of five jumps forward past the ttl: its keys
        // expire early, as if it restarted empty. That is one master lost,
        // so this must pass: a holder whose quorum was bare (a straggler
        // master still held the previous holder's copy) asks the masters
        // that refused it again until they grant, so it soon holds all
        // five. (Before it did, this overlapped: C2 twice in a run.)
        Scenario::base("members-clock-jump").with(|s| {
            s.faketime = true;
            s.work_ms = 60;
            s.faults = vec![every(Fault::MemberClockJump(5, MS(100)), 700)];
        }),
        // The tutorials' classic: work that sometimes outlasts the ttl, and
        // a DEL that frees whoever holds the lock by then.
        Scenario::base("control-chaos").with(|s| {
            s.arm = Arm::Naive;
            s.work_ms = 700;
            s.faults = vec![every(Fault::KillNormal, 400)];
        }),
    ]
}

/// Runs `scenario` and checks its history.
///
/// # Errors
///
/// When the servers or the workers cannot be set up (not a breach: the
/// suite could not run).
pub async fn run(
    scenario: &Scenario,
    quick: bool,
    backend: Backend,
    tls: bool,
    progress: &indicatif::ProgressBar,
    history: Option<&std::path::Path>,
) -> Result<Row, String> {
    let started = Instant::now();
    let secs = if quick {
        scenario.secs.0
    } else {
        scenario.secs.1
    };
    let run_for = Duration::from_secs(secs);
    let name = format!("torture/{}", scenario.name);
    let store_server = testkit::RedisServer::start().map_err(|e| e.to_string())?;
    let cluster = backend == Backend::Cluster;
    // With --tls: one CA for every server of the lock.
    let tls_files = if tls {
        Some(testkit::TlsFiles::generate_temp().map_err(|e| e.to_string())?)
    } else {
        None
    };
    let lock_opts = testkit::ServerOptions {
        tls: tls.then_some(testkit::ClientAuth::Optional),
        tls_files: tls_files.clone(),
        ..Default::default()
    };
    // The URL a client of the lock uses for `server`.
    let url_of = |server: &testkit::RedisServer| server.tls_url().unwrap_or_else(|| server.url());
    // (plain port, TLS port) of each server of the lock, with --tls: to
    // see its clients on the TLS port.
    let pairs = |servers: &mut dyn Iterator<Item = &testkit::RedisServer>| -> Vec<(u16, u16)> {
        servers
            .filter_map(|s| s.tls_port().map(|t| (s.port(), t)))
            .collect()
    };
    let tls_ports;
    let (lock, direct_url) = if cluster {
        progress.set_message(format!("{}: starting a cluster", scenario.name));
        let opts = testkit::ClusterOptions {
            masters: 3,
            replicas_per_master: usize::from(scenario.fails_over()),
            node_timeout: scenario.node_timeout,
            server: lock_opts.clone(),
            ..Default::default()
        };
        let cluster = tokio::task::spawn_blocking(move || testkit::RedisCluster::start_with(opts))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let slot = cluster.slot_of(&name).map_err(|e| e.to_string())?;
        let seeds = if tls {
            cluster.tls_seeds()
        } else {
            cluster.seeds()
        };
        let (home, seeds) = (cluster.master_of_slot(slot), seeds.join(","));
        tls_ports = pairs(&mut cluster.nodes().iter().map(testkit::ClusterNode::server));
        let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
        (
            Lock::Cluster {
                cluster,
                slot,
                home,
                node_timeout: scenario.node_timeout,
                failed_over: Mutex::default(),
            },
            seeds,
        )
    } else if backend == Backend::Sentinel {
        progress.set_message(format!("{}: starting Sentinel", scenario.name));
        let sentinel = tokio::task::spawn_blocking(testkit::RedisSentinel::start)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let url = sentinel.url();
        // --tls does not go with --sentinel (refused by clap).
        tls_ports = Vec::new();
        (
            Lock::Sentinel {
                sentinel: Arc::new(tokio::sync::Mutex::new(sentinel)),
            },
            url,
        )
    } else if backend == Backend::Redlock {
        progress.set_message(format!("{}: starting 5 masters", scenario.name));
        let (aof, faketime, opts) = (scenario.aof, scenario.faketime, lock_opts.clone());
        let masters = tokio::task::spawn_blocking(move || {
            (0..REDLOCK_MASTERS)
                .map(|i| {
                    testkit::RedisServer::start_with(testkit::ServerOptions {
                        aof,
                        // The first master's clock is the one that jumps.
                        faketime: faketime && i == 0,
                        ..opts.clone()
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let urls: Vec<String> = masters.iter().map(url_of).collect();
        tls_ports = pairs(&mut masters.iter());
        let ports = masters.iter().map(testkit::RedisServer::port).collect();
        let masters = masters
            .into_iter()
            .map(|m| Arc::new(Mutex::new(m)))
            .collect();
        (Lock::Redlock { masters, ports }, urls.join(","))
    } else {
        let server = testkit::RedisServer::start_with(testkit::ServerOptions {
            aof: scenario.aof,
            faketime: scenario.faketime,
            ..lock_opts.clone()
        })
        .map_err(|e| e.to_string())?;
        let (port, url) = (server.port(), url_of(&server));
        tls_ports = pairs(&mut std::iter::once(&server));
        let server = Arc::new(Mutex::new(server));
        (Lock::Server { server, port }, url)
    };
    let proxy = match (&lock, scenario.proxy) {
        (Lock::Server { server, port }, true) => {
            // In front of the port the clients use.
            let target = server
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .tls_port()
                .unwrap_or(*port);
            Some(testkit::FaultProxy::start(target).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let master = if scenario.master {
        Some(testkit::RedisServer::start().map_err(|e| e.to_string())?)
    } else {
        None
    };
    let lock_url = match &proxy {
        Some(p) if tls => format!("rediss://127.0.0.1:{}", p.port()),
        Some(p) => p.url(),
        None => direct_url,
    };
    let sink = Sink::memory();
    let cfg = WorkerConfig {
        arm: scenario.arm,
        lock_url,
        cluster,
        redlock: backend == Backend::Redlock,
        tls_ca: tls_files.as_ref().map(testkit::TlsFiles::ca),
        store_url: store_server.url(),
        name,
        ttl_ms: scenario.ttl.as_millis() as u64,
        wait_ms: 2000,
        backoff_max_ms: 100,
        // Shorter than the ttl, so a stuck command fails while a renewal can
        // still save the lease.
        response_timeout_ms: (scenario.ttl.as_millis() as u64 / 2).max(50),
        clients: scenario.tasks.0,
        tasks: scenario.tasks.1,
        work_ms: scenario.work_ms,
        cancel: scenario.cancel,
        drop: 0.2,
        prefix: "t".into(),
        fair: scenario.fair && backend != Backend::Redlock,
    };
    let procs = if scenario.processes.0 > 0 {
        let mut pc = cfg.clone();
        pc.clients = 1;
        pc.tasks = scenario.processes.1;
        Some(Processes::start(
            pc,
            scenario.processes.0,
            sink.clone(),
            run_for,
        )?)
    } else {
        None
    };
    let runs = if scenario.runs > 0 {
        Some(RunWorkers::start(cfg.clone(), scenario.runs, sink.clone())?)
    } else {
        None
    };
    let lab = Arc::new(Lab {
        lock,
        proxy,
        master,
        procs: procs.clone(),
        runs: runs.clone(),
        sink: sink.clone(),
        members_busy: tokio::sync::Mutex::default(),
        members_down: Mutex::default(),
    });

    let stop_workers = Arc::new(AtomicBool::new(false));
    let tasks = if scenario.tasks.0 > 0 {
        let (cfg, sink, stop) = (cfg.clone(), sink.clone(), Arc::clone(&stop_workers));
        Some(tokio::spawn(async move {
            workers::run_tasks(&cfg, sink, stop).await
        }))
    } else {
        None
    };
    let stop_faults = Arc::new(AtomicBool::new(false));
    let injector = tokio::spawn(faults::run(
        Arc::clone(&lab),
        scenario.faults.clone(),
        Arc::clone(&stop_faults),
    ));

    let deadline = tokio::time::Instant::now() + run_for;
    let half_time = tokio::time::Instant::now() + run_for / 2;
    // With --tls, the lock's clients seen on a TLS port (looked for from
    // half-time until some are).
    let mut tls_clients = 0;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tls && tls_clients == 0 && tokio::time::Instant::now() >= half_time {
            tls_clients = clients_on_tls_ports(&lab, &tls_ports).await;
        }
        let events = sink.events().len();
        progress.set_message(format!(
            "{}: {:.0}/{secs} s, {events} events",
            scenario.name,
            started.elapsed().as_secs_f64().min(secs as f64)
        ));
        progress.tick();
    }
    stop_faults.store(true, Ordering::Relaxed);
    let fault_errors = injector.await.unwrap_or_default();
    if tls && tls_clients == 0 {
        return Err(format!(
            "with --tls no client of the lock was seen on a TLS port ({tls_ports:?}, plain and TLS): the workers did not talk TLS"
        ));
    }
    lab.heal().await;
    stop_workers.store(true, Ordering::Relaxed);
    if let Some(tasks) = tasks {
        match tokio::time::timeout(Duration::from_secs(20), tasks).await {
            Ok(Ok(Err(e))) => return Err(format!("workers could not start: {e}")),
            Ok(_) => {}
            Err(_) => return Err("workers did not stop within 20 s".into()),
        }
    }
    if let Some(procs) = &procs
        && tokio::time::timeout(Duration::from_secs(20), procs.join())
            .await
            .is_err()
    {
        procs.kill_all();
        procs.join().await;
    }
    if let Some(runs) = &runs {
        runs.stop(Duration::from_secs(10)).await;
        runs.check_granted()?;
    }
    let end = now();

    // C5: after the last ttl, nothing of the lease may be left held. A
    // clock that jumped ahead and back stepped back by the jump: a key set
    // meanwhile expires that much later by its master's clock.
    let stepped_back = scenario
        .faults
        .iter()
        .filter_map(|s| match s.fault {
            Fault::ClockJump(secs, _) | Fault::MemberClockJump(secs, _) => {
                Some(Duration::from_secs(secs.unsigned_abs()))
            }
            _ => None,
        })
        .max()
        .unwrap_or_default();
    tokio::time::sleep(scenario.ttl + stepped_back + Duration::from_millis(300)).await;
    let leftovers = leftovers(&lab, &cfg.name).await?;
    let store = Store::connect(&store_server.url(), &cfg.name)
        .await
        .map_err(|e| e.to_string())?;
    let final_counter = store.counter().await.map_err(|e| e.to_string())?;

    let events = sink.events();
    if let Some(dir) = history {
        let lines: Vec<String> = events
            .iter()
            .map(|e| serde_json::to_string(e).expect("events serialize"))
            .collect();
        let suffix = match backend {
            Backend::Single => "",
            Backend::Cluster => ".cluster",
            Backend::Redlock => ".redlock",
            Backend::Sentinel => ".sentinel",
        };
        let tls = if tls { ".tls" } else { "" };
        let path = dir.join(format!("{}{suffix}{tls}.jsonl", scenario.name));
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, lines.join("\n") + "\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    // C6 (Redlock): when a majority of the masters was stopped, and when
    // only a minority was, from the faults' own events.
    let quorum = REDLOCK_MASTERS / 2 + 1;
    let stops = |majority: bool| -> Vec<(u64, u64)> {
        let names: Vec<&str> = scenario
            .faults
            .iter()
            .filter(|s| s.fault.stops(REDLOCK_MASTERS, quorum) == Some(majority))
            .map(|s| s.fault.name())
            .collect();
        events
            .iter()
            .filter(|e| e.op == Op::Fault && e.why.as_deref().is_some_and(|w| names.contains(&w)))
            .map(|e| (e.t, e.valid_until.unwrap_or(e.t)))
            .collect()
    };
    // Grants must go on while a minority is stopped, unless another fault
    // (every master's scripts flushed, say) stood in their way meanwhile.
    let faults: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e.op == Op::Fault)
        .map(|e| (e.t, e.valid_until.unwrap_or(e.t)))
        .collect();
    let alone = |&(from, to): &(u64, u64)| {
        faults
            .iter()
            .all(|&(a, b)| (a, b) == (from, to) || b < from || a > to)
    };
    let params = Params {
        no_quorum: stops(true),
        minority_stopped: stops(false).into_iter().filter(alone).collect(),
        ttl: scenario.ttl,
        fallback_cap: Duration::from_millis(cfg.backoff_max_ms),
        slack: Duration::from_millis(1500),
        real_fences: scenario.arm == Arm::Leasehold,
        final_counter,
        leftovers,
        end,
    };
    let findings = checker::check(&events, &params);
    let breaches = findings.breaches();
    let verdict = match (scenario.arm, scenario.documented) {
        (Arm::Naive, _) => {
            if breaches.contains(&"C2")
                && (findings.lost_updates > 0 || findings.stale_accepted > 0)
            {
                Verdict::ControlFailed
            } else {
                Verdict::Fail
            }
        }
        (Arm::Leasehold, documented) => {
            // A documented fault may break C2 (or not, by luck); every
            // other check must hold on it too.
            let only_overlaps = breaches.iter().all(|b| *b == "C2");
            match (documented, breaches.is_empty()) {
                (false, true) => Verdict::Pass,
                (true, _) if only_overlaps => Verdict::Documented,
                _ => Verdict::Fail,
            }
        }
    };
    Ok(Row {
        scenario: scenario.name.to_owned(),
        cluster,
        redlock: backend == Backend::Redlock,
        tls,
        arm: scenario.arm,
        seconds: started.elapsed().as_secs_f64(),
        findings,
        breaches: breaches.into_iter().map(str::to_owned).collect(),
        fault_errors,
        verdict,
    })
}

/// How many connections the servers of `ports` (plain, TLS) have on their
/// TLS port (`laddr` in `CLIENT LIST`, asked on the plain port); a server
/// that does not answer (killed, stopped) counts none.
async fn clients_on_tls_ports(lab: &Lab, ports: &[(u16, u16)]) -> usize {
    let mut n = 0;
    for &(plain, tls) in ports {
        let list = match lab.command_on(plain, &["CLIENT", "LIST"]).await {
            Ok(redis::Value::BulkString(list)) => String::from_utf8_lossy(&list).into_owned(),
            Ok(redis::Value::VerbatimString { text, .. }) => text,
            _ => continue,
        };
        n += list.matches(&format!("laddr=127.0.0.1:{tls} ")).count();
    }
    n
}

/// C5: keys of the lease still there after the last ttl: the lease key
/// itself, or any of its keys without a TTL except the fence counters
/// (which never expire by design). On a cluster, on every master.
async fn leftovers(lab: &Lab, name: &str) -> Result<usize, String> {
    let mut count = 0;
    for node in lab.data_nodes().await {
        count += leftovers_on(lab, node, name).await?;
    }
    Ok(count)
}

async fn leftovers_on(lab: &Lab, node: u16, name: &str) -> Result<usize, String> {
    let mut count = 0;
    for pattern in [
        name.to_owned(),
        format!("leasehold:{{{name}}}:*"),
        format!("{name}:*"),
        // A name with a `}` but no hash tag (see the library's key rule).
        format!("{{????}}:leasehold:{{{name}}}:*"),
    ] {
        let keys = match lab.command_on(node, &["KEYS", &pattern]).await? {
            redis::Value::Array(keys) => keys,
            _ => Vec::new(),
        };
        for key in keys {
            let redis::Value::BulkString(key) = key else {
                continue;
            };
            let key = String::from_utf8_lossy(&key).into_owned();
            if key == name {
                count += 1;
                continue;
            }
            if key.ends_with(":fence") || key.ends_with(":seq") {
                continue;
            }
            if let redis::Value::Int(-1) = lab.command_on(node, &["PTTL", &key]).await? {
                count += 1;
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(backend: Backend) -> Vec<&'static str> {
        all()
            .into_iter()
            .filter(|s| s.runs_on(backend))
            .map(|s| s.name)
            .collect()
    }

    #[test]
    fn the_cluster_runs_what_applies_and_its_own_faults() {
        assert_eq!(
            names(Backend::Cluster),
            [
                "chaos",
                "holder-sigstop",
                "oom",
                "control",
                "slot-move",
                "failover",
                "master-kill",
                "client-pause",
                "server-sigstop",
                "evict",
                "busy",
                "holder-sigkill",
                "holder-starve",
                "run-sigkill",
                "processes-chaos",
                "control-chaos",
            ]
        );
        let single = names(Backend::Single);
        for own in ["slot-move", "failover", "master-kill"] {
            assert!(!single.contains(&own), "{own} needs a cluster");
        }
        let redlock_only = names(Backend::Redlock)
            .into_iter()
            .filter(|n| n.starts_with("members-"))
            .count();
        let sentinel_only = names(Backend::Sentinel)
            .into_iter()
            .filter(|n| n.starts_with("sentinel-"))
            .count();
        assert_eq!(sentinel_only, 2);
        assert_eq!(single.len(), all().len() - 3 - redlock_only - sentinel_only);
    }

    #[test]
    fn redlock_runs_the_client_faults_and_its_members_faults() {
        assert_eq!(
            names(Backend::Redlock),
            [
                "chaos",
                "holder-sigstop",
                "control",
                "members-sigstop-minority",
                "members-sigstop-majority",
                "members-restart-empty",
                "members-chaos",
                "client-pause",
                "holder-sigkill",
                "holder-starve",
                "run-sigkill",
                "processes-chaos",
                "members-restart-aof",
                "members-script-flush",
                "members-client-kill",
                "members-clock-jump",
                "control-chaos",
            ]
        );
        for s in all() {
            let members = s.name.starts_with("members-");
            assert_eq!(
                members,
                !s.runs_on(Backend::Single)
                    && !s.runs_on(Backend::Cluster)
                    && s.runs_on(Backend::Redlock),
                "{}: only the members' scenarios are Redlock's alone",
                s.name
            );
        }
        // Only a master that loses its keys by restarting empty (README
        // Limits) may let two holders overlap there.
        let documented: Vec<_> = all()
            .into_iter()
            .filter(|s| s.runs_on(Backend::Redlock) && s.documented)
            .map(|s| s.name)
            .collect();
        assert_eq!(documented, ["members-restart-empty"]);
    }

    #[test]
    fn a_cluster_has_replicas_only_where_masters_fail_over() {
        let replicas: Vec<_> = all()
            .into_iter()
            .filter(|s| s.runs_on(Backend::Cluster) && s.fails_over())
            .map(|s| s.name)
            .collect();
        assert_eq!(replicas, ["failover", "master-kill"]);
    }
}
