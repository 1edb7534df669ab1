//! Running the built binary, and waiting with a deadline.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub use testkit::RedisServer;

/// The `leasehold` binary, with no address or log filter from the environment, and
/// backtraces on: a panic would show one, which the tests look for.
pub fn leasehold(server: Option<&RedisServer>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leasehold"));
    cmd.env_remove("LEASEHOLD_URL")
        .env_remove("LEASEHOLD_CLUSTER")
        .env_remove("REDIS_URL")
        .env_remove("LEASEHOLD_LOG")
        .env_remove("LEASEHOLD_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1");
    if let Some(s) = server {
        cmd.arg("--url").arg(s.url());
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs it to the end.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("run leasehold")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs leasehold with `args`, expects exit `code` and exactly one line on
/// stderr starting with `leasehold: `; returns that line.
pub fn one_line_error(args: &[&str], server: Option<&RedisServer>, code: i32) -> String {
    refused(leasehold(server).args(args), code)
}

/// Runs `cmd`, expects exit `code`, nothing on stdout and exactly one line
/// on stderr starting with `leasehold: `, no panic; returns that line.
pub fn refused(cmd: &mut Command, code: i32) -> String {
    let o = output(cmd);
    let err = stderr(&o);
    let args: Vec<_> = cmd.get_args().collect();
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{args:?}: {err}"
    );
    assert!(err.starts_with("leasehold: "), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.ends_with('\n'), "{args:?}: {err:?}");
    assert!(o.stdout.is_empty(), "{args:?}: {}", stdout(&o));
    err
}

/// A loopback port nobody listens on: bound, then let go.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub use testkit::eventually_blocking as eventually;

/// A synchronous connection for looking behind the binary's back.
/// The fencing counter of `name` in Redis: the fence of its latest grant
/// (floored at the server's clock, so no small number).
pub fn fence_counter(server: &RedisServer, name: &str) -> u64 {
    redis::cmd("GET")
        .arg(format!("leasehold:{{{name}}}:fence"))
        .query(&mut redis(server))
        .unwrap()
}

pub fn redis(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// Sends `sig` to a child the test spawned and has not reaped.
pub fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({}, {sig})", child.id());
}

/// Waits for a child to exit, failing after `within`.
pub fn wait_within(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let mut status = None;
    eventually(within, "leasehold to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

/// Whether key `name` exists on `server`.
pub fn key_exists(server: &RedisServer, name: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(name)
        .query::<bool>(&mut redis(server))
        .unwrap()
}

pub const SECOND: Duration = Duration::from_secs(1);

/// Waits until `leasehold status` counts one client waiting for `name`.
pub fn one_client_waits(server: &RedisServer, name: &str) {
    eventually(5 * SECOND, "a client to wait", || {
        let o = output(leasehold(Some(server)).args(["status", name, "--json"]));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        v["data"]["waiting_clients"] == 1
    });
}
