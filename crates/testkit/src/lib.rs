//! Throwaway `redis-server` processes for leasehold's tests and its demo.
//!
//! Every [`RedisServer`] is a real `redis-server` child process on a free
//! loopback port with its own temporary directory. Nothing about Redis is
//! mocked: tests pause it (`SIGSTOP`), kill it (`SIGKILL`) and restart it on the
//! same port to produce the faults leasehold must survive. Dropping the value
//! kills the process and removes the directory; if the thread is panicking,
//! the end of Redis's log is printed first so a failing test shows Redis's side.
//!
//! ```
//! use testkit::{RedisServer, ServerOptions};
//!
//! let mut server = RedisServer::start_with(ServerOptions { aof: true, ..Default::default() })?;
//! println!("talk to {}", server.url()); // redis://127.0.0.1:PORT
//! server.pause(); // the process is frozen: clients time out, leases expire
//! server.resume();
//! server.restart()?; // same port, same dir: the append-only file is replayed
//! # Ok::<(), testkit::Error>(())
//! ```
//!
//! A Redis Cluster is a set of them wired together, with the faults of a
//! sharded deployment on top:
//!
//! ```
//! let mut cluster = testkit::RedisCluster::start(3, 1)?; // 3 masters, 1 replica each
//! let seeds = cluster.seeds(); // the masters' URLs, for a cluster client
//! let slot = cluster.slot_of("{job}.lock")?;
//! let master = cluster.master_of_slot(slot);
//! let other = cluster.masters().into_iter().find(|m| *m != master).unwrap();
//! cluster.move_slot(slot, other)?; // MIGRATING/IMPORTING, MIGRATE, SETSLOT NODE
//! cluster.failover(other)?; // its replica takes over, cleanly
//! # Ok::<(), testkit::Error>(())
//! ```
//!
//! # Layout
//!
//! - `binary`: finds the `redis-server` executable: `$LEASEHOLD_REDIS_SERVER`,
//!   else `PATH` ([`redis_server_binary`]).
//! - `server`: [`RedisServer`] and [`ServerOptions`]: picks a port, spawns,
//!   waits for `PING`, pauses, resumes, kills, restarts, shows the log.
//! - `proxy`: [`FaultProxy`], a TCP proxy in front of a server that delays
//!   replies, resets a connection between a command and its reply, or
//!   blackholes traffic.
//! - `faketime`: finds libfaketime, under which a server's wall clock can be
//!   made to jump ([`ServerOptions::faketime`]).
//! - `cluster`: [`RedisCluster`] and [`ClusterOptions`]: starts masters and
//!   replicas, meets them, assigns the slots, and moves a slot (whole, or
//!   stopped half-way for `ASK`), fails a master over (`CLUSTER FAILOVER`),
//!   kills, pauses and restarts nodes; each change waits until every node
//!   agrees on the new slot map.
//! - `sentinel`: [`RedisSentinel`] and [`SentinelOptions`]: a master, its
//!   replica and three `redis-sentinel` processes (found by
//!   [`redis_sentinel_binary`]); a graceful failover (`SENTINEL FAILOVER`)
//!   or a crash of the master, each waited for until the sentinels, `ROLE`
//!   and replication agree.
//! - `tls`: [`TlsFiles`], a private CA and the server and client
//!   certificates it signs (rcgen), for servers started with
//!   [`ServerOptions::tls`].
//! - `resp`: a blocking RESP2 exchange (one command per connection) and its
//!   [`Reply`], with which `cluster` drives the nodes and tests inspect them.
//! - `probe`: a raw-TCP `PING` used to decide when a server is ready; no
//!   Redis client library is needed.
//! - `error`: [`Error`]; each message says what to do about it.
//! - `wait`: [`eventually`] and [`eventually_blocking`], a wait for a
//!   condition with a deadline, for tests.
//!
//! # Finding redis-server
//!
//! Set `LEASEHOLD_REDIS_SERVER` to the path of a `redis-server` binary to use
//! that one; otherwise it is looked up on `PATH`. When none is found, starting
//! a server fails with [`Error::NotFound`], whose message gives the install
//! command (`cargo xtask setup` runs it). Tests never skip silently.
//!
//! testkit is synchronous: it runs servers with `std::process`, talks to
//! them over blocking TCP, and blocks while a server starts (milliseconds)
//! or a cluster settles (up to several seconds after a killed master). It is
//! called from tokio tests and from the CLI's `leasehold demo`, so it must
//! not depend on a runtime. A test whose own tasks must keep running during
//! a cluster fault (renewals, wake-ups) calls it through
//! `tokio::task::spawn_blocking` or `block_in_place`.
#![deny(missing_docs)]

mod binary;
mod cluster;
mod error;
mod faketime;
mod probe;
mod proxy;
mod resp;
mod sentinel;
mod server;
mod tls;
mod wait;

pub use binary::{redis_sentinel_binary, redis_server_binary};
pub use cluster::{ClusterNode, ClusterOptions, RedisCluster, SLOTS};
pub use error::Error;
pub use faketime::library as libfaketime;
pub use proxy::FaultProxy;
pub use resp::Reply;
pub use sentinel::{RedisSentinel, SentinelOptions};
pub use server::{RedisServer, ServerOptions};
pub use tls::{ClientAuth, TlsFiles};
pub use wait::{eventually, eventually_blocking};
