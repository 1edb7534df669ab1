//! Connecting to the masters: each once, a minority may be down.

use leasehold::ErrorKind;
use tokio::time::Instant;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_given_twice_is_refused() {
    let servers = masters(3).await;
    let mut given = urls(&servers);
    given.push(given[1].clone());
    let err = connect(given).await.unwrap_err();
    match err.kind() {
        ErrorKind::InvalidArgument { why, .. } => {
            assert!(why.contains("twice"), "{err}");
            assert!(why.contains(&servers[1].port().to_string()), "{err}");
        }
        _ => panic!("expected InvalidArgument, got: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_down_at_connect_is_fine_a_majority_is_not() {
    let mut servers = masters(5).await;
    servers[3].kill();
    servers[4].kill();
    let c = client(&servers).await;
    let g = c
        .lease("up")
        .ttl(5 * SECOND)
        .try_acquire()
        .await
        .expect("acquire with 3 of 5 masters");
    assert_eq!(holding(&servers[..3], "up", g.token().as_str()).await, 3);
    g.release().await.unwrap();

    // The two come back: the client reaches them in the background, and
    // grants are then made on all five.
    servers[3].restart().unwrap();
    servers[4].restart().unwrap();
    let lease = c.lease("up").ttl(5 * SECOND);
    eventually(15 * SECOND, "grants on all five masters", || async {
        let g = lease.try_acquire().await.unwrap();
        let n = holding(&servers, "up", g.token().as_str()).await;
        g.release().await.unwrap();
        n == 5
    })
    .await;

    servers[2].kill();
    servers[3].kill();
    servers[4].kill();
    let t = Instant::now();
    let err = connect(urls(&servers)).await.unwrap_err();
    assert_eq!(quorum_counts(&err), ("connect", 3, 2, 3), "{err}");
    assert!(t.elapsed() < 2 * SECOND + SLACK, "{:?}", t.elapsed());
    // And the client connected before fails its acquires the same way
    // (decided as soon as the three failures are in, so the grants of the
    // two live masters may not be counted yet), leaving nothing behind.
    let err = lease.try_acquire().await.unwrap_err();
    let (doing, needed, got, failed) = quorum_counts(&err);
    assert_eq!((doing, needed, failed), ("acquire", 3, 3), "{err}");
    assert!(got <= 2, "{err}");
    eventually(
        SECOND,
        "the live masters to give back their grants",
        || async {
            get(&servers[0], "up").await.is_none() && get(&servers[1], "up").await.is_none()
        },
    )
    .await;
}
