//! Your own scripts, lease-scoped scripts, single-flight rebuilds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use leasehold::{LeaseScript, Script, Source};

use crate::common::*;

#[tokio::test]
async fn a_script_runs_by_sha_and_survives_a_script_flush() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let incr_by = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let n: i64 = incr_by.key("n").arg(5).invoke(&client).await.unwrap();
    assert_eq!(n, 5);
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    let n: i64 = incr_by.key("n").arg(2).invoke(&client).await.unwrap();
    assert_eq!(n, 7);
    let known: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(incr_by.sha())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(known, [true], "the EVAL fallback loaded the script again");
}

#[tokio::test]
async fn a_lease_scoped_script_writes_only_while_the_lease_is_held() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let write = LeaseScript::new("redis.call('SET', KEYS[1], ARGV[1]) return 1");
    let guard = client
        .lease("scoped")
        .ttl(ms(200))
        .auto_renew(false)
        .acquire()
        .await
        .unwrap();
    let n: i64 = write.key("data").arg("first").invoke(&guard).await.unwrap();
    assert_eq!(n, 1);
    assert_eq!(get(&mut conn, "data").await.as_deref(), Some("first"));

    // The lease expires and someone else takes it.
    eventually(2 * SECOND, "the lease to expire", || {
        let mut c = conn.clone();
        async move { get(&mut c, "scoped").await.is_none() }
    })
    .await;
    let next = client.lease("scoped").try_acquire().await.unwrap();
    let err = write
        .key("data")
        .arg("stale")
        .invoke::<i64>(&guard)
        .await
        .unwrap_err();
    assert!(err.is_lost(), "{err}");
    assert!(guard.is_lost());
    assert_eq!(
        get(&mut conn, "data").await.as_deref(),
        Some("first"),
        "the stale write ran"
    );

    // The new holder can write.
    let _: i64 = write.key("data").arg("second").invoke(&next).await.unwrap();
    assert_eq!(get(&mut conn, "data").await.as_deref(), Some("second"));
}

#[tokio::test]
async fn a_lease_scoped_script_refuses_after_the_key_was_deleted() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let write = LeaseScript::new("return redis.call('SET', KEYS[1], ARGV[1])");
    let guard = client.lease("gone").acquire().await.unwrap();
    let () = redis::cmd("DEL")
        .arg("gone")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = write
        .key("x")
        .arg("1")
        .invoke::<()>(&guard)
        .await
        .unwrap_err();
    assert!(err.is_lost(), "{err}");
    assert_eq!(get(&mut conn, "x").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_readers_of_a_cold_cache_rebuild_it_once() {
    let (_server, client) = setup().await;
    let rebuilds = Arc::new(AtomicU32::new(0));
    let mut readers = Vec::new();
    for _ in 0..100 {
        let client = client.clone();
        let rebuilds = rebuilds.clone();
        readers.push(tokio::spawn(async move {
            client
                .single_flight("cache:page")
                .cache_ttl(Duration::from_secs(60))
                .get(async || {
                    rebuilds.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(ms(50)).await; // a slow query
                    Ok::<_, leasehold::Error>("rendered".to_string())
                })
                .await
                .unwrap()
        }));
    }
    let mut sources = Vec::new();
    for r in readers {
        let f = r.await.unwrap();
        assert_eq!(f.value, "rendered");
        sources.push(f.source);
    }
    assert_eq!(
        rebuilds.load(Ordering::SeqCst),
        1,
        "the cache was rebuilt more than once"
    );
    assert_eq!(sources.iter().filter(|s| **s == Source::Rebuilt).count(), 1);
}

#[tokio::test]
async fn a_failed_rebuild_lets_the_next_caller_rebuild() {
    let (_server, client) = setup().await;
    let sf = client.single_flight("cache:flaky");
    let err = sf
        .get(async || {
            Err::<String, _>(leasehold::Error::from(leasehold::ErrorKind::LeaseLost {
                name: "x".into(),
            }))
        })
        .await
        .unwrap_err();
    assert!(err.is_lost());
    let ok = sf
        .get(async || Ok::<_, leasehold::Error>("v".to_string()))
        .await
        .unwrap();
    assert_eq!((ok.value.as_str(), ok.source), ("v", Source::Rebuilt));
    let hit = sf
        .get(async || Ok::<_, leasehold::Error>("w".to_string()))
        .await
        .unwrap();
    assert_eq!((hit.value.as_str(), hit.source), ("v", Source::Cache));
}

/// How a test takes a guard's hold away behind its back.
enum Steal {
    /// DEL the key.
    Del(&'static str),
    /// Leave the token in the sorted set with an expiry in the past, as a
    /// permit whose holder stopped renewing, not yet reclaimed.
    Expire(&'static str),
    /// ZREM the token from the sorted set.
    Zrem(&'static str),
}

#[tokio::test]
async fn issue11_a_lease_scoped_script_checks_the_hold_of_every_kind_of_guard() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let write = LeaseScript::new("return redis.call('SET', KEYS[1], ARGV[1])");
    let ttl = Duration::from_secs(30);
    let kinds: [(&str, leasehold::Guard, Steal); 6] = [
        (
            "lease",
            client.lease("s:lease").ttl(ttl).acquire().await.unwrap(),
            Steal::Del("s:lease"),
        ),
        (
            "fair lease",
            client
                .lease("s:fair")
                .fair(true)
                .ttl(ttl)
                .acquire()
                .await
                .unwrap(),
            Steal::Del("s:fair"),
        ),
        (
            "permit",
            client
                .semaphore("s:sem", 2)
                .ttl(ttl)
                .acquire()
                .await
                .unwrap(),
            Steal::Expire("leasehold:{s:sem}:permits"),
        ),
        (
            "fair permit",
            client
                .semaphore("s:fsem", 2)
                .fair(true)
                .ttl(ttl)
                .acquire()
                .await
                .unwrap(),
            Steal::Zrem("leasehold:{s:fsem}:permits"),
        ),
        (
            "reader",
            client
                .rwlock("s:rw")
                .ttl(ttl)
                .read()
                .acquire()
                .await
                .unwrap(),
            Steal::Expire("leasehold:{s:rw}:readers"),
        ),
        (
            "writer",
            client
                .rwlock("s:rw2")
                .ttl(ttl)
                .write()
                .acquire()
                .await
                .unwrap(),
            Steal::Del("leasehold:{s:rw2}:writer"),
        ),
    ];
    for (kind, guard, steal) in kinds {
        let data = format!("data:{kind}");
        let reply: Result<String, _> = write.key(&data).arg("held").invoke(&guard).await;
        assert_eq!(reply.as_deref().ok(), Some("OK"), "{kind}: {reply:?}");
        assert!(!guard.is_lost(), "{kind}: a valid guard was marked lost");
        assert_eq!(get(&mut conn, &data).await.as_deref(), Some("held"));

        let token = guard.token().as_str();
        let cmd = match steal {
            Steal::Del(key) => redis::cmd("DEL").arg(key).clone(),
            Steal::Expire(key) => redis::cmd("ZADD")
                .arg(key)
                .arg("XX")
                .arg("CH")
                .arg(1)
                .arg(token)
                .clone(),
            Steal::Zrem(key) => redis::cmd("ZREM").arg(key).arg(token).clone(),
        };
        let n: i64 = cmd.query_async(&mut conn).await.unwrap();
        assert_eq!(n, 1, "{kind}: nothing was taken away");
        let err = write
            .key(&data)
            .arg("stale")
            .invoke::<()>(&guard)
            .await
            .unwrap_err();
        assert!(err.is_lost(), "{kind}: {err}");
        assert_eq!(
            get(&mut conn, &data).await.as_deref(),
            Some("held"),
            "{kind}: the body ran without the hold"
        );
    }
}
