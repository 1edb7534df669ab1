//! Shared set-up: independent masters, clients on them, raw access, a
//! fenced store, waiting with a deadline.

use std::time::Duration;

use leasehold::{Client, Error, ErrorKind, Guard};
use redis::aio::MultiplexedConnection;
use testkit::{RedisServer, ServerOptions};

pub const SECOND: Duration = Duration::from_secs(1);

/// The per-node timeout of the tests that time the quorum.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(100);

/// The per-node timeout of the other tests: roomy, so that a loaded test
/// machine does not make a live master miss its answer (at most a tenth
/// of the ttl is used anyway).
pub const ROOMY: Duration = Duration::from_millis(500);

/// What a loaded test machine may add to a bound.
pub const SLACK: Duration = Duration::from_millis(150);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` independent masters.
pub async fn masters(n: usize) -> Vec<RedisServer> {
    masters_with(n, ServerOptions::default()).await
}

/// `n` independent masters, each started with `opts`.
pub async fn masters_with(n: usize, opts: ServerOptions) -> Vec<RedisServer> {
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| RedisServer::start_with(opts.clone()))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .unwrap()
    .expect("start redis-server (apt-get install redis-server; faketime for clock tests)")
}

pub fn urls(servers: &[RedisServer]) -> Vec<String> {
    servers.iter().map(RedisServer::url).collect()
}

/// A Redlock client on every master of `servers`.
pub async fn client(servers: &[RedisServer]) -> Client {
    client_with(servers, ROOMY).await
}

/// A Redlock client on every master of `servers`, waiting at most
/// `node_timeout` for each.
pub async fn client_with(servers: &[RedisServer], node_timeout: Duration) -> Client {
    connect_with(urls(servers), node_timeout)
        .await
        .expect("connect to the masters")
}

pub async fn connect(urls: Vec<String>) -> leasehold::Result<Client> {
    connect_with(urls, ROOMY).await
}

async fn connect_with(urls: Vec<String>, node_timeout: Duration) -> leasehold::Result<Client> {
    Client::builder()
        .connect_timeout(2 * SECOND)
        .redlock(urls)
        .node_timeout(node_timeout)
        .connect()
        .await
}

/// A raw connection, for looking behind leasehold's back.
pub async fn raw(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The value of `key` on `server`.
pub async fn get(server: &RedisServer, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut raw(server).await)
        .await
        .unwrap()
}

/// PTTL of `key` on `server`: -2 when it is gone, -1 without a TTL.
pub async fn pttl(server: &RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut raw(server).await)
        .await
        .unwrap()
}

pub async fn dbsize(server: &RedisServer) -> i64 {
    redis::cmd("DBSIZE")
        .query_async(&mut raw(server).await)
        .await
        .unwrap()
}

/// The masters of `servers` on which `key` holds `token`.
pub async fn holding(servers: &[RedisServer], key: &str, token: &str) -> usize {
    let mut n = 0;
    for s in servers {
        if get(s, key).await.as_deref() == Some(token) {
            n += 1;
        }
    }
    n
}

pub use testkit::eventually;

/// The checker's "two holders" condition (C2 of the torture suite): both
/// guards still claim the lease at this instant, each within the validity
/// its acquire proved.
pub fn both_hold(a: &Guard, b: &Guard) -> bool {
    !a.is_lost() && !b.is_lost() && !a.remaining().is_zero() && !b.remaining().is_zero()
}

/// The masters needed, granted and failed of a `QuorumNotReached`.
pub fn quorum_counts(err: &Error) -> (&'static str, usize, usize, usize) {
    match err.kind() {
        ErrorKind::QuorumNotReached {
            doing,
            needed,
            got,
            nodes,
        } => (doing, *needed, *got, nodes.len()),
        _ => panic!("expected QuorumNotReached, got: {err}"),
    }
}

/// The resource leases protect in these tests: a value on a redis-server
/// of its own that refuses a write whose fence is below the highest it
/// has seen, or equal to it from another writer (the idea of the torture
/// suite's store, with the writer kept so that two holders handed the
/// same fence cannot both write).
pub struct FencedStore {
    // Kept alive: dropping it kills the server.
    _server: RedisServer,
    conn: MultiplexedConnection,
    script: redis::Script,
}

/// The store's script (its header says what it takes).
const STORE: &str = r"
-- The fenced store of the Redlock tests.
-- KEYS[1] the value, KEYS[2] the highest fence seen (absent: 0),
-- KEYS[3] the writer that used that fence
-- ARGV[1] the write's fence, ARGV[2] its writer, ARGV[3] the value
-- Reply: 1 when written, 0 when refused (a lower fence, or the same fence
-- from another writer).
local f = tonumber(ARGV[1])
local highest = tonumber(redis.call('GET', KEYS[2]) or '0')
if f < highest then return 0 end
if f == highest and redis.call('GET', KEYS[3]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
return 1
";

impl FencedStore {
    pub async fn start() -> FencedStore {
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .unwrap()
            .expect("start redis-server");
        let conn = raw(&server).await;
        FencedStore {
            _server: server,
            conn,
            script: redis::Script::new(STORE),
        }
    }

    /// Writes `value` with `guard`'s fence; whether the store took it.
    pub async fn write(&self, guard: &Guard, value: &str) -> bool {
        let written: i64 = self
            .script
            .key("value")
            .key("fence")
            .key("writer")
            .arg(guard.fence())
            .arg(guard.token().as_str())
            .arg(value)
            .invoke_async(&mut self.conn.clone())
            .await
            .unwrap();
        written == 1
    }

    pub async fn value(&self) -> Option<String> {
        redis::cmd("GET")
            .arg("value")
            .query_async(&mut self.conn.clone())
            .await
            .unwrap()
    }
}

/// Waits until no master of `servers` has `key`. A release answers once a
/// quorum released, so the others may still be at it; tests that freeze
/// masters right after a release wait for it, so that a release still
/// on its way (see `quorum::a_released_lease_is_at_once_free_for_the_next_taker`)
/// is not frozen with its master.
pub async fn wait_free(servers: &[RedisServer], key: &str, within: Duration) {
    eventually(within, &format!("`{key}` free on every master"), || async {
        let mut free = true;
        for s in servers {
            free &= get(s, key).await.is_none();
        }
        free
    })
    .await;
}

/// How often `server` ran the commands `names` (lower case, scripts'
/// inner calls included), by `INFO commandstats`.
pub async fn calls(server: &RedisServer, names: &[&str]) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut raw(server).await)
        .await
        .unwrap();
    info.lines()
        .filter(|l| {
            l.strip_prefix("cmdstat_")
                .and_then(|l| l.split(':').next())
                .is_some_and(|name| names.contains(&name))
        })
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}
