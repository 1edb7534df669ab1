//! Read-write locks: readers overlap, a writer never overlaps anyone, a
//! writer is not starved by readers, write fences grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::common::*;

#[tokio::test]
async fn readers_hold_together_and_keep_a_writer_out() {
    let (_server, client) = setup().await;
    let rw = client.rwlock("doc");
    let r1 = rw.read().try_acquire().await.unwrap();
    let r2 = rw.read().try_acquire().await.unwrap();
    assert!(rw.write().try_acquire().await.unwrap_err().is_held());
    r1.release().await.unwrap();
    assert!(rw.write().try_acquire().await.unwrap_err().is_held());
    r2.release().await.unwrap();
    let w = rw.write().try_acquire().await.unwrap();
    assert!(rw.read().try_acquire().await.unwrap_err().is_held());
    assert!(rw.write().try_acquire().await.unwrap_err().is_held());
    assert!(w.fence() > 2);
    w.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_never_overlaps_anyone() {
    let (server, a) = setup().await;
    let b = leasehold::Client::connect(&server.url()).await.unwrap();
    let readers = Arc::new(AtomicUsize::new(0));
    let writers = Arc::new(AtomicUsize::new(0));
    let max_readers = Arc::new(AtomicUsize::new(0));
    let budget = Arc::new(AtomicI64::new(600));
    let last_write_fence = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let rw = if i % 2 == 0 { &a } else { &b }
            .rwlock("shared")
            .wait(Duration::from_secs(60));
        let writer = i % 4 == 0;
        let (readers, writers, max_readers, budget, last) = (
            readers.clone(),
            writers.clone(),
            max_readers.clone(),
            budget.clone(),
            last_write_fence.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while budget.fetch_sub(1, Ordering::AcqRel) > 0 {
                if writer {
                    let g = rw.write().acquire().await.unwrap();
                    assert_eq!(writers.fetch_add(1, Ordering::SeqCst), 0, "two writers");
                    assert_eq!(readers.load(Ordering::SeqCst), 0, "a writer with readers");
                    let before = last.swap(g.fence(), Ordering::SeqCst);
                    assert!(
                        g.fence() > before,
                        "write fence {} after {before}",
                        g.fence()
                    );
                    tokio::task::yield_now().await;
                    writers.fetch_sub(1, Ordering::SeqCst);
                    g.release().await.unwrap();
                } else {
                    let g = rw.read().acquire().await.unwrap();
                    let n = readers.fetch_add(1, Ordering::SeqCst) + 1;
                    max_readers.fetch_max(n, Ordering::SeqCst);
                    assert_eq!(writers.load(Ordering::SeqCst), 0, "a reader with a writer");
                    tokio::time::sleep(ms(1)).await;
                    readers.fetch_sub(1, Ordering::SeqCst);
                    g.release().await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        max_readers.load(Ordering::SeqCst) > 1,
        "readers never overlapped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_gets_in_through_a_stream_of_readers() {
    let (server, client) = setup().await;
    let other = leasehold::Client::connect(&server.url()).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    // Readers overlapping all the time: the lock is never free of readers.
    for _ in 0..6 {
        let rw = client.rwlock("hot").wait(Duration::from_secs(30));
        let (stop, reads) = (stop.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let g = rw.read().acquire().await.unwrap();
                reads.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(ms(5)).await;
                g.release().await.unwrap();
            }
        }));
    }
    eventually(5 * SECOND, "readers to get going", || {
        let n = reads.load(Ordering::Relaxed);
        async move { n > 50 }
    })
    .await;
    let started = Instant::now();
    let w = other
        .rwlock("hot")
        .wait(Duration::from_secs(10))
        .write()
        .acquire()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited < 2 * SECOND,
        "the writer waited {waited:?} behind readers"
    );
    w.release().await.unwrap();
    stop.store(true, Ordering::Release);
    for r in readers {
        r.await.unwrap();
    }
}

#[tokio::test]
async fn a_writer_that_gives_up_withdraws_its_intent() {
    let (_server, client) = setup().await;
    // Intent would otherwise keep readers out for 3 x 10 s.
    let rw = client
        .rwlock("impatient")
        .backoff(ms(50), Duration::from_secs(10));
    let reader = rw.read().acquire().await.unwrap();
    let err = rw
        .write()
        .clone()
        .wait(ms(200))
        .acquire()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // New readers get in again at once, not after the intent expired.
    let started = Instant::now();
    eventually(SECOND, "the intent to be withdrawn", || {
        let rw = rw.clone();
        async move { rw.read().try_acquire().await.is_ok() }
    })
    .await;
    assert!(started.elapsed() < SECOND);
    reader.release().await.unwrap();
}
