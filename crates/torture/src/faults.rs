//! The faults, and the scheduler that injects them while the workers run.
//!
//! Every fault is undone by the time its `inject` returns (a paused server
//! resumed, a memory limit lifted, a proxy healed), so faults can be drawn
//! at random in any order. Each injection is logged as an [`Op::Fault`]
//! event from its start (`t`) to its end (`valid_until`); the checkers
//! measure recovery from the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
        }
    }
}

/// Everything a fault may act on.
pub struct Lab {
    /// The lock's server. A std mutex: restarts block, and run on a
    /// blocking thread.
    pub server: Arc<Mutex<testkit::RedisServer>>,
    /// Its port (the same across restarts).
    pub port: u16,
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
}

/// Why an admin command failed: its connection was cut, or anything else.
enum CommandError {
    Connection(String),
    Other(String),
}

/// How long an admin command may take before the fault gives up on it.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

impl Lab {
    /// A fresh connection straight to the server (never through the proxy,
    /// and new each time so that killed connections do not matter).
    async fn admin(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(ADMIN_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .map_err(|_| "admin connection timed out".to_string())?
            .map_err(|e| e.to_string())
    }

    /// Runs one admin command; errors are returned as text. A connection
    /// cut under it (a `CLIENT KILL` injected at the same moment) is tried
    /// once more on a new one.
    pub async fn command(&self, args: &[&str]) -> Result<redis::Value, String> {
        match self.command_once(args).await {
            Err(CommandError::Connection(_)) => self.command_once(args).await,
            other => other,
        }
        .map_err(|(CommandError::Connection(e) | CommandError::Other(e))| e)
    }

    async fn command_once(&self, args: &[&str]) -> Result<redis::Value, CommandError> {
        let mut conn = self.admin().await.map_err(CommandError::Other)?;
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

    async fn restart(&self) -> Result<(), String> {
        let server = Arc::clone(&self.server);
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

    fn with_server(&self, f: impl FnOnce(&mut testkit::RedisServer)) {
        f(&mut self.server.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Injects `fault` and undoes it; logs it. `Ok(false)`: nothing to do
    /// (no holder to stop, say).
    pub async fn inject(&self, fault: Fault) -> Result<bool, String> {
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
            Fault::ScriptFlush => self.command(&["SCRIPT", "FLUSH"]).await.map(|_| true),
            Fault::KillNormal => self
                .command(&["CLIENT", "KILL", "TYPE", "normal"])
                .await
                .map(|_| true),
            Fault::KillPubsub => self
                .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
                .await
                .map(|_| true),
            Fault::ClientPause(d) => {
                self.command(&["CLIENT", "PAUSE", &d.as_millis().to_string(), "ALL"])
                    .await?;
                tokio::time::sleep(d).await;
                Ok(true)
            }
            Fault::ServerStop(d) => {
                self.with_server(|s| s.pause());
                tokio::time::sleep(d).await;
                self.with_server(|s| s.resume());
                Ok(true)
            }
            Fault::ServerKill(d) => {
                self.with_server(|s| s.kill());
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
                self.command(&["CONFIG", "SET", "busy-reply-threshold", "50"])
                    .await?;
                let mut conn = self.admin().await?;
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
                let _ = self.command(&["SCRIPT", "KILL"]).await;
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
                self.with_server(|s| s.kill());
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
                    let server = self.server.lock().unwrap_or_else(|e| e.into_inner());
                    server.shift_clock(offset).map_err(|e| e.to_string())
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
        self.with_server(|s| s.resume());
        let down = self
            .server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pid()
            .is_none();
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
