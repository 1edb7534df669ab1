//! Out of memory (`maxmemory` with `noeviction`): Redis refuses writes
//! that may use more memory, yet holders must still be able to let go and
//! to stay (issue 11, finding 7).

use std::time::Duration;

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
