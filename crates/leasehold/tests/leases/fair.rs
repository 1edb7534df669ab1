//! Fair mode: arrival order across clients, one wake per release, and a
//! dead waiter delays the others by at most its own timeout, or its place
//! in the queue (a few fallback periods) if that runs out first.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use leasehold::Client;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_waiters_of_two_clients_acquire_in_arrival_order() {
    let (server, a) = setup().await;
    let b = Client::connect(&server.url()).await.unwrap();
    let conn = raw(&server).await;
    let holder = a.lease("fifo").fair(true).acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let lease = if i % 2 == 0 { &a } else { &b }
            .lease("fifo")
            .fair(true)
            .wait(Duration::from_secs(30));
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let g = lease.acquire().await.unwrap();
            order.lock().await.push(i);
            g.release().await.unwrap();
        }));
        // Arrival order is the order of joining the queue in Redis.
        eventually(5 * SECOND, "the waiter to join the queue", || async {
            queued(&conn, "fifo").await == i + 1
        })
        .await;
    }
    // A newcomer that will not wait does not jump the queue.
    assert!(
        a.lease("fifo")
            .fair(true)
            .try_acquire()
            .await
            .unwrap_err()
            .is_held()
    );
    holder.release().await.unwrap();
    for t in tasks {
        tokio::time::timeout(10 * SECOND, t).await.unwrap().unwrap();
    }
    assert_eq!(*order.lock().await, (0..16).collect::<Vec<_>>());
    assert_eq!(queued(&conn, "fifo").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_fair_workers_get_even_shares() {
    let (server, a) = setup().await;
    let b = Client::connect(&server.url()).await.unwrap();
    let budget = Arc::new(AtomicI64::new(480));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let lease = if i % 2 == 0 { &a } else { &b }
            .lease("shares")
            .fair(true)
            .wait(Duration::from_secs(30));
        let budget = budget.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = 0u32;
            while budget.fetch_sub(1, Ordering::AcqRel) > 0 {
                let g = lease.acquire().await.unwrap();
                mine += 1;
                g.release().await.unwrap();
            }
            mine
        }));
    }
    let mut counts = Vec::new();
    for t in tasks {
        counts.push(t.await.unwrap());
    }
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    assert_eq!(counts.iter().sum::<u32>(), 480);
    assert!(f64::from(min) / f64::from(max) >= 0.8, "shares {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_waiter_delays_the_queue_by_at_most_its_timeout() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let holder = client.lease("dead").fair(true).acquire().await.unwrap();
    let held = holder.fence();
    let patience = ms(600);
    // First in line, then its process died: nobody will take it out of the
    // queue, its deadline will.
    let now: (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let deadline = now.0 * 1000 + now.1 / 1000 + patience.as_millis() as u64;
    let () = redis::pipe()
        .cmd("ZADD")
        .arg("leasehold:{dead}:queue")
        .arg(1)
        .arg("died")
        .ignore()
        .cmd("ZADD")
        .arg("leasehold:{dead}:queue-deadlines")
        .arg(deadline)
        .arg("died")
        .ignore()
        .cmd("SET")
        .arg("leasehold:{dead}:queue-ticket")
        .arg(1)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let started = Instant::now();
    let live = {
        let lease = client
            .lease("dead")
            .fair(true)
            .wait(Duration::from_secs(10));
        tokio::spawn(async move { lease.acquire().await.map(|g| g.fence()) })
    };
    eventually(5 * SECOND, "the second waiter to queue", || async {
        queued(&conn, "dead").await == 2
    })
    .await;
    holder.release().await.unwrap(); // names the dead waiter, whose turn it was
    let fence = tokio::time::timeout(5 * SECOND, live)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let delay = started.elapsed();
    assert!(fence > held);
    assert!(
        delay <= patience + ms(400),
        "the live waiter got the lease {delay:?} after queueing; the dead one's timeout was {patience:?}"
    );
    let after: (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    assert!(
        after.0 * 1000 + after.1 / 1000 >= deadline,
        "served before the dead waiter's deadline: its turn was not kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_gives_up_leaves_the_queue_at_once() {
    let (server, client) = setup().await;
    let conn = raw(&server).await;
    let holder = client.lease("quit").fair(true).acquire().await.unwrap();
    let held = holder.fence();
    // First in line with 60 s of patience, then cancelled.
    let quitter = {
        let lease = client.lease("quit").fair(true).wait(60 * SECOND);
        tokio::spawn(async move { lease.acquire().await })
    };
    eventually(5 * SECOND, "the first waiter to queue", || async {
        queued(&conn, "quit").await == 1
    })
    .await;
    let live = {
        let lease = client.lease("quit").fair(true).wait(60 * SECOND);
        tokio::spawn(async move { lease.acquire().await.map(|g| g.fence()) })
    };
    eventually(5 * SECOND, "the second waiter to queue", || async {
        queued(&conn, "quit").await == 2
    })
    .await;
    quitter.abort();
    eventually(
        5 * SECOND,
        "the cancelled waiter to leave the queue",
        || async { queued(&conn, "quit").await == 1 },
    )
    .await;
    let released = Instant::now();
    holder.release().await.unwrap();
    let fence = tokio::time::timeout(5 * SECOND, live)
        .await
        .expect("the live waiter waited for the cancelled one's 60 s")
        .unwrap()
        .unwrap();
    assert!(fence > held);
    assert!(released.elapsed() < 2 * SECOND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fair_waiter_joins_the_queue_with_one_attempt() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let no_timer = Duration::from_secs(120);
    let lease = client
        .lease("one-look")
        .fair(true)
        .backoff(no_timer, no_timer)
        .wait(no_timer);
    let start = script_calls(&mut conn).await;
    let holder = lease.acquire().await.unwrap(); // EVALSHA (NOSCRIPT), EVAL
    let held = holder.fence();
    // A first waiter: the client now listens on the name's wake channel.
    // It tries twice: on arrival, and when the subscription is confirmed
    // (a release may have come in between).
    let first = {
        let lease = lease.clone();
        tokio::spawn(async move { lease.acquire().await.map(|g| g.fence()) })
    };
    eventually(
        5 * SECOND,
        "the first waiter to queue and subscribe",
        || {
            let c = conn.clone();
            async move {
                queued(&c, "one-look").await == 1 && script_calls(&mut c.clone()).await - start == 4
            }
        },
    )
    .await;
    let before = script_calls(&mut conn).await;
    let second = {
        let lease = lease.clone();
        tokio::spawn(async move { lease.acquire().await.map(|g| g.fence()) })
    };
    eventually(5 * SECOND, "the second waiter to queue", || async {
        queued(&conn, "one-look").await == 2
    })
    .await;
    // Its place was taken by its first attempt, while it already stood in
    // the local queue: no second look after subscribing.
    assert_eq!(script_calls(&mut conn).await - before, 1);
    holder.release().await.unwrap();
    let f1 = tokio::time::timeout(5 * SECOND, first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let f2 = tokio::time::timeout(5 * SECOND, second)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        held < f1 && f1 < f2,
        "served in arrival order: {held}, {f1}, {f2}"
    );
}

/// A fair lease or a fair semaphore of one permit: the two kinds whose
/// waiters queue in Redis.
#[derive(Debug, Clone, Copy)]
enum Fair {
    Lease,
    Semaphore,
}

impl Fair {
    /// Acquires `name` on `client` with these options; the fence.
    async fn acquire(
        self,
        client: &Client,
        name: &str,
        wait: Duration,
        backoff_max: Duration,
    ) -> leasehold::Result<leasehold::Guard> {
        match self {
            Fair::Lease => {
                client
                    .lease(name)
                    .fair(true)
                    .wait(wait)
                    .backoff(ms(50), backoff_max)
                    .acquire()
                    .await
            }
            Fair::Semaphore => {
                client
                    .semaphore(name, 1)
                    .fair(true)
                    .wait(wait)
                    .backoff(ms(50), backoff_max)
                    .acquire()
                    .await
            }
        }
    }
}

/// The first waiter of the queue in Redis.
async fn head(conn: &redis::aio::MultiplexedConnection, name: &str) -> Option<String> {
    redis::cmd("ZRANGE")
        .arg(format!("leasehold:{{{name}}}:queue"))
        .arg(0)
        .arg(0)
        .query_async::<Vec<String>>(&mut conn.clone())
        .await
        .unwrap()
        .pop()
}

/// A fair waiter with no deadline, then its process dies (its runtime and
/// client vanish without leaving the queue): the next waiter gets the
/// lease once the dead one's place runs out, a few of its fallback
/// periods, not after its wait (365 days).
async fn a_dead_fair_waiter_blocks_only_briefly(kind: Fair) {
    let (server, client) = setup().await;
    let conn = raw(&server).await;
    let name = format!("died:{kind:?}");
    let holder = kind
        .acquire(&client, &name, Duration::ZERO, SECOND)
        .await
        .unwrap();
    // Places last 3 x 200 ms, at least 1 s.
    let place = SECOND;
    let process = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    {
        let (url, name) = (server.url(), name.clone());
        process.spawn(async move {
            let client = Client::connect(&url).await.unwrap();
            kind.acquire(&client, &name, Duration::MAX, ms(200)).await
        });
    }
    eventually(5 * SECOND, "the doomed waiter to queue", || async {
        queued(&conn, &name).await == 1
    })
    .await;
    let dead = head(&conn, &name).await;
    let live = {
        let (client, name) = (client.clone(), name.clone());
        tokio::spawn(async move { kind.acquire(&client, &name, 60 * SECOND, SECOND).await })
    };
    eventually(5 * SECOND, "the live waiter to queue", || async {
        queued(&conn, &name).await == 2
    })
    .await;
    process.shutdown_background();
    let died = Instant::now();
    let died_ms = server_ms(&conn).await;
    // Nobody took it out of the queue: it is first, and its place lasts
    // until `until`, by the server's clock: at most one place from now.
    assert_eq!(head(&conn, &name).await, dead);
    let until: f64 = redis::cmd("ZSCORE")
        .arg(format!("leasehold:{{{name}}}:queue-deadlines"))
        .arg(dead.as_deref().unwrap())
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    let left = (until as u64).saturating_sub(died_ms);
    assert!(
        left <= place.as_millis() as u64,
        "{kind:?}: the dead waiter keeps its place {left} ms more"
    );
    holder.release().await.unwrap();
    let got = tokio::time::timeout(10 * SECOND, live)
        .await
        .expect("the live waiter waited for the dead one's whole wait")
        .unwrap()
        .unwrap();
    let waited = died.elapsed();
    assert!(
        server_ms(&conn).await >= until as u64,
        "{kind:?}: served before the dead waiter's place ran out"
    );
    assert!(
        waited <= place + 2 * SECOND,
        "{kind:?}: the live waiter got it {waited:?} after the other died; its place was {place:?}"
    );
    got.release().await.unwrap();
}

/// The server's clock, in ms.
async fn server_ms(conn: &redis::aio::MultiplexedConnection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    s * 1000 + us / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_dead_fair_waiter_blocks_a_fair_lease_only_briefly() {
    a_dead_fair_waiter_blocks_only_briefly(Fair::Lease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_dead_fair_waiter_blocks_a_fair_semaphore_only_briefly() {
    a_dead_fair_waiter_blocks_only_briefly(Fair::Semaphore).await;
}

/// A live waiter that waits three times longer than its place lasts keeps
/// it: its fallback timer comes back in time.
async fn a_live_fair_waiter_keeps_its_place(kind: Fair) {
    let (server, client) = setup().await;
    let conn = raw(&server).await;
    let name = format!("patient:{kind:?}");
    let holder = kind
        .acquire(&client, &name, Duration::ZERO, SECOND)
        .await
        .unwrap();
    let waiter = |backoff_max| {
        let (client, name) = (client.clone(), name.clone());
        tokio::spawn(async move {
            kind.acquire(&client, &name, 60 * SECOND, backoff_max)
                .await
                .map(|g| g.fence())
        })
    };
    // Its place lasts 1 s (3 x 200 ms, at least 1 s).
    let first = waiter(ms(200));
    eventually(5 * SECOND, "the first waiter to queue", || async {
        queued(&conn, &name).await == 1
    })
    .await;
    let first_id = head(&conn, &name).await;
    let second = waiter(SECOND);
    eventually(5 * SECOND, "the second waiter to queue", || async {
        queued(&conn, &name).await == 2
    })
    .await;
    let held_until = Instant::now() + 3 * SECOND;
    while Instant::now() < held_until {
        assert_eq!(
            head(&conn, &name).await,
            first_id,
            "{kind:?}: the first waiter lost its place while alive"
        );
        tokio::time::sleep(ms(50)).await;
    }
    let fence = holder.fence();
    holder.release().await.unwrap();
    let f1 = tokio::time::timeout(10 * SECOND, first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let f2 = tokio::time::timeout(10 * SECOND, second)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(fence < f1 && f1 < f2, "{kind:?}: served out of order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_live_fair_waiter_keeps_its_place_past_the_bound() {
    a_live_fair_waiter_keeps_its_place(Fair::Lease).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_live_fair_semaphore_waiter_keeps_its_place_past_the_bound() {
    a_live_fair_waiter_keeps_its_place(Fair::Semaphore).await;
}
