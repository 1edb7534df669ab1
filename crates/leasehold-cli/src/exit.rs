//! Exit codes: one enum, documented in `--help` and the README.

use std::process::ExitCode;

/// What `leasehold` exits with. `run` and `sem run` exit with the command's
/// own status instead when the command ran to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Success,
    /// 1: something else failed.
    Failure,
    /// 2: bad usage or bad input (a bad duration, an empty name, a zero
    /// ttl, a bad URL, a malformed token).
    Usage,
    /// 3: the lease was not obtained: held by someone else (`--no-wait`),
    /// or not free within `--wait`.
    NotObtained,
    /// 4: the lease was lost while the command ran, or the token given to
    /// `extend` / `release` does not hold it.
    Lost,
    /// 5: Redis could not be reached, or refused (wrong password, read-only
    /// replica, out of memory, ...).
    Redis,
    /// 130: interrupted by SIGINT.
    Interrupted,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::NotObtained => 3,
            Exit::Lost => 4,
            Exit::Redis => 5,
            Exit::Interrupted => 130,
        }
    }

    /// The code for a library error.
    pub fn of(e: &leasehold::Error) -> Exit {
        use leasehold::ErrorKind as K;
        match e.kind() {
            K::InvalidArgument { .. } => Exit::Usage,
            K::Held { .. } | K::Timeout { .. } => Exit::NotObtained,
            K::LeaseLost { .. } => Exit::Lost,
            K::Connect { .. } | K::ConnectTimeout { .. } | K::Redis { .. } => Exit::Redis,
            _ => Exit::Failure,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}
