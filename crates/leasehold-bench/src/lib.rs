//! The benchmark workloads of BENCH.md, run by `leasehold bench`.
#![deny(missing_docs)]
