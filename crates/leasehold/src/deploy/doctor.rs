//! [`Client::doctor`]: checks a deployment and says what to fix.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;
use redis::aio::ConnectionLike;

use super::{Settings, settings_pipe};
use crate::backend::Backend;
use crate::engine::Client;
use crate::error::Result;
use crate::keys::{Family, LeaseKeys};
use crate::lease::Lease;

/// How bad a [`Check`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Verdict {
    /// As leasehold needs it.
    Ok,
    /// Works, but can lose leases or could not be checked: read the fix.
    Warn,
    /// Something leasehold needs is missing or broken.
    Fail,
}

impl Verdict {
    /// `ok`, `warn` or `fail`.
    ///
    /// ```
    /// assert_eq!(leasehold::Verdict::Warn.as_str(), "warn");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One finding of [`Client::doctor`]: what was checked on which server,
/// the verdict, what was found and, unless ok, how to fix it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Check {
    /// What was checked: `version`, `role`, `persistence`, `eviction`,
    /// `cluster`, `acl`, `clock`.
    pub check: &'static str,
    /// The server (`host:port`), or the deployment for a check of it as a
    /// whole (a cluster's seeds, Redlock's masters).
    pub server: String,
    /// Ok, warn or fail.
    pub verdict: Verdict,
    /// What was found, one line.
    pub found: String,
    /// What to do about it, one line; `None` when ok.
    pub fix: Option<String>,
}

impl Check {
    fn ok(check: &'static str, server: &str, found: impl Into<String>) -> Check {
        Check {
            check,
            server: server.to_owned(),
            verdict: Verdict::Ok,
            found: found.into(),
            fix: None,
        }
    }

    fn bad(
        verdict: Verdict,
        check: &'static str,
        server: &str,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            check,
            server: server.to_owned(),
            verdict,
            found: found.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Host clock against Redis's: farther apart than this is a warning.
const SKEW_WARN: Duration = Duration::from_secs(1);

impl Client {
    /// Checks the deployment behind this client and says what to fix: per
    /// server (each master of a cluster, each Redlock master) the Redis
    /// version and role, persistence, the eviction policy and the clock
    /// against this host's; the cluster's state and slots; and the ACL
    /// permissions, by sending every command of [`acl_rule`](crate::acl_rule)
    /// on the keys of `probe` (a name nobody uses, in the namespace the
    /// user may use) and then taking and giving back a lease, a fair
    /// lease, a semaphore and a read-write lock named `probe...`, as
    /// the deployment offers them. Every key it writes is deleted at the
    /// end; a `probe` whose keys exist is refused (a fail), untouched. It
    /// also loads the one-line script `return 0` (`SCRIPT LOAD`).
    ///
    /// Persistence and eviction are read with `CONFIG GET`, which the ACL
    /// rule leaves out: for a restricted user they are warnings ("could
    /// not check"); run it as an admin user to check them.
    ///
    /// ```no_run
    /// # async fn f() -> leasehold::Result<()> {
    /// let client = leasehold::Client::connect("redis://app:secret@10.0.0.7:6379").await?;
    /// for check in client.doctor("jobs/doctor-probe").await? {
    ///     println!("{} {} {}: {}", check.verdict.as_str(), check.check, check.server, check.found);
    ///     if let Some(fix) = &check.fix {
    ///         println!("  fix: {fix}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// Fails only for a `probe` that is no name (empty, too long); a
    /// server that does not answer is a failed check.
    ///
    /// # Cancel safety
    ///
    /// Dropped while probing, the probe's keys may stay behind: a
    /// lease expires with its ttl (10 s); the fencing counters and the
    /// other keys written stay until deleted (`DEL` them, or run the
    /// doctor again with the same `probe` once it is free).
    pub async fn doctor(&self, probe: impl AsRef<[u8]>) -> Result<Vec<Check>> {
        let probe = probe.as_ref();
        Lease::check_name(probe)?;
        let backend = &self.core().backend;
        let mut checks = Vec::new();
        let servers = match backend.servers().await {
            Ok(s) => s,
            Err(e) => {
                checks.push(Check::bad(
                    Verdict::Fail,
                    "cluster",
                    backend.addr(),
                    format!("could not read the cluster's masters: {e}"),
                    "check that the cluster is up: redis-cli --cluster check HOST:PORT",
                ));
                return Ok(checks);
            }
        };
        let cluster = matches!(backend, Backend::Cluster(_));
        let patience = backend.reply_timeout().max(Duration::from_secs(2));
        let mut clocks = Vec::new();
        for server in &servers {
            let addr = &server.addr;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(patience))
                .set_response_timeout(Some(patience));
            let mut conn = match server
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    checks.push(Check::bad(
                        Verdict::Fail,
                        "version",
                        addr,
                        format!(
                            "cannot connect: {}",
                            crate::error::Error::redis("connecting", addr, e)
                        ),
                        "start the server, or fix the URL, user and password",
                    ));
                    continue;
                }
            };
            checks.extend(version_and_role(&mut conn, addr, cluster).await);
            checks.extend(settings(&mut conn, addr).await);
            if cluster {
                checks.push(cluster_state(&mut conn, addr).await);
            }
            let (check, skew) = clock(&mut conn, addr).await;
            checks.push(check);
            clocks.extend(skew);
        }
        if let Backend::Redlock(_) = backend
            && let (Some(lo), Some(hi)) = (clocks.iter().min(), clocks.iter().max())
        {
            let spread = Duration::from_millis((hi - lo).unsigned_abs());
            checks.push(if spread > SKEW_WARN {
                Check::bad(
                    Verdict::Warn,
                    "clock",
                    backend.addr(),
                    format!("the masters' clocks are {} apart", ms(spread)),
                    "sync every master's clock (NTP): Redlock's fences rest on the masters' clocks, and a master whose clock is behind can repeat a fence after losing its counter",
                )
            } else {
                Check::ok(
                    "clock",
                    backend.addr(),
                    format!("the masters' clocks are within {} of each other", ms(spread)),
                )
            });
        }
        checks.extend(self.acl_checks(probe).await);
        Ok(checks)
    }

    /// The ACL check: every command of the rule on `probe`'s keys, on each
    /// server; then the primitives themselves; then the clean-up.
    async fn acl_checks(&self, probe: &[u8]) -> Vec<Check> {
        let backend = &self.core().backend;
        let redlock = matches!(backend, Backend::Redlock(_));
        let names: Vec<Vec<u8>> = ["", "/sem", "/rw"]
            .iter()
            .map(|s| [probe, s.as_bytes()].concat())
            .collect();
        let shown = crate::keys::display_name(probe);
        let mut checks = Vec::new();
        let links = backend.links(backend.reply_timeout()).await;
        let mut usable = Vec::new();
        for (addr, link) in links {
            let mut link = match link {
                Ok(l) => l,
                Err(e) => {
                    checks.push(Check::bad(
                        Verdict::Fail,
                        "acl",
                        &addr,
                        format!("cannot connect: {e}"),
                        "start the server, or fix the URL, user and password",
                    ));
                    continue;
                }
            };
            // Never write over a name in use. One EXISTS per name: a
            // name's keys share a slot, names may not.
            let mut found: redis::RedisResult<i64> = Ok(0);
            for name in &names {
                let mut exists = redis::cmd("EXISTS");
                for k in companions(name) {
                    exists.arg(k);
                }
                match exists.query_async::<i64>(&mut link).await {
                    Ok(n) => found = found.map(|f| f + n),
                    Err(e) => found = Err(e),
                }
            }
            match found {
                Ok(0) => {}
                Ok(_) => {
                    checks.push(Check::bad(
                        Verdict::Fail,
                        "acl",
                        &addr,
                        format!("the probe name `{shown}` is in use: not checked"),
                        "give the doctor a name nobody uses, in the namespace of the ACL user (--name)",
                    ));
                    continue;
                }
                Err(e) if crate::acl::refused(&e).is_some() => {
                    checks.push(Check::bad(
                        Verdict::Fail,
                        "acl",
                        &addr,
                        format!(
                            "refused commands: exists ({}); not probing, as the probe name could not be checked unused",
                            crate::acl::refused(&e).unwrap_or_default()
                        ),
                        "ACL SETUSER <user> +exists; the whole rule: README, \"Redis ACL\"",
                    ));
                    continue;
                }
                Err(e) => {
                    checks.push(Check::bad(
                        Verdict::Fail,
                        "acl",
                        &addr,
                        format!("EXISTS failed: {e}"),
                        "check the server's log",
                    ));
                    continue;
                }
            }
            let mut refused = probe_commands(&mut link, backend, probe).await;
            usable.push((addr, link));
            let idx = usable.len() - 1;
            let addr = usable[idx].0.clone();
            if !redlock || idx == 0 {
                let wake = LeaseKeys::new(probe).wake().to_vec();
                let what = if matches!(backend, Backend::Cluster(_)) {
                    "ssubscribe"
                } else {
                    "subscribe"
                };
                for (at, r) in backend.try_subscribe(&wake).await {
                    if let Err(e) = r
                        && let Some(why) = crate::acl::refused(&e)
                    {
                        refused.push((format!("{what} ({at})"), why));
                    }
                }
            }
            checks.push(acl_verdict(&addr, &shown, refused));
        }
        // The primitives, as a user of the library runs them.
        if checks.iter().all(|c| c.verdict == Verdict::Ok) && !usable.is_empty() {
            checks.push(match self.take_each(&names, redlock).await {
                Ok(done) => Check::ok(
                    "acl",
                    backend.addr(),
                    format!("took and gave back {done} under `{shown}`"),
                ),
                Err(e) => Check::bad(
                    Verdict::Fail,
                    "acl",
                    backend.addr(),
                    format!("{e}"),
                    "grant the rule of leasehold::acl_rule (README, \"Redis ACL\")",
                ),
            });
        }
        for (addr, link) in &mut usable {
            // One DEL per name: a name's keys share a slot, names may not.
            for name in &names {
                let mut del = redis::cmd("DEL");
                for k in companions(name) {
                    del.arg(k);
                }
                if let Err(e) = del.query_async::<i64>(link).await {
                    checks.push(Check::bad(
                        Verdict::Warn,
                        "acl",
                        addr,
                        format!(
                            "could not delete the probe's keys ({e}): `{}` and its leasehold:... companions stay",
                            crate::keys::display_name(name)
                        ),
                        "delete them by hand (DEL), as a user allowed to",
                    ));
                }
            }
        }
        checks
    }

    /// Takes and gives back each primitive the deployment offers, on
    /// `names` (a lease and a fair lease on the first, a semaphore on the
    /// second, a read-write lock on the third), and reads their status.
    async fn take_each(&self, names: &[Vec<u8>], redlock: bool) -> Result<&'static str> {
        let ttl = Duration::from_secs(10);
        let lease = self.lease(&names[0]).ttl(ttl);
        let guard = lease.try_acquire().await?;
        guard.extend().await?;
        guard.release().await?;
        let sem = self.semaphore(&names[1], 1).ttl(ttl);
        sem.try_acquire().await?.release().await?;
        self.status(&names[0]).await?;
        self.list(&glob_escape(&names[0])).await?;
        if redlock {
            return Ok("a lease and a semaphore, and read their status");
        }
        self.lease(&names[0])
            .ttl(ttl)
            .fair(true)
            .try_acquire()
            .await?
            .release()
            .await?;
        let rw = self.rwlock(&names[2]).ttl(ttl);
        rw.read().try_acquire().await?.release().await?;
        rw.write().try_acquire().await?.release().await?;
        Ok("a lease, a fair lease, a semaphore and a read-write lock, and read their status")
    }
}

/// The ACL check of one server from the commands it refused.
fn acl_verdict(addr: &str, shown: &str, refused: Vec<(String, String)>) -> Check {
    if refused.is_empty() {
        return Check::ok(
            "acl",
            addr,
            format!("every command of the rule is allowed on the keys and channel of `{shown}`"),
        );
    }
    let commands: Vec<String> = refused
        .iter()
        .filter(|(_, why)| why.starts_with("the '"))
        .map(|(c, _)| c.split(' ').next().unwrap_or(c).to_owned())
        .collect();
    let others: Vec<String> = refused
        .iter()
        .filter(|(_, why)| !why.starts_with("the '"))
        .map(|(c, why)| format!("{c}: {why}"))
        .collect();
    let mut found = Vec::new();
    let mut fix = Vec::new();
    if !commands.is_empty() {
        found.push(format!("refused commands: {}", commands.join(", ")));
        fix.push(format!(
            "ACL SETUSER <user> {}",
            commands
                .iter()
                .map(|c| format!("+{c}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    if !others.is_empty() {
        found.push(format!("refused on `{shown}`: {}", others.join("; ")));
        fix.push(
            "grant the name's keys and channels (leasehold::acl_rule(\"PREFIX\"): ~PREFIX* ~leasehold:{PREFIX* ... &leasehold:{PREFIX* ...), or give --name a name the user may use".to_owned(),
        );
    }
    fix.push("the whole rule: README, \"Redis ACL\"".to_owned());
    Check::bad(Verdict::Fail, "acl", addr, found.join("; "), fix.join("; "))
}

/// Every key a name has as a lease, fair lease, fair semaphore and
/// read-write lock.
fn companions(name: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![name.to_vec()];
    for keys in [
        LeaseKeys::fair(name),
        LeaseKeys::semaphore(name, 1, true),
        LeaseKeys::rwlock(name, true),
    ] {
        out.extend(keys.companions().into_iter().map(<[u8]>::to_vec));
    }
    out.sort();
    out.dedup();
    out
}

/// Sends each command of the ACL rule (but the subscriptions) once, on
/// the keys and channel of `probe`: the commands refused, with what Redis
/// said was refused. Other errors (`NOSCRIPT` for an unknown SHA1) mean
/// the command was allowed.
async fn probe_commands(
    conn: &mut impl ConnectionLike,
    backend: &Backend,
    probe: &[u8],
) -> Vec<(String, String)> {
    let lease = LeaseKeys::fair(probe);
    let Family::Fair(queue) = lease.family() else {
        unreachable!("a fair lease's keys")
    };
    let sem = LeaseKeys::semaphore(probe, 1, false);
    let Family::Permit { fences: hash, .. } = sem.family() else {
        unreachable!("a semaphore's keys")
    };
    let (n, fence, zset, wake) = (probe, lease.fence(), &queue.queue[..], &lease.wake()[..]);
    let later = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
        + 60_000;
    let c = |name: &str| redis::cmd(name);
    let mut sent: Vec<(&str, redis::Cmd)> = vec![
        ("ping", c("PING")),
        (
            "script|load",
            c("SCRIPT").arg("LOAD").arg("return 0").clone(),
        ),
        (
            "evalsha",
            // The SHA1 of `return 0`, loaded above (or NOSCRIPT: allowed).
            c("EVALSHA")
                .arg(redis::Script::new("return 0").get_hash())
                .arg(1)
                .arg(n)
                .clone(),
        ),
        ("eval", c("EVAL").arg("return 0").arg(1).arg(n).clone()),
        (
            "set",
            c("SET").arg(n).arg("doctor").arg("PX").arg(60_000).clone(),
        ),
        ("get", c("GET").arg(n).clone()),
        ("exists", c("EXISTS").arg(n).clone()),
        ("pttl", c("PTTL").arg(n).clone()),
        ("pexpire", c("PEXPIRE").arg(n).arg(60_000).clone()),
        ("pexpireat", c("PEXPIREAT").arg(n).arg(later).clone()),
        ("incr", c("INCR").arg(fence).clone()),
        ("time", c("TIME")),
        ("zadd", c("ZADD").arg(zset).arg(0).arg("doctor").clone()),
        ("zcard", c("ZCARD").arg(zset).clone()),
        ("zrange", c("ZRANGE").arg(zset).arg(0).arg(-1).clone()),
        (
            "zrangebyscore",
            c("ZRANGEBYSCORE").arg(zset).arg("-inf").arg("+inf").clone(),
        ),
        ("zrank", c("ZRANK").arg(zset).arg("doctor").clone()),
        ("zscore", c("ZSCORE").arg(zset).arg("doctor").clone()),
        ("zrem", c("ZREM").arg(zset).arg("doctor").clone()),
        (
            "zremrangebyscore",
            c("ZREMRANGEBYSCORE").arg(zset).arg(0).arg(0).clone(),
        ),
        (
            "hset",
            c("HSET").arg(&hash[..]).arg("doctor").arg(1).clone(),
        ),
        ("hget", c("HGET").arg(&hash[..]).arg("doctor").clone()),
        ("hkeys", c("HKEYS").arg(&hash[..]).clone()),
        ("hlen", c("HLEN").arg(&hash[..]).clone()),
        ("hdel", c("HDEL").arg(&hash[..]).arg("doctor").clone()),
        (
            "scan",
            c("SCAN")
                .arg(0)
                .arg("MATCH")
                .arg("leasehold-doctor-none")
                .clone(),
        ),
        ("del", c("DEL").arg(n).clone()),
    ];
    if matches!(backend, Backend::Cluster(_)) {
        sent.extend([
            // An empty payload: no waiter of the probe takes it for a release.
            ("spublish", c("SPUBLISH").arg(wake).arg("").clone()),
            (
                "pubsub|shardnumsub",
                c("PUBSUB").arg("SHARDNUMSUB").arg(wake).clone(),
            ),
            ("cluster|slots", c("CLUSTER").arg("SLOTS").clone()),
        ]);
    } else {
        sent.extend([
            ("publish", c("PUBLISH").arg(wake).arg("").clone()),
            ("pubsub|numsub", c("PUBSUB").arg("NUMSUB").arg(wake).clone()),
        ]);
    }
    let mut refused = Vec::new();
    for (name, cmd) in sent {
        if let Err(e) = cmd.query_async::<Value>(conn).await
            && let Some(why) = crate::acl::refused(&e)
        {
            refused.push((name.to_owned(), why));
        }
    }
    refused
}

/// The server's version (Redis 6.2 at least; 7 on a cluster) and role
/// (a master), from `HELLO`, which every user may send.
async fn version_and_role(conn: &mut impl ConnectionLike, addr: &str, cluster: bool) -> Vec<Check> {
    let hello: HashMap<String, Value> = match redis::cmd("HELLO").query_async(conn).await {
        Ok(h) => h,
        Err(e) => {
            return vec![Check::bad(
                Verdict::Fail,
                "version",
                addr,
                format!("HELLO failed ({e}): Redis older than 6?"),
                "leasehold needs Redis 6.2 or later (7 for Redis Cluster)",
            )];
        }
    };
    let text = |k: &str| match hello.get(k) {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    };
    let version = text("version");
    let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    let at_least = |major: u32, minor: u32| {
        parts.first().copied().unwrap_or(0) > major
            || (parts.first().copied().unwrap_or(0) == major
                && parts.get(1).copied().unwrap_or(0) >= minor)
    };
    let mut out = vec![if !at_least(6, 2) {
        Check::bad(
            Verdict::Fail,
            "version",
            addr,
            format!("Redis {version}"),
            "upgrade to Redis 6.2 or later: leasehold's scripts use SET ... PXAT, and ACL channel patterns came with 6.2",
        )
    } else if cluster && !at_least(7, 0) {
        Check::bad(
            Verdict::Fail,
            "version",
            addr,
            format!("Redis {version} in a cluster"),
            "upgrade to Redis 7: on a cluster, waiters are woken by sharded pub/sub (SPUBLISH, SSUBSCRIBE)",
        )
    } else {
        Check::ok("version", addr, format!("Redis {version}"))
    }];
    let (role, mode) = (text("role"), text("mode"));
    out.push(if role != "master" {
        Check::bad(
            Verdict::Fail,
            "role",
            addr,
            format!("a {role}, not a master: it refuses writes (READONLY)"),
            "point leasehold at the master",
        )
    } else if !cluster && mode == "cluster" {
        Check::bad(
            Verdict::Fail,
            "role",
            addr,
            "a Redis Cluster node, addressed as one server",
            "pass --cluster (ClientBuilder::cluster): a name's keys are then routed to their slot's master",
        )
    } else {
        Check::ok("role", addr, format!("a {mode} master"))
    });
    out
}

/// Eviction and persistence, from `CONFIG GET` (a warning when refused).
async fn settings(conn: &mut impl ConnectionLike, addr: &str) -> Vec<Check> {
    let replies: Vec<Value> = match settings_pipe().query_async(conn).await {
        Ok(r) => r,
        Err(e) => {
            let why = if crate::acl::refused(&e).is_some() {
                "CONFIG GET is refused to this user".to_owned()
            } else {
                format!("CONFIG GET failed: {e}")
            };
            let fix =
                "run `leasehold doctor` as a user allowed CONFIG GET (an admin) to check them";
            return vec![
                Check::bad(
                    Verdict::Warn,
                    "persistence",
                    addr,
                    format!("not checked: {why}"),
                    fix,
                ),
                Check::bad(
                    Verdict::Warn,
                    "eviction",
                    addr,
                    format!("not checked: {why}"),
                    fix,
                ),
            ];
        }
    };
    let Some(s) = Settings::parse(replies) else {
        return vec![Check::bad(
            Verdict::Warn,
            "persistence",
            addr,
            "unexpected reply to CONFIG GET",
            "check eviction (maxmemory-policy) and persistence (appendonly, save) by hand",
        )];
    };
    let persistence = match s.persistence() {
        Some((what, fix)) => Check::bad(Verdict::Warn, "persistence", addr, what, fix),
        None => Check::ok(
            "persistence",
            addr,
            match (s.aof, s.save.is_empty()) {
                (true, true) => "append-only file".to_owned(),
                (true, false) => format!("append-only file, and RDB saves ({})", s.save),
                _ => format!(
                    "RDB saves only ({}): a restart loses the writes since the last save",
                    s.save
                ),
            },
        ),
    };
    let eviction = match s.eviction() {
        Some((what, fix)) => Check::bad(Verdict::Warn, "eviction", addr, what, fix),
        None => Check::ok("eviction", addr, "maxmemory-policy noeviction"),
    };
    vec![persistence, eviction]
}

/// `CLUSTER INFO`: the state is ok and every slot is served.
async fn cluster_state(conn: &mut impl ConnectionLike, addr: &str) -> Check {
    let info: String = match redis::cmd("CLUSTER").arg("INFO").query_async(conn).await {
        Ok(i) => i,
        Err(e) if crate::acl::refused(&e).is_some() => {
            return Check::bad(
                Verdict::Warn,
                "cluster",
                addr,
                "not checked: CLUSTER INFO is refused to this user",
                "run `leasehold doctor` as a user allowed CLUSTER INFO (an admin) to check the cluster's state",
            );
        }
        Err(e) => {
            return Check::bad(
                Verdict::Fail,
                "cluster",
                addr,
                format!("CLUSTER INFO failed: {e}"),
                "check the node: redis-cli --cluster check HOST:PORT",
            );
        }
    };
    let field = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .map(str::trim)
            .unwrap_or("?")
            .to_owned()
    };
    let (state, assigned, ok) = (
        field("cluster_state"),
        field("cluster_slots_assigned"),
        field("cluster_slots_ok"),
    );
    if state == "ok" && assigned == "16384" && ok == "16384" {
        Check::ok("cluster", addr, "cluster_state ok, all 16384 slots served")
    } else {
        Check::bad(
            Verdict::Fail,
            "cluster",
            addr,
            format!("cluster_state {state}, {assigned} slots assigned, {ok} served"),
            "assign every slot and recover failed masters: redis-cli --cluster check / fix HOST:PORT",
        )
    }
}

/// This host's clock against the server's (`TIME`, half the round trip
/// taken off), and the skew in ms (server ahead: positive).
async fn clock(conn: &mut impl ConnectionLike, addr: &str) -> (Check, Option<i64>) {
    let before = SystemTime::now();
    let sent = std::time::Instant::now();
    let time: redis::RedisResult<(u64, u64)> = redis::cmd("TIME").query_async(conn).await;
    let rtt = sent.elapsed();
    let (secs, micros) = match time {
        Ok(t) => t,
        Err(e) => {
            return (
                Check::bad(
                    Verdict::Warn,
                    "clock",
                    addr,
                    format!("TIME failed: {e}"),
                    "ACL SETUSER <user> +time (the scripts need it too)",
                ),
                None,
            );
        }
    };
    let ours = before.duration_since(UNIX_EPOCH).unwrap_or_default() + rtt / 2;
    let theirs = Duration::from_secs(secs) + Duration::from_micros(micros);
    let skew = theirs.as_millis() as i64 - ours.as_millis() as i64;
    let abs = Duration::from_millis(skew.unsigned_abs());
    let side = if skew >= 0 { "ahead of" } else { "behind" };
    let found = format!(
        "Redis's clock is {} {side} this host's (±{}, the round trip's half)",
        ms(abs),
        ms(rtt / 2)
    );
    let check = if abs > SKEW_WARN + rtt / 2 {
        Check::bad(
            Verdict::Warn,
            "clock",
            addr,
            found,
            "sync the clocks (NTP): leases do not depend on it (ttls run on each side's own clock), but fences rest on Redis's clock, and a clock that is off may be stepped back",
        )
    } else {
        Check::ok("clock", addr, found)
    };
    (check, Some(skew))
}

/// `d` in ms for people.
fn ms(d: Duration) -> String {
    crate::error::human(d)
}

/// A name as a glob that matches only itself.
fn glob_escape(name: &[u8]) -> String {
    let mut out = String::new();
    for c in String::from_utf8_lossy(name).chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
