//! The Sentinel deployment: start-up, a graceful failover and a crash.

use std::time::Instant;

use testkit::{RedisSentinel, Reply};

fn role(sentinel: &RedisSentinel, server: usize) -> String {
    sentinel
        .call(server, &["ROLE"])
        .unwrap()
        .as_array()
        .unwrap()[0]
        .as_text()
        .unwrap()
}

#[test]
fn starts_with_every_sentinel_naming_the_master() {
    let sentinel = RedisSentinel::start().unwrap();
    assert_eq!(sentinel.master(), 0);
    assert_eq!(role(&sentinel, 0), "master");
    assert_eq!(role(&sentinel, 1), "slave");
    for i in 0..3 {
        let reply = sentinel
            .call_sentinel(i, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "leasehold"])
            .unwrap();
        assert_eq!(
            reply.as_array().unwrap()[1].as_text(),
            Some(sentinel.master_port().to_string())
        );
    }
    let url = sentinel.url();
    assert!(url.starts_with("redis+sentinel://127.0.0.1:"), "{url}");
    assert!(url.ends_with("/leasehold"), "{url}");
    assert_eq!(url.matches(',').count(), 2, "{url}");
}

#[test]
fn a_failover_swaps_master_and_replica_and_keeps_the_data() {
    let mut sentinel = RedisSentinel::start().unwrap();
    let old = sentinel.master_port();
    assert_eq!(
        sentinel.call(0, &["SET", "k", "v"]).unwrap(),
        Reply::Status("OK".into())
    );
    let started = Instant::now();
    let new = sentinel.failover().unwrap();
    eprintln!("failover took {:?}", started.elapsed());
    assert_ne!(new, old);
    assert_eq!(sentinel.master(), 1);
    assert_eq!(role(&sentinel, 1), "master");
    assert_eq!(role(&sentinel, 0), "slave");
    // Replicated before the failover: still there.
    assert_eq!(
        sentinel.call(1, &["GET", "k"]).unwrap().as_text(),
        Some("v".into())
    );
    // The old master refuses writes now.
    let refused = sentinel.call(0, &["SET", "k", "w"]).unwrap();
    assert!(
        refused
            .as_error()
            .is_some_and(|e| e.starts_with("READONLY")),
        "{refused}"
    );
    // And back.
    assert_eq!(sentinel.failover().unwrap(), old);
    assert_eq!(role(&sentinel, 0), "master");
}

#[test]
fn a_killed_master_is_replaced_and_rejoins_as_a_replica() {
    let mut sentinel = RedisSentinel::start().unwrap();
    let old = sentinel.master_port();
    let started = Instant::now();
    let new = sentinel.kill_master().unwrap();
    eprintln!("crash failover took {:?}", started.elapsed());
    assert_ne!(new, old);
    assert_eq!(role(&sentinel, 0), "slave");
    assert_eq!(role(&sentinel, 1), "master");
}
