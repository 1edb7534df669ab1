//! Distributed leases on Redis that are actually safe: fencing tokens,
//! self-renewal, and waiters woken by the release itself.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> leasehold::Result<()> {
//! use std::time::Duration;
//!
//! let client = leasehold::Client::connect("redis://127.0.0.1:6379").await?;
//! let guard = client
//!     .lease("reports/nightly")
//!     .ttl(Duration::from_secs(30))   // outlives a crashed holder by 30 s at most
//!     .wait(Duration::from_secs(10))  // how long to wait for the current holder
//!     .acquire()
//!     .await?;
//!
//! // Renewed every 10 s in the background while `guard` lives. Pass the
//! // fence with every write, so a store can refuse a stale holder.
//! println!("holding with fence {}", guard.fence());
//!
//! guard.release().await?; // or drop it: released in the background
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Every public item is at the crate's root. Inside, the modules are
//! layered, each using only those below it:
//!
//! - `client`: [`Client`] and [`ClientBuilder`], the public handle; every
//!   primitive is made here.
//! - `inspect`: [`Client::status`] and [`Client::list`], for looking at
//!   leases from outside ([`LeaseStatus`], [`LeaseKind`], [`Holder`]).
//! - `data`: [`Script`] for your own Lua, [`LeaseScript`] for writes that
//!   run only while a guard's lease is held, [`Client::optimistic`]
//!   transactions, [`Client::single_flight`] cache rebuilds, and
//!   [`FenceGate`], the resource's side of fencing.
//! - the primitives: `lease` ([`Lease`]: options, and its acquire loop in
//!   a file of its own), `semaphore` ([`Semaphore`]), `rwlock`
//!   ([`RwLock`], [`RwSide`]).
//! - `hold`: [`Guard`], the proof of holding: fence, renewal, `lost()`,
//!   re-entry, release on drop.
//! - `engine`: what a client's leases share: the backend, the wake hub,
//!   one renewal timer for all guards, the runtime for background work.
//! - `wake`: how waiters sleep and are woken (one subscriber, FIFO queues,
//!   one wake per release, hand-over to a local waiter).
//! - `backend`: the seam between the primitives and the deployment
//!   (acquire, extend, release, leave a fair queue, wake source, validity
//!   rule); `node` is one server, `batch` gathers plain leases' scripts.
//! - `scripts`: the Lua scripts (`src/scripts/*.lua`), one file per family,
//!   and their typed calls.
//! - `deploy`: what the servers must be: their settings read once at
//!   connect (warnings), and [`Client::doctor`] ([`Check`], [`Verdict`]).
//! - `keys` (where a name's keys live), `token` ([`Token`]), `error`
//!   ([`Error`], [`ErrorKind`]), `acl` ([`acl_rule`], [`ACL_COMMANDS`]).
//! - `observe`, the bottom: the spans, events and metrics every layer
//!   reports through (see [Traces](#traces) and [Metrics](#metrics)).
//!
//! # Data in Redis
//!
//! A lease named `N` is the string key `N` holding the owner token, with
//! `PX` = the ttl: the layout of redis-py's `Lock`, redsync and
//! node-redlock, so a mixed fleet excludes itself on one name. Next to it,
//! `leasehold:{N}:fence` counts acquisitions (the fencing token, floored at
//! the server's clock; it never expires) and `leasehold:{N}:wake` is the
//! channel the release publishes on. Every companion key of `N` is in
//! `N`'s hash slot, by Redis Cluster's own hash-tag rule:
//! - `N` with a hash tag (`{user:7}:profile`): `N:leasehold:fence`, whose
//!   first tag is `N`'s;
//! - `N` without any `}`: `leasehold:{N}:fence`, whose tag is `N`;
//! - `N` with a `}` but no valid tag (`a{}b`, `x}y`):
//!   `{T}:leasehold:{N}:fence`, where `T` is four characters (`0`-`9`,
//!   `a`-`z`) whose slot is `N`'s.
//!
//! # Guarantees
//!
//! - **Every lease has a TTL.** The acquire script sets the key with `PX`
//!   in the same step; a crashed holder blocks others for one ttl at most.
//! - **Only the holder lets go.** Release and extend compare the owner token
//!   inside Lua. An old holder whose lease expired cannot end or extend the
//!   lease of the next one.
//! - **A guard never claims a lease it lost.** It renews every `ttl/3`; when
//!   renewal finds the key gone or taken, or the validity (ttl minus 1 % and
//!   2 ms, counted from the *send* time of the last successful renewal) runs
//!   out, [`Guard::lost`] completes and [`Guard::remaining`] is zero.
//! - **Fencing tokens strictly increase per name**, across clients and
//!   restarts of your processes, and even when Redis loses the counter (a
//!   restart without persistence, an older snapshot, eviction under
//!   `allkeys-*`): every grant sets it to the larger of its increment and
//!   the server's `TIME` in milliseconds × 1024, so a lost counter starts
//!   again above every fence handed out before. That rests on one
//!   assumption: **the Redis server's clock does not step back** (a clock
//!   set back by hand, or a failover to a host whose clock is behind, can
//!   repeat a fence after the counter was lost). Fences are large numbers
//!   (about 2^50 today) and exact below 2^53, which lasts until 2249.
//!
//! And what no lock service can do by itself:
//!
//! - **A paused holder** (a GC pause, SIGSTOP, a VM migration) may wake up
//!   after its lease expired and another process took it. Its guard reports
//!   the loss at once when it looks, but code already past its check can
//!   still write. Only the resource can refuse that write: pass
//!   [`Guard::fence`] along and have the resource reject fences lower than
//!   the highest it has seen.
//! - **A clock jump** on the holder's host does not matter (leasehold uses
//!   monotonic time); Redis expires keys by its own clock, so a jump on the
//!   Redis host can shorten or lengthen a lease. The 1 % drift margin covers
//!   rate differences, not jumps.
//! - **A Redis failover** (replica promoted) may lose the last writes,
//!   including an acquire: two holders can then overlap (their fences
//!   still differ, unless the new master's clock is behind). Use fencing
//!   at the resource, or Redlock over independent masters, with
//!   persistence (`appendfsync always`), where that matters.
//!   [`ClientBuilder::replicas`] narrows the window: a guard is returned
//!   only once enough replicas acknowledged its grant.
//!
//! # Waiting
//!
//! [`Lease::acquire`] sends nothing while it waits. A release by the same
//! client hands the lease straight to the next local waiter in one script
//! (that waiter sends nothing at all) while no other client waits for the
//! name; otherwise the release script
//! publishes on the name's wake channel, and the client's one subscriber
//! connection hands the notification to the local waiter whose turn it is.
//! Local waiters of a name stand in a FIFO queue, and a release wakes only
//! the waiter whose turn it is (every waiter of a read-write lock, where one
//! release can let many readers in): ten thousand waiters cost one
//! subscriber connection, and do not race each other for nothing. A
//! fallback timer of the first waiter (at most the holder's remaining TTL)
//! covers holders that expire or foreign clients that do not publish.
//!
//! # Redis Cluster
//!
//! [`ClientBuilder::cluster`] connects to a cluster from a few seeds. Every
//! script touches only keys of one slot, the name and its companions (see
//! above), and goes to that slot's master; waiters are woken by sharded
//! pub/sub (Redis 7); your scripts' and transactions' keys must share a
//! slot, which is checked before anything is sent.
//!
//! ```no_run
//! # async fn f() -> leasehold::Result<()> {
//! let client = leasehold::Client::builder()
//!     .cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Redlock: independent masters
//!
//! [`ClientBuilder::redlock`] connects to N independent masters. A lease
//! holds when a majority granted it; every call goes to all masters at once
//! and returns as soon as a quorum answered, so a minority down or frozen
//! costs nothing. The fence is the highest of the granting quorum, raised
//! on a majority before the guard is returned, so it never goes back. A
//! semaphore of K permits needs `⌊N·K/(K+1)⌋ + 1` masters per permit (a
//! majority would let more than K in). Fair leases, read-write locks and
//! data commands fail with [`ErrorKind::Unsupported`] there.
//!
//! ```no_run
//! # async fn f() -> leasehold::Result<()> {
//! let client = leasehold::Client::builder()
//!     .redlock(["redis://a:6379", "redis://b:6379", "redis://c:6379"])
//!     .connect()
//!     .await?;
//! let guard = client.lease("reports/nightly").acquire().await?;
//! # Ok(()) }
//! ```
//!
//! # Traces
//!
//! leasehold reports through [`tracing`](https://docs.rs/tracing), target
//! `leasehold` (filter `leasehold=debug` to see it all). Spans are at
//! `DEBUG`; while no subscriber listens at that level they cost one cached
//! check each: no field is evaluated, nothing is formatted or allocated.
//! A token is only ever given as its 8-digit prefix ([`Token::prefix`]).
//!
//! | span or event | level | fields |
//! |---|---|---|
//! | `leasehold.acquire` (span: one `try_acquire` or `acquire` call) | DEBUG | `name`, `kind`, `token`, `mode` (`try`, `wait`); at the end `fence` (when acquired) and `outcome` (`acquired`, `busy`, `timeout`, `error`) |
//! | `leasehold.wait` (span, in `leasehold.acquire`: from its first nap to the end of the call) | DEBUG | `name`, `kind` |
//! | `leasehold.renew` (span: one renewal) | DEBUG | `name`, `kind`, `token`, `fence`, `lag_ms` (how late it started against its schedule); at the end `outcome` (`ok`, `retry`, `lost`) |
//! | `leasehold.release` (span: `Guard::release`, or the background release of a dropped guard or acquire) | DEBUG | `name`, `kind`, `token`, `fence` (not in the background); at the end `outcome` (`released`, `lost`, `not-held`, `error`) |
//! | `leasehold: lease lost: ...` (event) | WARN | `name`, `kind`, `token`, `fence`, `cause` (`gone`, `expired`, `renewal-failed`, `renewal-timeout`, `refused`) |
//! | `leasehold: lease handed over to a local waiter` (event, in `leasehold.release`) | DEBUG | `name`, `fence`, `to` (the waiter's token prefix) |
//!
//! `kind` is `lease`, `fair`, `semaphore`, `rwlock-read` or `rwlock-write`.
//! Other events tell of failures worth a look (a background release that
//! failed, a subscriber connection lost, a renewal retried).
//!
//! # Metrics
//!
//! With the crate feature `metrics`, leasehold records through the
//! [`metrics`](https://docs.rs/metrics) facade (0.24): install any recorder
//! (`metrics-exporter-prometheus`, say; see `examples/prometheus.rs`) and,
//! if it shows descriptions, call `describe_metrics()` once. Without the
//! feature nothing is recorded and nothing is compiled in. Names and units
//! follow Prometheus's conventions:
//!
//! | name | type | unit | labels | what |
//! |---|---|---|---|---|
//! | `leasehold_acquisitions_total` | counter | calls | `kind`, `outcome` (`acquired`, `busy`, `timeout`, `error`) | `try_acquire` and `acquire` calls, by how they ended |
//! | `leasehold_wait_seconds` | histogram | seconds | `kind`, `outcome` | how long `acquire` took, to the guard or the error |
//! | `leasehold_hold_seconds` | histogram | seconds | `kind` | from the grant to the release, drop or loss (not to a `detach`) |
//! | `leasehold_renewals_total` | counter | renewals | `kind`, `outcome` (`ok`, `retry`, `lost`) | a guard's own renewals, every `ttl/3` (not [`Guard::extend`]) |
//! | `leasehold_renewal_lag_seconds` | histogram | seconds | `kind` | how late each renewal started against its schedule |
//! | `leasehold_losses_total` | counter | losses | `kind`, `cause` (as the loss event's) | leases lost while a guard held them |
//! | `leasehold_handovers_total` | counter | hand-overs | — | releases that gave the lease straight to a local waiter |
//! | `leasehold_batches_total` | counter | calls | — | batch calls carrying several tasks' acquires and releases |
//! | `leasehold_batch_size` | histogram | operations | — | operations per batch call |
//! | `leasehold_redis_errors_total` | counter | errors | `kind` (`readonly`, `oom`, `noauth`, `wrongpass`, `noperm`, `loading`, `busy`, `tryagain`, `masterdown`, `clusterdown`, `moved`, `ask`, `noscript`, `wrongtype`, `other-reply`, `timeout`, `connect-timeout`, `refused`, `io`, `other`) | errors from Redis or its connection |
//! # Redis ACL
//!
//! A user restricted to [`acl_rule`] can do everything leasehold does: the
//! keys of its names (each name and its `leasehold:...` companions), their
//! wake channels, and [`ACL_COMMANDS`]. The user and password come from
//! the URL (`redis://user:password@host:port`) and are never printed. A
//! command, key or channel refused by ACL fails with an error that names it
//! ([`Error::is_permission_denied`]).
//!
//! ```no_run
//! # async fn f() -> leasehold::Result<()> {
//! // ACL SETUSER app on >secret <leasehold::acl_rule("jobs/")>
//! let client = leasehold::Client::connect("redis://app:secret@10.0.0.7:6379").await?;
//! let guard = client.lease("jobs/nightly").acquire().await?;
//! # Ok(()) }
//! ```
//!
//! # Checking a deployment
//!
//! Each client reads every server's settings once, in the background, right
//! after it connects (`CONFIG GET`), and warns through `tracing` (target
//! `leasehold`) when a server can lose leases: a `maxmemory-policy` other
//! than `noeviction`, or no persistence (no AOF and no RDB save point).
//! Where the user may not run `CONFIG GET` (the ACL rule leaves it out),
//! the check is skipped with a debug event. [`Client::doctor`] checks more,
//! on demand: version, role, cluster state, clocks, every ACL permission.
//!
//! # Crate features
//!
//! - `metrics` (off by default): the metrics above, through the `metrics`
//!   facade.
//!
//! leasehold needs a tokio runtime (multi-threaded or not).

#![deny(missing_docs)]

mod acl;
mod backend;
#[doc(hidden)]
pub mod bench_hooks;
mod client;
mod data;
mod deploy;
mod engine;
mod error;
mod hold;
mod inspect;
mod keys;
mod lease;
mod observe;
mod rwlock;
mod scripts;
mod semaphore;
mod token;
mod wake;

pub use acl::{ACL_COMMANDS, ACL_TRANSACTION_COMMANDS, acl_rule};
pub use client::{ClientBuilder, ClusterBuilder, RedlockBuilder};
pub use data::{
    Committed, FenceGate, Fetched, Invocation, LeaseScript, Optimistic, Script, SingleFlight,
    Source, StaleFence, Tx,
};
pub use deploy::doctor::{Check, Verdict};
pub use engine::Client;
pub use error::{Error, ErrorKind, NodeFailure, Result};
pub use hold::{Detached, Guard};
pub use inspect::{FORCED_CHANNEL, ForcedRelease, Holder, LeaseKind, LeaseStatus, Quorum, Role};
pub use keys::MAX_NAME_LEN;
pub use lease::{Lease, MAX_TTL, MIN_TTL};
#[cfg(feature = "metrics")]
pub use observe::describe_metrics;
pub use rwlock::{RwLock, RwSide};
pub use semaphore::Semaphore;
pub use token::Token;
