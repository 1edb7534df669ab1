//! Shared set-up: a private Redis, clients, raw access, waiting with a deadline.

use std::time::Duration;

use leasehold::Client;
use redis::aio::MultiplexedConnection;
use testkit::RedisServer;

/// A fresh redis-server on a free port and a leasehold client on it.
pub async fn setup() -> (RedisServer, Client) {
    let server = RedisServer::start().expect("start redis-server");
    let client = Client::connect(&server.url()).await.expect("connect");
    (server, client)
}

/// A raw connection, for looking behind leasehold's back.
pub async fn raw(server: &RedisServer) -> MultiplexedConnection {
    raw_at(server.url()).await
}

/// A raw connection to `url`, for futures that cannot borrow the server.
pub async fn raw_at(url: String) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

pub use testkit::eventually;

/// The value of a key, as a string.
pub async fn get(conn: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

/// Takes `lease` and gives it back at once (loads its scripts, or leaves
/// a first grant behind).
pub async fn take_and_give_back(lease: &leasehold::Lease) {
    lease.acquire().await.unwrap().release().await.unwrap();
}

/// How many waiters stand in the fair queue of `name`.
pub async fn queued(conn: &MultiplexedConnection, name: &str) -> i64 {
    redis::cmd("ZCARD")
        .arg(format!("leasehold:{{{name}}}:queue"))
        .query_async(&mut conn.clone())
        .await
        .unwrap()
}

/// Number of keys in the database.
pub async fn dbsize(conn: &mut MultiplexedConnection) -> i64 {
    redis::cmd("DBSIZE").query_async(conn).await.unwrap()
}

/// Subscribers of a channel, as the server counts them.
pub async fn numsub(conn: &mut MultiplexedConnection, channel: &str) -> i64 {
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .unwrap();
    n
}

/// Calls of one command the server has run so far (INFO commandstats,
/// counting those run inside scripts).
pub async fn calls(conn: &mut MultiplexedConnection, command: &str) -> u64 {
    commandstat(conn, command, "calls").await
}

/// One field of a command's line in INFO commandstats (`calls`,
/// `failed_calls`, ...); 0 for a command not run yet.
pub async fn commandstat(conn: &mut MultiplexedConnection, command: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:");
    let field = format!("{field}=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix(field.as_str())))
        .map_or(0, |n| n.parse().unwrap())
}

/// Script calls the server has run so far (EVALSHA and EVAL).
pub async fn script_calls(conn: &mut MultiplexedConnection) -> u64 {
    calls(conn, "evalsha").await + calls(conn, "eval").await
}

/// One task per semaphore handle: each takes a permit, counts itself in
/// while it holds it (for `hold`, or one yield), and gives it back, until
/// `budget` acquisitions are used up. Returns each task's acquisitions and
/// the most holders seen at once.
pub async fn contend(
    sems: Vec<leasehold::Semaphore>,
    budget: i64,
    hold: Duration,
) -> (Vec<u32>, usize) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let budget = Arc::new(AtomicI64::new(budget));
    let mut tasks = Vec::new();
    for sem in sems {
        let (inside, peak, budget) = (inside.clone(), peak.clone(), budget.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = 0u32;
            while budget.fetch_sub(1, Ordering::AcqRel) > 0 {
                let permit = sem.acquire().await.unwrap();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                if hold.is_zero() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(hold).await;
                }
                inside.fetch_sub(1, Ordering::SeqCst);
                permit.release().await.unwrap();
                mine += 1;
            }
            mine
        }));
    }
    let mut counts = Vec::new();
    for t in tasks {
        counts.push(tokio::time::timeout(60 * SECOND, t).await.unwrap().unwrap());
    }
    (counts, peak.load(Ordering::SeqCst))
}

pub const SECOND: Duration = Duration::from_secs(1);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Waits until a waiter of `lease`, started after the server had run
/// `scripts` script calls, has made `attempts` more and the local queue
/// counts `waiters`. A name's first waiter tries twice (on arrival, and
/// once more when it joins a confirmed channel or the confirmation wakes
/// it) and is out of the queue meanwhile, where a release would pass it
/// by; a waiter behind others sends nothing.
pub async fn settled_waiter(
    conn: &MultiplexedConnection,
    lease: &leasehold::Lease,
    scripts: u64,
    attempts: u64,
    waiters: usize,
) {
    eventually(5 * SECOND, "the waiter to try and queue", || {
        let (mut conn, lease) = (conn.clone(), lease.clone());
        // Its attempts first, then the queue: back in it after them.
        async move {
            script_calls(&mut conn).await >= scripts + attempts && lease.local_waiters() == waiters
        }
    })
    .await;
}
