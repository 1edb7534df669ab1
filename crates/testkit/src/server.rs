//! One `redis-server` child process and the faults tests inflict on it.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{ClientAuth, Error, TlsFiles, probe, redis_server_binary};

/// How long a server may take to answer `PING` after it is spawned. Generous
/// because CI machines are slow and replaying an append-only file takes time;
/// a healthy start takes a few milliseconds.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// How often readiness is polled. Short, so tests wait for the condition
/// itself rather than for a guessed sleep.
const POLL: Duration = Duration::from_millis(5);

/// How many fresh ports [`RedisServer::start_with`] tries. A port is free when
/// picked, but another process may bind it before `redis-server` does.
const PORT_ATTEMPTS: usize = 5;

/// How long [`RedisServer::restart`] keeps retrying its old port. The kill
/// freed it a moment ago, and Redis binds with `SO_REUSEADDR`, so this only
/// covers a port grabbed by someone else in between.
const REBIND_DEADLINE: Duration = Duration::from_secs(2);

/// How many log lines errors and panics show.
const LOG_LINES: usize = 40;

/// How to run a [`RedisServer`].
///
/// ```
/// use testkit::{RedisServer, ServerOptions};
///
/// let server = RedisServer::start_with(ServerOptions {
///     aof: true,
///     maxmemory: Some("64mb".into()),
///     maxmemory_policy: Some("noeviction".into()),
///     ..Default::default()
/// })?;
/// # Ok::<(), testkit::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Persist to an append-only file (`--appendonly yes --appendfsync
    /// always`) in the server's directory, so every acknowledged write
    /// survives [`RedisServer::kill`] + [`RedisServer::restart`]. Off by
    /// default: nothing is persisted and a restart comes back empty.
    pub aof: bool,
    /// More `redis-server` arguments, e.g. `["--maxmemory", "64mb"]`. They come
    /// last, so they override testkit's own (Redis lets a later directive win).
    pub extra_args: Vec<String>,
    /// `--maxmemory`, e.g. `"64mb"`; `None` leaves Redis's default (no
    /// limit). Change it at run time with `CONFIG SET maxmemory` to make a
    /// running server refuse writes (OOM) or evict.
    pub maxmemory: Option<String>,
    /// `--maxmemory-policy`, e.g. `"noeviction"` or `"allkeys-lru"`.
    pub maxmemory_policy: Option<String>,
    /// Runs `redis-server` under libfaketime (Debian's `faketime` package),
    /// so [`RedisServer::shift_clock`] can make its wall clock jump. Only the
    /// wall clock is faked; its monotonic clock runs true.
    pub faketime: bool,
    /// Starts the server as a Redis Cluster node (`--cluster-enabled yes`,
    /// its `nodes.conf` in the server's directory) of a cluster of its own;
    /// [`RedisCluster`](crate::RedisCluster) builds a whole cluster of them.
    /// Its cluster bus listens on a free port of its own
    /// ([`RedisServer::bus_port`]). It owns no hash slot yet: `CLUSTER
    /// KEYSLOT` answers, commands on keys answer `CLUSTERDOWN` until the test
    /// gives it slots (`CLUSTER ADDSLOTSRANGE 0 16383` makes it serve every
    /// key, and refuse a command or script whose keys are in different
    /// slots: `CROSSSLOT`).
    pub cluster: bool,
    /// Also listens for TLS (`--tls-port`) on a free port of its own
    /// ([`RedisServer::tls_url`]), with certificates testkit generates in
    /// the server's directory ([`RedisServer::tls_files`]) and this client
    /// authentication. The plain port stays open for testkit's own probes
    /// and for tests that inspect the server.
    pub tls: Option<ClientAuth>,
    /// With [`tls`](Self::tls): these certificates instead of new ones, so
    /// that several servers share one CA and a client trusts them all with
    /// one file ([`RedisServer::start_many_with`] and
    /// [`RedisCluster`](crate::RedisCluster) do it for you).
    pub tls_files: Option<TlsFiles>,
}

/// One `redis-server` child process on a free loopback port.
///
/// It has its own temporary directory ([`dir`](Self::dir)) holding its log
/// and any append-only files. Dropping it kills the process (`SIGKILL`, then
/// waits for it) and removes the directory; if the thread is panicking, the
/// last 40 lines of its log go to stderr first, each prefixed with the port,
/// so a failing test shows what Redis saw.
///
/// The child stays in the test's process group on purpose: Ctrl-C on
/// `cargo test` reaches it too.
///
/// ```
/// let mut server = testkit::RedisServer::start()?;
/// let url = server.url(); // hand this to a client
/// server.kill(); // the port refuses connections now
/// server.restart()?; // same port and dir
/// # Ok::<(), testkit::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    opts: ServerOptions,
    port: u16,
    /// The cluster bus port with [`ServerOptions::cluster`], else 0. Picked
    /// with `port` rather than Redis's default `port + 10000`, which does not
    /// exist for ports above 55535 (Redis then refuses to start).
    bus_port: u16,
    /// The TLS port and certificates with [`ServerOptions::tls`].
    tls: Option<(u16, TlsFiles)>,
    /// `None` while killed. Only an un-reaped `Child` is ever signalled, so
    /// its pid cannot have been reused by an unrelated process.
    child: Option<Child>,
    /// Declared last: dropped after `Drop::drop` killed the process.
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server with default [`ServerOptions`] and waits until it
    /// answers `PING`.
    ///
    /// # Errors
    ///
    /// See [`start_with`](Self::start_with).
    pub fn start() -> Result<RedisServer, Error> {
        RedisServer::start_with(ServerOptions::default())
    }

    /// Starts a server with `opts` and waits until it answers `PING`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] without a `redis-server`, [`Error::Spawn`] if it
    /// cannot run, [`Error::Exited`] if it exits during start-up (e.g. a bad
    /// `extra_args`), [`Error::NoPong`] if it is not ready within 10 s.
    pub fn start_with(opts: ServerOptions) -> Result<RedisServer, Error> {
        let binary = redis_server_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("testkit-redis-")
            .tempdir()?;
        let mut server = RedisServer {
            binary,
            opts,
            port: 0,
            bus_port: 0,
            tls: None,
            child: None,
            dir,
        };
        if server.opts.tls.is_some() {
            let files = match &server.opts.tls_files {
                Some(files) => files.clone(),
                None => TlsFiles::generate(server.dir.path())?,
            };
            server.tls = Some((0, files));
        }
        let mut attempt = 1;
        loop {
            server.port = free_port()?;
            if server.opts.cluster {
                server.bus_port = free_port()?;
            }
            if let Some((port, _)) = &mut server.tls {
                *port = free_port()?;
            }
            match server.launch() {
                Err(e) if port_taken(&e) && attempt < PORT_ATTEMPTS => attempt += 1,
                result => return result.map(|()| server),
            }
        }
    }

    /// Starts a replica of `master` and waits (10 s at most) until it
    /// streams: a probe written on the master has reached it. Being
    /// "online" is not enough: after a full sync the master streams writes
    /// only once the replica acknowledged the snapshot, up to a second
    /// later.
    ///
    /// ```
    /// let master = testkit::RedisServer::start()?;
    /// let replica = testkit::RedisServer::start_replica_of(&master)?;
    /// assert_ne!(replica.port(), master.port());
    /// # Ok::<(), testkit::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), and [`Error::Command`] naming the probe
    /// when it does not reach the replica in time.
    pub fn start_replica_of(master: &RedisServer) -> Result<RedisServer, Error> {
        let replica = RedisServer::start_with(ServerOptions {
            extra_args: vec![
                "--replicaof".into(),
                "127.0.0.1".into(),
                master.port().to_string(),
            ],
            ..Default::default()
        })?;
        let (key, value) = ("testkit:replica:probe", replica.port().to_string());
        let timeout = Duration::from_secs(2);
        let failed = |port: u16, command: &str, reply: String| Error::Command {
            port,
            command: command.to_owned(),
            reply,
        };
        crate::resp::call(master.port(), &["SET", key, &value, "PX", "10000"], timeout)
            .map_err(|e| failed(master.port(), "SET testkit:replica:probe", e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = crate::resp::call(replica.port(), &["GET", key], timeout)
                .map_err(|e| failed(replica.port(), "GET testkit:replica:probe", e.to_string()))?;
            if got.as_text().as_deref() == Some(value.as_str()) {
                return Ok(replica);
            }
            if Instant::now() >= deadline {
                return Err(failed(
                    replica.port(),
                    "GET testkit:replica:probe",
                    format!(
                        "the probe written on the master :{} did not arrive within 10s: {got}",
                        master.port()
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts `n` independent masters (no replication between them), e.g.
    /// for Redlock. If one fails, those already started are killed.
    ///
    /// # Errors
    ///
    /// The first failure, as in [`start`](Self::start).
    pub fn start_many(n: usize) -> Result<Vec<RedisServer>, Error> {
        (0..n).map(|_| RedisServer::start()).collect()
    }

    /// Starts `n` independent masters with `opts`. With
    /// [`ServerOptions::tls`] and no [`ServerOptions::tls_files`], one CA
    /// is generated for them all, so that one `--tls-ca` trusts every one.
    ///
    /// ```
    /// use testkit::{ClientAuth, RedisServer, ServerOptions};
    ///
    /// let masters = RedisServer::start_many_with(3, ServerOptions {
    ///     tls: Some(ClientAuth::Optional),
    ///     ..Default::default()
    /// })?;
    /// let ca = masters[0].tls_files().unwrap().ca();
    /// assert!(masters.iter().all(|m| m.tls_files().unwrap().ca() == ca));
    /// # Ok::<(), testkit::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The first failure, as in [`start_with`](Self::start_with).
    pub fn start_many_with(n: usize, mut opts: ServerOptions) -> Result<Vec<RedisServer>, Error> {
        if opts.tls.is_some() && opts.tls_files.is_none() {
            opts.tls_files = Some(TlsFiles::generate_temp()?);
        }
        (0..n)
            .map(|_| RedisServer::start_with(opts.clone()))
            .collect()
    }

    /// `redis://127.0.0.1:PORT`. The same across [`restart`](Self::restart).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://127.0.0.1:TLS_PORT` with [`ServerOptions::tls`], else
    /// `None`. The server's certificate is signed by
    /// [`tls_files`](Self::tls_files)' CA, which a client must be told to
    /// trust.
    pub fn tls_url(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|(port, _)| format!("rediss://127.0.0.1:{port}"))
    }

    /// The TLS port of a [`ServerOptions::tls`] server, else `None`.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|(port, _)| *port)
    }

    /// The CA and certificates of a [`ServerOptions::tls`] server.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref().map(|(_, files)| files)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster bus port (`--cluster-port`) of a
    /// [`cluster`](ServerOptions::cluster) node, which `CLUSTER MEET` needs;
    /// `None` for a plain server. The same across [`restart`](Self::restart).
    pub fn bus_port(&self) -> Option<u16> {
        self.opts.cluster.then_some(self.bus_port)
    }

    /// The process id; `None` while killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its private temporary directory: `redis.log` and, with
    /// [`ServerOptions::aof`], the append-only files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Freezes the process with `SIGSTOP`: connections stay open but nothing
    /// is answered, as with a long GC pause or a stalled VM. Keys still expire
    /// by Redis's clock once it resumes. Does nothing while killed.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Undoes [`pause`](Self::pause) with `SIGCONT`. Does nothing while killed.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills the process with `SIGKILL` (no chance to persist anything more)
    /// and waits for it to be gone. Idempotent; also ends a paused server.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGCONT first in case it is paused; errors are ignored because
            // the only possible one is that it already exited.
            send_signal(child.id(), libc::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory, after killing it if it
    /// is running, and waits until it answers `PING`. With
    /// [`ServerOptions::aof`] the data comes back; without, it starts empty.
    ///
    /// # Errors
    ///
    /// As [`start_with`](Self::start_with); also [`Error::Exited`] if the port
    /// stays taken by another process for 2 s.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        let deadline = Instant::now() + REBIND_DEADLINE;
        loop {
            match self.launch() {
                Err(e) if port_taken(&e) && Instant::now() < deadline => thread::sleep(POLL),
                result => return result,
            }
        }
    }

    /// Makes the next [`restart`](Self::restart) start it as a replica of
    /// the server on `master` (`--replicaof 127.0.0.1 PORT`), or as a
    /// master with `None`; the running process is not changed.
    pub(crate) fn set_replicaof(&mut self, master: Option<u16>) {
        let args = &mut self.opts.extra_args;
        if let Some(at) = args.iter().position(|a| a == "--replicaof") {
            args.drain(at..(at + 3).min(args.len()));
        }
        if let Some(port) = master {
            args.extend(["--replicaof".into(), "127.0.0.1".into(), port.to_string()]);
        }
    }

    /// The whole log (`dir()/redis.log`): what Redis logged plus anything it
    /// printed, across restarts. Empty if it cannot be read.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Makes the server's wall clock read `offset` seconds off the true
    /// time (negative: in the past), at once, as an NTP step or a wrong
    /// manual `date -s` would. Redis expires keys by this clock, so a jump
    /// forward ends every TTL early. The offset is absolute, not added to
    /// the previous one; `0` puts the clock right.
    ///
    /// # Panics
    ///
    /// If the server was not started with [`ServerOptions::faketime`].
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the offset file cannot be written.
    pub fn shift_clock(&self, offset: i64) -> Result<(), Error> {
        assert!(
            self.opts.faketime,
            "shift_clock needs ServerOptions {{ faketime: true, .. }}"
        );
        // Written to a new file then renamed, so libfaketime never reads a
        // half-written offset.
        let tmp = self.dir.path().join("faketime.tmp");
        std::fs::write(&tmp, format!("{offset:+}\n"))?;
        std::fs::rename(tmp, self.clock_file())?;
        Ok(())
    }

    fn clock_file(&self) -> PathBuf {
        self.dir.path().join("faketime.rc")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Spawns `redis-server` on `self.port` and waits until it answers.
    fn launch(&mut self) -> Result<(), Error> {
        // Its stdout and stderr go to the log file too, so errors it prints
        // before it opens `--logfile` (bad arguments) are not lost.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let log_start = log.metadata()?.len();

        let dir = self.dir.path();
        let mut command = Command::new(&self.binary);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(self.log_path());
        if self.opts.aof {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        if let Some(bytes) = &self.opts.maxmemory {
            command.args(["--maxmemory", bytes]);
        }
        if let Some(policy) = &self.opts.maxmemory_policy {
            command.args(["--maxmemory-policy", policy]);
        }
        if self.opts.cluster {
            command
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(dir.join("nodes.conf"))
                .args(["--cluster-port", &self.bus_port.to_string()]);
        }
        if let (Some((port, files)), Some(auth)) = (&self.tls, self.opts.tls) {
            command
                .args(["--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(files.server_cert())
                .arg("--tls-key-file")
                .arg(files.server_key())
                .arg("--tls-ca-cert-file")
                .arg(files.ca())
                .args([
                    "--tls-auth-clients",
                    match auth {
                        ClientAuth::Optional => "optional",
                        ClientAuth::Required => "yes",
                    },
                ]);
        }
        if self.opts.faketime {
            let library = crate::faketime::library()?;
            let offset = self.clock_file();
            if !offset.exists() {
                std::fs::write(&offset, "+0\n")?;
            }
            command
                .env("LD_PRELOAD", crate::faketime::preload(&library))
                .env("FAKETIME_TIMESTAMP_FILE", offset)
                // Re-read the offset file at every clock read, so that a
                // jump takes effect at once.
                .env("FAKETIME_NO_CACHE", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        command
            .args(&self.opts.extra_args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command.spawn().map_err(|source| Error::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let pid = child.id();
        // Stored before waiting, so any early return leaves it to `kill`.
        self.child = Some(child);

        let started = Instant::now();
        loop {
            let child = self.child.as_mut().expect("spawned above");
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Err(Error::Exited {
                    port: self.port,
                    status,
                    log: self.log_since(log_start),
                });
            }
            if probe::answers_ping(self.port, pid) {
                return Ok(());
            }
            if started.elapsed() >= START_DEADLINE {
                self.kill();
                return Err(Error::NoPong {
                    port: self.port,
                    waited: START_DEADLINE,
                    log: self.log_since(log_start),
                });
            }
            thread::sleep(POLL);
        }
    }

    /// The last [`LOG_LINES`] lines logged after byte `start`.
    fn log_since(&self, start: u64) -> String {
        let mut bytes = Vec::new();
        let read = std::fs::File::open(self.log_path()).and_then(|mut file| {
            file.seek(SeekFrom::Start(start))?;
            file.read_to_end(&mut bytes)
        });
        match read {
            Ok(_) => last_lines(&String::from_utf8_lossy(&bytes), LOG_LINES),
            Err(e) => format!("(could not read {}: {e})", self.log_path().display()),
        }
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.pid() {
            send_signal(pid, signal);
        }
    }
}

/// Sends `signal` to `pid`, which must be a child we have not reaped yet (so
/// it cannot name another process). Errors are ignored: the only possible one
/// is that the child already exited.
pub(crate) fn send_signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if thread::panicking() {
            // eprint! rather than writing to io::stderr() so that libtest
            // captures it with the failing test's own output.
            let mut report = format!(
                "---- redis-server on port {} ({}), last {LOG_LINES} lines of its log:\n",
                self.port,
                self.dir.path().display()
            );
            for line in last_lines(&self.log(), LOG_LINES).lines() {
                report.push_str(&format!("[redis :{}] {line}\n", self.port));
            }
            eprint!("{report}");
        }
        self.kill();
    }
}

/// A loopback port that nobody listened on a moment ago.
pub(crate) fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Did the start fail because the port was taken? Then a retry can succeed.
fn port_taken(error: &Error) -> bool {
    matches!(error, Error::Exited { log, .. } if log.contains("Address already in use"))
}

pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
