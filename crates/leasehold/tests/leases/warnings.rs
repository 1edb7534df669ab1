//! The warnings a client logs (through `tracing`) once at connect, when
//! the server can evict leases or loses them on restart; none for a
//! server that can do neither, nor when the user may not read the
//! settings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold::Client;
use testkit::{RedisServer, ServerOptions};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::common::*;

/// One event: its level and its fields, `message` among them.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    text: String,
}

/// A subscriber that keeps every event of leasehold, for the test to read.
#[derive(Default, Clone)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

impl Capture {
    fn warnings(&self) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|s| s.level == Level::WARN)
            .map(|s| s.text.clone())
            .collect()
    }

    fn debugs(&self) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|s| s.level == Level::DEBUG)
            .map(|s| s.text.clone())
            .collect()
    }
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("leasehold")
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            text: fields.0,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Connects to `url` with `capture` as the subscriber of this thread (the
/// test runs on a current-thread runtime, so the client's background task
/// runs here too), and gives the background check time to finish: until
/// `done` holds of the captured events, or 10 s.
async fn connect_and_wait(url: &str, capture: &Capture, done: impl Fn(&Capture) -> bool) -> Client {
    let client = Client::connect(url).await.unwrap();
    eventually(Duration::from_secs(10), "the settings check", || async {
        done(capture)
    })
    .await;
    client
}

#[tokio::test]
async fn an_evicting_server_without_persistence_is_warned_of_once() {
    let capture = Capture::default();
    let _on = tracing::subscriber::set_default(capture.clone());
    let server = RedisServer::start_with(ServerOptions {
        maxmemory: Some("64mb".into()),
        maxmemory_policy: Some("allkeys-lru".into()),
        ..Default::default()
    })
    .unwrap();
    let client = connect_and_wait(&server.url(), &capture, |c| c.warnings().len() >= 2).await;
    let warnings = capture.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    let evict = warnings.iter().find(|w| w.contains("evict")).unwrap();
    assert!(
        evict.contains("allkeys-lru") && evict.contains("noeviction"),
        "{evict}"
    );
    assert!(
        evict.contains(&format!("127.0.0.1:{}", server.port())),
        "{evict}"
    );
    let restart = warnings.iter().find(|w| w.contains("restart")).unwrap();
    assert!(restart.contains("appendonly yes"), "{restart}");

    // Once per client: using it warns no more.
    take_and_give_back(&client.lease("w/job")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(capture.warnings().len(), 2);
}

#[tokio::test]
async fn a_server_that_keeps_its_leases_is_not_warned_of() {
    let capture = Capture::default();
    let _on = tracing::subscriber::set_default(capture.clone());
    let server = RedisServer::start_with(ServerOptions {
        aof: true,
        maxmemory_policy: Some("noeviction".into()),
        ..Default::default()
    })
    .unwrap();
    // The check is done when its CONFIG GETs were answered: the server
    // counts them.
    let client = Client::connect(&server.url()).await.unwrap();
    let mut admin = raw(&server).await;
    eventually(Duration::from_secs(10), "the CONFIG GETs", || {
        let mut admin = admin.clone();
        async move {
            let stats: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut admin)
                .await
                .unwrap();
            stats.contains("cmdstat_config|get:calls=4")
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(capture.warnings(), Vec::<String>::new());
    let () = redis::cmd("PING").query_async(&mut admin).await.unwrap();
    drop(client);
}

#[tokio::test]
async fn a_user_that_may_not_read_the_settings_is_not_warned_but_debugged() {
    let capture = Capture::default();
    let _on = tracing::subscriber::set_default(capture.clone());
    let server = RedisServer::start_with(ServerOptions {
        maxmemory_policy: Some("allkeys-lru".into()),
        ..Default::default()
    })
    .unwrap();
    let mut admin = raw(&server).await;
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg("app").arg("on").arg(">pw");
    for word in leasehold::acl_rule("").split_whitespace() {
        cmd.arg(word);
    }
    let () = cmd.query_async(&mut admin).await.unwrap();
    let url = format!("redis://app:pw@127.0.0.1:{}", server.port());
    let _client = connect_and_wait(&url, &capture, |c| {
        c.debugs().iter().any(|d| d.contains("CONFIG GET"))
    })
    .await;
    assert_eq!(capture.warnings(), Vec::<String>::new());
    let debug = capture
        .debugs()
        .into_iter()
        .find(|d| d.contains("CONFIG GET"))
        .unwrap();
    assert!(
        debug.contains("NOPERM") || debug.contains("permission"),
        "{debug}"
    );
}

#[tokio::test]
async fn each_master_of_a_cluster_is_warned_of() {
    let capture = Capture::default();
    let _on = tracing::subscriber::set_default(capture.clone());
    let cluster = testkit::RedisCluster::start_with(testkit::ClusterOptions {
        masters: 3,
        replicas_per_master: 0,
        server: ServerOptions {
            aof: true,
            maxmemory_policy: Some("volatile-lru".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("start a 3-master cluster");
    let _client = Client::builder()
        .cluster(cluster.seeds())
        .connect()
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "a warning per master", || async {
        capture.warnings().len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let warnings = capture.warnings();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    for m in cluster.masters() {
        let at = format!("127.0.0.1:{}", cluster.node(m).port());
        let w = warnings
            .iter()
            .find(|w| w.contains(&at))
            .unwrap_or_else(|| panic!("no warning for {at}: {warnings:#?}"));
        assert!(
            w.contains("volatile-lru") && w.contains("keys with a TTL"),
            "{w}"
        );
    }
}
