//! The torture suite of leasehold: workers take one lease over and over
//! while faults are injected, every step goes into a history, and checkers
//! read the histories for two holders at once, lost updates, stale writes,
//! slow recovery and leftovers.
//!
//! Run it with `cargo xtask torture [--quick] [--scenario NAME] [--soak 10m]
//! [--json]`; `cargo xtask test` runs the quick set. `--cluster` runs the
//! scenarios that apply against a 3-master Redis Cluster instead of one
//! server, plus slot moves, failovers and killed masters (on demand only:
//! `cargo xtask test` does not); `--list` says which run where.
//! `--redlock` runs them against 5 independent masters with Redlock
//! clients, plus faults on the masters: a minority or a majority frozen,
//! killed and restarted with or without their data, Kleppmann's bare
//! quorum, one master's clock jumping (on demand too).
//!
//! # Layout
//!
//! - [`history`]: the events (JSON Lines), the monotonic clock they share
//!   across processes, token hashes.
//! - [`store`]: the protected resource, a counter behind a fence check in
//!   Lua (`store.lua`), on a server no fault touches.
//! - [`workers`]: tasks of several clients and separate worker processes,
//!   for leasehold and for the control arm (`SET NX PX` + `DEL`).
//! - [`faults`]: each fault, how it is injected and undone, and the
//!   scheduler that draws them at random.
//! - [`checker`]: C1 (no lost update), C2 (no overlapping validity), C3
//!   (fences rise, stale writes refused), C4 (recovery after a holder dies),
//!   C5 (nothing left held), C6 (Redlock: no grant without a quorum of
//!   masters, grants go on with a minority stopped).
//! - [`scenarios`]: the quick and full sets, and running one to a verdict.
//! - [`report`]: the table and `--json`.
//!
//! # Verdicts
//!
//! `pass`; `FAIL`; `documented` when only C2 fails on a fault no lock on a
//! single Redis (or on a cluster's asynchronous replication) can survive
//! (its data lost or its clock jumping) while the fences kept the counter
//! right; `control-failed-as-expected` when the
//! control arm breaks C2 and C1 or C3. A control arm that passes means the
//! checkers are blind: that is a `FAIL`.
#![deny(missing_docs)]

pub mod checker;
pub mod faults;
pub mod history;
pub mod report;
pub mod scenarios;
pub mod store;
pub mod workers;
