//! The one error type of testkit.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// What went wrong while finding, starting or restarting `redis-server`, or
/// while setting up or changing a cluster of them.
///
/// The messages say what to do next; print them with `{}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No `redis-server` executable was found.
    #[error("{}", not_found_message(.env.as_deref()))]
    NotFound {
        /// The value of `$LEASEHOLD_REDIS_SERVER` if it was set (and is not
        /// an executable file); `None` if `PATH` was searched.
        env: Option<PathBuf>,
    },

    /// No `redis-sentinel` executable was found, which
    /// [`RedisSentinel`](crate::RedisSentinel) needs.
    #[error(
        "redis-sentinel was not found{}. Install it: `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-sentinel`, or run `cargo xtask setup`",
        .env.as_ref().map(|p| format!(" (LEASEHOLD_REDIS_SENTINEL is set to {}, which is not an executable file)", p.display())).unwrap_or_default()
    )]
    SentinelNotFound {
        /// The value of `$LEASEHOLD_REDIS_SENTINEL` if it was set (and is
        /// not an executable file); `None` if `PATH` was searched.
        env: Option<PathBuf>,
    },

    /// The `redis-server` executable was found but could not be run.
    #[error("failed to run {}: {source}; check that it is an executable redis-server binary", .binary.display())]
    Spawn {
        /// The executable that was run.
        binary: PathBuf,
        /// Why the operating system refused.
        source: std::io::Error,
    },

    /// `redis-server` exited before it answered `PING`.
    #[error(
        "redis-server on port {port} exited during start-up ({status}); the end of its log says why:\n{log}"
    )]
    Exited {
        /// The port it was told to listen on.
        port: u16,
        /// How it exited.
        status: ExitStatus,
        /// The last lines it logged during this start.
        log: String,
    },

    /// `redis-server` was running but did not answer `PING` in time. It has
    /// been killed.
    #[error(
        "redis-server on port {port} did not answer PING within {waited:?} (is the machine overloaded?); the end of its log:\n{log}"
    )]
    NoPong {
        /// The port it was told to listen on.
        port: u16,
        /// How long testkit waited.
        waited: Duration,
        /// The last lines it logged during this start.
        log: String,
    },

    /// The certificates of a TLS server could not be generated.
    #[error("could not generate the TLS certificates: {0}")]
    Tls(String),

    /// libfaketime, needed for [`ServerOptions::faketime`], was not found.
    ///
    /// [`ServerOptions::faketime`]: crate::ServerOptions::faketime
    #[error(
        "libfaketime was not found{}. Install it: `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y faketime`, or run `cargo xtask setup`",
        .env.as_ref().map(|p| format!(" (LEASEHOLD_LIBFAKETIME is set to {}, which is not a file)", p.display())).unwrap_or_default()
    )]
    FaketimeNotFound {
        /// The value of `$LEASEHOLD_LIBFAKETIME` if it was set (and is not a
        /// file); `None` if the usual places were searched.
        env: Option<PathBuf>,
    },

    /// A command testkit sent to a cluster node to set up or change the
    /// cluster failed: no connection, no reply in time, or a reply other
    /// than the expected one.
    #[error("redis-server on port {port} did not do `{command}`: {reply}")]
    Command {
        /// The node's port.
        port: u16,
        /// The command, arguments separated by spaces.
        command: String,
        /// The reply (`-ERR ...`), or the I/O error that stood in for one.
        reply: String,
    },

    /// A [`RedisCluster`] did not settle in time: its nodes did not all
    /// report `cluster_state:ok`, agree on who serves which slot, or have
    /// their replicas attached. The nodes keep running until the cluster
    /// value is dropped.
    ///
    /// [`RedisCluster`]: crate::RedisCluster
    #[error(
        "the cluster did not settle within {waited:?} after {action} (is the machine overloaded?); last seen: {last}\nthe end of each node's log:\n{logs}"
    )]
    ClusterTimeout {
        /// What testkit did before waiting, e.g. `start` or `failover of node 0`.
        action: String,
        /// How long it waited.
        waited: Duration,
        /// Why the last look at the cluster did not count as settled.
        last: String,
        /// The last lines of every node's log, each prefixed with its port.
        logs: String,
    },

    /// A [`RedisSentinel`](crate::RedisSentinel) did not reach the state
    /// testkit waited for in time: sentinels that do not know the replica
    /// yet, or a failover that did not finish. Its processes keep running
    /// until the value is dropped.
    #[error(
        "the sentinel deployment did not settle within {waited:?} after {action} (is the machine overloaded?); last seen: {last}\nthe end of each process's log:\n{logs}"
    )]
    SentinelTimeout {
        /// What testkit did before waiting, e.g. `start` or `failover`.
        action: String,
        /// How long it waited.
        waited: Duration,
        /// Why the last look did not count as settled.
        last: String,
        /// The last lines of every process's log, each prefixed with its
        /// port.
        logs: String,
    },

    /// An I/O error while preparing a server (temporary directory, port,
    /// log file).
    #[error(
        "I/O error while preparing redis-server (check free disk space in the temp dir and loopback networking): {0}"
    )]
    Io(#[from] std::io::Error),
}

/// The install hint; other crates and CI logs grep for this wording, keep it.
const INSTALL: &str = "redis-server was not found on PATH (or in $LEASEHOLD_REDIS_SERVER). \
     Install it: `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server`, \
     or run `cargo xtask setup`";

fn not_found_message(env: Option<&std::path::Path>) -> String {
    match env {
        None => INSTALL.to_owned(),
        Some(path) => format!(
            "LEASEHOLD_REDIS_SERVER is set to {}, which is not an executable file; \
             fix or unset it. {INSTALL}",
            path.display()
        ),
    }
}
