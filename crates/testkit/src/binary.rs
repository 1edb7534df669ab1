//! Finding the `redis-server` executable.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// The environment variable that names the `redis-server` binary to use.
const ENV: &str = "LEASEHOLD_REDIS_SERVER";

/// Returns the `redis-server` executable to run.
///
/// `$LEASEHOLD_REDIS_SERVER` wins if it is set and not empty; otherwise the
/// first executable `redis-server` on `PATH`. A set but wrong
/// `$LEASEHOLD_REDIS_SERVER` is an error rather than a silent fall back to
/// `PATH`, so a test never runs against a Redis other than the one asked for.
///
/// # Errors
///
/// [`Error::NotFound`], whose message gives the install command.
///
/// ```
/// let binary = testkit::redis_server_binary()?;
/// println!("tests will run {}", binary.display());
/// # Ok::<(), testkit::Error>(())
/// ```
pub fn redis_server_binary() -> Result<PathBuf, Error> {
    find(
        std::env::var_os(ENV).as_deref(),
        std::env::var_os("PATH").as_deref(),
    )
}

/// [`redis_server_binary`] with the environment passed in, so tests need not
/// change the process environment (which other test threads read).
pub(crate) fn find(env: Option<&OsStr>, path: Option<&OsStr>) -> Result<PathBuf, Error> {
    if let Some(env) = env.filter(|v| !v.is_empty()) {
        let candidate = PathBuf::from(env);
        return if is_executable(&candidate) {
            Ok(candidate)
        } else {
            Err(Error::NotFound {
                env: Some(candidate),
            })
        };
    }
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| is_executable(candidate))
        .ok_or(Error::NotFound { env: None })
}

/// The environment variable that names the `redis-sentinel` binary to use.
const SENTINEL_ENV: &str = "LEASEHOLD_REDIS_SENTINEL";

/// Returns the `redis-sentinel` executable to run (Debian's
/// `redis-sentinel` package).
///
/// `$LEASEHOLD_REDIS_SENTINEL` wins if it is set and not empty; otherwise
/// the first executable `redis-sentinel` on `PATH`.
///
/// # Errors
///
/// [`Error::SentinelNotFound`], whose message gives the install command.
///
/// ```
/// let binary = testkit::redis_sentinel_binary()?;
/// println!("sentinels will run {}", binary.display());
/// # Ok::<(), testkit::Error>(())
/// ```
pub fn redis_sentinel_binary() -> Result<PathBuf, Error> {
    find_named(
        "redis-sentinel",
        std::env::var_os(SENTINEL_ENV).as_deref(),
        std::env::var_os("PATH").as_deref(),
    )
    .map_err(|e| match e {
        Error::NotFound { env } => Error::SentinelNotFound { env },
        e => e,
    })
}

/// [`find`] for another executable name.
fn find_named(name: &str, env: Option<&OsStr>, path: Option<&OsStr>) -> Result<PathBuf, Error> {
    if let Some(env) = env.filter(|v| !v.is_empty()) {
        return find(Some(env), None);
    }
    path.into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or(Error::NotFound { env: None })
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HINT: &str = "redis-server was not found on PATH (or in $LEASEHOLD_REDIS_SERVER). \
        Install it: `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server`, \
        or run `cargo xtask setup`";

    #[test]
    fn env_pointing_nowhere_gives_install_message() {
        let missing = tempfile::tempdir().unwrap().path().join("redis-server");
        let err = find(
            Some(missing.as_os_str()),
            std::env::var_os("PATH").as_deref(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::NotFound { env: Some(ref p) } if *p == missing));
        let message = err.to_string();
        assert!(message.contains(HINT), "{message}");
        assert!(
            message.contains("LEASEHOLD_REDIS_SERVER is set to"),
            "{message}"
        );
    }

    #[test]
    fn empty_path_gives_install_message() {
        let empty = tempfile::tempdir().unwrap();
        let err = find(None, Some(empty.path().as_os_str())).unwrap_err();
        assert!(matches!(err, Error::NotFound { env: None }));
        assert_eq!(err.to_string(), HINT);
    }

    #[test]
    fn a_non_executable_file_is_not_redis_server() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("redis-server"), "not a program").unwrap();
        assert!(find(None, Some(dir.path().as_os_str())).is_err());
    }

    #[test]
    fn path_is_searched_in_order() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [&first, &second] {
            let file = dir.path().join("redis-server");
            std::fs::write(&file, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = std::env::join_paths([first.path(), second.path()]).unwrap();
        assert_eq!(
            find(None, Some(&path)).unwrap(),
            first.path().join("redis-server")
        );
    }

    #[test]
    fn a_missing_sentinel_gives_its_install_message() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_named("redis-sentinel", None, Some(empty.path().as_os_str()))
            .map_err(|e| match e {
                Error::NotFound { env } => Error::SentinelNotFound { env },
                e => e,
            })
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("apt-get install -y redis-sentinel"),
            "{message}"
        );
    }

    #[test]
    fn env_wins_over_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("my-redis");
        std::fs::write(&file, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            find(Some(file.as_os_str()), Some(empty.path().as_os_str())).unwrap(),
            file
        );
    }
}
