//! W5: many tasks of one process waiting on one name.
//!
//! The harness takes the lease first, so that every task finds it held and
//! waits; once all of them are queued it releases, and the lease passes from
//! task to task until every one has taken it once. Measured: the
//! connections the client uses while 10,000 tasks wait, the peak memory of
//! the process during the workload, and the time to drain the queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use crate::report::Row;
use crate::stats::{self, Ticker};
use crate::{Ctx, Error, KEY_PREFIX, TTL};

/// How long the tasks may take to queue up before the harness lets go anyway.
const QUEUE_LIMIT: Duration = Duration::from_secs(60);

pub(crate) async fn w5(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let n = ctx.sizes.w5_waiters;
    let name = format!("{KEY_PREFIX}w5");
    let mut raw = ctx.raw().await?;
    let _: () = raw.del(&name).await?;
    let lease = ctx
        .client
        .lease(&name)
        .ttl(TTL)
        .wait(Duration::from_secs(600));
    let bar = ctx
        .progress
        .bar(n as u64, &format!("W5 {n} waiters, one name"), "served");
    let peak_is_own = stats::reset_peak_rss();
    let rss_before = stats::proc_status_mib("VmRSS");
    let before = stats::commandstats(std::slice::from_mut(&mut raw)).await?;

    let holder = lease.try_acquire().await?;
    let served = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let lease = lease.clone();
        let served = Arc::clone(&served);
        tasks.spawn(async move {
            let guard = lease.acquire().await?;
            served.fetch_add(1, Ordering::Relaxed);
            guard.release().await?;
            Ok::<_, Error>(())
        });
    }
    while lease.local_waiters() < n && started.elapsed() < QUEUE_LIMIT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let queued = lease.local_waiters();
    let queue_secs = started.elapsed().as_secs_f64();
    let client_conns = ctx.client.connections();
    let (server_conns, subscribers) = client_list(&mut raw).await?;

    let _ticker = Ticker::start(&bar, &served);
    let released = Instant::now();
    holder.release().await?;
    let mut failure = None;
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r? {
            failure = failure.or(Some(e));
        }
    }
    let drain = released.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(e);
    }
    let peak = stats::proc_status_mib("VmHWM");
    let after = stats::commandstats(std::slice::from_mut(&mut raw)).await?;
    let _: () = raw.del(&name).await?;
    let diff = stats::diff(&before, &after);
    let cmds = crate::contended::Commands::count(&diff, 0);
    let scripts = cmds.scripts;
    let served = served.load(Ordering::Relaxed);

    ctx.emit(
        Row::new("W5", "waiters_queued", queued as f64, "count")
            .exactly(n as f64)
            .note(format!(
                "{n} tasks spawned; all queued after {queue_secs:.3} s"
            )),
    );
    ctx.emit(Row::new("W5", "served", served as f64, "count").exactly(n as f64));
    ctx.emit(
        Row::new("W5", "drain_secs", drain, "s")
            .note("from the harness's release to the last task's release"),
    );
    ctx.emit(Row::new(
        "W5",
        "handoffs_per_s",
        served as f64 / drain.max(1e-9),
        "1/s",
    ));
    ctx.emit(
        Row::new("W5", "client_connections", client_conns as f64, "count")
            .at_most(2.0 + leasehold::bench_hooks::DIRECT_CONNECTIONS_MAX as f64)
            .note("Client::connections(): the command connection, the subscriber, and the direct connections of lone operations (a few at most, never one per waiter)"),
    );
    ctx.emit(
        Row::new("W5", "subscriber_connections", subscribers as f64, "count")
            .exactly(1.0)
            .note(format!(
                "CLIENT LIST while {queued} tasks wait: {server_conns} connections besides the harness's own"
            )),
    );
    if let Some(peak) = peak {
        ctx.emit(
            Row::new("W5", "peak_rss_mib", peak, "MiB")
                .target("< 50".into(), Some(peak < 50.0))
                .note(if peak_is_own {
                    format!(
                        "VmHWM of the whole process, reset before W5 (RSS before: {:.1} MiB)",
                        rss_before.unwrap_or(0.0)
                    )
                } else {
                    "VmHWM of the whole process since it started (could not reset it)".into()
                }),
        );
    }
    ctx.emit(
        Row::new(
            "W5",
            "script_calls_per_waiter",
            scripts as f64 / n.max(1) as f64,
            "count",
        )
        .note(format!(
            "EVALSHA + EVAL over the workload; 2 = one acquire + one release each; {}",
            cmds.breakdown
        )),
    );
    Ok(())
}

/// `CLIENT LIST`: connections other than the one asking, and how many of
/// them are subscribed to something.
async fn client_list(raw: &mut redis::aio::MultiplexedConnection) -> Result<(usize, usize), Error> {
    let text: String = redis::cmd("CLIENT").arg("LIST").query_async(raw).await?;
    let mut others = 0;
    let mut subscribers = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let field = |name: &str| {
            line.split(' ')
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or("")
        };
        if field("cmd") == "client|list" {
            continue; // this connection
        }
        others += 1;
        let count = |name: &str| field(name).parse::<u64>().unwrap_or(0);
        if count("sub") + count("psub") + count("ssub") > 0 || field("flags").contains('P') {
            subscribers += 1;
        }
    }
    Ok((others, subscribers))
}
