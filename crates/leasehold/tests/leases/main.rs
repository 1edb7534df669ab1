//! Integration tests of leasehold against real redis-server processes,
//! started by testkit. One test binary, a module per area.

mod common;

mod batch;
mod cluster;
mod exclusion;
mod fair;
mod fair_semaphore;
mod fences;
mod handover;
mod input;
mod inspect;
mod lifecycle;
mod oom;
mod ownership;
mod regressions;
mod renewal;
mod rwlock;
mod scripts;
mod semaphore;
mod sentinel;
mod tls;
mod txn;
mod wakeup;
