//! The scenarios of the tutorials leasehold answers, run live against a
//! real Redis: `leasehold demo` (and `cargo xtask demo`).
//!
//! # Layout
//!
//! - `scenarios`: [`Scenario`] (the four, and their names on the command
//!   line, a clap value enum), [`Sizes`] (how big each run is: the full
//!   demo, or a quick one for tests), and one module per scenario.
//! - `event`: [`Event`], what a scenario reports, as text for people
//!   ([`Event::human`]) or one JSON object per line ([`Event::json`]).
//! - `run`: [`Options`] and [`run`], which runs scenarios, handing each
//!   event to a sink, on one server or a Redis Cluster ([`Target`]); the
//!   progress bars.
//! - `error`: [`Error`].
//!
//! The scenarios:
//!
//! 1. **flash sale**: `stock` units, `buyers` concurrent buyers buying one
//!    unit at a time until sold out, once per strategy: naive GET-then-SET
//!    (it oversells: that is the point), WATCH/MULTI/EXEC, a lease around
//!    GET/SET, and one Lua script.
//! 2. **one job, many hosts**: every host tries to run a scheduled job at
//!    each tick; exactly one runs it per tick.
//! 3. **cache stampede**: many readers miss a cold cache at once; the value
//!    is rebuilt once ([`leasehold::SingleFlight`]).
//! 4. **a paused holder**: a holder freezes past its TTL, another takes the
//!    lease and writes; the frozen one wakes and writes too. The fenced
//!    store and the lease-scoped script refuse it; a store without fencing
//!    takes it and loses the newer write.

#![deny(missing_docs)]

mod error;
mod event;
mod run;
mod scenarios;

pub use error::Error;
pub use event::Event;
pub use leasehold_bench::Target;
pub use run::{Options, run};
pub use scenarios::{Scenario, Sizes};
