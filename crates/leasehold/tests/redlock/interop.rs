//! rslock (a peer Redlock client) and leasehold on the same masters
//! exclude each other on one name, both ways: the key on each master is
//! the name holding the token with a PX ttl, in both.

use std::time::Duration;

use rslock::{LockError, LockManager};

use crate::common::*;

const NAME: &str = "shared/job";

fn rslock(servers: &[testkit::RedisServer]) -> LockManager {
    let mut rl = LockManager::new(urls(servers));
    // One try, so a refusal shows at once instead of being retried.
    rl.set_retry(1, ms(10));
    rl
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rslock_and_leasehold_exclude_each_other_on_one_name() {
    for n in [3, 5] {
        let servers = masters(n).await;
        let rl = rslock(&servers);
        let c = client(&servers).await;
        let lease = c.lease(NAME).ttl(Duration::from_secs(10));
        let ttl = Duration::from_secs(10);

        // rslock holds: leasehold is refused.
        let theirs = rl
            .lock(NAME.as_bytes(), ttl)
            .await
            .expect("rslock takes it");
        let err = lease.try_acquire().await.unwrap_err();
        assert!(err.is_held(), "n = {n}: {err}");
        rl.unlock(&theirs).await;
        // Released: leasehold takes it.
        let ours = lease.try_acquire().await.unwrap();
        assert_eq!(holding(&servers, NAME, ours.token().as_str()).await, n);

        // leasehold holds: rslock is refused.
        match rl.lock(NAME.as_bytes(), ttl).await {
            Err(LockError::Unavailable) => {}
            Ok(_) => panic!("n = {n}: rslock took a name leasehold holds"),
            Err(e) => panic!("n = {n}: {e}"),
        }
        assert_eq!(
            holding(&servers, NAME, ours.token().as_str()).await,
            n,
            "rslock's failed attempt released leasehold's hold"
        );
        ours.release().await.unwrap();
        // Released: rslock takes it.
        let theirs = rl
            .lock(NAME.as_bytes(), ttl)
            .await
            .expect("rslock takes it after the release");
        rl.unlock(&theirs).await;
    }
}

/// A hold on a bare majority is enough to exclude leasehold: the key set
/// as rslock sets it (SET NX PX) on 3 of 5 masters keeps leasehold out,
/// and leasehold's refused attempt gives back what it got on the other 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rslock_hold_on_a_bare_majority_keeps_leasehold_out() {
    let servers = masters(5).await;
    let c = client(&servers).await;
    let ttl = Duration::from_secs(10);
    let theirs = {
        let mut grant = Vec::new();
        for s in &servers[..3] {
            // SET NX PX as rslock does, on three of five.
            let ok: Option<String> = redis::cmd("SET")
                .arg(NAME)
                .arg("rslock-token")
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut raw(s).await)
                .await
                .unwrap();
            grant.push(ok.is_some());
        }
        grant
    };
    assert_eq!(theirs, [true, true, true]);
    let err = c.lease(NAME).ttl(ttl).try_acquire().await.unwrap_err();
    assert!(err.is_held(), "{err}");
    // leasehold's refused attempt gave back the two it got.
    for s in &servers[3..] {
        assert_eq!(get(s, NAME).await, None);
    }
    for s in &servers[..3] {
        assert_eq!(get(s, NAME).await.as_deref(), Some("rslock-token"));
    }
}
