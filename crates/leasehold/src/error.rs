//! The one error type of leasehold.
//!
//! Every message says what happened and what to do about it. Tokens are
//! secrets of their holder, so a message shows at most a short prefix of one.

use std::fmt;
use std::time::Duration;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in leasehold.
///
/// The error is one pointer wide; [`Error::kind`] tells what happened, and
/// the predicates ([`is_timeout`](Error::is_timeout),
/// [`is_lost`](Error::is_lost), [`is_held`](Error::is_held),
/// [`is_connection`](Error::is_connection),
/// [`is_retryable`](Error::is_retryable)) answer the usual questions.
/// Redis's own error, when there is one, is the [`source`](std::error::Error::source);
/// an error that came from a server names it ([`Error::addr`]).
///
/// ```
/// let err = leasehold::Lease::check_name(b"").unwrap_err();
/// assert!(matches!(err.kind(), leasehold::ErrorKind::InvalidArgument { .. }));
/// assert!(err.to_string().contains("name"));
/// ```
pub struct Error(Box<ErrorKind>);

/// What went wrong; see [`Error::kind`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server could not be reached, or the connection broke.
    Connect {
        /// The address tried (never with its password).
        addr: String,
        /// What the connection attempt or the broken connection reported.
        source: redis::RedisError,
    },
    /// Connecting took longer than the connect timeout. A connection
    /// problem ([`Error::is_connection`]), not a wait for a lease: it is not
    /// [`Error::is_timeout`].
    ConnectTimeout {
        /// The address tried (never with its password).
        addr: String,
        /// How long leasehold waited.
        after: Duration,
    },
    /// `try_acquire` found the lease held by someone else.
    Held {
        /// The lease's name (printable form).
        name: String,
        /// How long the holder's TTL still runs, when it has one.
        remaining: Option<Duration>,
    },
    /// `acquire` waited its whole wait timeout without getting the lease.
    Timeout {
        /// The lease's name (printable form).
        name: String,
        /// How long it waited.
        waited: Duration,
        /// A short prefix of the holder's token, when it could be read.
        holder: Option<String>,
        /// How long the holder's TTL still ran, when known.
        remaining: Option<Duration>,
    },
    /// The lease is no longer held by this guard: it expired, or was deleted
    /// or taken behind its back, or could not be renewed in time.
    LeaseLost {
        /// The lease's name (printable form).
        name: String,
    },
    /// Redlock: too few masters granted the lease (or extended or released
    /// it) in time.
    QuorumNotReached {
        /// What leasehold asked of the masters (`"acquire"`, `"extend"`,
        /// `"release"`).
        doing: &'static str,
        /// Masters needed (a majority; more for a semaphore, see
        /// [`Semaphore`](crate::Semaphore)).
        needed: usize,
        /// Masters that did it.
        got: usize,
        /// Each master that did not grant it, with what it said.
        nodes: Vec<NodeFailure>,
    },
    /// Too few replicas acknowledged an acquire in time (see
    /// [`ClientBuilder::replicas`](crate::ClientBuilder::replicas)): the
    /// master granted it, but a failover now could lose it, so it was
    /// given back.
    ReplicasNotReached {
        /// The name (printable form).
        name: String,
        /// Replicas that acknowledged the grant.
        acknowledged: u32,
        /// Replicas asked for.
        needed: u32,
        /// How long it waited for them.
        waited: Duration,
    },
    /// An optimistic transaction met a conflict on every attempt.
    TooManyConflicts {
        /// Attempts made.
        attempts: u32,
    },
    /// What was asked does not exist on this kind of deployment (a fair
    /// lease over Redlock, a transaction over independent masters);
    /// nothing was sent to Redis. Never replaced by something weaker.
    Unsupported {
        /// What was asked.
        what: &'static str,
        /// The deployment (`"Redlock"`).
        on: &'static str,
        /// Why, and what to use instead.
        why: &'static str,
    },
    /// An argument was out of range or malformed; nothing was sent to Redis.
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why it was refused and what to use instead.
        why: String,
    },
    /// Redis answered with an error (READONLY, OOM, NOAUTH, MOVED, a script
    /// error, ...), or leasehold could not make sense of its reply.
    Redis {
        /// The server that answered (never with its password).
        addr: String,
        /// What leasehold was doing.
        doing: &'static str,
        /// Redis's error.
        source: redis::RedisError,
    },
}

/// One server's part in a failed quorum
/// ([`ErrorKind::QuorumNotReached`]): which server, and why it did not
/// grant the lease.
///
/// The cause is a whole [`Error`], so the usual questions work per server:
/// held by someone else is [`ErrorKind::Held`] ([`Error::is_held`]),
/// unreachable or too slow to connect is [`Error::is_connection`], and a
/// refusal (`READONLY`, `OOM`, a wrong password) is [`ErrorKind::Redis`].
///
/// ```
/// fn explain(err: &leasehold::Error) {
///     if let leasehold::ErrorKind::QuorumNotReached { nodes, .. } = err.kind() {
///         for node in nodes {
///             let why = if node.cause.is_held() { "held elsewhere" } else { "failed" };
///             println!("{}: {why}: {}", node.addr, node.cause);
///         }
///     }
/// }
/// # explain(&leasehold::Lease::check_name(b"").unwrap_err());
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct NodeFailure {
    /// The server's address (never with its password).
    pub addr: String,
    /// What it answered, or why it could not.
    pub cause: Error,
}

impl Error {
    /// What went wrong.
    ///
    /// ```
    /// let err = leasehold::Lease::check_name(b"").unwrap_err();
    /// match err.kind() {
    ///     leasehold::ErrorKind::InvalidArgument { what, .. } => assert_eq!(*what, "name"),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// Turns the error into its kind.
    ///
    /// ```
    /// let err = leasehold::Lease::check_name(b"").unwrap_err();
    /// if let leasehold::ErrorKind::InvalidArgument { why, .. } = err.into_kind() {
    ///     println!("{why}");
    /// }
    /// ```
    pub fn into_kind(self) -> ErrorKind {
        *self.0
    }

    /// The address of the server the error came from, when it came from
    /// one: a failed connection ([`ErrorKind::Connect`],
    /// [`ErrorKind::ConnectTimeout`]) or a refusal ([`ErrorKind::Redis`]).
    /// Never with a password. `None` for errors of leasehold's own
    /// (a wait that ran out, a lost lease, a bad argument) and for
    /// [`ErrorKind::QuorumNotReached`], whose servers are in its `nodes`.
    ///
    /// ```no_run
    /// # async fn f() {
    /// if let Err(e) = leasehold::Client::connect("redis://10.0.0.7:6379").await {
    ///     eprintln!("Redis at {} failed: {e}", e.addr().unwrap_or("?"));
    /// }
    /// # }
    /// ```
    pub fn addr(&self) -> Option<&str> {
        match &*self.0 {
            ErrorKind::Connect { addr, .. }
            | ErrorKind::ConnectTimeout { addr, .. }
            | ErrorKind::Redis { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// True when `acquire` waited its whole wait timeout and the lease was
    /// still held: the lease was busy. Only [`ErrorKind::Timeout`]; a
    /// connect timeout is a connection problem
    /// ([`is_connection`](Error::is_connection)), not a busy lease.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// match client.lease("reports").wait(Duration::from_secs(5)).acquire().await {
    ///     Ok(guard) => guard.release().await?,
    ///     Err(e) if e.is_timeout() => println!("still busy after 5 s: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(*self.0, ErrorKind::Timeout { .. })
    }

    /// True when a guard's lease was lost (expired, deleted, taken, or not
    /// renewable in time).
    ///
    /// ```no_run
    /// # async fn f(guard: leasehold::Guard) -> leasehold::Result<()> {
    /// if let Err(e) = guard.extend().await {
    ///     if e.is_lost() {
    ///         println!("stop writing: {e}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_lost(&self) -> bool {
        matches!(*self.0, ErrorKind::LeaseLost { .. })
    }

    /// True when `try_acquire` found the lease held by someone else.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// match client.lease("cron/cleanup").try_acquire().await {
    ///     Ok(guard) => guard.release().await?,
    ///     Err(e) if e.is_held() => println!("another host runs it"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_held(&self) -> bool {
        matches!(*self.0, ErrorKind::Held { .. })
    }

    /// True when the server could not be reached, did not answer in time
    /// (the connect timeout, [`ErrorKind::ConnectTimeout`], or a command's
    /// response timeout), or the connection broke.
    ///
    /// ```no_run
    /// # async fn f() {
    /// use std::time::Duration;
    /// let client = leasehold::Client::builder()
    ///     .connect_timeout(Duration::from_secs(1))
    ///     .connect("redis://10.0.0.7:6379")
    ///     .await;
    /// if let Err(e) = client {
    ///     assert!(e.is_connection() && !e.is_timeout());
    /// }
    /// # }
    /// ```
    pub fn is_connection(&self) -> bool {
        match &*self.0 {
            ErrorKind::Connect { .. } | ErrorKind::ConnectTimeout { .. } => true,
            // A refused password is the server's answer, not a broken link.
            ErrorKind::Redis { source, .. } => is_transport(source) && !is_auth(source),
            _ => false,
        }
    }

    /// True when trying the same call again later may succeed: the lease was
    /// held, the wait timed out, the connection failed or timed out
    /// ([`is_connection`](Error::is_connection)), or Redis answered
    /// that it did not run the command *for now*:
    ///
    /// - `LOADING`: it is still loading its data set after a restart;
    /// - `BUSY`: a script or function runs past its time limit (until it
    ///   ends or `SCRIPT KILL` stops it);
    /// - `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN`: a replica lost its
    ///   master, or a cluster is resharding or failing over;
    /// - `MOVED`, `ASK` that reach the caller: the cluster client followed
    ///   redirections as often as it may while a slot moves or a replica is
    ///   promoted; the topology settles in a few seconds.
    ///
    /// Not retryable: `READONLY` (the server is a replica: it refuses every
    /// write until leasehold is pointed at the master, which retrying on the
    /// same connection never does), `OOM` (Redis is full until someone frees
    /// memory or raises `maxmemory`), `NOPERM`, a wrong password, a script
    /// error. Failing fast there shows the misconfiguration at once.
    ///
    /// [`Lease::acquire`](crate::Lease::acquire) retries these errors until
    /// its wait runs out, and a guard's renewal retries them while the lease
    /// is still valid; any other error ends either at once.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// use std::time::Duration;
    /// let lease = client.lease("nightly");
    /// let guard = loop {
    ///     match lease.try_acquire().await {
    ///         Ok(guard) => break guard,
    ///         Err(e) if e.is_retryable() => {
    ///             tokio::time::sleep(Duration::from_millis(100)).await
    ///         }
    ///         Err(e) => return Err(e),
    ///     }
    /// };
    /// # Ok(()) }
    /// ```
    pub fn is_retryable(&self) -> bool {
        self.is_held()
            || self.is_timeout()
            || self.is_connection()
            || matches!(&*self.0, ErrorKind::Redis { source, .. } if is_try_again(source))
            || matches!(&*self.0, ErrorKind::QuorumNotReached { nodes, .. }
                if nodes.iter().all(|n| n.cause.is_retryable()))
    }

    /// True when Redis's ACL refused a command, key or channel to the
    /// user leasehold connected as (`NOPERM`, or a script's command
    /// refused): the user lacks part of [`acl_rule`](crate::acl_rule). The
    /// message names what was refused. Not retryable.
    ///
    /// ```no_run
    /// # async fn f(client: leasehold::Client) -> leasehold::Result<()> {
    /// match client.lease("jobs/nightly").try_acquire().await {
    ///     Err(e) if e.is_permission_denied() => {
    ///         eprintln!("{e}\ngrant: {}", leasehold::acl_rule("jobs/"));
    ///     }
    ///     other => drop(other?),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_permission_denied(&self) -> bool {
        matches!(&*self.0, ErrorKind::Redis { source, .. } if crate::acl::refused(source).is_some())
    }

    pub(crate) fn unsupported(what: &'static str, on: &'static str, why: &'static str) -> Error {
        ErrorKind::Unsupported { what, on, why }.into()
    }

    pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> Error {
        ErrorKind::InvalidArgument {
            what,
            why: why.into(),
        }
        .into()
    }

    pub(crate) fn lost(name: &str) -> Error {
        ErrorKind::LeaseLost {
            name: name.to_owned(),
        }
        .into()
    }

    /// Wraps an error of redis-rs met while `doing` something against `addr`.
    pub(crate) fn redis(doing: &'static str, addr: &str, source: redis::RedisError) -> Error {
        crate::observe::redis_error(&source);
        if is_transport(&source) && !is_auth(&source) {
            ErrorKind::Connect {
                addr: addr.to_owned(),
                source,
            }
            .into()
        } else {
            ErrorKind::Redis {
                addr: addr.to_owned(),
                doing,
                source,
            }
            .into()
        }
    }
}

/// A refused or missing password: the server is there and said no.
fn is_auth(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
        || e.to_string().contains("NOAUTH")
}

/// Whether Redis answered that it did not run the command for now, and will
/// once it is done loading, running a script, or finding its master.
fn is_try_again(e: &redis::RedisError) -> bool {
    use redis::ServerErrorKind::{Ask, ClusterDown, Moved, TryAgain};
    matches!(
        e.code(),
        Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "MOVED" | "ASK")
    ) || matches!(
        e.kind(),
        redis::ErrorKind::Server(Moved | Ask | TryAgain | ClusterDown)
    )
}

/// Whether a redis-rs error means "the connection is not usable" rather than
/// "the server said no".
fn is_transport(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error(Box::new(kind))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Formats a duration for people: `4.2s`, `350ms`, `2m5s`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        if d.as_micros() < 1_000 && !d.is_zero() {
            return format!("{}µs", d.as_micros());
        }
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1_000)
    } else {
        format!("{}h{}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            // rustls's words for a server certificate that no trusted CA
            // signed, or that names another host.
            ErrorKind::Connect { addr, source }
                if source.to_string().contains("invalid peer certificate") =>
            {
                write!(
                    f,
                    "could not verify the TLS certificate of Redis at {addr}: {source}; check that the CA you trust (--tls-ca, ClientBuilder::tls_ca_file, else the system's) signed the server's certificate and that it names the host of the URL"
                )
            }
            ErrorKind::Connect { addr, source } => write!(
                f,
                "could not reach Redis at {addr}: {source}; check that the server runs there and that the URL (--url, LEASEHOLD_URL or REDIS_URL) is right"
            ),
            ErrorKind::ConnectTimeout { addr, after } => write!(
                f,
                "could not connect to Redis at {addr} within {}; check that the server runs there and is reachable, or raise the connect timeout",
                human(*after)
            ),
            ErrorKind::Held { name, remaining } => {
                write!(f, "lease `{name}` is held by someone else")?;
                match remaining {
                    Some(r) => write!(f, " ({} left)", human(*r)),
                    None => write!(f, " (with no TTL: a foreign client set it)"),
                }
            }
            ErrorKind::Timeout {
                name,
                waited,
                holder,
                remaining,
            } => {
                write!(f, "timed out after {} waiting for `{name}`", human(*waited))?;
                if let Some(h) = holder {
                    write!(f, "; held by {h}…")?;
                }
                if let Some(r) = remaining {
                    write!(f, ", {} left", human(*r))?;
                }
                write!(f, "; wait longer, or find out why the holder keeps it")
            }
            ErrorKind::LeaseLost { name } => write!(
                f,
                "lease `{name}` was lost: it expired, or was deleted or taken by another holder; stop writing under it and acquire it again"
            ),
            ErrorKind::QuorumNotReached {
                doing,
                needed,
                got,
                nodes,
            } => {
                write!(
                    f,
                    "Redlock quorum not reached: {got} of the masters did the {doing}, {needed} needed"
                )?;
                for node in nodes {
                    write!(f, "; {}: {}", node.addr, node.cause)?;
                }
                write!(f, "; check that a majority of the masters is reachable")
            }
            ErrorKind::ReplicasNotReached {
                name,
                acknowledged,
                needed,
                waited,
            } => write!(
                f,
                "`{name}` was granted, but only {acknowledged} of the {needed} replicas asked for acknowledged it within {}, so it was given back (a failover now could lose it); check the replicas with INFO replication, or ask for fewer",
                human(*waited)
            ),
            ErrorKind::TooManyConflicts { attempts } => write!(
                f,
                "optimistic transaction gave up after {attempts} attempts: other clients kept changing the watched keys; raise max_attempts, or use a Lua script or a lease for this hot key"
            ),
            ErrorKind::InvalidArgument { what, why } => write!(f, "invalid {what}: {why}"),
            ErrorKind::Unsupported { what, on, why } => {
                write!(f, "{what} is not available on {on}: {why}")
            }
            ErrorKind::Redis {
                addr,
                doing,
                source,
            } => {
                write!(f, "Redis at {addr} refused {doing}: {source}")?;
                let hint = match source.kind() {
                    redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) => {
                        "; this server is a read-only replica: point leasehold at the master"
                    }
                    _ if is_auth(source) => {
                        "; give the right user and password in the URL (redis://user:password@host:port)"
                    }
                    _ => "",
                };
                f.write_str(hint)?;
                if let Some(what) = crate::acl::refused(source) {
                    write!(
                        f,
                        "; the Redis ACL user lacks {what}: grant it the rule of leasehold::acl_rule (README, \"Redis ACL\"); `leasehold doctor --name NAME` names every permission missing"
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            ErrorKind::Connect { source, .. } | ErrorKind::Redis { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Error, ErrorKind, NodeFailure};

    fn refused(code: &str) -> Error {
        Error::redis(
            "the acquire script",
            "10.0.0.7:6379",
            redis::make_extension_error(code.to_owned(), Some("detail".to_owned())),
        )
    }

    fn connect_timeout() -> Error {
        ErrorKind::ConnectTimeout {
            addr: "10.0.0.7:6379".into(),
            after: Duration::from_secs(5),
        }
        .into()
    }

    #[test]
    fn a_connect_timeout_is_a_connection_problem_not_a_busy_lease() {
        let err = connect_timeout();
        assert!(!err.is_timeout(), "{err}");
        assert!(err.is_connection(), "{err}");
        assert!(err.is_retryable(), "{err}");
        let busy: Error = ErrorKind::Timeout {
            name: "reports".into(),
            waited: Duration::from_secs(5),
            holder: None,
            remaining: None,
        }
        .into();
        assert!(busy.is_timeout() && !busy.is_connection(), "{busy}");
        assert!(busy.is_retryable(), "{busy}");
    }

    #[test]
    fn every_error_from_a_server_names_it() {
        let io = || redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        let broken = Error::redis("the extend script", "10.0.0.7:6379", io());
        assert!(
            matches!(broken.kind(), ErrorKind::Connect { .. }),
            "{broken:?}"
        );
        for err in [broken, connect_timeout(), refused("READONLY")] {
            assert_eq!(err.addr(), Some("10.0.0.7:6379"), "{err:?}");
            assert!(err.to_string().contains("10.0.0.7:6379"), "{err}");
        }
        assert_eq!(Error::lost("x").addr(), None);
    }

    #[test]
    fn a_failed_quorum_says_which_server_said_what() {
        let err: Error = ErrorKind::QuorumNotReached {
            doing: "acquire",
            needed: 2,
            got: 1,
            nodes: vec![
                NodeFailure {
                    addr: "10.0.0.8:6379".into(),
                    cause: ErrorKind::Held {
                        name: "x".into(),
                        remaining: Some(Duration::from_secs(3)),
                    }
                    .into(),
                },
                NodeFailure {
                    addr: "10.0.0.7:6379".into(),
                    cause: connect_timeout(),
                },
            ],
        }
        .into();
        let ErrorKind::QuorumNotReached { nodes, .. } = err.kind() else {
            unreachable!()
        };
        assert!(nodes[0].cause.is_held() && nodes[1].cause.is_connection());
        let text = err.to_string();
        assert!(
            text.contains("1 of the masters") && text.contains("2 needed"),
            "{text}"
        );
        assert!(text.contains("10.0.0.8:6379: lease `x` is held"), "{text}");
        assert!(text.contains("10.0.0.7:6379: could not connect"), "{text}");
        assert_eq!(err.addr(), None);
    }

    #[test]
    fn an_error_is_one_pointer_wide() {
        assert_eq!(size_of::<Error>(), size_of::<usize>());
        assert_eq!(size_of::<super::Result<()>>(), size_of::<usize>());
    }

    #[test]
    fn not_now_replies_are_retryable_and_refusals_are_not() {
        for code in [
            "LOADING",
            "BUSY",
            "TRYAGAIN",
            "MASTERDOWN",
            "CLUSTERDOWN",
            "MOVED",
            "ASK",
        ] {
            assert!(refused(code).is_retryable(), "{code}");
        }
        for code in ["READONLY", "OOM", "NOPERM", "WRONGTYPE", "ERR"] {
            assert!(!refused(code).is_retryable(), "{code}");
        }
    }

    #[test]
    fn an_acl_refusal_names_what_and_points_to_the_rule() {
        let err = Error::redis(
            "the acquire script",
            "10.0.0.7:6379",
            redis::make_extension_error(
                "NOPERM".to_owned(),
                Some("this user has no permissions to run the 'evalsha' command".to_owned()),
            ),
        );
        assert!(err.is_permission_denied() && !err.is_retryable(), "{err}");
        let text = err.to_string();
        assert!(text.contains("lacks the 'evalsha' command"), "{text}");
        assert!(
            text.contains("acl_rule") && text.contains("Redis ACL"),
            "{text}"
        );
        assert!(!refused("READONLY").is_permission_denied());
    }
}
