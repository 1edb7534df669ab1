//! status, list and detach: what the command line is built on.

use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn status_shows_holder_ttl_fence_and_waiting_clients() {
    let (server, client) = setup().await;
    let free = client.status("nobody").await.unwrap();
    assert!(!free.is_held());
    assert_eq!(
        (free.fence, free.remaining, free.waiting_clients),
        (0, None, 0)
    );

    let guard = client.lease("somebody").acquire().await.unwrap();
    let other = leasehold::Client::connect(&server.url()).await.unwrap();
    let waiter = {
        let lease = other.lease("somebody").wait(Duration::from_secs(30));
        tokio::spawn(async move { lease.acquire().await.map(|g| g.fence()) })
    };
    eventually(5 * SECOND, "the waiting client to show", || {
        let client = client.clone();
        async move { client.status("somebody").await.unwrap().waiting_clients == 1 }
    })
    .await;
    let s = client.status("somebody").await.unwrap();
    assert_eq!(s.holder.as_deref(), Some(guard.token().prefix()));
    assert!(s.remaining.is_some_and(|r| r > Duration::from_secs(25)));
    assert_eq!(s.fence, guard.fence());
    guard.release().await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), 2);
}

#[tokio::test]
async fn list_finds_names_by_pattern_including_tagged_ones() {
    let (_server, client) = setup().await;
    for name in ["jobs/a", "jobs/b", "{tenant:1}:jobs", "other"] {
        client
            .lease(name)
            .acquire()
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
    let held = client.lease("jobs/b").acquire().await.unwrap();
    let all: Vec<String> = client
        .list("*")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.display)
        .collect();
    assert_eq!(all, ["jobs/a", "jobs/b", "other", "{tenant:1}:jobs"]);
    let jobs = client.list("jobs/*").await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(!jobs[0].is_held() && jobs[1].is_held());
    let tagged = client.list("{tenant:*").await.unwrap();
    assert_eq!(tagged.len(), 1);
    drop(held);
}

#[tokio::test]
async fn a_detached_lease_stays_held_with_its_ttl_until_released_by_token() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let lease = client.lease("detached").ttl(Duration::from_secs(20));
    let d = lease.acquire().await.unwrap().detach();
    assert_eq!(d.fence, 1);
    let pttl: i64 = redis::cmd("PTTL")
        .arg("detached")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        pttl > 0 && pttl <= 20_000,
        "a detached lease keeps its TTL: {pttl}"
    );
    assert!(lease.try_acquire().await.unwrap_err().is_held());
    assert!(lease.release_by_token(&d.token).await.unwrap());
    assert_eq!(get(&mut conn, "detached").await, None);
}
