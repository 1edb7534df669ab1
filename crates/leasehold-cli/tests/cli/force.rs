//! `release --force NAME --reason WHY`: an operator ends the lease of a
//! holder that is gone, whoever it is.

use std::process::Stdio;

use crate::common::*;

#[test]
fn force_ends_a_running_holders_lease_moves_the_fence_and_announces_why() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let holder = leasehold(Some(&server))
        .args(["run", "deploy", "--ttl", "900ms", "--", "sh", "-c"])
        .arg(format!("touch {}; sleep 30", ready.display()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(5 * SECOND, "the command to start", || ready.exists());
    let before = fence_counter(&server, "deploy");

    let mut listener = redis(&server);
    let mut pubsub = listener.as_pubsub();
    pubsub.subscribe("leasehold:forced").unwrap();
    pubsub.set_read_timeout(Some(5 * SECOND)).unwrap();

    let o = output(leasehold(Some(&server)).args([
        "release",
        "--force",
        "deploy",
        "--reason",
        "host \"web-3\" is dead",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stdout(&o);
    assert!(
        said.contains("by force") && said.contains("web-3"),
        "{said}"
    );
    assert!(!key_exists(&server, "deploy"), "the lease is still there");
    let after = fence_counter(&server, "deploy");
    assert!(after > before, "fence {after} did not move past {before}");

    // The reason is announced, as JSON, with the new fence.
    let message: String = pubsub.get_message().unwrap().get_payload().unwrap();
    let v: serde_json::Value = serde_json::from_str(&message).unwrap();
    assert_eq!(v["name"], "deploy", "{message}");
    assert_eq!(v["reason"], "host \"web-3\" is dead", "{message}");
    assert_eq!(v["fence"], after, "{message}");
    assert_eq!(v["holder"].as_str().unwrap().len(), 8, "{message}");

    // The holder finds out at its next renewal (ttl/3 = 300 ms) and stops
    // its command: exit 4.
    let mut holder = holder;
    let status = wait_within(&mut holder, 5 * SECOND);
    assert_eq!(status.code(), Some(4));
}

#[test]
fn force_with_json_reports_the_holder_and_fence() {
    let server = RedisServer::start().unwrap();
    let o = output(leasehold(Some(&server)).args(["acquire", "cron", "--ttl", "60s"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let token = stdout(&o).split_whitespace().next().unwrap().to_owned();
    let o = output(
        leasehold(Some(&server))
            .args(["release", "--force", "cron", "--reason", "stuck", "--json"]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["type"], "released");
    assert_eq!(v["data"]["forced"], true);
    assert_eq!(v["data"]["holder"], token[..8]);
    assert_eq!(v["data"]["fence"], fence_counter(&server, "cron"));
    assert_eq!(v["data"]["reason"], "stuck");
    // The old token holds nothing now.
    let o = output(leasehold(Some(&server)).args(["release", "cron", &token]));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

#[test]
fn force_on_a_free_name_exits_4_and_bad_uses_exit_2() {
    let server = RedisServer::start().unwrap();
    let err = one_line_error(
        &["release", "--force", "nobody", "--reason", "cleanup"],
        Some(&server),
        4,
    );
    assert!(err.contains("not held"), "{err}");
    // --force needs a reason, and takes no token.
    let o = output(leasehold(Some(&server)).args(["release", "--force", "x"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--reason"), "{}", stderr(&o));
    let o = output(leasehold(Some(&server)).args([
        "release",
        "--force",
        "x",
        "00112233445566778899aabbccddeeff",
        "--reason",
        "r",
    ]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // A semaphore's permits are not forced.
    let mut permit = leasehold(Some(&server))
        .args(["sem", "run", "pool", "--limit", "2", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    eventually(5 * SECOND, "the permit to be taken", || {
        key_exists(&server, "leasehold:{pool}:fence")
    });
    let err = one_line_error(
        &["release", "--force", "pool", "--reason", "r"],
        Some(&server),
        2,
    );
    assert!(err.contains("semaphore"), "{err}");
    permit.kill().unwrap();
    permit.wait().unwrap();
}
