//! `--replicas N`: a command runs only once N replicas acknowledged its
//! lease (WAIT), against a master with a real replica.

use crate::common::*;

/// A master and one replica of it, the replica streaming.
fn master_and_replica() -> (RedisServer, RedisServer) {
    let master = RedisServer::start().expect("start the master");
    let replica = RedisServer::start_replica_of(&master).expect("start the replica");
    (master, replica)
}

#[test]
fn run_waits_for_the_replica_and_refuses_when_it_does_not_answer() {
    let (master, replica) = master_and_replica();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let o = output(
        leasehold(Some(&master))
            .args(["--replicas", "1", "--replicas-timeout", "5s"])
            .args(["run", "jobs/a", "--", "touch"])
            .arg(&ran),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(exists(&ran));

    // A frozen replica acknowledges nothing: exit 5, the command never
    // ran, and the lease was given back.
    replica.pause();
    let skipped = dir.path().join("skipped");
    let err = refused(
        leasehold(Some(&master))
            .args(["--replicas", "1", "--replicas-timeout", "200ms"])
            .args(["run", "jobs/b", "--", "touch"])
            .arg(&skipped),
        5,
    );
    replica.resume();
    assert!(err.contains("0 of the 1 replicas"), "{err}");
    assert!(
        !exists(&skipped),
        "the command ran without the replica's acknowledgement"
    );
    assert!(!key_exists(&master, "jobs/b"), "the lease was left behind");
}

#[test]
fn replicas_timeout_alone_is_a_usage_error() {
    let err = one_line_error(&["--replicas-timeout", "1s", "status", "x"], None, 2);
    assert!(err.contains("--replicas"), "{err}");
}
