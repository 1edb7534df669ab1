//! A loopback Redis Cluster of [`RedisServer`]s and the faults tests inflict
//! on it: slot moves, failovers, killed and paused nodes.
//!
//! Everything is driven with plain cluster commands over [`resp`] (no
//! `redis-cli --cluster`, whose output is for humans), and every change ends
//! by waiting until the cluster has *settled*: every node that is up reports
//! `cluster_state:ok`, all of them give the same answer to "who is master of
//! which slots, who replicates whom" (`CLUSTER NODES`), each replica's link to
//! its master is up, and every node that is down is marked `fail` by all the
//! others. Only then does a test continue, so its client sees one cluster, not
//! a cluster half-way through a change.
//!
//! [`resp`]: crate::resp

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use crate::resp::{self, Reply};
use crate::server::last_lines;
use crate::{Error, RedisServer, ServerOptions};

/// The number of hash slots in Redis Cluster.
pub const SLOTS: u16 = 16384;

/// How often a settling cluster is looked at. Each look is a few commands per
/// node over loopback, so it can be frequent.
const POLL: Duration = Duration::from_millis(25);

/// How long one administrative command may take (`MIGRATE` included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// How many keys one `MIGRATE` moves.
const MIGRATE_BATCH: usize = 100;

/// How many log lines of each node a [`Error::ClusterTimeout`] shows.
const LOG_LINES: usize = 15;

/// How to run a [`RedisCluster`].
///
/// ```
/// use std::time::Duration;
/// use testkit::{ClusterOptions, RedisCluster};
///
/// let cluster = RedisCluster::start_with(ClusterOptions {
///     masters: 3,
///     replicas_per_master: 0,
///     node_timeout: Duration::from_millis(1000),
///     ..Default::default()
/// })?;
/// assert_eq!(cluster.masters().len(), 3);
/// # Ok::<(), testkit::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Masters; the 16384 slots are split evenly between them. Default 3.
    pub masters: usize,
    /// Replicas of each master. Default 1; without one, a killed master
    /// takes its slots down with it (`CLUSTERDOWN`) until it is restarted.
    pub replicas_per_master: usize,
    /// `cluster-node-timeout`: how long a node may be unreachable before it
    /// is suspected, and so roughly how long before a killed master's
    /// replica takes over (add one to two seconds for the vote). Default
    /// 2 s: short for quick tests, long enough that a loaded machine does
    /// not fail masters over by itself.
    pub node_timeout: Duration,
    /// How long [`RedisCluster::start_with`] and each fault wait for the
    /// cluster to settle before [`Error::ClusterTimeout`]. Default 30 s;
    /// settling takes a few seconds at most on an idle machine.
    pub deadline: Duration,
    /// Options of every node. [`ServerOptions::cluster`] is set by testkit;
    /// `extra_args` come after testkit's cluster settings, so they can
    /// override them. With [`ServerOptions::tls`] the nodes share one CA
    /// (generated unless [`ServerOptions::tls_files`] is given), talk TLS
    /// to each other on the cluster bus and for replication (`tls-cluster`,
    /// `tls-replication`), and tell TLS clients their TLS ports
    /// ([`RedisCluster::tls_seeds`]); the plain ports stay open, and tell
    /// plain clients (testkit's own commands) the plain ports.
    pub server: ServerOptions,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            masters: 3,
            replicas_per_master: 1,
            node_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(30),
            server: ServerOptions::default(),
        }
    }
}

/// One node of a [`RedisCluster`]: a [`RedisServer`] and its cluster node id.
#[derive(Debug)]
pub struct ClusterNode {
    server: RedisServer,
    id: String,
    paused: bool,
}

impl ClusterNode {
    /// The 40-character node id (`CLUSTER MYID`); it survives restarts,
    /// because the node keeps its `nodes.conf`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The process behind the node: its port, log, pid.
    pub fn server(&self) -> &RedisServer {
        &self.server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `rediss://127.0.0.1:TLS_PORT` in a TLS cluster, else `None`.
    pub fn tls_url(&self) -> Option<String> {
        self.server.tls_url()
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// True unless the node is killed or paused.
    pub fn is_up(&self) -> bool {
        self.server.pid().is_some() && !self.paused
    }
}

/// What a node is, as the whole cluster agreed at the last settle.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
    /// Serves these inclusive slot ranges (possibly none).
    Master(Vec<(u16, u16)>),
    /// Replicates the node with this index.
    Replica(usize),
    /// Killed or paused, and marked `fail` by every node that is up.
    Down,
}

/// A Redis Cluster on loopback: masters and replicas, each a
/// [`RedisServer`] with `--cluster-enabled yes`, slots assigned, replicas
/// attached.
///
/// Nodes are named by their index in [`nodes`](Self::nodes), which stays the
/// same through failovers and restarts; which of them are masters changes.
/// The first `masters` indices are the masters at start, and replica `j` of
/// master `i` is node `masters + i * replicas_per_master + j`.
///
/// The role accessors ([`masters`](Self::masters),
/// [`replicas_of`](Self::replicas_of), [`master_of_slot`](Self::master_of_slot),
/// [`seeds`](Self::seeds)) answer from the topology the cluster agreed on
/// when it last settled: after start and after each fault method. After
/// [`pause`](Self::pause) or anything done through [`call`](Self::call), call
/// [`wait_settled`](Self::wait_settled) to bring them up to date.
///
/// Every method blocks the calling thread until the cluster has settled:
/// up to several seconds for [`kill_master`](Self::kill_master). In a tokio
/// test whose tasks must keep running meanwhile (a lease renewing through
/// the failover), call it through `spawn_blocking` or `block_in_place`.
///
/// Dropping it kills every node (see [`RedisServer`]).
///
/// ```
/// let mut cluster = testkit::RedisCluster::start(3, 1)?;
/// let seeds = cluster.seeds(); // redis://127.0.0.1:PORT of each master
/// let slot = cluster.slot_of("{user1}.lock")?;
/// let old = cluster.master_of_slot(slot);
/// let new = cluster.failover(old)?; // its replica takes over, cleanly
/// assert_eq!(cluster.master_of_slot(slot), new);
/// assert_eq!(cluster.replicas_of(new), vec![old]);
/// # Ok::<(), testkit::Error>(())
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
    roles: Vec<Role>,
    opts: ClusterOptions,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas_per_master` replicas each
    /// (other options default) and waits until the cluster has settled.
    ///
    /// # Errors
    ///
    /// See [`start_with`](Self::start_with).
    pub fn start(masters: usize, replicas_per_master: usize) -> Result<RedisCluster, Error> {
        RedisCluster::start_with(ClusterOptions {
            masters,
            replicas_per_master,
            ..Default::default()
        })
    }

    /// Starts the nodes, introduces them to each other (`CLUSTER MEET`),
    /// gives each master an even share of the slots (`CLUSTER
    /// ADDSLOTSRANGE`), makes the replicas replicate (`CLUSTER REPLICATE`),
    /// and waits until the cluster has settled.
    ///
    /// # Panics
    ///
    /// If `opts.masters` is 0 or above 16384.
    ///
    /// # Errors
    ///
    /// As [`RedisServer::start_with`] for each node; [`Error::Command`] if a
    /// node refuses a setup command; [`Error::ClusterTimeout`] if it does not
    /// settle within `opts.deadline`. Nodes already started are killed.
    pub fn start_with(opts: ClusterOptions) -> Result<RedisCluster, Error> {
        assert!(
            (1..=usize::from(SLOTS)).contains(&opts.masters),
            "a cluster needs 1 to 16384 masters, not {}",
            opts.masters
        );
        let mut server_opts = opts.server.clone();
        server_opts.cluster = true;
        if server_opts.tls.is_some() && server_opts.tls_files.is_none() {
            server_opts.tls_files = Some(crate::TlsFiles::generate_temp()?);
        }
        let timeout_ms = opts.node_timeout.as_millis().max(1).to_string();
        let mut args: Vec<String> = [
            "--cluster-node-timeout",
            &timeout_ms,
            // A replica may always be promoted, however long it was cut off:
            // tests decide what is lost, not a staleness heuristic.
            "--cluster-replica-validity-factor",
            "0",
            // Replicas stay where they were put, and a master that gives away
            // its last slot stays a master: the topology is the test's.
            "--cluster-allow-replica-migration",
            "no",
            // Full syncs start at once instead of after 5 s, so replicas
            // attach (at start, after a restart) quickly.
            "--repl-diskless-sync-delay",
            "0",
        ]
        .map(String::from)
        .to_vec();
        if server_opts.tls.is_some() {
            args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from));
        }
        args.append(&mut server_opts.extra_args);
        server_opts.extra_args = args;

        let count = opts.masters * (1 + opts.replicas_per_master);
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            let server = RedisServer::start_with(server_opts.clone())?;
            let id = match admin(&server, &["CLUSTER", "MYID"])? {
                Reply::Bulk(Some(id)) => String::from_utf8_lossy(&id).into_owned(),
                other => return Err(command_error(&server, &["CLUSTER", "MYID"], &other)),
            };
            nodes.push(ClusterNode {
                server,
                id,
                paused: false,
            });
        }
        let mut cluster = RedisCluster {
            roles: vec![Role::Down; count],
            nodes,
            opts,
        };
        cluster.create()?;
        Ok(cluster)
    }

    /// Wires freshly started nodes into a cluster and waits for it.
    fn create(&mut self) -> Result<(), Error> {
        // Distinct epochs up front, as `redis-cli --cluster create` does, so
        // the nodes need not resolve epoch collisions first.
        for (epoch, node) in self.nodes.iter().enumerate() {
            let epoch = (epoch + 1).to_string();
            self.expect_ok(node, &["CLUSTER", "SET-CONFIG-EPOCH", &epoch])?;
        }
        let first = &self.nodes[0];
        for node in &self.nodes[1..] {
            let (port, bus) = (node_port(node).to_string(), bus_port(node).to_string());
            self.expect_ok(first, &["CLUSTER", "MEET", "127.0.0.1", &port, &bus])?;
        }
        let masters = self.opts.masters;
        for (i, node) in self.nodes[..masters].iter().enumerate() {
            let (start, end) = slot_share(i, masters);
            let (start, end) = (start.to_string(), end.to_string());
            self.expect_ok(node, &["CLUSTER", "ADDSLOTSRANGE", &start, &end])?;
        }
        // REPLICATE names the master by id, which the replica must have
        // learnt through gossip first. `cluster_known_nodes` is no sign of
        // that: it counts nodes still in handshake, under made-up ids.
        self.poll("start (meeting the nodes)", |cluster| {
            for node in &cluster.nodes {
                let table = cluster.text(node, &["CLUSTER", "NODES"])?;
                let known = table
                    .lines()
                    .filter(|line| !line.contains("handshake"))
                    .filter_map(|line| line.split(' ').next())
                    .filter(|id| cluster.index_of(id).is_some())
                    .count();
                if known < cluster.nodes.len() {
                    return Err(format!(
                        "node :{} knows {known} of the {} nodes yet",
                        node.port(),
                        cluster.nodes.len()
                    ));
                }
            }
            Ok(())
        })?;
        let replicas = self.opts.replicas_per_master;
        for (i, node) in self.nodes[masters..].iter().enumerate() {
            let master = &self.nodes[i / replicas];
            self.expect_ok(node, &["CLUSTER", "REPLICATE", &master.id])?;
        }
        self.settle("start", |_| Ok(()))
    }

    /// Every node, indexed as the other methods name them.
    pub fn nodes(&self) -> &[ClusterNode] {
        &self.nodes
    }

    /// Node `node`.
    ///
    /// # Panics
    ///
    /// If there is no such node.
    pub fn node(&self, node: usize) -> &ClusterNode {
        &self.nodes[node]
    }

    /// The masters that are up, by index, as of the last settle.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| matches!(self.roles[i], Role::Master(_)))
            .collect()
    }

    /// The replicas of `master` that are up, by index, as of the last settle.
    pub fn replicas_of(&self, master: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.roles[i] == Role::Replica(master))
            .collect()
    }

    /// The master serving `slot`, as of the last settle.
    ///
    /// # Panics
    ///
    /// If `slot` is not below 16384.
    pub fn master_of_slot(&self, slot: u16) -> usize {
        assert!(slot < SLOTS, "slot {slot} is not below {SLOTS}");
        self.roles
            .iter()
            .position(|role| match role {
                Role::Master(ranges) => ranges.iter().any(|&(a, b)| (a..=b).contains(&slot)),
                _ => false,
            })
            .expect("a settled cluster serves every slot")
    }

    /// `redis://127.0.0.1:PORT` of every master that is up: seeds for a
    /// cluster client.
    pub fn seeds(&self) -> Vec<String> {
        self.masters()
            .into_iter()
            .map(|i| self.nodes[i].url())
            .collect()
    }

    /// `rediss://127.0.0.1:TLS_PORT` of every master that is up, in a TLS
    /// cluster (see [`ClusterOptions::server`]); empty otherwise. Their
    /// certificates are signed by [`tls_files`](Self::tls_files)' CA.
    pub fn tls_seeds(&self) -> Vec<String> {
        self.masters()
            .into_iter()
            .filter_map(|i| self.nodes[i].tls_url())
            .collect()
    }

    /// The CA and certificates every node of a TLS cluster uses.
    pub fn tls_files(&self) -> Option<&crate::TlsFiles> {
        self.nodes.first().and_then(|n| n.server.tls_files())
    }

    /// The hash slot of `key`, as the server computes it (`CLUSTER KEYSLOT`,
    /// hash tags included).
    ///
    /// # Errors
    ///
    /// [`Error::Command`] if no node that is up answers.
    pub fn slot_of(&self, key: &str) -> Result<u16, Error> {
        let node = self.any_up();
        match self.call(node, &["CLUSTER", "KEYSLOT", key])? {
            Reply::Integer(slot) if (0..i64::from(SLOTS)).contains(&slot) => {
                Ok(u16::try_from(slot).expect("checked range"))
            }
            other => Err(command_error(
                &self.nodes[node].server,
                &["CLUSTER", "KEYSLOT", key],
                &other,
            )),
        }
    }

    /// Sends one command to node `node` on a new connection and returns its
    /// reply; an error reply (`-MOVED ...`) is an `Ok(Reply::Error(..))`.
    ///
    /// ```
    /// use testkit::Reply;
    /// let cluster = testkit::RedisCluster::start(2, 0)?;
    /// let slot = cluster.slot_of("k")?;
    /// let owner = cluster.master_of_slot(slot);
    /// let other = 1 - owner;
    /// assert_eq!(cluster.call(owner, &["SET", "k", "v"])?, Reply::Status("OK".into()));
    /// let moved = cluster.call(other, &["GET", "k"])?;
    /// assert!(moved.as_error().unwrap().starts_with("MOVED"));
    /// # Ok::<(), testkit::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Command`] if the node cannot be reached or does not answer
    /// within 5 s (it is paused, killed or overloaded).
    ///
    /// # Panics
    ///
    /// If there is no such node.
    pub fn call<S: AsRef<str>>(&self, node: usize, args: &[S]) -> Result<Reply, Error> {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        admin(&self.nodes[node].server, &args)
    }

    /// Moves `slot` and its keys to master `to` (a no-op if it serves the
    /// slot already), the way `redis-cli --cluster reshard` does, and waits
    /// until every node agrees that `to` serves it.
    ///
    /// # Errors
    ///
    /// [`Error::Command`] if a step is refused, [`Error::ClusterTimeout`] if
    /// the cluster does not settle.
    ///
    /// # Panics
    ///
    /// If `to` is not a master that is up, or `slot` is not below 16384.
    pub fn move_slot(&mut self, slot: u16, to: usize) -> Result<(), Error> {
        if self.master_of_slot(slot) == to {
            return Ok(());
        }
        self.begin_slot_move(slot, to)?;
        self.finish_slot_move(slot, to)
    }

    /// The first half of [`move_slot`](Self::move_slot): marks `slot`
    /// `IMPORTING` on `to` and `MIGRATING` on its master, and moves no key.
    /// Until [`finish_slot_move`](Self::finish_slot_move), the old master
    /// still serves the keys it has and answers `-ASK slot host:port` for
    /// the others, which `to` serves after `ASKING`;
    /// [`migrate_keys`](Self::migrate_keys) moves some keys across.
    ///
    /// # Errors
    ///
    /// [`Error::Command`] if a node refuses.
    ///
    /// # Panics
    ///
    /// If `to` is not a master that is up or already serves the slot.
    pub fn begin_slot_move(&mut self, slot: u16, to: usize) -> Result<(), Error> {
        let from = self.master_of_slot(slot);
        assert!(
            matches!(self.roles[to], Role::Master(_)) && from != to,
            "node {to} must be a master that is up and not serving slot {slot}"
        );
        let slot = slot.to_string();
        let (source, target) = (&self.nodes[from], &self.nodes[to]);
        self.expect_ok(
            target,
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source.id],
        )?;
        self.expect_ok(
            source,
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target.id],
        )?;
        Ok(())
    }

    /// Moves up to `max` keys of `slot` from its master to `to`, during a
    /// move begun with [`begin_slot_move`](Self::begin_slot_move); returns
    /// how many it moved (0 when none are left).
    ///
    /// # Errors
    ///
    /// [`Error::Command`] if `MIGRATE` fails (e.g. `BUSYKEY`: the key
    /// exists on both nodes).
    pub fn migrate_keys(&mut self, slot: u16, to: usize, max: usize) -> Result<usize, Error> {
        let source = &self.nodes[self.master_of_slot(slot)];
        let target_port = node_port(&self.nodes[to]).to_string();
        let (slot, mut moved) = (slot.to_string(), 0);
        while moved < max {
            let count = MIGRATE_BATCH.min(max - moved).to_string();
            let args = ["CLUSTER", "GETKEYSINSLOT", &slot, &count];
            let keys: Vec<String> = match admin(&source.server, &args)? {
                Reply::Array(Some(keys)) => keys.iter().filter_map(Reply::as_text).collect(),
                other => return Err(command_error(&source.server, &args, &other)),
            };
            if keys.is_empty() {
                break;
            }
            let timeout = COMMAND_TIMEOUT.as_millis().to_string();
            let mut args = vec![
                "MIGRATE",
                "127.0.0.1",
                &target_port,
                "",
                "0",
                &timeout,
                "KEYS",
            ];
            args.extend(keys.iter().map(String::as_str));
            match admin(&source.server, &args)? {
                // NOKEY: they expired since GETKEYSINSLOT listed them.
                Reply::Status(ok) if ok == "OK" || ok == "NOKEY" => {}
                other => return Err(command_error(&source.server, &args, &other)),
            }
            moved += keys.len();
        }
        Ok(moved)
    }

    /// The second half of [`move_slot`](Self::move_slot): migrates the
    /// keys still on the old master, assigns `slot` to `to` on every master
    /// (`CLUSTER SETSLOT slot NODE`: `to` first, then the old master, then
    /// the others), and waits until every node agrees.
    ///
    /// # Errors
    ///
    /// As [`move_slot`](Self::move_slot).
    pub fn finish_slot_move(&mut self, slot: u16, to: usize) -> Result<(), Error> {
        while self.migrate_keys(slot, to, usize::MAX)? > 0 {}
        let from = self.master_of_slot(slot);
        let mut order = vec![to, from];
        order.extend(
            self.masters()
                .into_iter()
                .filter(|m| *m != to && *m != from),
        );
        let slot_arg = slot.to_string();
        for node in order {
            let args = ["CLUSTER", "SETSLOT", &slot_arg, "NODE", &self.nodes[to].id];
            self.expect_ok(&self.nodes[node], &args)?;
        }
        self.settle(
            &format!("moving slot {slot} to node {to}"),
            |roles| match &roles[to] {
                Role::Master(ranges) if ranges.iter().any(|&(a, b)| (a..=b).contains(&slot)) => {
                    Ok(())
                }
                _ => Err(format!("node {to} does not serve slot {slot} yet")),
            },
        )
    }

    /// Fails `master` over to its first replica that is up, cleanly (`CLUSTER
    /// FAILOVER` on the replica: the master stops taking writes until the
    /// replica has caught up, so nothing acknowledged is lost), and waits
    /// until the replica is master and the old master its replica. Returns
    /// the new master.
    ///
    /// # Errors
    ///
    /// [`Error::Command`] if the replica refuses, [`Error::ClusterTimeout`]
    /// if the cluster does not settle.
    ///
    /// # Panics
    ///
    /// If `master` is not a master that is up, or has no replica that is up.
    pub fn failover(&mut self, master: usize) -> Result<usize, Error> {
        let replica = self.first_replica(master);
        self.expect_ok(&self.nodes[replica], &["CLUSTER", "FAILOVER"])?;
        self.settle(&format!("failover of node {master}"), |roles| {
            if matches!(roles[replica], Role::Master(_)) && roles[master] == Role::Replica(replica)
            {
                Ok(())
            } else {
                Err(format!("node {replica} has not replaced node {master} yet"))
            }
        })?;
        Ok(replica)
    }

    /// Kills `master` with `SIGKILL` (no chance to hand anything over) and
    /// waits until one of its replicas has been elected in its place, which
    /// takes about [`ClusterOptions::node_timeout`] plus one to two seconds.
    /// Returns the new master. Writes the replica had not received are lost,
    /// as in production; `WAIT 1` after a write makes sure it had.
    ///
    /// # Errors
    ///
    /// [`Error::ClusterTimeout`] if no replica takes over.
    ///
    /// # Panics
    ///
    /// If `master` is not a master that is up, or has no replica that is up.
    pub fn kill_master(&mut self, master: usize) -> Result<usize, Error> {
        let replicas = self.replicas_of(master);
        self.first_replica(master);
        self.nodes[master].server.kill();
        self.settle(&format!("kill of master node {master}"), |roles| {
            if replicas
                .iter()
                .any(|&r| matches!(roles[r], Role::Master(_)))
            {
                Ok(())
            } else {
                Err(format!("no replica of node {master} has been promoted yet"))
            }
        })?;
        Ok(replicas
            .into_iter()
            .find(|&r| matches!(self.roles[r], Role::Master(_)))
            .expect("checked by settle"))
    }

    /// Kills node `node` (master or replica) with `SIGKILL` and waits until
    /// every other node marks it failed and, if it was a master, a replica
    /// has taken its place.
    ///
    /// # Errors
    ///
    /// [`Error::ClusterTimeout`] if the cluster does not settle, e.g.
    /// because a master without replica was killed (`CLUSTERDOWN`).
    pub fn kill(&mut self, node: usize) -> Result<(), Error> {
        self.nodes[node].server.kill();
        self.settle(&format!("kill of node {node}"), |_| Ok(()))
    }

    /// Restarts a killed (or running) node on its port with its `nodes.conf`
    /// and waits until it has rejoined: a master that was replaced comes back
    /// as a replica of its successor. Without [`ServerOptions::aof`] it
    /// comes back empty and a replica syncs from its master.
    ///
    /// # Errors
    ///
    /// As [`RedisServer::restart`]; [`Error::ClusterTimeout`] if it does not
    /// rejoin.
    pub fn restart(&mut self, node: usize) -> Result<(), Error> {
        self.nodes[node].server.restart()?;
        self.nodes[node].paused = false;
        self.settle(&format!("restart of node {node}"), |roles| {
            if roles[node] == Role::Down {
                Err(format!("node {node} has not rejoined yet"))
            } else {
                Ok(())
            }
        })
    }

    /// Freezes node `node` with `SIGSTOP` and returns at once. A master
    /// paused for longer than [`ClusterOptions::node_timeout`] is failed
    /// over; after [`resume`](Self::resume) it rejoins as a replica. Call
    /// [`wait_settled`](Self::wait_settled) to wait for either.
    pub fn pause(&mut self, node: usize) {
        self.nodes[node].server.pause();
        self.nodes[node].paused = true;
    }

    /// Undoes [`pause`](Self::pause) with `SIGCONT` and returns at once.
    pub fn resume(&mut self, node: usize) {
        self.nodes[node].server.resume();
        self.nodes[node].paused = false;
    }

    /// Waits until the cluster has settled (every node up agrees, paused
    /// and killed nodes are marked failed), and updates
    /// [`masters`](Self::masters) and the other role accessors.
    ///
    /// # Errors
    ///
    /// [`Error::ClusterTimeout`].
    pub fn wait_settled(&mut self) -> Result<(), Error> {
        self.settle("wait_settled", |_| Ok(()))
    }

    /// The first replica of `master` that is up, by the last settle.
    fn first_replica(&self, master: usize) -> usize {
        assert!(
            matches!(self.roles[master], Role::Master(_)),
            "node {master} is not a master that is up"
        );
        *self
            .replicas_of(master)
            .first()
            .unwrap_or_else(|| panic!("master node {master} has no replica that is up"))
    }

    fn any_up(&self) -> usize {
        self.nodes.iter().position(ClusterNode::is_up).unwrap_or(0)
    }

    /// Waits until [`observe`](Self::observe) and `done` hold, then keeps
    /// the roles observed.
    fn settle(
        &mut self,
        action: &str,
        done: impl Fn(&[Role]) -> Result<(), String>,
    ) -> Result<(), Error> {
        let roles = self.poll(action, |cluster| {
            let roles = cluster.observe()?;
            done(&roles)?;
            Ok(roles)
        })?;
        self.roles = roles;
        Ok(())
    }

    /// Polls `look` until it returns `Ok`, for at most the deadline; the
    /// error then carries its last `Err` and the end of every node's log.
    fn poll<T>(
        &self,
        action: &str,
        look: impl Fn(&RedisCluster) -> Result<T, String>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        loop {
            let last = match look(self) {
                Ok(value) => return Ok(value),
                Err(why) => why,
            };
            if started.elapsed() >= self.opts.deadline {
                return Err(Error::ClusterTimeout {
                    action: action.to_owned(),
                    waited: self.opts.deadline,
                    last,
                    logs: self.logs(),
                });
            }
            thread::sleep(POLL);
        }
    }

    /// One look at the cluster: `Ok` with each node's role if it has
    /// settled, else why not.
    fn observe(&self) -> Result<Vec<Role>, String> {
        let mut agreed: Option<(usize, Vec<Role>)> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.is_up() {
                continue;
            }
            let info = self.text(node, &["CLUSTER", "INFO"])?;
            if !info.contains("cluster_state:ok\r\n") {
                return Err(format!(
                    "node {i} (:{}) reports cluster_state other than ok",
                    node.port()
                ));
            }
            let table = self.text(node, &["CLUSTER", "NODES"])?;
            let roles = self
                .roles_seen(&table)
                .map_err(|why| format!("node {i} (:{}) sees {why}", node.port()))?;
            match &agreed {
                None => agreed = Some((i, roles)),
                Some((first, seen)) if *seen != roles => {
                    return Err(format!(
                        "nodes {first} and {i} disagree: {seen:?} against {roles:?}"
                    ));
                }
                Some(_) => {}
            }
        }
        let (_, roles) = agreed.ok_or("no node is up")?;
        let mut covered = 0;
        for role in &roles {
            if let Role::Master(ranges) = role {
                covered += ranges
                    .iter()
                    .map(|&(a, b)| usize::from(b - a) + 1)
                    .sum::<usize>();
            }
        }
        if covered != usize::from(SLOTS) {
            return Err(format!(
                "masters that are up serve {covered} slots, not {SLOTS}"
            ));
        }
        for (i, role) in roles.iter().enumerate() {
            if let Role::Replica(master) = *role {
                let node = &self.nodes[i];
                let info = self.text(node, &["INFO", "replication"])?;
                let linked = format!("master_port:{}\r\n", node_port(&self.nodes[master]));
                if !info.contains(&linked) || !info.contains("master_link_status:up\r\n") {
                    return Err(format!(
                        "replica {i} (:{}) is not synced with node {master} yet",
                        node.port()
                    ));
                }
            }
        }
        Ok(roles)
    }

    /// Parses one node's `CLUSTER NODES` into roles by our node index; `Err`
    /// says what is not settled in it.
    fn roles_seen(&self, table: &str) -> Result<Vec<Role>, String> {
        let mut roles: Vec<Option<Role>> = vec![None; self.nodes.len()];
        for line in table.lines().filter(|line| !line.is_empty()) {
            let fields: Vec<&str> = line.split(' ').collect();
            let [
                id,
                _addr,
                flags,
                master,
                _ping,
                _pong,
                _epoch,
                link,
                slots @ ..,
            ] = &fields[..]
            else {
                return Err(format!("a line it cannot parse: {line:?}"));
            };
            let index = self
                .index_of(id)
                .ok_or_else(|| format!("an unknown node {id}"))?;
            let flags: BTreeSet<&str> = flags.split(',').collect();
            let role = if self.nodes[index].is_up() {
                if let Some(bad) = ["fail", "fail?", "handshake", "noaddr"]
                    .iter()
                    .find(|flag| flags.contains(*flag))
                {
                    return Err(format!("node {index} as {bad}"));
                }
                if !flags.contains("myself") && *link != "connected" {
                    return Err(format!("its link to node {index} {link}"));
                }
                if flags.contains("master") {
                    Role::Master(parse_slots(slots)?)
                } else {
                    let of = self
                        .index_of(master)
                        .ok_or_else(|| format!("node {index} replicating unknown {master}"))?;
                    Role::Replica(of)
                }
            } else if flags.contains("fail") {
                Role::Down
            } else {
                return Err(format!("node {index}, which is down, not marked fail yet"));
            };
            roles[index] = Some(role);
        }
        roles
            .into_iter()
            .enumerate()
            .map(|(i, role)| role.ok_or_else(|| format!("no line for node {i}")))
            .collect()
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.id == id)
    }

    /// The text of a command's status or bulk reply, for settle checks.
    fn text(&self, node: &ClusterNode, args: &[&str]) -> Result<String, String> {
        match admin(&node.server, args) {
            Ok(Reply::Status(text)) => Ok(text),
            Ok(Reply::Bulk(Some(bytes))) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Ok(other) => Err(command_error(&node.server, args, &other).to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn expect_ok(&self, node: &ClusterNode, args: &[&str]) -> Result<(), Error> {
        match admin(&node.server, args)? {
            Reply::Status(ok) if ok == "OK" => Ok(()),
            other => Err(command_error(&node.server, args, &other)),
        }
    }

    /// The end of every node's log, each line prefixed with its port.
    fn logs(&self) -> String {
        let mut logs = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let state = if node.is_up() { "up" } else { "down" };
            logs.push_str(&format!("---- node {i} (:{}, {state}):\n", node.port()));
            for line in last_lines(&node.server.log(), LOG_LINES).lines() {
                logs.push_str(&format!("[redis :{}] {line}\n", node.port()));
            }
        }
        logs
    }
}

/// Sends `args` to `server`; an I/O failure becomes [`Error::Command`].
fn admin(server: &RedisServer, args: &[&str]) -> Result<Reply, Error> {
    resp::call(server.port(), args, COMMAND_TIMEOUT).map_err(|e| Error::Command {
        port: server.port(),
        command: args.join(" "),
        reply: e.to_string(),
    })
}

fn command_error(server: &RedisServer, args: &[&str], reply: &Reply) -> Error {
    Error::Command {
        port: server.port(),
        command: args.join(" "),
        reply: reply.to_string(),
    }
}

/// The port a node tells the others it serves clients on: its TLS port in
/// a TLS cluster (the one `MIGRATE` connects to, with TLS), else its port.
fn node_port(node: &ClusterNode) -> u16 {
    node.server.tls_port().unwrap_or_else(|| node.port())
}

fn bus_port(node: &ClusterNode) -> u16 {
    node.server
        .bus_port()
        .expect("cluster nodes are started with ServerOptions::cluster")
}

/// The inclusive slot range master `i` of `masters` gets at start.
fn slot_share(i: usize, masters: usize) -> (usize, usize) {
    let slots = usize::from(SLOTS);
    (i * slots / masters, (i + 1) * slots / masters - 1)
}

/// `0-5460 5461 [5462->-id]` → `[(0, 5460), (5461, 5461)]`. Bracketed
/// entries are a slot being imported or migrated, shown only by the node
/// doing it; they are left out so that all nodes can agree.
fn parse_slots(fields: &[&str]) -> Result<Vec<(u16, u16)>, String> {
    fields
        .iter()
        .filter(|field| !field.starts_with('['))
        .map(|field| {
            let (a, b) = field.split_once('-').unwrap_or((field, field));
            match (a.parse(), b.parse()) {
                (Ok(a), Ok(b)) => Ok((a, b)),
                _ => Err(format!("a slot range it cannot parse: {field:?}")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_shares_cover_every_slot_once() {
        for masters in [1, 2, 3, 5, 7] {
            let mut next = 0;
            for i in 0..masters {
                let (start, end) = slot_share(i, masters);
                assert_eq!(start, next);
                assert!(end >= start);
                next = end + 1;
            }
            assert_eq!(next, usize::from(SLOTS));
        }
    }

    #[test]
    fn slot_fields_parse_and_skip_migrations() {
        assert_eq!(
            parse_slots(&["0-5460", "7000", "[7001->-abc]", "[7002-<-def]"]).unwrap(),
            vec![(0, 5460), (7000, 7000)]
        );
        assert!(parse_slots(&["x-1"]).is_err());
    }
}
