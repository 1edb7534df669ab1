//! Entry points for the crate's own micro-benchmarks
//! (`benches/client_side.rs`): the client-side work of one operation, with
//! the network cut out. Not part of the API; may change at any release.

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::time::Instant;

use crate::lease::Lease;
use crate::scripts::{self, WaitInfo};
use crate::token::Token;

/// The most direct connections a client opens per server, for its lone
/// operations (beside the shared connection and the subscriber).
pub const DIRECT_CONNECTIONS_MAX: usize = crate::backend::direct::LANE_MAX;

/// Where the command would go on the wire: it is encoded exactly as the
/// connection encodes it, its size kept, and a canned reply returned.
struct Wire {
    sent: usize,
    reply: Value,
}

impl ConnectionLike for Wire {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.sent = cmd.get_packed_command().len();
        let reply = self.reply.clone();
        Box::pin(async move { Ok(reply) })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        _offset: usize,
        _count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.sent = pipeline.get_packed_pipeline().len();
        Box::pin(async move { Ok(Vec::new()) })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Builds and encodes the acquire script call of `lease` for `token`
/// (EVALSHA, SHA1, numkeys, KEYS, ARGV), and decodes a "taken, fence 7"
/// reply. Returns the encoded size in bytes.
pub async fn encode_acquire(lease: &Lease, token: &Token) -> usize {
    let mut wire = Wire {
        sent: 0,
        reply: Value::Array(vec![Value::Int(1), Value::Int(7)]),
    };
    let ttl_ms = crate::backend::ttl_ms(lease.configured_ttl());
    scripts::acquire(
        &mut wire,
        lease.keys(),
        token.as_bytes(),
        ttl_ms,
        &WaitInfo::default(),
    )
    .await
    .expect("a canned reply");
    wire.sent
}

/// Builds and encodes the release script call of `lease` for `token`, and
/// decodes a "released" reply. Returns the encoded size in bytes.
pub async fn encode_release(lease: &Lease, token: &Token, publisher: &Token) -> usize {
    let mut wire = Wire {
        sent: 0,
        reply: Value::Int(1),
    };
    scripts::release(
        &mut wire,
        scripts::Pubsub::Classic,
        lease.keys(),
        token.as_bytes(),
        publisher.as_bytes(),
    )
    .await
    .expect("a canned reply");
    wire.sent
}

/// A guard made as an acquire makes it (entered in the client's renewal
/// schedule when the lease renews itself), then detached (taken out of it):
/// what holding costs this process besides the two round trips. Yields
/// once, as an acquire would. Returns the fence.
pub async fn guard_round(lease: &Lease, fence: u64) -> u64 {
    let guard = lease.guard(Token::random(), fence, Instant::now());
    let detached = guard.detach();
    tokio::task::yield_now().await;
    detached.fence
}

/// One acquire and one release of `lease` by `token` over `conn` (any
/// redis-rs connection): leasehold's two scripts, as a lone operation
/// sends them, with none of the library around them. W0 times it on a bare
/// redis-rs connection, so that W1's cycle splits into the client stack,
/// the scripts' work in Redis and the library. Returns whether both went
/// through (taken, then released).
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> Result<(), redis::RedisError> {
/// let mut conn = redis::Client::open("redis://127.0.0.1:6379")?
///     .get_multiplexed_async_connection()
///     .await?;
/// let lease = client.lease("w0:scripts");
/// let token = leasehold::Token::random();
/// assert!(leasehold::bench_hooks::scripts_cycle(&mut conn, &lease, &token, &token).await?);
/// # Ok(()) }
/// ```
pub async fn scripts_cycle(
    conn: &mut impl ConnectionLike,
    lease: &Lease,
    token: &Token,
    publisher: &Token,
) -> redis::RedisResult<bool> {
    let ttl_ms = crate::backend::ttl_ms(lease.configured_ttl());
    let got = scripts::acquire(
        conn,
        lease.keys(),
        token.as_bytes(),
        ttl_ms,
        &WaitInfo::default(),
    )
    .await?;
    let released = scripts::release(
        conn,
        scripts::Pubsub::Classic,
        lease.keys(),
        token.as_bytes(),
        publisher.as_bytes(),
    )
    .await?;
    Ok(matches!(got, scripts::Acquired::Yes(_)) && matches!(released, scripts::Released::Yes))
}
