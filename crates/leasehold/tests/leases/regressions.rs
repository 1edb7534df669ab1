//! Regressions, named by issue: each test failed before its fix.

use std::time::Duration;

use leasehold::Client;
use redis::aio::MultiplexedConnection;
use testkit::RedisServer;
use tokio::time::Instant;

use crate::common::*;

/// Fallback timers far longer than any test: only a release can serve.
const NO_TIMER: Duration = Duration::from_secs(120);

/// Checks for `within` that `key` keeps holding `token`.
async fn stays(conn: &mut MultiplexedConnection, key: &str, token: &str, within: Duration) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        assert_eq!(
            get(conn, key).await.as_deref(),
            Some(token),
            "the guard's lease was released behind its back"
        );
        tokio::time::sleep(ms(10)).await;
    }
}

/// Issue 11, §1 finding 1: a waiter whose attempt timed out on the wire
/// (it may have taken the lease: its token is "armed") was then handed the
/// lease by a local release, returned the guard, and its drop released the
/// lease it had just been given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_hand_over_after_an_attempt_lost_on_the_wire_is_kept() {
    let server = RedisServer::start().unwrap();
    let client = Client::builder()
        .response_timeout(ms(150))
        .connect(&server.url())
        .await
        .unwrap();
    let mut conn = raw(&server).await;
    let lease = client.lease("i11-armed").ttl(30 * SECOND);
    let holder = lease.acquire().await.unwrap();

    // Scripts wait (subscriptions do not): every attempt of the waiter
    // times out on the wire, and the pause is over before the release.
    let pause = SECOND;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause.as_millis() as u64)
        .arg("WRITE")
        .query_async(&mut conn)
        .await
        .unwrap();
    let paused_until = Instant::now() + pause;
    let waiter = {
        let lease = lease.clone().backoff(NO_TIMER, NO_TIMER).wait(NO_TIMER);
        tokio::spawn(async move { lease.acquire().await.unwrap() })
    };
    tokio::time::sleep_until(paused_until + ms(100)).await;
    eventually(5 * SECOND, "the waiter to queue", || {
        let n = lease.local_waiters();
        async move { n == 1 }
    })
    .await;

    holder.release().await.unwrap();
    let guard = tokio::time::timeout(5 * SECOND, waiter)
        .await
        .expect("the release handed the lease over")
        .unwrap();
    assert!(!guard.is_lost());
    stays(&mut conn, "i11-armed", guard.token().as_str(), ms(300)).await;
    guard.extend().await.unwrap();
    guard.release().await.unwrap();
}

/// Issue 11, §1 finding 6: a writer that gave up withdrew its intent, but
/// the readers of its own client only noticed at their fallback timer (the
/// publish of the withdrawal is the client's own, and its echo skipped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_writer_that_gives_up_wakes_its_own_clients_readers_at_once() {
    let server = RedisServer::start().unwrap();
    let client = Client::connect(&server.url()).await.unwrap();
    let other = Client::connect(&server.url()).await.unwrap();
    let conn = raw(&server).await;
    // The writer's intent would keep readers out for 3 x 10 s; the reader's
    // fallback timer sleeps at least 5 s.
    let rw = client.rwlock("i11-rw").backoff(10 * SECOND, 10 * SECOND);
    let foreign_reader = other.rwlock("i11-rw").read().acquire().await.unwrap();

    let writer = {
        let write = rw.write().clone().wait(ms(500));
        tokio::spawn(async move {
            let err = write.acquire().await.unwrap_err();
            assert!(err.is_timeout(), "{err}");
            Instant::now()
        })
    };
    eventually(5 * SECOND, "the writer's intent", || {
        let mut conn = conn.clone();
        async move { get(&mut conn, "leasehold:{i11-rw}:intent").await.is_some() }
    })
    .await;
    let reader = {
        let read = rw.read().clone().wait(30 * SECOND);
        tokio::spawn(async move {
            let guard = read.acquire().await.unwrap();
            (Instant::now(), guard)
        })
    };
    let gave_up = writer.await.unwrap();
    let (got_in, guard) = tokio::time::timeout(30 * SECOND, reader)
        .await
        .unwrap()
        .unwrap();
    let late = got_in.saturating_duration_since(gave_up);
    assert!(
        late < 2 * SECOND,
        "the reader got in {late:?} after the writer gave up: its fallback timer, not a wake"
    );
    guard.release().await.unwrap();
    foreign_reader.release().await.unwrap();
}

/// Issue 11, §1 finding 9 (last item): a fair release with nobody queued in
/// Redis published the client's own id, whose echo is skipped, and woke no
/// local waiter: a plain waiter of the same client waited for its timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_fair_release_with_nobody_queued_wakes_a_plain_local_waiter() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    // Load the scripts, so that each attempt below is one call.
    take_and_give_back(&client.lease("i11-fair")).await;
    let holder = client.lease("i11-fair").fair(true).acquire().await.unwrap();
    let before = script_calls(&mut conn).await;
    let waiter = {
        // At least 5 s to the fallback timer.
        let lease = client
            .lease("i11-fair")
            .backoff(10 * SECOND, 10 * SECOND)
            .wait(30 * SECOND);
        tokio::spawn(async move {
            let guard = lease.acquire().await.unwrap();
            (Instant::now(), guard)
        })
    };
    // Its first attempt, then the one after its subscription is confirmed.
    settled_waiter(&conn, &client.lease("i11-fair"), before, 2, 1).await;
    served_by_the_release(holder, waiter).await;
}

/// The same for a fair semaphore's release and a plain waiter for a permit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_fair_permit_owed_to_nobody_wakes_a_plain_local_waiter() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let sem = client.semaphore("i11-fsem", 1);
    sem.acquire().await.unwrap().release().await.unwrap();
    let holder = sem.clone().fair(true).acquire().await.unwrap();
    let before = script_calls(&mut conn).await;
    let waiter = {
        let sem = sem
            .clone()
            .backoff(10 * SECOND, 10 * SECOND)
            .wait(30 * SECOND);
        tokio::spawn(async move {
            let guard = sem.acquire().await.unwrap();
            (Instant::now(), guard)
        })
    };
    settled_waiter(&conn, &client.lease("i11-fsem"), before, 2, 1).await;
    served_by_the_release(holder, waiter).await;
}

/// Releases `holder` and checks that `waiter` (a task returning when it got
/// in) got in well before its fallback timer of at least 5 s: woken by the
/// release.
async fn served_by_the_release(
    holder: leasehold::Guard,
    waiter: tokio::task::JoinHandle<(Instant, leasehold::Guard)>,
) {
    let released = Instant::now();
    holder.release().await.unwrap();
    let (got_in, guard) = tokio::time::timeout(30 * SECOND, waiter)
        .await
        .unwrap()
        .unwrap();
    let late = got_in - released;
    assert!(
        late < 2 * SECOND,
        "the waiter got in {late:?} after the release: its fallback timer, not a wake"
    );
    guard.release().await.unwrap();
}

/// Issue 11, §1 finding 9: `backoff(min, Duration::MAX)` overflowed (the
/// writer's intent, three times max; the doubling timer) and panicked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_backoff_up_to_duration_max_waits_without_overflow() {
    let (_server, client) = setup().await;
    let holder = client.lease("i11-max").acquire().await.unwrap();
    for (min, max) in [(ms(1), Duration::MAX), (Duration::MAX, Duration::MAX)] {
        let err = client
            .lease("i11-max")
            .backoff(min, max)
            .wait(ms(300))
            .acquire()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
    }
    let rw = client.rwlock("i11-max-rw").backoff(ms(1), Duration::MAX);
    let reader = rw.read().acquire().await.unwrap();
    let err = rw
        .write()
        .clone()
        .wait(ms(300))
        .acquire()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    reader.release().await.unwrap();
    holder.release().await.unwrap();
}

/// Issue 11 (second look): detaching one of several re-entered guards
/// promised a lease left held for its remaining validity, yet the other
/// guards kept renewing it and the last of them released it: the holder of
/// the detached token believed it held a lease that another client took.
/// And the guards left still claimed the lease, which the token's holder
/// may release (and another client take) at any time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_detaching_a_reentered_guard_leaves_the_lease_held() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let lease = client.lease("i11-detach").ttl(3 * SECOND);
    let outer = lease.acquire().await.unwrap();
    let inner = outer.reenter();
    let detached = outer.detach();
    assert!(detached.remaining > SECOND);
    assert!(
        inner.is_lost(),
        "a re-entered guard still claims a lease handed to its token"
    );
    inner.release().await.unwrap();
    // The detached holder is told the lease is its own for `remaining`.
    stays(
        &mut conn,
        "i11-detach",
        detached.token.as_str(),
        detached.remaining / 2,
    )
    .await;
    let other = Client::connect(&server.url()).await.unwrap();
    let taken = other.lease("i11-detach").try_acquire().await;
    assert!(
        taken.as_ref().is_err_and(leasehold::Error::is_held),
        "another client took a lease still held by a detached token: {taken:?}"
    );
    assert!(lease.release_by_token(&detached.token).await.unwrap());
}

/// Issue 11 (second look): a release that failed on the wire (the
/// connection was killed) returned its error and left the lease held until
/// its TTL ran out, with nobody left to release it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue11_a_release_that_fails_on_the_wire_is_retried_in_the_background() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let lease = client.lease("i11-release-lost").ttl(60 * SECOND);
    let guard = lease.acquire().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut conn)
        .await
        .unwrap();
    let result = guard.release().await;
    assert!(result.is_err(), "the release went through: {result:?}");
    // The raw connection was spared; the lease must not wait out its TTL.
    eventually(10 * SECOND, "the lease to be released", || {
        let mut conn = conn.clone();
        async move { get(&mut conn, "i11-release-lost").await.is_none() }
    })
    .await;
}
