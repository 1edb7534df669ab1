//! Drop, `with`, cancellation and interop with other clients' locks.

use std::time::Duration;

use tokio::time::Instant;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_guard_releases_without_blocking_even_if_redis_is_frozen() {
    let (server, client) = setup().await;
    let conn = raw(&server).await;
    let guard = client.lease("dropped").acquire().await.unwrap();
    server.pause();
    // If drop waited for Redis, this would hang: Redis is stopped.
    let dropped = tokio::task::spawn_blocking(move || drop(guard));
    tokio::time::timeout(SECOND, dropped)
        .await
        .expect("dropping a guard blocked")
        .unwrap();
    server.resume();
    eventually(2 * SECOND, "the background release", || {
        let mut c = conn.clone();
        async move { get(&mut c, "dropped").await.is_none() }
    })
    .await;
}

/// A process about to exit waits for its background releases: once
/// `settle` says they are done, the lease of a dropped guard is free in
/// Redis; while Redis cannot answer, `settle` says they are not.
#[tokio::test]
async fn settle_waits_for_the_release_of_a_dropped_guard() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    assert!(client.settle(SECOND).await, "nothing runs yet");
    drop(client.lease("settled").acquire().await.unwrap());
    assert!(client.settle(5 * SECOND).await, "the release did not end");
    assert_eq!(get(&mut conn, "settled").await, None);

    let guard = client.lease("settled").acquire().await.unwrap();
    server.pause();
    drop(guard);
    assert!(
        !client.settle(Duration::from_millis(100)).await,
        "settled while Redis could not answer the release"
    );
    server.resume();
    assert!(client.settle(5 * SECOND).await, "the release did not end");
    assert_eq!(get(&mut conn, "settled").await, None);
}

#[tokio::test]
async fn dropping_a_guard_lets_the_next_one_in_promptly() {
    let (_server, client) = setup().await;
    let guard = client.lease("handover").acquire().await.unwrap();
    let waiting = {
        let lease = client
            .lease("handover")
            .backoff(Duration::from_secs(60), Duration::from_secs(60));
        tokio::spawn(async move { lease.acquire().await.map(|g| g.fence()) })
    };
    let lease = client.lease("handover");
    eventually(5 * SECOND, "the waiter to queue", || {
        let n = lease.local_waiters();
        async move { n == 1 }
    })
    .await;
    let fence = guard.fence();
    drop(guard);
    let next = tokio::time::timeout(SECOND, waiting)
        .await
        .expect("not handed over")
        .unwrap();
    assert!(next.unwrap() > fence);
}

#[tokio::test]
async fn with_runs_the_work_under_the_lease_and_releases_it() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let lease = client.lease("with");
    let (fence, holder) = lease
        .with(async |g| {
            let mut c = raw(&server).await;
            (g.fence(), get(&mut c, "with").await)
        })
        .await
        .unwrap();
    assert_eq!(
        get(&mut conn, "leasehold:{with}:fence").await,
        Some(fence.to_string()),
        "the guard's fence is the counter's"
    );
    assert!(holder.is_some(), "the lease was held during the work");
    assert_eq!(
        get(&mut conn, "with").await,
        None,
        "released after the work"
    );
}

#[tokio::test]
async fn with_cancels_the_work_when_the_lease_is_lost() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let lease = client.lease("with-lost").ttl(ms(300));
    let started = Instant::now();
    let err = lease
        .with(async |_g| {
            let () = redis::cmd("DEL")
                .arg("with-lost")
                .query_async(&mut conn)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
        .await
        .unwrap_err();
    assert!(err.is_lost(), "{err}");
    assert!(started.elapsed() < 2 * SECOND, "the work was not cancelled");
}

#[tokio::test]
async fn cancelled_acquires_leave_no_lease_behind() {
    let (server, client) = setup().await;
    let conn = raw(&server).await;
    let lease = client.lease("cancelled").ttl(Duration::from_secs(60));
    // Cut acquire() off at many points: before sending, after sending,
    // before the reply. Some attempts will have taken the lease.
    let mut got = 0;
    for i in 0..300u64 {
        match tokio::time::timeout(Duration::from_micros(i * 3), lease.acquire()).await {
            Ok(Ok(g)) => {
                got += 1;
                g.release().await.unwrap();
            }
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => {}
        }
    }
    eventually(2 * SECOND, "every cut-off acquire to be released", || {
        let mut c = conn.clone();
        async move { get(&mut c, "cancelled").await.is_none() }
    })
    .await;
    eprintln!("{got} of 300 acquires completed");
}

#[tokio::test]
async fn a_raw_set_nx_lock_blocks_leasehold_and_the_other_way_round() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    // What redis-py's Lock, redsync and node-redlock do.
    let set: Option<String> = redis::cmd("SET")
        .arg("shared")
        .arg("foreign-token")
        .arg("NX")
        .arg("PX")
        .arg(5_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(set.as_deref(), Some("OK"));
    let err = client.lease("shared").try_acquire().await.unwrap_err();
    assert!(err.is_held(), "{err}");
    match err.kind() {
        leasehold::ErrorKind::Held { remaining, .. } => {
            assert!(remaining.is_some_and(|r| r <= Duration::from_secs(5)))
        }
        other => panic!("{other:?}"),
    }
    // The foreign client lets go without publishing: the waiter's fallback
    // timer (default backoff, 50 ms growing to 1 s) finds the lease free.
    let waiter = {
        let lease = client.lease("shared");
        tokio::spawn(async move { lease.acquire().await })
    };
    let () = redis::cmd("DEL")
        .arg("shared")
        .query_async(&mut conn)
        .await
        .unwrap();
    let guard = tokio::time::timeout(3 * SECOND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // And a leasehold lease blocks a raw SET NX.
    let set: Option<String> = redis::cmd("SET")
        .arg("shared")
        .arg("foreign-token")
        .arg("NX")
        .arg("PX")
        .arg(5_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(set, None);
    assert_eq!(
        get(&mut conn, "shared").await.as_deref(),
        Some(guard.token().as_str())
    );
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_timeout_names_the_holder_and_its_remaining_ttl() {
    let (_server, client) = setup().await;
    let holder = client.lease("busy").acquire().await.unwrap();
    let started = Instant::now();
    let err = client
        .lease("busy")
        .wait(ms(200))
        .acquire()
        .await
        .unwrap_err();
    assert!(started.elapsed() >= ms(200));
    assert!(err.is_timeout(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("busy") && msg.contains(holder.token().prefix()),
        "{msg}"
    );
    assert!(
        !msg.contains(holder.token().as_str()),
        "a whole token leaked: {msg}"
    );
}

/// Redis answers BUSY to everything while a script runs past
/// `busy-reply-threshold` (`lua-time-limit`): not executed, try again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_and_a_renewal_ride_out_a_busy_script() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("lua-time-limit")
        .arg(20)
        .query_async(&mut conn)
        .await
        .unwrap();
    let held = client.lease("held").ttl(ms(3000)).acquire().await.unwrap();
    let mut spinner = raw(&server).await;
    let spin = tokio::spawn(async move {
        redis::cmd("EVAL")
            .arg("while true do end")
            .arg(0)
            .query_async::<()>(&mut spinner)
            .await
    });
    eventually(5 * SECOND, "Redis to answer BUSY", || {
        let mut c = conn.clone();
        async move {
            let r: redis::RedisResult<()> = redis::cmd("PING").query_async(&mut c).await;
            matches!(r, Err(e) if e.code() == Some("BUSY"))
        }
    })
    .await;
    let waiter = client.clone();
    let acquire =
        tokio::spawn(async move { waiter.lease("wanted").wait(10 * SECOND).acquire().await });
    // Long enough for attempts and a renewal of `held` (due every second)
    // to be answered BUSY, well within its validity (at least 2 s left
    // when the script started).
    tokio::time::sleep(ms(1200)).await;
    assert!(!acquire.is_finished(), "{:?}", acquire.await);
    let () = redis::cmd("SCRIPT")
        .arg("KILL")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(spin.await.unwrap().is_err(), "the script was killed");
    let guard = tokio::time::timeout(5 * SECOND, acquire)
        .await
        .expect("the acquire went on after the script was killed")
        .unwrap()
        .expect("the acquire survived BUSY");
    assert_eq!(
        get(&mut conn, "wanted").await.as_deref(),
        Some(guard.token().as_str())
    );
    assert!(!held.is_lost(), "a renewal answered BUSY lost the guard");
    assert_eq!(
        get(&mut conn, "held").await.as_deref(),
        Some(held.token().as_str())
    );
}
