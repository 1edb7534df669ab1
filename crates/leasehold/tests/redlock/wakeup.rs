//! Wake-up over independent masters: another client's waiter is woken by
//! the release itself, its fallback timer far away, even when the release
//! reaches the masters one after the other (the first master's copy wakes
//! the waiter while the others still hold the lease), and on its client's
//! first wait, while its subscriber links to the masters are still
//! opening one by one.

use std::time::Duration;

use tokio::time::Instant;

use crate::common::*;

/// Rounds, each with a fresh waiter client.
const ROUNDS: usize = 40;

/// The waiter's fallback timer: only the release can wake it before.
const FALLBACK: Duration = Duration::from_secs(10);

/// Woken by the release, even on a loaded machine: far below the timer
/// (which fires at 5 s at the earliest, with its jitter).
const PROMPT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_clients_first_wait_is_woken_by_the_release() {
    let servers = masters(5).await;
    let holder = client_with(&servers, NODE_TIMEOUT).await;
    for round in 0..ROUNDS {
        let name = format!("wakeup/{round}");
        // A fresh client: its first wait opens a subscriber link per master.
        let waiter = client_with(&servers, NODE_TIMEOUT).await;
        let g = holder
            .lease(&name)
            .ttl(Duration::from_secs(30))
            .acquire()
            .await
            .unwrap();
        let lease = waiter
            .lease(&name)
            .wait(Duration::from_secs(20))
            .backoff(FALLBACK, FALLBACK);
        let task = tokio::spawn(async move { lease.acquire().await.map(|g| (g, Instant::now())) });
        // Until the waiter's subscription is in Redis (on some master):
        // from then on, the release's publish is what must wake it.
        eventually(FALLBACK, "the waiter's subscription", || async {
            holder.status(&name).await.unwrap().waiting_clients > 0
        })
        .await;
        g.release().await.unwrap();
        let released = Instant::now();
        let (got, at) = task.await.unwrap().unwrap();
        assert!(
            at - released < PROMPT,
            "round {round}: woken {:?} after the release, by the timer",
            at - released
        );
        got.release().await.unwrap();
    }
}

/// A releaser that reaches the masters one after the other, `GAP` apart
/// (a slow link, a release sent in turn): `DEL` and `PUBLISH` on each, as
/// the release script does. The first master's copy wakes the waiter,
/// whose attempt finds the others still held and is refused; the later
/// copies must wake it again, not be dropped as duplicates. Failed every
/// round (woken by the timer, 5-10 s later) while they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_reaches_the_masters_in_turn_wakes_the_waiter() {
    const GAP: Duration = Duration::from_millis(50);
    let servers = masters(5).await;
    let mut raws = Vec::new();
    for s in &servers {
        raws.push(raw(s).await);
    }
    for round in 0..3 {
        let name = format!("wakeup/in-turn/{round}");
        let channel = format!("leasehold:{{{name}}}:wake");
        for r in &mut raws {
            let _: () = redis::cmd("SET")
                .arg(&name)
                .arg("a-peer's-token")
                .arg("PX")
                .arg(30_000)
                .query_async(r)
                .await
                .unwrap();
        }
        // A fresh client: its first wait.
        let waiter = client_with(&servers, NODE_TIMEOUT).await;
        let lease = waiter
            .lease(&name)
            .wait(Duration::from_secs(20))
            .backoff(FALLBACK, FALLBACK);
        let task = tokio::spawn(async move { lease.acquire().await.map(|g| (g, Instant::now())) });
        // The first master to release is one where the waiter listens
        // already; the others may still be subscribing.
        let deadline = Instant::now() + FALLBACK;
        let first = loop {
            if let Some(m) = listening(&raws, &channel).await {
                break m;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the waiter never subscribed"
            );
            tokio::time::sleep(ms(5)).await;
        };
        let order: Vec<usize> = std::iter::once(first)
            .chain((0..servers.len()).filter(|&m| m != first))
            .collect();
        let mut quorum_free = None;
        for (i, &m) in order.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(GAP).await;
            }
            let _: () = redis::pipe()
                .cmd("DEL")
                .arg(&name)
                .ignore()
                .cmd("PUBLISH")
                .arg(&channel)
                .arg("a-peer")
                .ignore()
                .query_async(&mut raws[m])
                .await
                .unwrap();
            if i + 1 == 3 {
                quorum_free = Some(Instant::now());
            }
        }
        let (got, at) = task.await.unwrap().unwrap();
        let free = quorum_free.unwrap();
        assert!(
            at.saturating_duration_since(free) < PROMPT,
            "round {round}: got it {:?} after a quorum was free, by the timer",
            at.saturating_duration_since(free)
        );
        got.release().await.unwrap();
    }
}

/// A master on which some client listens on `channel`.
async fn listening(raws: &[redis::aio::MultiplexedConnection], channel: &str) -> Option<usize> {
    for (m, r) in raws.iter().enumerate() {
        let (_, n): (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut r.clone())
            .await
            .unwrap();
        if n > 0 {
            return Some(m);
        }
    }
    None
}
