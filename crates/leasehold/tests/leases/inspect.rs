//! status, list and detach: what the command line is built on.

use std::time::Duration;

use leasehold::{Holder, LeaseKind, LeaseStatus, Role};

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
    assert!(waiter.await.unwrap().unwrap() > s.fence);
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
    assert_eq!(client.status("detached").await.unwrap().fence, d.fence);
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

/// The permits of `s`, or a failure naming what it is instead.
fn permits(s: &LeaseStatus) -> (u32, &[Holder]) {
    match &s.kind {
        LeaseKind::Semaphore { limit, permits, .. } => (*limit, permits),
        other => panic!("{} is not a semaphore: {other:?}", s.display),
    }
}

#[tokio::test]
async fn status_of_a_semaphore_lists_its_live_permits_and_limit() {
    let (_server, client) = setup().await;
    let sem = client.semaphore("pool", 3);
    let long = sem.clone().ttl(30 * SECOND).acquire().await.unwrap();
    let short = sem
        .clone()
        .ttl(SECOND)
        .auto_renew(false)
        .acquire()
        .await
        .unwrap();

    let s = client.status("pool").await.unwrap();
    let (limit, holders) = permits(&s);
    assert_eq!(limit, 3);
    let mut tokens: Vec<&str> = holders.iter().map(|h| h.token.as_str()).collect();
    tokens.sort();
    let mut want = [long.token().prefix(), short.token().prefix()];
    want.sort();
    assert_eq!(tokens, want);
    // Soonest to expire first; the name is held as long as the last permit.
    assert!(holders[0].remaining.unwrap() <= SECOND);
    assert!(holders[1].remaining.unwrap() > 25 * SECOND);
    assert!(s.is_held());
    assert_eq!(s.holder.as_deref(), Some(long.token().prefix()));
    assert!(s.remaining.unwrap() > 25 * SECOND);
    let last_fence = long.fence().max(short.fence());
    assert_eq!(s.fence, last_fence);
    assert_eq!(
        s.holders().iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        [Role::Permit, Role::Permit]
    );

    // The short permit expires; it stays in the sorted set until the next
    // acquire reclaims it, but it is no holder any more.
    eventually(5 * SECOND, "the short permit to expire", || {
        let client = client.clone();
        async move { permits(&client.status("pool").await.unwrap()).1.len() == 1 }
    })
    .await;
    let s = client.status("pool").await.unwrap();
    assert_eq!(permits(&s).1[0].token, long.token().prefix());
    assert_eq!(permits(&s).0, 3);
    drop(short);
    long.release().await.unwrap();
    // The release of the last live permit takes the expired one with it,
    // whether or not the dropped guard's own release (in the background)
    // has run: the name reads as free at once.
    let s = client.status("pool").await.unwrap();
    assert_eq!(
        (&s.kind, s.is_held(), s.fence),
        (&LeaseKind::Lease, false, last_fence)
    );
}

#[tokio::test]
async fn status_of_a_rwlock_shows_its_readers_then_its_writer() {
    let (server, client) = setup().await;
    let lock = client.rwlock("config").ttl(20 * SECOND);
    let r1 = lock.read().acquire().await.unwrap();
    let r2 = lock.read().acquire().await.unwrap();
    let s = client.status("config").await.unwrap();
    let (writer, readers, writer_waiting) = rwlock_kind(&s);
    assert_eq!((writer, writer_waiting), (&None, &false));
    let mut tokens: Vec<&str> = readers.iter().map(|h| h.token.as_str()).collect();
    tokens.sort();
    let mut want = [r1.token().prefix(), r2.token().prefix()];
    want.sort();
    assert_eq!(tokens, want);
    assert!(readers.iter().all(|h| h.remaining.unwrap() > 15 * SECOND));
    assert!(s.is_held());

    // A writer that waits for the readers leaves its intent.
    let other = leasehold::Client::connect(&server.url()).await.unwrap();
    let writer = {
        let lock = other.rwlock("config").wait(30 * SECOND);
        tokio::spawn(async move { lock.write().acquire().await })
    };
    eventually(5 * SECOND, "the writer's intent to show", || {
        let client = client.clone();
        async move {
            matches!(
                client.status("config").await.unwrap().kind,
                LeaseKind::RwLock {
                    writer_waiting: true,
                    ..
                }
            )
        }
    })
    .await;
    r1.release().await.unwrap();
    r2.release().await.unwrap();
    let w = writer.await.unwrap().unwrap();

    let s = client.status("config").await.unwrap();
    let (writer, readers, writer_waiting) = rwlock_kind(&s);
    assert_eq!(writer.as_ref().unwrap().token, w.token().prefix());
    assert!(readers.is_empty() && !writer_waiting);
    assert_eq!(s.holder.as_deref(), Some(w.token().prefix()));
    assert!(s.remaining.unwrap() > 20 * SECOND);
    assert_eq!(s.fence, w.fence());
    assert_eq!(
        s.holders().iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        [Role::Writer]
    );
}

#[tokio::test]
async fn a_fair_lease_counts_its_queued_waiters() {
    let (server, client) = setup().await;
    let held = client.lease("printer").fair(true).acquire().await.unwrap();
    assert_eq!(client.status("printer").await.unwrap().fair_waiters, None);
    let other = leasehold::Client::connect(&server.url()).await.unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let lease = other.lease("printer").fair(true).wait(30 * SECOND);
            tokio::spawn(async move { lease.acquire().await.map(|g| g.fence()) })
        })
        .collect();
    eventually(5 * SECOND, "two queued waiters", || {
        let client = client.clone();
        async move { client.status("printer").await.unwrap().fair_waiters == Some(2) }
    })
    .await;
    let s = client.status("printer").await.unwrap();
    assert_eq!(s.kind, LeaseKind::Lease);
    assert_eq!(s.holder.as_deref(), Some(held.token().prefix()));
    drop(held);
    for w in waiters {
        w.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn list_tells_every_kind_apart() {
    let (_server, client) = setup().await;
    let lease = client.lease("k/lease").acquire().await.unwrap();
    let permit = client.semaphore("k/sem", 2).acquire().await.unwrap();
    let reader = client.rwlock("k/rw").read().acquire().await.unwrap();
    let writer = client.rwlock("{t}:k/rw").write().acquire().await.unwrap();
    client
        .semaphore("k/idle", 2)
        .acquire()
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let all = client.list("*").await.unwrap();
    let kinds: Vec<(&str, &str, usize, bool)> = all
        .iter()
        .map(|s| {
            let kind = match &s.kind {
                LeaseKind::Lease => "lease",
                LeaseKind::Semaphore { .. } => "semaphore",
                LeaseKind::RwLock { .. } => "rwlock",
                _ => "other",
            };
            (s.display.as_str(), kind, s.holders().len(), s.is_held())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("k/idle", "lease", 0, false),
            ("k/lease", "lease", 1, true),
            ("k/rw", "rwlock", 1, true),
            ("k/sem", "semaphore", 1, true),
            ("{t}:k/rw", "rwlock", 1, true),
        ]
    );
    assert_eq!(all[1].holder.as_deref(), Some(lease.token().prefix()));
    assert_eq!(all[2].holder.as_deref(), Some(reader.token().prefix()));
    assert_eq!(all[3].holder.as_deref(), Some(permit.token().prefix()));
    assert_eq!(all[4].holders()[0].0, Role::Writer);
    assert_eq!(all[4].holder.as_deref(), Some(writer.token().prefix()));
}

#[tokio::test]
async fn list_reads_many_names_in_batches() {
    let (_server, client) = setup().await;
    let mut guards = Vec::new();
    for i in 0..150 {
        let g = client
            .lease(format!("many/{i:03}"))
            .acquire()
            .await
            .unwrap();
        if i % 2 == 0 {
            guards.push(g);
        } else {
            g.release().await.unwrap();
        }
    }
    let all = client.list("many/*").await.unwrap();
    assert_eq!(all.len(), 150);
    for (i, s) in all.iter().enumerate() {
        assert_eq!(s.display, format!("many/{i:03}"));
        assert_eq!(s.is_held(), i % 2 == 0, "{}", s.display);
    }
    let held: Vec<&str> = all.iter().filter_map(|s| s.holder.as_deref()).collect();
    let want: Vec<&str> = guards.iter().map(|g| g.token().prefix()).collect();
    assert_eq!(held, want);
}

/// The holders a status reports for a read-write lock.
fn rwlock_kind(s: &LeaseStatus) -> (&Option<Holder>, &Vec<Holder>, &bool) {
    let LeaseKind::RwLock {
        writer,
        readers,
        writer_waiting,
        ..
    } = &s.kind
    else {
        panic!("not a rwlock: {s:?}")
    };
    (writer, readers, writer_waiting)
}
