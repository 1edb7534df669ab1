//! Printing: lines on stdout, messages on stderr.
//!
//! With `--json`, stdout carries only JSON Lines, the records of
//! [`crate::json`] (`run` is the exception only in that its command's own
//! output passes through untouched). Messages for people go to stderr, one
//! line each, starting with `leasehold: ` (JSON Lines with
//! `--log-format json`: see [`crate::log`]).
//!
//! A closed stdout (`leasehold list | head -1`) is not an error: the reader
//! has all it wanted. [`line`] notes it, [`closed`] completes, and `main`
//! ends the command with exit code 0, running destructors on the way (a
//! private demo server is stopped, not orphaned).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Set once a write to stdout met a broken pipe.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// Wakes [`closed`] when [`CLOSED`] is set; `notify_one` keeps a permit, so
/// a waiter that comes late still wakes.
static CLOSED_NOTIFY: Notify = Notify::const_new();

/// Prints one line on stdout. After a broken pipe it prints nothing more
/// and [`closed`] completes.
pub fn line(text: &str) {
    if CLOSED.load(Ordering::Acquire) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        CLOSED.store(true, Ordering::Release);
        CLOSED_NOTIFY.notify_one();
    }
}

/// Completes once stdout's reader has gone away.
///
/// # Cancel safety
///
/// Cancel safe: it only waits.
pub async fn closed() {
    while !CLOSED.load(Ordering::Acquire) {
        CLOSED_NOTIFY.notified().await;
    }
}

/// Prints `leasehold: message` on stderr (with `--log-format json`, a JSON
/// line at level `ERROR`: see [`crate::log`]). Never fails: with stderr
/// closed there is nobody to tell.
pub fn error(message: &str) {
    if crate::log::is_json() {
        tracing::error!(target: crate::log::TARGET, "{message}");
    } else {
        let _ = writeln!(std::io::stderr().lock(), "leasehold: {message}");
    }
}

/// As [`error`], for what went wrong without failing the command (level
/// `WARN` in JSON; the same line in text).
pub fn warn(message: &str) {
    if crate::log::is_json() {
        tracing::warn!(target: crate::log::TARGET, "{message}");
    } else {
        let _ = writeln!(std::io::stderr().lock(), "leasehold: {message}");
    }
}

/// What to say on stderr for a library error. On one server that is the
/// error's own message. On a cluster (`cluster`), the library's hints for
/// connection failures ("check that the server runs there and that the URL
/// is right") point at the wrong thing: the seeds were right once the
/// topology was read, and a node that stops answering is a master down,
/// paused or failing over, or a node this host cannot reach. So those
/// errors, and the refusals a cluster gives while it fails over or moves
/// slots (`CLUSTERDOWN`, `TRYAGAIN`, `MOVED`, `ASK`, `MASTERDOWN`), get a
/// hint that says so and names where to look (`CLUSTER INFO`).
pub fn failure(e: &leasehold::Error, cluster: bool) -> String {
    use leasehold::ErrorKind as K;
    if !cluster {
        return e.to_string();
    }
    const LOOK: &str = "check `CLUSTER INFO` (cluster_state) and `CLUSTER NODES` on a seed";
    match e.kind() {
        K::Connect { addr, source } => format!(
            "could not reach the Redis Cluster at {addr}: {source}; a master may be down or failing over, or a node unreachable from here: {LOOK}, and that the seeds (--url or LEASEHOLD_URL) are nodes of this cluster"
        ),
        K::ConnectTimeout { addr, after } => format!(
            "could not connect to the Redis Cluster at {addr} within {}; a node may be paused or unreachable, or the cluster failing over: {LOOK}, or raise --connect-timeout",
            human(Some(*after))
        ),
        K::Redis { source, .. } if fails_over(source) => {
            format!("{e}; the cluster is failing over, moving slots or missing a master: {LOOK}")
        }
        _ => e.to_string(),
    }
}

/// A cluster's refusal while a master fails over or a slot moves.
fn fails_over(e: &redis::RedisError) -> bool {
    use redis::ServerErrorKind::{Ask, ClusterDown, Moved, TryAgain};
    matches!(
        e.code(),
        Some("CLUSTERDOWN" | "TRYAGAIN" | "MOVED" | "ASK" | "MASTERDOWN")
    ) || matches!(
        e.kind(),
        redis::ErrorKind::Server(Moved | Ask | TryAgain | ClusterDown)
    )
}

/// A duration for people: `4.2s`, `350ms`, `2m5s`, or `-`.
pub fn human(d: Option<std::time::Duration>) -> String {
    let Some(d) = d else {
        return "-".into();
    };
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1_000)
    } else {
        format!("{}h{}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::failure;
    use leasehold::ErrorKind;

    /// A command that timed out on a node: what a master failing over
    /// looks like to a client.
    fn timed_out(addr: &str) -> leasehold::Error {
        let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        ErrorKind::Connect {
            addr: addr.into(),
            source: source.into(),
        }
        .into()
    }

    #[test]
    fn a_cluster_timeout_points_at_the_cluster_one_server_at_its_url() {
        let e = timed_out("redis://10.0.0.1:7000,redis://10.0.0.2:7000");
        let cluster = failure(&e, true);
        assert!(cluster.contains("10.0.0.2:7000"), "{cluster}");
        assert!(cluster.contains("failing over"), "{cluster}");
        assert!(cluster.contains("CLUSTER INFO"), "{cluster}");
        assert!(!cluster.contains("URL (--url"), "{cluster}");

        let e = timed_out("redis://10.0.0.1:6379");
        let single = failure(&e, false);
        assert_eq!(single, e.to_string());
        assert!(single.contains("URL (--url"), "{single}");
    }

    #[test]
    fn other_errors_are_told_as_they_are() {
        let e: leasehold::Error = ErrorKind::LeaseLost { name: "x".into() }.into();
        assert_eq!(failure(&e, true), e.to_string());
    }
}
