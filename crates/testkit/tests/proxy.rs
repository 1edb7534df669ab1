//! testkit's fault proxy and clock jumps against the real redis-server.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use testkit::{FaultProxy, RedisServer, ServerOptions};

/// A raw RESP connection: writes commands, reads one line of reply.
struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16, timeout: Duration) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(timeout)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Conn { stream, reader }
    }

    fn send(&mut self, args: &[&str]) {
        self.try_send(args).unwrap();
    }

    /// Writes a command; an error when the connection is gone.
    fn try_send(&mut self, args: &[&str]) -> io::Result<()> {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.stream.write_all(request.as_bytes())
    }

    /// The first line of the next reply, without its CRLF; `Ok("")` at EOF.
    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        Ok(line.trim_end().to_owned())
    }

    fn call(&mut self, args: &[&str]) -> io::Result<String> {
        self.send(args);
        self.line()
    }
}

/// The value of `key` read straight from the server, bypassing the proxy.
fn get_direct(server: &RedisServer, key: &str) -> String {
    let mut conn = Conn::open(server.port(), Duration::from_secs(2));
    let head = conn.call(&["GET", key]).unwrap();
    if head == "$-1" {
        return "(nil)".into();
    }
    conn.line().unwrap()
}

#[test]
fn passes_traffic_through() {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.port()).unwrap();
    let mut conn = Conn::open(proxy.port(), Duration::from_secs(2));
    assert_eq!(conn.call(&["PING"]).unwrap(), "+PONG");
    assert_eq!(conn.call(&["SET", "k", "v"]).unwrap(), "+OK");
    assert_eq!(get_direct(&server, "k"), "v");
    assert_eq!(proxy.url(), format!("redis://127.0.0.1:{}", proxy.port()));
}

#[test]
fn delay_holds_replies_but_not_requests() {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.port()).unwrap();
    let mut conn = Conn::open(proxy.port(), Duration::from_secs(5));
    assert_eq!(conn.call(&["PING"]).unwrap(), "+PONG");
    proxy.delay_replies(Duration::from_millis(1000));
    let start = Instant::now();
    conn.send(&["SET", "k", "late"]);
    // Redis has the write long before the client hears of it.
    let mut seen = false;
    while start.elapsed() < Duration::from_millis(900) {
        if get_direct(&server, "k") == "late" {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(seen, "the request was held back too");
    assert_eq!(conn.line().unwrap(), "+OK");
    assert!(
        start.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        start.elapsed()
    );
    proxy.heal();
    let start = Instant::now();
    assert_eq!(conn.call(&["PING"]).unwrap(), "+PONG");
    assert!(start.elapsed() < Duration::from_millis(300));
}

#[test]
fn reset_executes_the_command_and_drops_its_reply() {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.port()).unwrap();
    let mut conn = Conn::open(proxy.port(), Duration::from_secs(5));
    assert_eq!(conn.call(&["PING"]).unwrap(), "+PONG");
    proxy.reset_after_next_command();
    conn.send(&["SET", "k", "unanswered"]);
    // Reset (an error) or closed (EOF): either way, no reply.
    match conn.line() {
        Ok(line) => assert_eq!(line, "", "a reply got through"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ),
            "{e}"
        ),
    }
    assert_eq!(proxy.resets(), 1);
    assert_eq!(get_direct(&server, "k"), "unanswered");
    // Only one connection pays: a new one works.
    let mut again = Conn::open(proxy.port(), Duration::from_secs(2));
    assert_eq!(again.call(&["PING"]).unwrap(), "+PONG");
}

#[test]
fn blackhole_keeps_the_connection_open_and_silent_until_healed() {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.port()).unwrap();
    let mut conn = Conn::open(proxy.port(), Duration::from_millis(300));
    assert_eq!(conn.call(&["PING"]).unwrap(), "+PONG");
    proxy.blackhole();
    conn.send(&["SET", "k", "held"]);
    let err = conn.line().unwrap_err();
    // A read timeout, not an EOF or a reset: the connection looks alive.
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    assert_eq!(
        get_direct(&server, "k"),
        "(nil)",
        "the request went through"
    );
    proxy.heal();
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(conn.line().unwrap(), "+OK");
    assert_eq!(get_direct(&server, "k"), "held");
}

#[test]
fn reset_all_closes_open_connections() {
    let server = RedisServer::start().unwrap();
    let proxy = FaultProxy::start(server.port()).unwrap();
    let mut conn = Conn::open(proxy.port(), Duration::from_secs(5));
    assert_eq!(conn.call(&["PING"]).unwrap(), "+PONG");
    proxy.reset_all();
    let start = Instant::now();
    let mut closed = false;
    while start.elapsed() < Duration::from_secs(5) {
        // A reset connection fails the write (broken pipe) or the read.
        match conn.try_send(&["PING"]).and_then(|()| conn.line()) {
            Ok(line) if line == "+PONG" => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the connection survived reset_all");
}

#[test]
fn faketime_shifts_the_servers_wall_clock_only_when_asked() {
    let server = RedisServer::start_with(ServerOptions {
        faketime: true,
        ..Default::default()
    })
    .unwrap();
    let server_time = || {
        let mut conn = Conn::open(server.port(), Duration::from_secs(2));
        assert_eq!(conn.call(&["TIME"]).unwrap(), "*2");
        conn.line().unwrap();
        conn.line().unwrap().parse::<i64>().unwrap()
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    assert!((server_time() - now()).abs() <= 2);
    server.shift_clock(3600).unwrap();
    assert!((server_time() - now() - 3600).abs() <= 2);
    // A key with a TTL of 10 minutes is gone once the clock jumps an hour.
    let mut conn = Conn::open(server.port(), Duration::from_secs(2));
    server.shift_clock(0).unwrap();
    assert_eq!(
        conn.call(&["SET", "k", "v", "PX", "600000"]).unwrap(),
        "+OK"
    );
    server.shift_clock(3600).unwrap();
    assert_eq!(conn.call(&["GET", "k"]).unwrap(), "$-1");
}

#[test]
fn maxmemory_options_reach_the_server() {
    let server = RedisServer::start_with(ServerOptions {
        maxmemory: Some("1".into()),
        maxmemory_policy: Some("noeviction".into()),
        ..Default::default()
    })
    .unwrap();
    let mut conn = Conn::open(server.port(), Duration::from_secs(2));
    let reply = conn.call(&["SET", "k", "v"]).unwrap();
    assert!(reply.starts_with("-OOM"), "{reply}");
}
