//! What leasehold tells about its work: `tracing` spans and events, and
//! metrics through the `metrics` facade (crate feature `metrics`).
//!
//! The bottom of the crate: it uses no other module, so that every layer,
//! down to `error` (which counts Redis's errors), can report through it.
//! The names, fields, labels and units are listed in the crate docs
//! (`# Traces` and `# Metrics`); this file is where they are spelled.
//!
//! # Cost when nobody listens
//!
//! Taking and giving back an uncontended lease costs about a hundred
//! microseconds, and every allocation shows. So:
//!
//! - spans are made by the macros below, which expand to `tracing`'s own:
//!   while no subscriber wants the `leasehold` target at `DEBUG`, a span is
//!   `Span::none()` after one cached check, its fields are never evaluated
//!   (no token prefix is cut, nothing is formatted), and recording a field
//!   on it does nothing;
//! - without the `metrics` feature, every function of this file's metrics
//!   half is an empty `#[inline]` function: the calls, and the arguments
//!   that cost nothing to make, compile to nothing. Durations are taken as
//!   the instant they started at, so that the clock is read only when the
//!   feature is on.

// Metrics are recorded by plain functions, traces by macros: a span's
// fields must stay unevaluated while nobody listens, which only a macro
// can promise.

/// The target of every span and event of this file: filter on
/// `leasehold=debug` to see them.
pub(crate) const TARGET: &str = "leasehold";

/// A span of one `try_acquire` or `acquire` call: `name`, `kind`, `token`
/// (a prefix), `mode` (`"try"` or `"wait"`); `fence` and `outcome` are
/// recorded when it ends.
macro_rules! acquire_span {
    ($keys:expr, $token:expr, $mode:expr) => {
        tracing::debug_span!(
            target: "leasehold",
            "leasehold.acquire",
            name = $keys.display(),
            kind = $keys.kind(),
            token = $token.prefix(),
            mode = $mode,
            fence = tracing::field::Empty,
            outcome = tracing::field::Empty,
        )
    };
}

/// A span of the time an `acquire` spends waiting (a child of its acquire
/// span), from its first nap to the end of the call.
macro_rules! wait_span {
    ($keys:expr) => {
        tracing::debug_span!(
            target: "leasehold",
            "leasehold.wait",
            name = $keys.display(),
            kind = $keys.kind(),
        )
    };
}

/// A span of one renewal of a guard's lease: `lag_ms` is how late it ran
/// against its schedule; `outcome` (`ok`, `retry`, `lost`) is recorded when
/// it ends.
macro_rules! renew_span {
    ($keys:expr, $token:expr, $fence:expr, $lag:expr) => {
        tracing::debug_span!(
            target: "leasehold",
            "leasehold.renew",
            name = $keys.display(),
            kind = $keys.kind(),
            token = $token.prefix(),
            fence = $fence,
            lag_ms = $lag.as_secs_f64() * 1e3,
            outcome = tracing::field::Empty,
        )
    };
}

/// A span of one release: by `Guard::release`, or in the background for a
/// dropped guard or acquire (`fence` then unknown). `outcome` (`released`,
/// `lost`, `error`) is recorded when it ends.
macro_rules! release_span {
    ($keys:expr, $token:expr, $fence:expr) => {
        tracing::debug_span!(
            target: "leasehold",
            "leasehold.release",
            name = $keys.display(),
            kind = $keys.kind(),
            token = $token.prefix(),
            fence = $fence,
            outcome = tracing::field::Empty,
        )
    };
}

pub(crate) use {acquire_span, release_span, renew_span, wait_span};

/// Why a guard's lease was lost: the `cause` of the loss event and of
/// `leasehold_losses_total`. A closed set, so that it can be a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// The key was gone or held by another token (a renewal, a release or
    /// a lease-scoped script found it so).
    Gone,
    /// Its validity ran out without a renewal (`auto_renew(false)`, or
    /// nobody renewed in time).
    Expired,
    /// Renewals kept failing (a connection down, Redis loading or busy)
    /// until the validity ran out.
    RenewalFailed,
    /// No renewal was answered before the validity ran out.
    RenewalTimeout,
    /// Redis refused the renewal (READONLY, OOM, NOPERM...).
    Refused,
}

impl Loss {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Loss::Gone => "gone",
            Loss::Expired => "expired",
            Loss::RenewalFailed => "renewal-failed",
            Loss::RenewalTimeout => "renewal-timeout",
            Loss::Refused => "refused",
        }
    }
}

#[cfg(feature = "metrics")]
mod names {
    pub(super) const ACQUISITIONS: &str = "leasehold_acquisitions_total";
    pub(super) const WAIT: &str = "leasehold_wait_seconds";
    pub(super) const HOLD: &str = "leasehold_hold_seconds";
    pub(super) const RENEWALS: &str = "leasehold_renewals_total";
    pub(super) const RENEWAL_LAG: &str = "leasehold_renewal_lag_seconds";
    pub(super) const LOSSES: &str = "leasehold_losses_total";
    pub(super) const HANDOVERS: &str = "leasehold_handovers_total";
    pub(super) const BATCHES: &str = "leasehold_batches_total";
    pub(super) const BATCH_SIZE: &str = "leasehold_batch_size";
    pub(super) const REDIS_ERRORS: &str = "leasehold_redis_errors_total";
}

use tokio::time::Instant;

/// One acquire call ended with `outcome` (see [`outcome`]).
#[inline]
pub(crate) fn acquisition(kind: &'static str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::ACQUISITIONS, "kind" => kind, "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, outcome);
}

/// An `acquire` call that began at `started` ended with `outcome`.
#[inline]
pub(crate) fn waited(kind: &'static str, outcome: &'static str, started: Instant) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(names::WAIT, "kind" => kind, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, outcome, started);
}

/// A holding granted at `since` ended (released, dropped or lost).
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn held(kind: &'static str, since: Instant) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(names::HOLD, "kind" => kind).record(since.elapsed().as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, since);
}

/// A renewal due at `due` starts now.
#[inline]
pub(crate) fn renewal_lag(kind: &'static str, due: Instant) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(names::RENEWAL_LAG, "kind" => kind)
        .record(Instant::now().saturating_duration_since(due).as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, due);
}

/// A renewal ended: `ok`, `retry` (failed, tried again while still
/// valid) or `lost`.
#[inline]
pub(crate) fn renewal(kind: &'static str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::RENEWALS, "kind" => kind, "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, outcome);
}

/// A guard's lease was lost.
#[inline]
pub(crate) fn loss(kind: &'static str, cause: Loss) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::LOSSES, "kind" => kind, "cause" => cause.as_str()).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, cause);
}

/// A release handed the lease straight to a local waiter.
#[inline]
pub(crate) fn handover() {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::HANDOVERS).increment(1);
}

/// A batch call carried `ops` operations.
#[inline]
pub(crate) fn batch(ops: usize) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(names::BATCHES).increment(1);
        metrics::histogram!(names::BATCH_SIZE).record(ops as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = ops;
}

/// Redis answered with an error, or the connection failed.
#[inline]
pub(crate) fn redis_error(e: &redis::RedisError) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::REDIS_ERRORS, "kind" => redis_error_kind(e)).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = e;
}

/// Connecting to a server took longer than the connect timeout.
#[inline]
pub(crate) fn connect_timeout() {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::REDIS_ERRORS, "kind" => "connect-timeout").increment(1);
}

/// The `kind` label of a Redis error: Redis's own code for the refusals
/// worth telling apart, else what broke.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn redis_error_kind(e: &redis::RedisError) -> &'static str {
    const CODES: &[(&str, &str)] = &[
        ("READONLY", "readonly"),
        ("OOM", "oom"),
        ("NOAUTH", "noauth"),
        ("WRONGPASS", "wrongpass"),
        ("NOPERM", "noperm"),
        ("LOADING", "loading"),
        ("BUSY", "busy"),
        ("TRYAGAIN", "tryagain"),
        ("MASTERDOWN", "masterdown"),
        ("CLUSTERDOWN", "clusterdown"),
        ("MOVED", "moved"),
        ("ASK", "ask"),
        ("NOSCRIPT", "noscript"),
        ("WRONGTYPE", "wrongtype"),
    ];
    if let Some(code) = e.code()
        && let Some((_, label)) = CODES.iter().find(|(c, _)| *c == code)
    {
        return label;
    }
    if e.is_timeout() {
        "timeout"
    } else if e.is_connection_refusal() {
        "refused"
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
        "io"
    } else if e.code().is_some() {
        "other-reply"
    } else {
        "other"
    }
}

/// Describes every metric (its unit and what it counts) to the installed
/// recorder, for exporters that show descriptions (Prometheus's `# HELP`).
///
/// Optional: the metrics are recorded without it. Call it once, after
/// installing the recorder.
///
/// ```no_run
/// // e.g. with metrics-exporter-prometheus:
/// // PrometheusBuilder::new().install()?;
/// leasehold::describe_metrics();
/// # Ok::<(), leasehold::Error>(())
/// ```
#[cfg(feature = "metrics")]
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        names::ACQUISITIONS,
        Unit::Count,
        "acquire and try_acquire calls, by kind and outcome (acquired, busy, timeout, error)"
    );
    describe_histogram!(
        names::WAIT,
        Unit::Seconds,
        "time acquire() took, from the call to the guard or the error, by kind and outcome"
    );
    describe_histogram!(
        names::HOLD,
        Unit::Seconds,
        "how long leases were held, from the grant to the release or the loss, by kind"
    );
    describe_counter!(
        names::RENEWALS,
        Unit::Count,
        "renewals of held leases, by kind and outcome (ok, retry, lost)"
    );
    describe_histogram!(
        names::RENEWAL_LAG,
        Unit::Seconds,
        "how late each renewal started against its schedule, by kind"
    );
    describe_counter!(
        names::LOSSES,
        Unit::Count,
        "leases lost while a guard held them, by kind and cause"
    );
    describe_counter!(
        names::HANDOVERS,
        Unit::Count,
        "releases that handed the lease straight to a local waiter"
    );
    describe_counter!(
        names::BATCHES,
        Unit::Count,
        "batch calls carrying several tasks' acquires and releases"
    );
    describe_histogram!(names::BATCH_SIZE, Unit::Count, "operations per batch call");
    describe_counter!(
        names::REDIS_ERRORS,
        Unit::Count,
        "errors from Redis or its connection, by kind"
    );
}

#[cfg(test)]
mod tests {
    use super::redis_error_kind;

    fn refused(code: &str) -> redis::RedisError {
        redis::make_extension_error(code.to_owned(), Some("detail".to_owned()))
    }

    #[test]
    fn redis_errors_get_a_closed_set_of_kinds() {
        assert_eq!(redis_error_kind(&refused("READONLY")), "readonly");
        assert_eq!(redis_error_kind(&refused("NOPERM")), "noperm");
        assert_eq!(redis_error_kind(&refused("WRONGTYPE")), "wrongtype");
        // A code of its own is not a label of its own.
        assert_eq!(redis_error_kind(&refused("SOMETHINGNEW")), "other-reply");
        let io = |k| redis::RedisError::from(std::io::Error::from(k));
        assert_eq!(
            redis_error_kind(&io(std::io::ErrorKind::TimedOut)),
            "timeout"
        );
        assert_eq!(
            redis_error_kind(&io(std::io::ErrorKind::ConnectionRefused)),
            "refused"
        );
        assert_eq!(redis_error_kind(&io(std::io::ErrorKind::BrokenPipe)), "io");
    }
}
