//! The workers: tasks and processes that take the lock, do the fenced
//! read-then-write under it, and let it go, logging every step.
//!
//! Two arms share this code:
//! - [`Arm::Leasehold`]: `leasehold::Lease::acquire`, the guard's fence
//!   passed to the store, `release()` or a drop;
//! - [`Arm::Naive`], the control: the tutorials' `SET name 1 NX PX ttl` and
//!   `DEL name`, no token, no fence (the store is told not to check). Its
//!   "fence" is a counter bumped after each grant, only so the checkers can
//!   order grants.
//!
//! With `--cluster` both connect to the cluster's seeds with a cluster
//! client (leasehold's, or redis-rs's for the control arm). With
//! `--redlock` leasehold's clients are Redlock clients over every master;
//! the control arm takes its `SET NX` on the first master alone, as the
//! tutorials would.
//!
//! Random cancellation wraps acquire and release in a timeout of a few
//! hundred microseconds, so they are dropped at whatever await point they
//! reached.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;

use crate::history::{Event, Kind, Op, Sink, now, token_hash};
use crate::store::Store;

/// Which lock the workers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arm {
    /// leasehold.
    Leasehold,
    /// `SET NX PX` + `DEL`, no token, no fence: must fail the checkers.
    Naive,
}

/// How a group of workers runs. Sent as JSON to worker processes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerConfig {
    /// The lock under test.
    pub arm: Arm,
    /// Where the lock lives (the server, or the fault proxy in front of it);
    /// with `cluster`, the cluster's seeds separated by commas.
    pub lock_url: String,
    /// The lock is a Redis Cluster: the workers connect with the cluster
    /// client (leasehold's, or redis-rs's for the control arm).
    #[serde(default)]
    pub cluster: bool,
    /// `lock_url` holds independent masters, separated by commas: the
    /// workers are Redlock clients.
    #[serde(default)]
    pub redlock: bool,
    /// The lock's URLs are `rediss://`, their certificates signed by the CA
    /// in this PEM file, which every client (leasehold's, the control
    /// arm's, `leasehold run --tls-ca`) trusts.
    #[serde(default)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// The fenced store's server.
    pub store_url: String,
    /// The lease's name.
    pub name: String,
    /// The lease's ttl, in ms.
    pub ttl_ms: u64,
    /// How long an acquire waits, in ms.
    pub wait_ms: u64,
    /// The waiters' fallback cap (backoff max), in ms.
    pub backoff_max_ms: u64,
    /// The clients' response timeout, in ms.
    pub response_timeout_ms: u64,
    /// Clients (each its own connections).
    pub clients: usize,
    /// Tasks per client.
    pub tasks: usize,
    /// The longest pause between the read and the write, in ms.
    pub work_ms: u64,
    /// The chance that an acquire or release is cancelled at random.
    pub cancel: f64,
    /// The chance that a guard is dropped rather than released.
    pub drop: f64,
    /// Worker names start with this (`t` for tasks, `p3` for process 3).
    pub prefix: String,
    /// Every other task of each client (the odd ones) takes the lease in
    /// fair mode: fair and plain holders of one name exclude each other,
    /// and a fair release hands the lease to its queue's head, in any
    /// process, in the release script itself. Not over Redlock.
    #[serde(default)]
    pub fair: bool,
}

impl WorkerConfig {
    fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    /// The cluster's seeds (with `cluster`), or the masters (with
    /// `redlock`).
    fn seeds(&self) -> Vec<&str> {
        self.lock_url.split(',').collect()
    }

    /// The CA to trust instead of the system's, for redis-rs's clients.
    fn certificates(&self) -> redis::RedisResult<Option<redis::TlsCertificates>> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        Ok(Some(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(ca)?),
        }))
    }
}

/// A lock granted to a worker.
enum Held {
    Guard(leasehold::Guard),
    Naive {
        fence: u64,
        token: u64,
        valid_until: u64,
    },
}

impl Held {
    fn fence(&self) -> u64 {
        match self {
            Held::Guard(g) => g.fence(),
            Held::Naive { fence, .. } => *fence,
        }
    }

    fn token(&self) -> u64 {
        match self {
            Held::Guard(g) => token_hash(g.token().as_str().as_bytes()),
            Held::Naive { token, .. } => *token,
        }
    }

    /// Until when the holder believes it holds (monotonic ns), read now; 0
    /// when it knows it does not.
    fn valid_until(&self) -> u64 {
        match self {
            Held::Guard(g) => {
                // Read the clock first: `t + remaining` is then at most the
                // guard's own deadline. Zero remaining is no claim at all.
                let t = now();
                match g.remaining() {
                    Duration::ZERO => 0,
                    left => t + left.as_nanos() as u64,
                }
            }
            Held::Naive { valid_until, .. } => *valid_until,
        }
    }

    /// The fence to pass to the store: none for the control arm.
    fn store_fence(&self) -> Option<u64> {
        match self {
            Held::Guard(g) => Some(g.fence()),
            Held::Naive { .. } => None,
        }
    }
}

/// One client's way of taking the lock.
#[derive(Clone)]
enum Locker {
    Lease(leasehold::Lease),
    Naive {
        conn: RawConn,
        name: String,
        ttl: Duration,
        wait: Duration,
    },
}

impl Locker {
    async fn connect(cfg: &WorkerConfig) -> Result<Locker, String> {
        let timeout = Duration::from_millis(cfg.response_timeout_ms);
        match cfg.arm {
            Arm::Leasehold => {
                let mut builder = leasehold::Client::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .response_timeout(timeout);
                if let Some(ca) = &cfg.tls_ca {
                    builder = builder.tls_ca_file(ca);
                }
                let client = if cfg.cluster {
                    builder.cluster(cfg.seeds()).connect().await
                } else if cfg.redlock {
                    builder.redlock(cfg.seeds()).connect().await
                } else {
                    builder.connect(&cfg.lock_url).await
                }
                .map_err(|e| format!("{e:#}"))?;
                Ok(Locker::Lease(
                    client
                        .lease(&cfg.name)
                        .ttl(cfg.ttl())
                        .wait(Duration::from_millis(cfg.wait_ms))
                        .backoff(
                            Duration::from_millis(5),
                            Duration::from_millis(cfg.backoff_max_ms),
                        ),
                ))
            }
            Arm::Naive => {
                let conn = RawConn::connect(cfg, timeout)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Locker::Naive {
                    conn,
                    name: cfg.name.clone(),
                    ttl: cfg.ttl(),
                    wait: Duration::from_millis(cfg.wait_ms),
                })
            }
        }
    }

    /// The same locker, its lease in fair mode when `fair` (the control
    /// arm has no fair mode).
    fn fair(&self, fair: bool) -> Locker {
        match self {
            Locker::Lease(lease) if fair => Locker::Lease(lease.clone().fair(true)),
            other => other.clone(),
        }
    }

    async fn acquire(&self) -> Result<Held, String> {
        match self {
            Locker::Lease(lease) => lease
                .acquire()
                .await
                .map(Held::Guard)
                .map_err(|e| short(&format!("{e}"))),
            Locker::Naive {
                conn,
                name,
                ttl,
                wait,
            } => {
                let deadline = tokio::time::Instant::now() + *wait;
                loop {
                    let sent = now();
                    let set: Option<String> = conn
                        .query(
                            redis::cmd("SET")
                                .arg(name)
                                .arg(1)
                                .arg("NX")
                                .arg("PX")
                                .arg(ttl.as_millis() as u64),
                        )
                        .await
                        .map_err(|e| short(&e.to_string()))?;
                    if set.is_some() {
                        let fence: u64 = conn
                            .query(redis::cmd("INCR").arg(format!("{name}:seq")))
                            .await
                            .unwrap_or(0);
                        let drift = *ttl / 100 + Duration::from_millis(2);
                        return Ok(Held::Naive {
                            fence,
                            token: rand::rng().random(),
                            valid_until: sent + ttl.saturating_sub(drift).as_nanos() as u64,
                        });
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err("timed out".into());
                    }
                    let pause = rand::rng().random_range(2..12);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        }
    }

    async fn release(&self, held: Held) -> Result<(), String> {
        match (self, held) {
            (_, Held::Guard(g)) => g.release().await.map_err(|e| short(&format!("{e}"))),
            (Locker::Naive { conn, name, .. }, Held::Naive { .. }) => conn
                .query::<i64>(redis::cmd("DEL").arg(name))
                .await
                .map(drop)
                .map_err(|e| short(&e.to_string())),
            (Locker::Lease(_), Held::Naive { .. }) => Ok(()),
        }
    }
}

/// The control arm's connection: to one server, or to a cluster (redis-rs
/// follows its redirections).
#[derive(Clone)]
enum RawConn {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl RawConn {
    async fn connect(cfg: &WorkerConfig, timeout: Duration) -> redis::RedisResult<RawConn> {
        let connect_timeout = Duration::from_secs(5);
        let certs = cfg.certificates()?;
        if cfg.cluster {
            let mut builder = redis::cluster::ClusterClient::builder(cfg.seeds())
                .connection_timeout(connect_timeout)
                .response_timeout(timeout);
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            return Ok(RawConn::Cluster(
                builder.build()?.get_async_connection().await?,
            ));
        }
        let client = match certs {
            Some(certs) => redis::Client::build_with_tls(cfg.seeds()[0], certs)?,
            None => redis::Client::open(cfg.seeds()[0])?,
        };
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(connect_timeout));
        Ok(RawConn::Single(
            redis::aio::ConnectionManager::new_with_config(client, config).await?,
        ))
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            RawConn::Single(conn) => cmd.query_async(&mut conn.clone()).await,
            RawConn::Cluster(conn) => cmd.query_async(&mut conn.clone()).await,
        }
    }
}

/// The first line of an error, cut short: enough to tell kinds apart.
fn short(message: &str) -> String {
    message
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

/// Runs `fut`, or with probability `p` cancels it after a random few hundred
/// microseconds. `None`: cancelled.
async fn maybe_cancel<T>(p: f64, fut: impl Future<Output = T>) -> Option<T> {
    if p > 0.0 && rand::rng().random_bool(p.min(1.0)) {
        let after = Duration::from_micros(rand::rng().random_range(0..1500));
        tokio::time::timeout(after, fut).await.ok()
    } else {
        Some(fut.await)
    }
}

/// Runs `cfg.clients × cfg.tasks` worker tasks until `stop` is set.
///
/// # Errors
///
/// When a client or the store cannot be reached at the start.
pub async fn run_tasks(
    cfg: &WorkerConfig,
    sink: Sink,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let store = Store::connect(&cfg.store_url, &cfg.name)
        .await
        .map_err(|e| e.to_string())?;
    let mut tasks = Vec::new();
    for c in 0..cfg.clients {
        let locker = Locker::connect(cfg).await?;
        for t in 0..cfg.tasks {
            let worker = format!("{}{c}.{t}", cfg.prefix);
            let (cfg, sink, stop, store, locker) = (
                cfg.clone(),
                sink.clone(),
                Arc::clone(&stop),
                store.clone(),
                locker.fair(cfg.fair && t % 2 == 1),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    cycle(&worker, &cfg, &sink, &store, &locker).await;
                }
            }));
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// One acquire, fenced read, fenced write, release.
async fn cycle(worker: &str, cfg: &WorkerConfig, sink: &Sink, store: &Store, locker: &Locker) {
    sink.log(Event::new(worker, Kind::Invoke, Op::Acquire));
    let held = match maybe_cancel(cfg.cancel, locker.acquire()).await {
        None => {
            let mut e = Event::new(worker, Kind::Unknown, Op::Acquire);
            e.why = Some("cancelled".into());
            sink.log(e);
            return;
        }
        Some(Err(why)) => {
            let mut e = Event::new(worker, Kind::Fail, Op::Acquire);
            e.why = Some(why);
            sink.log(e);
            // Do not spin on a server that refuses everything.
            let pause = rand::rng().random_range(1..10);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            return;
        }
        Some(Ok(held)) => held,
    };
    let (fence, token) = (held.fence(), held.token());
    let event = |kind, op| {
        let mut e = Event::new(worker, kind, op);
        e.fence = Some(fence);
        e.token = Some(token);
        e
    };
    let valid = |held: &Held| {
        let mut e = event(Kind::Ok, Op::Valid);
        e.valid_until = Some(held.valid_until());
        e
    };
    let mut acquired = event(Kind::Ok, Op::Acquire);
    acquired.valid_until = Some(held.valid_until());
    sink.log(acquired);

    // A careful user: no work on a guard that already says it is lost.
    if held.valid_until() > now() {
        sink.log(event(Kind::Invoke, Op::Read));
        let read = store.read(held.store_fence()).await;
        match read {
            Ok(access) => {
                let mut e = event(Kind::Ok, Op::Read);
                e.value = Some(access.value);
                e.accepted = Some(access.accepted);
                sink.log(e);
                sink.log(valid(&held));
                if access.accepted {
                    if cfg.work_ms > 0 {
                        let work = rand::rng().random_range(0..=cfg.work_ms);
                        tokio::time::sleep(Duration::from_millis(work)).await;
                    }
                    // No check of the guard here, on purpose: the fence is
                    // what must stop a holder that paused in between.
                    let value = access.value + 1;
                    sink.log(event(Kind::Invoke, Op::Write));
                    match store.write(held.store_fence(), value).await {
                        Ok(w) => {
                            let mut e = event(Kind::Ok, Op::Write);
                            e.value = Some(value);
                            e.accepted = Some(w.accepted);
                            sink.log(e);
                        }
                        Err(err) => {
                            let mut e = event(Kind::Unknown, Op::Write);
                            e.why = Some(short(&err.to_string()));
                            sink.log(e);
                        }
                    }
                }
            }
            Err(err) => {
                let mut e = event(Kind::Fail, Op::Read);
                e.why = Some(short(&err.to_string()));
                sink.log(e);
            }
        }
    }
    sink.log(valid(&held));

    if matches!(held, Held::Guard(_)) && rand::rng().random_bool(cfg.drop.clamp(0.0, 1.0)) {
        sink.log(event(Kind::Invoke, Op::Drop));
        drop(held);
        return;
    }
    sink.log(event(Kind::Invoke, Op::Release));
    let outcome = match maybe_cancel(cfg.cancel, locker.release(held)).await {
        None => {
            let mut e = event(Kind::Unknown, Op::Release);
            e.why = Some("cancelled".into());
            e
        }
        Some(Ok(())) => event(Kind::Ok, Op::Release),
        Some(Err(why)) => {
            let mut e = event(Kind::Fail, Op::Release);
            e.why = Some(why);
            e
        }
    };
    sink.log(outcome);
}

/// What the parent knows of one worker process from its events.
#[derive(Clone, Debug, Default)]
struct ProcState {
    /// Tokens it holds (acquired, not yet let go).
    holding: Vec<u64>,
    /// It read and has not written yet: the window a pause must hit.
    between_read_and_write: bool,
    exited: bool,
}

/// Worker processes: the torture binary re-executed as `worker`, logging
/// to its stdout, read back here into the scenario's history.
pub struct Processes {
    cfg: WorkerConfig,
    sink: Sink,
    /// When every process should be done: replacements run until then.
    deadline: tokio::time::Instant,
    next: Mutex<usize>,
    states: Arc<Mutex<HashMap<u32, ProcState>>>,
    readers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Processes {
    /// Starts `n` worker processes running `cfg` for `run_for`.
    ///
    /// # Errors
    ///
    /// When the binary cannot be re-executed.
    pub fn start(
        cfg: WorkerConfig,
        n: usize,
        sink: Sink,
        run_for: Duration,
    ) -> Result<Arc<Processes>, String> {
        let procs = Arc::new(Processes {
            cfg,
            sink,
            deadline: tokio::time::Instant::now() + run_for,
            next: Mutex::new(0),
            states: Arc::default(),
            readers: Mutex::default(),
        });
        for _ in 0..n {
            procs.spawn(run_for)?;
        }
        Ok(procs)
    }

    /// Starts one more worker process, running for `run_for`.
    ///
    /// # Errors
    ///
    /// When the binary cannot be re-executed.
    pub fn spawn(&self, run_for: Duration) -> Result<u32, String> {
        let index = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next
        };
        let mut cfg = self.cfg.clone();
        cfg.prefix = format!("p{index}.");
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = tokio::process::Command::new(exe)
            .arg("worker")
            .arg("--config")
            .arg(serde_json::to_string(&cfg).expect("config serializes"))
            .arg("--run-for-ms")
            .arg(run_for.as_millis().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start a worker process: {e}"))?;
        let pid = child.id().unwrap_or(0);
        let stdout = child.stdout.take().expect("piped");
        let (sink, states) = (self.sink.clone(), Arc::clone(&self.states));
        states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid, ProcState::default());
        let reader = tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(event) = serde_json::from_str::<Event>(&line) else {
                    continue;
                };
                {
                    let mut states = states.lock().unwrap_or_else(|e| e.into_inner());
                    let state = states.entry(pid).or_default();
                    match (event.op, event.kind) {
                        (Op::Acquire, Kind::Ok) => state.holding.extend(event.token),
                        (Op::Release | Op::Drop, Kind::Invoke) => {
                            state.holding.retain(|t| Some(*t) != event.token);
                        }
                        (Op::Read, Kind::Ok) => {
                            state.between_read_and_write = event.accepted == Some(true)
                        }
                        (Op::Write, Kind::Invoke) => state.between_read_and_write = false,
                        _ => {}
                    }
                }
                sink.log(event);
            }
            let _ = child.wait().await;
            if let Some(state) = states
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&pid)
            {
                state.exited = true;
            }
        });
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(reader);
        Ok(pid)
    }

    /// A live process that holds the lock, preferring one caught between
    /// its read and its write.
    pub fn holder(&self) -> Option<u32> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let live = states
            .iter()
            .filter(|(_, s)| !s.exited && !s.holding.is_empty());
        let mut best = None;
        for (pid, s) in live {
            if s.between_read_and_write {
                return Some(*pid);
            }
            best = Some(*pid);
        }
        best
    }

    /// Sends `signal` to worker `pid` (one of ours, still running).
    pub fn signal(&self, pid: u32, signal: libc::c_int) {
        let live = self
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&pid)
            .is_some_and(|s| !s.exited);
        if live {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is
            // a child we have not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }

    /// The run length a new process gets: until the others end.
    pub fn run_for(&self) -> Duration {
        self.deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(Duration::from_millis(100))
    }

    /// Waits for every process to exit and its events to be read.
    pub async fn join(&self) {
        loop {
            let readers: Vec<_> =
                std::mem::take(&mut *self.readers.lock().unwrap_or_else(|e| e.into_inner()));
            if readers.is_empty() {
                return;
            }
            for r in readers {
                let _ = r.await;
            }
        }
    }

    /// Kills every process still running (SIGCONT first, in case one is
    /// stopped).
    pub fn kill_all(&self) {
        let pids: Vec<u32> = self
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, s)| !s.exited)
            .map(|(p, _)| *p)
            .collect();
        for pid in pids {
            self.signal(pid, libc::SIGCONT);
            self.signal(pid, libc::SIGKILL);
        }
    }
}

/// The body of a worker process: runs `cfg` for `run_for`, events on stdout.
///
/// # Errors
///
/// When the clients cannot connect.
pub async fn process_main(cfg: WorkerConfig, run_for: Duration) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = Arc::clone(&stop);
    tokio::spawn(async move {
        tokio::time::sleep(run_for).await;
        stopper.store(true, Ordering::Relaxed);
    });
    run_tasks(&cfg, Sink::Stdout, stop).await
}

/// What the parent knows of one `leasehold run` slot.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// The running `leasehold run` supervisor.
    pid: Option<u32>,
    /// Its command holds (started its work, not yet finished).
    holding: bool,
}

/// Workers as `leasehold run NAME -- sh -c 'leasehold-torture hold … & wait'`:
/// the CLI's supervisor takes and renews the lease, the command does the
/// fenced read and write (its work outlasting the ttl, so only renewal
/// keeps it valid). The shell in between is what a user writes; killing
/// only its pid would leave the work running.
///
/// A command claims the lock from its start to its last heartbeat (it logs
/// one every 5 ms while it works), so a command that outlives its
/// supervisor past the ttl shows up as an overlap.
///
/// On a cluster the supervisor gets the seeds in `LEASEHOLD_URL` and
/// `LEASEHOLD_CLUSTER=1`, as a user's would; on Redlock the masters in
/// `LEASEHOLD_URL`, without `LEASEHOLD_CLUSTER`.
pub struct RunWorkers {
    cfg: WorkerConfig,
    sink: Sink,
    /// The `leasehold` binary (built next to this one).
    leasehold: std::path::PathBuf,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    /// Commands started under a lease (across slots and runs).
    granted: Arc<AtomicUsize>,
    /// How the last `leasehold run` that started no command exited.
    last_refusal: Mutex<Option<std::process::ExitStatus>>,
    stop: Arc<AtomicBool>,
    loops: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    readers: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl RunWorkers {
    /// Starts `n` slots, each running `leasehold run` again and again until
    /// [`stop`](Self::stop).
    ///
    /// # Errors
    ///
    /// When the `leasehold` binary is not next to this one (`cargo build
    /// --release -p leasehold-cli`; `cargo xtask torture` does it).
    pub fn start(cfg: WorkerConfig, n: usize, sink: Sink) -> Result<Arc<RunWorkers>, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let leasehold = exe.with_file_name("leasehold");
        if !leasehold.is_file() {
            return Err(format!(
                "{} not found: build it with `cargo build --release -p leasehold-cli` (cargo xtask torture does)",
                leasehold.display()
            ));
        }
        let runs = Arc::new(RunWorkers {
            cfg,
            sink,
            leasehold,
            slots: Arc::default(),
            granted: Arc::default(),
            last_refusal: Mutex::default(),
            stop: Arc::default(),
            loops: Mutex::default(),
            readers: Arc::default(),
        });
        for i in 0..n {
            let slot = format!("r{i}");
            let me = Arc::clone(&runs);
            let exe = exe.clone();
            let handle = tokio::spawn(async move { me.slot_loop(slot, exe).await });
            runs.loops
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(handle);
        }
        Ok(runs)
    }

    async fn slot_loop(&self, slot: String, exe: std::path::PathBuf) {
        while !self.stop.load(Ordering::Relaxed) {
            let script = "\"$0\" hold --store \"$1\" --worker \"$2\" --work-ms \"$3\" & wait";
            let mut command = tokio::process::Command::new(&self.leasehold);
            // On a cluster `lock_url` holds the seeds separated by commas,
            // the form `LEASEHOLD_URL` takes with `LEASEHOLD_CLUSTER=1`; an
            // inherited `LEASEHOLD_CLUSTER` must not turn one server's URL
            // into a seed, nor Redlock's masters into seeds.
            if self.cfg.cluster {
                command.env("LEASEHOLD_CLUSTER", "1");
            } else {
                command.env_remove("LEASEHOLD_CLUSTER");
            }
            if let Some(ca) = &self.cfg.tls_ca {
                command.arg("--tls-ca").arg(ca);
            }
            let spawned = command
                .env("LEASEHOLD_URL", &self.cfg.lock_url)
                .args(["run", &self.cfg.name])
                .args(["--ttl", &format!("{}ms", self.cfg.ttl_ms)])
                .args(["--wait", &format!("{}ms", self.cfg.wait_ms)])
                .args(["--grace", "100ms"])
                .arg("--")
                .args(["sh", "-c", script])
                .arg(&exe)
                .arg(&self.cfg.store_url)
                .arg(&slot)
                .arg(self.cfg.work_ms.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn();
            let Ok(mut child) = spawned else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            self.set(&slot, |s| s.pid = child.id());
            let stdout = child.stdout.take().expect("piped");
            let (sink, slots, name) = (self.sink.clone(), Arc::clone(&self.slots), slot.clone());
            let granted = Arc::clone(&self.granted);
            // Read until every writer is gone, the orphaned command too.
            let reader = tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let Ok(event) = serde_json::from_str::<Event>(&line) else {
                        continue;
                    };
                    if let Some(s) = slots
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_mut(&name)
                    {
                        match (event.op, event.kind) {
                            (Op::Acquire, Kind::Ok) => {
                                s.holding = true;
                                granted.fetch_add(1, Ordering::Relaxed);
                            }
                            (Op::Release, Kind::Invoke) => s.holding = false,
                            _ => {}
                        }
                    }
                    sink.log(event);
                }
            });
            self.readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(reader);
            let status = child.wait().await;
            let mut started = false;
            self.set(&slot, |s| {
                started = s.holding;
                s.pid = None;
                s.holding = false;
            });
            if let (Ok(status), false) = (status, started) {
                *self.last_refusal.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
            }
        }
    }

    fn set(&self, slot: &str, f: impl FnOnce(&mut Slot)) {
        f(self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(slot.to_owned())
            .or_default());
    }

    /// The pid of a `leasehold run` whose command holds the lease now.
    pub fn holder(&self) -> Option<u32> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|s| s.holding)
            .and_then(|s| s.pid)
    }

    /// SIGKILL of supervisor `pid`, if it is still one of ours and running.
    pub fn kill(&self, pid: u32) {
        let ours = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|s| s.pid == Some(pid));
        if ours {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is
            // a child not yet reaped (its slot still lists it).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }

    /// Fails when no `leasehold run` ever started its command: the
    /// scenario then tested nothing (a command line the CLI refuses, say).
    pub fn check_granted(&self) -> Result<(), String> {
        if self.granted.load(Ordering::Relaxed) > 0 {
            return Ok(());
        }
        let last = *self.last_refusal.lock().unwrap_or_else(|e| e.into_inner());
        Err(format!(
            "no `leasehold run` started its command (last one: {})",
            last.map_or("none exited".to_owned(), |s| s.to_string())
        ))
    }

    /// Stops starting new runs, waits for the running ones and for every
    /// command's events (orphans included) for at most `grace`.
    pub async fn stop(&self, grace: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let loops: Vec<_> =
            std::mem::take(&mut *self.loops.lock().unwrap_or_else(|e| e.into_inner()));
        let readers: Vec<_> =
            std::mem::take(&mut *self.readers.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::time::timeout(grace, async {
            for l in loops {
                let _ = l.await;
            }
            for r in readers {
                let _ = r.await;
            }
        })
        .await;
        // Readers of any run started while we waited.
        let late: Vec<_> =
            std::mem::take(&mut *self.readers.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = tokio::time::timeout(grace, async {
            for r in late {
                let _ = r.await;
            }
        })
        .await;
    }
}

/// The body of `leasehold-torture hold`, the command `leasehold run` runs:
/// the fenced read, work for about `work_ms`, the fenced write, with a
/// heartbeat every 5 ms, events on stdout.
///
/// # Errors
///
/// Without `$LEASEHOLD_FENCE` and `$LEASEHOLD_NAME`, or when the store
/// cannot be reached.
pub async fn hold_main(store_url: &str, worker: &str, work_ms: u64) -> Result<(), String> {
    let fence: u64 = std::env::var("LEASEHOLD_FENCE")
        .ok()
        .and_then(|f| f.parse().ok())
        .ok_or("LEASEHOLD_FENCE is not set: run me under `leasehold run`")?;
    let name = std::env::var("LEASEHOLD_NAME")
        .map_err(|_| "LEASEHOLD_NAME is not set: run me under `leasehold run`")?;
    let sink = Sink::Stdout;
    let token = token_hash(format!("run:{fence}").as_bytes());
    let event = |kind, op| {
        let mut e = Event::new(worker, kind, op);
        e.fence = Some(fence);
        e.token = Some(token);
        e
    };
    let mut started = event(Kind::Ok, Op::Acquire);
    started.valid_until = Some(started.t);
    sink.log(started);
    let store = Store::connect(store_url, &name)
        .await
        .map_err(|e| e.to_string())?;
    let beating = Arc::new(AtomicBool::new(true));
    let heart = {
        let (beating, sink, worker) = (Arc::clone(&beating), sink.clone(), worker.to_owned());
        tokio::spawn(async move {
            while beating.load(Ordering::Relaxed) {
                let mut e = Event::new(&worker, Kind::Ok, Op::Valid);
                e.fence = Some(fence);
                e.token = Some(token);
                e.valid_until = Some(e.t);
                sink.log(e);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    sink.log(event(Kind::Invoke, Op::Read));
    let read = store.read(Some(fence)).await.map_err(|e| e.to_string())?;
    let mut e = event(Kind::Ok, Op::Read);
    e.value = Some(read.value);
    e.accepted = Some(read.accepted);
    sink.log(e);
    if read.accepted {
        let work = rand::rng().random_range(work_ms / 2..=work_ms);
        tokio::time::sleep(Duration::from_millis(work)).await;
        sink.log(event(Kind::Invoke, Op::Write));
        let w = store
            .write(Some(fence), read.value + 1)
            .await
            .map_err(|e| e.to_string())?;
        let mut e = event(Kind::Ok, Op::Write);
        e.value = Some(read.value + 1);
        e.accepted = Some(w.accepted);
        sink.log(e);
    }
    beating.store(false, Ordering::Relaxed);
    let _ = heart.await;
    sink.log(event(Kind::Invoke, Op::Release));
    Ok(())
}
