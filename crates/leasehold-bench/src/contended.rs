//! W3: workers on ONE name, a non-atomic counter under the lease.
//!
//! Each worker loops until the deadline: `acquire()` (waiting), `GET
//! counter` and `SET counter v+1` through a connection of the harness's own,
//! `release().await`. Acquires under way at the deadline finish and count.
//! The bookkeeping of who held the lease last happens *under* the lease, as
//! in the peers' harness, so it needs no synchronisation of its own beyond
//! the (uncontended) mutex Rust asks for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use crate::physical::{rate, time};
use crate::report::{Row, fmt_num};
use crate::stats::{self, Hist, Ticker, Work};
use crate::{Ctx, Error, KEY_PREFIX, TTL};

/// Commands leasehold's scripts run inside Redis: `INFO commandstats`
/// counts them under their own names, on top of the EVALSHA itself.
const IN_SCRIPT: [&str; 22] = [
    "set",
    "get",
    "incr",
    "pexpire",
    "pttl",
    "del",
    "publish",
    "pubsub|numsub", // plain leases (the hand-over counts the wake channel's subscribers)
    "time",
    "exists",
    "zadd",
    "zrem",
    "zrange",
    "zrangebyscore",
    "zrank",
    "zscore",
    "pexpireat", // fair queue
    "hset",      // a fair waiter's claim (and a semaphore's fences)
    "hget",
    "hdel",
    "spublish",
    "pubsub|shardnumsub", // the same on Redis Cluster (sharded pub/sub)
];

/// Who held the lease last, and the handoffs seen; touched under the lease.
struct Book {
    owner: Option<usize>,
    /// When the last holder started `release()`.
    released_at: Option<Instant>,
    handoff: Hist,
    self_reacquired: u64,
}

/// W3 as BENCH.md defines it, then the same in fair mode (issue 6: the
/// per-worker min/max stays at least 0.9 when waiters queue in Redis).
pub(crate) async fn w3(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    contended(ctx, false).await?;
    contended(ctx, true).await
}

/// W3 (`fair` false) or W3-fair on `ctx.target`, with its rows.
pub(crate) async fn contended(ctx: &mut Ctx<'_>, fair: bool) -> Result<(), Error> {
    let label = if fair { "W3-fair" } else { "W3" };
    let workers = ctx.sizes.w3_workers;
    let run_for = ctx.sizes.w3_duration;
    let name = format!("{KEY_PREFIX}{}", label.to_lowercase());
    // In the lease's slot, so that on a cluster one master serves the
    // whole handoff, as one server does.
    let counter = format!("{KEY_PREFIX}{{{name}}}:counter");
    // The critical section's own connection: to the master of the
    // counter's slot on a cluster, so that it costs what it costs on one
    // server.
    let mut raw = ctx.target.conn_for(&counter).await?;
    let mut servers = ctx.target.masters().await?;
    let _: () = raw.set(&counter, 0).await?;
    // Waiting far longer than any handoff: a timeout here is a failure.
    let lease = ctx
        .client
        .lease(&name)
        .ttl(TTL)
        .fair(fair)
        .wait(Duration::from_secs(60));
    let bar = ctx.progress.bar(
        run_for.as_millis() as u64,
        &format!("{label} {workers} workers, one name"),
        "ms",
    );
    let acquisitions = Arc::new(AtomicU64::new(0));
    let book = Arc::new(Mutex::new(Book {
        owner: None,
        released_at: None,
        handoff: Hist::new(),
        self_reacquired: 0,
    }));
    let before = stats::commandstats(&mut servers).await?;
    let work_before = Work::now(&mut servers).await?;
    let started = Instant::now();
    let deadline = started + run_for;
    let mut tasks = tokio::task::JoinSet::new();
    for me in 0..workers {
        let lease = lease.clone();
        let mut conn = raw.clone();
        let counter = counter.clone();
        let book = Arc::clone(&book);
        let acquisitions = Arc::clone(&acquisitions);
        tasks.spawn(async move {
            let mut wait = Hist::new();
            let mut mine = 0u64;
            while Instant::now() < deadline {
                let asked = Instant::now();
                let guard = lease.acquire().await?;
                let got = Instant::now();
                wait.record(got - asked);
                {
                    let mut b = book.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(released_at) = b.released_at {
                        if b.owner == Some(me) {
                            b.self_reacquired += 1;
                        } else {
                            b.handoff.record(got - released_at);
                        }
                    }
                }
                // Non-atomic on purpose: only the lease keeps it right.
                let v: i64 = conn.get::<_, Option<i64>>(&counter).await?.unwrap_or(0);
                let _: () = conn.set(&counter, v + 1).await?;
                mine += 1;
                acquisitions.fetch_add(1, Ordering::Relaxed);
                {
                    let mut b = book.lock().unwrap_or_else(|e| e.into_inner());
                    b.owner = Some(me);
                    b.released_at = Some(Instant::now());
                }
                guard.release().await?;
            }
            Ok::<_, Error>((mine, wait))
        });
    }
    let ticker = Ticker::with(&bar, move || started.elapsed().as_millis() as u64);
    let mut per_worker = Vec::with_capacity(workers);
    let mut wait = Hist::new();
    let mut failure = None;
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok((n, w)) => {
                per_worker.push(n);
                wait.merge(&w);
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
    let work_after = Work::now(&mut servers).await?;
    let after = stats::commandstats(&mut servers).await?;
    let final_counter: i64 = raw.get::<_, Option<i64>>(&counter).await?.unwrap_or(0);
    let _: () = raw.del(&counter).await?;

    let acq: u64 = per_worker.iter().sum();
    let book = book.lock().unwrap_or_else(|e| e.into_inner());
    let handoffs = book.handoff.len();
    let min = per_worker.iter().copied().min().unwrap_or(0);
    let max = per_worker.iter().copied().max().unwrap_or(0);
    let cmds = Commands::count(&stats::diff(&before, &after), 2 * acq);
    let work = work_before.per(&work_after, handoffs);
    let per_handoff = |n: u64| n as f64 / handoffs.max(1) as f64;
    let limits = ctx.limits.clone();
    let l = limits.as_ref();

    ctx.emit(
        Row::new(label, "acquisitions_per_s", acq as f64 / secs, "1/s").note(format!(
            "{acq} acquisitions by {workers} workers in {secs:.2} s"
        )),
    );
    let per_s = handoffs as f64 / secs;
    let chain = l.and_then(|l| l.handoff_chain_per_s());
    let row = rate(
        Row::new(label, "handoffs_per_s", per_s, "1/s"),
        chain,
        "raw client: GET, SET, EVALSHA release, 3 round trips in series (W0 raw_handoff_chain_per_s)",
    );
    let row = match chain {
        Some(c) => row.target(
            format!(">= 85% of raw chain ({})", fmt_num(0.85 * c)),
            Some(per_s >= 0.85 * c),
        ),
        None => row.at_least(5_000.0),
    };
    ctx.emit(row.note(format!(
        "{handoffs} handoffs; {:.1} % of acquisitions re-took the worker's own lease",
        100.0 * book.self_reacquired as f64 / acq.max(1) as f64
    )));
    ctx.emit(
        time(
            Row::new(
                label,
                "handoff_p50_ms",
                book.handoff.quantile_us(0.5) / 1e3,
                "ms",
            ),
            l.and_then(|l| l.handoff_p50_ms()),
            "raw client: the chain's EVALSHA release p50, one round trip (W0 raw_release_p50_us)",
        )
        .at_most(0.15)
        .note("from the holder's release() to a different worker's acquire() returning"),
    );
    ctx.emit(
        Row::new(
            label,
            "handoff_p99_ms",
            book.handoff.quantile_us(0.99) / 1e3,
            "ms",
        )
        .at_most(0.5),
    );
    ctx.emit(Row::new(
        label,
        "wait_p50_ms",
        wait.quantile_us(0.5) / 1e3,
        "ms",
    ));
    ctx.emit(Row::new(
        label,
        "wait_p99_ms",
        wait.quantile_us(0.99) / 1e3,
        "ms",
    ));
    ctx.emit(Row::new(label, "wait_max_ms", wait.max_us() / 1e3, "ms").at_most(50.0));
    ctx.emit(
        Row::new(
            label,
            "per_worker_min_max_ratio",
            min as f64 / max.max(1) as f64,
            "ratio",
        )
        .at_least(0.9)
        .note(format!("min {min}, max {max} acquisitions per worker")),
    );
    ctx.emit(
        Row::new(
            label,
            "lost_updates",
            acq as f64 - final_counter as f64,
            "count",
        )
        .exactly(0.0)
        .note(format!("{acq} acquisitions, counter {final_counter}")),
    );
    ctx.emit(
        Row::new(
            label,
            "cmds_per_handoff_top_level",
            per_handoff(cmds.top_level),
            "count",
        )
        .at_most_rounded(4.0)
        .note(format!(
            "INFO commandstats: script calls + the critical section's GET and SET + other commands sent; {}",
            cmds.breakdown
        )),
    );
    ctx.emit(
        Row::new(
            label,
            "script_calls_per_handoff",
            per_handoff(cmds.scripts),
            "count",
        )
        .note(format!(
            "EVALSHA + EVAL; {} acquire attempts failed (script calls - 2 x acquisitions)",
            cmds.scripts.saturating_sub(2 * acq)
        )),
    );
    if fair {
        // Every fair acquisition's first attempt is its arrival (it joins
        // the queue, or takes a free lease), made while another holds the
        // lease; what a hand-over itself costs is the rest: the release,
        // and any attempt a waiter makes after that (a fallback, or the
        // head trying for itself after being named).
        let arrivals = acq;
        ctx.emit(
            Row::new(
                label,
                "handoff_scripts_per_handoff",
                per_handoff(cmds.scripts.saturating_sub(arrivals)),
                "count",
            )
            .at_most_rounded(1.0)
            .note(format!(
                "(script calls - one arrival attempt per acquisition) / handoffs: the release script, which gives the lease to the queue's head, and {} attempts beyond the arrivals",
                cmds.scripts.saturating_sub(2 * acq)
            )),
        );
    }
    ctx.emit(
        Row::new(
            label,
            "cmds_per_handoff_incl_in_script",
            per_handoff(cmds.all),
            "count",
        )
        .note("every call INFO commandstats counts, including those run inside scripts"),
    );
    for row in work.rows(label, "handoff") {
        ctx.emit(row);
    }
    Ok(())
}

/// The commands of a run, from a `commandstats` diff.
pub(crate) struct Commands {
    /// Every call, including those scripts made.
    pub(crate) all: u64,
    /// EVALSHA + EVAL.
    pub(crate) scripts: u64,
    /// Calls that came over a connection: scripts, `own` (the GET and SET
    /// the harness sent itself) and commands no script of leasehold runs.
    pub(crate) top_level: u64,
    /// `name calls` for the busiest commands.
    pub(crate) breakdown: String,
}

impl Commands {
    /// `own`: calls of commands in [`IN_SCRIPT`] the harness itself sent.
    /// leasehold's top-level GET (it reads the holder for a timeout message)
    /// would be counted as in-script; W3 has no timeouts.
    pub(crate) fn count(diff: &HashMap<String, u64>, own: u64) -> Commands {
        let all = diff.values().sum();
        let scripts = ["evalsha", "eval"]
            .iter()
            .filter_map(|c| diff.get(*c))
            .sum();
        let other: u64 = diff
            .iter()
            .filter(|(name, _)| {
                !IN_SCRIPT.contains(&name.as_str()) && !["evalsha", "eval"].contains(&name.as_str())
            })
            .map(|(_, n)| n)
            .sum();
        let mut busiest: Vec<_> = diff.iter().collect();
        busiest.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let breakdown = busiest
            .iter()
            .take(8)
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        Commands {
            all,
            scripts,
            top_level: scripts + own + other,
            breakdown,
        }
    }
}
