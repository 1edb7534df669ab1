//! The protected resource: a counter in Redis behind a fence check in Lua.
//!
//! It lives on a Redis server of its own, which no fault touches: the
//! faults hit the lock, and the store is the witness of what the holders
//! did. With `--cluster` too: a witness inside the cluster would lose its
//! own writes to a killed master and report them as lost updates. Every access, read or write, carries the holder's fence; the store
//! refuses fences below the highest it has seen and raises that highest
//! with every access it accepts. The workers read the counter, then write
//! counter + 1 in a second call: not atomic on purpose, so two holders at
//! once lose an update unless the fence refuses one of them.

use redis::aio::MultiplexedConnection;

/// The counter's key for the lease `name`: `{name}:torture:counter`.
///
/// The store's keys carry the lease name as their hash tag, so both are in
/// the lease's slot: `store.lua` touches the two together, and a script that
/// touched them and the lease's keys (a lease-scoped script) would be legal
/// on a Redis Cluster too.
pub fn counter_key(name: &str) -> String {
    format!("{{{name}}}:torture:counter")
}

/// The key of the highest fence the store has seen, for the lease `name`
/// (tagged like [`counter_key`]).
pub fn highest_key(name: &str) -> String {
    format!("{{{name}}}:torture:highest-fence")
}

/// What the store answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// False when the fence was below the highest seen.
    pub accepted: bool,
    /// The counter after the access.
    pub value: i64,
}

/// A connection to the store, with its script.
#[derive(Clone)]
pub struct Store {
    conn: MultiplexedConnection,
    script: redis::Script,
    counter: String,
    highest: String,
}

impl Store {
    /// Connects to the store server at `url`, for the lease `name` (see
    /// [`counter_key`]).
    ///
    /// # Errors
    ///
    /// Redis's, when the server cannot be reached.
    pub async fn connect(url: &str, name: &str) -> redis::RedisResult<Store> {
        let conn = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        Ok(Store {
            conn,
            script: redis::Script::new(include_str!("store.lua")),
            counter: counter_key(name),
            highest: highest_key(name),
        })
    }

    /// Reads the counter with `fence` (`None`: unfenced, for the control
    /// arm).
    ///
    /// # Errors
    ///
    /// Redis's.
    pub async fn read(&self, fence: Option<u64>) -> redis::RedisResult<Access> {
        self.call("r", fence, 0).await
    }

    /// Writes `value` with `fence`.
    ///
    /// # Errors
    ///
    /// Redis's.
    pub async fn write(&self, fence: Option<u64>, value: i64) -> redis::RedisResult<Access> {
        self.call("w", fence, value).await
    }

    async fn call(&self, op: &str, fence: Option<u64>, value: i64) -> redis::RedisResult<Access> {
        let fence = fence.map_or_else(|| "-".to_owned(), |f| f.to_string());
        let (accepted, value): (i64, i64) = self
            .script
            .key(&self.counter)
            .key(&self.highest)
            .arg(op)
            .arg(fence)
            .arg(value)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Access {
            accepted: accepted == 1,
            value,
        })
    }

    /// The counter's value now.
    ///
    /// # Errors
    ///
    /// Redis's.
    pub async fn counter(&self) -> redis::RedisResult<i64> {
        let v: Option<i64> = redis::cmd("GET")
            .arg(&self.counter)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(v.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_keys_hash_like_the_lease_name() {
        // `{N}` makes N the hash tag: the slot of the lease key N itself.
        for key in [counter_key("torture/chaos"), highest_key("torture/chaos")] {
            assert!(key.starts_with("{torture/chaos}:"), "{key}");
        }
        assert_ne!(counter_key("n"), highest_key("n"));
    }
}
