//! Your own Lua: plain scripts, and lease-scoped scripts that run only while
//! a guard's lease is held.
//!
//! Both are hashed once and called by EVALSHA, with one fallback to EVAL
//! when the server does not know the script (after a restart or a flush).
//! Data goes only through KEYS and ARGV: a script's source is fixed when it
//! is made, so nothing a user types can change the code that runs.
//!

use std::sync::Arc;

use redis::{FromRedisValue, ToRedisArgs};

use crate::engine::Client;
use crate::error::{Error, Result};
use crate::hold::Guard;
use crate::scripts;

/// A Lua script of yours, called through KEYS and ARGV.
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
/// use leasehold::Script;
/// // Decrement the stock if some is left; say whether we got one.
/// let buy = Script::new(
///     "local n = tonumber(redis.call('GET', KEYS[1]) or '0')
///      if n > 0 then redis.call('DECR', KEYS[1]) return 1 end
///      return 0",
/// );
/// let got: i64 = buy.key("stock").invoke(&client).await?;
/// # Ok(()) }
/// ```
///
/// # Which one?
///
/// - A [`Script`] makes several commands atomic: the flash sale's
///   "decrement if positive" is one script and needs no lock at all.
/// - A [`LeaseScript`] is for writes that must not happen after the lease is
///   gone: its body runs only if the guard's token still holds it (the
///   lease key, the permit or the read or write lock, whichever the guard
///   is of), in the same atomic step. "Check the lock, then write" from two
///   round trips leaves a gap in which the lease can expire; this does not.
///   (The data must live in Redis, in the same hash slot as the lease on
///   Redis Cluster. For data elsewhere, use the fence: see
///   [`FenceGate`](crate::FenceGate).)
#[derive(Clone)]
pub struct Script {
    lua: Arc<scripts::Lua>,
}

/// A Lua body that runs only while a guard's lease is held; see
/// [`Script`] for which one to use.
///
/// The body sees its own KEYS and ARGV, as if it were a plain script. If
/// the lease is no longer held by the guard's token, the body does not run
/// and the call fails with [`ErrorKind::LeaseLost`](crate::ErrorKind::LeaseLost)
/// (and the guard counts as lost from then on).
///
/// ```no_run
/// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
/// use leasehold::LeaseScript;
/// let write = LeaseScript::new("return redis.call('SET', KEYS[1], ARGV[1])");
/// let guard = client.lease("report").acquire().await?;
/// let _: () = write.key("report:body").arg("all good").invoke(&guard).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LeaseScript {
    lua: Arc<scripts::Lua>,
}

/// Keys and arguments gathered for one call of a [`Script`] or
/// [`LeaseScript`].
#[derive(Clone)]
#[must_use = "nothing runs until `.invoke(..)` is awaited"]
pub struct Invocation<'s, S> {
    script: &'s S,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Script {
    /// A script from its source; hashed now, loaded on first use.
    ///
    /// ```
    /// // Build it once (a static, a field) and call it as often as needed.
    /// let incr_to = leasehold::Script::new(
    ///     "local v = redis.call('INCR', KEYS[1]); if v > tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end; return v",
    /// );
    /// assert_eq!(incr_to.sha().len(), 40);
    /// ```
    pub fn new(src: impl Into<String>) -> Script {
        Script {
            lua: Arc::new(scripts::Lua::new(src.into())),
        }
    }

    /// The SHA1 that EVALSHA uses.
    ///
    /// ```
    /// let s = leasehold::Script::new("return 1");
    /// println!("EVALSHA {} 0", s.sha());
    /// ```
    pub fn sha(&self) -> &str {
        self.lua.sha()
    }

    /// Starts a call with a first key.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let get = leasehold::Script::new("return redis.call('GET', KEYS[1])");
    /// let v: Option<String> = get.key("config:mode").invoke(&client).await?;
    /// # Ok(()) }
    /// ```
    pub fn key(&self, key: impl ToRedisArgs) -> Invocation<'_, Script> {
        self.prepare().key(key)
    }

    /// Starts a call with a first argument.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let echo = leasehold::Script::new("return ARGV[1]");
    /// let v: String = echo.arg("hello").invoke(&client).await?;
    /// # Ok(()) }
    /// ```
    pub fn arg(&self, arg: impl ToRedisArgs) -> Invocation<'_, Script> {
        self.prepare().arg(arg)
    }

    /// Starts a call with no keys or arguments yet.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let time = leasehold::Script::new("return redis.call('TIME')[1]");
    /// let secs: String = time.prepare().invoke(&client).await?;
    /// # Ok(()) }
    /// ```
    pub fn prepare(&self) -> Invocation<'_, Script> {
        Invocation {
            script: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }
}

impl LeaseScript {
    /// A lease-scoped script from its body; the prelude that checks the
    /// lease is prepended now.
    ///
    /// ```
    /// let append = leasehold::LeaseScript::new("return redis.call('RPUSH', KEYS[1], ARGV[1])");
    /// ```
    pub fn new(body: impl AsRef<str>) -> LeaseScript {
        let src = format!(
            "{}\n{}",
            include_str!("../scripts/lease_scoped_prelude.lua"),
            body.as_ref()
        );
        LeaseScript {
            lua: Arc::new(scripts::Lua::new(src)),
        }
    }

    /// Starts a call with a first key.
    ///
    /// ```no_run
    /// # async fn f(guard: leasehold::Guard) -> leasehold::Result<()> {
    /// let del = leasehold::LeaseScript::new("return redis.call('DEL', KEYS[1])");
    /// let n: i64 = del.key("report:draft").invoke(&guard).await?;
    /// # Ok(()) }
    /// ```
    pub fn key(&self, key: impl ToRedisArgs) -> Invocation<'_, LeaseScript> {
        self.prepare().key(key)
    }

    /// Starts a call with a first argument.
    ///
    /// ```no_run
    /// # async fn f(guard: leasehold::Guard) -> leasehold::Result<()> {
    /// let publish = leasehold::LeaseScript::new("return redis.call('PUBLISH', 'jobs', ARGV[1])");
    /// let n: i64 = publish.arg("job 7 done").invoke(&guard).await?;
    /// # Ok(()) }
    /// ```
    pub fn arg(&self, arg: impl ToRedisArgs) -> Invocation<'_, LeaseScript> {
        self.prepare().arg(arg)
    }

    /// Starts a call with no keys or arguments yet.
    ///
    /// ```no_run
    /// # async fn f(guard: leasehold::Guard) -> leasehold::Result<()> {
    /// // Fails with LeaseLost, running nothing, once the lease is gone.
    /// let still_mine = leasehold::LeaseScript::new("return 1");
    /// let _: i64 = still_mine.prepare().invoke(&guard).await?;
    /// # Ok(()) }
    /// ```
    pub fn prepare(&self) -> Invocation<'_, LeaseScript> {
        Invocation {
            script: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }
}

impl<S> Invocation<'_, S> {
    /// Adds a key (`KEYS[i]`).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let rename = leasehold::Script::new("return redis.call('RENAME', KEYS[1], KEYS[2])");
    /// let _: () = rename.key("{u:7}:draft").key("{u:7}:final").invoke(&client).await?;
    /// # Ok(()) }
    /// ```
    pub fn key(mut self, key: impl ToRedisArgs) -> Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    /// Adds an argument (`ARGV[i]`).
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let set_ex = leasehold::Script::new("return redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])");
    /// let _: () = set_ex.key("k").arg("v").arg(60).invoke(&client).await?;
    /// # Ok(()) }
    /// ```
    pub fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.args.extend(arg.to_redis_args());
        self
    }
}

impl Invocation<'_, Script> {
    /// Runs the script on the client's shared connection.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let len = leasehold::Script::new("return redis.call('LLEN', KEYS[1])");
    /// let n: i64 = len.key("queue").invoke(&client).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// If dropped after the script was sent, it still runs.
    pub async fn invoke<T: FromRedisValue>(&self, client: &Client) -> Result<T> {
        let core = client.core();
        core.backend.check_one_slot(&self.keys)?;
        self.script
            .lua
            .call_raw(&mut core.backend.conn()?, |c| {
                c.arg(self.keys.len()).arg(&self.keys).arg(&self.args);
            })
            .await
            .map_err(|e| Error::redis("your script", core.addr(), e))
    }
}

impl Invocation<'_, LeaseScript> {
    /// Runs the body if, and only if, `guard`'s lease is still held, in one
    /// atomic step.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// let write = leasehold::LeaseScript::new("return redis.call('SET', KEYS[1], ARGV[1])");
    /// let guard = client.lease("report").acquire().await?;
    /// match write.key("report:body").arg("v2").invoke::<()>(&guard).await {
    ///     Ok(()) => {}
    ///     Err(e) if e.is_lost() => eprintln!("not written: the lease was gone"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// If dropped after the script was sent, it still runs (under the same
    /// check).
    pub async fn invoke<T: FromRedisValue>(&self, guard: &Guard) -> Result<T> {
        let core = guard.core();
        let keys = guard.keys();
        let (hold, how) = keys.hold();
        if !self.keys.is_empty() {
            let mut all = vec![hold.to_vec()];
            all.extend(self.keys.iter().cloned());
            core.backend.check_one_slot(&all)?;
        }
        let reply = self
            .script
            .lua
            .call_raw(&mut core.backend.conn()?, |c| {
                c.arg(self.keys.len() + 1)
                    .arg(hold)
                    .arg(&self.keys)
                    .arg(guard.token().as_str())
                    .arg(how.as_arg())
                    .arg(&self.args);
            })
            .await;
        match reply {
            Err(e) if e.code() == Some("LEASEHOLD_LOST") => {
                guard.mark_lost(
                    crate::observe::Loss::Gone,
                    "a lease-scoped script found the lease gone",
                );
                Err(Error::lost(keys.display()))
            }
            other => other.map_err(|e| Error::redis("your lease-scoped script", core.addr(), e)),
        }
    }
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("sha", &self.sha()).finish()
    }
}

impl std::fmt::Debug for LeaseScript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseScript")
            .field("sha", &self.lua.sha())
            .finish()
    }
}
