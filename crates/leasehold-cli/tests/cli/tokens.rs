//! `acquire`, `extend`, `release` from the shell side.

use std::time::Duration;

use crate::common::*;

#[test]
fn acquire_extend_release_round_trip() {
    let server = RedisServer::start().unwrap();
    let o = output(leasehold(Some(&server)).args(["acquire", "deploy", "--ttl", "5s"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut it = out.split_whitespace();
    let (token, fence) = (it.next().unwrap().to_string(), it.next().unwrap());
    assert_eq!(token.len(), 32);
    assert_eq!(fence, fence_counter(&server, "deploy").to_string());

    let mut conn = redis(&server);
    let pttl: i64 = redis::cmd("PTTL").arg("deploy").query(&mut conn).unwrap();
    assert!(
        pttl > 0 && pttl <= 5_000,
        "the lease keeps its TTL after acquire exits: {pttl}"
    );

    // Held: a second acquire without waiting gets 3.
    let o = output(leasehold(Some(&server)).args(["acquire", "deploy", "--no-wait"]));
    assert_eq!(o.status.code(), Some(3));

    let o = output(leasehold(Some(&server)).args(["extend", "deploy", &token, "--ttl", "60s"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let pttl: i64 = redis::cmd("PTTL").arg("deploy").query(&mut conn).unwrap();
    assert!(pttl > 50_000, "extended: {pttl}");

    // A wrong token is refused and leaves the lease.
    let wrong = "00112233445566778899aabbccddeeff";
    let o = output(leasehold(Some(&server)).args(["release", "deploy", wrong]));
    assert_eq!(o.status.code(), Some(4));
    let held: Option<String> = redis::cmd("GET").arg("deploy").query(&mut conn).unwrap();
    assert_eq!(held.as_deref(), Some(token.as_str()));
    let o = output(leasehold(Some(&server)).args(["extend", "deploy", wrong]));
    assert_eq!(o.status.code(), Some(4));

    let o = output(leasehold(Some(&server)).args(["release", "deploy", &token]));
    assert!(o.status.success(), "{}", stderr(&o));
    let held: Option<String> = redis::cmd("GET").arg("deploy").query(&mut conn).unwrap();
    assert_eq!(held, None);
}

#[test]
fn acquire_json_gives_token_and_fence() {
    let server = RedisServer::start().unwrap();
    let o = output(leasehold(Some(&server)).args(["acquire", "j", "--json"]));
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["type"], "acquired");
    assert_eq!(v["data"]["fence"], fence_counter(&server, "j"));
    assert_eq!(v["data"]["token"].as_str().unwrap().len(), 32);
}

#[test]
fn sigint_while_acquire_waits_exits_130_and_takes_nothing() {
    let server = RedisServer::start().unwrap();
    let o = output(leasehold(Some(&server)).args(["acquire", "busy", "--ttl", "20s"]));
    let holder = stdout(&o).split_whitespace().next().unwrap().to_string();
    let mut waiter = leasehold(Some(&server))
        .args(["acquire", "busy", "--wait", "30s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    one_client_waits(&server, "busy");
    signal(&waiter, libc::SIGINT);
    let status = wait_within(&mut waiter, 5 * SECOND);
    assert_eq!(status.code(), Some(130));
    let o = waiter.wait_with_output().unwrap();
    assert!(o.stdout.is_empty(), "it printed a token: {}", stdout(&o));
    let held: Option<String> = redis::cmd("GET")
        .arg("busy")
        .query(&mut redis(&server))
        .unwrap();
    assert_eq!(held.as_deref(), Some(holder.as_str()));
}

/// SIGINT while an attempt of the waiting acquire is out, and has taken
/// the lease in Redis: the process releases it before it exits (stopping
/// its runtime would drop the release), so the name is free, not held by
/// a token nobody has for its ttl.
#[test]
fn sigint_while_an_attempt_is_out_leaves_the_name_free() {
    let server = RedisServer::start().unwrap();
    let proxy = testkit::FaultProxy::start(server.port()).unwrap();
    let o = output(leasehold(Some(&server)).args(["acquire", "brief", "--ttl", "60s"]));
    let holder = stdout(&o).split_whitespace().next().unwrap().to_string();
    let mut waiter = leasehold(None)
        .args(["--url", &proxy.url()])
        .args(["acquire", "brief", "--wait", "30s", "--ttl", "60s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    one_client_waits(&server, "brief");
    // Redis runs the waiter's commands at once; their replies come late,
    // each (a new connection's handshake too) 500 ms, which leaves the
    // release time to go out within the 2 s the process gives it.
    proxy.delay_replies(Duration::from_millis(500));
    // The holder lets go: the waiter hears of it and its attempt takes it.
    let o = output(leasehold(Some(&server)).args(["release", "brief", &holder]));
    assert!(o.status.success(), "{}", stderr(&o));
    let mut conn = redis(&server);
    eventually(5 * SECOND, "the waiter's attempt to take the lease", || {
        let held: Option<String> = redis::cmd("GET").arg("brief").query(&mut conn).unwrap();
        held.is_some()
    });
    signal(&waiter, libc::SIGINT);
    let status = wait_within(&mut waiter, 10 * SECOND);
    assert_eq!(status.code(), Some(130));
    let o = waiter.wait_with_output().unwrap();
    assert!(o.stdout.is_empty(), "it printed a token: {}", stdout(&o));
    let held: Option<String> = redis::cmd("GET").arg("brief").query(&mut conn).unwrap();
    assert_eq!(held, None, "the interrupted acquire left the lease held");
}

#[test]
fn acquire_no_wait_on_a_held_name_exits_3_with_one_line() {
    let server = RedisServer::start().unwrap();
    output(leasehold(Some(&server)).args(["acquire", "taken", "--ttl", "20s"]));
    let o = output(leasehold(Some(&server)).args(["acquire", "taken", "--no-wait", "--json"]));
    assert_eq!(o.status.code(), Some(3));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with("leasehold: ") && err.lines().count() == 1,
        "{err}"
    );
    assert!(err.contains("held by someone else"), "{err}");
}
