//! The Lua scripts of DESIGN §3, each a file in this directory, hashed
//! once, called by EVALSHA with one fallback to EVAL on NOSCRIPT (EVAL also
//! loads the script, so the next EVALSHA finds it).
//!
//! One file per family: [`lease`] (acquire, release, extend, handover,
//! batch of plain leases), [`fair`] (the queue of fair leases), [`semaphore`]
//! and [`rwlock`]. Each holds its scripts and a typed call per script,
//! which owns the order of KEYS and ARGV; this module runs them ([`Lua`])
//! and picks the family by the [`Family`] of a name's keys. Data only ever
//! travels in KEYS and ARGV, never in a script's source, and the number of
//! KEYS is counted from the keys a call passes, never written by hand.

use std::borrow::Cow;

use redis::aio::ConnectionLike;
use redis::{Cmd, FromRedisValue, RedisResult};

use crate::keys::{Family, LeaseKeys};

/// The fencing rule (`fence.lua`: `next_fence` and the fences of shared
/// holders) as Lua functions, the head of every script that grants: one
/// rule for every kind, in one place.
macro_rules! with_fences {
    ($($file:literal),+) => {
        concat!(include_str!("fence.lua"), $(include_str!($file)),+)
    };
}

/// How waiters are woken (`wake.lua`: `wake` publishes on a wake channel,
/// `listeners` counts who listens) as Lua functions, the head of every
/// script that releases or leaves a queue: a deployment whose waiters
/// listen otherwise changes that one file.
macro_rules! with_wake {
    ($($file:literal),+) => {
        concat!(include_str!("wake.lua"), $(include_str!($file)),+)
    };
}

/// The same with `wake_sharded.lua`: for Redis Cluster, whose waiters
/// listen by sharded pub/sub.
macro_rules! with_sharded_wake {
    ($($file:literal),+) => {
        concat!(include_str!("wake_sharded.lua"), $(include_str!($file)),+)
    };
}

/// A script that wakes waiters, in both pub/sub flavours (see [`Waking`]).
macro_rules! waking {
    (fences, $($file:literal),+) => {
        Waking {
            classic: Lua::new(concat!(include_str!("fence.lua"), include_str!("wake.lua"), $(include_str!($file)),+)),
            sharded: Lua::new(concat!(include_str!("fence.lua"), include_str!("wake_sharded.lua"), $(include_str!($file)),+)),
        }
    };
    ($($file:literal),+) => {
        Waking {
            classic: Lua::new(with_wake!($($file),+)),
            sharded: Lua::new(with_sharded_wake!($($file),+)),
        }
    };
}

/// Both heads: for the scripts that grant and wake (a hand-over).
macro_rules! with_fences_and_wake {
    ($($file:literal),+) => {
        concat!(include_str!("fence.lua"), include_str!("wake.lua"), $(include_str!($file)),+)
    };
}

/// The plain lease's operations as Lua functions (after the fencing rule
/// and the wake), the head of acquire, release and batch.
macro_rules! with_lease_ops {
    ($file:literal) => {
        with_fences_and_wake!("lease_ops.lua", $file)
    };
}

mod fair;
mod lease;
mod rwlock;
mod semaphore;

pub(crate) use fair::{Left, fair_leave, waiter_id};
pub(crate) use lease::{
    BatchOp, HandoverReply, Next, batch, batch_on_node, bump_fence, handover, raise_fence,
};

/// Every script a Redlock master runs (plain leases and semaphores, their
/// classic pub/sub flavour), to load on each master as it connects: there
/// an EVALSHA that finds no script must not be followed by an EVAL, a
/// second command that a later one could overtake (see
/// `backend::redlock`).
pub(crate) fn redlock_scripts() -> Vec<&'static Lua> {
    let mut all = lease::redlock_scripts();
    all.extend(semaphore::redlock_scripts());
    all
}

/// How waiters listen for releases: classic pub/sub (one server), or
/// sharded pub/sub (Redis Cluster: the channel lives on its slot's master,
/// and `SPUBLISH` / `PUBSUB SHARDNUMSUB` reach it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pubsub {
    /// PUBLISH / PUBSUB NUMSUB.
    Classic,
    /// SPUBLISH / PUBSUB SHARDNUMSUB.
    Sharded,
}

/// A script that wakes waiters, built with `wake.lua` and with
/// `wake_sharded.lua`; the backend says which one runs.
pub(crate) struct Waking {
    classic: Lua,
    sharded: Lua,
}

impl Waking {
    pub(crate) fn get(&self, pubsub: Pubsub) -> &Lua {
        match pubsub {
            Pubsub::Classic => &self.classic,
            Pubsub::Sharded => &self.sharded,
        }
    }
}

/// A Lua script of ours or of a user, as sent to Redis: its source and its
/// SHA1, computed once. (The public [`crate::Script`] wraps one.)
pub(crate) struct Lua {
    src: Cow<'static, str>,
    sha: String,
}

impl Lua {
    pub(crate) fn new(src: impl Into<Cow<'static, str>>) -> Lua {
        let src = src.into();
        let sha = redis::Script::new(&src).get_hash().to_owned();
        Lua { src, sha }
    }

    /// The script's source.
    pub(crate) fn src(&self) -> &str {
        &self.src
    }

    pub(crate) fn sha(&self) -> &str {
        &self.sha
    }

    /// Runs the script with `keys` as KEYS (their count sent first) and
    /// what `argv` appends as ARGV.
    pub(crate) async fn call<T: FromRedisValue>(
        &self,
        conn: &mut impl ConnectionLike,
        keys: &[&[u8]],
        argv: impl Fn(&mut Cmd),
    ) -> RedisResult<T> {
        self.call_raw(conn, |c| {
            c.arg(keys.len());
            for key in keys {
                c.arg(*key);
            }
            argv(c);
        })
        .await
    }

    /// Runs the script: `fill` appends numkeys, KEYS and ARGV. For user
    /// scripts, whose keys come as a list; ours go through [`Lua::call`].
    pub(crate) async fn call_raw<T: FromRedisValue>(
        &self,
        conn: &mut impl ConnectionLike,
        fill: impl Fn(&mut Cmd),
    ) -> RedisResult<T> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha);
        fill(&mut cmd);
        match cmd.query_async(conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(&*self.src);
                fill(&mut cmd);
                cmd.query_async(conn).await
            }
            other => other,
        }
    }
}

/// What a waiting acquire tells the script about itself.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WaitInfo<'a> {
    /// Write lock: how long a waiting writer's intent lives (0: no intent).
    pub(crate) intent_ms: u64,
    /// Fair lease or semaphore: the waiter's id in the queue.
    pub(crate) waiter_id: &'a str,
    /// Fair lease or semaphore: how long the waiter keeps its place in the
    /// queue unless it comes back (0: it will not wait).
    pub(crate) patience_ms: u64,
    /// Fair lease: this attempt's number, kept with the waiter's claim; a
    /// release's grant names it (see `scripts::fair`).
    pub(crate) attempt: u64,
}

/// The reply of the acquire script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Taken; the fencing token.
    Yes(u64),
    /// Held by another token; its PTTL in ms (-1: no TTL). For a
    /// semaphore: all permits held, the earliest expires in this many ms.
    No(i64),
    /// A semaphore's permits are in use with another limit.
    LimitMismatch(u32),
}

/// An acquire script's reply `{ok, n}` as [`Acquired`].
pub(crate) fn acquired(ok: i64, n: i64) -> Acquired {
    match ok {
        1 => Acquired::Yes(n.max(0) as u64),
        -1 => Acquired::LimitMismatch(n.clamp(0, u32::MAX as i64) as u32),
        _ => Acquired::No(n),
    }
}

/// What a release script did, and whether the caller must wake its own
/// local waiters: the script's publish of the caller's id comes back to
/// the caller's subscriber, which skips it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Released {
    /// The token held nothing; nothing changed, nobody was told.
    NotHeld,
    /// Released; the publish carries the caller's id: wake local waiters.
    Yes,
    /// Released; the publish names each waiter whose turn it is, in
    /// whichever process (fair mode), and nobody else may take it.
    Named,
    /// Released, and given in the same script to the fair lease's queue
    /// head, the waiter `to` (its id), with `fence`: the publish tells it
    /// alone (`g:<id>:<fence>`), and a local waiter is told at once.
    Granted {
        /// The fence of the grant.
        fence: u64,
        /// The waiter's id.
        to: crate::token::Token,
        /// The number of the waiter's attempt that set the deadline its
        /// claim window was cut to.
        attempt: u64,
    },
    /// Not held, but the token's writer intent was withdrawn: readers held
    /// back by it may go in, so wake local waiters.
    Withdrawn,
}

impl Released {
    /// Whether the token held the lease (or permit) and gave it back.
    pub(crate) fn released(self) -> bool {
        matches!(
            self,
            Released::Yes | Released::Named | Released::Granted { .. }
        )
    }

    /// Whether the caller must wake its local waiters itself.
    pub(crate) fn wakes_local(self) -> bool {
        matches!(self, Released::Yes | Released::Withdrawn)
    }
}

/// Takes the lease, permit or lock of `keys` for `token`, by its kind's
/// script: acquire (plain), fair_acquire, sem_acquire / sem_fair_acquire,
/// rw_read_acquire / rw_write_acquire; a waiting writer's intent lives
/// `wait.intent_ms`. Every fence follows `fence.lua`'s rule.
pub(crate) async fn acquire(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
    token: &[u8],
    ttl_ms: u64,
    wait: &WaitInfo<'_>,
) -> RedisResult<Acquired> {
    match keys.family() {
        Family::Lease => lease::acquire(conn, keys, token, ttl_ms).await,
        Family::Fair(q) => fair::fair_acquire(conn, keys, q, token, ttl_ms, wait).await,
        Family::Permit { fair, .. } => {
            let p = semaphore::Permit::of(keys);
            match fair {
                Some(q) => semaphore::sem_fair_acquire(conn, &p, q, token, ttl_ms, wait).await,
                None => semaphore::sem_acquire(conn, &p, token, ttl_ms).await,
            }
        }
        Family::Read(rw) => rwlock::rw_read_acquire(conn, keys, rw, token, ttl_ms).await,
        Family::Write(rw) => {
            rwlock::rw_write_acquire(conn, keys, rw, token, ttl_ms, wait.intent_ms).await
        }
    }
}

/// Gives back what `token` holds of `keys`, by its kind's script; each
/// publishes `publisher` (the caller's id) on the wake channel, or, for
/// fair ones, the ids of the waiters whose turn it is (see [`Released`]).
pub(crate) async fn release(
    conn: &mut impl ConnectionLike,
    pubsub: Pubsub,
    keys: &LeaseKeys,
    token: &[u8],
    publisher: &[u8],
) -> RedisResult<Released> {
    match keys.family() {
        Family::Lease => lease::release(conn, pubsub, keys, token, publisher).await,
        Family::Fair(q) => fair::fair_release(conn, pubsub, keys, q, token, publisher).await,
        Family::Permit { fair, .. } => {
            let p = semaphore::Permit::of(keys);
            match fair {
                Some(q) => semaphore::sem_fair_release(conn, pubsub, &p, q, token, publisher).await,
                None => semaphore::sem_release(conn, pubsub, &p, token, publisher).await,
            }
        }
        Family::Read(rw) => rwlock::rw_read_release(conn, pubsub, keys, rw, token, publisher).await,
        Family::Write(rw) => {
            rwlock::rw_write_release(conn, pubsub, keys, rw, token, publisher).await
        }
    }
}

/// Resets the TTL of what `token` holds of `keys` -> extended? A fair
/// lease and a write lock are strings holding the token, as a plain lease.
pub(crate) async fn extend(
    conn: &mut impl ConnectionLike,
    keys: &LeaseKeys,
    token: &[u8],
    ttl_ms: u64,
) -> RedisResult<bool> {
    match keys.family() {
        Family::Lease | Family::Fair(_) => lease::extend(conn, keys.name(), token, ttl_ms).await,
        Family::Write(rw) => lease::extend(conn, &rw.writer, token, ttl_ms).await,
        Family::Permit { .. } => {
            semaphore::sem_extend(conn, &semaphore::Permit::of(keys), token, ttl_ms).await
        }
        Family::Read(rw) => rwlock::rw_read_extend(conn, rw, token, ttl_ms).await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use redis::{Arg, Pipeline, RedisFuture, Value};

    use super::*;

    /// A connection that answers EVALSHA with NOSCRIPT, so that every call
    /// sends its script's source too (EVAL), and keeps what it was sent.
    struct Wire {
        sent: Vec<Vec<Vec<u8>>>,
        reply: Value,
    }

    impl ConnectionLike for Wire {
        fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
            let args: Vec<Vec<u8>> = cmd
                .args_iter()
                .map(|a| match a {
                    Arg::Simple(b) => b.to_vec(),
                    _ => panic!("a script call has only simple arguments"),
                })
                .collect();
            let reply = if args[0] == b"EVALSHA" {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Server(redis::ServerErrorKind::NoScript),
                    "no script",
                )))
            } else {
                Ok(self.reply.clone())
            };
            self.sent.push(args);
            Box::pin(async move { reply })
        }

        fn req_packed_commands<'a>(
            &'a mut self,
            _: &'a Pipeline,
            _: usize,
            _: usize,
        ) -> RedisFuture<'a, Vec<Value>> {
            panic!("scripts are not pipelined")
        }

        fn get_db(&self) -> i64 {
            0
        }
    }

    /// One script call as it reached Redis.
    struct Sent {
        src: String,
        keys: usize,
        argv: usize,
        /// Operations in the call (a batch has several).
        ops: usize,
    }

    impl Wire {
        fn new(reply: Value) -> Wire {
            Wire {
                sent: Vec::new(),
                reply,
            }
        }

        /// The one call sent: EVALSHA, then EVAL with the same numkeys,
        /// KEYS and ARGV.
        fn call(self, ops: usize) -> Sent {
            let [sha, eval] = &self.sent[..] else {
                panic!("{} commands sent, not EVALSHA and EVAL", self.sent.len());
            };
            assert_eq!((&sha[0][..], &eval[0][..]), (&b"EVALSHA"[..], &b"EVAL"[..]));
            assert_eq!(sha[2..], eval[2..], "EVALSHA and EVAL differ");
            let keys: usize = std::str::from_utf8(&eval[2]).unwrap().parse().unwrap();
            Sent {
                src: String::from_utf8(eval[1].clone()).unwrap(),
                keys,
                argv: eval.len() - 3 - keys,
                ops,
            }
        }
    }

    /// What stands between `name[` and `]` in the comments and in the code
    /// of `src`.
    fn indices(src: &str, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let (mut comments, mut code) = (BTreeSet::new(), BTreeSet::new());
        for line in src.lines() {
            let (text, into) = match line.trim_start().strip_prefix("--") {
                Some(comment) => (comment, &mut comments),
                None => (line.split("--").next().unwrap(), &mut code),
            };
            let open = format!("{name}[");
            for (at, _) in text.match_indices(&open) {
                let rest = &text[at + open.len()..];
                into.insert(rest[..rest.find(']').unwrap()].to_owned());
            }
        }
        (comments, code)
    }

    /// Checks that the call sent as many `name` (KEYS or ARGV) as its
    /// script's header lists and its code reads: `name[1]` to `name[n]`,
    /// or, for a batch, `name[ki]` etc.: k per operation.
    fn check_count(call: &Sent, name: &str, sent: usize) {
        let (header, code) = indices(&call.src, name);
        // The body's first line is `-- name: what it does`.
        let script = call
            .src
            .lines()
            .filter_map(|l| l.strip_prefix("-- ")?.split_once(": "))
            .find(|(name, _)| name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .map_or("?", |(name, _)| name);
        let per_op = header
            .iter()
            .filter_map(|i| i.split_once('i').and_then(|(k, _)| k.parse::<usize>().ok()))
            .max();
        if let Some(k) = per_op {
            assert_eq!(sent, k * call.ops, "{name} of {script}.lua");
            return;
        }
        let all: BTreeSet<String> = (1..=sent).map(|i| i.to_string()).collect();
        assert_eq!(header, all, "{name} in the header of {script}.lua");
        assert_eq!(code, all, "{name} in the code of {script}.lua");
    }

    fn pair(a: i64, b: i64) -> Value {
        Value::Array(vec![Value::Int(a), Value::Int(b)])
    }

    /// Every script is called with exactly the KEYS and ARGV that its
    /// header lists and its code reads: a guard against the Rust call and
    /// the .lua file drifting apart.
    #[tokio::test]
    async fn every_call_sends_the_keys_and_argv_its_script_lists() {
        let wait = WaitInfo {
            intent_ms: 5,
            waiter_id: "w1",
            patience_ms: 9,
            attempt: 3,
        };
        let mut calls = Vec::new();
        for keys in [
            LeaseKeys::new(b"n"),
            LeaseKeys::fair(b"n"),
            LeaseKeys::semaphore(b"n", 3, false),
            LeaseKeys::semaphore(b"n", 3, true),
            LeaseKeys::rwlock(b"n", false),
            LeaseKeys::rwlock(b"n", true),
        ] {
            let mut w = Wire::new(pair(1, 7));
            acquire(&mut w, &keys, b"t", 1000, &wait).await.unwrap();
            calls.push(w.call(1));
            let fair_lease = matches!(keys.family(), Family::Fair(_));
            let ints = |n: &[i64]| Value::Array(n.iter().map(|&i| Value::Int(i)).collect());
            let mut w = Wire::new(if fair_lease {
                Value::Array(vec![
                    Value::Int(2),
                    Value::Int(0),
                    Value::BulkString(Vec::new()),
                    Value::Int(0),
                ])
            } else {
                Value::Int(1)
            });
            release(&mut w, Pubsub::Classic, &keys, b"t", b"me")
                .await
                .unwrap();
            calls.push(w.call(1));
            let mut w = Wire::new(Value::Int(1));
            extend(&mut w, &keys, b"t", 1000).await.unwrap();
            calls.push(w.call(1));
            let mut w = Wire::new(if fair_lease {
                let mut v = ints(&[1, 0, 0]);
                if let Value::Array(a) = &mut v {
                    a.push(Value::BulkString(Vec::new()));
                    a.push(Value::Int(0));
                }
                v
            } else {
                Value::Int(1)
            });
            let queued = fair_leave(&mut w, Pubsub::Classic, &keys, "w1", b"t", b"me")
                .await
                .unwrap()
                .queued;
            if keys.is_fair() {
                assert!(queued);
                calls.push(w.call(1));
            } else {
                assert!(!queued && w.sent.is_empty(), "{:?}", keys.family());
            }
        }
        let (a, b) = (LeaseKeys::new(b"a"), LeaseKeys::new(b"b"));
        let mut w = Wire::new(Value::Int(5));
        handover(
            &mut w,
            Pubsub::Classic,
            &a,
            b"t",
            Next {
                token: b"u",
                ttl_ms: 1000,
                tolerated: 1,
            },
            b"me",
        )
        .await
        .unwrap();
        calls.push(w.call(1));
        let ops: [(BatchOp, &LeaseKeys, &[u8]); 3] = [
            (BatchOp::Acquire { ttl_ms: 1000 }, &a, b"t"),
            (BatchOp::Release, &b, b"u"),
            (BatchOp::Acquire { ttl_ms: 10 }, &b, b"v"),
        ];
        let mut w = Wire::new(Value::Array((0..6).map(Value::Int).collect()));
        batch(&mut w, &ops, b"me").await.unwrap();
        calls.push(w.call(ops.len()));
        let mut w = Wire::new(Value::Array((0..6).map(Value::Int).collect()));
        batch_on_node(&mut w, &ops, b"me").await.unwrap();
        calls.push(w.call(ops.len()));
        let mut w = Wire::new(Value::Int(1));
        raise_fence(&mut w, &a, 1 << 50).await.unwrap();
        calls.push(w.call(1));
        let mut w = Wire::new(Value::Int(1 << 50));
        bump_fence(&mut w, &a).await.unwrap();
        calls.push(w.call(1));

        for call in &calls {
            check_count(call, "KEYS", call.keys);
            check_count(call, "ARGV", call.argv);
        }
        // Every script of this directory was among them.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/scripts");
        let shared = [
            "fence.lua",
            "fair_queue.lua",
            "fair_hand_on.lua",
            "lease_ops.lua",
            "lease_scoped_prelude.lua",
            "wake.lua",
            "wake_sharded.lua",
        ];
        let mut checked = 0;
        for file in std::fs::read_dir(dir).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if !name.ends_with(".lua") || shared.contains(&name.as_str()) {
                continue;
            }
            let body = std::fs::read_to_string(&path).unwrap();
            assert!(
                calls.iter().any(|c| c.src.ends_with(&body)),
                "{name}: no call of it was checked"
            );
            checked += 1;
        }
        assert_eq!(checked, 22);
    }

    /// Only `wake.lua` and `wake_sharded.lua` say how a wake channel is
    /// published to or counted: the backend picks one of the two flavours
    /// of every waking script, which differ in that head only.
    #[test]
    fn only_the_wake_prelude_publishes() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/scripts");
        for file in std::fs::read_dir(dir).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if !name.ends_with(".lua") || name.starts_with("wake") {
                continue;
            }
            let body = std::fs::read_to_string(&path).unwrap();
            let code: String = body
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect();
            for word in ["PUBLISH", "PUBSUB"] {
                assert!(
                    !code.contains(word),
                    "{name} calls {word} itself; use wake.lua's functions"
                );
            }
        }
    }
}
