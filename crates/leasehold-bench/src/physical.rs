//! W0, the physical limit: the Redis commands of a lease cycle driven as fast
//! as the server takes them.
//!
//! The latency floor W1 and W3 are held to comes from [`raw`]: a blocking
//! `std::net` client sending PING, W1's cycle and W3's three-command chain
//! one at a time. The throughput shapes below are W2's and W4's limits.
//!
//! `redis-benchmark --csv` does it when it is on `PATH` (Debian ships it in
//! redis-tools, which redis-server depends on); otherwise a raw redis-rs
//! client of ours does the same: `c` connections, each sending pipelines of
//! `p` requests back to back, a request's latency being its pipeline's round
//! trip (as redis-benchmark counts it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::raw;
use crate::report::{Better, Row};
use crate::stats::Hist;
use crate::{Ctx, Error, KEY_PREFIX};

/// The compare-and-delete script of BENCH.md (and of the peers' W0).
pub(crate) const CAS_DEL: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A command of a lease cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Cmd {
    Ping,
    SetNx,
    EvalCasDel,
}

impl Cmd {
    fn figure(self) -> &'static str {
        match self {
            Cmd::Ping => "ping",
            Cmd::SetNx => "set_nx_px",
            Cmd::EvalCasDel => "eval_cas_del",
        }
    }

    fn argv(self) -> Vec<String> {
        let key = format!("{KEY_PREFIX}w0");
        match self {
            Cmd::Ping => vec!["PING".into()],
            Cmd::SetNx => vec![
                "SET".into(),
                key,
                "v".into(),
                "NX".into(),
                "PX".into(),
                "30000".into(),
            ],
            Cmd::EvalCasDel => vec!["EVAL".into(), CAS_DEL.into(), "1".into(), key, "tok".into()],
        }
    }
}

/// (command, clients, pipeline, requests at scale 1): BENCH.md's shapes,
/// with the peers' request counts.
const SHAPES: [(Cmd, usize, usize, u64); 9] = [
    (Cmd::Ping, 1, 1, 30_000),
    (Cmd::SetNx, 1, 1, 30_000),
    (Cmd::SetNx, 64, 1, 200_000),
    (Cmd::SetNx, 1, 16, 300_000),
    (Cmd::SetNx, 64, 16, 1_000_000),
    (Cmd::EvalCasDel, 1, 1, 30_000),
    (Cmd::EvalCasDel, 64, 1, 200_000),
    (Cmd::EvalCasDel, 1, 16, 300_000),
    (Cmd::EvalCasDel, 64, 16, 1_000_000),
];

/// One measured shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
}

/// W0's results, and the limits the other workloads are compared with.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    results: HashMap<(Cmd, usize, usize), Measured>,
    /// The raw blocking client's floor; `None` where it could not run
    /// (`rediss://`, an error: its row says why).
    raw: Option<raw::Floor>,
}

impl Limits {
    fn get(&self, cmd: Cmd, c: usize, p: usize) -> Option<Measured> {
        self.results.get(&(cmd, c, p)).copied()
    }

    /// The raw client's SET NX PX + EVALSHA in series: W1's cycles/s.
    pub(crate) fn cycle_per_s(&self) -> Option<f64> {
        Some(self.raw?.cycle_per_s)
    }

    /// The raw client's cycle p50, in µs: W1's cycle p50.
    pub(crate) fn cycle_p50_us(&self) -> Option<f64> {
        Some(self.raw?.cycle_p50_us)
    }

    /// One SET NX PX + one EVAL at -c 64 -P 16: BENCH.md's "pipelined
    /// ceiling", W2's limit.
    pub(crate) fn pipelined_cycle_per_s(&self) -> Option<f64> {
        let set = self.get(Cmd::SetNx, 64, 16)?.rps;
        let eval = self.get(Cmd::EvalCasDel, 64, 16)?.rps;
        Some(1.0 / (1.0 / set + 1.0 / eval))
    }

    /// GET, SET, then one script that releases and hands over (EVALSHA):
    /// three round trips in series by the raw client, the critical path of
    /// one W3 handoff. No lock can do with less: the critical section's
    /// two commands and one to let go. (A lock whose next holder must send
    /// its own acquire after the release needs a fourth, SET NX.)
    pub(crate) fn handoff_chain_per_s(&self) -> Option<f64> {
        Some(self.raw?.chain_per_s)
    }

    /// The release (the chain's EVALSHA) p50 by the raw client, in ms: the
    /// least a handoff takes.
    pub(crate) fn handoff_p50_ms(&self) -> Option<f64> {
        Some(self.raw?.release_p50_us / 1e3)
    }

    /// EVAL at -c 64 (no pipelining): W4's Lua strategy is held to 70 % of it.
    pub(crate) fn eval_c64_per_s(&self) -> Option<f64> {
        Some(self.get(Cmd::EvalCasDel, 64, 1)?.rps)
    }
}

/// Runs W0 and reports its rows: the raw client's floor first (on a quiet
/// server), then the redis-benchmark shapes and the redis-rs floors, unless
/// [`Sizes::w0_floor_only`](crate::Sizes::w0_floor_only).
pub(crate) async fn measure(ctx: &mut Ctx<'_>) -> Result<Limits, Error> {
    let raw = raw_floor(ctx).await;
    if ctx.sizes.w0_floor_only {
        return Ok(Limits {
            results: HashMap::new(),
            raw,
        });
    }
    let tool = if ctx.sizes.w0_raw {
        None
    } else {
        redis_benchmark(&ctx.url)
    };
    let bar = ctx
        .progress
        .bar(SHAPES.len() as u64, "W0 physical limit", "runs");
    let by = match tool {
        Some(_) => "redis-benchmark",
        None => "raw redis-rs pipeline",
    };
    bar.set_message(by);
    let mut results = HashMap::new();
    for (cmd, c, p, n) in SHAPES {
        let n = ((n as f64 * ctx.sizes.w0_scale) as u64).max((c * p * 4) as u64);
        let m = match &tool {
            Some(args) => run_tool(args, cmd, c, p, n).await?,
            None => run_raw(&ctx.url, cmd, c, p, n).await?,
        };
        results.insert((cmd, c, p), m);
        let row = Row::new(
            "W0",
            &format!("{}_c{c}_p{p}_rps", cmd.figure()),
            m.rps,
            "1/s",
        )
        .note(format!("{by}, {n} requests, p50 {:.3} ms", m.p50_ms));
        ctx.emit(row);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let limits = Limits { results, raw };
    if let Some(v) = limits.pipelined_cycle_per_s() {
        ctx.emit(
            Row::new("W0", "cycle_ceiling_pipelined_per_s", v, "1/s")
                .note("1 SET NX PX + 1 EVAL at -c 64 -P 16 (W2's limit)"),
        );
    }
    if let Some(p50) = limits.get(Cmd::Ping, 1, 1).map(|m| m.p50_ms * 1e3) {
        ctx.emit(
            Row::new("W0", "ping_c1_p50_us", p50, "us")
                .note("PING p50 at -c 1 as redis-benchmark reports it"),
        );
    }
    let cycles = ((5_000.0 * ctx.sizes.w0_scale) as u64).max(50);
    // In a task, as W1's worker is.
    let (per_s, p50) = tokio::spawn(redis_rs_floor(ctx.url.clone(), cycles)).await??;
    let floor = "SET NX PX + EVALSHA cas-del in series by one task, one redis-rs multiplexed connection, this runtime: the floor of the client stack leasehold is built on";
    ctx.emit(Row::new("W0", "redis_rs_cycle_per_s", per_s, "1/s").note(floor));
    ctx.emit(Row::new("W0", "redis_rs_cycle_p50_us", p50, "us").note(floor));
    let lease = ctx
        .client
        .lease(format!("{KEY_PREFIX}w0:scripts"))
        .ttl(crate::TTL);
    let p50 = tokio::spawn(scripts_floor(ctx.url.clone(), lease, cycles)).await??;
    ctx.emit(Row::new("W0", "redis_rs_lease_scripts_cycle_p50_us", p50, "us").note(
        "leasehold's own acquire and release scripts in series by one task on one redis-rs multiplexed connection: redis_rs_cycle plus what the scripts cost in Redis, without the library around them (W1 minus this is the library's share)",
    ));
    let tasks = ctx.sizes.w2_workers;
    let cycles = ((50_000.0 * ctx.sizes.w0_scale) as u64).max(500);
    let (per_s, cpu_us) = redis_rs_tasks_floor(&ctx.url, tasks, cycles).await?;
    let floor = format!(
        "W2's cycle (SET NX PX + EVALSHA cas-del) by {tasks} tasks on one redis-rs multiplexed connection, this runtime"
    );
    ctx.emit(Row::new("W0", "redis_rs_tasks_cycle_per_s", per_s, "1/s").note(floor.clone()));
    ctx.emit(
        Row::new("W0", "redis_rs_tasks_client_cpu_us_per_cycle", cpu_us, "us")
            .note(format!("{floor}: CPU of this process per cycle")),
    );
    Ok(limits)
}

/// The raw blocking client's floor (see [`raw`]), on a thread of the
/// blocking pool, with its rows. Never fails the run: where the client
/// cannot go (`rediss://`) or meets an error, one row says so and W1's and
/// W3's rows go without a limit.
async fn raw_floor(ctx: &mut Ctx<'_>) -> Option<raw::Floor> {
    let samples = ((5_000.0 * ctx.sizes.w0_scale) as u64).max(50);
    let warmup = 200.min(samples);
    let url = ctx.url.clone();
    let measured = tokio::task::spawn_blocking(move || raw::measure(&url, warmup, samples))
        .await
        .map_err(Error::from)
        .and_then(|r| r);
    let f = match measured {
        Ok(f) => f,
        Err(e) => {
            let why = match raw::parse_url(&ctx.url) {
                Err(why) => why,
                Ok(_) => e.to_string(),
            };
            ctx.emit(
                Row::new("W0", "raw_floor_measured", 0.0, "count").note(format!(
                    "no raw floor this run ({why}); W1's and W3's rows have no limit"
                )),
            );
            return None;
        }
    };
    let by = format!(
        "blocking std::net client, TCP_NODELAY, its own thread, no runtime; {} in series after {warmup} warm-up",
        f.samples
    );
    let rows = [
        ("raw_rtt_p50_us", f.rtt_p50_us, "us", "PING: one round trip"),
        ("raw_rtt_p99_us", f.rtt_p99_us, "us", "PING"),
        (
            "raw_cycle_p50_us",
            f.cycle_p50_us,
            "us",
            "SET k tok NX PX 30000 + EVALSHA cas-del: W1's cycle (W1's p50 limit)",
        ),
        (
            "raw_cycle_p99_us",
            f.cycle_p99_us,
            "us",
            "SET NX PX + EVALSHA cas-del",
        ),
        (
            "raw_cycle_per_s",
            f.cycle_per_s,
            "1/s",
            "SET NX PX + EVALSHA cas-del: W1's cycles/s limit",
        ),
        (
            "raw_handoff_chain_per_s",
            f.chain_per_s,
            "1/s",
            "GET + SET + EVALSHA release: the 3 round trips of a W3 handoff (W3's limit)",
        ),
        (
            "raw_handoff_chain_p50_us",
            f.chain_p50_us,
            "us",
            "GET + SET + EVALSHA release",
        ),
        (
            "raw_release_p50_us",
            f.release_p50_us,
            "us",
            "the chain's EVALSHA alone: one release (W3's handoff p50 limit)",
        ),
    ];
    for (figure, value, unit, what) in rows {
        ctx.emit(Row::new("W0", figure, value, unit).note(format!("{what}; {by}")));
    }
    Some(f)
}

/// W2's cycle done with bare redis-rs: `tasks` tasks sharing one
/// multiplexed connection, each on its own key. Returns cycles/s and this
/// process's CPU per cycle in µs.
async fn redis_rs_tasks_floor(url: &str, tasks: usize, cycles: u64) -> Result<(f64, f64), Error> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let script = redis::Script::new(CAS_DEL);
    let _: String = script
        .prepare_invoke()
        .load_async(&mut conn.clone())
        .await?;
    let tickets = Arc::new(AtomicU64::new(0));
    let cpu = crate::stats::own_cpu();
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..tasks {
        let (mut conn, script, tickets) = (conn.clone(), script.clone(), Arc::clone(&tickets));
        let key = format!("{KEY_PREFIX}w0:floor:{i}");
        set.spawn(async move {
            while tickets.fetch_add(1, Ordering::Relaxed) < cycles {
                let _: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg("tok")
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000)
                    .query_async(&mut conn)
                    .await?;
                let _: i64 = script.key(&key).arg("tok").invoke_async(&mut conn).await?;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu_us = crate::stats::own_cpu().saturating_sub(cpu).as_secs_f64() * 1e6 / cycles as f64;
    Ok((cycles as f64 / secs, cpu_us))
}

/// leasehold's acquire and release scripts (`bench_hooks::scripts_cycle`)
/// on a bare redis-rs connection: the p50 of one cycle, in µs.
async fn scripts_floor(url: String, lease: leasehold::Lease, cycles: u64) -> Result<f64, Error> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let (token, publisher) = (leasehold::Token::random(), leasehold::Token::random());
    let mut hist = Hist::new();
    for i in 0..cycles + 200 {
        if i == 200 {
            hist = Hist::new();
        }
        let t = Instant::now();
        let done =
            leasehold::bench_hooks::scripts_cycle(&mut conn, &lease, &token, &publisher).await?;
        hist.record(t.elapsed());
        if !done {
            return Err(Error::Tool(
                "leasehold's scripts did not take and release the W0 lease".into(),
            ));
        }
    }
    Ok(hist.quantile_us(0.5))
}

/// W1's cycle done with bare redis-rs: what any client on this stack (tokio,
/// a multiplexed connection) pays before leasehold adds anything.
async fn redis_rs_floor(url: String, cycles: u64) -> Result<(f64, f64), Error> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let key = format!("{KEY_PREFIX}w0:floor");
    let script = redis::Script::new(CAS_DEL);
    let mut hist = Hist::new();
    let mut started = Instant::now();
    for i in 0..cycles + 200 {
        if i == 200 {
            hist = Hist::new();
            started = Instant::now();
        }
        let t = Instant::now();
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg("tok")
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query_async(&mut conn)
            .await?;
        let _: i64 = script.key(&key).arg("tok").invoke_async(&mut conn).await?;
        hist.record(t.elapsed());
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((cycles as f64 / secs, hist.quantile_us(0.5)))
}

/// The first arguments of `redis-benchmark` for `url`, if it is on `PATH`
/// and can reach that kind of URL.
fn redis_benchmark(url: &str) -> Option<Vec<String>> {
    let path = std::env::var_os("PATH")?;
    let binary: PathBuf = std::env::split_paths(&path)
        .map(|d| d.join("redis-benchmark"))
        .find(|p| p.is_file())?;
    let mut args = vec![binary.to_string_lossy().into_owned()];
    if url.starts_with("redis://") {
        args.extend(["-u".into(), url.to_owned()]);
    } else if let Some(path) = url.strip_prefix("unix://") {
        args.extend(["-s".into(), path.to_owned()]);
    } else {
        return None; // rediss:// and others: the raw client handles them
    }
    Some(args)
}

async fn run_tool(
    base: &[String],
    cmd: Cmd,
    c: usize,
    p: usize,
    n: u64,
) -> Result<Measured, Error> {
    let output = tokio::process::Command::new(&base[0])
        .args(&base[1..])
        .args([
            "-c",
            &c.to_string(),
            "-P",
            &p.to_string(),
            "-n",
            &n.to_string(),
        ])
        .arg("--csv")
        .args(cmd.argv())
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(Error::Tool(format!(
            "exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let measured =
        parse_csv(&stdout).ok_or_else(|| Error::Tool(format!("unexpected output: {stdout:?}")))?;
    Ok(at_resolution(measured, n))
}

/// redis-benchmark counts elapsed time in whole milliseconds: a run of `n`
/// requests over in less than one reports `inf` requests per second. Say
/// instead what is known: at least `n` in a millisecond.
fn at_resolution(mut m: Measured, n: u64) -> Measured {
    if !m.rps.is_finite() {
        m.rps = n as f64 * 1000.0;
    }
    m
}

/// The last data line of `redis-benchmark --csv`: the `rps` and
/// `p50_latency_ms` columns, found by the header.
fn parse_csv(text: &str) -> Option<Measured> {
    let split = |line: &str| -> Vec<String> {
        line.split("\",\"")
            .map(|f| f.trim().trim_matches('"').to_owned())
            .collect()
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = split(lines.next()?);
    let data = split(lines.next_back()?);
    let col = |name: &str| -> Option<f64> {
        let i = header.iter().position(|h| h == name)?;
        data.get(i)?.parse().ok()
    };
    Some(Measured {
        rps: col("rps")?,
        p50_ms: col("p50_latency_ms")?,
    })
}

async fn run_raw(url: &str, cmd: Cmd, c: usize, p: usize, n: u64) -> Result<Measured, Error> {
    let client = redis::Client::open(url)?;
    let mut conns = Vec::with_capacity(c);
    for _ in 0..c {
        conns.push(client.get_multiplexed_async_connection().await?);
    }
    let argv = cmd.argv();
    let mut pipe = redis::pipe();
    for _ in 0..p {
        let mut one = redis::cmd(&argv[0]);
        for a in &argv[1..] {
            one.arg(a);
        }
        pipe.add_command(one).ignore();
    }
    let batches = (n / (c * p) as u64).max(1);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let pipe = pipe.clone();
        tasks.spawn(async move {
            let mut hist = Hist::new();
            for _ in 0..batches {
                let t = Instant::now();
                pipe.query_async::<()>(&mut conn).await?;
                hist.record_n(t.elapsed(), p as u64);
            }
            Ok::<_, Error>(hist)
        });
    }
    let mut hist = Hist::new();
    while let Some(h) = tasks.join_next().await {
        hist.merge(&h??);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Measured {
        rps: hist.len() as f64 / secs,
        p50_ms: hist.quantile_us(0.5) / 1e3,
    })
}

/// For the rows of other workloads: a rate compared with a limit.
pub(crate) fn rate(row: Row, limit: Option<f64>, of: &str) -> Row {
    row.limit(limit, of, Better::Higher)
}

/// For the rows of other workloads: a time compared with a limit.
pub(crate) fn time(row: Row, limit: Option<f64>, of: &str) -> Row {
    row.limit(limit, of, Better::Lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_shorter_than_a_millisecond_is_a_lower_bound_not_inf() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"SET\",\"inf\",\"0.016\",\"0.008\",\"0.015\",\"0.031\",\"0.031\",\"0.031\"\n";
        let m = at_resolution(parse_csv(text).unwrap(), 60);
        assert_eq!(m.rps, 60_000.0);
        assert_eq!(m.p50_ms, 0.015);
    }

    #[test]
    fn parses_redis_benchmark_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"EVAL if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end 1 k tok\",\"281690.12\",\"3.334\",\"0.792\",\"3.519\",\"4.175\",\"4.647\",\"5.759\"\n";
        let m = parse_csv(text).unwrap();
        assert_eq!(m.rps, 281690.12);
        assert_eq!(m.p50_ms, 3.519);
    }
}
