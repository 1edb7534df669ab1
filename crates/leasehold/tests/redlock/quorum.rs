//! Frozen masters: a minority costs nothing, a majority fails fast, and
//! a failed attempt leaves nothing behind that outlives its ttl.

use std::time::Duration;

use tokio::time::Instant;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_frozen_costs_nothing_a_majority_frozen_fails_fast() {
    let servers = masters(5).await;
    let c = client(&servers).await;
    let ttl = 2 * SECOND;
    let lease = c.lease("nightly").ttl(ttl);
    let g = lease.try_acquire().await.unwrap();
    let f1 = g.fence();
    g.release().await.unwrap();

    servers[3].pause();
    servers[4].pause();
    let t = Instant::now();
    let g = lease.try_acquire().await.unwrap();
    let granted_in = t.elapsed();
    assert!(
        granted_in < NODE_TIMEOUT + SLACK,
        "waited for the frozen masters: {granted_in:?}"
    );
    assert!(g.fence() > f1);
    g.release().await.unwrap();

    servers[2].pause();
    let t = Instant::now();
    let err = lease.try_acquire().await.unwrap_err();
    let failed_in = t.elapsed();
    assert_eq!(quorum_counts(&err), ("acquire", 3, 2, 3), "{err}");
    for node in match err.kind() {
        leasehold::ErrorKind::QuorumNotReached { nodes, .. } => nodes,
        _ => unreachable!(),
    } {
        assert!(
            servers[2..]
                .iter()
                .any(|s| node.addr.ends_with(&s.port().to_string())),
            "a master that answered is named as failed: {}",
            node.addr
        );
    }
    assert!(
        failed_in < NODE_TIMEOUT + SLACK,
        "QuorumNotReached took {failed_in:?}, more than the per-node timeout {NODE_TIMEOUT:?} + {SLACK:?}"
    );

    // The frozen masters run what was queued for them once resumed:
    // every attempt's grant there, then its release. Nothing of the
    // failed attempt may outlive one ttl.
    for s in &servers[2..] {
        s.resume();
    }
    let resumed = Instant::now();
    for (i, s) in servers.iter().enumerate() {
        let p = pttl(s, "nightly").await;
        assert!(
            p == -2 || (0..=ttl.as_millis() as i64).contains(&p),
            "master {i}: a stray key with PTTL {p} ms (ttl {ttl:?})"
        );
    }
    eventually(ttl + SLACK, "no master to hold the key", || async {
        let mut gone = true;
        for s in &servers {
            gone &= pttl(s, "nightly").await == -2;
        }
        gone
    })
    .await;
    assert!(resumed.elapsed() < ttl + SLACK);
    // And the lease is free for the next taker, with a higher fence.
    let g = lease.try_acquire().await.unwrap();
    assert!(g.fence() > f1);
    assert_eq!(holding(&servers, "nightly", g.token().as_str()).await, 5);
    g.release().await.unwrap();
}

/// The grant's timing does not depend on how slow the frozen minority
/// is: with a per-node timeout far above the test's bound, an acquire
/// that reaches a quorum still answers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_answers_without_waiting_out_the_node_timeout() {
    let servers = masters(5).await;
    let c = leasehold::Client::builder()
        .redlock(urls(&servers))
        .node_timeout(SECOND)
        .connect()
        .await
        .unwrap();
    let lease = c.lease("quick").ttl(Duration::from_secs(20));
    lease.try_acquire().await.unwrap().release().await.unwrap();
    // The release answered once a quorum released; the other masters'
    // releases are still under way. Let them land before freezing two.
    eventually(5 * SECOND, "the lease free on every master", || async {
        let mut free = true;
        for s in &servers {
            free &= get(s, "quick").await.is_none();
        }
        free
    })
    .await;
    servers[0].pause();
    servers[1].pause();
    for round in 0..5 {
        let t = Instant::now();
        let g = lease
            .try_acquire()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e} after {:?}", t.elapsed()));
        assert!(t.elapsed() < SLACK, "{:?}", t.elapsed());
        let t = Instant::now();
        g.release().await.unwrap();
        assert!(t.elapsed() < SLACK, "release took {:?}", t.elapsed());
    }
    servers[0].resume();
    servers[1].resume();
}

/// KNOWN FAILING: backend bug, reported, not fixed here (the fix is in
/// `backend/redlock.rs`). The issue asks for `QuorumNotReached` within
/// the per-node timeout + ε with 3 of 5 frozen; today it takes two per-node
/// timeouts: after the acquire gave up on the frozen masters,
/// `Redlock::acquire` awaits `release_everywhere`, which waits another
/// per-node timeout for the same frozen masters to answer the release.
/// (The release must still be *sent* to them before a retry with the same
/// token, but need not be waited for: commands on one connection run in
/// order.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_frozen_fails_within_one_node_timeout() {
    let node_timeout = ms(400);
    let servers = masters(5).await;
    let c = leasehold::Client::builder()
        .redlock(urls(&servers))
        .node_timeout(node_timeout)
        .connect()
        .await
        .unwrap();
    let lease = c.lease("slow").ttl(Duration::from_secs(20));
    lease.try_acquire().await.unwrap().release().await.unwrap();
    for s in &servers[2..] {
        s.pause();
    }
    let t = Instant::now();
    let err = lease.try_acquire().await.unwrap_err();
    let failed_in = t.elapsed();
    for s in &servers[2..] {
        s.resume();
    }
    assert_eq!(quorum_counts(&err), ("acquire", 3, 2, 3), "{err}");
    assert!(failed_in >= node_timeout, "{failed_in:?}");
    assert!(
        failed_in < node_timeout + SLACK,
        "QuorumNotReached after {failed_in:?}, more than the per-node timeout {node_timeout:?} + {SLACK:?}"
    );
}

/// A renewing holder whose majority of masters freezes cannot extend on
/// a quorum: `lost()` fires no later than the validity its last renewal
/// proved, and the guard says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_majority_freezes_is_told_within_its_validity() {
    let servers = masters(5).await;
    let c = client(&servers).await;
    let ttl = 2 * SECOND;
    let g = c.lease("renewed").ttl(ttl).try_acquire().await.unwrap();
    // A renewal or two goes through while every master answers.
    tokio::time::sleep(ttl / 2).await;
    assert!(!g.is_lost());
    for s in &servers[..3] {
        s.pause();
    }
    let frozen = Instant::now();
    tokio::time::timeout(ttl + SLACK, g.lost())
        .await
        .expect("lost() did not fire although no quorum could renew");
    assert!(frozen.elapsed() <= ttl + SLACK);
    assert!(g.is_lost());
    assert!(g.remaining().is_zero());
    for s in &servers[..3] {
        s.resume();
    }
}
