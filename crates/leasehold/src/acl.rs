//! The Redis ACL rule leasehold needs, and how a refusal by ACL is told.
//!
//! See [`acl_rule`] for the rule and why each part of it is there.

/// Every command leasehold sends, as Redis ACL names them (`command` or
/// `command|subcommand`), in the order of [`acl_rule`]'s `+` list.
///
/// - `ping`: the check at connect (and Redlock's probes of a silent master);
/// - `evalsha`, `eval`, `script|load`: every operation is a Lua script, run
///   by its SHA1, sent whole (`EVAL`) when the server does not know it yet
///   (after a restart or `SCRIPT FLUSH`); Redlock loads its scripts on each
///   master with `SCRIPT LOAD`;
/// - what the scripts call (Redis checks every command a script runs
///   against the user running it): `get set del exists incr pexpire
///   pexpireat pttl time publish pubsub|numsub zadd zcard zrange
///   zrangebyscore zrank zrem zremrangebyscore zscore hdel hget hkeys hlen
///   hset`;
/// - `subscribe`, `unsubscribe`: the one subscriber connection of a client,
///   through which waiters hear of releases;
/// - `scan`: [`Client::list`](crate::Client::list) (reading a status uses
///   commands above);
/// - Redis Cluster only: `spublish`, `pubsub|shardnumsub`, `ssubscribe`,
///   `sunsubscribe` (sharded pub/sub), `cluster|slots` (the slot map),
///   `asking` (a slot on the move).
///
/// `AUTH` and `HELLO` are allowed to every user. redis-rs also sends
/// `CLIENT SETINFO` at connect (Redis 7.2 and later) and ignores a
/// refusal, so it is not needed.
///
/// ```
/// assert!(leasehold::ACL_COMMANDS.contains(&"evalsha"));
/// ```
pub const ACL_COMMANDS: &[&str] = &[
    "ping",
    "evalsha",
    "eval",
    "script|load",
    "get",
    "set",
    "del",
    "exists",
    "incr",
    "pexpire",
    "pexpireat",
    "pttl",
    "time",
    "publish",
    "pubsub|numsub",
    "zadd",
    "zcard",
    "zrange",
    "zrangebyscore",
    "zrank",
    "zrem",
    "zremrangebyscore",
    "zscore",
    "hdel",
    "hget",
    "hkeys",
    "hlen",
    "hset",
    "subscribe",
    "unsubscribe",
    "scan",
    "spublish",
    "pubsub|shardnumsub",
    "ssubscribe",
    "sunsubscribe",
    "cluster|slots",
    "asking",
];

/// The commands [`Client::optimistic`](crate::Client::optimistic) adds to
/// [`ACL_COMMANDS`] (besides your own data commands, and your keys).
///
/// ```
/// assert!(leasehold::ACL_TRANSACTION_COMMANDS.contains(&"watch"));
/// ```
pub const ACL_TRANSACTION_COMMANDS: &[&str] = &["watch", "unwatch", "multi", "exec", "discard"];

/// The least-privilege Redis ACL rule (Redis 7; see below for 6.2) for a
/// leasehold user whose names all start with `prefix` (`""`: any name,
/// then every key and channel: `~* &*`).
///
/// Give it to `ACL SETUSER` after the user's name, `on` and its password:
///
/// ```
/// let rule = leasehold::acl_rule("jobs/");
/// assert!(rule.starts_with("resetkeys resetchannels -@all ~jobs/* ~leasehold:{jobs/*"));
/// // redis-cli ACL SETUSER app on '>secret' <the words of `rule`>
/// // then connect as redis://app:secret@host:6379
/// println!("ACL SETUSER app on >secret {rule}");
/// ```
///
/// For the prefix `jobs/` the rule is (one line, wrapped here):
///
/// ```text
/// resetkeys resetchannels -@all
/// ~jobs/* ~leasehold:{jobs/* ~{????}:leasehold:{jobs/*
/// &jobs/* &leasehold:{jobs/* &{????}:leasehold:{jobs/*
/// +ping +evalsha +eval +script|load
/// +get +set +del +exists +incr +pexpire +pexpireat +pttl +time +publish +pubsub|numsub
/// +zadd +zcard +zrange +zrangebyscore +zrank +zrem +zremrangebyscore +zscore
/// +hdel +hget +hkeys +hlen +hset +subscribe +unsubscribe +scan
/// +spublish +pubsub|shardnumsub +ssubscribe +sunsubscribe +cluster|slots +asking
/// ```
///
/// Why each part:
///
/// - `resetkeys resetchannels -@all` start from nothing;
/// - the keys (`~`): a lease named `N` is the key `N` itself, and its
///   companions are `leasehold:{N}:fence` (and `:queue`, `:permits`,
///   `:readers`, ... for fair leases, semaphores and read-write locks), or
///   `N:leasehold:fence` when `N` has a hash tag, or
///   `{T}:leasehold:{N}:fence` (`T` four characters) when `N` has a `}`
///   but no tag: the three patterns cover the three forms for names
///   starting with the prefix;
/// - the channels (`&`): a release publishes on `leasehold:{N}:wake`
///   (`:rwwake` for a read-write lock), in the same three forms;
/// - the commands (`+`): exactly [`ACL_COMMANDS`]. The last six are for
///   Redis Cluster only; on one server, or over Redlock, they may be left
///   out. Redis 6.2 has no sharded pub/sub: leave them out there.
///
/// Add, when you use them:
///
/// - [`Client::optimistic`](crate::Client::optimistic):
///   `+watch +unwatch +multi +exec +discard` ([`ACL_TRANSACTION_COMMANDS`]),
///   with your data's keys and commands;
/// - your [`Script`](crate::Script)s and
///   [`LeaseScript`](crate::LeaseScript)s: the commands they call, and their
///   keys;
/// - [`Client::single_flight`](crate::Client::single_flight): the cache
///   keys (`~cache:*`), whose rebuild lease is named
///   `leasehold:rebuild:{K}` (`~leasehold:rebuild:*` and
///   `&leasehold:rebuild:*`);
/// - a database other than 0 in the URL (`redis://.../2`): `+select`;
/// - [`ClientBuilder::replicas`](crate::ClientBuilder::replicas) (`--replicas`):
///   `+incrby +wait` (a write that changes nothing, then `WAIT`);
/// - [`Client::force_release`](crate::Client::force_release) (`leasehold
///   release --force`, an operator's tool): `&leasehold:forced`, where it
///   announces the release.
///
/// Each client reads the server's settings once at connect (`CONFIG GET`,
/// to warn of eviction and of no persistence, see
/// [`ClientBuilder::connect`](crate::ClientBuilder::connect)); the rule
/// leaves `config|get` out, as it can read secrets (`masterauth`), so a
/// restricted user's connect leaves one refused `config|get` in `ACL LOG`,
/// and the check is skipped. `leasehold doctor`, run by an admin user,
/// checks the same settings.
///
/// A command refused by ACL fails with [`ErrorKind::Redis`](crate::ErrorKind::Redis),
/// [`Error::is_permission_denied`](crate::Error::is_permission_denied), whose
/// message names what was refused and points here; `leasehold doctor`
/// tries every command of the rule and names each one missing.
pub fn acl_rule(prefix: &str) -> String {
    let p = glob_escape(prefix);
    let mut rule = String::from("resetkeys resetchannels -@all");
    for sigil in ['~', '&'] {
        // Redis refuses patterns after `*`, which covers them all.
        let forms = if p.is_empty() {
            vec!["*".to_owned()]
        } else {
            vec![
                format!("{p}*"),
                format!("leasehold:{{{p}*"),
                format!("{{????}}:leasehold:{{{p}*"),
            ]
        };
        for form in forms {
            rule.push(' ');
            rule.push(sigil);
            rule.push_str(&form);
        }
    }
    for command in ACL_COMMANDS {
        rule.push_str(" +");
        rule.push_str(command);
    }
    rule
}

/// `s` with the characters of Redis's glob patterns escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What ACL refused, when `e` is a refusal by ACL: the command named by
/// Redis (`the 'evalsha' command`), or a key, or a channel, either sent
/// directly (`NOPERM`) or run by a script (Redis then says `ERR The user
/// executing the script can't ...`, or `ACL failure in script` from 7.2 on).
pub(crate) fn refused(e: &redis::RedisError) -> Option<String> {
    let detail = e.detail().unwrap_or_default();
    let in_script = detail.contains("The user executing the script can't")
        || detail.contains("ACL failure in script");
    let noperm = e.code() == Some("NOPERM")
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm);
    if !noperm && !in_script {
        return None;
    }
    let what = if let Some(command) = quoted_command(detail) {
        format!("the '{command}' command")
    } else if detail.contains("channel") || detail.contains("publish") {
        "a channel (a name's wake channel)".to_owned()
    } else if detail.contains("key") {
        "a key (the name or one of its leasehold:... companions)".to_owned()
    } else if in_script {
        "a command".to_owned()
    } else {
        "a command, key or channel".to_owned()
    };
    Some(if in_script {
        format!("{what}, run by the script")
    } else {
        what
    })
}

/// `X` in Redis's `... to run the 'X' command`.
fn quoted_command(detail: &str) -> Option<&str> {
    let rest = &detail[detail.find("to run the '")? + "to run the '".len()..];
    Some(&rest[..rest.find('\'')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str, detail: &str) -> redis::RedisError {
        redis::make_extension_error(code.to_owned(), Some(detail.to_owned()))
    }

    #[test]
    fn the_rule_covers_each_key_form_of_its_prefix() {
        let rule = acl_rule("jobs/");
        for part in [
            "~jobs/*",
            "~leasehold:{jobs/*",
            "~{????}:leasehold:{jobs/*",
            "&jobs/*",
            "&leasehold:{jobs/*",
            "+evalsha",
            "+pubsub|numsub",
        ] {
            assert!(rule.split(' ').any(|w| w == part), "{part} in {rule}");
        }
        assert!(acl_rule("a*b").contains("~a\\*b*"));
        let all = acl_rule("");
        assert!(all.contains(" ~* &* +ping "), "{all}");
    }

    #[test]
    fn refusals_name_what_was_refused() {
        let e = err(
            "NOPERM",
            "this user has no permissions to run the 'evalsha' command",
        );
        assert_eq!(refused(&e).unwrap(), "the 'evalsha' command");
        let e = err(
            "NOPERM",
            "this user has no permissions to access one of the channels used as arguments",
        );
        assert!(refused(&e).unwrap().starts_with("a channel"));
        let e = err(
            "ERR",
            "The user executing the script can't access at least one of the keys mentioned in the command arguments script: 4a1e, on @user_script:1.",
        );
        assert!(refused(&e).unwrap().starts_with("a key"), "{e}");
        assert!(refused(&e).unwrap().ends_with("run by the script"));
        let e = err(
            "ERR",
            "ACL failure in script: this user has no permissions to run the 'set' command script: 1, on @user_script:1.",
        );
        assert_eq!(refused(&e).unwrap(), "the 'set' command, run by the script");
        assert_eq!(refused(&err("ERR", "unknown command")), None);
    }
}
