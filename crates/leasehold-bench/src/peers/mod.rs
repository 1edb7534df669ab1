//! The peer libraries side by side: runs the scripts of `shared/peers/`
//! (redis-py, python-redis-lock, pottery, node-redlock, rslock) against the
//! server leasehold was just measured on, and compares.
//!
//! `cargo xtask bench` uses this through the `leasehold-bench-peers`
//! binary. The scripts are never copied into the repository: [`prepare`]
//! copies them into a work directory (under the system's temporary
//! directory by default) and sets them up there (a Python venv, `npm
//! install`, a release build of the rslock harness). Set-up needs the
//! package registries (PyPI, npm, crates.io); a peer that cannot be set up
//! or run is reported as a problem and the others go on.
//!
//! Each peer script prints one JSON object per line (`lib`, `workload`,
//! `variant` and its figures); [`compare`] picks the best peer for each of
//! leasehold's headline figures.
//!
//! Redlock mode (R1 to R4 over 5 masters): [`run_redlock`] runs one
//! library of the peers' Redlock harness (`run-redlock.sh` without its own
//! masters: the caller's, shared with leasehold's run, so that the two can
//! be interleaved on the same masters), [`compare_redlock`] and
//! [`format_redlock_peer_table`] read its lines (`library`, `workload`,
//! `variant`, figures).
//!
//! # Layout
//!
//! - `setup`: [`prepare`]: the copy out of `shared/peers/` and the set-up.
//! - `run`: [`run_all`]: each peer script, its JSON lines captured.
//! - `compare`: [`compare`]: leasehold's figures against the best peer's.
//! - `format`: [`format_peer_table`], [`format_comparison`]: the tables.
//! - `interleave`: [`summarize`]: interleaved passes of W1 and W2 by
//!   leasehold, node-redlock and rslock (`cargo xtask bench --interleave K`),
//!   medians, spreads and ratios of medians.

mod compare;
mod format;
mod interleave;
mod run;
mod setup;

pub use compare::{Comparison, Direction, compare, compare_redlock};
pub use format::{format_comparison, format_passes, format_peer_table, format_redlock_peer_table};
pub use interleave::{
    LEASEHOLD, LibrarySummary, PassResult, RatioSummary, Spread, Summary, format_interleave,
    interleave_json, spread, summarize,
};
pub use run::{PeerRun, RedlockMasters, redlock_peers, run_all, run_one, run_redlock};
pub use setup::{Toolchain, prepare, prepare_only};

use serde_json::Value;

/// The peers' JSON lines as records; lines that are not JSON are skipped.
fn records(peer_lines: &[impl AsRef<str>]) -> Vec<Value> {
    peer_lines
        .iter()
        .filter_map(|l| serde_json::from_str(l.as_ref().trim()).ok())
        .collect()
}

/// A record's number `key`, if it has one.
fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key)?.as_f64()
}
