//! Semaphores: never more than K holders, expired permits reclaimed,
//! expiry by the server's clock.

use std::time::Duration;

use leasehold::ErrorKind;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_tasks_never_exceed_four_permits_and_reach_four() {
    let (server, client) = setup().await;
    let other = leasehold::Client::connect(&server.url()).await.unwrap();
    let sems = (0..32)
        .map(|i| {
            if i % 2 == 0 { &client } else { &other }
                .semaphore("pool", 4)
                .wait(Duration::from_secs(60))
        })
        .collect();
    let (counts, peak) = contend(sems, 2_000, Duration::ZERO).await;
    assert_eq!(counts.iter().sum::<u32>(), 2_000);
    assert!(peak <= 4, "{peak} holders of a 4-permit semaphore");
    assert_eq!(peak, 4, "the semaphore never filled up");
    let mut conn = raw(&server).await;
    assert_eq!(dbsize(&mut conn).await, 1, "only the fence counter stays");
}

#[tokio::test]
async fn a_frozen_holders_permit_is_reclaimed_after_its_ttl() {
    let (_server, client) = setup().await;
    let sem = client.semaphore("frozen", 2).ttl(ms(200));
    // Two holders that stop renewing (frozen processes).
    let a = sem.clone().auto_renew(false).acquire().await.unwrap();
    let b = sem.clone().auto_renew(false).acquire().await.unwrap();
    assert!(sem.try_acquire().await.unwrap_err().is_held());
    // A waiter gets in once a frozen permit expires, without any release.
    let got = tokio::time::timeout(2 * SECOND, sem.clone().wait(2 * SECOND).acquire())
        .await
        .expect("the expired permit was not reclaimed")
        .unwrap();
    assert!(got.fence() > a.fence().max(b.fence()));
    // The frozen holders learn they lost their permits and cannot extend them.
    a.lost().await;
    assert!(a.extend().await.unwrap_err().is_lost());
    assert!(b.release().await.unwrap_err().is_lost());
}

#[tokio::test]
async fn permits_expire_by_the_servers_clock() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let permit = client
        .semaphore("clock", 3)
        .ttl(Duration::from_secs(3600))
        .acquire()
        .await
        .unwrap();
    let (secs, micros): (String, String) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let server_ms = secs.parse::<i64>().unwrap() * 1000 + micros.parse::<i64>().unwrap() / 1000;
    let score: f64 = redis::cmd("ZSCORE")
        .arg("leasehold:{clock}:permits")
        .arg(permit.token().as_str())
        .query_async(&mut conn)
        .await
        .unwrap();
    // The client sends only a duration; the expiry is the server's now + ttl.
    let delta = score as i64 - (server_ms + 3_600_000);
    assert!(
        delta.abs() < 1_000,
        "expiry {score} is not server time + ttl ({delta} ms off)"
    );
    let pttl: i64 = redis::cmd("PTTL")
        .arg("leasehold:{clock}:permits")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        pttl > 3_590_000,
        "the permits key carries the TTL of its last permit: {pttl}"
    );
    permit.release().await.unwrap();
}

#[tokio::test]
async fn a_different_limit_is_refused_while_permits_are_held() {
    let (_server, client) = setup().await;
    let held = client.semaphore("limits", 4).acquire().await.unwrap();
    let err = client
        .semaphore("limits", 5)
        .try_acquire()
        .await
        .unwrap_err();
    match err.kind() {
        ErrorKind::InvalidArgument { what, .. } => assert_eq!(*what, "limit"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("limit 4"), "{err}");
    let zero = client
        .semaphore("limits", 0)
        .try_acquire()
        .await
        .unwrap_err();
    assert!(zero.to_string().contains("at least 1"), "{zero}");
    held.release().await.unwrap();
    // Once nobody holds a permit, the limit may change.
    client
        .semaphore("limits", 5)
        .try_acquire()
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_waiter_of_another_client() {
    let (server, client) = setup().await;
    let other = leasehold::Client::connect(&server.url()).await.unwrap();
    let sem = client.semaphore("woken", 1);
    let holder = sem.acquire().await.unwrap();
    let first = holder.fence();
    let waiter = {
        let s = other
            .semaphore("woken", 1)
            .backoff(Duration::from_secs(120), Duration::from_secs(120))
            .wait(Duration::from_secs(120));
        tokio::spawn(async move { s.acquire().await.map(|g| g.fence()) })
    };
    let conn = raw(&server).await;
    eventually(5 * SECOND, "the waiter to subscribe", || {
        let mut c = conn.clone();
        async move { numsub(&mut c, "leasehold:{woken}:wake").await == 1 }
    })
    .await;
    holder.release().await.unwrap();
    let fence = tokio::time::timeout(SECOND, waiter)
        .await
        .expect("not woken by the release")
        .unwrap();
    assert!(fence.unwrap() > first);
}

#[tokio::test]
async fn issue16_the_last_live_permit_takes_the_expired_ones_and_the_limit_with_it() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    for fair in [false, true] {
        let name = format!("swept-{fair}");
        let sem = client.semaphore(&name, 3).fair(fair);
        let live = sem.clone().ttl(30 * SECOND).acquire().await.unwrap();
        let expired = sem
            .clone()
            .ttl(ms(300))
            .auto_renew(false)
            .acquire()
            .await
            .unwrap();
        // Past its expiry by the server's clock (what the scripts go by).
        eventually(5 * SECOND, "the short permit to expire", || {
            let (client, name) = (client.clone(), name.clone());
            async move {
                match client.status(&name).await.unwrap().kind {
                    leasehold::LeaseKind::Semaphore { permits, .. } => permits.len() == 1,
                    other => panic!("{name} is not a semaphore: {other:?}"),
                }
            }
        })
        .await;
        // Its guard still lives: nobody has given the expired permit back.
        live.release().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("*{{{name}}}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            keys,
            [format!("leasehold:{{{name}}}:fence")],
            "fair: {fair}: the release of the last live permit left more than the fence"
        );
        // The limit may change now.
        let other = client
            .semaphore(&name, 5)
            .fair(fair)
            .try_acquire()
            .await
            .unwrap();
        assert!(expired.release().await.unwrap_err().is_lost());
        other.release().await.unwrap();
    }
}
