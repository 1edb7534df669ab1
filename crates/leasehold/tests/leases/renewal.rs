//! Self-renewal, and the loss signal when renewal cannot succeed.

use std::time::Duration;

use tokio::time::Instant;

use crate::common::*;

#[tokio::test]
async fn a_guard_held_for_five_ttls_stays_held_and_exclusive() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let ttl = ms(300);
    let guard = client.lease("renewed").ttl(ttl).acquire().await.unwrap();
    let other = leasehold::Client::connect(&server.url()).await.unwrap();
    let rival = other.lease("renewed").ttl(ttl);
    let until = Instant::now() + 5 * ttl;
    let mut tries = 0;
    while Instant::now() < until {
        let err = rival.try_acquire().await.unwrap_err();
        assert!(err.is_held(), "rival got in after {tries} tries: {err}");
        tries += 1;
        tokio::time::sleep(ms(20)).await;
    }
    assert!(tries > 20);
    assert!(!guard.is_lost());
    assert!(guard.remaining() > Duration::ZERO);
    assert_eq!(
        get(&mut conn, "renewed").await.as_deref(),
        Some(guard.token().as_str())
    );
    guard.release().await.unwrap();
}

async fn lost_within(ttl: Duration, behind_the_back: &[&str]) {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let guard = client.lease("doomed").ttl(ttl).acquire().await.unwrap();
    assert!(!guard.is_lost());
    let started = Instant::now();
    let mut cmd = redis::cmd(behind_the_back[0]);
    for a in &behind_the_back[1..] {
        cmd.arg(*a);
    }
    let () = cmd.query_async(&mut conn).await.unwrap();
    // Renewal runs every ttl/3, so the loss is seen within about that long.
    tokio::time::timeout(ttl / 3 + ms(150), guard.lost())
        .await
        .unwrap_or_else(|_| panic!("lost() did not fire within ttl/3 + 150ms"));
    let took = started.elapsed();
    assert!(guard.is_lost());
    assert_eq!(guard.remaining(), Duration::ZERO);
    assert!(guard.extend().await.unwrap_err().is_lost());
    assert!(guard.release().await.unwrap_err().is_lost());
    eprintln!("loss seen after {took:?}");
}

#[tokio::test]
async fn deleting_the_key_is_noticed_within_a_renewal_period() {
    lost_within(ms(600), &["DEL", "doomed"]).await;
}

#[tokio::test]
async fn overwriting_the_key_is_noticed() {
    lost_within(ms(600), &["SET", "doomed", "someone-else"]).await;
}

#[tokio::test]
async fn a_lost_guard_leaves_the_intruders_value_alone() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let guard = client.lease("taken").ttl(ms(300)).acquire().await.unwrap();
    let () = redis::cmd("SET")
        .arg("taken")
        .arg("intruder")
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::timeout(SECOND, guard.lost()).await.unwrap();
    drop(guard);
    // Give a (wrong) background release every chance to run, then check.
    let guard2 = client.lease("other").acquire().await.unwrap();
    guard2.release().await.unwrap();
    assert_eq!(get(&mut conn, "taken").await.as_deref(), Some("intruder"));
}

#[tokio::test]
async fn without_auto_renew_the_lease_ends_after_one_ttl() {
    let (server, client) = setup().await;
    let conn = raw(&server).await;
    let guard = client
        .lease("once")
        .ttl(ms(200))
        .auto_renew(false)
        .acquire()
        .await
        .unwrap();
    tokio::time::timeout(SECOND, guard.lost()).await.unwrap();
    eventually(SECOND, "the key to expire", || {
        let mut c = conn.clone();
        async move { get(&mut c, "once").await.is_none() }
    })
    .await;
}

#[tokio::test]
async fn a_redis_that_stops_answering_makes_the_guard_lost_by_its_validity() {
    let (server, _) = setup().await;
    let client = leasehold::Client::builder()
        .response_timeout(ms(100))
        .connect(&server.url())
        .await
        .unwrap();
    let ttl = ms(400);
    let guard = client.lease("frozen").ttl(ttl).acquire().await.unwrap();
    server.pause();
    let started = Instant::now();
    tokio::time::timeout(ttl + ms(200), guard.lost())
        .await
        .expect("lost() fires once the validity runs out");
    eprintln!("loss seen {:?} after the pause", started.elapsed());
    assert!(guard.is_lost());
    server.resume();
}

#[tokio::test]
async fn a_redis_restarted_empty_makes_the_guard_lost_at_the_next_renewal() {
    let (mut server, client) = setup().await;
    let ttl = ms(900);
    let guard = client.lease("amnesia").ttl(ttl).acquire().await.unwrap();
    let before = guard.fence();
    server.kill();
    server.restart().unwrap(); // no persistence: the lease is gone
    tokio::time::timeout(ttl, guard.lost())
        .await
        .expect("lost() did not fire after Redis forgot the lease");
    assert!(guard.is_lost());
    // The client reconnected by itself: a new lease works.
    let again = client
        .lease("amnesia")
        .wait(2 * SECOND)
        .acquire()
        .await
        .unwrap();
    assert!(
        again.fence() > before,
        "the fence went back with the empty Redis: {} after {before}",
        again.fence()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_guards_on_one_clients_timer_all_stay_held() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    // Different ttls, so that entries come due in every order.
    let mut guards = Vec::new();
    for i in 0..200u64 {
        let ttl = ms(150 + i % 7 * 10);
        guards.push(
            client
                .lease(format!("many:{i}"))
                .ttl(ttl)
                .acquire()
                .await
                .unwrap(),
        );
    }
    // Seven of the longest ttls: every guard renewed many times.
    let until = Instant::now() + ms(1500);
    while Instant::now() < until {
        assert!(
            guards.iter().all(|g| !g.is_lost()),
            "a guard lost its lease while the client was renewing it"
        );
        tokio::time::sleep(ms(20)).await;
    }
    for (i, g) in guards.iter().enumerate() {
        assert_eq!(
            get(&mut conn, &format!("many:{i}")).await.as_deref(),
            Some(g.token().as_str()),
            "lease {i} is no longer its guard's"
        );
    }
    for g in guards {
        g.release().await.unwrap();
    }
    assert_eq!(
        dbsize(&mut conn).await,
        200,
        "only the fence counters are left"
    );
}

#[tokio::test]
async fn a_released_guard_is_renewed_no_more() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let ttl = ms(90); // renewed every 30 ms while held
    let guard = client.lease("done").ttl(ttl).acquire().await.unwrap();
    eventually(5 * SECOND, "a first renewal", || {
        let mut c = conn.clone();
        async move { script_calls(&mut c).await >= 2 }
    })
    .await;
    guard.release().await.unwrap();
    let after_release = script_calls(&mut conn).await;
    // Absence can only be shown over a window: ten renewal periods.
    tokio::time::sleep(ms(300)).await;
    assert_eq!(
        script_calls(&mut conn).await,
        after_release,
        "the released guard was still being renewed"
    );
}
