//! Kleppmann's restart: a master that held the lease restarts empty and
//! lets a second quorum form while the first holder's lease is valid.
//! Plain Redlock overlaps there; the fence is what saves the resource.
//! Delayed past the ttl, or with `appendfsync always`, there is no
//! overlap at all.

use std::time::Duration;

use leasehold::Guard;
use testkit::{RedisServer, ServerOptions};
use tokio::time::Instant;

use crate::common::*;

const NAME: &str = "kleppmann";

fn restart(server: &mut RedisServer) {
    tokio::task::block_in_place(|| server.restart()).expect("restart redis-server");
}

fn kill(server: &mut RedisServer) {
    tokio::task::block_in_place(|| server.kill());
}

/// Client 1 takes the lease on A, B, C while D and E are down, auto
/// renewal off (its validity is what its acquire proved, no more).
async fn first_holder(servers: &mut [RedisServer], ttl: Duration) -> (leasehold::Client, Guard) {
    kill(&mut servers[3]);
    kill(&mut servers[4]);
    let c1 = client(servers).await;
    let g1 = c1
        .lease(NAME)
        .ttl(ttl)
        .auto_renew(false)
        .try_acquire()
        .await
        .unwrap();
    assert_eq!(
        holding(&servers[..3], NAME, g1.token().as_str()).await,
        3,
        "client 1 holds on A, B and C"
    );
    (c1, g1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarting_empty_lets_a_second_quorum_in_and_the_fence_refuses_the_first() {
    let store = FencedStore::start().await;
    let mut servers = masters(5).await;
    let ttl = Duration::from_secs(30);
    let (_c1, g1) = first_holder(&mut servers, ttl).await;
    assert!(store.write(&g1, "client 1, early").await);

    // C forgets at once; D and E come back (empty, they never saw it).
    restart(&mut servers[2]);
    restart(&mut servers[3]);
    restart(&mut servers[4]);
    assert_eq!(get(&servers[2], NAME).await, None, "C restarted empty");

    let c2 = client(&servers).await;
    let g2 = c2
        .lease(NAME)
        .ttl(ttl)
        .auto_renew(false)
        .try_acquire()
        .await
        .expect("client 2 takes a quorum of C, D and E");
    assert_eq!(holding(&servers[2..], NAME, g2.token().as_str()).await, 3);
    assert_eq!(holding(&servers[..2], NAME, g1.token().as_str()).await, 2);

    // (a) The overlap happened and is detected: two guards claim the
    // lease at the same instant (the checker's C2).
    assert!(
        both_hold(&g1, &g2),
        "expected the overlap plain Redlock allows here: g1 lost {} remaining {:?}, g2 lost {} remaining {:?}",
        g1.is_lost(),
        g1.remaining(),
        g2.is_lost(),
        g2.remaining()
    );
    // (c) The second holder's fence is higher, never equal or lower: C's
    // counter restarted from its clock floor, above what it handed out.
    assert!(
        g2.fence() > g1.fence(),
        "fence of client 2 {} not above client 1's {}",
        g2.fence(),
        g1.fence()
    );
    // (b) The fenced store takes client 2's write and refuses client 1's
    // late one.
    assert!(store.write(&g2, "client 2").await);
    assert!(
        !store.write(&g1, "client 1, late").await,
        "the store took a write of the overlapped holder"
    );
    assert_eq!(store.value().await.as_deref(), Some("client 2"));
    g2.release().await.unwrap();
}

/// Tries to take the lease for client 2 until it gets it or `within`
/// passes; every success must come after `g1` stopped claiming it.
async fn second_holder_never_overlaps(
    c2: &leasehold::Client,
    g1: &Guard,
    ttl: Duration,
    within: Duration,
    mut before_each: impl FnMut(Instant),
) -> (Guard, usize) {
    let lease = c2.lease(NAME).ttl(ttl).auto_renew(false);
    let deadline = Instant::now() + within;
    let mut refused = 0;
    loop {
        before_each(Instant::now());
        match lease.try_acquire().await {
            Ok(g2) => {
                assert!(
                    !both_hold(g1, &g2),
                    "overlap: client 2 holds while client 1's lease is valid ({:?} left)",
                    g1.remaining()
                );
                assert!(g1.is_lost());
                return (g2, refused);
            }
            Err(e) => {
                assert!(
                    e.is_held()
                        || matches!(e.kind(), leasehold::ErrorKind::QuorumNotReached { .. }),
                    "{e}"
                );
                refused += 1;
            }
        }
        assert!(Instant::now() < deadline, "client 2 never got the lease");
        tokio::time::sleep(ms(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_delayed_past_the_ttl_does_not_overlap() {
    let store = FencedStore::start().await;
    let mut servers = masters(5).await;
    let ttl = 2 * SECOND;
    let (_c1, g1) = first_holder(&mut servers, ttl).await;
    let took = Instant::now();
    assert!(store.write(&g1, "client 1").await);

    // C dies and stays down for longer than the ttl; D and E are back.
    kill(&mut servers[2]);
    restart(&mut servers[3]);
    restart(&mut servers[4]);
    let c2 = client(&servers).await;
    let (g2, refused) = second_holder_never_overlaps(&c2, &g1, ttl, 3 * ttl, |now| {
        if now >= took + ttl && servers[2].pid().is_none() {
            restart(&mut servers[2]);
        }
    })
    .await;
    assert!(
        refused > 0,
        "client 2 was never refused while client 1 held"
    );
    assert!(g2.fence() > g1.fence());
    assert!(store.write(&g2, "client 2").await);
    assert!(!store.write(&g1, "client 1, late").await);
    g2.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_appendfsync_always_does_not_overlap() {
    let mut servers = masters_with(
        5,
        ServerOptions {
            aof: true,
            ..Default::default()
        },
    )
    .await;
    let ttl = 2 * SECOND;
    let (_c1, g1) = first_holder(&mut servers, ttl).await;

    // C restarts at once, and comes back with client 1's key and its
    // fencing counter.
    restart(&mut servers[2]);
    restart(&mut servers[3]);
    restart(&mut servers[4]);
    assert_eq!(
        get(&servers[2], NAME).await.as_deref(),
        Some(g1.token().as_str()),
        "C replayed its append-only file"
    );
    let c2 = client(&servers).await;
    let (g2, refused) = second_holder_never_overlaps(&c2, &g1, ttl, 3 * ttl, |_| {}).await;
    assert!(
        refused > 0,
        "client 2 was never refused while client 1 held"
    );
    assert!(g2.fence() > g1.fence());
    g2.release().await.unwrap();
}

/// With renewal on, the overlapped holder finds out at its next renewal
/// once it reaches the restarted masters again: only two masters (A, B)
/// still have its token, too few to extend, so `lost()` fires; the overlap
/// lasts at most one renewal period (ttl/3) from then, and the fence
/// covers that window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overlapped_holder_notices_at_its_next_renewal() {
    let mut servers = masters(5).await;
    // Three restarts, client 1's reconnections and a second client fit in
    // the lease's validity even on a loaded machine.
    let ttl = 6 * SECOND;
    kill(&mut servers[3]);
    kill(&mut servers[4]);
    let c1 = client(&servers).await;
    let g1 = c1.lease(NAME).ttl(ttl).try_acquire().await.unwrap();
    restart(&mut servers[2]);
    restart(&mut servers[3]);
    restart(&mut servers[4]);
    // Client 1 can know what C, D and E hold only once it is connected to
    // them again (it retries with a growing pause): from then on, its
    // renewal (or the renewal's retry) finds the lease gone.
    let mut watching = Vec::new();
    for s in &servers[2..] {
        watching.push(raw(s).await);
    }
    eventually(10 * SECOND, "client 1 to reconnect to C, D and E", || {
        let watching = watching.clone();
        async move {
            for mut conn in watching {
                let list: String = redis::cmd("CLIENT")
                    .arg("LIST")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                // This connection, and client 1's.
                if list.lines().count() != 2 {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let took = Instant::now();
    let c2 = client(&servers).await;
    let g2 = c2
        .lease(NAME)
        .ttl(ttl)
        .try_acquire()
        .await
        .expect("client 2 takes a quorum of C, D and E");
    assert!(both_hold(&g1, &g2), "the overlap plain Redlock allows");
    assert!(g2.fence() > g1.fence());
    tokio::time::timeout(ttl / 3 + 2 * SLACK, g1.lost())
        .await
        .expect("client 1 did not notice the loss at its first renewal");
    assert!(took.elapsed() < ttl / 3 + 2 * SLACK + SLACK);
    assert!(g1.remaining().is_zero());
    assert!(!g2.is_lost(), "client 2 lost a lease it holds on C, D, E");
    assert_eq!(holding(&servers[2..], NAME, g2.token().as_str()).await, 3);
    g2.release().await.unwrap();
}
