//! The spans and events leasehold reports through `tracing`, captured by a
//! subscriber of each test's own.
//!
//! A test binary of its own: tracing's global level filter and callsite
//! interest are shared by every thread of a process, and in the `leases`
//! binary, whose other tests run beside these without a subscriber, a
//! renewal's span came out disabled once under load (a loss event seen
//! with no parent).

#[path = "../leases/common.rs"]
#[allow(dead_code)]
mod common;

mod traces;
