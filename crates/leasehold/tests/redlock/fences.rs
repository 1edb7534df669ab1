//! The fence never goes back, whichever quorum grants the next lease.

use std::time::Duration;

use crate::common::*;

const NAME: &str = "fenced";
const COUNTER: &str = "leasehold:{fenced}:fence";

/// One master's counter far ahead of the others (as after a clock jump
/// there, or a long-lived master among young ones): the guard's fence is
/// that master's, and the next quorum, which may not include it, must
/// still hand out a higher one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_drawn_on_one_master_is_raised_so_no_later_quorum_goes_back() {
    let servers = masters(5).await;
    let c = client(&servers).await;
    let lease = c.lease(NAME).ttl(Duration::from_secs(10));
    let f0 = {
        let g = lease.try_acquire().await.unwrap();
        let f = g.fence();
        g.release().await.unwrap();
        f
    };
    wait_free(&servers, NAME, 15 * SECOND).await;
    // Master 0's counter jumps ahead by far more than the floors move.
    let ahead = f0 + (1 << 40);
    let _: () = redis::cmd("SET")
        .arg(COUNTER)
        .arg(ahead)
        .query_async(&mut raw(&servers[0]).await)
        .await
        .unwrap();
    // Masters 3 and 4 frozen: the granting quorum is 0, 1, 2, so the
    // guard's fence is master 0's, and 1 and 2 must be raised to it.
    servers[3].pause();
    servers[4].pause();
    let g = lease.try_acquire().await.unwrap();
    let high = g.fence();
    assert!(
        high > ahead,
        "the guard's fence {high} is not master 0's ({ahead}+)"
    );
    g.release().await.unwrap();
    servers[3].resume();
    servers[4].resume();
    wait_free(&servers, NAME, 15 * SECOND).await;

    // Every quorum that leaves master 0 out: still higher.
    let mut last = high;
    for left_out in [[0usize, 1], [0, 2], [0, 3], [0, 4]] {
        for &i in &left_out {
            servers[i].pause();
        }
        let g = lease.try_acquire().await.unwrap();
        let f = g.fence();
        g.release().await.unwrap();
        for &i in &left_out {
            servers[i].resume();
        }
        wait_free(&servers, NAME, 15 * SECOND).await;
        assert!(
            f > last,
            "fence {f} after {last} without masters {left_out:?}"
        );
        last = f;
    }
}
