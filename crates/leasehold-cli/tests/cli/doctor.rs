//! `leasehold doctor`: a healthy server passes; one that can evict or
//! lose leases warns with the fix; an ACL user lacking a command fails
//! naming it; `--json` is JSON Lines; a cluster's state is checked; and a
//! wrong password is never printed.

use std::process::Command;

use testkit::{ClusterOptions, RedisCluster, ServerOptions};

use crate::common::*;

fn admin(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Creates user `app` (password `s3cret-pw`) with `rule`'s words.
fn set_user(server: &RedisServer, rule: &str) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("app").arg("on").arg(">s3cret-pw");
    for word in rule.split_whitespace() {
        cmd.arg(word);
    }
    let () = cmd.query(&mut admin(server)).unwrap();
}

fn as_app(server: &RedisServer) -> Command {
    let mut cmd = leasehold(None);
    cmd.arg("--url")
        .arg(format!("redis://app:s3cret-pw@127.0.0.1:{}", server.port()));
    cmd
}

/// The keys of the server: the doctor must leave none behind.
fn keys(server: &RedisServer) -> Vec<String> {
    redis::cmd("KEYS")
        .arg("*")
        .query(&mut admin(server))
        .unwrap()
}

/// The line of the check `check` whose verdict is `verdict`, and the fix
/// under it (if any).
fn line_of<'a>(out: &'a str, verdict: &str, check: &str) -> Option<(&'a str, Option<&'a str>)> {
    let lines: Vec<&str> = out.lines().collect();
    lines.iter().enumerate().find_map(|(i, l)| {
        let mut words = l.split_whitespace();
        (words.next() == Some(verdict) && words.next() == Some(check)).then(|| {
            let fix = lines
                .get(i + 1)
                .and_then(|f| f.trim_start().strip_prefix("fix: "));
            (*l, fix)
        })
    })
}

#[test]
fn a_healthy_server_passes_every_check() {
    let server = RedisServer::start_with(ServerOptions {
        aof: true,
        maxmemory_policy: Some("noeviction".into()),
        ..Default::default()
    })
    .unwrap();
    let o = output(leasehold(Some(&server)).arg("doctor"));
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    for check in ["version", "role", "persistence", "eviction", "clock", "acl"] {
        assert!(line_of(&out, "ok", check).is_some(), "{check}: {out}");
    }
    assert!(!out.contains("warn ") && !out.contains("fail "), "{out}");
    assert!(out.contains("0 warning(s), 0 failed"), "{out}");
    assert!(
        line_of(&out, "ok", "acl")
            .unwrap()
            .0
            .contains("leasehold-doctor-")
    );
    assert_eq!(keys(&server), Vec::<String>::new(), "the probe left keys");
}

#[test]
fn an_evicting_server_without_persistence_warns_with_the_fix() {
    let server = RedisServer::start_with(ServerOptions {
        maxmemory: Some("64mb".into()),
        maxmemory_policy: Some("allkeys-lru".into()),
        ..Default::default()
    })
    .unwrap();
    let o = output(leasehold(Some(&server)).arg("doctor"));
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "warnings alone exit 0: {out}");
    let (line, fix) = line_of(&out, "warn", "eviction").expect("an eviction warning");
    assert!(line.contains("allkeys-lru"), "{line}");
    assert!(
        fix.unwrap().contains("maxmemory-policy noeviction"),
        "{out}"
    );
    let (line, fix) = line_of(&out, "warn", "persistence").expect("a persistence warning");
    assert!(line.contains("no persistence"), "{line}");
    assert!(fix.unwrap().contains("appendonly yes"), "{out}");
    assert!(out.contains("2 warning(s), 0 failed"), "{out}");
}

#[test]
fn a_user_without_evalsha_fails_the_acl_check_naming_it() {
    let server = RedisServer::start().unwrap();
    set_user(
        &server,
        &format!("{} -evalsha", leasehold::acl_rule("leasehold-doctor-")),
    );
    let o = output(as_app(&server).arg("doctor"));
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let (line, fix) = line_of(&out, "fail", "acl").expect("a failed acl check");
    assert!(line.contains("refused commands: evalsha"), "{line}");
    assert!(
        fix.unwrap().contains("ACL SETUSER <user> +evalsha"),
        "{out}"
    );
    // CONFIG GET is not in the rule: not checked, said so.
    let (line, fix) = line_of(&out, "warn", "persistence").unwrap();
    assert!(line.contains("not checked"), "{line}");
    assert!(fix.unwrap().contains("admin"), "{out}");
    assert!(!out.contains("s3cret-pw") && !err.contains("s3cret-pw"));
    assert_eq!(keys(&server), Vec::<String>::new(), "the probe left keys");

    // With the whole rule, the same user passes the ACL check.
    set_user(&server, "+evalsha");
    let o = output(as_app(&server).arg("doctor"));
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok    acl")).count(),
        2,
        "{out}"
    );

    // A name outside the user's namespace: the keys are refused.
    let o = output(as_app(&server).args(["doctor", "--name", "other/probe"]));
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let (line, _) = line_of(&out, "fail", "acl").unwrap();
    assert!(line.contains("a key"), "{line}");
}

#[test]
fn a_name_in_use_is_not_touched() {
    let server = RedisServer::start().unwrap();
    let () = redis::cmd("SET")
        .arg("busy")
        .arg("someone")
        .query(&mut admin(&server))
        .unwrap();
    let o = output(leasehold(Some(&server)).args(["doctor", "--name", "busy"]));
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        line_of(&out, "fail", "acl").unwrap().0.contains("in use"),
        "{out}"
    );
    let v: String = redis::cmd("GET")
        .arg("busy")
        .query(&mut admin(&server))
        .unwrap();
    assert_eq!(v, "someone");
}

#[test]
fn json_lines_are_a_check_per_line_then_the_summary() {
    let server = RedisServer::start_with(ServerOptions {
        maxmemory_policy: Some("allkeys-lru".into()),
        ..Default::default()
    })
    .unwrap();
    let o = output(leasehold(Some(&server)).args(["--json", "doctor"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let records: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (last, checks) = records.split_last().unwrap();
    assert_eq!(last["type"], "doctor");
    assert_eq!(last["data"]["exit_code"], 0);
    assert_eq!(last["data"]["fail"], 0);
    assert_eq!(last["data"]["warn"], 2);
    assert_eq!(
        last["data"]["ok"].as_u64().unwrap() as usize + 2,
        checks.len()
    );
    for c in checks {
        assert_eq!(c["type"], "check", "{c}");
        let d = &c["data"];
        assert!(
            ["ok", "warn", "fail"].contains(&d["verdict"].as_str().unwrap()),
            "{c}"
        );
        assert_eq!(d["fix"].is_null(), d["verdict"] == "ok", "{c}");
        assert!(
            d["server"]
                .as_str()
                .unwrap()
                .contains(&server.port().to_string())
        );
    }
    let eviction = checks
        .iter()
        .find(|c| c["data"]["check"] == "eviction")
        .unwrap();
    assert_eq!(eviction["data"]["verdict"], "warn");
}

#[test]
fn a_cluster_is_checked_master_by_master() {
    let cluster = RedisCluster::start_with(ClusterOptions {
        masters: 3,
        replicas_per_master: 0,
        ..Default::default()
    })
    .expect("start a 3-master redis cluster");
    let seed = cluster.seeds()[0].clone();
    let o = output(leasehold(None).args([
        "--cluster",
        "--url",
        &seed,
        "--connect-timeout",
        "20s",
        "doctor",
    ]));
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    let clusters: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("ok    cluster"))
        .collect();
    assert_eq!(clusters.len(), 3, "{out}");
    assert!(clusters[0].contains("all 16384 slots"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok    acl")).count(),
        2,
        "{out}"
    );
    // A user restricted by the rule: the ACL checks pass; the cluster's
    // state (CLUSTER INFO, an admin command) is not checked, and said so.
    let mut setuser = vec!["ACL", "SETUSER", "app", "on", ">s3cret-pw"];
    let rule = leasehold::acl_rule("jobs/");
    setuser.extend(rule.split(' '));
    for node in 0..cluster.nodes().len() {
        cluster.call(node, &setuser).unwrap();
    }
    let as_app = seed.replace("redis://", "redis://app:s3cret-pw@");
    let o = output(leasehold(None).args([
        "--cluster",
        "--url",
        &as_app,
        "--connect-timeout",
        "20s",
        "doctor",
        "--name",
        "jobs/doctor",
    ]));
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok    acl")).count(),
        2,
        "{out}"
    );
    let (line, _) = line_of(&out, "warn", "cluster").expect("cluster not checked");
    assert!(line.contains("not checked"), "{line}");
    for m in cluster.masters() {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(
                &mut redis::Client::open(cluster.node(m).url())
                    .unwrap()
                    .get_connection()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(keys, Vec::<String>::new(), "master {m}");
    }
}

#[test]
fn a_wrong_password_is_never_printed() {
    let server = RedisServer::start().unwrap();
    set_user(&server, &leasehold::acl_rule(""));
    for args in [&["status", "x"][..], &["doctor"]] {
        let mut cmd = leasehold(None);
        cmd.arg("--url")
            .arg(format!("redis://app:secret@127.0.0.1:{}", server.port()))
            .args(args);
        let err = refused(&mut cmd, 5);
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("user and password"), "{err}");
    }
}

#[test]
fn redlock_masters_are_checked_each_and_their_clocks_together() {
    let masters = RedisServer::start_many(3).expect("start 3 redis-servers");
    let mut cmd = leasehold(None);
    for m in &masters {
        cmd.arg("--url").arg(m.url());
    }
    let o = output(cmd.arg("doctor"));
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    for m in &masters {
        let at = format!("127.0.0.1:{}", m.port());
        for check in ["version", "clock", "acl"] {
            assert!(
                out.lines()
                    .any(|l| l.starts_with("ok") && l.contains(check) && l.contains(&at)),
                "{check} of {at}: {out}"
            );
        }
        assert!(
            out.lines()
                .any(|l| l.starts_with("warn  persistence") && l.contains(&at)),
            "{out}"
        );
    }
    assert!(out.contains("the masters' clocks are within"), "{out}");
    assert!(
        out.contains("took and gave back a lease and a semaphore"),
        "{out}"
    );
    for m in &masters {
        assert_eq!(keys(m), Vec::<String>::new());
    }
}

#[test]
fn a_user_without_exists_is_not_probed_at_all() {
    let server = RedisServer::start().unwrap();
    set_user(&server, &format!("{} -exists", leasehold::acl_rule("")));
    let () = redis::cmd("SET")
        .arg("busy")
        .arg("someone")
        .query(&mut admin(&server))
        .unwrap();
    let o = output(as_app(&server).args(["doctor", "--name", "busy"]));
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let (line, fix) = line_of(&out, "fail", "acl").unwrap();
    assert!(
        line.contains("exists") && line.contains("not probing"),
        "{line}"
    );
    assert!(fix.unwrap().contains("+exists"), "{out}");
    let v: String = redis::cmd("GET")
        .arg("busy")
        .query(&mut admin(&server))
        .unwrap();
    assert_eq!(v, "someone", "the name in use was left alone");
}
