//! Direct connections: sockets that the caller writes and reads itself, for
//! the operations that go out alone.
//!
//! A command on the shared multiplexed connection goes through that
//! connection's driver task: the caller hands it over a channel, the driver
//! writes it, reads the reply and hands it back. Each hand-over is a task
//! wake-up, and on a multi-threaded runtime often a thread's too. For a lone
//! acquire or release (nothing else in flight, see `batch`) that is most of
//! what the client adds to the round trip: W1's cycle of two round trips
//! took 27 µs through redis-rs's multiplexed connection against 21 µs with
//! a socket read by the caller, in the same run.
//!
//! So a [`Lane`] keeps a few plain connections. An operation takes one that
//! is idle, writes its command, reads the reply in its own task and gives
//! the connection back. None idle: it goes through the shared connection as
//! before (and the lane opens one more in the background, up to
//! [`LANE_MAX`]). A connection whose request failed, timed out or was
//! cancelled is closed, never given back: its reply could still arrive.
//!
//! Only for plain TCP with RESP2 (`redis://`): TLS, Unix sockets and RESP3
//! keep the shared connection alone.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion, RedisError, RedisResult, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::node::{Shared, Timeouts};

/// Direct connections a lane keeps at most (idle, in use and opening). An
/// operation that finds none idle uses the shared connection: this many
/// is plenty for the lone operations, which are fewer than the batcher's
/// threshold, and mostly one.
pub(crate) const LANE_MAX: usize = 4;

/// After a failed connect, the lane waits this long before trying again
/// (the shared connection carries everything meanwhile).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A node's direct connections.
pub(crate) struct Lane {
    host: String,
    port: u16,
    settings: redis::RedisConnectionInfo,
    timeouts: Timeouts,
    idle: Mutex<Vec<Direct>>,
    /// Open, in use or being opened (the lane's share of `connections()`).
    open: Arc<AtomicUsize>,
    /// No connect before this (after a failure).
    not_before: Mutex<Option<Instant>>,
    /// Connections of cancelled operations whose replies are still being
    /// read (see [`InFlight`]), and who waits for them.
    draining: AtomicUsize,
    drained: tokio::sync::Notify,
    runtime: tokio::runtime::Handle,
}

impl Lane {
    /// A lane to the server of `info`, or `None` where direct connections
    /// do not apply (TLS, Unix sockets, RESP3).
    pub(crate) fn new(info: &ConnectionInfo, timeouts: Timeouts) -> Option<Arc<Lane>> {
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return None;
        };
        let settings = info.redis_settings();
        if !matches!(settings.protocol(), ProtocolVersion::RESP2) {
            return None;
        }
        Some(Arc::new(Lane {
            host: host.clone(),
            port: *port,
            settings: settings.clone(),
            timeouts,
            idle: Mutex::new(Vec::new()),
            open: Arc::default(),
            not_before: Mutex::new(None),
            draining: AtomicUsize::new(0),
            drained: tokio::sync::Notify::new(),
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    /// Direct connections open (idle or in use).
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Direct>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection, if there is one; if not, one more is opened in
    /// the background (unless the lane is full or its last connect failed
    /// less than [`RETRY_AFTER`] ago).
    fn take(self: &Arc<Self>) -> Option<Direct> {
        loop {
            let Some(conn) = self.idle().pop() else { break };
            // One that the server closed while it was idle (CLIENT KILL,
            // a restart, a timeout) reads as the end of the stream: drop it
            // rather than fail the operation that took it.
            if conn.is_open() {
                return Some(conn);
            }
        }
        self.grow();
        None
    }

    /// Waits until no connection of a cancelled operation is still being
    /// read: once this returns, whatever such an operation had sent has run
    /// (or never will), so that a release sent to clean up after it cannot
    /// overtake it on another connection.
    pub(crate) async fn settled(&self) {
        loop {
            let notified = self.drained.notified();
            if self.draining.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn give_back(&self, conn: Direct) {
        self.idle().push(conn);
    }

    fn grow(self: &Arc<Self>) {
        {
            let mut not_before = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
            if not_before.is_some_and(|t| Instant::now() < t) {
                return;
            }
            // Counted before it exists, so that concurrent callers do not
            // all open one.
            let open = self.open.fetch_add(1, Ordering::AcqRel);
            if open >= LANE_MAX {
                self.open.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            *not_before = None;
        }
        let lane = Arc::clone(self);
        self.runtime.spawn(async move {
            let count = Count(Arc::clone(&lane.open));
            match tokio::time::timeout(lane.timeouts.connect, Direct::connect(&lane, count)).await {
                Ok(Ok(conn)) => lane.give_back(conn),
                // The count went with the attempt; the shared connection
                // carries everything until the next try.
                Ok(Err(e)) => lane.failed(&e.to_string()),
                Err(_) => lane.failed("connect timed out"),
            }
        });
    }

    fn failed(&self, why: &str) {
        tracing::debug!(target: crate::observe::TARGET, server = %self.host, port = self.port, why, "leasehold: a direct connection could not be opened; the shared connection carries its commands");
        *self.not_before.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Instant::now() + RETRY_AFTER);
    }
}

/// Decrements the lane's count when the connection it counts is gone.
struct Count(Arc<AtomicUsize>);

impl Drop for Count {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One direct connection: a socket and the bytes of a reply read so far.
struct Direct {
    stream: TcpStream,
    buf: Vec<u8>,
    _count: Count,
}

impl Direct {
    /// Connects and sets the connection up as the shared one is: AUTH and
    /// SELECT when the URL asks for them.
    async fn connect(lane: &Lane, count: Count) -> RedisResult<Direct> {
        let stream = TcpStream::connect((lane.host.as_str(), lane.port)).await?;
        stream.set_nodelay(true)?;
        let mut conn = Direct {
            stream,
            buf: Vec::with_capacity(256),
            _count: count,
        };
        let s = &lane.settings;
        if let Some(password) = s.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = s.username() {
                auth.arg(user);
            }
            auth.arg(password);
            conn.request(&auth.get_packed_command())
                .await?
                .extract_error()?;
        }
        if s.db() != 0 {
            let select = redis::cmd("SELECT").arg(s.db()).get_packed_command();
            conn.request(&select).await?.extract_error()?;
        }
        Ok(conn)
    }

    /// Whether the server still has the connection open (and has sent
    /// nothing unasked), as far as a read that does not wait can tell.
    fn is_open(&self) -> bool {
        matches!(self.stream.try_read(&mut [0; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes one command and reads its reply (a server error comes back
    /// as a value, as the parser gives it).
    async fn request(&mut self, packed: &[u8]) -> RedisResult<Value> {
        self.buf.clear();
        self.stream.write_all(packed).await?;
        self.reply().await
    }

    /// Reads the reply to the command sent last (what of it is in `buf`
    /// already counts).
    async fn reply(&mut self) -> RedisResult<Value> {
        if let Some(len) = frame_len(&self.buf) {
            return redis::parse_redis_value(&self.buf[..len]);
        }
        loop {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            if let Some(len) = frame_len(&self.buf) {
                return redis::parse_redis_value(&self.buf[..len]);
            }
        }
    }
}

/// The length of the RESP2 reply at the start of `buf` once all of it has
/// arrived; `None` while more is to come. A malformed reply counts as whole,
/// so that the parser reports it.
fn frame_len(buf: &[u8]) -> Option<usize> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let rest = buf.get(at..)?;
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        Some((&rest[..end], at + end + 2))
    }
    fn number(digits: &[u8]) -> Option<i64> {
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
    fn frame(buf: &[u8], at: usize) -> Option<usize> {
        let kind = *buf.get(at)?;
        let (head, next) = line(buf, at + 1)?;
        match kind {
            b'$' => match number(head) {
                Some(n) if n >= 0 => {
                    let end = next + n as usize + 2;
                    (buf.len() >= end).then_some(end)
                }
                _ => Some(next),
            },
            b'*' => match number(head) {
                Some(n) if n > 0 => (0..n).try_fold(next, |at, _| frame(buf, at)),
                _ => Some(next),
            },
            _ => Some(next),
        }
    }
    frame(buf, 0)
}

/// The connection for an operation that goes out alone: a direct one when
/// one is idle, else the shared one.
pub(crate) struct Express {
    pub(crate) lane: Option<Arc<Lane>>,
    pub(crate) shared: Shared,
}

impl Express {
    async fn direct(lane: Arc<Lane>, conn: Direct, cmd: &redis::Cmd) -> RedisResult<Value> {
        let packed = cmd.get_packed_command();
        let response = lane.timeouts.response;
        let mut op = InFlight {
            lane,
            conn: Some(conn),
        };
        let reply = match op.conn.as_mut() {
            Some(conn) => tokio::time::timeout(response, conn.request(&packed)).await,
            None => unreachable!("put there above"),
        };
        // Answered, failed or timed out: not cancelled, so not drained.
        let conn = op.conn.take();
        match (reply, conn) {
            (Ok(Ok(value)), Some(conn)) => {
                op.lane.give_back(conn);
                value.extract_error()
            }
            // The connection is closed here, its reply unread: that reply
            // could still come, and be read as the next command's.
            (Ok(Err(e)), _) => Err(e),
            _ => Err(RedisError::from(io::Error::from(io::ErrorKind::TimedOut))),
        }
    }
}

/// A direct connection with a command on it. Dropped before the reply was
/// read (its operation was cancelled), it is handed to a task that reads
/// that reply, bounded by the response timeout, then gives the connection
/// back (or closes it). The lane counts the task until it is done: see
/// [`Lane::settled`].
struct InFlight {
    lane: Arc<Lane>,
    conn: Option<Direct>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let lane = Arc::clone(&self.lane);
        lane.draining.fetch_add(1, Ordering::AcqRel);
        let runtime = lane.runtime.clone();
        runtime.spawn(async move {
            // A command cut off while being written gets no reply: the
            // timeout closes the connection, and the server drops the part
            // it had read.
            if let Ok(Ok(_)) = tokio::time::timeout(lane.timeouts.response, conn.reply()).await {
                lane.give_back(conn);
            }
            lane.draining.fetch_sub(1, Ordering::AcqRel);
            lane.drained.notify_waiters();
        });
    }
}

impl ConnectionLike for Express {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        if let Some(lane) = &self.lane
            && let Some(conn) = lane.take()
        {
            return Box::pin(Express::direct(Arc::clone(lane), conn, cmd));
        }
        self.shared.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        self.shared.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.shared.get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::frame_len;

    #[test]
    fn a_reply_counts_only_once_all_of_it_has_arrived() {
        let whole: &[&[u8]] = &[
            b"+OK\r\n",
            b"-NOSCRIPT No matching script\r\n",
            b":1\r\n",
            b"$-1\r\n",
            b"$3\r\nabc\r\n",
            b"$0\r\n\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n:1\r\n:1733000000000\r\n",
            b"*2\r\n$2\r\nhi\r\n*1\r\n$-1\r\n",
        ];
        for reply in whole {
            assert_eq!(frame_len(reply), Some(reply.len()), "{reply:?}");
            for cut in 0..reply.len() {
                assert_eq!(frame_len(&reply[..cut]), None, "{reply:?} cut at {cut}");
            }
        }
        // A bulk string may hold CR LF itself.
        assert_eq!(frame_len(b"$4\r\na\r\nb\r\n"), Some(10));
        assert_eq!(frame_len(b"$4\r\na\r\nb"), None);
    }

    #[test]
    fn a_malformed_reply_counts_as_whole_so_that_the_parser_reports_it() {
        assert_eq!(frame_len(b"$x\r\n"), Some(4));
        assert!(redis::parse_redis_value(b"$x\r\n").is_err());
    }
}
