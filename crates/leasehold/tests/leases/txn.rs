//! Optimistic transactions under contention, their limit, and their hygiene.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use leasehold::ErrorKind;

use crate::common::*;

async fn buy(client: &leasehold::Client) -> leasehold::Result<leasehold::Committed<bool>> {
    client
        .optimistic(["stock"])
        .max_attempts(1_000)
        .run(async |tx| {
            let stock: i64 = tx.get::<Option<i64>>("stock").await?.unwrap_or(0);
            tokio::task::yield_now().await; // widen the race window
            if stock > 0 {
                tx.queue(redis::cmd("SET").arg("stock").arg(stock - 1).clone());
                tx.queue(redis::cmd("INCR").arg("sold").clone());
            }
            Ok(stock > 0)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_buyers_sell_exactly_the_stock() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let () = redis::cmd("SET")
        .arg("stock")
        .arg(300)
        .query_async(&mut conn)
        .await
        .unwrap();
    let retried = Arc::new(AtomicU32::new(0));
    let mut buyers = Vec::new();
    for _ in 0..32 {
        let client = client.clone();
        let retried = retried.clone();
        buyers.push(tokio::spawn(async move {
            let mut bought = 0;
            loop {
                let c = buy(&client).await.unwrap();
                if c.attempts > 1 {
                    retried.fetch_add(1, Ordering::Relaxed);
                }
                if !c.value {
                    return bought;
                }
                bought += 1;
            }
        }));
    }
    let mut total = 0;
    for b in buyers {
        total += b.await.unwrap();
    }
    assert_eq!(total, 300);
    assert_eq!(get(&mut conn, "stock").await.as_deref(), Some("0"));
    assert_eq!(get(&mut conn, "sold").await.as_deref(), Some("300"));
    assert!(
        retried.load(Ordering::Relaxed) > 0,
        "32-way contention caused no conflict at all?"
    );
}

#[tokio::test]
async fn the_retry_limit_gives_its_error() {
    let (server, client) = setup().await;
    let mut meddler = raw(&server).await;
    let err = client
        .optimistic(["hot"])
        .max_attempts(3)
        .run(async |tx| {
            let _: Option<i64> = tx.get("hot").await?;
            // Someone else writes between our read and our EXEC, every time.
            let () = redis::cmd("INCR")
                .arg("hot")
                .query_async(&mut meddler)
                .await
                .unwrap();
            tx.queue(redis::cmd("SET").arg("hot").arg(0).clone());
            Ok::<_, leasehold::Error>(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::TooManyConflicts { attempts: 3 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("3 attempts"), "{err}");
    assert_eq!(
        get(&mut meddler, "hot").await.as_deref(),
        Some("3"),
        "no SET got through"
    );
}

#[derive(Debug)]
enum AppError {
    OutOfPaper,
    Lease(#[allow(dead_code)] leasehold::Error),
}

impl From<leasehold::Error> for AppError {
    fn from(e: leasehold::Error) -> Self {
        AppError::Lease(e)
    }
}

#[tokio::test]
async fn an_error_in_the_closure_leaves_no_watch_behind() {
    let (server, client) = setup().await;
    let mut other = raw(&server).await;
    let err = client
        .optimistic(["a"])
        .run(async |tx| {
            let _: Option<String> = tx.get("a").await?;
            tx.queue(redis::cmd("SET").arg("a").arg("never").clone());
            Err::<(), _>(AppError::OutOfPaper)
        })
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::OutOfPaper));
    assert_eq!(
        get(&mut other, "a").await,
        None,
        "queued writes must not run"
    );
    assert_eq!(
        client.idle_transaction_connections(),
        1,
        "the connection went back clean"
    );

    // Were `a` still watched on the pooled connection, this write would
    // abort the next transaction's EXEC and force a second attempt.
    let () = redis::cmd("SET")
        .arg("a")
        .arg("changed")
        .query_async(&mut other)
        .await
        .unwrap();
    let c = client
        .optimistic(["b"])
        .run(async |tx| {
            tx.queue(redis::cmd("SET").arg("b").arg(1).clone());
            Ok::<_, leasehold::Error>(())
        })
        .await
        .unwrap();
    assert_eq!(
        c.attempts, 1,
        "a WATCH from the failed transaction was left behind"
    );
    assert_eq!(get(&mut other, "b").await.as_deref(), Some("1"));
}
