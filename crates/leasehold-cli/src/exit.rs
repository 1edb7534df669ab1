//! Exit codes: one enum, documented in `--help` and the README.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (a closed stdout, as with `\| head`, is success too) |
//! | N | `run`, `sem run`: the command's own exit status (128 + signal if a signal killed it; 127 not found, 126 not startable) |
//! | 1 | any other failure; `doctor`: a check failed (warnings alone exit 0) |
//! | 2 | bad usage or bad input: a bad duration, an empty name, a zero or out-of-range ttl, a bad URL, a malformed token; what the deployment does not offer (`--fair` over Redlock) |
//! | 3 | the lease was not obtained: held by someone else (`--no-wait`), or not free within `--wait` (like `flock -E`) |
//! | 4 | the lease was lost while the command ran (`run`), or was about to run out with renewals failing and the command was stopped; or the token does not hold it (`extend`, `release`) |
//! | 5 | Redis could not be reached, or refused (wrong password, read-only replica, out of memory); over Redlock, too few masters answered |
//! | 128 + N | leasehold itself got signal N and stopped: 130 on SIGINT (Ctrl-C), 143 on SIGTERM, 129 on SIGHUP; for `run` only before the command started (afterwards the signal goes on to the command's process group) |
//! | 137 | `run` was killed with SIGKILL (the shell reports it, leasehold cannot): on Linux its command is stopped before the lease's validity runs out (see `cmd::run`) |

use std::process::ExitCode;

/// What `leasehold` exits with. `run` and `sem run` exit with the command's
/// own status instead when the command ran to its end; the table in the
/// module documentation gives every code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done.
    Success,
    /// 1: something else failed.
    Failure,
    /// 2: bad usage or bad input (a bad duration, an empty name, a zero
    /// ttl, a bad URL, a malformed token). clap exits with 2 too.
    Usage,
    /// 3: the lease was not obtained: held by someone else (`--no-wait`),
    /// or not free within `--wait`.
    NotObtained,
    /// 4: the lease was lost while the command ran (or was about to run
    /// out with renewals failing, and the command was stopped), or the
    /// token given to `extend` / `release` does not hold it.
    Lost,
    /// 5: Redis could not be reached, or refused (wrong password, read-only
    /// replica, out of memory, ...).
    Redis,
    /// 128 + N: stopped by signal N (SIGINT gives 130, the shell's
    /// convention), with whatever was in flight abandoned cleanly.
    Signal(i32),
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
            Exit::Signal(sig) => u8::try_from(128 + sig).unwrap_or(1),
        }
    }

    /// The code for a library error.
    pub fn of(e: &leasehold::Error) -> Exit {
        use leasehold::ErrorKind as K;
        match e.kind() {
            K::InvalidArgument { .. } | K::Unsupported { .. } => Exit::Usage,
            K::Held { .. } | K::Timeout { .. } => Exit::NotObtained,
            K::LeaseLost { .. } => Exit::Lost,
            K::Connect { .. }
            | K::ConnectTimeout { .. }
            | K::Redis { .. }
            | K::QuorumNotReached { .. }
            | K::ReplicasNotReached { .. } => Exit::Redis,
            _ => Exit::Failure,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn codes_are_distinct_and_signals_follow_the_shell() {
        let all = [
            Exit::Success,
            Exit::Failure,
            Exit::Usage,
            Exit::NotObtained,
            Exit::Lost,
            Exit::Redis,
            Exit::Signal(libc::SIGINT),
        ];
        let mut codes: Vec<u8> = all.iter().map(|e| e.code()).collect();
        codes.dedup();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 130]);
        assert_eq!(Exit::Signal(libc::SIGTERM).code(), 143);
        assert_eq!(Exit::Signal(libc::SIGHUP).code(), 129);
    }
}
