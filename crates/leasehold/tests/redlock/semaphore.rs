//! A semaphore over Redlock: a permit holds when ⌊N·K/(K+1)⌋+1 masters
//! admitted it, so no more than K hold at once even under contention.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_permits_over_five_masters_never_admit_a_third_holder() {
    let servers = masters(5).await;
    let clients = [client(&servers).await, client(&servers).await];
    let sem = |c: &leasehold::Client| {
        c.semaphore("pool", 2)
            .ttl(Duration::from_secs(10))
            .wait(30 * SECOND)
    };

    // Plainly: two permits, and a third taker is refused.
    let p1 = sem(&clients[0]).try_acquire().await.unwrap();
    let p2 = sem(&clients[1]).try_acquire().await.unwrap();
    let err = sem(&clients[0]).try_acquire().await.unwrap_err();
    assert!(err.is_held(), "{err}");
    p1.release().await.unwrap();
    p2.release().await.unwrap();

    // Racing: 6 tasks on 2 clients, taking and giving back.
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let budget = Arc::new(AtomicI64::new(60));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let sem = sem(&clients[i % 2]);
        let (inside, peak, budget) = (inside.clone(), peak.clone(), budget.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = 0;
            while budget.fetch_sub(1, Ordering::AcqRel) > 0 {
                let permit = sem.acquire().await.unwrap();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(ms(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                permit.release().await.unwrap();
                mine += 1;
            }
            mine
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += tokio::time::timeout(120 * SECOND, t)
            .await
            .expect("the contenders made no progress")
            .unwrap();
    }
    assert_eq!(total, 60);
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "{peak} holders of 2 permits at once");
    assert!(peak >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_quorum_out_of_reach_fails_with_quorum_not_reached() {
    let servers = masters(5).await;
    let c = client(&servers).await;
    let sem = c.semaphore("pool", 2).ttl(Duration::from_secs(5));
    sem.try_acquire().await.unwrap().release().await.unwrap();
    // Its release answered once a quorum released: wait for the rest
    // before freezing two (a permit is a member of a sorted set).
    eventually(10 * SECOND, "no permit held on any master", || async {
        let mut free = true;
        for s in &servers {
            let n: i64 = redis::cmd("ZCARD")
                .arg("leasehold:{pool}:permits")
                .query_async(&mut raw(s).await)
                .await
                .unwrap();
            free &= n == 0;
        }
        free
    })
    .await;
    // A lease would still have its majority; K = 2 needs 4 of 5.
    servers[3].pause();
    servers[4].pause();
    let lease = c.lease("majority").ttl(Duration::from_secs(5));
    lease.try_acquire().await.unwrap().release().await.unwrap();
    let err = sem.try_acquire().await.unwrap_err();
    assert_eq!(quorum_counts(&err), ("acquire", 4, 3, 2), "{err}");
    servers[3].resume();
    servers[4].resume();
    // With every master back, permits are granted again.
    eventually(5 * SECOND, "a permit once the masters are back", || async {
        match sem.try_acquire().await {
            Ok(p) => {
                p.release().await.unwrap();
                true
            }
            Err(_) => false,
        }
    })
    .await;
}
