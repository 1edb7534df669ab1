//! Fences never go back, for any kind of hold, even when Redis loses the
//! counter (issue 11, finding 4), and a permit or reader keeps its own fence
//! across a retry (finding 9).

use leasehold::Client;
use redis::aio::MultiplexedConnection;
use testkit::RedisServer;
use tokio::task::JoinSet;

use crate::common::*;

/// Everything that grants a fence.
#[derive(Debug, Clone, Copy)]
enum Grant {
    Lease,
    FairLease,
    Semaphore,
    FairSemaphore,
    Read,
    Write,
    /// A release handing the lease to a waiter of the same client.
    HandOver,
    /// Acquires of many tasks at once, sent in batches.
    Batched,
}

const EVERY_GRANT: [Grant; 8] = [
    Grant::Lease,
    Grant::FairLease,
    Grant::Semaphore,
    Grant::FairSemaphore,
    Grant::Read,
    Grant::Write,
    Grant::HandOver,
    Grant::Batched,
];

/// Tasks of the batched grant: enough in flight at once to be batched.
const BATCH_TASKS: usize = 48;

impl Grant {
    fn name(self) -> String {
        format!("fenced:{self:?}")
    }

    /// The names whose counters this grant uses.
    fn names(self) -> Vec<String> {
        match self {
            Grant::Batched => (0..BATCH_TASKS)
                .map(|i| format!("{}:{i}", self.name()))
                .collect(),
            _ => vec![self.name()],
        }
    }

    /// Grants a few fences of this kind, releasing each hold again; waits
    /// out a Redis that is coming back. Returns the fences, per name, in
    /// the order granted.
    async fn run(self, client: &Client) -> Vec<Vec<u64>> {
        let wait = 10 * SECOND;
        let name = self.name();
        let fences = match self {
            Grant::Lease | Grant::FairLease => {
                let lease = client
                    .lease(&name)
                    .fair(matches!(self, Grant::FairLease))
                    .wait(wait);
                let a = lease.acquire().await.unwrap();
                let fa = a.fence();
                a.release().await.unwrap();
                let b = lease.acquire().await.unwrap();
                let fb = b.fence();
                b.release().await.unwrap();
                vec![fa, fb]
            }
            Grant::Semaphore | Grant::FairSemaphore => {
                let sem = client
                    .semaphore(&name, 2)
                    .fair(matches!(self, Grant::FairSemaphore))
                    .wait(wait);
                let a = sem.acquire().await.unwrap();
                let b = sem.acquire().await.unwrap();
                let fences = vec![a.fence(), b.fence()];
                a.release().await.unwrap();
                b.release().await.unwrap();
                fences
            }
            Grant::Read => {
                let lock = client.rwlock(&name).wait(wait);
                let a = lock.read().acquire().await.unwrap();
                let b = lock.read().acquire().await.unwrap();
                let fences = vec![a.fence(), b.fence()];
                a.release().await.unwrap();
                b.release().await.unwrap();
                fences
            }
            Grant::Write => {
                let lock = client.rwlock(&name).wait(wait);
                let a = lock.write().acquire().await.unwrap();
                let fa = a.fence();
                a.release().await.unwrap();
                let b = lock.write().acquire().await.unwrap();
                let fb = b.fence();
                b.release().await.unwrap();
                vec![fa, fb]
            }
            Grant::HandOver => {
                let lease = client.lease(&name).wait(wait);
                let holder = lease.acquire().await.unwrap();
                // No fallback timer: only the release can serve the waiter.
                let waiter = {
                    let lease = lease.clone().backoff(120 * SECOND, 120 * SECOND);
                    tokio::spawn(async move { lease.acquire().await.unwrap() })
                };
                eventually(5 * SECOND, "the waiter to queue", || {
                    let n = lease.local_waiters();
                    async move { n == 1 }
                })
                .await;
                let fences = vec![holder.fence()];
                holder.release().await.unwrap();
                let next = tokio::time::timeout(5 * SECOND, waiter)
                    .await
                    .expect("the release did not hand the lease over")
                    .unwrap();
                let fences = [fences, vec![next.fence()]].concat();
                next.release().await.unwrap();
                fences
            }
            Grant::Batched => {
                // Wait out the reconnection first: a batch reports a lost
                // connection as an error, not a wait.
                take_and_give_back(&client.lease("fenced:warm").wait(wait)).await;
                let mut set = JoinSet::new();
                for (i, name) in self.names().into_iter().enumerate() {
                    let lease = client.lease(name);
                    set.spawn(async move {
                        let mut fences = Vec::new();
                        for _ in 0..5 {
                            let g = lease.try_acquire().await.unwrap();
                            fences.push(g.fence());
                            g.release().await.unwrap();
                        }
                        (i, fences)
                    });
                }
                let mut all = set.join_all().await;
                all.sort();
                return all.into_iter().map(|(_, f)| f).collect();
            }
        };
        vec![fences]
    }
}

/// The server's clock, in ms.
async fn server_ms(conn: &mut MultiplexedConnection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    s * 1000 + us / 1000
}

/// Waits until the server's clock is past the millisecond `fence` was
/// granted in (a fence is at most that ms x 1024 plus the grants in it):
/// the floor then lies above it. A lost counter restarts above every
/// earlier fence from the next millisecond on.
async fn until_the_clock_passes(server: &RedisServer, fence: u64) {
    let conn = raw(server).await;
    eventually(5 * SECOND, "the server's clock to pass the fence", || {
        let mut c = conn.clone();
        async move { server_ms(&mut c).await * 1024 > fence }
    })
    .await;
}

/// Grants fences of every kind, makes Redis lose them with `lose`, grants
/// again and checks that every new fence of a name is above every old one.
async fn fences_survive<F, Fut>(how: &str, mut lose: F)
where
    F: FnMut(&mut RedisServer) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (mut server, client) = setup().await;
    let mut before = Vec::new();
    for g in EVERY_GRANT {
        before.push(g.run(&client).await);
    }
    let highest = before.iter().flatten().flatten().max().copied().unwrap();
    lose(&mut server).await;
    let mut conn = raw(&server).await;
    for g in EVERY_GRANT {
        for name in g.names() {
            let key = format!("leasehold:{{{name}}}:fence");
            assert_eq!(get(&mut conn, &key).await, None, "{how}: {key} is gone");
        }
    }
    until_the_clock_passes(&server, highest).await;
    let mut went_back = Vec::new();
    for (g, before) in EVERY_GRANT.into_iter().zip(before) {
        let calls = script_calls(&mut conn).await;
        let after = g.run(&client).await;
        if let Grant::Batched = g {
            let ops = 2 * 5 * BATCH_TASKS as u64;
            let calls = script_calls(&mut conn).await - calls;
            assert!(
                calls < ops,
                "{calls} script calls for {ops} operations: not batched"
            );
        }
        assert_eq!(before.len(), after.len());
        for (name, (old, new)) in g.names().iter().zip(before.iter().zip(&after)) {
            assert!(
                new.windows(2).all(|w| w[0] < w[1]),
                "{how}: {g:?} fences of {name} out of order: {new:?}"
            );
            if new[0] <= *old.last().unwrap() {
                went_back.push(format!("{g:?} on {name}: {old:?}, then {new:?}"));
            }
        }
    }
    assert!(
        went_back.is_empty(),
        "{how}: fences went back:\n{}",
        went_back.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_fences_never_go_back_after_flushall() {
    fences_survive("FLUSHALL", |server| {
        let url = server.url();
        async move {
            let mut conn = raw_at(url).await;
            let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_fences_never_go_back_after_a_restart_without_persistence() {
    fences_survive("restart", |server| {
        server.restart().unwrap();
        async {}
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_fences_never_go_back_when_the_counters_are_deleted() {
    fences_survive("DEL", |server| {
        let url = server.url();
        async move {
            let mut conn = raw_at(url).await;
            for g in EVERY_GRANT {
                for name in g.names() {
                    let () = redis::cmd("DEL")
                        .arg(format!("leasehold:{{{name}}}:fence"))
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                }
            }
        }
    })
    .await;
}

#[tokio::test]
async fn issue11_a_fence_above_2_pow_31_round_trips_exactly() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let before = server_ms(&mut conn).await;
    let g = client.lease("exact").try_acquire().await.unwrap();
    let after = server_ms(&mut conn).await;
    let fence = g.fence();
    assert!(fence > 1 << 31);
    // A fresh counter starts at the floor: the server's ms x 1024, exactly.
    assert_eq!(fence % 1024, 0, "{fence}");
    assert!((before..=after).contains(&(fence / 1024)), "{fence}");
    // Stored as the integer it is (not 1.8e+15), so INCR goes on from it.
    assert_eq!(
        get(&mut conn, "leasehold:{exact}:fence").await,
        Some(fence.to_string())
    );
    g.release().await.unwrap();
    let next = client.lease("exact").try_acquire().await.unwrap();
    assert!(next.fence() > fence);
    assert_eq!(
        get(&mut conn, "leasehold:{exact}:fence").await,
        Some(next.fence().to_string())
    );
}

/// Raw acquire scripts for retries: the same token again, as after a
/// reply lost on the wire.
async fn retried(
    conn: &mut MultiplexedConnection,
    script: &str,
    keys: &[String],
    argv: &[&str],
) -> (i64, i64) {
    let script = redis::Script::new(&format!(
        "{}{}",
        include_str!("../../src/scripts/fence.lua"),
        script
    ));
    let mut inv = script.prepare_invoke();
    for k in keys {
        inv.key(k);
    }
    for a in argv {
        inv.arg(*a);
    }
    inv.invoke_async(conn).await.unwrap()
}

fn key(name: &str, suffix: &str) -> String {
    format!("leasehold:{{{name}}}:{suffix}")
}

#[tokio::test]
async fn issue11_a_retried_permit_keeps_its_own_fence() {
    let (server, _client) = setup().await;
    let mut conn = raw(&server).await;
    let name = "retried-permits";
    let keys: Vec<String> = ["permits", "limit", "fence", "fences"]
        .iter()
        .map(|s| key(name, s))
        .collect();
    let sem = include_str!("../../src/scripts/sem_acquire.lua");
    let (ok, first) = retried(&mut conn, sem, &keys, &["one", "60000", "2"]).await;
    assert_eq!(ok, 1);
    let (ok, second) = retried(&mut conn, sem, &keys, &["two", "60000", "2"]).await;
    assert_eq!(ok, 1);
    assert!(second > first);
    // The first permit's acquire again: its own fence, not the second's.
    assert_eq!(
        retried(&mut conn, sem, &keys, &["one", "60000", "2"]).await,
        (1, first)
    );
    assert_eq!(
        retried(&mut conn, sem, &keys, &["two", "60000", "2"]).await,
        (1, second)
    );
}

#[tokio::test]
async fn issue11_a_retried_fair_permit_keeps_its_own_fence() {
    let (server, _client) = setup().await;
    let mut conn = raw(&server).await;
    let name = "retried-fair-permits";
    let keys: Vec<String> = [
        "permits",
        "limit",
        "fence",
        "queue",
        "queue-deadlines",
        "queue-ticket",
        "fences",
    ]
    .iter()
    .map(|s| key(name, s))
    .collect();
    let sem = include_str!("../../src/scripts/sem_fair_acquire.lua");
    let (ok, first) = retried(&mut conn, sem, &keys, &["one", "60000", "2", "w1", "5000"]).await;
    assert_eq!(ok, 1);
    let (ok, second) = retried(&mut conn, sem, &keys, &["two", "60000", "2", "w2", "5000"]).await;
    assert_eq!(ok, 1);
    assert!(second > first);
    assert_eq!(
        retried(&mut conn, sem, &keys, &["one", "60000", "2", "w1", "5000"]).await,
        (1, first)
    );
}

#[tokio::test]
async fn issue11_a_retried_reader_keeps_its_own_fence() {
    let (server, _client) = setup().await;
    let mut conn = raw(&server).await;
    let name = "retried-readers";
    let keys: Vec<String> = ["readers", "writer", "intent", "fence", "fences"]
        .iter()
        .map(|s| key(name, s))
        .collect();
    let read = include_str!("../../src/scripts/rw_read_acquire.lua");
    let (ok, first) = retried(&mut conn, read, &keys, &["one", "60000"]).await;
    assert_eq!(ok, 1);
    let (ok, second) = retried(&mut conn, read, &keys, &["two", "60000"]).await;
    assert_eq!(ok, 1);
    assert!(second > first);
    assert_eq!(
        retried(&mut conn, read, &keys, &["one", "60000"]).await,
        (1, first)
    );
}

#[tokio::test]
async fn issue11_permit_and_reader_fences_are_forgotten_with_their_holds() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let raw = conn.clone();
    let sem = client.semaphore("forgotten-sem", 3);
    let a = sem.acquire().await.unwrap();
    let b = sem.acquire().await.unwrap();
    let hlen = |name: &'static str| {
        let c = raw.clone();
        async move {
            redis::cmd("HLEN")
                .arg(key(name, "fences"))
                .query_async::<i64>(&mut c.clone())
                .await
                .unwrap()
        }
    };
    assert_eq!(hlen("forgotten-sem").await, 2);
    a.release().await.unwrap();
    assert_eq!(hlen("forgotten-sem").await, 1);
    // A holder that died: its permit expires, and its fence goes with it at
    // the next acquire.
    // Detached: nothing releases or renews it.
    let _dead = sem.clone().ttl(ms(50)).acquire().await.unwrap().detach();
    eventually(5 * SECOND, "the dead permit to expire", || {
        let c = client.clone();
        async move {
            let s = c.status("forgotten-sem").await.unwrap();
            matches!(s.kind, leasehold::LeaseKind::Semaphore { ref permits, .. } if permits.len() == 1)
        }
    })
    .await;
    let c = sem.acquire().await.unwrap();
    assert_eq!(hlen("forgotten-sem").await, 2, "b's and c's");
    b.release().await.unwrap();
    c.release().await.unwrap();
    assert_eq!(dbsize(&mut conn).await, 1, "only the fence counter stays");

    let lock = client.rwlock("forgotten-rw");
    let r = lock.read().acquire().await.unwrap();
    assert_eq!(hlen("forgotten-rw").await, 1);
    r.release().await.unwrap();
    assert_eq!(hlen("forgotten-rw").await, 0);

    // A fair semaphore's release forgets the fence at once too.
    let fair = client.semaphore("forgotten-fair", 2).fair(true);
    let a = fair.acquire().await.unwrap();
    let b = fair.acquire().await.unwrap();
    assert_eq!(hlen("forgotten-fair").await, 2);
    a.release().await.unwrap();
    assert_eq!(hlen("forgotten-fair").await, 1, "a's fence is forgotten");
    b.release().await.unwrap();
    assert_eq!(hlen("forgotten-fair").await, 0);
}

#[tokio::test]
async fn issue16_a_counter_raised_past_the_clock_moves_on_by_one_exactly() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let key = "leasehold:{raised}:fence";
    // Far past the clock's floor (ms x 1024 is about 2^51 in this
    // century), and odd, so that a step by 1,024 or a rounding shows.
    let raised: u64 = (1 << 52) + 1;
    let () = redis::cmd("SET")
        .arg(key)
        .arg(raised)
        .query_async(&mut conn)
        .await
        .unwrap();
    let g = client.lease("raised").try_acquire().await.unwrap();
    assert_eq!(g.fence(), raised + 1);
    assert_eq!(get(&mut conn, key).await, Some((raised + 1).to_string()));
    g.release().await.unwrap();
    // And on from there, one at a time, while the clock is behind it.
    let g = client.lease("raised").try_acquire().await.unwrap();
    assert_eq!(g.fence(), raised + 2);
    g.release().await.unwrap();
}
