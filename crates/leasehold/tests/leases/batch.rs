//! Many tasks of one client acquiring and releasing plain leases at once:
//! their scripts go to Redis in batches, and each still behaves as it
//! would alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use leasehold::Client;
use tokio::task::JoinSet;

use crate::common::*;

/// Tasks cycling (try_acquire + release) on names of their own until
/// `stop` is set; each returns the fences it saw.
fn cycle_on_own_names(
    client: &Client,
    prefix: &str,
    tasks: usize,
    cycles: Option<u64>,
    stop: &Arc<AtomicBool>,
) -> JoinSet<Vec<u64>> {
    let mut set = JoinSet::new();
    for i in 0..tasks {
        let lease = client.lease(format!("{prefix}{i}"));
        let stop = Arc::clone(stop);
        set.spawn(async move {
            let mut fences = Vec::new();
            while !stop.load(Ordering::Relaxed) && cycles.is_none_or(|n| fences.len() as u64 != n) {
                let guard = lease.try_acquire().await.unwrap();
                fences.push(guard.fence());
                guard.release().await.unwrap();
            }
            fences
        });
    }
    set
}

/// `tasks` tasks of a fresh client, `cycles` cycles each on names of
/// their own: the fences each saw, the script calls they took (the scripts
/// loaded beforehand: the first EVALSHA of each is refused, then sent again
/// as EVAL) and the keys left in Redis.
async fn cycles_and_script_calls(tasks: usize, cycles: u64) -> (Vec<Vec<u64>>, u64, i64) {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let warm = client.lease("warm-up");
    warm.try_acquire().await.unwrap().release().await.unwrap();
    let before = script_calls(&mut conn).await;
    let stop = Arc::new(AtomicBool::new(false));
    let fences = cycle_on_own_names(&client, "own:", tasks, Some(cycles), &stop)
        .join_all()
        .await;
    let calls = script_calls(&mut conn).await - before;
    (fences, calls, dbsize(&mut conn).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_on_their_own_names_share_script_calls_and_each_cycle_counts_once() {
    const TASKS: usize = 48;
    const CYCLES: u64 = 30;
    let (fences, calls, keys) = cycles_and_script_calls(TASKS, CYCLES).await;
    assert_eq!(fences.len(), TASKS);
    for fences in fences {
        assert_eq!(fences.len() as u64, CYCLES);
        assert!(
            fences.windows(2).all(|w| w[0] < w[1]),
            "fences of one name go up, in order: {fences:?}"
        );
    }
    let ops = 2 * TASKS as u64 * CYCLES;
    assert!(
        calls < ops / 2,
        "{calls} script calls for {ops} acquires and releases: they were not batched"
    );
    // Every lease was let go: only the fencing counters are left (and the
    // warm-up's).
    assert_eq!(keys, TASKS as i64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_tasks_send_each_script_on_its_own() {
    // Few operations in flight: nothing waits to be batched.
    const TASKS: usize = 8;
    const CYCLES: u64 = 25;
    let (fences, calls, _) = cycles_and_script_calls(TASKS, CYCLES).await;
    let cycled: usize = fences.iter().map(Vec::len).sum();
    assert_eq!(cycled as u64, TASKS as u64 * CYCLES);
    assert_eq!(
        calls,
        2 * TASKS as u64 * CYCLES,
        "one script call per acquire and per release"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_inside_a_batch_fails_as_it_would_alone_and_the_others_go_on() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let () = redis::cmd("HSET")
        .arg("not-a-lease")
        .arg("f")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    let bad = client.lease("not-a-lease");
    let alone = bad.try_acquire().await.unwrap_err().to_string();
    assert!(alone.contains("WRONGTYPE"), "{alone}");

    // With others cycling, the bad acquire goes into batches.
    let stop = Arc::new(AtomicBool::new(false));
    let load = cycle_on_own_names(&client, "busy:", 48, None, &stop);
    let failed_before = commandstat(&mut conn, "get", "failed_calls").await;
    const TRIES: u64 = 50;
    for _ in 0..TRIES {
        let err = bad.try_acquire().await.unwrap_err().to_string();
        assert_eq!(err, alone, "the same error as alone");
    }
    // Alone, a try fails two GETs: its acquire's, and that of the release
    // of its token that a failed acquire leaves to the background. Each
    // one that went into a batch failed there first.
    let failed = commandstat(&mut conn, "get", "failed_calls").await - failed_before;
    assert!(
        failed > 2 * TRIES,
        "{failed} failed GETs for {TRIES} tries: none went into a batch"
    );
    stop.store(true, Ordering::Relaxed);
    let cycled: usize = load.join_all().await.iter().map(Vec::len).sum();
    assert!(cycled > 0, "the others went on");
    let kind: String = redis::cmd("TYPE")
        .arg("not-a-lease")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "hash", "the bad key is untouched");
    assert_eq!(get(&mut conn, "leasehold:{not-a-lease}:fence").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquires_abandoned_inside_a_batch_leave_no_lease_behind() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = cycle_on_own_names(&client, "busy:", 48, None, &stop);
    const ABANDONED: usize = 64;
    let mut gave_up = 0;
    for i in 0..ABANDONED {
        let lease = client.lease(format!("dropped:{i}"));
        // Given up while queued or in flight, at once or a little later.
        let patience = Duration::from_micros(20 * (i as u64 % 16));
        if tokio::time::timeout(patience, lease.try_acquire())
            .await
            .is_err()
        {
            gave_up += 1;
        }
    }
    assert!(gave_up > 0, "every acquire finished before its timeout");
    stop.store(true, Ordering::Relaxed);
    load.join_all().await;
    // Some of the abandoned acquires ran in Redis (their counters exist),
    // and none of them is left holding its name.
    let names: Vec<String> = (0..ABANDONED).map(|i| format!("dropped:{i}")).collect();
    let fences: Vec<String> = (0..ABANDONED)
        .map(|i| format!("leasehold:{{dropped:{i}}}:fence"))
        .collect();
    let ran: i64 = redis::cmd("EXISTS")
        .arg(&fences)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ran > 0, "no abandoned acquire reached Redis");
    eventually(5 * SECOND, "abandoned leases released", || {
        let names = names.clone();
        let mut conn = conn.clone();
        async move {
            let held: i64 = redis::cmd("EXISTS")
                .arg(&names)
                .query_async(&mut conn)
                .await
                .unwrap();
            held == 0
        }
    })
    .await;
}

#[test]
fn callers_get_an_error_not_a_hang_when_the_clients_runtime_shuts_down() {
    use std::sync::atomic::AtomicU64;
    let server = testkit::RedisServer::start().expect("start redis-server");
    let home = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = home.block_on(Client::connect(&server.url())).unwrap();
    // The callers live on a runtime of their own; the client's flushers
    // (and its connection) on `home`.
    let callers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cycles = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let lease = client.lease(format!("orphan:{i}"));
            let cycles = Arc::clone(&cycles);
            callers.spawn(async move {
                for _ in 0..2_000 {
                    let Ok(guard) = lease.try_acquire().await else {
                        return;
                    };
                    if guard.release().await.is_err() {
                        return;
                    }
                    cycles.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Batching under way, then the client's runtime goes.
    let deadline = std::time::Instant::now() + 10 * SECOND;
    while cycles.load(Ordering::Relaxed) < 500 {
        assert!(std::time::Instant::now() < deadline, "no cycles ran");
        std::thread::sleep(ms(1));
    }
    drop(home);
    callers.block_on(async {
        for task in tasks {
            tokio::time::timeout(10 * SECOND, task)
                .await
                .expect("a caller still waits for a batch nobody will send")
                .unwrap();
        }
    });
}
