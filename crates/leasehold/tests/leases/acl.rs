//! Redis ACL users: one restricted by exactly the documented rule
//! (`leasehold::acl_rule`) does everything; one lacking part of it gets an
//! error that names what is missing; the user and password come from the
//! URL, and a wrong password is never printed.

use std::time::Duration;

use leasehold::{Client, ErrorKind};
use testkit::RedisServer;

use crate::common::*;

/// Creates the ACL user `name` with password `pass` and the rule `rule`
/// (its words), through the default user.
async fn set_user(server: &RedisServer, name: &str, pass: &str, rule: &str) {
    let mut admin = raw(server).await;
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER")
        .arg(name)
        .arg("on")
        .arg(format!(">{pass}"));
    for word in rule.split_whitespace() {
        cmd.arg(word);
    }
    let () = cmd.query_async(&mut admin).await.unwrap();
}

/// The URL of `server` as the user `name`.
fn url_as(server: &RedisServer, name: &str, pass: &str) -> String {
    format!("redis://{name}:{pass}@127.0.0.1:{}", server.port())
}

/// A server with the user `app` restricted to the rule for names under
/// `acl/` plus `extra`, and a client connected as that user.
async fn restricted(extra: &str) -> (RedisServer, Client) {
    let server = RedisServer::start().expect("start redis-server");
    let rule = format!("{} {extra}", leasehold::acl_rule("acl/"));
    set_user(&server, "app", "s3cret-pw", &rule).await;
    let client = Client::connect(&url_as(&server, "app", "s3cret-pw"))
        .await
        .expect("connect as the ACL user");
    (server, client)
}

/// What ACL refused to anyone, from `ACL LOG` (identical entries are
/// counted in one).
async fn refusals(server: &RedisServer) -> Vec<String> {
    let mut admin = raw(server).await;
    let log: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(&mut admin)
        .await
        .unwrap();
    log.iter()
        .map(|entry| {
            let s = |k: &str| match entry.get(k) {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            };
            format!("{} {} by {}", s("reason"), s("object"), s("username"))
        })
        .collect()
}

#[tokio::test]
async fn a_user_restricted_by_the_documented_rule_does_everything() {
    let extra = leasehold::ACL_TRANSACTION_COMMANDS
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let (server, client) = restricted(&extra).await;
    let other = Client::connect(&url_as(&server, "app", "s3cret-pw"))
        .await
        .unwrap();

    // Plain leases, in each of the three forms of companion keys.
    for name in ["acl/plain", "acl/{tag}x", "acl/x}y"] {
        let guard = client.lease(name).acquire().await.unwrap();
        assert!(guard.fence() > 0, "{name}");
        guard.extend().await.unwrap();
        guard.release().await.unwrap();
    }

    // A waiter, subscribed to the wake channel, woken by the release.
    let guard = client
        .lease("acl/woken")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .unwrap();
    let waiter = tokio::spawn(async move {
        other
            .lease("acl/woken")
            .wait(Duration::from_secs(20))
            .acquire()
            .await
            .map(|g| g.fence())
    });
    eventually(
        Duration::from_secs(10),
        "the waiter's subscription",
        || async { client.status("acl/woken").await.unwrap().waiting_clients == 1 },
    )
    .await;
    let held = guard.fence();
    guard.release().await.unwrap();
    let fence = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter is woken")
        .unwrap()
        .unwrap();
    assert!(fence > held);

    // After SCRIPT FLUSH the scripts go whole (EVAL) once more.
    let mut admin = raw(&server).await;
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap();
    take_and_give_back(&client.lease("acl/plain")).await;

    // A fair lease, a semaphore (fair too), a read-write lock.
    take_and_give_back(&client.lease("acl/fair").fair(true)).await;
    let sem = client.semaphore("acl/sem", 2);
    let (a, b) = (sem.acquire().await.unwrap(), sem.acquire().await.unwrap());
    assert!(sem.try_acquire().await.unwrap_err().is_held());
    a.release().await.unwrap();
    b.release().await.unwrap();
    take_and_give_back_sem(&client.semaphore("acl/fairsem", 1).fair(true)).await;
    let rw = client.rwlock("acl/rw");
    let (r1, r2) = (
        rw.read().acquire().await.unwrap(),
        rw.read().acquire().await.unwrap(),
    );
    r1.release().await.unwrap();
    r2.release().await.unwrap();
    rw.write().acquire().await.unwrap().release().await.unwrap();

    // Status and list.
    let listed = client.list("acl/*").await.unwrap();
    for name in ["acl/plain", "acl/{tag}x", "acl/x}y", "acl/sem", "acl/rw"] {
        assert!(
            listed.iter().any(|s| s.name == name.as_bytes()),
            "{name} listed"
        );
    }
    assert!(!client.status("acl/plain").await.unwrap().is_held());

    // A transaction on a data key of the namespace.
    let committed = client
        .optimistic(["acl/stock"])
        .run(async |tx| {
            let n: Option<i64> = tx.get("acl/stock").await?;
            tx.queue(
                redis::cmd("SET")
                    .arg("acl/stock")
                    .arg(n.unwrap_or(0) + 1)
                    .clone(),
            );
            Ok::<_, leasehold::Error>(())
        })
        .await
        .unwrap();
    assert_eq!(committed.attempts, 1);
    assert_eq!(get(&mut admin, "acl/stock").await.as_deref(), Some("1"));

    // The one refusal: the settings check at connect (CONFIG GET, which
    // the rule leaves out), once per client.
    assert_eq!(
        refusals(&server).await,
        ["command config|get by app"],
        "nothing else was refused"
    );
}

async fn take_and_give_back_sem(sem: &leasehold::Semaphore) {
    sem.acquire().await.unwrap().release().await.unwrap();
}

#[tokio::test]
async fn a_user_without_evalsha_is_told_which_command_is_missing() {
    let (_server, client) = restricted("-evalsha").await;
    let err = client.lease("acl/job").try_acquire().await.unwrap_err();
    assert!(err.is_permission_denied(), "{err:?}");
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("'evalsha'"), "{text}");
    assert!(
        text.contains("acl_rule") && text.contains("Redis ACL"),
        "{text}"
    );
    assert!(!text.contains("s3cret-pw"), "{text}");
}

#[tokio::test]
async fn a_script_whose_command_is_refused_says_so() {
    // The acquire script reads the server's clock for the fence floor.
    let (_server, client) = restricted("-time").await;
    let err = client.lease("acl/job").try_acquire().await.unwrap_err();
    assert!(err.is_permission_denied(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("the acquire script"), "{text}");
    assert!(text.contains("run by the script"), "{text}");
    assert!(text.contains("acl_rule"), "{text}");
}

#[tokio::test]
async fn a_name_outside_the_rule_is_a_refused_key() {
    let (_server, client) = restricted("").await;
    let err = client.lease("other/job").try_acquire().await.unwrap_err();
    assert!(err.is_permission_denied(), "{err:?}");
    assert!(err.to_string().contains("lacks a key"), "{err}");
    // Inside the namespace all is well.
    take_and_give_back(&client.lease("acl/job")).await;
}

#[tokio::test]
async fn a_user_without_the_wake_channels_cannot_release() {
    let server = RedisServer::start().expect("start redis-server");
    let rule: String = leasehold::acl_rule("acl/")
        .split(' ')
        .filter(|w| !w.starts_with('&'))
        .collect::<Vec<_>>()
        .join(" ");
    set_user(&server, "app", "pw", &rule).await;
    let client = Client::connect(&url_as(&server, "app", "pw"))
        .await
        .unwrap();
    let guard = client.lease("acl/job").acquire().await.unwrap();
    let err = guard.release().await.unwrap_err();
    assert!(err.is_permission_denied(), "{err:?}");
    assert!(err.to_string().contains("lacks a channel"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_being_printed() {
    let server = RedisServer::start().expect("start redis-server");
    set_user(&server, "app", "right-pw", &leasehold::acl_rule("acl/")).await;
    let err = Client::connect(&url_as(&server, "app", "wrong-secret-pw"))
        .await
        .unwrap_err();
    let (text, debug) = (err.to_string(), format!("{err:?}"));
    for shown in [&text, &debug] {
        assert!(!shown.contains("wrong-secret-pw"), "{shown}");
        assert!(!shown.contains("right-pw"), "{shown}");
    }
    assert!(matches!(err.kind(), ErrorKind::Redis { .. }), "{err:?}");
    assert!(text.contains("user and password"), "{text}");
    assert!(!err.is_retryable(), "{text}");
}

/// How often ACL refused `object` (ACL LOG folds repeats into a count).
async fn refused_count(server: &RedisServer, object: &str) -> i64 {
    let mut admin = raw(server).await;
    let log: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(&mut admin)
        .await
        .unwrap();
    log.iter()
        .filter(|e| matches!(e.get("object"), Some(redis::Value::BulkString(b)) if b == object.as_bytes()))
        .map(|e| match e.get("count") {
            Some(redis::Value::Int(n)) => *n,
            other => panic!("count {other:?}"),
        })
        .sum()
}

#[tokio::test]
async fn a_refused_subscription_falls_back_to_timers_without_hammering() {
    let (server, client) = restricted("-subscribe").await;
    let other = Client::connect(&url_as(&server, "app", "s3cret-pw"))
        .await
        .unwrap();
    let guard = client
        .lease("acl/job")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .unwrap();
    let waiter = tokio::spawn(async move {
        other
            .lease("acl/job")
            .wait(Duration::from_secs(20))
            .acquire()
            .await
            .map(|g| g.fence())
    });
    eventually(
        Duration::from_secs(10),
        "the refused subscription",
        || async { refused_count(&server, "subscribe").await >= 1 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    guard.release().await.unwrap();
    let fence = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter's timer")
        .unwrap()
        .unwrap();
    assert!(fence > 0);
    let tries = refused_count(&server, "subscribe").await;
    assert!(tries <= 3, "the subscriber retried {tries} times");
}

/// A 3-master cluster whose every node has the user `app` with the rule
/// for names under `acl/`, and a client connected as that user.
async fn restricted_cluster() -> (testkit::RedisCluster, Client) {
    let cluster = testkit::RedisCluster::start_with(testkit::ClusterOptions {
        masters: 3,
        replicas_per_master: 0,
        ..Default::default()
    })
    .expect("start a 3-master cluster");
    let mut args = vec![
        "ACL".to_owned(),
        "SETUSER".into(),
        "app".into(),
        "on".into(),
    ];
    args.push(">s3cret-pw".into());
    args.extend(leasehold::acl_rule("acl/").split(' ').map(String::from));
    for node in 0..cluster.nodes().len() {
        let reply = cluster.call(node, &args).unwrap();
        assert!(matches!(reply, testkit::Reply::Status(_)), "{reply:?}");
    }
    let seeds: Vec<String> = cluster
        .seeds()
        .iter()
        .map(|s| s.replace("redis://", "redis://app:s3cret-pw@"))
        .collect();
    let client = Client::builder().cluster(seeds).connect().await.unwrap();
    (cluster, client)
}

#[tokio::test]
async fn on_a_cluster_the_rule_covers_sharded_wakeups_and_slot_maps() {
    let (cluster, client) = restricted_cluster().await;
    let seeds: Vec<String> = cluster
        .seeds()
        .iter()
        .map(|s| s.replace("redis://", "redis://app:s3cret-pw@"))
        .collect();
    let other = Client::builder().cluster(seeds).connect().await.unwrap();
    let names = ["acl/a", "acl/b", "acl/c", "acl/{t}d", "acl/e}f"];
    for name in names {
        take_and_give_back(&client.lease(name)).await;
    }
    // A waiter woken through sharded pub/sub.
    let guard = client
        .lease("acl/a")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .unwrap();
    let waiter = tokio::spawn(async move {
        other
            .lease("acl/a")
            .wait(Duration::from_secs(20))
            .acquire()
            .await
            .map(|g| g.fence())
    });
    eventually(
        Duration::from_secs(10),
        "the waiter's subscription",
        || async { client.status("acl/a").await.unwrap().waiting_clients == 1 },
    )
    .await;
    guard.release().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter is woken")
        .unwrap()
        .unwrap();
    take_and_give_back(&client.lease("acl/fair").fair(true)).await;
    take_and_give_back_sem(&client.semaphore("acl/sem", 2)).await;
    let rw = client.rwlock("acl/rw");
    rw.write().acquire().await.unwrap().release().await.unwrap();
    let listed = client.list("acl/*").await.unwrap();
    for name in names {
        assert!(listed.iter().any(|s| s.name == name.as_bytes()), "{name}");
    }
    // Nothing but the settings check was refused, on any node.
    let mut settings_checks = 0;
    for node in 0..cluster.nodes().len() {
        let reply = cluster.call(node, &["ACL", "LOG"]).unwrap();
        for entry in reply.as_array().unwrap() {
            let fields = entry.as_array().unwrap();
            let object = fields
                .chunks(2)
                .find(|kv| kv[0].as_text().as_deref() == Some("object"))
                .and_then(|kv| kv[1].as_text())
                .unwrap();
            assert_eq!(object, "config|get", "node {node}: {reply}");
            settings_checks += 1;
        }
    }
    assert!(
        settings_checks >= 1,
        "the settings check was refused somewhere"
    );
}

#[tokio::test]
async fn over_redlock_the_rule_covers_script_loads_and_probes() {
    let masters = RedisServer::start_many(3).expect("start 3 redis-servers");
    for m in &masters {
        set_user(m, "app", "pw", &leasehold::acl_rule("acl/")).await;
    }
    let client = Client::builder()
        .redlock(masters.iter().map(|m| url_as(m, "app", "pw")))
        .connect()
        .await
        .unwrap();
    let guard = client.lease("acl/job").acquire().await.unwrap();
    guard.extend().await.unwrap();
    guard.release().await.unwrap();
    take_and_give_back_sem(&client.semaphore("acl/sem", 2)).await;
    assert!(!client.status("acl/job").await.unwrap().is_held());
    for m in &masters {
        let refused = refusals(m).await;
        assert!(
            refused.iter().all(|r| r.contains("config|get")),
            "{}: {refused:?}",
            m.port()
        );
    }
}
