//! One job, many hosts: a scheduled job runs once per tick, whichever host
//! gets there first.

use std::time::Instant;

use crate::run::Options;
use crate::{Error, Event, Scenario};

/// Every host tries the job at each tick. The lease is named after the tick
/// and left to expire, never released early: a host whose clock or start
/// is a little late finds it still taken and does not run the job twice.
pub(crate) async fn run(opts: &Options, sink: &mut dyn FnMut(&Event)) -> Result<(), Error> {
    sink(&Event::Start {
        scenario: Scenario::OneJob,
        about: format!(
            "a scheduled job on {} hosts; exactly one runs it per tick",
            opts.sizes.hosts
        ),
    });
    let mut hosts = Vec::new();
    for _ in 0..opts.sizes.hosts {
        hosts.push(opts.target.client().await?);
    }
    let run_id = leasehold::Token::random();
    for tick in 1..=opts.sizes.ticks {
        let started = Instant::now();
        let mut tries = tokio::task::JoinSet::new();
        for (h, host) in hosts.iter().enumerate() {
            let lease = host
                .lease(format!(
                    "leasehold-demo:job:{}:tick-{tick}",
                    run_id.prefix()
                ))
                .ttl(opts.sizes.tick * 2)
                .auto_renew(false);
            tries.spawn(async move {
                match lease.try_acquire().await {
                    Ok(guard) => {
                        // "Run" the job, then leave the lease to expire.
                        let _ = guard.detach();
                        Ok(Some(h + 1))
                    }
                    Err(e) if e.is_held() => Ok(None),
                    Err(e) => Err(e),
                }
            });
        }
        let mut ran = Vec::new();
        let mut skipped = 0;
        while let Some(r) = tries.join_next().await {
            match r.map_err(|e| Error(e.to_string()))?? {
                Some(h) => ran.push(h),
                None => skipped += 1,
            }
        }
        sink(&Event::JobTick { tick, ran, skipped });
        tokio::time::sleep(opts.sizes.tick.saturating_sub(started.elapsed())).await;
    }
    Ok(())
}
