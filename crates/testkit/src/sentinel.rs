//! Redis Sentinel on loopback: a master, its replica and three sentinels
//! watching them, and the failovers tests inflict on them.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::resp::{self, Reply};
use crate::server::{free_port, last_lines, send_signal};
use crate::{Error, RedisServer, ServerOptions, probe, redis_sentinel_binary};

/// How often the state is polled while waiting for it.
const POLL: Duration = Duration::from_millis(20);
/// How long one administrative command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a sentinel may take to answer `PING` after it is spawned.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How many log lines errors and panics show per process.
const LOG_LINES: usize = 30;

/// How to run a [`RedisSentinel`].
///
/// ```
/// use std::time::Duration;
/// let opts = testkit::SentinelOptions {
///     service: "orders".into(),
///     down_after: Duration::from_millis(500),
///     ..Default::default()
/// };
/// let sentinel = testkit::RedisSentinel::start_with(opts)?;
/// assert_eq!(sentinel.service(), "orders");
/// # Ok::<(), testkit::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SentinelOptions {
    /// The name the sentinels monitor the master under (default
    /// `leasehold`).
    pub service: String,
    /// `down-after-milliseconds`: how long the master may be silent before
    /// a sentinel thinks it down (default 3 s, Redis's is 30 s), so a
    /// crashed master is replaced in a few seconds. Below 2 s a loaded
    /// machine sees spurious failovers: a just-promoted master that takes
    /// a second to answer the sentinels' PING is failed over in turn.
    pub down_after: Duration,
    /// `failover-timeout` (default 10 s, Redis's is 3 minutes): how long a
    /// failover may take, and twice this before the same master is failed
    /// over again after a failed attempt.
    pub failover_timeout: Duration,
    /// How long start-up and each failover may take before
    /// [`Error::SentinelTimeout`] (default 30 s).
    pub deadline: Duration,
    /// Options of the two data servers (the sentinels ignore them).
    pub server: ServerOptions,
}

impl Default for SentinelOptions {
    fn default() -> Self {
        SentinelOptions {
            service: "leasehold".into(),
            down_after: Duration::from_secs(3),
            failover_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(30),
            server: ServerOptions::default(),
        }
    }
}

/// A master, one replica of it, and three `redis-sentinel` processes that
/// monitor it under one service name, all on free loopback ports.
///
/// The two data servers are [`RedisServer`]s, named by their index in
/// [`servers`](Self::servers) (0 is the master at start); which of them
/// is the master changes with each [`failover`](Self::failover). The
/// sentinels run with a small `down-after-milliseconds` and
/// `failover-timeout` ([`SentinelOptions`]) so that tests are quick.
///
/// Every method blocks the calling thread until the deployment has
/// settled: a failover takes seconds. In a tokio test whose tasks must
/// keep running meanwhile (a lease renewing through the failover), call it
/// through `spawn_blocking` or `block_in_place`.
///
/// Dropping it kills every process; if the thread is panicking, the end of
/// each one's log is printed first.
///
/// ```
/// let mut sentinel = testkit::RedisSentinel::start()?;
/// let url = sentinel.url(); // redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/leasehold
/// let before = sentinel.master_port();
/// let after = sentinel.failover()?; // SENTINEL FAILOVER, then waits for it
/// assert_ne!(before, after);
/// assert_eq!(sentinel.master_port(), after);
/// # Ok::<(), testkit::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisSentinel {
    /// Declared first: killed before the servers, so that they do not
    /// fail over a master as it is killed.
    sentinels: Vec<SentinelProcess>,
    servers: Vec<RedisServer>,
    /// Index in `servers` of the master, as the sentinels last agreed.
    master: usize,
    opts: SentinelOptions,
}

/// One `redis-sentinel` child process.
#[derive(Debug)]
struct SentinelProcess {
    port: u16,
    child: Option<Child>,
    /// Declared last: removed after the process is killed.
    dir: TempDir,
}

impl RedisSentinel {
    /// Starts a master, a replica and three sentinels with default
    /// [`SentinelOptions`], and waits until every sentinel knows the
    /// replica (so that a failover can pick it).
    ///
    /// # Errors
    ///
    /// See [`start_with`](Self::start_with).
    pub fn start() -> Result<RedisSentinel, Error> {
        RedisSentinel::start_with(SentinelOptions::default())
    }

    /// Starts a master, a replica and three sentinels with `opts`, and
    /// waits until the replica is in sync and every sentinel knows it.
    ///
    /// # Errors
    ///
    /// [`Error::SentinelNotFound`] without `redis-sentinel`; as
    /// [`RedisServer::start_with`] for the data servers; [`Error::Spawn`],
    /// [`Error::Exited`] or [`Error::NoPong`] for a sentinel;
    /// [`Error::SentinelTimeout`] if it does not settle within
    /// `opts.deadline`. Whatever was started is killed.
    pub fn start_with(opts: SentinelOptions) -> Result<RedisSentinel, Error> {
        let binary = redis_sentinel_binary()?;
        let mut server_opts = opts.server.clone();
        // Full syncs start at once instead of after 5 s.
        server_opts
            .extra_args
            .extend(["--repl-diskless-sync-delay", "0"].map(String::from));
        let master = RedisServer::start_with(server_opts.clone())?;
        let mut replica_opts = server_opts;
        replica_opts.extra_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port().to_string(),
        ]);
        let replica = RedisServer::start_with(replica_opts)?;
        let mut sentinel = RedisSentinel {
            servers: vec![master, replica],
            sentinels: Vec::with_capacity(3),
            master: 0,
            opts,
        };
        sentinel.poll("start (the replica syncing)", |s| s.replica_in_sync(1, 0))?;
        sentinel.wait_streaming(1, 0, "start (the replica streaming)")?;
        for _ in 0..3 {
            let process = SentinelProcess::start(&binary, &sentinel.opts, sentinel.master_port())?;
            sentinel.sentinels.push(process);
        }
        sentinel.poll("start (the sentinels finding the replica)", |s| {
            for i in 0..s.sentinels.len() {
                s.knows_replica(i, s.servers[1].port())?;
            }
            Ok(())
        })?;
        Ok(sentinel)
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/SERVICE`:
    /// the sentinels' addresses and the service name, for a client that
    /// finds the master through them.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://{}/{}",
            self.sentinel_addrs().join(","),
            self.opts.service
        )
    }

    /// The sentinels' addresses, `127.0.0.1:PORT` each.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The service name the sentinels monitor the master under.
    pub fn service(&self) -> &str {
        &self.opts.service
    }

    /// The two data servers; [`master`](Self::master) says which is the
    /// master.
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The index in [`servers`](Self::servers) of the master, as the
    /// sentinels agreed when this value last waited for them.
    pub fn master(&self) -> usize {
        self.master
    }

    /// The master's port.
    pub fn master_port(&self) -> u16 {
        self.servers[self.master].port()
    }

    /// The master's URL, `redis://127.0.0.1:PORT` (for inspecting it
    /// directly, not for a client that should follow failovers).
    pub fn master_url(&self) -> String {
        self.servers[self.master].url()
    }

    /// The replica's port.
    pub fn replica_port(&self) -> u16 {
        self.servers[1 - self.master].port()
    }

    /// Sends `args` to data server `server` (an index in
    /// [`servers`](Self::servers)) and returns its reply.
    ///
    /// # Errors
    ///
    /// [`Error::Command`] if it cannot be reached or does not answer
    /// within 5 s.
    pub fn call<S: AsRef<str>>(&self, server: usize, args: &[S]) -> Result<Reply, Error> {
        admin(self.servers[server].port(), args)
    }

    /// Sends `args` to sentinel `sentinel` (0 to 2) and returns its reply.
    ///
    /// # Errors
    ///
    /// [`Error::Command`] if it cannot be reached or does not answer
    /// within 5 s.
    pub fn call_sentinel<S: AsRef<str>>(
        &self,
        sentinel: usize,
        args: &[S],
    ) -> Result<Reply, Error> {
        admin(self.sentinels[sentinel].port, args)
    }

    /// A graceful failover: `SENTINEL FAILOVER` to the first sentinel,
    /// then waits until every sentinel names the replica as the master,
    /// it answers `ROLE` as a master, and the old master has become its
    /// replica and is in sync with it. Returns the new master's port.
    /// Takes about 10 s: Sentinel turns the old master into a replica some
    /// 8 s after it switched to the new one. A failover right after the
    /// previous one first waits until the sentinel lists the replica as
    /// good (Sentinel looks at replicas every 10 s), else it would refuse
    /// (`-NOGOODSLAVE`).
    ///
    /// Sentinel promotes the replica (`REPLICAOF NO ONE`), announces the
    /// new master (`+switch-master`) about a second later, and turns the
    /// old master into its replica (`+convert-to-slave`, which disconnects
    /// its clients) some 8 s after that: until then the old master still
    /// takes writes from clients that did not follow, and they are lost,
    /// as with a real Sentinel failover.
    ///
    /// # Errors
    ///
    /// [`Error::Command`] if the sentinel refuses (`-NOGOODSLAVE`,
    /// `-INPROG`), [`Error::SentinelTimeout`] if it does not finish within
    /// the deadline.
    pub fn failover(&mut self) -> Result<u16, Error> {
        self.wait_replica_known("failover (the sentinels finding the replica)")?;
        let args = ["SENTINEL", "FAILOVER", self.opts.service.as_str()];
        // The sentinel may still refuse for a moment after it listed the
        // replica (`-NOGOODSLAVE`: it weighs more than the list shows), or
        // while it ends the previous failover (`-INPROG`): asked again
        // until the deadline.
        let started = Instant::now();
        loop {
            let reply = self.call_sentinel(0, &args)?;
            if reply == Reply::Status("OK".into()) {
                break;
            }
            let again = reply
                .as_error()
                .is_some_and(|e| e.starts_with("NOGOODSLAVE") || e.starts_with("INPROG"));
            if !again || started.elapsed() >= self.opts.deadline {
                return Err(Error::Command {
                    port: self.sentinels[0].port,
                    command: args.join(" "),
                    reply: reply.to_string(),
                });
            }
            thread::sleep(Duration::from_millis(200));
        }
        let new = 1 - self.master;
        self.wait_master(new, "failover")?;
        Ok(self.master_port())
    }

    /// A crash: kills the master with `SIGKILL`, waits until the sentinels
    /// promote the replica (after `down_after`, an election and the
    /// promotion), restarts the old master empty on its port, and waits
    /// until it has become the new master's replica and is in sync. Returns
    /// the new master's port.
    ///
    /// Writes the replica had not received when the master died are lost:
    /// leases among them are gone, as in production.
    ///
    /// # Errors
    ///
    /// As [`RedisServer::restart`], and [`Error::SentinelTimeout`] if the
    /// sentinels do not fail over within the deadline.
    pub fn kill_master(&mut self) -> Result<u16, Error> {
        self.wait_replica_known("a killed master (the sentinels finding the replica)")?;
        let old = self.master;
        let new = 1 - old;
        self.servers[old].kill();
        // It comes back as the new master's replica, as a real deployment
        // restarts it (with the `replicaof` Sentinel wrote into its
        // config): as an empty master it could be promoted again.
        let new_port = self.servers[new].port();
        self.servers[old].set_replicaof(Some(new_port));
        self.poll(
            "a killed master (the sentinels promoting the replica)",
            |s| {
                for i in 0..s.sentinels.len() {
                    s.names_master(i, s.servers[new].port())?;
                }
                Ok(())
            },
        )?;
        self.servers[old].restart()?;
        self.wait_master(new, "a killed master (the old master rejoining)")?;
        Ok(self.master_port())
    }

    /// Waits until every sentinel lists the replica as good, so that it
    /// can be promoted.
    fn wait_replica_known(&self, action: &str) -> Result<(), Error> {
        self.poll(action, |s| {
            for i in 0..s.sentinels.len() {
                s.knows_replica(i, s.replica_port())?;
            }
            Ok(())
        })
    }

    /// Waits until server `new` is the master by every sentinel and by
    /// `ROLE`, and the other is its replica, in sync.
    fn wait_master(&mut self, new: usize, action: &str) -> Result<(), Error> {
        let old = 1 - new;
        self.poll(action, |s| {
            for i in 0..s.sentinels.len() {
                s.names_master(i, s.servers[new].port())?;
            }
            let role = s.role(new)?;
            if role != "master" {
                return Err(format!(
                    "server :{} answers ROLE {role}",
                    s.servers[new].port()
                ));
            }
            s.replica_in_sync(old, new)
        })?;
        self.wait_streaming(old, new, action)?;
        self.master = new;
        Ok(())
    }

    /// Writes a probe on `master` and waits until `replica` has it. After a
    /// full sync, the master streams writes to the replica only once the
    /// replica acknowledged the snapshot (up to a second later): a write
    /// made before then, at an offset that both report in step, is lost
    /// by a failover in between.
    fn wait_streaming(&self, replica: usize, master: usize, action: &str) -> Result<(), Error> {
        let value = format!("{:?}", Instant::now());
        let key = "testkit:sentinel:probe";
        let set = admin(
            self.servers[master].port(),
            &["SET", key, &value, "PX", "10000"],
        )?;
        if set != Reply::Status("OK".into()) {
            return Err(Error::Command {
                port: self.servers[master].port(),
                command: format!("SET {key}"),
                reply: set.to_string(),
            });
        }
        self.poll(&format!("{action} (a write reaching the replica)"), |s| {
            let got = admin(s.servers[replica].port(), &["GET", key]).map_err(|e| e.to_string())?;
            if got.as_text().as_deref() == Some(value.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "replica :{} does not have the probe written on :{} yet",
                    s.servers[replica].port(),
                    s.servers[master].port()
                ))
            }
        })
    }

    /// `Ok` when sentinel `i` names the server on `port` as the master.
    fn names_master(&self, i: usize, port: u16) -> Result<(), String> {
        let service = self.opts.service.as_str();
        let reply = admin(
            self.sentinels[i].port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", service],
        )
        .map_err(|e| e.to_string())?;
        let named = reply
            .as_array()
            .and_then(|a| a.get(1))
            .and_then(Reply::as_text);
        if named.as_deref() == Some(&port.to_string()) {
            Ok(())
        } else {
            Err(format!(
                "sentinel :{} names {reply} as the master, not :{port}",
                self.sentinels[i].port
            ))
        }
    }

    /// The first element of `ROLE` on server `i`.
    fn role(&self, i: usize) -> Result<String, String> {
        let reply = admin(self.servers[i].port(), &["ROLE"]).map_err(|e| e.to_string())?;
        reply
            .as_array()
            .and_then(|a| a.first())
            .and_then(Reply::as_text)
            .ok_or_else(|| format!("ROLE on :{} answered {reply}", self.servers[i].port()))
    }

    /// `Ok` when server `replica` replicates `master` with its link up and
    /// the same replication offset.
    fn replica_in_sync(&self, replica: usize, master: usize) -> Result<(), String> {
        let info = |i: usize| -> Result<String, String> {
            admin(self.servers[i].port(), &["INFO", "replication"])
                .map_err(|e| e.to_string())?
                .as_text()
                .ok_or_else(|| "INFO answered no text".to_owned())
        };
        let field = |text: &str, name: &str| -> Option<String> {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        let (r, m) = (info(replica)?, info(master)?);
        let (rport, mport) = (self.servers[replica].port(), self.servers[master].port());
        if field(&r, "role").as_deref() != Some("slave")
            || field(&r, "master_port").as_deref() != Some(&mport.to_string())
            || field(&r, "master_link_status").as_deref() != Some("up")
        {
            return Err(format!(
                "server :{rport} is no replica of :{mport} with its link up yet"
            ));
        }
        let (ro, mo) = (
            field(&r, "slave_repl_offset"),
            field(&m, "master_repl_offset"),
        );
        if ro.is_none() || ro != mo {
            return Err(format!(
                "replica :{rport} is at offset {ro:?}, its master :{mport} at {mo:?}"
            ));
        }
        Ok(())
    }

    /// `Ok` when sentinel `i` lists the replica on `port` with its link
    /// to the master up.
    fn knows_replica(&self, i: usize, port: u16) -> Result<(), String> {
        let service = self.opts.service.as_str();
        let reply = admin(self.sentinels[i].port, &["SENTINEL", "REPLICAS", service])
            .map_err(|e| e.to_string())?;
        let known = reply.as_array().unwrap_or_default().iter().any(|r| {
            let fields: Vec<String> = r
                .as_array()
                .unwrap_or_default()
                .iter()
                .map(|f| f.as_text().unwrap_or_default())
                .collect();
            let get = |name: &str| {
                fields
                    .chunks(2)
                    .find(|kv| kv[0] == name)
                    .and_then(|kv| kv.get(1))
                    .cloned()
            };
            get("port") == Some(port.to_string())
                && get("master-link-status").as_deref() == Some("ok")
                && get("flags").is_some_and(|f| !f.contains("down") && !f.contains("disconnected"))
        });
        if known {
            Ok(())
        } else {
            Err(format!(
                "sentinel :{} does not list the replica :{port} as good yet",
                self.sentinels[i].port
            ))
        }
    }

    /// Retries `look` until it answers `Ok`, or the deadline.
    fn poll(
        &self,
        action: &str,
        look: impl Fn(&RedisSentinel) -> Result<(), String>,
    ) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            let last = match look(self) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if started.elapsed() >= self.opts.deadline {
                return Err(Error::SentinelTimeout {
                    action: action.to_owned(),
                    waited: self.opts.deadline,
                    last,
                    logs: self.logs(),
                });
            }
            thread::sleep(POLL);
        }
    }

    /// The last lines of every process's log, each prefixed with its port.
    fn logs(&self) -> String {
        let mut out = String::new();
        for s in &self.servers {
            for line in last_lines(&s.log(), LOG_LINES).lines() {
                out.push_str(&format!("[redis :{}] {line}\n", s.port()));
            }
        }
        for s in &self.sentinels {
            for line in last_lines(&s.log(), LOG_LINES).lines() {
                out.push_str(&format!("[sentinel :{}] {line}\n", s.port));
            }
        }
        out
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if thread::panicking() {
            let mut report = String::new();
            for s in &self.sentinels {
                report.push_str(&format!(
                    "---- redis-sentinel on port {}, last {LOG_LINES} lines of its log:\n",
                    s.port
                ));
                for line in last_lines(&s.log(), LOG_LINES).lines() {
                    report.push_str(&format!("[sentinel :{}] {line}\n", s.port));
                }
            }
            eprint!("{report}");
        }
        // The servers print their own logs as they are dropped.
    }
}

impl SentinelProcess {
    /// Writes a config monitoring the master on `master_port` and starts a
    /// sentinel with it on a free port.
    fn start(
        binary: &PathBuf,
        opts: &SentinelOptions,
        master_port: u16,
    ) -> Result<SentinelProcess, Error> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-sentinel-")
            .tempdir()?;
        let mut process = SentinelProcess {
            port: 0,
            child: None,
            dir,
        };
        let mut attempt = 1;
        loop {
            process.port = free_port()?;
            match process.launch(binary, opts, master_port) {
                Err(Error::Exited { log, .. })
                    if log.contains("Address already in use") && attempt < 5 =>
                {
                    attempt += 1;
                }
                result => return result.map(|()| process),
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("sentinel.log")
    }

    fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    fn launch(
        &mut self,
        binary: &PathBuf,
        opts: &SentinelOptions,
        master_port: u16,
    ) -> Result<(), Error> {
        let service = &opts.service;
        let config = self.dir.path().join("sentinel.conf");
        // Sentinel rewrites its config as it learns the topology: it must be
        // a file of its own, writable.
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\nprotected-mode no\n\
                 dir {dir}\nlogfile {log}\n\
                 sentinel monitor {service} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {service} {down}\n\
                 sentinel failover-timeout {service} {timeout}\n\
                 sentinel parallel-syncs {service} 1\n",
                port = self.port,
                dir = self.dir.path().display(),
                log = self.log_path().display(),
                down = opts.down_after.as_millis().max(1),
                timeout = opts.failover_timeout.as_millis().max(1),
            ),
        )?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(binary)
            .arg(&config)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|source| Error::Spawn {
                binary: binary.clone(),
                source,
            })?;
        let pid = child.id();
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let child = self.child.as_mut().expect("spawned above");
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Err(Error::Exited {
                    port: self.port,
                    status,
                    log: last_lines(&self.log(), LOG_LINES),
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
                    log: last_lines(&self.log(), LOG_LINES),
                });
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), libc::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn admin<S: AsRef<str>>(port: u16, args: &[S]) -> Result<Reply, Error> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    resp::call(port, &args, COMMAND_TIMEOUT).map_err(|e| Error::Command {
        port,
        command: args.join(" "),
        reply: e.to_string(),
    })
}
