//! End-to-end tests of the `leasehold` binary against real redis-server
//! processes. One test binary, a module per area.

mod common;

mod cluster;
mod demo;
mod doctor;
mod force;
mod inputs;
mod inspect;
mod log;
mod names;
mod redlock;
mod replicas;
mod run;
mod sem;
mod sentinel;
mod tls;
mod tokens;
mod top;
