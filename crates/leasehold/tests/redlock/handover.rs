//! Hand-over inside one client over Redlock, raced by the waiters' own
//! attempts: a refused attempt gives back what it got on every master by
//! its token, which must never undo a hand-over to that token.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::common::*;

/// Two clients of eight tasks each on one name, the head's fallback timer
/// at 1–2 ms (so its own attempts race local hand-overs all the time):
/// never two holders at once. Saw dozens of overlaps in
/// seconds when a hand-over could go to a head whose attempt was out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_is_never_undone_by_the_waiters_own_attempt() {
    let servers = masters(5).await;
    let clients = [client(&servers).await, client(&servers).await];
    let inside = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let taken = Arc::new(AtomicUsize::new(0));
    let end = Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = clients[i % 2].clone();
        let (inside, overlaps, taken) = (inside.clone(), overlaps.clone(), taken.clone());
        tasks.push(tokio::spawn(async move {
            let lease = c
                .lease("handed")
                .ttl(ms(500))
                .backoff(ms(1), ms(2))
                .wait(Duration::from_secs(30));
            while Instant::now() < end {
                let g = lease.acquire().await.unwrap();
                if inside.fetch_add(1, Ordering::SeqCst) > 0 {
                    overlaps.fetch_add(1, Ordering::SeqCst);
                }
                taken.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(ms(1)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
                // A holder that lost the lease meanwhile says so here.
                let _ = g.release().await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let taken = taken.load(Ordering::SeqCst);
    assert!(taken > 100, "only {taken} acquisitions");
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "two holders at once ({taken} acquisitions)"
    );
}
