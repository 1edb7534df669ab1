//! `ClientBuilder::replicas`: a guard only once replicas acknowledged the
//! grant (WAIT), on a master with a real replica.

use std::time::Duration;

use leasehold::{Client, ErrorKind};
use testkit::RedisServer;

use crate::common::{eventually, get, ms, numsub, raw};

/// A master and one replica of it, the replica streaming.
async fn master_and_replica() -> (RedisServer, RedisServer) {
    let master = RedisServer::start().expect("start the master");
    let replica = RedisServer::start_replica_of(&master).expect("start the replica");
    (master, replica)
}

async fn with_replicas(master: &RedisServer, count: u32, timeout: Duration) -> Client {
    Client::builder()
        .replicas(count, timeout)
        .connect(&master.url())
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_guard_comes_back_once_the_replica_has_the_grant() {
    let (master, replica) = master_and_replica().await;
    let client = with_replicas(&master, 1, Duration::from_secs(2)).await;
    let mut on_replica = raw(&replica).await;
    for i in 0..20 {
        let name = format!("jobs/{i}");
        let guard = client.lease(&name).acquire().await.unwrap();
        // The replica acknowledged the grant before the guard came back.
        assert!(
            get(&mut on_replica, &name).await.is_some(),
            "{name}'s grant is not on the replica when its guard is returned"
        );
        guard.release().await.unwrap();
    }
    // Semaphores and read-write locks wait for the replicas too.
    let permit = client.semaphore("pool", 2).acquire().await.unwrap();
    permit.release().await.unwrap();
    let writer = client.rwlock("config").write().acquire().await.unwrap();
    writer.release().await.unwrap();
}

#[tokio::test]
async fn a_grant_no_replica_acknowledged_is_given_back_with_an_error_that_says_so() {
    let (master, replica) = master_and_replica().await;
    let client = with_replicas(&master, 1, ms(200)).await;
    // A frozen replica acknowledges nothing. (WAIT on a connection that
    // wrote nothing would count it at once: this catches a check that
    // does not write first.)
    replica.pause();
    let err = client.lease("deploy").acquire().await.unwrap_err();
    replica.resume();
    let ErrorKind::ReplicasNotReached {
        name,
        acknowledged,
        needed,
        waited,
    } = err.kind()
    else {
        panic!("expected ReplicasNotReached, got {err}");
    };
    assert_eq!((name.as_str(), *acknowledged, *needed), ("deploy", 0, 1));
    assert_eq!(*waited, ms(200));
    let message = err.to_string();
    assert!(
        message.contains("0 of the 1 replicas") && message.contains("given back"),
        "{message}"
    );
    // Nothing left behind: the lease is free for the next taker.
    let mut conn = raw(&master).await;
    assert_eq!(get(&mut conn, "deploy").await, None);
    let plain = Client::connect(&master.url()).await.unwrap();
    let _held = plain.lease("deploy").try_acquire().await.unwrap();
}

#[tokio::test]
async fn more_replicas_than_there_are_fail_after_the_timeout() {
    let (master, _replica) = master_and_replica().await;
    // Long enough for the one replica to answer on a loaded machine.
    let client = with_replicas(&master, 2, ms(1500)).await;
    let started = std::time::Instant::now();
    let err = client.lease("report").try_acquire().await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ReplicasNotReached {
                acknowledged: 1,
                needed: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() >= ms(1500), "WAIT did not wait");
    let mut conn = raw(&master).await;
    assert_eq!(get(&mut conn, "report").await, None);
}

#[tokio::test]
async fn a_waiter_handed_the_lease_waits_for_the_replica_too() {
    let (master, replica) = master_and_replica().await;
    let client = with_replicas(&master, 1, Duration::from_secs(2)).await;
    let first = client.lease("printer").acquire().await.unwrap();
    let waiter = {
        let lease = client.lease("printer").wait(Duration::from_secs(10));
        tokio::spawn(async move { lease.acquire().await })
    };
    // The waiter listens (it is queued locally: the release hands the
    // lease to it).
    let conn = raw(&master).await;
    eventually(Duration::from_secs(5), "the waiter to listen", || {
        let mut conn = conn.clone();
        async move { numsub(&mut conn, "leasehold:{printer}:wake").await == 1 }
    })
    .await;
    let first_fence = first.fence();
    first.release().await.unwrap();
    let second = waiter.await.unwrap().unwrap();
    assert!(second.fence() > first_fence);
    let mut on_replica = raw(&replica).await;
    let token_on_replica = get(&mut on_replica, "printer").await;
    assert!(
        token_on_replica.is_some(),
        "the hand-over is not on the replica when the waiter's guard is returned"
    );
    second.release().await.unwrap();
}

#[tokio::test]
async fn redlock_refuses_replicas_before_connecting() {
    let err = Client::builder()
        .replicas(1, ms(100))
        .redlock([
            "redis://127.0.0.1:1",
            "redis://127.0.0.1:2",
            "redis://127.0.0.1:3",
        ])
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Unsupported { .. }), "{err}");
}
