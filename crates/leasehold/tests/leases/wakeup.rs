//! Waiters are woken by the release itself; timers are only the fallback.

use std::sync::Arc;
use std::time::Duration;

use leasehold::Client;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::common::*;

/// Fallback timers far longer than any test: only a publish can wake.
const NO_TIMER: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_another_client_is_woken_by_the_release() {
    let (server, holder_client) = setup().await;
    let waiter_client = Client::connect(&server.url()).await.unwrap();
    let conn = raw(&server).await;
    let holder = holder_client.lease("pushed").acquire().await.unwrap();

    let waiter = tokio::spawn(async move {
        let g = waiter_client
            .lease("pushed")
            .backoff(NO_TIMER, NO_TIMER)
            .wait(NO_TIMER)
            .acquire()
            .await
            .unwrap();
        (Instant::now(), g.fence(), waiter_client.connections())
    });
    // The waiter is queued once its client subscribed to the wake channel.
    eventually(5 * SECOND, "the waiter to subscribe", || {
        let mut c = conn.clone();
        async move { numsub(&mut c, "leasehold:{pushed}:wake").await == 1 }
    })
    .await;
    let released = Instant::now();
    let fence = holder.fence();
    holder.release().await.unwrap();
    let (got, new_fence, connections) = tokio::time::timeout(5 * SECOND, waiter)
        .await
        .expect("the waiter was not woken by the release")
        .unwrap();
    let took = got - released;
    assert!(
        took < SECOND,
        "woken {took:?} after the release: a timer, not the publish"
    );
    assert!(new_fence > fence);
    assert!(
        (2..=3).contains(&connections),
        "one command connection, one subscriber and at most the direct connection its first attempt had opened: {connections}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_release_hands_the_lease_on_through_a_crowd_of_waiters() {
    let (server, a) = setup().await;
    let b = Client::connect(&server.url()).await.unwrap();
    let conn = raw(&server).await;
    let first = a.lease("crowd").acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    const WAITERS: usize = 12;
    for i in 0..WAITERS {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let g = client
                .lease("crowd")
                .backoff(NO_TIMER, NO_TIMER)
                .wait(NO_TIMER)
                .acquire()
                .await
                .unwrap();
            order.lock().await.push(g.fence());
            tokio::time::sleep(ms(2)).await;
            g.release().await.unwrap();
        }));
    }
    eventually(5 * SECOND, "both clients to subscribe", || {
        let mut c = conn.clone();
        async move { numsub(&mut c, "leasehold:{crowd}:wake").await == 2 }
    })
    .await;
    eventually(5 * SECOND, "every waiter to queue", || {
        let (a, b) = (a.clone(), b.clone());
        async move { a.lease("crowd").local_waiters() + b.lease("crowd").local_waiters() == WAITERS }
    })
    .await;
    let started = Instant::now();
    first.release().await.unwrap();
    for t in tasks {
        tokio::time::timeout(10 * SECOND, t)
            .await
            .expect("a release did not hand the lease on")
            .unwrap();
    }
    let order = order.lock().await;
    assert_eq!(order.len(), WAITERS);
    assert!(order.windows(2).all(|w| w[1] > w[0]), "fences {order:?}");
    assert!(
        started.elapsed() < 5 * SECOND,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_waiters_are_served_in_arrival_order() {
    let (server, client) = setup().await;
    let conn = raw(&server).await;
    let holder = client.lease("queue").acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let client_for_check = client.clone();
    // The first waiter tries twice (on arrival, and when its subscription
    // is confirmed), out of the queue meanwhile: the others arrive after.
    let scripts = script_calls(&mut conn.clone()).await;
    for i in 0..8 {
        let client = client.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let g = client
                .lease("queue")
                .backoff(NO_TIMER, NO_TIMER)
                .wait(NO_TIMER)
                .acquire()
                .await
                .unwrap();
            order.lock().await.push(i);
            g.release().await.unwrap();
        }));
        // Arrive one after the other: wait until this one is queued.
        let lease = client_for_check.lease("queue");
        let attempts = if i == 0 { 2 } else { 0 };
        settled_waiter(&conn, &lease, scripts, attempts, i + 1).await;
    }
    holder.release().await.unwrap();
    for t in tasks {
        tokio::time::timeout(10 * SECOND, t).await.unwrap().unwrap();
    }
    assert_eq!(*order.lock().await, (0..8).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_still_woken_after_its_subscriber_connection_was_killed() {
    let (server, holder_client) = setup().await;
    let waiter_client = Client::connect(&server.url()).await.unwrap();
    let mut conn = raw(&server).await;
    let holder = holder_client.lease("resub").acquire().await.unwrap();
    let held = holder.fence();
    let waiter = {
        let lease = waiter_client
            .lease("resub")
            .backoff(NO_TIMER, NO_TIMER)
            .wait(NO_TIMER);
        tokio::spawn(async move { lease.acquire().await.map(|g| g.fence()) })
    };
    let watcher = conn.clone();
    let subscribed = |n: i64| {
        let conn = watcher.clone();
        move || {
            let mut c = conn.clone();
            async move { numsub(&mut c, "leasehold:{resub}:wake").await == n }
        }
    };
    eventually(5 * SECOND, "the waiter to subscribe", subscribed(1)).await;
    // Cut every pub/sub connection: the subscriber must come back by itself.
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    eventually(5 * SECOND, "the subscriber to come back", subscribed(1)).await;
    holder.release().await.unwrap();
    let fence = tokio::time::timeout(2 * SECOND, waiter)
        .await
        .expect("the waiter was not woken after the subscriber reconnected")
        .unwrap()
        .unwrap();
    assert!(fence > held);
}

/// A task that waits for a lease holds its `acquire()` future, and the
/// `release()` after it, for as long as it waits: W5 has 10,000 of them in
/// one process. The request states inside are boxed while they run, so
/// such a task stays small (3,416 bytes when they were inline; 1,072 now).
#[tokio::test]
async fn a_waiting_task_is_small() {
    let (_server, client) = setup().await;
    let lease = client.lease("small").wait(SECOND);
    let waiting = async move {
        let guard = lease.acquire().await?;
        guard.release().await
    };
    let size = std::mem::size_of_val(&waiting);
    assert!(
        size <= 1_536,
        "a task waiting for a lease carries {size} bytes: box the large request states"
    );
}
