//! The one error type of the benchmark harness.

/// What stopped a benchmark run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The private `redis-server` could not be started.
    #[error("could not start a private redis-server: {0}")]
    Server(#[from] testkit::Error),
    /// leasehold itself failed (connecting, acquiring, releasing).
    #[error("leasehold: {0}")]
    Lease(#[from] leasehold::Error),
    /// A command on the benchmark's own connections failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// `redis-benchmark` failed or printed something unexpected.
    #[error("redis-benchmark: {0}")]
    Tool(String),
    /// A bad option: an unknown workload, a malformed duration, zero workers.
    #[error("{0}")]
    Invalid(String),
    /// A file or a child process could not be used.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A task of a workload panicked.
    #[error("a benchmark task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A workload ran but its result breaks an invariant it checks (a lease
    /// that did not exclude, a waiter never served).
    #[error("{0}")]
    Check(String),
}
