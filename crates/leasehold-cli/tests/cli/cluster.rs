//! Redis Cluster from the command line: `--cluster` with its seeds (or
//! `LEASEHOLD_URL` + `LEASEHOLD_CLUSTER`), the forms refused before
//! anything connects, and every command on a real 3-master cluster.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use testkit::{ClusterOptions, RedisCluster};

use crate::common::*;

/// Three loopback masters, no replica, the slots split between them.
fn start_cluster() -> RedisCluster {
    RedisCluster::start_with(ClusterOptions {
        masters: 3,
        replicas_per_master: 0,
        ..Default::default()
    })
    .expect("start a 3-master redis cluster")
}

/// Several names, whose slots fall on each of the three masters (checked
/// below), so that `list` has to walk every master.
const NAMES: [&str; 6] = ["jobs/a", "jobs/b", "jobs/c", "jobs/d", "jobs/e", "jobs/f"];

/// The one JSON record a successful command printed.
fn json(cmd: &mut Command) -> serde_json::Value {
    let o = output(cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

#[test]
fn every_command_works_on_a_three_master_cluster() {
    let cluster = start_cluster();
    let seed = cluster.seeds()[0].clone();
    let cli = || {
        let mut cmd = leasehold(None);
        cmd.args(["--cluster", "--url", &seed, "--connect-timeout", "20s"]);
        cmd
    };

    // acquire: token and fence, each name in its own slot.
    let mut held = BTreeMap::new();
    for name in NAMES {
        let v = json(cli().args(["acquire", name, "--ttl", "60s", "--json"]));
        assert_eq!(v["type"], "acquired", "{v}");
        let token = v["data"]["token"].as_str().unwrap().to_owned();
        assert_eq!(token.len(), 32, "{v}");
        held.insert(name, (token, v["data"]["fence"].as_u64().unwrap()));
    }
    // The names landed on every master, not just the seed.
    for node in cluster.nodes() {
        let keys: u64 = redis::cmd("DBSIZE")
            .query(&mut redis(node.server()))
            .unwrap();
        assert!(keys > 0, "no name on the master at {}", node.url());
    }

    // A second acquire sees each held: exit 3, at once with --no-wait.
    for name in NAMES {
        let o = output(cli().args(["acquire", name, "--no-wait"]));
        assert_eq!(o.status.code(), Some(3), "{name}: {}", stderr(&o));
    }

    // status: held by its token, with its fence.
    for (name, (token, fence)) in &held {
        let v = json(cli().args(["status", name, "--json"]));
        assert_eq!(v["data"]["held"], true, "{v}");
        assert_eq!(v["data"]["holder"], &token[..8], "{v}");
        assert_eq!(v["data"]["fence"], *fence, "{v}");
    }

    // list: every master's names, merged; also from the environment's
    // form, with every node as a seed.
    let listed = |cmd: &mut Command| {
        let o = output(cmd);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut names: Vec<String> = stdout(&o)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["data"]["held"], true, "{v}");
                v["data"]["name"].as_str().unwrap().to_owned()
            })
            .collect();
        names.sort();
        names
    };
    assert_eq!(listed(cli().args(["list", "jobs/*", "--json"])), NAMES);
    let seeds: Vec<String> = cluster.seeds();
    assert_eq!(
        listed(
            leasehold(None)
                .env("LEASEHOLD_URL", seeds.join(","))
                .env("LEASEHOLD_CLUSTER", "1")
                .args(["list", "jobs/*", "--json"])
        ),
        NAMES
    );

    // One seed that answers is enough: a dead one before it is passed by.
    let dead = format!("redis://127.0.0.1:{}", closed_port());
    let o = output(leasehold(None).args([
        "--cluster",
        "--url",
        &dead,
        "--url",
        &seed,
        "--connect-timeout",
        "20s",
        "status",
        "jobs/b",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("held"), "{}", stdout(&o));

    // extend and release by token; then the name is free.
    let (token, _) = &held["jobs/a"];
    let o = output(cli().args(["extend", "jobs/a", token, "--ttl", "90s"]));
    assert!(o.status.success(), "{}", stderr(&o));
    for (name, (token, _)) in &held {
        let o = output(cli().args(["release", name, token]));
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let v = json(cli().args(["status", name, "--json"]));
        assert_eq!(v["data"]["held"], false, "{v}");
    }

    // run and sem run: the command ran under the lease, with a newer fence.
    for (name, (_, fence)) in &held {
        let v = json(cli().args(["run", name, "--json", "--", "true"]));
        assert_eq!(v["type"], "run", "{v}");
        assert_eq!(v["data"]["exit_code"], 0, "{v}");
        assert!(v["data"]["fence"].as_u64().unwrap() > *fence, "{v}");
    }
    let o = output(cli().args([
        "sem", "run", "pool", "--limit", "2", "--", "sh", "-c", "exit 7",
    ]));
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
}

/// Two addresses where nobody listens: a refusal is exit 2, not an
/// unreachable Redis (5), so nothing tried to connect.
fn nowhere() -> (String, String) {
    (
        format!("redis://127.0.0.1:{}", closed_port()),
        format!("redis://127.0.0.1:{}", closed_port()),
    )
}

#[test]
fn cluster_without_a_url_is_refused() {
    let err = one_line_error(&["--cluster", "status", "x"], None, 2);
    assert!(
        err.contains("--cluster needs the URL of at least one node"),
        "{err}"
    );
    let err = refused(
        leasehold(None)
            .env("LEASEHOLD_CLUSTER", "yes")
            .args(["list"]),
        2,
    );
    assert!(
        err.contains("LEASEHOLD_CLUSTER needs the URL of at least one node"),
        "{err}"
    );
    let (a, _) = nowhere();
    let err = refused(
        leasehold(None)
            .env("LEASEHOLD_CLUSTER", "maybe")
            .args(["--url", &a, "status", "x"]),
        2,
    );
    assert!(err.contains("LEASEHOLD_CLUSTER=`maybe`"), "{err}");
}

#[test]
fn a_bad_seed_is_named_and_its_password_is_not() {
    let (a, b) = nowhere();
    let err = one_line_error(
        &[
            "--cluster",
            "--url",
            &a,
            "--url",
            "http://nowhere:1",
            "--url",
            &b,
            "status",
            "x",
        ],
        None,
        2,
    );
    assert!(err.contains("`http://nowhere:1` (in --url)"), "{err}");
    assert!(!err.contains(&a) && !err.contains(&b), "{err}");
    let err = one_line_error(
        &[
            "--cluster",
            "--url",
            &a,
            "--url",
            "redis://u:secret@",
            "status",
            "x",
        ],
        None,
        2,
    );
    assert!(err.contains("`redis://***@`"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    let err = refused(
        leasehold(None)
            .env("LEASEHOLD_URL", format!("{a},unix:///tmp/redis.sock"))
            .env("LEASEHOLD_CLUSTER", "1")
            .args(["status", "x"]),
        2,
    );
    assert!(
        err.contains("`unix:///tmp/redis.sock` (in LEASEHOLD_URL)") && err.contains("TCP"),
        "{err}"
    );
}

#[test]
fn url_on_both_sides_of_the_subcommand_is_refused() {
    // clap would keep only the later ones: a seed dropped unseen.
    let (a, b) = nowhere();
    let err = one_line_error(
        &["--cluster", "--url", &a, "status", "x", "--url", &b],
        None,
        2,
    );
    assert!(
        err.contains("both before and after the subcommand"),
        "{err}"
    );
}

#[test]
fn bench_takes_w6s_cluster_once() {
    let (a, b) = nowhere();
    let err = one_line_error(
        &["--cluster", "--url", &a, "bench", "W6", "--cluster-url", &b],
        None,
        2,
    );
    assert!(err.contains("give W6's cluster once"), "{err}");
}

#[test]
fn help_tells_how_to_reach_a_cluster() {
    let o = output(leasehold(None).arg("--help"));
    assert!(o.status.success());
    let text = stdout(&o);
    for needle in [
        "--cluster",
        "leasehold --cluster --url redis://",
        "LEASEHOLD_CLUSTER=1",
        "separated by commas",
        "Redlock",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}: {text}");
    }
}

#[test]
fn a_failing_cluster_is_blamed_not_the_url() {
    // The single-server hint points at the URL; on a cluster whose nodes
    // stop answering (paused, failing over) the seeds are fine, and the
    // message says where to look instead.
    let mut cluster = start_cluster();
    let seeds = cluster.seeds();
    let cli = || {
        let mut cmd = leasehold(None);
        cmd.env("LEASEHOLD_URL", seeds.join(","))
            .env("LEASEHOLD_CLUSTER", "1");
        cmd
    };
    let blames_the_cluster = |err: &str| {
        assert!(
            err.contains("Redis Cluster") || err.contains("cluster is"),
            "{err}"
        );
        assert!(err.contains("CLUSTER INFO"), "{err}");
        assert!(!err.contains("the URL (--url"), "{err}");
    };

    // Every node paused: no answer within the connect timeout.
    let nodes: Vec<usize> = (0..cluster.nodes().len()).collect();
    for &node in &nodes {
        cluster.pause(node);
    }
    let err = refused(
        cli().args([
            "--connect-timeout",
            "1s",
            "acquire",
            "jobs/a",
            "--wait",
            "2s",
        ]),
        5,
    );
    for &node in &nodes {
        cluster.resume(node);
    }
    blames_the_cluster(&err);

    // A master gone without a replica: once the others mark it failed, the
    // cluster refuses every command with CLUSTERDOWN.
    let gone = cluster.masters()[2];
    let _ = cluster.call(gone, &["SHUTDOWN", "NOSAVE"]);
    let survivor = cluster.masters()[0];
    eventually(Duration::from_secs(30), "cluster_state:fail", || {
        matches!(
            cluster.call(survivor, &["CLUSTER", "INFO"]),
            Ok(testkit::Reply::Bulk(Some(info)))
                if String::from_utf8_lossy(&info).contains("cluster_state:fail")
        )
    });
    let err = refused(
        cli().args(["--connect-timeout", "20s", "acquire", "jobs/a", "--no-wait"]),
        5,
    );
    assert!(
        err.contains("ClusterDown") || err.contains("CLUSTERDOWN"),
        "{err}"
    );
    blames_the_cluster(&err);

    // One server keeps its own hint.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let err = one_line_error(
        &["--url", &url, "--connect-timeout", "300ms", "acquire", "x"],
        None,
        5,
    );
    assert!(err.contains("check that the server runs there"), "{err}");
    assert!(!err.contains("CLUSTER INFO"), "{err}");
}
