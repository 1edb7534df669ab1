//! The true floor of W0: a blocking `std::net` client of our own, with no
//! runtime and no client library, sending one command at a time and
//! waiting for its reply on the same thread.
//!
//! Nothing sits between the socket and the loop: no task, no channel, no
//! wake-up of another thread. What it measures is the round trip of the
//! kernel's loopback (or network), the server's work and a `read(2)` that
//! blocks: the least any client can pay. W1's and W3's limits come from it.
//!
//! The RESP writer and reader are minimal (RESP2: simple strings, errors,
//! integers, bulk strings, arrays, nil); [`parse`] is a pure function on
//! bytes, tested on partial input.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::stats::Hist;
use crate::{Error, KEY_PREFIX};

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:42`
    Int(i64),
    /// `$3\r\nabc`, or `$-1` (nil).
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n...`, or `*-1` (nil).
    Array(Option<Vec<Value>>),
}

/// Parses one reply at the start of `buf`: `Ok(Some((value, bytes used)))`,
/// `Ok(None)` when `buf` holds only part of it (read more and call again),
/// `Err` when the bytes are not RESP.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, String> {
    parse_at(buf, 0)
}

/// The reply starting at `pos`, and where it ends.
fn parse_at(buf: &[u8], pos: usize) -> Result<Option<(Value, usize)>, String> {
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some((line, after)) = line_at(buf, pos + 1) else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(line).into_owned();
    let int = || -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not an integer: {:?}", String::from_utf8_lossy(line)))
    };
    match kind {
        b'+' => Ok(Some((Value::Simple(text()), after))),
        b'-' => Ok(Some((Value::Error(text()), after))),
        b':' => Ok(Some((Value::Int(int()?), after))),
        b'$' => {
            let len = int()?;
            if len < 0 {
                return Ok(Some((Value::Bulk(None), after)));
            }
            let len = usize::try_from(len).map_err(|e| e.to_string())?;
            let end = after + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(format!("bulk string of {len} bytes not followed by CRLF"));
            }
            Ok(Some((Value::Bulk(Some(buf[after..end].to_vec())), end + 2)))
        }
        b'*' => {
            let n = int()?;
            if n < 0 {
                return Ok(Some((Value::Array(None), after)));
            }
            let mut items = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(1024));
            let mut at = after;
            for _ in 0..n {
                match parse_at(buf, at)? {
                    Some((v, next)) => {
                        items.push(v);
                        at = next;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(Some(items)), at)))
        }
        other => Err(format!("unknown reply type byte {:?}", other as char)),
    }
}

/// The line starting at `pos`, without its CRLF, and where the next begins.
fn line_at(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(pos..)?;
    let i = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..i], pos + i + 2))
}

/// Appends `args` to `out` as one RESP command (an array of bulk strings).
pub(crate) fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads replies off a byte stream, keeping what arrived past the last one.
pub(crate) struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
}

impl<R: Read> Reader<R> {
    pub(crate) fn new(inner: R) -> Reader<R> {
        Reader {
            inner,
            buf: Vec::with_capacity(4096),
            start: 0,
        }
    }

    /// The next reply, reading as much as it takes.
    pub(crate) fn read_value(&mut self) -> io::Result<Value> {
        loop {
            match parse(&self.buf[self.start..]) {
                Ok(Some((v, used))) => {
                    self.start += used;
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                    }
                    return Ok(v);
                }
                Ok(None) => {
                    if self.start > 0 {
                        self.buf.drain(..self.start);
                        self.start = 0;
                    }
                    let len = self.buf.len();
                    self.buf.resize(len + 4096, 0);
                    let n = self.inner.read(&mut self.buf[len..]);
                    self.buf.truncate(len + *n.as_ref().unwrap_or(&0));
                    match n? {
                        0 => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the server closed the connection",
                            ));
                        }
                        _ => continue,
                    }
                }
                Err(why) => return Err(io::Error::new(io::ErrorKind::InvalidData, why)),
            }
        }
    }

    fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

/// A plain TCP or Unix socket.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where and how to connect, from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    /// `host:port`, or the socket's path for Unix.
    pub(crate) place: Place,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    Tcp(String, u16),
    Unix(String),
}

/// Reads `redis://[user[:password]@]host[:port][/db]`,
/// `unix:///path[?db=N&user=U&pass=P]` (also `redis+unix://`). `Err` says
/// why the raw client cannot go there (`rediss://`: TLS, which it does not
/// speak).
pub(crate) fn parse_url(url: &str) -> Result<Address, String> {
    if let Some(rest) = url
        .strip_prefix("unix://")
        .or_else(|| url.strip_prefix("redis+unix://"))
    {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut a = Address {
            place: Place::Unix(decode(path)),
            user: None,
            password: None,
            db: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "db" => a.db = Some(v.parse().map_err(|_| format!("bad db `{v}`"))?),
                "user" => a.user = Some(decode(v)),
                "pass" | "password" => a.password = Some(decode(v)),
                _ => {}
            }
        }
        return Ok(a);
    }
    if url.starts_with("rediss://") {
        return Err("rediss:// is TLS, which the raw client does not speak".into());
    }
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("not a redis:// or unix:// URL: {url}"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.split('?').next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((user, pw)) => ((!user.is_empty()).then(|| decode(user)), Some(decode(pw))),
            None => ((!u.is_empty()).then(|| decode(u)), None),
        },
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("bad host in {url}"))?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("bad port `{p}` in {url}"))?,
        None => 6379,
    };
    let db = match path {
        "" => None,
        d => Some(d.parse().map_err(|_| format!("bad db `{d}` in {url}"))?),
    };
    let host = if host.is_empty() {
        "127.0.0.1".into()
    } else {
        host
    };
    Ok(Address {
        place: Place::Tcp(host, port),
        user,
        password,
        db,
    })
}

/// `%xx` escapes of a URL part.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One blocking connection: a command out, its reply in, on this thread.
struct Client {
    reader: Reader<Stream>,
    out: Vec<u8>,
}

impl Client {
    fn connect(addr: &Address) -> Result<Client, Error> {
        let stream = match &addr.place {
            Place::Tcp(host, port) => {
                let s = TcpStream::connect((host.as_str(), *port))?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                Stream::Tcp(s)
            }
            Place::Unix(path) => {
                let s = UnixStream::connect(path)?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                Stream::Unix(s)
            }
        };
        let mut c = Client {
            reader: Reader::new(stream),
            out: Vec::with_capacity(256),
        };
        if let Some(pw) = &addr.password {
            match &addr.user {
                Some(u) => c.call(&[b"AUTH", u.as_bytes(), pw.as_bytes()])?,
                None => c.call(&[b"AUTH", pw.as_bytes()])?,
            };
        }
        if let Some(db) = addr.db {
            c.call(&[b"SELECT", db.to_string().as_bytes()])?;
        }
        Ok(c)
    }

    /// Sends one command and waits for its reply; an error reply is an
    /// [`Error::Check`].
    fn call(&mut self, args: &[&[u8]]) -> Result<Value, Error> {
        self.out.clear();
        encode(&mut self.out, args);
        self.reader.get_mut().write_all(&self.out)?;
        match self.reader.read_value()? {
            Value::Error(e) => Err(Error::Check(format!(
                "raw client: {} answered {e}",
                String::from_utf8_lossy(args[0])
            ))),
            v => Ok(v),
        }
    }
}

/// The floor, as measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Floor {
    /// PING in series.
    pub(crate) rtt_p50_us: f64,
    pub(crate) rtt_p99_us: f64,
    /// `SET k tok NX PX 30000` + `EVALSHA cas-del 1 k tok` in series: W1's
    /// cycle.
    pub(crate) cycle_p50_us: f64,
    pub(crate) cycle_p99_us: f64,
    pub(crate) cycle_per_s: f64,
    /// `GET c`, `SET c v+1`, `EVALSHA cas-del` in series: the three round
    /// trips of a W3 handoff.
    pub(crate) chain_per_s: f64,
    pub(crate) chain_p50_us: f64,
    /// The chain's EVALSHA alone: one release.
    pub(crate) release_p50_us: f64,
    /// How many of each were timed (after warm-up).
    pub(crate) samples: u64,
}

/// Measures the floor at `url` on the calling thread (it blocks: call it
/// from `spawn_blocking` or a thread of its own): `samples` of each after
/// `warmup`. `Err(why)` when the raw client cannot go there; an I/O or
/// Redis error is an error too (the caller reports it and goes on).
pub(crate) fn measure(url: &str, warmup: u64, samples: u64) -> Result<Floor, Error> {
    let addr = parse_url(url).map_err(Error::Invalid)?;
    let mut c = Client::connect(&addr)?;
    let sha = match c.call(&[b"SCRIPT", b"LOAD", crate::physical::CAS_DEL.as_bytes()])? {
        Value::Bulk(Some(s)) => s,
        other => {
            return Err(Error::Check(format!(
                "raw client: SCRIPT LOAD answered {other:?}"
            )));
        }
    };
    let samples = samples.max(1);
    let key = format!("{KEY_PREFIX}w0:raw");
    let key = key.as_bytes();
    let counter = format!("{KEY_PREFIX}w0:raw:counter");
    let counter = counter.as_bytes();
    // A lease key that holds another token: the chain's release runs the
    // script's GET and compare, as redis-benchmark's EVAL shape does.
    let held = format!("{KEY_PREFIX}w0:raw:held");
    let held = held.as_bytes();

    // PING in series.
    let mut rtt = Hist::new();
    for i in 0..warmup + samples {
        let t = Instant::now();
        c.call(&[b"PING"])?;
        if i >= warmup {
            rtt.record(t.elapsed());
        }
    }

    // W1's cycle.
    let mut cycle = Hist::new();
    let mut started = Instant::now();
    for i in 0..warmup + samples {
        if i == warmup {
            started = Instant::now();
        }
        let t = Instant::now();
        c.call(&[b"SET", key, b"tok", b"NX", b"PX", b"30000"])?;
        c.call(&[b"EVALSHA", &sha, b"1", key, b"tok"])?;
        if i >= warmup {
            cycle.record(t.elapsed());
        }
    }
    let cycle_secs = started.elapsed().as_secs_f64();

    // W3's chain: the critical section's GET and SET, then the release.
    c.call(&[b"SET", held, b"someone-else", b"PX", b"60000"])?;
    c.call(&[b"SET", counter, b"0"])?;
    let mut chain = Hist::new();
    let mut release = Hist::new();
    let mut started = Instant::now();
    for i in 0..warmup + samples {
        if i == warmup {
            started = Instant::now();
        }
        let t = Instant::now();
        let v = match c.call(&[b"GET", counter])? {
            Value::Bulk(Some(b)) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0),
            _ => 0,
        };
        c.call(&[b"SET", counter, (v + 1).to_string().as_bytes()])?;
        let r = Instant::now();
        c.call(&[b"EVALSHA", &sha, b"1", held, b"tok"])?;
        if i >= warmup {
            release.record(r.elapsed());
            chain.record(t.elapsed());
        }
    }
    let chain_secs = started.elapsed().as_secs_f64();
    c.call(&[b"DEL", key, counter, held])?;
    Ok(Floor {
        rtt_p50_us: rtt.quantile_us(0.5),
        rtt_p99_us: rtt.quantile_us(0.99),
        cycle_p50_us: cycle.quantile_us(0.5),
        cycle_p99_us: cycle.quantile_us(0.99),
        cycle_per_s: samples as f64 / cycle_secs,
        chain_per_s: samples as f64 / chain_secs,
        chain_p50_us: chain.quantile_us(0.5),
        release_p50_us: release.quantile_us(0.5),
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Value {
        let (v, used) = parse(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len(), "{:?}", String::from_utf8_lossy(bytes));
        v
    }

    #[test]
    fn parses_each_kind_of_reply() {
        assert_eq!(one(b"+OK\r\n"), Value::Simple("OK".into()));
        assert_eq!(one(b"+PONG\r\n"), Value::Simple("PONG".into()));
        assert_eq!(
            one(b"-NOSCRIPT No matching script\r\n"),
            Value::Error("NOSCRIPT No matching script".into())
        );
        assert_eq!(one(b":1\r\n"), Value::Int(1));
        assert_eq!(one(b":-42\r\n"), Value::Int(-42));
        assert_eq!(one(b"$3\r\ntok\r\n"), Value::Bulk(Some(b"tok".to_vec())));
        assert_eq!(one(b"$0\r\n\r\n"), Value::Bulk(Some(Vec::new())));
        // A bulk string may hold CRLF itself: its length decides.
        assert_eq!(
            one(b"$4\r\na\r\nb\r\n"),
            Value::Bulk(Some(b"a\r\nb".to_vec()))
        );
        assert_eq!(one(b"$-1\r\n"), Value::Bulk(None));
        assert_eq!(one(b"*-1\r\n"), Value::Array(None));
        assert_eq!(one(b"*0\r\n"), Value::Array(Some(Vec::new())));
        assert_eq!(
            one(b"*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n"),
            Value::Array(Some(vec![
                Value::Int(1),
                Value::Bulk(None),
                Value::Array(Some(vec![Value::Simple("x".into())])),
            ]))
        );
    }

    /// Every proper prefix of a reply is "incomplete", never an error nor a
    /// wrong value; the whole reply parses; what follows it is left.
    #[test]
    fn a_prefix_is_incomplete_and_the_rest_is_left() {
        let reply: &[u8] = b"*2\r\n$40\r\n0123456789012345678901234567890123456789\r\n:7\r\n";
        for cut in 0..reply.len() {
            assert_eq!(parse(&reply[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = reply.to_vec();
        two.extend_from_slice(b"+OK\r\n");
        let (_, used) = parse(&two).unwrap().unwrap();
        assert_eq!(used, reply.len());
        assert_eq!(
            parse(&two[used..]),
            Ok(Some((Value::Simple("OK".into()), 5)))
        );
    }

    #[test]
    fn malformed_bytes_are_errors() {
        assert!(parse(b"?what\r\n").is_err());
        assert!(parse(b":12x\r\n").is_err());
        assert!(parse(b"$abc\r\n").is_err());
        assert!(parse(b"$3\r\nabcXY").is_err());
        assert!(parse(b"*1\r\n!\r\n").is_err());
    }

    /// A stream that hands out one byte per read, as a slow socket may.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.split_first() {
                Some((b, rest)) if !buf.is_empty() => {
                    buf[0] = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn the_reader_assembles_replies_from_partial_reads() {
        let bytes = b"+PONG\r\n$3\r\ntok\r\n:1\r\n-ERR wrong\r\n*2\r\n$-1\r\n:0\r\n";
        let mut r = Reader::new(Trickle(bytes));
        assert_eq!(r.read_value().unwrap(), Value::Simple("PONG".into()));
        assert_eq!(r.read_value().unwrap(), Value::Bulk(Some(b"tok".to_vec())));
        assert_eq!(r.read_value().unwrap(), Value::Int(1));
        assert_eq!(r.read_value().unwrap(), Value::Error("ERR wrong".into()));
        assert_eq!(
            r.read_value().unwrap(),
            Value::Array(Some(vec![Value::Bulk(None), Value::Int(0)]))
        );
        // The stream ended: an error, not a hang nor a made-up value.
        let e = r.read_value().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        // Several replies in one read are handed out one at a time.
        let mut r = Reader::new(&b":1\r\n:2\r\n"[..]);
        assert_eq!(r.read_value().unwrap(), Value::Int(1));
        assert_eq!(r.read_value().unwrap(), Value::Int(2));
    }

    #[test]
    fn writes_commands_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"SET", b"k", b"tok", b"NX"]);
        assert_eq!(
            out,
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\ntok\r\n$2\r\nNX\r\n"
        );
    }

    #[test]
    fn reads_urls() {
        let a = parse_url("redis://127.0.0.1:6391").unwrap();
        assert_eq!(a.place, Place::Tcp("127.0.0.1".into(), 6391));
        assert_eq!((a.user, a.password, a.db), (None, None, None));
        let a = parse_url("redis://u:p%40ss@h/3").unwrap();
        assert_eq!(a.place, Place::Tcp("h".into(), 6379));
        assert_eq!(a.user.as_deref(), Some("u"));
        assert_eq!(a.password.as_deref(), Some("p@ss"));
        assert_eq!(a.db, Some(3));
        let a = parse_url("redis://:pw@[::1]:7000/").unwrap();
        assert_eq!(a.place, Place::Tcp("::1".into(), 7000));
        assert_eq!((a.user, a.password.as_deref()), (None, Some("pw")));
        let a = parse_url("unix:///tmp/r.sock?db=2&pass=x").unwrap();
        assert_eq!(a.place, Place::Unix("/tmp/r.sock".into()));
        assert_eq!((a.db, a.password.as_deref()), (Some(2), Some("x")));
        assert!(parse_url("rediss://h:6380").unwrap_err().contains("TLS"));
        assert!(parse_url("redis://h:port").is_err());
    }
}
