//! The benchmark workloads of BENCH.md (at the repository's root: the
//! workloads, the floors, the targets, how to run), run by `leasehold bench`.
//!
//! ```no_run
//! # async fn f() -> Result<(), leasehold_bench::Error> {
//! use leasehold_bench::{Options, Workload};
//!
//! let opts = Options {
//!     workloads: vec![Workload::W1, Workload::W3],
//!     progress: true,
//!     ..Options::default() // no url: a private redis-server is started
//! };
//! let mut rows = Vec::new();
//! leasehold_bench::run(opts, &mut |row| rows.push(row)).await?;
//! leasehold_bench::print_table(&rows);
//! # Ok(()) }
//! ```
//!
//! Every workload goes through ONE [`leasehold::Client`] (leases of 30 s, so
//! none expires during a run) and reports [`Row`]s: a figure with a plain
//! name (`cycles_per_s`, `handoff_p99_ms`, `lost_updates`, ...), the
//! physical limit measured in the same run where one applies (W0: the same
//! Redis commands driven as fast as the server takes them), leasehold's share
//! of that limit, and the target of BENCH.md.
//!
//! # Layout
//!
//! - `physical`: W0, the floors: the raw client's, then `redis-benchmark
//!   --csv`'s shapes when it is on `PATH` (else a raw pipelined redis-rs
//!   client of ours), then the redis-rs floors.
//! - `raw`: the raw client: a blocking `std::net` client with a minimal RESP
//!   writer and reader, no runtime; W1's and W3's latency floor.
//! - `uncontended`: W1 (one worker, latency) and W2 (64 tasks on their own
//!   names, throughput).
//! - `contended`: W3, 16 workers on one name: handoffs, fairness, lost
//!   updates, Redis commands per handoff (`INFO commandstats`).
//! - [`flash_sale`]: W4's strategies (naive, WATCH, lease, Lua), public
//!   because `leasehold demo` shows them too.
//! - `waiters`: W5, 10,000 tasks waiting on one name.
//! - `cluster`: W6, W2 and W3 on a Redis Cluster beside the one server.
//! - `redlock`: R1 to R4, leasehold over 5 independent masters (Redlock),
//!   as the peers' Redlock harness defines them.
//! - [`Target`]: one server or a cluster, and the harness's connections
//!   there.
//! - `workload`: [`Workload`] and [`WorkloadArg`], the names the command
//!   line takes (clap value enums).
//! - `report`: [`Row`], [`print_table`], [`row_json`].
//! - [`peers`]: runs the peer libraries of `shared/peers/` against the same
//!   server and compares (used by `cargo xtask bench`).
//! - `stats`, `progress`: histograms, `INFO` parsing, `/proc` memory, bars.
//!
//! # Figures and their limits
//!
//! | workload | limit taken from W0 |
//! |---|---|
//! | W1 cycles/s, p50 | the raw client: `SET NX PX` + `EVALSHA` in series (`raw_cycle_per_s`, `raw_cycle_p50_us`); target p50 ≤ 1.25 × `raw_cycle_p50_us` |
//! | W2 cycles/s | one `SET NX PX` + one `EVAL` at `-c 64 -P 16` (the "pipelined ceiling") |
//! | W3 handoffs/s | the raw client: `GET`, `SET`, `EVALSHA` release, three round trips in series (`raw_handoff_chain_per_s`: the critical section and one script that releases and hands over; a lock whose next holder sends its own acquire needs a fourth); target ≥ 85 % of it |
//! | W3 handoff p50 | one release: the raw client's `EVALSHA` p50 (`raw_release_p50_us`) |
//! | W4 lease units/s | the raw client's three-command chain |
//! | W4 Lua units/s | `EVAL` at `-c 64` |
//!
//! A rate's share is `value / limit`; a time's share is `limit / value`. Both
//! are at most about 1, the closer the better.
//!
//! W0 also measures the floor of the client stack leasehold is built on:
//! W1's and W2's cycles done with bare redis-rs (one multiplexed connection,
//! this tokio runtime), and W2 and W3 report the CPU they cost per cycle or
//! handoff on each side (this process: `getrusage`; the server: `INFO cpu`
//! and `INFO commandstats`), so that a figure that falls short shows what
//! limits it.
//!
//! # Binaries
//!
//! - `leasehold-bench [W0|..|W6|all|R1|..|R4|redlock] [--json] [--duration D] [--workers N]
//!   [--url URL] [--cluster-url URL]... [--master URL]...`: the flags of `leasehold bench`, until the CLI calls
//!   [`run`] itself.
//! - `leasehold-bench-peers --rows FILE --url URL --peers DIR`: prints a
//!   run's rows, then runs the peers on the same server and compares (see
//!   [`peers`]). `cargo xtask bench` runs both against one private server.
//!   `leasehold-bench-peers --redlock --peers DIR`: R1 to R4 of leasehold
//!   and of the peers' Redlock harness on the same 5 masters, interleaved.
//!   `leasehold-bench-peers --interleave K --peers DIR`: W1 and W2 of
//!   leasehold, node-redlock and rslock, K passes in turn on one server,
//!   medians and spreads ([`peers::summarize`]).

#![deny(missing_docs)]

mod cluster;
mod contended;
mod error;
pub mod flash_sale;
pub mod peers;
mod physical;
mod progress;
mod raw;
mod redlock;
mod report;
mod stats;
mod target;
mod uncontended;
mod waiters;
mod workload;

use std::time::Duration;

pub use error::Error;
pub use report::{Row, format_table, parse_row_json, print_table, row_json};
pub use target::{Conn, Target};
pub use workload::{Workload, WorkloadArg};

/// Prefix of every key the benchmark writes, so that a shared server can be
/// cleaned with `SCAN MATCH leasehold-bench:*`.
pub const KEY_PREFIX: &str = "leasehold-bench:";

/// What to run, and where.
///
/// ```
/// let opts = leasehold_bench::Options {
///     url: Some("redis://127.0.0.1:6379".into()),
///     duration: Some(std::time::Duration::from_secs(5)),
///     ..Default::default()
/// };
/// assert!(opts.workloads.is_empty()); // empty: all of W1 to W6
/// ```
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The server to measure; `None` starts a private throwaway
    /// `redis-server` (testkit) for the run and stops it at the end.
    pub url: Option<String>,
    /// The workloads to run, in order; empty means all of them.
    pub workloads: Vec<Workload>,
    /// Seeds of the Redis Cluster W6 runs on; `None` starts a private
    /// 3-master loopback cluster (testkit) for W6 and stops it after.
    pub cluster: Option<Vec<String>>,
    /// Redlock's independent masters R1 to R4 run on; `None` starts 5
    /// private `redis-server`s (testkit) for them and stops them after.
    /// R4 freezes the last two with SIGSTOP, so given masters must run on
    /// this machine for R4.
    pub redlock: Option<Vec<String>>,
    /// The per-node timeout of R1 to R4's Redlock client; `None` is the
    /// library's default.
    pub node_timeout: Option<Duration>,
    /// Overrides how long W3 and R3 run (10 s; 5 s per leg in W6) and W2's
    /// and R2's time caps (10 s).
    pub duration: Option<Duration>,
    /// Overrides the number of workers of W2 and R2 (64), W3 and R3 (16).
    pub workers: Option<usize>,
    /// Draw a progress bar per workload on stderr (only if it is a terminal).
    pub progress: bool,
    /// The sizes of the workloads; BENCH.md's by default. Tests shrink them.
    pub sizes: Sizes,
}

/// The sizes of every workload. [`Default`] is exactly BENCH.md's.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Fraction of W0's request counts (1.0: 30,000 requests at `-c 1`,
    /// 200,000 at `-c 64`, 300,000 at `-c 1 -P 16`, 1,000,000 at `-c 64 -P 16`).
    pub w0_scale: f64,
    /// Measure W0 with our raw redis-rs client even if `redis-benchmark` is
    /// on `PATH`.
    pub w0_raw: bool,
    /// W0 measures only the raw blocking client's floor (PING, W1's cycle,
    /// W3's chain; a second or two), not redis-benchmark's shapes nor the
    /// redis-rs floors: for interleaved passes of W1 and W2, where each
    /// pass needs its own floor. W2 then has no limit.
    pub w0_floor_only: bool,
    /// W1: warm-up cycles (200).
    pub w1_warmup: u64,
    /// W1: timed cycles (5,000).
    pub w1_cycles: u64,
    /// W2: tasks, each on its own name (64).
    pub w2_workers: usize,
    /// W2: stop after this many cycles in all (50,000) ...
    pub w2_max_cycles: u64,
    /// ... or after this long (10 s), whichever comes first.
    pub w2_max_duration: Duration,
    /// W3: workers on the one name (16).
    pub w3_workers: usize,
    /// W3: how long workers keep starting acquires (10 s).
    pub w3_duration: Duration,
    /// W4: units in stock (2,000).
    pub w4_stock: u64,
    /// W4: buyers (32).
    pub w4_buyers: usize,
    /// W4: a strategy stops after this long even if not sold out (25 s).
    pub w4_cap: Duration,
    /// W5: waiting tasks (10,000).
    pub w5_waiters: usize,
    /// W6: how long W3 runs on each side (5 s), so that W6 stays short
    /// enough for `all`. W2's sizes are W2's.
    pub w6_w3_duration: Duration,
    /// R1: warm-up cycles (100).
    pub r1_warmup: u64,
    /// R1: timed cycles (2,000).
    pub r1_cycles: u64,
    /// R2: tasks, each on its own name (64).
    pub r2_workers: usize,
    /// R2: stop after this many cycles in all (20,000) ...
    pub r2_max_cycles: u64,
    /// ... or after this long (10 s), whichever comes first.
    pub r2_max_duration: Duration,
    /// R3: workers on the one name (16).
    pub r3_workers: usize,
    /// R3: how long workers keep starting acquires (10 s).
    pub r3_duration: Duration,
    /// R4: warm-up cycles with every master up, on a name of their own (100).
    pub r4_warmup: u64,
    /// R4: cycles with two masters frozen (500) ...
    pub r4_cycles: u64,
    /// ... or for this long (20 s; the peers' QUICK: 5 s).
    pub r4_max_duration: Duration,
}

impl Default for Sizes {
    fn default() -> Sizes {
        Sizes {
            w0_scale: 1.0,
            w0_raw: false,
            w0_floor_only: false,
            w1_warmup: 200,
            w1_cycles: 5_000,
            w2_workers: 64,
            w2_max_cycles: 50_000,
            w2_max_duration: Duration::from_secs(10),
            w3_workers: 16,
            w3_duration: Duration::from_secs(10),
            w4_stock: 2_000,
            w4_buyers: 32,
            w4_cap: Duration::from_secs(25),
            w5_waiters: 10_000,
            w6_w3_duration: Duration::from_secs(5),
            r1_warmup: 100,
            r1_cycles: 2_000,
            r2_workers: 64,
            r2_max_cycles: 20_000,
            r2_max_duration: Duration::from_secs(10),
            r3_workers: 16,
            r3_duration: Duration::from_secs(10),
            r4_warmup: 100,
            r4_cycles: 500,
            r4_max_duration: Duration::from_secs(20),
        }
    }
}

/// The ttl of every lease of the benchmark: none expires during a run.
pub(crate) const TTL: Duration = Duration::from_secs(30);

/// Everything a workload needs: the one client, a raw connection factory,
/// the limits of W0, where to report.
pub(crate) struct Ctx<'a> {
    /// The one server (W0, W1, W4, W5 run there).
    pub(crate) url: String,
    /// Where W2 and W3 run: the one server, or W6's cluster.
    pub(crate) target: Target,
    pub(crate) client: leasehold::Client,
    pub(crate) sizes: Sizes,
    pub(crate) limits: Option<physical::Limits>,
    pub(crate) progress: progress::Progress,
    pub(crate) sink: &'a mut dyn FnMut(Row),
}

impl Ctx<'_> {
    /// A connection of its own (not leasehold's), for the critical sections
    /// and for `INFO`.
    pub(crate) async fn raw(&self) -> Result<redis::aio::MultiplexedConnection, Error> {
        Ok(redis::Client::open(self.url.as_str())?
            .get_multiplexed_async_connection()
            .await?)
    }

    pub(crate) fn emit(&mut self, row: Row) {
        (self.sink)(row);
    }
}

/// Runs the chosen workloads and hands each [`Row`] to `sink` as soon as it
/// is measured (W0's first, when one of W1 to W4 runs; R1 to R4 last).
///
/// Without [`Options::url`], a private `redis-server` is started for the run
/// (found as testkit finds it: `$LEASEHOLD_REDIS_SERVER`, else `PATH`) and
/// stopped when `run` returns; without [`Options::cluster`], W6 starts a
/// private 3-master cluster the same way, and without [`Options::redlock`]
/// R1 to R4 start 5 private masters. Keys written start with
/// [`KEY_PREFIX`].
///
/// # Errors
///
/// A server that cannot be started or reached, a Redis error, a lease that
/// could not be taken or was lost (which, with 30 s leases, means something
/// is badly wrong), a broken `redis-benchmark`.
///
/// # Cancel safety
///
/// Dropping the future stops the workload at its next `.await`; spawned
/// tasks of a workload may run to their end. Leases left behind expire
/// after 30 s.
pub async fn run(opts: Options, sink: &mut dyn FnMut(Row)) -> Result<(), Error> {
    let mut sizes = opts.sizes.clone();
    if let Some(d) = opts.duration {
        sizes.w2_max_duration = d;
        sizes.w3_duration = d;
        sizes.w6_w3_duration = d;
        sizes.r2_max_duration = d;
        sizes.r3_duration = d;
    }
    if let Some(n) = opts.workers {
        if n == 0 {
            return Err(Error::Invalid("--workers must be at least 1".into()));
        }
        sizes.w2_workers = n;
        sizes.w3_workers = n;
        sizes.r2_workers = n;
        sizes.r3_workers = n;
    }
    let workloads = if opts.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        opts.workloads.clone()
    };
    let (redlock, workloads): (Vec<Workload>, Vec<Workload>) =
        workloads.into_iter().partition(|w| w.is_redlock());
    let progress = progress::Progress::new(opts.progress);
    if !workloads.is_empty() {
        single(
            opts.url,
            opts.cluster,
            workloads,
            sizes.clone(),
            progress,
            sink,
        )
        .await?;
    }
    if !redlock.is_empty() {
        redlock::run(
            &redlock,
            opts.redlock,
            opts.node_timeout,
            sizes,
            progress,
            sink,
        )
        .await?;
    }
    Ok(())
}

/// W1 to W6: on the one server (`url`, else a private one), W6 beside a
/// cluster.
async fn single(
    url: Option<String>,
    cluster: Option<Vec<String>>,
    workloads: Vec<Workload>,
    sizes: Sizes,
    progress: progress::Progress,
    sink: &mut dyn FnMut(Row),
) -> Result<(), Error> {
    // Declared before the client, so it is dropped after it.
    let server;
    let url = match url {
        Some(url) => url,
        None => {
            server = tokio::task::spawn_blocking(testkit::RedisServer::start).await??;
            server.url()
        }
    };
    let client = leasehold::Client::connect(&url).await?;
    let mut ctx = Ctx {
        target: Target::Server(url.clone()),
        url,
        client,
        sizes,
        limits: None,
        progress,
        sink,
    };
    if workloads
        .iter()
        .any(|w| !matches!(w, Workload::W5 | Workload::W6))
    {
        let limits = physical::measure(&mut ctx).await?;
        ctx.limits = Some(limits);
    }
    for w in workloads {
        match w {
            // Measured above.
            Workload::W0 => {}
            Workload::W1 => uncontended::w1(&mut ctx).await?,
            Workload::W2 => uncontended::w2(&mut ctx).await?,
            Workload::W3 => contended::w3(&mut ctx).await?,
            Workload::W4 => flash_sale::w4(&mut ctx).await?,
            Workload::W5 => waiters::w5(&mut ctx).await?,
            Workload::W6 => cluster::w6(&mut ctx, cluster.clone()).await?,
            Workload::R1 | Workload::R2 | Workload::R3 | Workload::R4 => {}
        }
    }
    Ok(())
}

/// Parses a duration as the command line gives it: `10s`, `500ms`, `2m`,
/// `1.5s`, or a bare number of seconds.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(leasehold_bench::parse_duration("500ms")?, Duration::from_millis(500));
/// assert_eq!(leasehold_bench::parse_duration("2")?, Duration::from_secs(2));
/// assert!(leasehold_bench::parse_duration("soon").is_err());
/// # Ok::<(), leasehold_bench::Error>(())
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let bad = || Error::Invalid(format!("`{s}` is not a duration: use 10s, 500ms or 2m"));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}
