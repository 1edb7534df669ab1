//! W1 (one worker: the latency of a cycle) and W2 (many tasks on names of
//! their own: throughput). A cycle is `try_acquire()` + `release().await`:
//! nobody else wants the name, so nothing waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::physical::{rate, time};
use crate::report::{Row, fmt_num};
use crate::stats::{self, Hist, Ticker, Work};
use crate::{Ctx, Error, KEY_PREFIX, TTL};

/// One acquire + release of an uncontended lease.
async fn cycle(lease: &leasehold::Lease) -> Result<(), Error> {
    lease.try_acquire().await?.release().await?;
    Ok(())
}

/// W1: one worker, warm-up cycles, then timed cycles on one name.
///
/// The worker is a task, as W2's and W3's are (and as a request handler
/// of a server is), not the thread that blocks on the whole run: that
/// thread is not one of the runtime's, so each reply would have to wake
/// it from another thread.
pub(crate) async fn w1(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let (warmup, cycles) = (ctx.sizes.w1_warmup, ctx.sizes.w1_cycles.max(1));
    let lease = ctx.client.lease(format!("{KEY_PREFIX}w1")).ttl(TTL);
    let bar = ctx
        .progress
        .bar(warmup + cycles, "W1 one worker, uncontended", "cycles");
    let worker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            for _ in 0..warmup {
                cycle(&lease).await?;
                bar.inc(1);
            }
            let mut hist = Hist::new();
            let started = Instant::now();
            for i in 0..cycles {
                let t = Instant::now();
                cycle(&lease).await?;
                hist.record(t.elapsed());
                if i % 64 == 0 {
                    bar.set_position(warmup + i);
                }
            }
            Ok::<_, Error>((hist, started.elapsed().as_secs_f64()))
        })
    };
    let (hist, secs) = worker.await??;
    bar.finish_and_clear();
    let limits = ctx.limits.clone();
    let l = limits.as_ref();
    let per_s = cycles as f64 / secs;
    ctx.emit(
        rate(
            Row::new("W1", "cycles_per_s", per_s, "1/s"),
            l.and_then(|l| l.cycle_per_s()),
            "raw client: SET NX PX + EVALSHA in series (W0 raw_cycle_per_s)",
        )
        .target(">= 1.2 x best peer".into(), None)
        .note(format!(
            "{cycles} cycles after {warmup} warm-up, try_acquire + release"
        )),
    );
    let p50 = hist.quantile_us(0.5);
    let floor = l.and_then(|l| l.cycle_p50_us());
    let row = time(
        Row::new("W1", "cycle_p50_us", p50, "us"),
        floor,
        "raw client: SET NX PX + EVALSHA in series, p50 (W0 raw_cycle_p50_us)",
    );
    ctx.emit(match floor {
        Some(f) => row.target(
            format!("<= 1.25 x raw_cycle_p50 ({})", fmt_num(1.25 * f)),
            Some(p50 <= 1.25 * f),
        ),
        None => row
            .target("<= 1.25 x raw_cycle_p50".into(), None)
            .note("no raw floor this run (see W0)"),
    });
    ctx.emit(Row::new("W1", "cycle_p99_us", hist.quantile_us(0.99), "us"));
    Ok(())
}

/// W2: `workers` tasks, each cycling on its own name, until the cycle
/// budget or the time cap runs out.
pub(crate) async fn w2(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let workers = ctx.sizes.w2_workers;
    let max_cycles = ctx.sizes.w2_max_cycles;
    let cap = ctx.sizes.w2_max_duration;
    let bar = ctx.progress.bar(
        max_cycles,
        &format!("W2 {workers} tasks, own names"),
        "cycles",
    );
    // Tickets: a task takes one before each cycle, so that exactly
    // `max_cycles` start in all.
    let tickets = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let _ticker = Ticker::start(&bar, &done);
    let leases: Vec<_> = (0..workers)
        .map(|i| ctx.client.lease(format!("{KEY_PREFIX}w2:{i}")).ttl(TTL))
        .collect();
    // One warm-up cycle per name (script cache, names' fence keys).
    for lease in &leases {
        cycle(lease).await?;
    }
    let mut servers = ctx.target.masters().await?;
    let calls_before = stats::commandstats(&mut servers).await?;
    let work_before = Work::now(&mut servers).await?;
    let started = Instant::now();
    let deadline = started + cap;
    let mut tasks = tokio::task::JoinSet::new();
    for lease in leases {
        let tickets = Arc::clone(&tickets);
        let done = Arc::clone(&done);
        tasks.spawn(async move {
            let mut hist = Hist::new();
            while tickets.fetch_add(1, Ordering::Relaxed) < max_cycles && Instant::now() < deadline
            {
                let t = Instant::now();
                cycle(&lease).await?;
                hist.record(t.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, Error>(hist)
        });
    }
    let mut hist = Hist::new();
    while let Some(h) = tasks.join_next().await {
        hist.merge(&h??);
    }
    let secs = started.elapsed().as_secs_f64();
    let work = work_before.per(&Work::now(&mut servers).await?, hist.len());
    let calls = stats::diff(&calls_before, &stats::commandstats(&mut servers).await?);
    let scripts: u64 = ["evalsha", "eval"]
        .iter()
        .filter_map(|c| calls.get(*c))
        .sum();
    bar.finish_and_clear();
    let total = hist.len();
    let limits = ctx.limits.clone();
    ctx.emit(
        rate(
            Row::new("W2", "cycles_per_s", total as f64 / secs, "1/s"),
            limits.as_ref().and_then(|l| l.pipelined_cycle_per_s()),
            "1 SET NX PX + 1 EVAL at -c 64 -P 16",
        )
        .at_least(250_000.0)
        .note(format!(
            "{total} cycles in {secs:.2} s by {workers} tasks, one Client"
        )),
    );
    ctx.emit(Row::new("W2", "cycle_p50_us", hist.quantile_us(0.5), "us"));
    ctx.emit(Row::new("W2", "cycle_p99_us", hist.quantile_us(0.99), "us"));
    ctx.emit(
        Row::new(
            "W2",
            "script_calls_per_cycle",
            scripts as f64 / total.max(1) as f64,
            "count",
        )
        .note("EVALSHA + EVAL per cycle (2 unbatched: acquire and release); below 2 when one call carries several operations"),
    );
    for row in work.rows("W2", "cycle") {
        ctx.emit(row);
    }
    Ok(())
}
