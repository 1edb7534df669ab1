//! Integration tests of leasehold against real redis-server processes,
//! started by testkit. One test binary, a module per area.

mod common;

mod acl;
mod batch;
mod cluster;
mod direct;
mod exclusion;
mod fair;
mod fair_handover;
mod fair_local;
mod fair_semaphore;
mod fences;
mod handover;
mod input;
mod inspect;
mod lifecycle;
#[cfg(feature = "metrics")]
mod metrics;
mod oom;
mod ownership;
mod regressions;
mod renewal;
mod replicas;
mod rwlock;
mod scripts;
mod semaphore;
mod sentinel;
mod tls;
mod txn;
mod wakeup;
mod warnings;
