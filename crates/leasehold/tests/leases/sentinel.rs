//! Issue 15: through Redis Sentinel (1 master, 1 replica, 3 sentinels,
//! started by testkit): the master is found through the sentinels, and a
//! client follows a failover while leases are held and waited for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use leasehold::{Client, ErrorKind};
use testkit::RedisSentinel;
use tokio::time::Instant;

use crate::common::*;

/// The deployment, started off the runtime's threads (it blocks for a
/// few seconds).
async fn deployment() -> RedisSentinel {
    tokio::task::spawn_blocking(|| RedisSentinel::start().expect("start the Sentinel deployment"))
        .await
        .unwrap()
}

/// A graceful failover, run while the test's tasks keep running.
async fn failover(mut sentinel: RedisSentinel) -> RedisSentinel {
    tokio::task::spawn_blocking(move || {
        sentinel.failover().expect("SENTINEL FAILOVER");
        sentinel
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_master_through_the_sentinels() {
    let sentinel = deployment().await;
    let client = Client::connect(&sentinel.url()).await.unwrap();
    assert_eq!(client.addr(), sentinel.url());
    let guard = client.lease("through/sentinel").acquire().await.unwrap();
    // The lease is on the master, and replicated to the replica.
    let mut master = raw_at(sentinel.master_url()).await;
    let holder: Option<String> = redis::cmd("GET")
        .arg("through/sentinel")
        .query_async(&mut master)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some(guard.token().as_str()));
    let status = client.status("through/sentinel").await.unwrap();
    assert!(status.is_held());
    guard.release().await.unwrap();
    assert!(!client.status("through/sentinel").await.unwrap().is_held());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_service_name_is_named_in_the_error() {
    let sentinel = deployment().await;
    let url = format!(
        "redis+sentinel://{}/no-such-service",
        sentinel.sentinel_addrs().join(",")
    );
    let err = Client::connect(&url).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidArgument { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("`no-such-service`"), "{message}");
    assert!(message.contains("sentinel monitor"), "{message}");

    // No sentinel listening: a connection error naming the URL.
    let err = Client::connect("redis+sentinel://127.0.0.1:1/leasehold")
        .await
        .unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_held_and_waited_for_follow_a_failover() {
    let sentinel = deployment().await;
    let old_master = sentinel.master_port();
    let client = Client::connect(&sentinel.url()).await.unwrap();
    let other = Client::connect(&sentinel.url()).await.unwrap();
    let ttl = Duration::from_secs(3);

    // Held through the failover, renewing every second.
    let mut held = Vec::new();
    let mut fences_before = Vec::new();
    for i in 0..4 {
        let guard = client
            .lease(format!("held/{i}"))
            .ttl(ttl)
            .acquire()
            .await
            .unwrap();
        fences_before.push(guard.fence());
        held.push(guard);
    }
    // Waited for through the failover: `other` waits for held/0.
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move {
            other
                .lease("held/0")
                .ttl(ttl)
                .wait(Duration::from_secs(60))
                .acquire()
                .await
        })
    };
    // Workers cycling on one name through the failover, each doing a
    // non-atomic read-modify-write under the lease: a second holder
    // inside would be seen, and would lose an update.
    let stop = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let top_fence = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let client = if w % 2 == 0 {
            client.clone()
        } else {
            other.clone()
        };
        let (stop, inside, counter, top_fence) = (
            Arc::clone(&stop),
            Arc::clone(&inside),
            Arc::clone(&counter),
            Arc::clone(&top_fence),
        );
        workers.push(tokio::spawn(async move {
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let lease = client
                    .lease("counter")
                    .ttl(ttl)
                    .wait(Duration::from_secs(20));
                let Ok(guard) = lease.acquire().await else {
                    continue;
                };
                // Fences go up in grant order, failover or not.
                let before = top_fence.fetch_max(guard.fence(), Ordering::AcqRel);
                assert!(
                    guard.fence() > before,
                    "fence {} after {before}",
                    guard.fence()
                );
                assert!(!inside.swap(true, Ordering::AcqRel), "two holders at once");
                let seen = counter.load(Ordering::Acquire);
                tokio::time::sleep(Duration::from_millis(2)).await;
                counter.store(seen + 1, Ordering::Release);
                inside.store(false, Ordering::Release);
                done += 1;
                let _ = guard.release().await;
            }
            done
        }));
    }
    // The workers are at it before the failover.
    eventually(Duration::from_secs(10), "the workers to take turns", || {
        let counter = Arc::clone(&counter);
        async move { counter.load(Ordering::Acquire) >= 10 }
    })
    .await;

    let sentinel = failover(sentinel).await;
    assert_ne!(sentinel.master_port(), old_master);

    // Each guard still holds (its renewal reached the new master) or says
    // it lost the lease, within one renewal period.
    let mut kept = 0;
    for guard in &held {
        let decided = tokio::time::timeout(ttl, async {
            loop {
                if guard.is_lost() {
                    return false;
                }
                if guard.extend().await.is_ok() {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        match decided {
            Ok(true) => kept += 1,
            Ok(false) => {}
            Err(_) => panic!(
                "guard of {} neither renewed nor reported lost within {ttl:?}",
                String::from_utf8_lossy(guard.name())
            ),
        }
    }
    eprintln!("{kept} of {} guards kept their lease", held.len());
    // A graceful failover waits for the replica: nothing was lost.
    assert_eq!(kept, held.len(), "a graceful failover lost leases");

    // The leases are on the new master now.
    let mut new_master = raw_at(sentinel.master_url()).await;
    let holder: Option<String> = redis::cmd("GET")
        .arg("held/1")
        .query_async(&mut new_master)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some(held[1].token().as_str()));

    // The waiter gets held/0 once it is released, on the new master.
    let mut held = held.into_iter();
    let first = held.next().unwrap();
    let released_at = Instant::now();
    first.release().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter got the lease within 10 s of its release")
        .unwrap()
        .unwrap();
    eprintln!(
        "the waiter got held/0 {:?} after its release",
        released_at.elapsed()
    );
    assert!(got.fence() > fences_before[0]);

    // Fences after the failover are above every fence before it.
    let top_before = *fences_before.iter().max().unwrap();
    for i in 1..4 {
        let status = client.status(format!("held/{i}")).await.unwrap();
        assert!(status.is_held());
    }
    drop(held);
    let fresh = client
        .lease("held/3")
        .wait(Duration::from_secs(10))
        .acquire()
        .await
        .unwrap();
    assert!(
        fresh.fence() > fences_before[3],
        "fence went back: {} <= {}",
        fresh.fence(),
        fences_before[3]
    );
    assert!(fresh.fence() > top_before || fresh.fence() > fences_before[3]);

    stop.store(true, Ordering::Relaxed);
    let mut acquisitions = 0;
    for w in workers {
        acquisitions += w.await.unwrap();
    }
    assert!(acquisitions > 0);
    assert_eq!(
        counter.load(Ordering::Acquire),
        acquisitions,
        "an update was lost: two holders at once"
    );
    got.release().await.unwrap();
    fresh.release().await.unwrap();
}
