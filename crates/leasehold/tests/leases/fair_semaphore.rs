//! Fair semaphores: permits in arrival order across clients, at most K at
//! once, a dead waiter delays the others by at most its own timeout, and
//! the limit and fence rules of normal mode.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use leasehold::{Client, ErrorKind, Semaphore};
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot};

use crate::common::*;

fn fair(client: &Client, name: &str, limit: u32) -> Semaphore {
    client
        .semaphore(name, limit)
        .fair(true)
        .wait(Duration::from_secs(30))
}

fn key(name: &str, suffix: &str) -> String {
    format!("leasehold:{{{name}}}:{suffix}")
}

async fn zcard(conn: &MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("ZCARD")
        .arg(key)
        .query_async(&mut conn.clone())
        .await
        .unwrap()
}

async fn pttl(conn: &MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut conn.clone())
        .await
        .unwrap()
}

/// An acquisition reported to the test: who, its fence, and how to make
/// it give the permit back.
type Acquired = (usize, u64, oneshot::Sender<()>);

/// The next acquisition, which must be waiter `expected`'s.
async fn next(
    rx: &mut mpsc::UnboundedReceiver<Acquired>,
    expected: usize,
) -> (u64, oneshot::Sender<()>) {
    let (i, fence, done) = tokio::time::timeout(10 * SECOND, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("waiter {expected} did not get a permit"))
        .unwrap();
    assert_eq!(
        i, expected,
        "waiter {i} was served before waiter {expected}"
    );
    (fence, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_waiters_of_two_clients_get_two_permits_in_arrival_order() {
    let (server, a) = setup().await;
    let b = Client::connect(&server.url()).await.unwrap();
    let conn = raw(&server).await;
    let name = "fifo-sem";
    let h1 = fair(&a, name, 2).acquire().await.unwrap();
    let h2 = fair(&b, name, 2).acquire().await.unwrap();
    let held_before = h1.fence().max(h2.fence());
    let inside = Arc::new(AtomicUsize::new(2));
    let peak = Arc::new(AtomicUsize::new(2));
    let (tx, mut rx) = mpsc::unbounded_channel::<Acquired>();
    let mut tasks = Vec::new();
    for i in 0..8 {
        // Waiters poll often: one whose turn it is not would grab a permit.
        let sem = fair(if i % 2 == 0 { &a } else { &b }, name, 2).backoff(ms(1), ms(5));
        let (tx, inside, peak) = (tx.clone(), inside.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire().await.unwrap();
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let (done, release) = oneshot::channel();
            tx.send((i, permit.fence(), done)).unwrap();
            release.await.unwrap();
            inside.fetch_sub(1, Ordering::SeqCst);
            permit.release().await.unwrap();
        }));
        // Arrival order is the order of joining the queue in Redis.
        eventually(5 * SECOND, "the waiter to join the queue", || async {
            zcard(&conn, &key(name, "queue")).await == i as i64 + 1
        })
        .await;
    }
    // Every key of the queue expires (with its most patient waiter).
    for suffix in [
        "queue",
        "queue-deadlines",
        "queue-ticket",
        "permits",
        "limit",
    ] {
        let left = pttl(&conn, &key(name, suffix)).await;
        assert!(
            left > 0 && left <= 31_000,
            "{suffix} has PTTL {left} while waiters are queued"
        );
    }
    // A newcomer that will not wait does not jump the queue.
    assert!(fair(&a, name, 2).try_acquire().await.unwrap_err().is_held());

    // One permit comes free at a time: each must go to the next in line.
    let mut holding: VecDeque<oneshot::Sender<()>> = VecDeque::new();
    let mut fences = Vec::new();
    inside.fetch_sub(1, Ordering::SeqCst);
    h1.release().await.unwrap();
    let (fence, done) = next(&mut rx, 0).await;
    fences.push(fence);
    holding.push_back(done);
    inside.fetch_sub(1, Ordering::SeqCst);
    h2.release().await.unwrap();
    let (fence, done) = next(&mut rx, 1).await;
    fences.push(fence);
    holding.push_back(done);
    for expected in 2..8 {
        assert_eq!(zcard(&conn, &key(name, "permits")).await, 2);
        holding.pop_front().unwrap().send(()).unwrap();
        let (fence, done) = next(&mut rx, expected).await;
        fences.push(fence);
        holding.push_back(done);
    }
    for done in holding {
        done.send(()).unwrap();
    }
    for t in tasks {
        tokio::time::timeout(10 * SECOND, t).await.unwrap().unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2, "more than 2 held at once");
    assert_eq!(fences.len(), 8);
    assert!(
        fences[0] > held_before && fences.windows(2).all(|w| w[0] < w[1]),
        "fences in serving order: {fences:?} after {held_before}"
    );
    assert_eq!(zcard(&conn, &key(name, "queue")).await, 0);
    assert_eq!(zcard(&conn, &key(name, "permits")).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_waiter_delays_a_fair_semaphore_by_at_most_its_timeout() {
    let (server, client) = setup().await;
    let other = Client::connect(&server.url()).await.unwrap();
    let conn = raw(&server).await;
    let name = "dead-sem";
    let h1 = fair(&client, name, 2).acquire().await.unwrap();
    let h2 = fair(&client, name, 2).acquire().await.unwrap();
    let held_before = h1.fence().max(h2.fence());
    // First in line, then its process died: nobody takes it out of the
    // queue but its deadline, 800 ms from now.
    let mut c = conn.clone();
    let now: (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
    let () = redis::pipe()
        .cmd("ZADD")
        .arg(key(name, "queue"))
        .arg(1)
        .arg("died")
        .ignore()
        .cmd("ZADD")
        .arg(key(name, "queue-deadlines"))
        .arg(now.0 * 1000 + now.1 / 1000 + 800)
        .arg("died")
        .ignore()
        .cmd("SET")
        .arg(key(name, "queue-ticket"))
        .arg(1)
        .ignore()
        .query_async(&mut c)
        .await
        .unwrap();
    let live = {
        let sem = fair(&client, name, 2)
            .ttl(Duration::from_secs(10))
            .auto_renew(false);
        tokio::spawn(async move { sem.acquire().await })
    };
    eventually(5 * SECOND, "the second waiter to queue", || async {
        zcard(&conn, &key(name, "queue")).await == 2
    })
    .await;
    let (_, deadline): (String, f64) = redis::cmd("ZRANGE")
        .arg(key(name, "queue-deadlines"))
        .arg(0)
        .arg(0)
        .arg("WITHSCORES")
        .query_async::<Vec<(String, f64)>>(&mut conn.clone())
        .await
        .unwrap()
        .remove(0);
    h2.release().await.unwrap(); // tells the dead waiter, whose turn it was
    // The free permit is owed to the queue, not to a newcomer.
    assert!(
        fair(&other, name, 2)
            .try_acquire()
            .await
            .unwrap_err()
            .is_held()
    );
    let permit = tokio::time::timeout(5 * SECOND, live)
        .await
        .expect("the live waiter never got the permit")
        .unwrap()
        .unwrap();
    // When it got the permit, by the server's clock: expiry - ttl.
    let expiry: f64 = redis::cmd("ZSCORE")
        .arg(key(name, "permits"))
        .arg(permit.token().as_str())
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    let got_at = expiry - 10_000.0;
    assert!(
        got_at >= deadline,
        "the live waiter got the permit {} ms before the dead one's turn ran out",
        deadline - got_at
    );
    assert!(
        got_at <= deadline + 400.0,
        "the live waiter got the permit {} ms after the dead one's timeout",
        got_at - deadline
    );
    assert!(permit.fence() > held_before);
    drop(h1);
}

#[tokio::test]
async fn a_fair_semaphore_refuses_another_limit_and_its_fences_increase() {
    let (server, client) = setup().await;
    let conn = raw(&server).await;
    let name = "limits-fair";
    let held = fair(&client, name, 2).acquire().await.unwrap();
    // Refused at once, not after the wait, and without joining the queue.
    let err = tokio::time::timeout(
        5 * SECOND,
        fair(&client, name, 3)
            .wait(Duration::from_secs(20))
            .acquire(),
    )
    .await
    .expect("a limit mismatch waited")
    .unwrap_err();
    match err.kind() {
        ErrorKind::InvalidArgument { what, .. } => assert_eq!(*what, "limit"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("limit 2"), "{err}");
    assert_eq!(zcard(&conn, &key(name, "queue")).await, 0);
    let err = fair(&client, name, 3).try_acquire().await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidArgument { .. }),
        "{err}"
    );

    // Fences strictly increase, across fair and normal callers of the name.
    let mut last = held.fence();
    held.release().await.unwrap();
    for round in 0..6 {
        let sem = client.semaphore(name, 2).fair(round % 2 == 0);
        let a = sem.acquire().await.unwrap();
        let b = sem.try_acquire().await.unwrap();
        assert!(a.fence() > last && b.fence() > a.fence(), "round {round}");
        last = b.fence();
        a.release().await.unwrap();
        b.release().await.unwrap();
    }
    // Once nobody holds a permit, the limit may change.
    fair(&client, name, 3)
        .try_acquire()
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_fair_acquire_script_is_idempotent_for_a_token() {
    let (server, _client) = setup().await;
    let conn = raw(&server).await;
    let name = "retry";
    let script = redis::Script::new(concat!(
        include_str!("../../src/scripts/fence.lua"),
        include_str!("../../src/scripts/sem_fair_acquire.lua")
    ));
    let acquire = |token: &str, waiter: &str| {
        let mut inv = script.prepare_invoke();
        for k in [
            "permits",
            "limit",
            "fence",
            "queue",
            "queue-deadlines",
            "queue-ticket",
            "fences",
        ] {
            inv.key(key(name, k));
        }
        inv.arg(token).arg(60_000).arg(1).arg(waiter).arg(5_000);
        let mut conn = conn.clone();
        async move { inv.invoke_async::<(i64, i64)>(&mut conn).await.unwrap() }
    };
    let (ok, first) = acquire("holder", "w-holder").await;
    assert_eq!(ok, 1);
    // The same token again (its reply was lost): the same permit and fence.
    assert_eq!(acquire("holder", "w-holder").await, (1, first));
    assert_eq!(zcard(&conn, &key(name, "permits")).await, 1);
    // Another token waits in the queue...
    let (ok, _) = acquire("next", "w-next").await;
    assert_eq!(ok, 0);
    assert_eq!(zcard(&conn, &key(name, "queue")).await, 1);
    // ... takes the permit once it is free, and leaves the queue.
    let () = redis::cmd("ZREM")
        .arg(key(name, "permits"))
        .arg("holder")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    let (ok, second) = acquire("next", "w-next").await;
    assert_eq!(ok, 1);
    assert!(second > first, "fence {second} after {first}");
    assert_eq!(acquire("next", "w-next").await, (1, second));
    assert_eq!(zcard(&conn, &key(name, "queue")).await, 0);
    // Nothing but the fence counter lives for ever.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn.clone())
        .await
        .unwrap();
    for k in keys {
        let left = pttl(&conn, &k).await;
        if k == key(name, "fence") {
            assert_eq!(left, -1);
        } else {
            assert!(left > 0, "{k} has PTTL {left}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contended_fair_permits_never_exceed_the_limit_and_are_shared_evenly() {
    let (server, a) = setup().await;
    let b = Client::connect(&server.url()).await.unwrap();
    let sems = (0..8)
        .map(|i| fair(if i % 2 == 0 { &a } else { &b }, "shares-sem", 2))
        .collect();
    let (counts, peak) = contend(sems, 320, ms(1)).await;
    assert_eq!(counts.iter().sum::<u32>(), 320);
    assert!(peak <= 2, "more than 2 held at once");
    assert_eq!(peak, 2, "the semaphore never filled up");
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    assert!(f64::from(min) / f64::from(max) >= 0.7, "shares {counts:?}");
}
