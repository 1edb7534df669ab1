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
//! - `probe`: a raw-TCP `PING` used to decide when a server is ready; no
//!   Redis client library is needed.
//! - `error`: [`Error`]; each message says what to do about it.
//!
//! # Finding redis-server
//!
//! Set `LEASEHOLD_REDIS_SERVER` to the path of a `redis-server` binary to use
//! that one; otherwise it is looked up on `PATH`. When none is found, starting
//! a server fails with [`Error::NotFound`], whose message gives the install
//! command (`cargo xtask setup` runs it). Tests never skip silently.
//!
//! XX `std::process` and blocks for at most a few seconds while a
//! server starts. It is called from tokio tests (where this short block is
//! harmless) and from the CLI's `leasehold demo`, so it must not depend on a
//! runtime.
#![deny(missing_docs)]

mod binary;
mod cluster;
mod error;
mod faketime;
mod probe;
mod proxy;
mod resp;
mod server;

pub use binary::redis_server_binary;
pub use cluster::{ClusterNode, ClusterOptions, RedisCluster, SLOTS};
pub use error::Error;
pub use faketime::library as libfaketime;
pub use proxy::FaultProxy;
pub use resp::Reply;
pub use server::{RedisServer, ServerOptions};
