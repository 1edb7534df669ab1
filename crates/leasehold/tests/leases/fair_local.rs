//! Issue 16: a fair hand-over to a waiter of the releasing client itself
//! publishes nothing. The client grants its waiter from the release
//! script's reply (the ids of its fair waiters end with its mark, which the
//! script is given); the `g:` message would only come back to it through
//! its subscriber. Another client's waiter is still told by the publish,
//! and a local waiter whose grant's reply is lost still gets the lease.

use std::collections::HashMap;

use leasehold::Client;
use redis::aio::MultiplexedConnection;
use testkit::{FaultProxy, RedisServer};
use tokio::time::Instant;

use crate::common::*;
use crate::fair_handover::{all_calls, fence_counter, quiet, ran, warm_up};

/// The ids standing in `name`'s fair queue, first first.
async fn queue_ids(conn: &MultiplexedConnection, name: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(format!("leasehold:{{{name}}}:queue"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn.clone())
        .await
        .unwrap()
}

/// Spawns a quiet waiter (no fallback timer within the test) of `client`
/// on `name`, and waits until it stands in the queue, `in_line` waiters
/// then, and its attempts are done: a client's first waiter on a name
/// tries twice (on arrival, and once its subscription is confirmed).
async fn queue_waiter(
    conn: &MultiplexedConnection,
    client: &Client,
    name: &'static str,
    in_line: i64,
    attempts: u64,
) -> tokio::task::JoinHandle<leasehold::Guard> {
    let scripts = script_calls(&mut conn.clone()).await;
    let lease = quiet(client, name);
    let waiter = tokio::spawn(async move { lease.acquire().await.unwrap() });
    eventually(5 * SECOND, "the waiter to queue", || {
        let conn = conn.clone();
        async move {
            queued(&conn, name).await == in_line
                && script_calls(&mut conn.clone()).await == scripts + attempts
        }
    })
    .await;
    waiter
}

fn count(ran: &[(String, u64)], command: &str) -> u64 {
    ran.iter()
        .find(|(c, _)| c == command)
        .map_or(0, |&(_, n)| n)
}

/// A release that hands the lease to a waiter of its own client runs no
/// PUBLISH, and reads the clock once: 12 commands (its EVALSHA, GET, TIME,
/// the head's ZRANGE, ZSCORE and HGET, HDEL, SET, 2 ZREM, next_fence's INCR
/// and SET). The waiter, with no timer, takes the lease from the reply.
/// Then the holder releases to another client's waiter, which only the
/// publish can tell: one PUBLISH, still one TIME. (Before: a PUBLISH and
/// two TIME for both.) The two clients' waiters' ids end with different
/// marks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_a_local_fair_hand_over_publishes_nothing_a_remote_one_does() {
    let (server, a) = setup().await;
    let conn = raw(&server).await;
    let b = Client::connect(&server.url()).await.unwrap();
    warm_up(&a, &b, &conn).await;
    let name = "local-hand-over";
    let holder = quiet(&a, name).acquire().await.unwrap();
    // a listens on the name's channel from its first waiter on.
    let local = queue_waiter(&conn, &a, name, 1, 2).await;
    let local_id = queue_ids(&conn, name).await.remove(0);

    let before = all_calls(&conn).await;
    let started = Instant::now();
    holder.release().await.unwrap();
    let hand_over = ran(&before, &all_calls(&conn).await);
    let guard = tokio::time::timeout(5 * SECOND, local)
        .await
        .expect("the local waiter never took the lease from the release's reply")
        .unwrap();
    assert!(started.elapsed() < 2 * SECOND, "{:?}", started.elapsed());
    assert_eq!(count(&hand_over, "publish"), 0, "{hand_over:?}");
    assert_eq!(count(&hand_over, "time"), 1, "{hand_over:?}");
    let total: u64 = hand_over.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 12, "{hand_over:?}");
    assert!(guard.fence() > 0);
    assert_eq!(guard.fence(), fence_counter(&conn, name).await);

    let remote = queue_waiter(&conn, &b, name, 1, 2).await;
    let remote_id = queue_ids(&conn, name).await.remove(0);
    assert_eq!((local_id.len(), remote_id.len()), (32, 32));
    assert_ne!(
        local_id[16..],
        remote_id[16..],
        "two clients' waiters share a mark"
    );
    let before = all_calls(&conn).await;
    guard.release().await.unwrap();
    let hand_over = ran(&before, &all_calls(&conn).await);
    let guard = tokio::time::timeout(5 * SECOND, remote)
        .await
        .expect("the other client's waiter was never told of its grant")
        .unwrap();
    assert_eq!(count(&hand_over, "publish"), 1, "{hand_over:?}");
    assert_eq!(count(&hand_over, "time"), 1, "{hand_over:?}");
    assert_eq!(guard.fence(), fence_counter(&conn, name).await);
    guard.release().await.unwrap();
}

/// Eight waiters of one client queue behind a holder of the same client:
/// the chain of eight local hand-overs publishes nothing at all, serves
/// them in arrival order with increasing fences, and costs one script each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_a_chain_of_local_fair_hand_overs_publishes_nothing() {
    const N: i64 = 8;
    let (server, a) = setup().await;
    let conn = raw(&server).await;
    let b = Client::connect(&server.url()).await.unwrap();
    warm_up(&a, &b, &conn).await;
    let name = "local-chain";
    let holder = quiet(&a, name).acquire().await.unwrap();
    let mut waiters = Vec::new();
    for i in 0..N {
        let attempts = if i == 0 { 2 } else { 1 };
        waiters.push(queue_waiter(&conn, &a, name, i + 1, attempts).await);
    }
    let before = all_calls(&conn).await;
    let mut last = holder.fence();
    holder.release().await.unwrap();
    for w in waiters {
        let guard = tokio::time::timeout(5 * SECOND, w)
            .await
            .expect("a waiter was never handed the lease")
            .unwrap();
        assert!(guard.fence() > last, "out of order");
        last = guard.fence();
        guard.release().await.unwrap();
    }
    let after = all_calls(&conn).await;
    let chain: HashMap<String, u64> = ran(&before, &after).into_iter().collect();
    assert_eq!(chain.get("publish").copied().unwrap_or(0), 1, "{chain:?}");
    // The last release, to nobody queued, publishes the client's id: the
    // one PUBLISH. Each release ran one script, and nothing else did.
    assert_eq!(
        chain.get("evalsha").copied(),
        Some(N as u64 + 1),
        "{chain:?}"
    );
    assert_eq!(queued(&conn, name).await, 0);
}

/// The reply of a release that handed the lease to a waiter of its own
/// client is lost (the proxy resets the connection after Redis ran the
/// script): nothing was published for the waiter, which has no timer within
/// the test. The client wakes its local head when the reply is lost; its
/// attempt finds the lease holding its token and answers that grant's
/// fence. The waiter has the lease within seconds, not at its timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_a_local_head_whose_grant_reply_is_lost_still_gets_the_lease() {
    let server = RedisServer::start().expect("start redis-server");
    let proxy = FaultProxy::start(server.port()).expect("start the proxy");
    let conn = raw(&server).await;
    let client = Client::connect(&proxy.url()).await.unwrap();
    let name = "lost-reply";
    // The fair scripts are loaded: the release below is one EVALSHA.
    take_and_give_back(&quiet(&client, name)).await;
    let holder = quiet(&client, name).acquire().await.unwrap();
    let waiter = queue_waiter(&conn, &client, name, 1, 2).await;
    proxy.reset_after_next_command();
    let started = Instant::now();
    let released = holder.release().await;
    assert!(released.is_err(), "the reply came: {released:?}");
    assert_eq!(proxy.resets(), 1);
    // Redis ran it: the lease went to the waiter, with the next fence.
    assert_eq!(queued(&conn, name).await, 0);
    let granted = fence_counter(&conn, name).await;
    let guard = tokio::time::timeout(10 * SECOND, waiter)
        .await
        .expect("the local head never learned of its grant")
        .unwrap();
    assert!(started.elapsed() < 5 * SECOND, "{:?}", started.elapsed());
    assert_eq!(guard.fence(), granted, "the grant's fence, not a new one");
    assert!(!guard.is_lost());
    guard.release().await.unwrap();
}

/// A release script that ran and gave the lease to a waiter of the
/// releasing client, but whose reply the client never read (a cluster
/// connection sends a command again after a connection error, and the
/// second run finds the lease no longer held): the client's own release
/// then answers "not held", and the local head must still learn of its
/// grant. The first run is played here by the test itself, with the
/// holder's token and the client's mark; then the client releases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_a_fair_release_that_finds_its_lease_given_away_wakes_the_local_head() {
    let (server, client) = setup().await;
    let conn = raw(&server).await;
    let name = "released-twice";
    take_and_give_back(&quiet(&client, name)).await;
    let holder = quiet(&client, name).acquire().await.unwrap();
    let waiter = queue_waiter(&conn, &client, name, 1, 2).await;
    let id = queue_ids(&conn, name).await.remove(0);
    let mark = &id[id.len() - 16..];

    let script = redis::Script::new(concat!(
        include_str!("../../src/scripts/fence.lua"),
        include_str!("../../src/scripts/wake.lua"),
        include_str!("../../src/scripts/fair_queue.lua"),
        include_str!("../../src/scripts/fair_hand_on.lua"),
        include_str!("../../src/scripts/fair_release.lua"),
    ));
    let key = |suffix: &str| format!("leasehold:{{{name}}}:{suffix}");
    let (outcome, fence, to, _): (i64, u64, String, i64) = script
        .key(name)
        .key(key("fence"))
        .key(key("wake"))
        .key(key("queue"))
        .key(key("queue-deadlines"))
        .key(key("queue-claims"))
        .arg(holder.token().as_str())
        .arg("the-first-run")
        .arg(mark)
        .invoke_async(&mut conn.clone())
        .await
        .unwrap();
    assert_eq!(
        (outcome, to.as_str()),
        (3, id.as_str()),
        "granted to the local head"
    );

    // The client's own run of it: the lease is no longer its token's.
    assert!(holder.release().await.unwrap_err().is_lost());
    let guard = tokio::time::timeout(5 * SECOND, waiter)
        .await
        .expect("the local head never learned of its grant")
        .unwrap();
    assert_eq!(guard.fence(), fence, "the grant's fence, not a new one");
    guard.release().await.unwrap();
}
