//! The core suite, written once and run on one server, on a Redis Cluster
//! and over three independent masters (`single::*`, `cluster::*`,
//! `redlock::*`; fair order and read-write locks not on Redlock, which
//! refuses them): mutual exclusion, owner-only
//! release and extend, renewal, `lost()`, wake-up, fair order, the
//! semaphore bound, the rwlock, bad input; names spread over many slots,
//! and names with their own hash tags or stray braces.

mod deploy;
mod faults;
mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use deploy::{Deployment, suite};
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Names that land in many slots, with and without their own tags.
const NAMES: [&str; 8] = [
    "jobs/nightly",
    "a",
    "b",
    "{user:7}:profile",
    "{user:7}:cart",
    "x}y",
    "a{}b",
    "deploy/prod",
];

suite! {
everywhere {
    async fn one_holder_at_a_time_on_every_name(d: &Deployment) {
        let client = d.client().await;
        let other = d.client().await;
        for name in NAMES {
            let inside = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for i in 0..6 {
                let c = if i % 2 == 0 { client.clone() } else { other.clone() };
                let (inside, most) = (Arc::clone(&inside), Arc::clone(&most));
                tasks.push(tokio::spawn(async move {
                    let lease = c.lease(name).ttl(ms(2000)).wait(Duration::from_secs(20));
                    for _ in 0..5 {
                        let g = lease.acquire().await.unwrap();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                        g.release().await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            assert_eq!(most.load(Ordering::SeqCst), 1, "{name}: two holders at once");
        }
    }

    async fn only_the_holder_releases_or_extends(d: &Deployment) {
        let client = d.client().await;
        for name in NAMES {
            let lease = client.lease(name).ttl(ms(5000));
            let g = lease.acquire().await.unwrap();
            let stranger = leasehold::Token::random();
            assert!(!lease.release_by_token(&stranger).await.unwrap(), "{name}");
            assert!(!lease.extend_by_token(&stranger).await.unwrap(), "{name}");
            assert!(lease.try_acquire().await.unwrap_err().is_held(), "{name}: released by a stranger");
            assert!(lease.extend_by_token(g.token()).await.unwrap(), "{name}");
            g.release().await.unwrap();
            lease.try_acquire().await.unwrap().release().await.unwrap();
        }
    }

    async fn a_renewed_lease_outlives_its_ttl(d: &Deployment) {
        let client = d.client().await;
        let guards: Vec<_> = {
            let mut v = Vec::new();
            for name in NAMES {
                v.push(client.lease(name).ttl(ms(300)).acquire().await.unwrap());
            }
            v
        };
        tokio::time::sleep(ms(1200)).await;
        for (g, name) in guards.iter().zip(NAMES) {
            assert!(!g.is_lost(), "{name}: lost while renewed");
            assert!(client.lease(name).try_acquire().await.unwrap_err().is_held(), "{name}");
        }
        for g in guards {
            g.release().await.unwrap();
        }
    }

    async fn lost_fires_when_the_key_is_taken_away(d: &Deployment) {
        let client = d.client().await;
        let mut raw = d.raw().await;
        for name in NAMES {
            let g = client.lease(name).ttl(ms(600)).acquire().await.unwrap();
            let _: () = redis::cmd("SET").arg(name).arg("someone-else").query_async(&mut raw).await.unwrap();
            tokio::time::timeout(ms(600), g.lost()).await.unwrap_or_else(|_| panic!("{name}: lost() did not fire"));
            assert!(g.is_lost());
            let _: () = redis::cmd("DEL").arg(name).query_async(&mut raw).await.unwrap();
        }
    }

    async fn a_release_wakes_another_clients_waiter(d: &Deployment) {
        let holder = d.client().await;
        let waiter = d.client().await;
        for name in NAMES {
            let g = holder.lease(name).ttl(Duration::from_secs(30)).acquire().await.unwrap();
            // The fallback timer is far: only the release can wake it in time.
            let lease = waiter
                .lease(name)
                .wait(Duration::from_secs(20))
                .backoff(Duration::from_secs(10), Duration::from_secs(10));
            let task = tokio::spawn(async move { lease.acquire().await.map(|g| (g, Instant::now())) });
            // Until the waiter's subscription is in Redis: the release's
            // publish is what must wake it.
            let deadline = Instant::now() + Duration::from_secs(10);
            while holder.status(name).await.unwrap().waiting_clients == 0 {
                assert!(Instant::now() < deadline, "{name}: the waiter never subscribed");
                tokio::time::sleep(ms(5)).await;
            }
            g.release().await.unwrap();
            let released = Instant::now();
            let (got, at) = task.await.unwrap().unwrap();
            assert!(at - released < Duration::from_secs(3), "{name}: woken after {:?}, by the timer", at - released);
            got.release().await.unwrap();
        }
    }

    async fn a_semaphore_lets_k_in_at_most(d: &Deployment) {
        let client = d.client().await;
        for name in ["pool", "{db}:pool", "p}q"] {
            let inside = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let sem = client.semaphore(name, 3).wait(Duration::from_secs(20));
                let (inside, most) = (Arc::clone(&inside), Arc::clone(&most));
                tasks.push(tokio::spawn(async move {
                    for _ in 0..3 {
                        let p = sem.acquire().await.unwrap();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(ms(2)).await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                        p.release().await.unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let most = most.load(Ordering::SeqCst);
            assert!(most <= 3, "{name}: {most} permits held at once");
            assert!(most >= 2, "{name}: never more than one permit used");
        }
    }

    async fn bad_input_is_refused_and_leaves_nothing(d: &Deployment) {
        let client = d.client().await;
        let err = client.lease("").acquire().await.unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");
        let err = client.lease("t").ttl(ms(1)).acquire().await.unwrap_err();
        assert!(err.to_string().contains("ttl"), "{err}");
        let err = client.semaphore("s", 0).acquire().await.unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        assert!(client.list("*").await.unwrap().is_empty(), "a refused call left keys");
    }

    async fn every_name_is_listed_with_its_status(d: &Deployment) {
        let client = d.client().await;
        let mut guards = Vec::new();
        for name in NAMES {
            guards.push(client.lease(name).acquire().await.unwrap());
        }
        let listed: Vec<Vec<u8>> = client.list("*").await.unwrap().into_iter().map(|s| s.name).collect();
        for name in NAMES {
            assert!(listed.contains(&name.as_bytes().to_vec()), "{name} not listed: {listed:?}");
            let s = client.status(name).await.unwrap();
            assert!(s.is_held(), "{name}");
        }
        for g in guards {
            g.release().await.unwrap();
        }
    }
}
not_on_redlock {
    async fn fair_waiters_get_it_in_arrival_order(d: &Deployment) {
        let holder = d.client().await;
        for name in ["printer", "{q}fair", "x}fair"] {
            let g = holder.lease(name).fair(true).acquire().await.unwrap();
            let order = Arc::new(std::sync::Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            for i in 0..3 {
                let c = d.client().await;
                let order = Arc::clone(&order);
                tasks.push(tokio::spawn(async move {
                    // No fallback timer within the test: each waiter is
                    // handed the lease by the release script (issue 16).
                    let quiet = Duration::from_secs(60);
                    let g = c.lease(name).fair(true).wait(quiet).backoff(quiet, quiet).acquire().await.unwrap();
                    order.lock().unwrap().push((i, g.fence()));
                    tokio::time::sleep(ms(20)).await;
                    g.release().await.unwrap();
                }));
                // Arrive one after the other: each queued in Redis first.
                let deadline = Instant::now() + Duration::from_secs(10);
                while holder.status(name).await.unwrap().fair_waiters != Some(i as u64 + 1) {
                    assert!(Instant::now() < deadline, "{name}: waiter {i} never queued");
                    tokio::time::sleep(ms(5)).await;
                }
            }
            let held = g.fence();
            let released = Instant::now();
            g.release().await.unwrap();
            for t in tasks {
                t.await.unwrap();
            }
            // Three hand-overs of 20 ms holds, not three fallback timers
            // (the holder's ttl, 30 s, would bound the first).
            assert!(released.elapsed() < Duration::from_secs(5), "{name}: {:?}", released.elapsed());
            let order = order.lock().unwrap().clone();
            assert_eq!(order.iter().map(|o| o.0).collect::<Vec<_>>(), vec![0, 1, 2], "{name}");
            let fences: Vec<u64> = order.iter().map(|o| o.1).collect();
            assert!(held < fences[0] && fences.windows(2).all(|w| w[0] < w[1]), "{name}: {held} then {fences:?}");
        }
    }


    async fn readers_share_and_a_writer_is_alone(d: &Deployment) {
        let client = d.client().await;
        for name in ["config", "{cfg}:routing"] {
            let rw = client.rwlock(name);
            let r1 = rw.read().acquire().await.unwrap();
            let r2 = rw.read().try_acquire().await.unwrap();
            assert!(rw.write().try_acquire().await.unwrap_err().is_held(), "{name}");
            r1.release().await.unwrap();
            r2.release().await.unwrap();
            let w = rw.write().try_acquire().await.unwrap();
            assert!(rw.read().try_acquire().await.unwrap_err().is_held(), "{name}");
            assert!(w.fence() > r2_fence_floor(), "{name}");
            w.release().await.unwrap();
        }
    }

}
}

/// Fences are floored at the server's clock (ms × 1024): any fence is
/// above this.
fn r2_fence_floor() -> u64 {
    1_000_000_000_000 * 1024
}
