//! R1 to R4: leasehold over N independent masters (Redlock), defined as the
//! peers' Redlock harness defines them (`shared/peers/README.md`, "Redlock
//! mode"), so that their figures and ours compare.
//!
//! One [`leasehold::Client`] on the masters (`Client::builder().redlock(..)`),
//! shared by every worker, as each peer shares one client per master. Every
//! lease has a 30 s ttl and needs a quorum of ⌊N/2⌋+1.
//!
//! - **R1**: one worker, 2,000 `try_acquire` + `release` cycles on one name
//!   after 100 warm-up cycles: cycles/s, p50, p99, and the masters on which
//!   the name still exists 200 ms after the last release (a key nobody
//!   holds).
//! - **R2**: 64 tasks, each on its own name, until 20,000 cycles in all or
//!   10 s.
//! - **R3**: 16 workers on one name for 10 s; under the lease each does
//!   `GET counter` / `SET counter+1` on master 1, non-atomic on purpose.
//!   Acquisitions/s, handoffs/s (an acquisition by another worker than the
//!   last holder), per-worker min/max, lost updates, handoff latency (from
//!   the holder's `release()` to the next holder's `acquire()` returning)
//!   and wait, p50/p99. leasehold has one setting: its blocking `acquire()`
//!   (woken by the release), where the peers run a default and an
//!   aggressive retry.
//! - **R4**: 100 warm-up cycles on a name of their own with every master up,
//!   then masters 4 and 5 (the last N − quorum) are frozen with SIGSTOP by
//!   pid, one worker runs cycles on a fresh name (500 or 20 s), and the
//!   masters get SIGCONT (also if the workload fails). A cycle started before
//!   the deadline may take 5 s more; if it has not returned, the row says
//!   stalled. Also: p50 over R1's (BENCH.md: at most 1.5), and the keys left
//!   on masters after the warm-up and after the thaw.
//!
//! Without masters given, 5 private redis-servers are started (testkit) for
//! the run. Masters given must be on this machine for R4 (their pids come
//! from `INFO server`, and only a `redis-server` process is signalled).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use crate::report::Row;
use crate::stats::{Hist, Ticker};
use crate::target::multiplexed;
use crate::{Error, KEY_PREFIX, Sizes, TTL, Workload, progress};

/// How many private masters are started when none are given.
pub(crate) const MASTERS: usize = 5;

/// How long a cycle started before R4's deadline may still take before it
/// counts as stalled (as the peers' harness).
const R4_GRACE: Duration = Duration::from_secs(5);

/// How long after the last release the keys left on masters are counted.
const SETTLE: Duration = Duration::from_millis(200);

/// Where the R workloads run, and what they report with.
struct Ctx<'a> {
    urls: Vec<String>,
    /// Each master's process, for R4's SIGSTOP; `None` where it cannot be
    /// signalled (not on this machine), with the reason.
    pids: Vec<Result<u32, String>>,
    /// One connection of the harness's own per master (counter, EXISTS).
    raw: Vec<MultiplexedConnection>,
    client: leasehold::Client,
    node_timeout: Option<Duration>,
    sizes: Sizes,
    progress: progress::Progress,
    /// R1's cycle p50, for R4's ratio.
    r1_p50_us: Option<f64>,
    sink: &'a mut dyn FnMut(Row),
}

impl Ctx<'_> {
    fn emit(&mut self, row: Row) {
        (self.sink)(row);
    }

    fn quorum(&self) -> usize {
        self.urls.len() / 2 + 1
    }

    /// The 1-based masters on which `key` exists.
    async fn keys_on(&mut self, key: &str) -> Result<Vec<usize>, Error> {
        let mut out = Vec::new();
        for (i, conn) in self.raw.iter_mut().enumerate() {
            let n: u64 = conn.exists(key).await?;
            if n > 0 {
                out.push(i + 1);
            }
        }
        Ok(out)
    }
}

/// `masters`: `None` starts [`MASTERS`] private ones for the run.
pub(crate) async fn run(
    workloads: &[Workload],
    masters: Option<Vec<String>>,
    node_timeout: Option<Duration>,
    sizes: Sizes,
    progress: progress::Progress,
    sink: &mut dyn FnMut(Row),
) -> Result<(), Error> {
    // Declared before the client, so dropped (killed) after it.
    let private;
    let (urls, pids) = match masters {
        Some(urls) => {
            let mut pids = Vec::new();
            for url in &urls {
                pids.push(local_pid(url).await);
            }
            (urls, pids)
        }
        None => {
            private =
                tokio::task::spawn_blocking(|| testkit::RedisServer::start_many(MASTERS)).await??;
            let urls = private.iter().map(|s| s.url()).collect();
            let pids = private
                .iter()
                .map(|s| s.pid().ok_or_else(|| "not running".to_owned()))
                .collect();
            (urls, pids)
        }
    };
    if urls.len() < 3 {
        return Err(Error::Invalid(format!(
            "R1 to R4 need at least 3 independent masters (5 as the peers run them), got {}",
            urls.len()
        )));
    }
    let mut raw = Vec::new();
    for url in &urls {
        raw.push(multiplexed(url.as_str()).await?);
    }
    let mut builder = leasehold::Client::builder().redlock(urls.clone());
    if let Some(t) = node_timeout {
        builder = builder.node_timeout(t);
    }
    let client = builder.connect().await?;
    let mut ctx = Ctx {
        urls,
        pids,
        raw,
        client,
        node_timeout,
        sizes,
        progress,
        r1_p50_us: None,
        sink,
    };
    for w in workloads {
        match w {
            Workload::R1 => r1(&mut ctx).await?,
            Workload::R2 => r2(&mut ctx).await?,
            Workload::R3 => r3(&mut ctx).await?,
            Workload::R4 => r4(&mut ctx).await?,
            _ => {}
        }
    }
    Ok(())
}

/// The pid of the `redis-server` behind `url`, if it runs on this machine.
async fn local_pid(url: &str) -> Result<u32, String> {
    let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(|e| e.to_string())?;
    let local = match info.addr() {
        redis::ConnectionAddr::Tcp(host, _) | redis::ConnectionAddr::TcpTls { host, .. } => {
            matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1" | "[::1]")
        }
        redis::ConnectionAddr::Unix(_) => true,
        _ => false,
    };
    if !local {
        return Err(format!("{url} is not on loopback"));
    }
    let mut conn = multiplexed(url).await.map_err(|e| e.to_string())?;
    let text: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let pid: u32 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("process_id:")?.parse().ok())
        .ok_or_else(|| format!("{url}: no process_id in INFO server"))?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "redis-server" {
        return Err(format!(
            "{url}: process {pid} is not a redis-server of this machine"
        ));
    }
    Ok(pid)
}

/// `1, 4`, or `none`.
fn list(masters: &[usize]) -> String {
    if masters.is_empty() {
        return "none".into();
    }
    masters
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cycles that failed (a quorum not reached within the per-node timeout,
/// e.g. on a machine too busy to answer in time), and the first error:
/// counted and reported rather than ending the workload, since the library
/// reports them to its caller as it should, and what was sent is still
/// carried out.
#[derive(Default)]
struct Failures {
    count: u64,
    first: Option<String>,
}

impl Failures {
    fn add(&mut self, e: impl std::fmt::Display) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(e.to_string());
        }
    }

    fn merge(&mut self, other: Failures) {
        self.count += other.count;
        self.first = self.first.take().or(other.first);
    }

    fn row(&self, workload: &str, what: &str) -> Row {
        let row = Row::new(workload, "failed_cycles", self.count as f64, "count").exactly(0.0);
        match &self.first {
            Some(e) => row.note(format!("{what} that returned an error; the first: {e}")),
            None => row.note(format!("{what} that returned an error")),
        }
    }
}

/// One uncontended cycle.
async fn cycle(lease: &leasehold::Lease) -> Result<(), Error> {
    lease.try_acquire().await?.release().await?;
    Ok(())
}

async fn r1(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let (warmup, cycles) = (ctx.sizes.r1_warmup, ctx.sizes.r1_cycles.max(1));
    let name = format!("{KEY_PREFIX}r1");
    let lease = ctx.client.lease(&name).ttl(TTL);
    let bar = ctx
        .progress
        .bar(warmup + cycles, "R1 one worker, 5 masters", "cycles");
    // A task of the runtime, as in W1.
    let worker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            for _ in 0..warmup {
                cycle(&lease).await?;
                bar.inc(1);
            }
            let mut hist = Hist::new();
            let mut failed = Failures::default();
            let started = Instant::now();
            for i in 0..cycles {
                let t = Instant::now();
                match cycle(&lease).await {
                    Ok(()) => hist.record(t.elapsed()),
                    Err(e) => failed.add(e),
                }
                if i % 64 == 0 {
                    bar.set_position(warmup + i);
                }
            }
            Ok::<_, Error>((hist, failed, started.elapsed().as_secs_f64()))
        })
    };
    let (hist, failed, secs) = worker.await??;
    bar.finish_and_clear();
    tokio::time::sleep(SETTLE).await;
    let left = ctx.keys_on(&name).await?;
    let (n, q) = (ctx.urls.len(), ctx.quorum());
    let p50 = hist.quantile_us(0.5);
    ctx.r1_p50_us = Some(p50);
    ctx.emit(
        Row::new("R1", "cycles_per_s", hist.len() as f64 / secs, "1/s")
            .target(">= 1.2 x best peer".into(), None)
            .note(format!(
                "{cycles} cycles after {warmup} warm-up, try_acquire + release; {n} masters, quorum {q}"
            )),
    );
    ctx.emit(Row::new("R1", "cycle_p50_us", p50, "us"));
    ctx.emit(Row::new("R1", "cycle_p99_us", hist.quantile_us(0.99), "us"));
    ctx.emit(
        Row::new("R1", "keys_left_on_masters", left.len() as f64, "count")
            .exactly(0.0)
            .note(format!(
                "masters holding the name {} ms after the last release: {}",
                SETTLE.as_millis(),
                list(&left)
            )),
    );
    ctx.emit(failed.row("R1", "timed cycles"));
    Ok(())
}

async fn r2(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let workers = ctx.sizes.r2_workers;
    let max_cycles = ctx.sizes.r2_max_cycles;
    let cap = ctx.sizes.r2_max_duration;
    let bar = ctx.progress.bar(
        max_cycles,
        &format!("R2 {workers} tasks, own names"),
        "cycles",
    );
    let tickets = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let _ticker = Ticker::start(&bar, &done);
    let leases: Vec<_> = (0..workers)
        .map(|i| ctx.client.lease(format!("{KEY_PREFIX}r2:{i}")).ttl(TTL))
        .collect();
    // No warm-up per name: the peers' R2 has none.
    let started = Instant::now();
    let deadline = started + cap;
    let mut tasks = tokio::task::JoinSet::new();
    for lease in leases {
        let tickets = Arc::clone(&tickets);
        let done = Arc::clone(&done);
        tasks.spawn(async move {
            let mut hist = Hist::new();
            let mut failed = Failures::default();
            while tickets.fetch_add(1, Ordering::Relaxed) < max_cycles && Instant::now() < deadline
            {
                let t = Instant::now();
                match cycle(&lease).await {
                    Ok(()) => hist.record(t.elapsed()),
                    Err(e) => failed.add(e),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (hist, failed)
        });
    }
    let mut hist = Hist::new();
    let mut failed = Failures::default();
    while let Some(h) = tasks.join_next().await {
        let (h, f) = h?;
        hist.merge(&h);
        failed.merge(f);
    }
    let secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let total = hist.len();
    ctx.emit(
        Row::new("R2", "cycles_per_s", total as f64 / secs, "1/s").note(format!(
            "{total} cycles in {secs:.2} s by {workers} tasks, one Client on {} masters",
            ctx.urls.len()
        )),
    );
    ctx.emit(Row::new("R2", "cycle_p50_us", hist.quantile_us(0.5), "us"));
    ctx.emit(Row::new("R2", "cycle_p99_us", hist.quantile_us(0.99), "us"));
    ctx.emit(failed.row("R2", "cycles"));
    Ok(())
}

/// Who held the lease last; touched under the lease.
struct Book {
    owner: Option<usize>,
    released_at: Option<Instant>,
    handoff: Hist,
}

async fn r3(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let workers = ctx.sizes.r3_workers;
    let run_for = ctx.sizes.r3_duration;
    let name = format!("{KEY_PREFIX}r3");
    let counter = format!("{KEY_PREFIX}r3:counter");
    // The counter lives on master 1, as in the peers' harness.
    let raw = ctx.raw[0].clone();
    let _: () = raw.clone().set(&counter, 0).await?;
    let lease = ctx
        .client
        .lease(&name)
        .ttl(TTL)
        .wait(Duration::from_secs(60));
    let bar = ctx.progress.bar(
        run_for.as_millis() as u64,
        &format!("R3 {workers} workers, one name"),
        "ms",
    );
    let book = Arc::new(Mutex::new(Book {
        owner: None,
        released_at: None,
        handoff: Hist::new(),
    }));
    let started = Instant::now();
    let deadline = started + run_for;
    let mut tasks = tokio::task::JoinSet::new();
    for me in 0..workers {
        let lease = lease.clone();
        let mut conn = raw.clone();
        let counter = counter.clone();
        let book = Arc::clone(&book);
        tasks.spawn(async move {
            let mut wait = Hist::new();
            let mut mine = 0u64;
            let mut failed = Failures::default();
            while Instant::now() < deadline {
                let asked = Instant::now();
                let guard = match lease.acquire().await {
                    Ok(g) => g,
                    Err(e) => {
                        failed.add(e);
                        continue;
                    }
                };
                let got = Instant::now();
                wait.record(got - asked);
                {
                    let mut b = book.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(released_at) = b.released_at
                        && b.owner != Some(me)
                    {
                        b.handoff.record(got - released_at);
                    }
                }
                // Non-atomic on purpose: only the lease keeps it right.
                let v: i64 = conn.get::<_, Option<i64>>(&counter).await?.unwrap_or(0);
                let _: () = conn.set(&counter, v + 1).await?;
                mine += 1;
                {
                    let mut b = book.lock().unwrap_or_else(|e| e.into_inner());
                    b.owner = Some(me);
                    b.released_at = Some(Instant::now());
                }
                if let Err(e) = guard.release().await {
                    failed.add(e);
                }
            }
            Ok::<_, Error>((mine, wait, failed))
        });
    }
    let ticker = Ticker::with(&bar, move || started.elapsed().as_millis() as u64);
    let mut per_worker = Vec::with_capacity(workers);
    let mut wait = Hist::new();
    let mut failure = None;
    let mut failed = Failures::default();
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok((n, w, f)) => {
                per_worker.push(n);
                wait.merge(&w);
                failed.merge(f);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    drop(ticker);
    let secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(e);
    }
    let final_counter: i64 = raw
        .clone()
        .get::<_, Option<i64>>(&counter)
        .await?
        .unwrap_or(0);
    let _: () = raw.clone().del(&counter).await?;
    let acq: u64 = per_worker.iter().sum();
    let book = book.lock().unwrap_or_else(|e| e.into_inner());
    let handoffs = book.handoff.len();
    let min = per_worker.iter().copied().min().unwrap_or(0);
    let max = per_worker.iter().copied().max().unwrap_or(0);
    ctx.emit(
        Row::new("R3", "acquisitions_per_s", acq as f64 / secs, "1/s").note(format!(
            "{acq} acquisitions by {workers} workers in {secs:.2} s; blocking acquire() (woken by the release, no retry setting)"
        )),
    );
    ctx.emit(
        Row::new("R3", "handoffs_per_s", handoffs as f64 / secs, "1/s")
            .target(">= 2 x best peer".into(), None)
            .note(format!(
                "{handoffs} acquisitions by another worker than the last holder"
            )),
    );
    ctx.emit(
        Row::new(
            "R3",
            "handoff_p50_ms",
            book.handoff.quantile_us(0.5) / 1e3,
            "ms",
        )
        .note("from the holder's release() to a different worker's acquire() returning"),
    );
    ctx.emit(Row::new(
        "R3",
        "handoff_p99_ms",
        book.handoff.quantile_us(0.99) / 1e3,
        "ms",
    ));
    ctx.emit(Row::new(
        "R3",
        "wait_p50_ms",
        wait.quantile_us(0.5) / 1e3,
        "ms",
    ));
    ctx.emit(Row::new(
        "R3",
        "wait_p99_ms",
        wait.quantile_us(0.99) / 1e3,
        "ms",
    ));
    ctx.emit(Row::new("R3", "wait_max_ms", wait.max_us() / 1e3, "ms"));
    ctx.emit(
        Row::new(
            "R3",
            "per_worker_min_max_ratio",
            min as f64 / max.max(1) as f64,
            "ratio",
        )
        .at_least(0.9)
        .note(format!("min {min}, max {max} acquisitions per worker")),
    );
    ctx.emit(
        Row::new(
            "R3",
            "lost_updates",
            acq as f64 - final_counter as f64,
            "count",
        )
        .exactly(0.0)
        .note(format!(
            "{acq} acquisitions, counter {final_counter} (GET/SET on master 1)"
        )),
    );
    ctx.emit(failed.row("R3", "acquires and releases"));
    Ok(())
}

/// Masters frozen with SIGSTOP; SIGCONT when dropped, whatever happened.
struct Frozen(Vec<u32>);

impl Frozen {
    fn new(pids: Vec<u32>) -> Frozen {
        for &pid in &pids {
            signal(pid, libc::SIGSTOP);
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &pid in &self.0 {
            signal(pid, libc::SIGCONT);
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory effects; the pid is a redis-server's,
    // started by this run or checked by `local_pid`.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

async fn r4(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let (n, q) = (ctx.urls.len(), ctx.quorum());
    let stop: Vec<usize> = (q..n).collect(); // 0-based: masters 4 and 5 of 5
    let pids = stop
        .iter()
        .map(|&i| ctx.pids[i].clone())
        .collect::<Result<Vec<u32>, String>>()
        .map_err(|why| {
            Error::Invalid(format!(
                "R4 freezes masters {} with SIGSTOP, which needs them on this machine: {why}",
                list(&stop.iter().map(|i| i + 1).collect::<Vec<_>>())
            ))
        })?;
    let (warmup, cycles, cap) = (
        ctx.sizes.r4_warmup,
        ctx.sizes.r4_cycles.max(1),
        ctx.sizes.r4_max_duration,
    );
    let warm_name = format!("{KEY_PREFIX}r4:warm");
    let name = format!("{KEY_PREFIX}r4");
    let warm = ctx.client.lease(&warm_name).ttl(TTL);
    for _ in 0..warmup {
        cycle(&warm).await?;
    }
    tokio::time::sleep(SETTLE).await;
    let left_warm = ctx.keys_on(&warm_name).await?;
    let bar = ctx.progress.bar(
        cycles,
        &format!("R4 {} of {n} masters frozen", stop.len()),
        "cycles",
    );
    let lease = ctx.client.lease(&name).ttl(TTL);
    let frozen = Frozen::new(pids);
    let started = Instant::now();
    let deadline = started + cap;
    // A task of the runtime, as R1's worker.
    let worker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut hist = Hist::new();
            let mut stalled = false;
            let mut failed = Failures::default();
            while hist.len() + failed.count < cycles && Instant::now() < deadline {
                let t = Instant::now();
                let limit = (deadline + R4_GRACE).saturating_duration_since(t);
                match tokio::time::timeout(limit, cycle(&lease)).await {
                    Ok(Ok(())) => {
                        hist.record(t.elapsed());
                        bar.inc(1);
                    }
                    Ok(Err(e)) => failed.add(e),
                    Err(_) => {
                        stalled = true;
                        break;
                    }
                }
            }
            (hist, failed, stalled)
        })
    };
    let (hist, failed, stalled) = worker
        .await
        .map_err(|e| Error::Invalid(format!("R4's worker failed: {e}")))?;
    let secs = started.elapsed().as_secs_f64();
    drop(frozen);
    bar.finish_and_clear();
    // The thawed masters work off what was sent to them while frozen;
    // what is left after that nobody holds.
    tokio::time::sleep(SETTLE * 5).await;
    let left_after = ctx.keys_on(&name).await?;
    let done = hist.len();
    let p50 = hist.quantile_us(0.5);
    let timeout = match ctx.node_timeout {
        Some(t) => format!("node timeout {} ms", t.as_millis()),
        None => "the library's default node timeout".into(),
    };
    let frozen_list = list(&stop.iter().map(|i| i + 1).collect::<Vec<_>>());
    ctx.emit(
        Row::new("R4", "cycles_per_s", done as f64 / secs, "1/s").note(format!(
            "{done} cycles in {secs:.2} s with masters {frozen_list} SIGSTOPped; {timeout}"
        )),
    );
    ctx.emit(Row::new("R4", "cycle_p50_us", p50, "us"));
    ctx.emit(Row::new("R4", "cycle_p99_us", hist.quantile_us(0.99), "us"));
    ctx.emit(failed.row("R4", "cycles with masters frozen"));
    ctx.emit(
        Row::new("R4", "stalled", f64::from(u8::from(stalled)), "count")
            .exactly(0.0)
            .note(format!(
                "1 if a cycle did not return within {} s after the deadline",
                R4_GRACE.as_secs()
            )),
    );
    if let Some(r1) = ctx.r1_p50_us.filter(|p| *p > 0.0) {
        ctx.emit(
            Row::new("R4", "cycle_p50_over_r1", p50 / r1, "ratio")
                .at_most(1.5)
                .note(format!("R4 p50 {p50:.0} us / R1 p50 {r1:.0} us")),
        );
    }
    ctx.emit(
        Row::new(
            "R4",
            "keys_left_after_warmup",
            left_warm.len() as f64,
            "count",
        )
        .exactly(0.0)
        .note(format!(
            "masters holding the warm-up name {} ms after its last release: {}",
            SETTLE.as_millis(),
            list(&left_warm)
        )),
    );
    ctx.emit(
        Row::new(
            "R4",
            "keys_left_after_thaw",
            left_after.len() as f64,
            "count",
        )
        .exactly(0.0)
        .note(format!(
            "masters holding R4's name {} ms after SIGCONT: {}",
            (SETTLE * 5).as_millis(),
            list(&left_after)
        )),
    );
    Ok(())
}
