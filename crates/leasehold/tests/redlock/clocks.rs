//! Wall clocks that jump (libfaketime): on one master of five the
//! quorum still excludes; on a single server the lease ends early (a
//! documented limit) and only the fence protects the resource.

use std::time::Duration;

use testkit::{RedisServer, ServerOptions};
use tokio::time::Instant;

use crate::common::*;

const NAME: &str = "clock";

fn faketime() -> ServerOptions {
    ServerOptions {
        faketime: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_jump_on_one_master_of_five_lets_nobody_else_in() {
    let mut servers = masters_with(1, faketime()).await;
    servers.extend(masters(4).await);
    let (c1, c2) = (client(&servers).await, client(&servers).await);
    let ttl = 3 * SECOND;
    let g1 = c1
        .lease(NAME)
        .ttl(ttl)
        .auto_renew(false)
        .try_acquire()
        .await
        .unwrap();
    assert_eq!(holding(&servers, NAME, g1.token().as_str()).await, 5);

    // Master 0's clock jumps past the ttl: its copy of the key expires.
    servers[0].shift_clock(10 * ttl.as_secs() as i64).unwrap();
    eventually(SECOND, "the key to expire on the jumped master", || async {
        get(&servers[0], NAME).await.is_none()
    })
    .await;

    // Client 2 gets master 0, never a quorum, while client 1 holds the
    // other four.
    let other = c2.lease(NAME).ttl(ttl).auto_renew(false);
    let mut refused = 0;
    while g1.remaining() > ttl / 2 {
        let err = other.try_acquire().await.expect_err("a second holder");
        assert!(err.is_held(), "{err}");
        refused += 1;
        tokio::time::sleep(ms(20)).await;
    }
    assert!(refused > 0);
    assert!(!g1.is_lost());
    assert_eq!(holding(&servers[1..], NAME, g1.token().as_str()).await, 4);

    // Fences still go up: the jumped master draws from its clock floor,
    // ahead of the others, and the raise carries that to a majority.
    let f1 = g1.fence();
    g1.release().await.unwrap();
    let g2 = other.try_acquire().await.unwrap();
    let f2 = g2.fence();
    assert!(f2 > f1, "{f2} after {f1}");
    g2.release().await.unwrap();
    // Its clock put right again (a step back on one master): still up.
    servers[0].shift_clock(0).unwrap();
    let g3 = other.try_acquire().await.unwrap();
    assert!(g3.fence() > f2, "{} after {f2}", g3.fence());
    g3.release().await.unwrap();
}

/// The harder case: the holder got a bare quorum (two masters were still
/// held by somebody else when it asked), so one master losing its copy
/// would leave it on two of five. It takes the other two as soon as they
/// are free (its renewal asks the masters that refused it again), and a
/// clock jump on one master then lets nobody in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_on_a_bare_quorum_takes_the_rest_so_a_clock_jump_lets_nobody_in() {
    let mut servers = masters_with(1, faketime()).await;
    servers.extend(masters(4).await);
    let (c1, c2) = (client(&servers).await, client(&servers).await);
    // Masters 3 and 4 still hold a previous holder's copy, for a moment.
    for s in &servers[3..] {
        redis::cmd("SET")
            .arg(NAME)
            .arg("previous")
            .arg("PX")
            .arg(300)
            .exec_async(&mut raw(s).await)
            .await
            .unwrap();
    }
    let ttl = 3 * SECOND;
    let g1 = c1.lease(NAME).ttl(ttl).try_acquire().await.unwrap();
    let token = g1.token().as_str().to_owned();
    assert!(holding(&servers, NAME, &token).await >= 3);
    // Within a renewal period (ttl/3) of their copies expiring.
    eventually(
        3 * SECOND,
        "the holder to hold all five masters",
        || async { holding(&servers, NAME, &token).await == 5 },
    )
    .await;

    servers[0].shift_clock(10 * ttl.as_secs() as i64).unwrap();
    eventually(SECOND, "the key to expire on the jumped master", || async {
        get(&servers[0], NAME).await.is_none()
    })
    .await;
    let other = c2.lease(NAME).ttl(ttl).auto_renew(false);
    for _ in 0..10 {
        let err = other.try_acquire().await.expect_err("a second holder");
        assert!(err.is_held(), "{err}");
        tokio::time::sleep(ms(20)).await;
    }
    assert!(!g1.is_lost());
    g1.release().await.unwrap();
    servers[0].shift_clock(0).unwrap();
}

/// The documented limit of one server: its clock jumping forward ends
/// the lease early, and a second holder gets it while the first still
/// believes it holds. The fence keeps the first holder's late write out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_jump_on_a_single_server_ends_the_lease_early_and_the_fence_refuses_the_stale_write()
 {
    let store = FencedStore::start().await;
    let server = tokio::task::spawn_blocking(|| RedisServer::start_with(faketime()))
        .await
        .unwrap()
        .expect("start redis-server under faketime (apt-get install faketime)");
    let c1 = leasehold::Client::connect(&server.url()).await.unwrap();
    let c2 = leasehold::Client::connect(&server.url()).await.unwrap();
    let ttl = Duration::from_secs(10);
    let g1 = c1
        .lease(NAME)
        .ttl(ttl)
        .auto_renew(false)
        .try_acquire()
        .await
        .unwrap();
    assert!(store.write(&g1, "client 1").await);
    let other = c2.lease(NAME).ttl(ttl).auto_renew(false);
    assert!(other.try_acquire().await.unwrap_err().is_held());

    server.shift_clock(2 * ttl.as_secs() as i64).unwrap();
    let jumped = Instant::now();
    let g2 = loop {
        match other.try_acquire().await {
            Ok(g) => break g,
            Err(e) => assert!(e.is_held(), "{e}"),
        }
        assert!(jumped.elapsed() < SECOND, "the jump did not end the lease");
        tokio::time::sleep(ms(5)).await;
    };
    // Two holders: the limit of one server whose clock jumps.
    assert!(both_hold(&g1, &g2), "expected the early expiry to overlap");
    assert!(g2.fence() > g1.fence());
    assert!(store.write(&g2, "client 2").await);
    assert!(
        !store.write(&g1, "client 1, late").await,
        "the store took the stale holder's write"
    );
    assert_eq!(store.value().await.as_deref(), Some("client 2"));
    g2.release().await.unwrap();
    server.shift_clock(0).unwrap();
}
