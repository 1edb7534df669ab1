//! Mutual exclusion, checked the Jepsen way: a deliberately non-atomic
//! read-modify-write under the lease must never lose an update.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use leasehold::Client;
use tokio::sync::Mutex;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_two_clients_never_lose_an_update() {
    let (server, a) = setup().await;
    let b = Client::connect(&server.url()).await.unwrap();
    const TOTAL: i64 = 2_000;
    let budget = Arc::new(AtomicI64::new(TOTAL));
    // (counter value read under the lease, fence of that lease)
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        let budget = budget.clone();
        let seen = seen.clone();
        let mut conn = raw(&server).await;
        tasks.push(tokio::spawn(async move {
            let lease = client
                .lease("exclusion")
                .ttl(Duration::from_secs(10))
                .wait(Duration::from_secs(60));
            let mut mine = 0;
            while budget.fetch_sub(1, Ordering::AcqRel) > 0 {
                let guard = lease.acquire().await.unwrap();
                let v: i64 = get(&mut conn, "counter")
                    .await
                    .map_or(0, |s| s.parse().unwrap());
                tokio::task::yield_now().await; // invite interleaving
                let () = redis::cmd("SET")
                    .arg("counter")
                    .arg(v + 1)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                seen.lock().await.push((v, guard.fence()));
                guard.release().await.unwrap();
                mine += 1;
            }
            mine
        }));
    }
    let mut acquisitions = 0;
    for t in tasks {
        acquisitions += t.await.unwrap();
    }
    assert_eq!(acquisitions, TOTAL);
    let mut conn = raw(&server).await;
    let counter: i64 = get(&mut conn, "counter").await.unwrap().parse().unwrap();
    assert_eq!(
        counter, acquisitions,
        "lost updates: the lease let two holders overlap"
    );

    // In acquisition order (the counter each holder read), fences strictly grow.
    let mut seen = seen.lock().await.clone();
    seen.sort();
    for (i, pair) in seen.windows(2).enumerate() {
        assert_eq!(pair[0].0, i as i64, "each counter value read exactly once");
        assert!(
            pair[1].1 > pair[0].1,
            "fence went from {} to {} between acquisitions {} and {}",
            pair[0].1,
            pair[1].1,
            pair[0].0,
            pair[1].0
        );
    }
    // Nothing left held once everyone let go.
    assert_eq!(get(&mut conn, "exclusion").await, None);
}

#[tokio::test]
async fn fences_keep_growing_across_clients_and_restarts_of_the_process() {
    let (server, first) = setup().await;
    let f1 = {
        let g = first.lease("fenced").acquire().await.unwrap();
        g.fence()
    };
    drop(first); // as if our process stopped
    let second = Client::connect(&server.url()).await.unwrap();
    let conn = raw(&server).await;
    eventually(SECOND, "the dropped guard's release", || {
        let mut c = conn.clone();
        async move { get(&mut c, "fenced").await.is_none() }
    })
    .await;
    let g = second.lease("fenced").try_acquire().await.unwrap();
    assert!(g.fence() > f1, "fence {} after {}", g.fence(), f1);
    let f2 = g.fence();
    g.release().await.unwrap();
    let g = second.lease("fenced").try_acquire().await.unwrap();
    assert!(g.fence() > f2, "fence {} after {}", g.fence(), f2);
    drop(g);
}
