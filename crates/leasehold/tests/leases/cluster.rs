//! Issue 12: every script of every primitive touches keys of one hash slot,
//! whatever the name. A cluster-enabled redis-server that owns every slot
//! refuses a script or command whose keys span slots (`CROSSSLOT`), so each
//! primitive that works on it kept its keys together.

use std::time::Duration;

use leasehold::Client;
use testkit::{RedisServer, ServerOptions};

use crate::common::*;

/// Names with braces but no hash tag (the issue's), beside a plain and a
/// tagged one.
const NAMES: [&str; 8] = ["a{}b", "x}y", "}", "}{", "{}", "a}b{c", "plain", "{t}x"];

/// A one-node cluster serving every slot, and a leasehold client on it.
async fn cluster() -> (RedisServer, Client) {
    let server = RedisServer::start_with(ServerOptions {
        cluster: true,
        ..Default::default()
    })
    .expect("start a cluster-enabled redis-server");
    let mut conn = raw(&server).await;
    let () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the node serving keys", || {
        let mut conn = conn.clone();
        async move {
            redis::cmd("SET")
                .arg("probe")
                .arg(1)
                .query_async::<()>(&mut conn)
                .await
                .is_ok()
        }
    })
    .await;
    // The oracle works: keys of two slots are refused.
    let err = redis::cmd("MGET")
        .arg("a")
        .arg("b")
        .query_async::<()>(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    let client = Client::connect(&server.url()).await.expect("connect");
    (server, client)
}

#[tokio::test]
async fn every_primitive_keeps_its_keys_in_the_names_slot() {
    let (_server, client) = cluster().await;
    for name in NAMES {
        let lease = client.lease(name).wait(Duration::from_secs(10));
        take_and_give_back(&lease).await;
        take_and_give_back(&client.lease(name).fair(true)).await;
        let status = client.status(name).await.unwrap();
        assert!(status.fence >= 2, "{name}: {status:?}");

        let sem = format!("sem/{name}");
        for fair in [false, true] {
            let sem = client.semaphore(&sem, 2).fair(fair);
            sem.acquire().await.unwrap().release().await.unwrap();
        }
        let rw = client.rwlock(format!("rw/{name}"));
        rw.read().acquire().await.unwrap().release().await.unwrap();
        rw.write().acquire().await.unwrap().release().await.unwrap();

        let got = client
            .single_flight(format!("cache/{name}"))
            .get(async || Ok::<_, leasehold::Error>(name.to_owned()))
            .await
            .unwrap();
        assert_eq!(got.value, name);
    }
}

/// The cache key: its rebuild lease is taken in the key's slot,
/// as the server hashes them (a script that reads the entry under the
/// lease, or a cluster client routing by slot, needs them together).
#[tokio::test]
async fn a_tagged_cache_key_is_rebuilt_under_a_lease_in_its_slot() {
    let (server, client) = cluster().await;
    let keys = ["{user:7}:profile", "a{}b", "x}y", "plain"];
    for key in keys {
        let flight = client.single_flight(key);
        let first = flight
            .get(async || Ok::<_, leasehold::Error>(7u32))
            .await
            .unwrap();
        assert_eq!(first.source, leasehold::Source::Rebuilt, "{key}");
        let second = flight
            .get(async || Ok::<_, leasehold::Error>(8u32))
            .await
            .unwrap();
        assert_eq!((second.value, second.source), (7, leasehold::Source::Cache));
    }
    // The rebuild leases are known by their fence counters: find them.
    let leases: Vec<Vec<u8>> = client
        .list("*")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    let mut conn = raw(&server).await;
    for key in keys {
        let lease: Vec<&Vec<u8>> = leases
            .iter()
            .filter(|n| contains(n, key.as_bytes()) && contains(n, b"rebuild"))
            .collect();
        assert_eq!(lease.len(), 1, "{key}: {leases:?}");
        assert_eq!(
            keyslot(&mut conn, lease[0]).await,
            keyslot(&mut conn, key.as_bytes()).await,
            "{key}: {}",
            String::from_utf8_lossy(lease[0])
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn keyslot(conn: &mut redis::aio::MultiplexedConnection, key: &[u8]) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

/// A waiter is woken by the release of a holder of such a name: the wake
/// channel is published from the release script, with the name's keys.
#[tokio::test]
async fn a_waiter_on_a_braced_name_is_woken() {
    let (server, client) = cluster().await;
    let other = Client::connect(&server.url()).await.unwrap();
    for name in ["a{}b", "x}y"] {
        let guard = client.lease(name).acquire().await.unwrap();
        let waiter = tokio::spawn({
            let lease = other.lease(name).wait(Duration::from_secs(20));
            async move { lease.acquire().await.map(|g| g.fence()) }
        });
        eventually(Duration::from_secs(10), "the waiter subscribed", || {
            let client = client.clone();
            async move { client.status(name).await.unwrap().waiting_clients == 1 }
        })
        .await;
        let held = guard.fence();
        guard.release().await.unwrap();
        let fence = waiter.await.unwrap().unwrap();
        assert!(fence > held, "{name}");
    }
}

/// Issue 16: a fair lease's queue with a waiter's claim, the release that
/// hands the lease to it, and a waiter that gives up (its leave releases
/// what it was handed), each one script on keys of the name's slot.
#[tokio::test]
async fn a_fair_hand_over_and_a_leave_keep_their_keys_in_the_names_slot() {
    let (server, client) = cluster().await;
    let other = Client::connect(&server.url()).await.expect("connect");
    for name in NAMES {
        let lease = |c: &Client| c.lease(name).fair(true).wait(Duration::from_secs(10));
        let holder = lease(&client).acquire().await.unwrap();
        let waiter = {
            let lease = lease(&other);
            tokio::spawn(async move { lease.acquire().await })
        };
        eventually(Duration::from_secs(5), "the waiter to queue", || async {
            client.status(name).await.unwrap().fair_waiters == Some(1)
        })
        .await;
        let quitter = {
            let lease = lease(&other);
            tokio::spawn(async move { lease.acquire().await })
        };
        eventually(
            Duration::from_secs(5),
            "the second waiter to queue",
            || async { client.status(name).await.unwrap().fair_waiters == Some(2) },
        )
        .await;
        quitter.abort();
        eventually(
            Duration::from_secs(5),
            "the second waiter to leave",
            || async { client.status(name).await.unwrap().fair_waiters == Some(1) },
        )
        .await;
        let fence = holder.fence();
        holder.release().await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(got.fence() > fence, "{name}");
        got.release().await.unwrap();
    }
}
