//! What runs on your data next to the locks: your own Lua scripts (and
//! those that run only while a lease is held), optimistic transactions,
//! single-flight cache rebuilds, and the resource's side of fencing.

mod fence;
mod script;
mod singleflight;
mod txn;

pub use fence::{FenceGate, StaleFence};
pub use script::{Invocation, LeaseScript, Script};
pub use singleflight::{Fetched, SingleFlight, Source};
pub use txn::{Committed, Optimistic, Tx};
