//! Redlock from the command line: several `--url` (or `LEASEHOLD_URL` with
//! commas) without `--cluster` are independent masters.

use std::process::Command;

use crate::common::*;

fn masters(n: usize) -> Vec<RedisServer> {
    RedisServer::start_many(n).expect("start redis-server (apt-get install redis-server)")
}

/// `leasehold --url A --url B --url C ...`
fn cli(servers: &[RedisServer]) -> Command {
    let mut cmd = leasehold(None);
    for s in servers {
        cmd.arg("--url").arg(s.url());
    }
    cmd
}

/// The one JSON record a successful command printed.
fn json(cmd: &mut Command) -> serde_json::Value {
    let o = output(cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

#[test]
fn several_urls_are_redlock_masters() {
    let servers = masters(3);
    // acquire takes it on every master.
    let v = json(cli(&servers).args(["acquire", "nightly", "--ttl", "60s", "--json"]));
    assert_eq!(v["type"], "acquired", "{v}");
    let token = v["data"]["token"].as_str().unwrap().to_owned();
    let fence = v["data"]["fence"].as_u64().unwrap();
    for s in &servers {
        assert!(key_exists(s, "nightly"), "not on the master at {}", s.url());
    }
    // status: held on 3 of 3, 2 needed.
    let v = json(cli(&servers).args(["status", "nightly", "--json"]));
    let m = &v["data"]["masters"];
    assert_eq!(
        (m["total"].as_u64(), m["needed"].as_u64()),
        (Some(3), Some(2)),
        "{v}"
    );
    assert_eq!(m["holding"][0]["masters"], 3, "{v}");
    assert_eq!(v["data"]["holder"].as_str(), Some(&token[..8]), "{v}");
    let o = output(cli(&servers).args(["status", "nightly"]));
    assert!(
        stdout(&o).contains("held on 3 of 3 masters"),
        "{}",
        stdout(&o)
    );
    // Held: exit 3 at once with --no-wait.
    let o = output(cli(&servers).args(["run", "nightly", "--no-wait", "--", "true"]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // Released on every master; run takes it with a higher fence.
    let o = output(cli(&servers).args(["release", "nightly", &token]));
    assert!(o.status.success(), "{}", stderr(&o));
    for s in &servers {
        assert!(!key_exists(s, "nightly"), "left on {}", s.url());
    }
    let o =
        output(cli(&servers).args(["run", "nightly", "--", "sh", "-c", "echo $LEASEHOLD_FENCE"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let run_fence: u64 = stdout(&o).trim().parse().unwrap();
    assert!(run_fence > fence, "{run_fence} after {fence}");

    // LEASEHOLD_URL with commas is the same.
    let listed = servers
        .iter()
        .map(|s| s.url())
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = leasehold(None);
    cmd.env("LEASEHOLD_URL", listed)
        .args(["status", "nightly", "--json"]);
    let v = json(&mut cmd);
    assert_eq!(v["data"]["masters"]["total"], 3, "{v}");
}

#[test]
fn what_redlock_cannot_do_is_refused_before_anything_runs() {
    let servers = masters(3);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let m = marker.to_str().unwrap();
    for args in [
        &["run", "printer", "--fair", "--", "touch", m][..],
        &[
            "sem", "run", "pool", "--limit", "2", "--fair", "--", "touch", m,
        ],
    ] {
        let err = refused(cli(&servers).args(args), 2);
        assert!(err.contains("is not available on Redlock"), "{err}");
    }
    assert!(!marker.exists(), "the command ran");
    for s in &servers {
        let keys: u64 = redis::cmd("DBSIZE").query(&mut redis(s)).unwrap();
        assert_eq!(keys, 0, "left keys on {}", s.url());
    }
    let err = refused(cli(&servers).arg("demo"), 2);
    assert!(err.contains("demo"), "{err}");
}

#[test]
fn too_few_masters_is_exit_5_naming_each() {
    let servers = masters(1);
    let (a, b) = (
        format!("redis://127.0.0.1:{}", closed_port()),
        format!("redis://127.0.0.1:{}", closed_port()),
    );
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let mut cmd = leasehold(None);
    cmd.args(["--url", &servers[0].url(), "--url", &a, "--url", &b])
        .args(["--connect-timeout", "2s", "run", "x", "--", "touch"])
        .arg(&marker);
    let o = output(&mut cmd);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(
        err.contains("Redlock quorum not reached: 1 of the masters did the connect, 2 needed"),
        "{err}"
    );
    assert!(err.contains(&a[8..]) && err.contains(&b[8..]), "{err}");
    assert!(!marker.exists(), "the command ran");
}
