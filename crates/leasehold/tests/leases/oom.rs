//! Out of memory (`maxmemory` with `noeviction`): Redis refuses writes
//! that may use more memory, yet holders must still be able to let go and
//! to stay (issue 11, finding 7).

use std::time::Duration;

use leasehold::Client;
use redis::aio::MultiplexedConnection;

use crate::common::*;

/// Fills Redis with 1 MiB of data, then sets `maxmemory` (noeviction) a
/// quarter MiB below what it uses: every write that may use more memory is
/// refused from then on, whatever small buffers come and go.
pub async fn fill_memory(conn: &mut MultiplexedConnection) {
    let block = vec![b'x'; 64 << 10];
    for i in 0..16 {
        let () = redis::cmd("SET")
            .arg(format!("fill:{i}"))
            .arg(&block)
            .query_async(conn)
            .await
            .unwrap();
    }
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .arg("maxmemory")
        .arg(used - (256 << 10))
        .query_async(conn)
        .await
        .unwrap();
    let e = redis::cmd("SET")
        .arg("one-more")
        .arg("x")
        .query_async::<()>(conn)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("OOM"), "{e}");
}

async fn refused(conn: &mut MultiplexedConnection) -> bool {
    redis::cmd("SET")
        .arg("one-more")
        .arg("x")
        .query_async::<()>(conn)
        .await
        .is_err()
}

#[tokio::test]
async fn issue11_out_of_memory_permits_and_readers_still_renew() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let ttl = Duration::from_secs(30);
    let permit = client
        .semaphore("oom-sem", 2)
        .ttl(ttl)
        .auto_renew(false)
        .acquire()
        .await
        .unwrap();
    let reader = client
        .rwlock("oom-rw")
        .ttl(ttl)
        .auto_renew(false)
        .read()
        .acquire()
        .await
        .unwrap();
    let writer = client
        .rwlock("oom-rw2")
        .ttl(ttl)
        .auto_renew(false)
        .write()
        .acquire()
        .await
        .unwrap();
    // Load the extend scripts while writes are still allowed.
    for g in [&permit, &reader, &writer] {
        g.extend().await.unwrap();
    }
    fill_memory(&mut conn).await;
    assert!(refused(&mut conn).await, "Redis still takes writes");
    for (kind, g) in [
        ("permit", &permit),
        ("reader", &reader),
        ("writer", &writer),
    ] {
        g.extend()
            .await
            .unwrap_or_else(|e| panic!("{kind}: extend failed out of memory: {e}"));
        assert!(!g.is_lost(), "{kind}");
    }
    // And they let go.
    for g in [permit, reader, writer] {
        g.release().await.unwrap();
    }
    assert!(refused(&mut conn).await);
}

/// A fair release gives the lease to the head of the queue out of memory
/// too: the script's first write is the head's claim leaving (`HDEL`,
/// which Redis never refuses), and Redis lets every write of a script
/// after its first through, so the head's `SET` goes through as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fair_release_hands_over_out_of_memory() {
    let (server, client) = setup().await;
    let other = Client::connect(&server.url()).await.unwrap();
    let mut conn = raw(&server).await;
    // No timer fires within the test: only the hand-over can serve the waiter.
    let quiet = Duration::from_secs(60);
    let lease = |c: &Client| {
        c.lease("oom-fair")
            .fair(true)
            .wait(quiet)
            .backoff(quiet, quiet)
            .auto_renew(false)
    };
    // Load the fair scripts while writes are still allowed.
    take_and_give_back(&lease(&client)).await;
    let holder = lease(&client).acquire().await.unwrap();
    let waiter = {
        let lease = lease(&other);
        tokio::spawn(async move { lease.acquire().await })
    };
    eventually(5 * SECOND, "the waiter to queue", || async {
        queued(&conn, "oom-fair").await == 1
    })
    .await;
    fill_memory(&mut conn).await;
    let fence = holder.fence();
    holder.release().await.unwrap();
    let guard = tokio::time::timeout(5 * SECOND, waiter)
        .await
        .expect("the head was not handed the lease out of memory")
        .unwrap()
        .unwrap();
    assert!(guard.fence() > fence);
    assert!(refused(&mut conn).await, "Redis still takes writes");
    guard.release().await.unwrap();
}
