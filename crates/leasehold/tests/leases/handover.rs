//! A release hands the lease straight to the next local waiter, in the same
//! script: the waiter sends nothing, and no hand-over is ever lost when the
//! waiter or the releaser gives up half-way.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use leasehold::Client;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::common::*;
use crate::oom::fill_memory;

/// Fallback timers far longer than any test: only a release can serve.
const NO_TIMER: Duration = Duration::from_secs(120);

async fn pttl(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

/// Polls `fut` once: enough to send its first command.
async fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> bool {
    let mut fut = fut;
    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())).await
}

/// Queues a waiter on `name` and waits until it stands in the local queue.
///
/// The first waiter of a queue tries twice: on arrival, and once more when
/// it joins a confirmed channel or the confirmation wakes it. Until its
/// second attempt has run (`conn` counts the scripts), it may be out of
/// the queue and trying, where a release would pass it by. A waiter
/// behind others sends nothing.
async fn queued_waiter(
    conn: &MultiplexedConnection,
    client: &Client,
    name: &'static str,
    ttl: Duration,
) -> tokio::task::JoinHandle<leasehold::Guard> {
    let before = client.lease(name).local_waiters();
    let attempts = if before == 0 { 2 } else { 0 };
    let scripts = script_calls(&mut conn.clone()).await;
    let c = client.clone();
    let task = tokio::spawn(async move {
        c.lease(name)
            .ttl(ttl)
            .backoff(NO_TIMER, NO_TIMER)
            .wait(NO_TIMER)
            .acquire()
            .await
            .unwrap()
    });
    settled_waiter(conn, &client.lease(name), scripts, attempts, before + 1).await;
    task
}

/// Waits for `waiter` to get `name` and checks that Redis agrees: the key
/// holds its token, with a TTL.
async fn served(
    conn: &mut MultiplexedConnection,
    name: &str,
    waiter: tokio::task::JoinHandle<leasehold::Guard>,
    why: &str,
) -> leasehold::Guard {
    let guard = tokio::time::timeout(5 * SECOND, waiter)
        .await
        .expect(why)
        .unwrap();
    assert_eq!(
        get(conn, name).await.as_deref(),
        Some(guard.token().as_str())
    );
    assert!(pttl(conn, name).await > 0);
    guard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_hands_the_lease_to_the_local_waiter_in_one_script() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    // A first hand-over loads the script (EVALSHA, NOSCRIPT, EVAL).
    let warm = client.lease("relay").acquire().await.unwrap();
    // Long enough that no renewal of it adds to the script counts below.
    let waiter = queued_waiter(&conn, &client, "relay", 30 * SECOND).await;
    warm.release().await.unwrap();
    let holder = waiter.await.unwrap();
    let waiter = queued_waiter(&conn, &client, "relay", 5 * SECOND).await;

    let before = script_calls(&mut conn).await;
    let fence = holder.fence();
    holder.release().await.unwrap();
    let next = tokio::time::timeout(5 * SECOND, waiter)
        .await
        .expect("the waiter was not served by the release")
        .unwrap();
    let after = script_calls(&mut conn).await;

    assert!(next.fence() > fence, "a hand-over is an acquisition");
    assert_eq!(
        get(&mut conn, "relay").await.as_deref(),
        Some(next.token().as_str()),
        "the lease is the waiter's in Redis"
    );
    let left = pttl(&mut conn, "relay").await;
    assert!(
        left > 0 && left <= 5_000,
        "the hand-over set the waiter's own ttl: PTTL {left}"
    );
    assert_eq!(
        after - before,
        1,
        "one script released and handed over; the waiter sent nothing"
    );
    assert!(next.remaining() > Duration::ZERO && next.remaining() <= 5 * SECOND);
    next.release().await.unwrap();
    assert_eq!(get(&mut conn, "relay").await, None);
}

/// Releases `holder` while Redis is paused, so that the hand-over (or the
/// freeing release) is sent and hangs; meanwhile `quitter` gives up.
async fn release_while_the_waiter_quits(
    server: &testkit::RedisServer,
    holder: leasehold::Guard,
    quitter: tokio::task::JoinHandle<leasehold::Guard>,
) {
    server.pause();
    let mut release = pin!(holder.release());
    assert!(poll_once(release.as_mut()).await, "Redis is paused");
    quitter.abort();
    assert!(quitter.await.unwrap_err().is_cancelled());
    server.resume();
    release.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_gives_up_during_the_hand_over_passes_the_lease_on() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    // A first hand-over subscribes the client to the wake channel: its
    // confirmation wakes the first waiter, which could otherwise be out
    // trying when the release comes, and the release would serve the next.
    let warm = client.lease("baton").acquire().await.unwrap();
    let waiter = queued_waiter(&conn, &client, "baton", 30 * SECOND).await;
    warm.release().await.unwrap();
    let holder = waiter.await.unwrap();
    let quitter = queued_waiter(&conn, &client, "baton", 30 * SECOND).await;
    let patient = queued_waiter(&conn, &client, "baton", 30 * SECOND).await;
    let fence = holder.fence();
    let grants = calls(&mut conn, "incr").await;

    // Redis stops answering: the hand-over to the quitter is sent and hangs.
    release_while_the_waiter_quits(&server, holder, quitter).await;

    // The quitter's token got the lease and gave it on at once.
    let next = served(
        &mut conn,
        "baton",
        patient,
        "the lease stayed with a waiter that had gone",
    )
    .await;
    assert!(next.fence() > fence);
    assert_eq!(
        calls(&mut conn, "incr").await - grants,
        2,
        "the quitter held it in between"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_cancelled_during_the_hand_over_still_serves_the_waiter() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    // A first hand-over subscribes the client to the wake channel. Else
    // the confirmation could wake the waiter, which would then be out of
    // the queue and trying when the release comes: nothing to hand over.
    let warm = client.lease("dropped-relay").acquire().await.unwrap();
    let waiter = queued_waiter(&conn, &client, "dropped-relay", 30 * SECOND).await;
    warm.release().await.unwrap();
    let holder = waiter.await.unwrap();
    let waiter = queued_waiter(&conn, &client, "dropped-relay", 30 * SECOND).await;
    let fence = holder.fence();

    server.pause();
    {
        let mut release = pin!(holder.release());
        assert!(poll_once(release.as_mut()).await, "Redis is paused");
        // Dropped here: nobody will read the hand-over's reply.
    }
    server.resume();

    // The waiter is woken to try for itself; its own token already holds
    // the lease, so its attempt takes it.
    let next = served(
        &mut conn,
        "dropped-relay",
        waiter,
        "the waiter was forgotten when the release was cancelled",
    )
    .await;
    assert!(next.fence() > fence);
}

/// A release that hands nothing over (a semaphore's), cancelled once
/// sent: nobody reads its reply, on which the client wakes its own
/// waiters, and its publish does not wake them either (a client skips its
/// own). The next local waiter is woken all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_cancelled_before_its_reply_still_wakes_the_local_waiter() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let permits = client
        .semaphore("dropped-permit", 1)
        .backoff(NO_TIMER, NO_TIMER)
        .wait(NO_TIMER);
    let waiting = |permits: leasehold::Semaphore| {
        tokio::spawn(async move { permits.acquire().await.unwrap() })
    };
    // A first wait subscribes the client to the wake channel, where it
    // lingers: the waiter below is not woken by its confirmation.
    let warm = permits.acquire().await.unwrap();
    let first = waiting(permits.clone());
    eventually(5 * SECOND, "the first waiter to subscribe", || {
        let mut c = conn.clone();
        async move { numsub(&mut c, "leasehold:{dropped-permit}:wake").await == 1 }
    })
    .await;
    warm.release().await.unwrap();
    let holder = first.await.unwrap();
    let fence = holder.fence();

    // The waiter tries, joins the queue, finds the channel confirmed and
    // looks once more (a release in between would have missed it): two
    // refused attempts, then it waits on its timer of two minutes.
    let before = script_calls(&mut conn).await;
    let waiter = waiting(permits.clone());
    eventually(5 * SECOND, "the waiter to look twice", || {
        let mut c = conn.clone();
        async move { script_calls(&mut c).await == before + 2 }
    })
    .await;

    server.pause();
    {
        let mut release = pin!(holder.release());
        assert!(poll_once(release.as_mut()).await, "Redis is paused");
        // Dropped here: nobody will read the release's reply.
    }
    server.resume();

    let next = tokio::time::timeout(5 * SECOND, waiter)
        .await
        .expect("the waiter was left to its timer when the release was cancelled")
        .unwrap();
    assert!(next.fence() > fence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_head_of_the_queue_polls_a_foreign_holder() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    // A foreign client holds the lease and will never publish its end.
    let _: () = redis::cmd("SET")
        .arg("foreign")
        .arg("redis-py")
        .arg("PX")
        .arg(400)
        .query_async(&mut conn)
        .await
        .unwrap();
    let before = script_calls(&mut conn).await;
    const WAITERS: usize = 40;
    let fences = Arc::new(Mutex::new(Vec::new()));
    let lease = client
        .lease("foreign")
        .backoff(ms(10), ms(20))
        .wait(10 * SECOND);
    let mut tasks = Vec::new();
    for _ in 0..WAITERS {
        let queued = lease.local_waiters();
        let lease = lease.clone();
        let fences = fences.clone();
        tasks.push(tokio::spawn(async move {
            let g = lease.acquire().await.unwrap();
            fences.lock().await.push(g.fence());
            g.release().await.unwrap();
        }));
        let l = client.lease("foreign");
        eventually(5 * SECOND, "the waiter to queue", || {
            let n = l.local_waiters();
            async move { n > queued }
        })
        .await;
    }
    for t in tasks {
        tokio::time::timeout(10 * SECOND, t)
            .await
            .expect("a waiter was never served")
            .unwrap();
    }
    let calls = script_calls(&mut conn).await - before;
    let fences = fences.lock().await.clone();
    assert_eq!(fences.len(), WAITERS);
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "one holder at a time, in order: {fences:?}"
    );
    // Each waiter: one release (a hand-over). Plus the first waiter's try
    // and the head's polls over 400 ms at 10-20 ms: about 40. Forty waiters
    // each polling would send about a thousand.
    assert!(
        calls < 2 * WAITERS as u64 + 60,
        "{calls} script calls for {WAITERS} waiters: waiters behind the head polled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_does_not_keep_the_lease_among_its_tasks_while_others_wait() {
    let (server, a) = setup().await;
    let b = Client::connect(&server.url()).await.unwrap();
    let mut conn = raw(&server).await;
    // Four workers in each of two processes, all looping on one name: were
    // releases always handed to a local waiter, whichever client first got
    // the lease would keep it for good.
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let stop = tokio::time::Instant::now() + 1500 * ms(1);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let client = if worker % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        let counts = counts.clone();
        tasks.push(tokio::spawn(async move {
            let lease = client.lease("shared").wait(10 * SECOND);
            while tokio::time::Instant::now() < stop {
                let g = lease.acquire().await.unwrap();
                counts[worker % 2].fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
                g.release().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (x, y) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    );
    // Taking turns gives about even shares on a quiet machine; a loaded
    // one can be slower to answer than the step back and lose turns. But
    // no starvation: handing over to local waiters regardless of others
    // gave one side a handful in thousands.
    let share = x.min(y) as f64 / (x + y) as f64;
    assert!(
        share >= 0.05,
        "client a got {x} acquisitions, client b {y}: one process starved the other"
    );
    assert_eq!(get(&mut conn, "shared").await, None);
}

/// `b` waits once for `name` (held by `a`), gets it and lets go: its
/// subscription to the name's wake channel then lingers, with nobody waiting.
async fn lingering(a: &Client, b: &Client, conn: &MultiplexedConnection, name: &'static str) {
    let held = a.lease(name).acquire().await.unwrap();
    let once = {
        let b = b.clone();
        tokio::spawn(async move { b.lease(name).acquire().await.unwrap().release().await })
    };
    let channel = format!("leasehold:{{{name}}}:wake");
    eventually(5 * SECOND, "b to wait", || {
        let (mut c, channel) = (conn.clone(), channel.clone());
        async move { numsub(&mut c, &channel).await == 1 }
    })
    .await;
    held.release().await.unwrap();
    once.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_only_lingers_does_not_slow_the_hand_over() {
    let (server, a) = setup().await;
    let b = Client::connect(&server.url()).await.unwrap();
    let mut conn = raw(&server).await;
    // b waits once, gets the lease and lets go: its subscription to the
    // name's wake channel lingers for a while, with nobody waiting.
    lingering(&a, &b, &conn, "linger").await;
    let before = calls(&mut conn, "publish").await;
    // a's four workers take turns while b's subscription lingers.
    let stop = tokio::time::Instant::now() + ms(500);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let lease = a.lease("linger").wait(10 * SECOND);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while tokio::time::Instant::now() < stop {
                lease.acquire().await.unwrap().release().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut taken = 0;
    for t in tasks {
        taken += t.await.unwrap();
    }
    let published = calls(&mut conn, "publish").await - before;
    assert!(
        numsub(&mut conn, "leasehold:{linger}:wake").await >= 1,
        "b's subscription should still linger"
    );
    // A step back or two finds b idle; then a hands over among its own
    // tasks. (Stepping back at every release: one publish per acquisition.)
    assert!(
        published <= 10 && taken > 100,
        "{published} releases were freed for a client that only lingers ({taken} acquisitions)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeing_release_whose_waiter_gave_up_still_serves_the_next() {
    let (server, a) = setup().await;
    let b = Client::connect(&server.url()).await.unwrap();
    let mut conn = raw(&server).await;
    // b waited once: its subscription lingers, so a's release frees the
    // lease (for b) instead of handing it over, and a's own first waiter
    // steps back. Nobody in b takes it.
    lingering(&a, &b, &conn, "freed").await;

    let holder = a.lease("freed").acquire().await.unwrap();
    let quitter = queued_waiter(&conn, &a, "freed", 30 * SECOND).await;
    let patient = queued_waiter(&conn, &a, "freed", 30 * SECOND).await;
    release_while_the_waiter_quits(&server, holder, quitter).await;
    // The waiter the release was for is gone: the next one is served at
    // once (it steps back, and the quitter's token is released and offered
    // on), rather than sleep through its 2-minute fallback timer.
    let next = served(
        &mut conn,
        "freed",
        patient,
        "the next waiter was left asleep after a freeing release",
    )
    .await;
    next.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_out_of_memory_a_release_still_hands_the_lease_over() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    // Load the hand-over script while writes are still allowed.
    let warm = client
        .lease("oom")
        .ttl(60 * SECOND)
        .acquire()
        .await
        .unwrap();
    let waiter = queued_waiter(&conn, &client, "oom", 60 * SECOND).await;
    warm.release().await.unwrap();
    let holder = waiter.await.unwrap();
    let waiter = queued_waiter(&conn, &client, "oom", 60 * SECOND).await;

    fill_memory(&mut conn).await;
    let refused: redis::RedisResult<()> = redis::cmd("SET")
        .arg("one-more")
        .arg("x")
        .query_async(&mut conn)
        .await;
    assert!(refused.is_err(), "Redis still takes writes");

    holder
        .release()
        .await
        .expect("the release failed out of memory: the lease stays held for its TTL");
    // Redis lets a script write on after a first write that freed memory:
    // the hand-over went through.
    let next = served(
        &mut conn,
        "oom",
        waiter,
        "the waiter was not served out of memory",
    )
    .await;
    assert!(next.remaining() > Duration::ZERO);
    // With nobody waiting, a plain release: no write that needs memory.
    next.release().await.unwrap();
    assert_eq!(get(&mut conn, "oom").await, None);
}
