//! [`Error`]: something the demo could not do.

use std::fmt;

/// Something the demo could not do.
#[derive(Debug)]
pub struct Error(pub(crate) String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<leasehold::Error> for Error {
    fn from(e: leasehold::Error) -> Error {
        Error(e.to_string())
    }
}

impl From<leasehold_bench::Error> for Error {
    fn from(e: leasehold_bench::Error) -> Error {
        Error(e.to_string())
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Error {
        Error(format!("redis: {e}"))
    }
}
