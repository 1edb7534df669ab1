//! testkit against the real redis-server: start, pause, kill, restart, AOF.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use testkit::{Error, RedisServer, ServerOptions};

/// Sends one command as a RESP array and returns the reply: the text of a
/// simple string, error or bulk string, or `(nil)`.
fn command(port: u16, args: &[&str], timeout: Duration) -> io::Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    (&stream).write_all(request.as_bytes())?;

    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    match line.strip_prefix('$') {
        Some("-1") => Ok("(nil)".to_owned()),
        Some(len) => {
            let mut body = vec![0; len.parse::<usize>().unwrap() + 2];
            reader.read_exact(&mut body)?;
            body.truncate(body.len() - 2);
            Ok(String::from_utf8(body).unwrap())
        }
        None => Ok(line.to_owned()),
    }
}

fn ping(port: u16) -> io::Result<String> {
    command(port, &["PING"], Duration::from_secs(1))
}

fn process_exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

mod start {
    use super::*;

    #[test]
    fn answers_ping_on_its_url() {
        let server = RedisServer::start().unwrap();
        assert_eq!(ping(server.port()).unwrap(), "+PONG");
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
        assert!(server.pid().is_some());
        assert!(server.dir().join("redis.log").is_file());
        assert!(
            server.log().contains("Ready to accept connections"),
            "{}",
            server.log()
        );
    }

    #[test]
    fn start_many_gives_distinct_working_ports() {
        let servers = RedisServer::start_many(3).unwrap();
        let mut ports: Vec<u16> = servers.iter().map(RedisServer::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 3);
        for server in &servers {
            assert_eq!(ping(server.port()).unwrap(), "+PONG");
        }
        // Independent: a key written to one is not on the others.
        let timeout = Duration::from_secs(1);
        assert_eq!(
            command(servers[0].port(), &["SET", "k", "v"], timeout).unwrap(),
            "+OK"
        );
        assert_eq!(
            command(servers[1].port(), &["GET", "k"], timeout).unwrap(),
            "(nil)"
        );
    }

    #[test]
    fn a_bad_argument_is_reported_with_the_log() {
        let opts = ServerOptions {
            extra_args: vec!["--no-such-directive".into(), "1".into()],
            ..Default::default()
        };
        let err = RedisServer::start_with(opts).unwrap_err();
        assert!(matches!(err, Error::Exited { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("no-such-directive"), "{message}");
    }

    #[test]
    fn extra_args_reach_the_server() {
        let opts = ServerOptions {
            extra_args: vec!["--maxmemory".into(), "12345678".into()],
            ..Default::default()
        };
        let server = RedisServer::start_with(opts).unwrap();
        let reply = command(
            server.port(),
            &["CONFIG", "GET", "maxmemory"],
            Duration::from_secs(1),
        );
        // A two-element array; the first line is enough to see it answered.
        assert_eq!(reply.unwrap(), "*2");
    }

    #[test]
    fn a_cluster_node_hashes_keys_and_serves_them_once_it_owns_the_slots() {
        let server = RedisServer::start_with(ServerOptions {
            cluster: true,
            ..Default::default()
        })
        .unwrap();
        let run = |args: &[&str]| command(server.port(), args, Duration::from_secs(5)).unwrap();
        // The cluster spec's example: the tag decides the slot.
        assert_eq!(run(&["CLUSTER", "KEYSLOT", "foo"]), ":12182");
        assert_eq!(run(&["CLUSTER", "KEYSLOT", "{foo}bar"]), ":12182");
        assert!(run(&["SET", "k", "v"]).starts_with("-CLUSTERDOWN"));
        assert_eq!(run(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]), "+OK");
        testkit::eventually_blocking(Duration::from_secs(10), "the node serves keys", || {
            command(server.port(), &["SET", "k", "v"], Duration::from_secs(5)).unwrap() == "+OK"
        });
        assert!(run(&["MGET", "a", "b"]).starts_with("-CROSSSLOT"));
        assert!(server.dir().join("nodes.conf").exists());
    }

    #[test]
    fn a_cluster_node_listens_on_its_own_bus_port() {
        // Redis's default bus port, port + 10000, does not exist for ports
        // above 55535, which the kernel hands out too: Redis refused to start.
        let server = RedisServer::start_with(ServerOptions {
            cluster: true,
            ..Default::default()
        })
        .unwrap();
        let bus = server.bus_port().unwrap();
        assert_ne!(bus, server.port());
        assert!(TcpStream::connect(("127.0.0.1", bus)).is_ok());
        assert_eq!(RedisServer::start().unwrap().bus_port(), None);
    }
}

mod faults {
    use super::*;

    #[test]
    fn pause_stops_answers_and_resume_brings_them_back() {
        let server = RedisServer::start().unwrap();
        server.pause();
        let err = command(server.port(), &["PING"], Duration::from_millis(200)).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err}"
        );
        server.resume();
        testkit::eventually_blocking(Duration::from_secs(5), "PING answers after resume", || {
            ping(server.port()).is_ok_and(|reply| reply == "+PONG")
        });
    }

    #[test]
    fn kill_then_restart_answers_on_the_same_port() {
        let mut server = RedisServer::start().unwrap();
        let (port, old_pid) = (server.port(), server.pid().unwrap());
        server.kill();
        assert_eq!(server.pid(), None);
        assert!(!process_exists(old_pid));
        assert!(ping(port).is_err(), "nothing listens after kill");
        server.kill(); // idempotent

        server.restart().unwrap();
        assert_eq!(server.port(), port);
        assert_ne!(server.pid(), Some(old_pid));
        assert_eq!(ping(port).unwrap(), "+PONG");
    }

    #[test]
    fn restart_of_a_paused_server_works() {
        let mut server = RedisServer::start().unwrap();
        server.pause();
        server.restart().unwrap();
        assert_eq!(ping(server.port()).unwrap(), "+PONG");
    }

    #[test]
    fn aof_keeps_a_key_across_kill_and_restart() {
        let timeout = Duration::from_secs(1);
        let opts = ServerOptions {
            aof: true,
            ..Default::default()
        };
        let mut server = RedisServer::start_with(opts).unwrap();
        assert_eq!(
            command(server.port(), &["SET", "fence", "42"], timeout).unwrap(),
            "+OK"
        );
        server.kill();
        server.restart().unwrap();
        assert_eq!(
            command(server.port(), &["GET", "fence"], timeout).unwrap(),
            "42"
        );
    }

    #[test]
    fn without_aof_a_restart_comes_back_empty() {
        let timeout = Duration::from_secs(1);
        let mut server = RedisServer::start().unwrap();
        assert_eq!(
            command(server.port(), &["SET", "fence", "42"], timeout).unwrap(),
            "+OK"
        );
        server.restart().unwrap();
        assert_eq!(
            command(server.port(), &["GET", "fence"], timeout).unwrap(),
            "(nil)"
        );
    }

    #[test]
    fn drop_kills_even_a_paused_server_and_removes_its_dir() {
        let server = RedisServer::start().unwrap();
        let (pid, dir) = (server.pid().unwrap(), server.dir().to_owned());
        server.pause();
        drop(server);
        assert!(!process_exists(pid));
        assert!(!dir.exists());
    }
}
