//! Only the holder of the token can extend or release a lease.

use std::time::Duration;

use leasehold::Token;

use crate::common::*;

#[tokio::test]
async fn a_stranger_can_neither_release_nor_extend() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let lease = client.lease("owned").ttl(ms(2_000)).auto_renew(false);
    let guard = lease.acquire().await.unwrap();
    let stranger = Token::random();

    assert!(!lease.release_by_token(&stranger).await.unwrap());
    assert!(
        !lease
            .clone()
            .ttl(Duration::from_secs(3600))
            .extend_by_token(&stranger)
            .await
            .unwrap()
    );
    assert_eq!(
        get(&mut conn, "owned").await.as_deref(),
        Some(guard.token().as_str())
    );
    let pttl: i64 = redis::cmd("PTTL")
        .arg("owned")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        pttl > 0 && pttl <= 2_000,
        "pttl {pttl}: a stranger's extend must not stick"
    );

    // The owner can.
    assert!(lease.extend_by_token(guard.token()).await.unwrap());
    guard.release().await.unwrap();
    assert_eq!(get(&mut conn, "owned").await, None);
}

#[tokio::test]
async fn an_expired_holder_cannot_touch_the_next_holders_lease() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let lease = client.lease("succession").ttl(ms(150)).auto_renew(false);
    let old = lease.acquire().await.unwrap();
    let old_token = *old.token();

    // The old holder's TTL runs out (it did not renew) ...
    eventually(2 * SECOND, "the old lease to expire", || {
        let mut c = conn.clone();
        async move { get(&mut c, "succession").await.is_none() }
    })
    .await;
    old.lost().await; // ... and its guard says so.
    assert!(old.is_lost());
    assert_eq!(old.remaining(), Duration::ZERO);

    // Someone else takes it.
    let new = client
        .lease("succession")
        .ttl(ms(5_000))
        .try_acquire()
        .await
        .unwrap();
    assert!(new.fence() > old.fence());

    // The old holder can neither extend nor release the new holder's lease.
    assert!(old.extend().await.unwrap_err().is_lost());
    assert!(!lease.release_by_token(&old_token).await.unwrap());
    let err = old.release().await.unwrap_err();
    assert!(err.is_lost(), "{err}");
    assert_eq!(
        get(&mut conn, "succession").await.as_deref(),
        Some(new.token().as_str())
    );
    new.release().await.unwrap();
}

#[tokio::test]
async fn reentry_holds_until_the_last_guard_lets_go() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let outer = client.lease("reentrant").acquire().await.unwrap();
    let inner = outer.reenter();
    assert_eq!(inner.fence(), outer.fence());
    inner.release().await.unwrap();
    assert_eq!(
        get(&mut conn, "reentrant").await.as_deref(),
        Some(outer.token().as_str())
    );
    let again = outer.reenter();
    drop(again);
    assert!(
        client
            .lease("reentrant")
            .try_acquire()
            .await
            .unwrap_err()
            .is_held()
    );
    outer.release().await.unwrap();
    assert_eq!(get(&mut conn, "reentrant").await, None);
}
