//! Self-renewal, and the loss signal when renewal cannot succeed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::common::*;

#[tokio::test]
async fn a_guard_held_for_five_ttls_stays_held_and_exclusive() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let ttl = ms(300);
    let guard = client.lease("renewed").ttl(ttl).acquire().await.unwrap();
    let other = leasehold::Client::connect(&server.url()).await.unwrap();
    let rival = other.lease("renewed").ttl(ttl);
    let until = Instant::now() + 5 * ttl;
    let mut tries = 0;
    while Instant::now() < until {
        let err = rival.try_acquire().await.unwrap_err();
        assert!(err.is_held(), "rival got in after {tries} tries: {err}");
        tries += 1;
        tokio::time::sleep(ms(20)).await;
    }
    assert!(tries > 20);
    assert!(!guard.is_lost());
    assert!(guard.remaining() > Duration::ZERO);
    assert_eq!(
        get(&mut conn, "renewed").await.as_deref(),
        Some(guard.token().as_str())
    );
    guard.release().await.unwrap();
}

async fn lost_within(ttl: Duration, behind_the_back: &[&str]) {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let guard = client.lease("doomed").ttl(ttl).acquire().await.unwrap();
    assert!(!guard.is_lost());
    let started = Instant::now();
    let mut cmd = redis::cmd(behind_the_back[0]);
    for a in &behind_the_back[1..] {
        cmd.arg(*a);
    }
    let () = cmd.query_async(&mut conn).await.unwrap();
    // Renewal runs every ttl/3, so the loss is seen within about that long.
    tokio::time::timeout(ttl / 3 + ms(150), guard.lost())
        .await
        .unwrap_or_else(|_| panic!("lost() did not fire within ttl/3 + 150ms"));
    let took = started.elapsed();
    assert!(guard.is_lost());
    assert_eq!(guard.remaining(), Duration::ZERO);
    assert!(guard.extend().await.unwrap_err().is_lost());
    assert!(guard.release().await.unwrap_err().is_lost());
    eprintln!("loss seen after {took:?}");
}

#[tokio::test]
async fn deleting_the_key_is_noticed_within_a_renewal_period() {
    lost_within(ms(600), &["DEL", "doomed"]).await;
}

#[tokio::test]
async fn overwriting_the_key_is_noticed() {
    lost_within(ms(600), &["SET", "doomed", "someone-else"]).await;
}

#[tokio::test]
async fn a_lost_guard_leaves_the_intruders_value_alone() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let guard = client.lease("taken").ttl(ms(300)).acquire().await.unwrap();
    let () = redis::cmd("SET")
        .arg("taken")
        .arg("intruder")
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::timeout(SECOND, guard.lost()).await.unwrap();
    drop(guard);
    // Give a (wrong) background release every chance to run, then check.
    let guard2 = client.lease("other").acquire().await.unwrap();
    guard2.release().await.unwrap();
    assert_eq!(get(&mut conn, "taken").await.as_deref(), Some("intruder"));
}

#[tokio::test]
async fn without_auto_renew_the_lease_ends_after_one_ttl() {
    let (server, client) = setup().await;
    let conn = raw(&server).await;
    let guard = client
        .lease("once")
        .ttl(ms(200))
        .auto_renew(false)
        .acquire()
        .await
        .unwrap();
    tokio::time::timeout(SECOND, guard.lost()).await.unwrap();
    eventually(SECOND, "the key to expire", || {
        let mut c = conn.clone();
        async move { get(&mut c, "once").await.is_none() }
    })
    .await;
}

#[tokio::test]
async fn a_redis_that_stops_answering_makes_the_guard_lost_by_its_validity() {
    let (server, _) = setup().await;
    let client = leasehold::Client::builder()
        .response_timeout(ms(100))
        .connect(&server.url())
        .await
        .unwrap();
    let ttl = ms(400);
    let guard = client.lease("frozen").ttl(ttl).acquire().await.unwrap();
    server.pause();
    let started = Instant::now();
    tokio::time::timeout(ttl + ms(200), guard.lost())
        .await
        .expect("lost() fires once the validity runs out");
    eprintln!("loss seen {:?} after the pause", started.elapsed());
    assert!(guard.is_lost());
    server.resume();
}

#[tokio::test]
async fn a_redis_restarted_empty_makes_the_guard_lost_at_the_next_renewal() {
    let (mut server, client) = setup().await;
    let ttl = ms(900);
    let guard = client.lease("amnesia").ttl(ttl).acquire().await.unwrap();
    let before = guard.fence();
    server.kill();
    server.restart().unwrap(); // no persistence: the lease is gone
    tokio::time::timeout(ttl, guard.lost())
        .await
        .expect("lost() did not fire after Redis forgot the lease");
    assert!(guard.is_lost());
    // The client reconnected by itself: a new lease works.
    let again = client
        .lease("amnesia")
        .wait(2 * SECOND)
        .acquire()
        .await
        .unwrap();
    assert!(
        again.fence() > before,
        "the fence went back with the empty Redis: {} after {before}",
        again.fence()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_guards_on_one_clients_timer_all_stay_held() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    // Different ttls, so that entries come due in every order.
    let mut guards = Vec::new();
    for i in 0..200u64 {
        let ttl = ms(150 + i % 7 * 10);
        guards.push(
            client
                .lease(format!("many:{i}"))
                .ttl(ttl)
                .acquire()
                .await
                .unwrap(),
        );
    }
    // Seven of the longest ttls: every guard renewed many times.
    let until = Instant::now() + ms(1500);
    while Instant::now() < until {
        assert!(
            guards.iter().all(|g| !g.is_lost()),
            "a guard lost its lease while the client was renewing it"
        );
        tokio::time::sleep(ms(20)).await;
    }
    for (i, g) in guards.iter().enumerate() {
        assert_eq!(
            get(&mut conn, &format!("many:{i}")).await.as_deref(),
            Some(g.token().as_str()),
            "lease {i} is no longer its guard's"
        );
    }
    for g in guards {
        g.release().await.unwrap();
    }
    assert_eq!(
        dbsize(&mut conn).await,
        200,
        "only the fence counters are left"
    );
}

#[tokio::test]
async fn a_released_guard_is_renewed_no_more() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let ttl = ms(90); // renewed every 30 ms while held
    let guard = client.lease("done").ttl(ttl).acquire().await.unwrap();
    eventually(5 * SECOND, "a first renewal", || {
        let mut c = conn.clone();
        async move { script_calls(&mut c).await >= 2 }
    })
    .await;
    guard.release().await.unwrap();
    let after_release = script_calls(&mut conn).await;
    // Absence can only be shown over a window: ten renewal periods.
    tokio::time::sleep(ms(300)).await;
    assert_eq!(
        script_calls(&mut conn).await,
        after_release,
        "the released guard was still being renewed"
    );
}

#[tokio::test]
async fn a_redis_paused_for_half_the_ttl_costs_no_guard() {
    let (server, client) = setup().await; // default response timeout: 5 s
    let mut conn = raw(&server).await;
    let ttl = ms(1500);
    let guard = client.lease("paused").ttl(ttl).acquire().await.unwrap();
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(700)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .unwrap();
    let paused = Instant::now();
    // The pause, then two more renewal periods.
    tokio::time::sleep_until(paused + ms(700) + 2 * ttl / 3).await;
    assert!(!guard.is_lost(), "the guard was lost to a 700 ms pause");
    assert_eq!(
        get(&mut conn, "paused").await.as_deref(),
        Some(guard.token().as_str())
    );
    guard.release().await.unwrap();
}

/// A TCP proxy in front of a real redis-server whose open connections can be
/// frozen: they stop passing bytes either way but stay open, as a dead peer
/// behind a firewall that drops packets looks. New connections pass.
struct FreezingProxy {
    port: u16,
    accepted: Arc<AtomicU64>,
    /// Connections numbered below this pass nothing more.
    frozen_below: Arc<AtomicU64>,
}

impl FreezingProxy {
    async fn start(target: u16) -> FreezingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let frozen_below = Arc::new(AtomicU64::new(0));
        let (a, f) = (accepted.clone(), frozen_below.clone());
        tokio::spawn(async move {
            loop {
                let (inbound, _) = listener.accept().await.unwrap();
                let outbound = tokio::net::TcpStream::connect(("127.0.0.1", target))
                    .await
                    .unwrap();
                let id = a.fetch_add(1, Ordering::SeqCst);
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(Self::pass(ri, wo, id, f.clone()));
                tokio::spawn(Self::pass(ro, wi, id, f.clone()));
            }
        });
        FreezingProxy {
            port,
            accepted,
            frozen_below,
        }
    }

    async fn pass(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        id: u64,
        frozen_below: Arc<AtomicU64>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if id < frozen_below.load(Ordering::SeqCst) {
                // Swallow it, and keep both sockets open for ever.
                std::future::pending::<()>().await;
            }
            if to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every connection open now stops passing bytes, without failing.
    fn freeze(&self) {
        let open = self.accepted.load(Ordering::SeqCst);
        self.frozen_below.store(open, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_renewal_stuck_on_a_dead_connection_is_sent_again_on_another() {
    let server = testkit::RedisServer::start().unwrap();
    let proxy = FreezingProxy::start(server.port()).await;
    // The default response timeout (5 s) is longer than the ttl.
    let client = leasehold::Client::connect(&proxy.url()).await.unwrap();
    let mut conn = raw(&server).await;
    let ttl = ms(1500);
    let guard = client.lease("stuck").ttl(ttl).acquire().await.unwrap();
    proxy.freeze();
    let frozen = Instant::now();
    // Six renewal periods; each first call is stuck on the frozen connection.
    while frozen.elapsed() < 2 * ttl {
        assert!(
            !guard.is_lost(),
            "the guard was lost {:?} after its connection froze",
            frozen.elapsed()
        );
        tokio::time::sleep(ms(20)).await;
    }
    assert_eq!(
        get(&mut conn, "stuck").await.as_deref(),
        Some(guard.token().as_str()),
        "the lease is no longer the guard's"
    );
    assert!(guard.remaining() > Duration::ZERO);
    // Releasing would wait on the frozen connection: leave it to the TTL.
    std::mem::forget(guard);
}
