//! What the servers of a deployment must be for leases to be safe, read
//! from the servers themselves: once per client at connect (warnings
//! through `tracing`), and on demand by [`Client::doctor`](crate::Client::doctor).

pub(crate) mod doctor;

use std::collections::HashMap;
use std::sync::Arc;

use redis::Value;

use crate::engine::Core;

/// The settings of a server that decide whether it can lose leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `maxmemory-policy`.
    pub(crate) policy: String,
    /// `maxmemory` in bytes (0: no limit).
    pub(crate) maxmemory: u64,
    /// `appendonly`.
    pub(crate) aof: bool,
    /// `save`: the RDB save points (empty: none).
    pub(crate) save: String,
}

/// The four `CONFIG GET`s whose replies [`Settings::parse`] reads; one
/// parameter each, as Redis 6.2 takes them.
pub(crate) fn settings_pipe() -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for param in ["maxmemory-policy", "maxmemory", "appendonly", "save"] {
        pipe.cmd("CONFIG").arg("GET").arg(param);
    }
    pipe
}

impl Settings {
    /// The settings from the replies to [`settings_pipe`].
    pub(crate) fn parse(replies: Vec<Value>) -> Option<Settings> {
        let mut all: HashMap<String, String> = HashMap::new();
        for reply in replies {
            let one: HashMap<String, String> = redis::from_redis_value(reply).ok()?;
            all.extend(one);
        }
        Some(Settings {
            policy: all.remove("maxmemory-policy")?,
            maxmemory: all.remove("maxmemory")?.parse().ok()?,
            aof: all.remove("appendonly")? == "yes",
            save: all.remove("save")?.trim().to_owned(),
        })
    }

    /// What eviction can do to leases under this policy, and what to do;
    /// `None` under `noeviction`.
    pub(crate) fn eviction(&self) -> Option<(String, &'static str)> {
        let limit = if self.maxmemory == 0 {
            " (maxmemory is 0 now: no limit, so nothing is evicted until one is set)"
        } else {
            ""
        };
        let policy = &self.policy;
        if policy == "noeviction" {
            None
        } else if policy.starts_with("allkeys-") {
            Some((
                format!(
                    "maxmemory-policy is {policy}: at maxmemory Redis may evict any key{limit}, a held lease as well as the fencing counters and fair queues (which have no TTL): another process can then take a lease its holder still uses"
                ),
                "set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf), or give leases a Redis of their own",
            ))
        } else {
            Some((
                format!(
                    "maxmemory-policy is {policy}: at maxmemory Redis may evict keys with a TTL{limit}, and every held lease has one (the fencing counters have none and stay): another process can then take a lease its holder still uses"
                ),
                "set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf), or give leases a Redis of their own",
            ))
        }
    }

    /// What a restart does to leases without persistence, and what to do;
    /// `None` when the server persists (AOF or RDB save points).
    pub(crate) fn persistence(&self) -> Option<(String, &'static str)> {
        (!self.aof && self.save.is_empty()).then(|| {
            (
                "no persistence (appendonly no, no save points): a restart comes back empty, and every lease held then is free at once while its holder still works (fences stay ahead only by the server's clock)".to_owned(),
                "set appendonly yes (appendfsync always where a lost acquire must never be seen twice), or delay restarts past the longest lease ttl",
            )
        })
    }
}

/// Reads every server's settings in the background, once for this client,
/// and warns through `tracing` of each that can lose leases. Silent
/// (a debug event) where the user may not read them (`CONFIG` is an admin
/// command) or a server does not answer.
pub(crate) fn warn_at_connect(core: &Arc<Core>) {
    let weak = Arc::downgrade(core);
    core.runtime.spawn(async move {
        let Some(core) = weak.upgrade() else { return };
        let answers = match core.backend.on_each_server(&settings_pipe()).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "leasehold: could not list the servers to read their settings");
                return;
            }
        };
        drop(core);
        for answer in answers {
            let addr = answer.addr;
            let settings = match answer.replies {
                Ok(replies) => Settings::parse(replies),
                Err(e) => {
                    tracing::debug!(server = %addr, error = %e, "leasehold: could not read the server's settings (CONFIG GET); not checking eviction and persistence");
                    continue;
                }
            };
            let Some(settings) = settings else {
                tracing::debug!(server = %addr, "leasehold: unexpected reply to CONFIG GET; not checking eviction and persistence");
                continue;
            };
            if let Some((what, fix)) = settings.eviction() {
                tracing::warn!(server = %addr, policy = %settings.policy, "leasehold: Redis can evict leases: {what}; {fix}");
            }
            if let Some((what, fix)) = settings.persistence() {
                tracing::warn!(server = %addr, "leasehold: Redis can lose leases on restart: {what}; {fix}");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::Settings;

    fn settings(policy: &str, aof: bool, save: &str) -> Settings {
        Settings {
            policy: policy.into(),
            maxmemory: 1 << 30,
            aof,
            save: save.into(),
        }
    }

    #[test]
    fn only_noeviction_keeps_every_lease() {
        assert!(settings("noeviction", true, "").eviction().is_none());
        let (what, fix) = settings("allkeys-lru", true, "").eviction().unwrap();
        assert!(what.contains("fencing counters"), "{what}");
        assert!(fix.contains("noeviction"));
        let (what, _) = settings("volatile-ttl", true, "").eviction().unwrap();
        assert!(what.contains("keys with a TTL"), "{what}");
    }

    #[test]
    fn either_aof_or_save_points_persist() {
        assert!(settings("noeviction", true, "").persistence().is_none());
        assert!(
            settings("noeviction", false, "3600 1")
                .persistence()
                .is_none()
        );
        let (what, fix) = settings("noeviction", false, "").persistence().unwrap();
        assert!(what.contains("no persistence") && fix.contains("appendonly yes"));
    }

    #[test]
    fn config_replies_parse_in_resp2_and_resp3() {
        use redis::Value::{Array, BulkString, Map};
        let pair = |k: &str, v: &str| {
            Array(vec![
                BulkString(k.as_bytes().to_vec()),
                BulkString(v.as_bytes().to_vec()),
            ])
        };
        let s = Settings::parse(vec![
            pair("maxmemory-policy", "allkeys-lru"),
            pair("maxmemory", "0"),
            Map(vec![(
                BulkString(b"appendonly".to_vec()),
                BulkString(b"no".to_vec()),
            )]),
            pair("save", ""),
        ])
        .unwrap();
        assert_eq!(s, settings("allkeys-lru", false, "").with_max(0));
    }

    impl Settings {
        fn with_max(mut self, m: u64) -> Settings {
            self.maxmemory = m;
            self
        }
    }
}
