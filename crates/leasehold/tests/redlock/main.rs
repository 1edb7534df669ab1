//! Redlock over independent masters: quorums, frozen and restarted
//! masters, fences that never go back.

use std::time::Duration;

use leasehold::{Client, ErrorKind};
use testkit::RedisServer;
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` independent masters.
async fn masters(n: usize) -> Vec<RedisServer> {
    tokio::task::spawn_blocking(move || RedisServer::start_many(n))
        .await
        .unwrap()
        .expect("start redis-server (apt-get install redis-server)")
}

async fn client(servers: &[RedisServer]) -> Client {
    Client::builder()
        .redlock(servers.iter().map(|s| s.url()))
        .node_timeout(ms(100))
        .connect()
        .await
        .expect("connect to the masters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_frozen_costs_nothing_a_majority_frozen_fails_fast() {
    let servers = masters(5).await;
    let c = client(&servers).await;
    let lease = c.lease("nightly").ttl(Duration::from_secs(5));
    let g = lease.try_acquire().await.unwrap();
    let f1 = g.fence();
    g.release().await.unwrap();

    servers[3].pause();
    servers[4].pause();
    let t = Instant::now();
    let g = lease.try_acquire().await.unwrap();
    assert!(
        t.elapsed() < ms(100),
        "waited for the frozen masters: {:?}",
        t.elapsed()
    );
    assert!(g.fence() > f1);
    g.release().await.unwrap();

    servers[2].pause();
    let t = Instant::now();
    let err = lease.try_acquire().await.unwrap_err();
    assert!(t.elapsed() < ms(100) + ms(150), "{:?}", t.elapsed());
    match err.kind() {
        ErrorKind::QuorumNotReached {
            needed, got, nodes, ..
        } => {
            assert_eq!((*needed, *got, nodes.len()), (3, 2, 3), "{err}");
        }
        _ => panic!("{err}"),
    }
    for s in &servers[2..] {
        s.resume();
    }
}
