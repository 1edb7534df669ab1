//! What Redlock does not do fails with `Unsupported`, naming it, before
//! anything is sent to a master.

use std::time::Duration;

use leasehold::{Error, ErrorKind, Script};

use crate::common::*;

/// The `what` of an `Unsupported` error, naming the Redlock deployment.
fn unsupported(err: &Error) -> &'static str {
    match err.kind() {
        ErrorKind::Unsupported { what, on, .. } => {
            assert_eq!(*on, "Redlock", "{err}");
            what
        }
        _ => panic!("expected Unsupported, got: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_redlock_cannot_do_is_refused_before_anything_is_sent() {
    let servers = masters(5).await;
    let c = client(&servers).await;
    let ttl = Duration::from_secs(5);
    let wait = ms(200);

    let fair = c.lease("fair").ttl(ttl).wait(wait).fair(true);
    let err = fair.try_acquire().await.unwrap_err();
    assert!(unsupported(&err).contains("fair lease"), "{err}");
    let err = fair.acquire().await.unwrap_err();
    assert!(unsupported(&err).contains("fair lease"), "{err}");

    let fair_sem = c.semaphore("fair-sem", 2).ttl(ttl).wait(wait).fair(true);
    let err = fair_sem.try_acquire().await.unwrap_err();
    assert!(unsupported(&err).contains("semaphore"), "{err}");
    let err = fair_sem.acquire().await.unwrap_err();
    assert!(unsupported(&err).contains("semaphore"), "{err}");

    let rw = c.rwlock("rw");
    for side in [rw.read(), rw.write()] {
        let err = side.try_acquire().await.unwrap_err();
        assert!(unsupported(&err).contains("read-write lock"), "{err}");
        let err = side.acquire().await.unwrap_err();
        assert!(unsupported(&err).contains("read-write lock"), "{err}");
    }

    let err = Script::new("return redis.call('SET', KEYS[1], 'x')")
        .key("data")
        .invoke::<()>(&c)
        .await
        .unwrap_err();
    assert!(unsupported(&err).contains("script"), "{err}");

    let err = c
        .optimistic(["stock"])
        .run(async |tx| {
            tx.queue(redis::cmd("SET").arg("stock").arg(1).clone());
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err();
    assert!(unsupported(&err).contains("transaction"), "{err}");

    let mut rebuilt = false;
    let err = c
        .single_flight("cache/report")
        .get(async || {
            rebuilt = true;
            Ok::<_, Error>("value".to_string())
        })
        .await
        .unwrap_err();
    assert!(unsupported(&err).contains("single-flight"), "{err}");
    assert!(!rebuilt, "single-flight ran the rebuild on Redlock");

    for (i, s) in servers.iter().enumerate() {
        assert_eq!(dbsize(s).await, 0, "master {i} has keys");
        assert_eq!(
            calls(s, &["evalsha", "eval"]).await,
            0,
            "master {i} ran a script"
        );
    }
    // The plain lease still works on the same client.
    c.lease("plain")
        .ttl(ttl)
        .try_acquire()
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}
