//! Running the built binary, and waiting with a deadline.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use testkit::RedisServer;

/// The `leasehold` binary, with no address from the environment.
pub fn leasehold(server: Option<&RedisServer>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leasehold"));
    cmd.env_remove("LEASEHOLD_URL").env_remove("REDIS_URL");
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

/// Polls `cond` every 10 ms until it holds; fails after `within`.
pub fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A synchronous connection for looking behind the binary's back.
pub fn redis(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

pub const SECOND: Duration = Duration::from_secs(1);
