//! TLS on the deployments of many servers: every Redlock master and every
//! Redis Cluster node listens for TLS with a certificate of one private CA
//! (testkit's). The client trusts that CA, shows its certificate when the
//! servers require one, and a wrong CA is named per server.

use std::future::Future;
use std::time::Duration;

use leasehold::{Client, ClientBuilder, ErrorKind};
use redis::aio::MultiplexedConnection;
use testkit::{
    ClientAuth, ClusterOptions, RedisCluster, RedisServer, Reply, ServerOptions, TlsFiles,
};
use tokio::time::Instant;

const SECOND: Duration = Duration::from_secs(1);

/// Fallback timers far longer than any test: only a publish can wake.
const NO_TIMER: Duration = Duration::from_secs(120);

fn tls(auth: ClientAuth) -> ServerOptions {
    ServerOptions {
        tls: Some(auth),
        ..Default::default()
    }
}

/// Three independent TLS masters sharing one CA.
async fn masters(auth: ClientAuth) -> Vec<RedisServer> {
    tokio::task::spawn_blocking(move || RedisServer::start_many_with(3, tls(auth)))
        .await
        .unwrap()
        .expect("start 3 TLS redis-servers")
}

/// A TLS cluster of three masters sharing one CA.
async fn cluster(auth: ClientAuth) -> RedisCluster {
    tokio::task::spawn_blocking(move || {
        RedisCluster::start_with(ClusterOptions {
            masters: 3,
            replicas_per_master: 0,
            server: tls(auth),
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .expect("start a 3-master TLS redis cluster")
}

fn tls_urls(masters: &[RedisServer]) -> Vec<String> {
    masters.iter().map(|m| m.tls_url().unwrap()).collect()
}

/// Trusts `files`' CA; shows its client certificate when `mutual`.
fn builder(files: &TlsFiles, mutual: bool) -> ClientBuilder {
    let b = Client::builder()
        .connect_timeout(5 * SECOND)
        .tls_ca_file(files.ca());
    if mutual {
        b.tls_client_cert_files(files.client_cert(), files.client_key())
    } else {
        b
    }
}

/// A plain connection (testkit's servers keep their plain port), to look
/// behind leasehold's back.
async fn plain(url: String) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// `holder` takes `name`; a waiter on `waiter` queues, is seen listening
/// by `listening`, and gets the lease from the release's publish (its
/// timers are far off), with a higher fence.
async fn woken_by_the_release<F, Fut>(holder: &Client, waiter: &Client, name: &str, listening: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let guard = holder.lease(name).acquire().await.unwrap();
    let lease = waiter
        .lease(name)
        .backoff(NO_TIMER, NO_TIMER)
        .wait(NO_TIMER);
    let queued = tokio::spawn(async move {
        let g = lease.acquire().await.unwrap();
        (Instant::now(), g)
    });
    testkit::eventually(
        10 * SECOND,
        &format!("the waiter on {name} to subscribe"),
        listening,
    )
    .await;
    let fence = guard.fence();
    let released = Instant::now();
    guard.release().await.unwrap();
    let (got, next) = tokio::time::timeout(10 * SECOND, queued)
        .await
        .unwrap_or_else(|_| panic!("the waiter on {name} was not woken by the release"))
        .unwrap();
    let took = got - released;
    assert!(
        took < 2 * SECOND,
        "{name}: woken {took:?} after the release: a timer, not the publish"
    );
    assert!(next.fence() > fence, "{name}");
    next.release().await.unwrap();
}

mod redlock {
    use super::*;

    /// Subscribers of `channel` on every master.
    async fn listening_on_all(masters: &[RedisServer], channel: &str) -> bool {
        for m in masters {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(&mut plain(m.url()).await)
                .await
                .unwrap();
            if n == 0 {
                return false;
            }
        }
        true
    }

    async fn holders(masters: &[RedisServer], key: &str) -> usize {
        let mut n = 0;
        for m in masters {
            let v: Option<String> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut plain(m.url()).await)
                .await
                .unwrap();
            n += usize::from(v.is_some());
        }
        n
    }

    async fn acquires_waits_and_releases(auth: ClientAuth, mutual: bool) {
        let masters = masters(auth).await;
        let files = masters[0].tls_files().unwrap().clone();
        let connect = || {
            builder(&files, mutual)
                .redlock(tls_urls(&masters))
                .connect()
        };
        let (a, b) = (connect().await.unwrap(), connect().await.unwrap());

        let guard = a.lease("tls/redlock").acquire().await.unwrap();
        assert_eq!(
            holders(&masters, "tls/redlock").await,
            3,
            "the acquire reached every master over TLS"
        );
        guard.release().await.unwrap();
        assert_eq!(holders(&masters, "tls/redlock").await, 0);

        woken_by_the_release(&a, &b, "tls/redlock", || {
            listening_on_all(&masters, "leasehold:{tls/redlock}:wake")
        })
        .await;
        assert_eq!(holders(&masters, "tls/redlock").await, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acquires_waits_and_releases_with_a_private_ca() {
        acquires_waits_and_releases(ClientAuth::Optional, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn masters_that_require_a_client_certificate_accept_the_one_given() {
        let masters = masters(ClientAuth::Required).await;
        let files = masters[0].tls_files().unwrap().clone();
        let err = builder(&files, false)
            .redlock(tls_urls(&masters))
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::QuorumNotReached { got: 0, .. }),
            "refused by every master without a client certificate: {err:?}"
        );
        drop(masters);
        acquires_waits_and_releases(ClientAuth::Required, true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_ca_fails_naming_each_master_that_could_not_be_verified() {
        let masters = masters(ClientAuth::Optional).await;
        let other = TlsFiles::generate_temp().unwrap();
        let err = builder(&other, false)
            .redlock(tls_urls(&masters))
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::QuorumNotReached { got: 0, .. }),
            "{err:?}"
        );
        let message = err.to_string();
        for m in &masters {
            let addr = format!("127.0.0.1:{}", m.tls_port().unwrap());
            assert!(
                message.contains(&format!(
                    "could not verify the TLS certificate of Redis at {addr}"
                )),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn certificate_files_with_plain_urls_are_refused_not_ignored() {
        let masters = masters(ClientAuth::Optional).await;
        let files = masters[0].tls_files().unwrap().clone();
        let urls: Vec<String> = masters.iter().map(RedisServer::url).collect();
        let err = builder(&files, false)
            .redlock(urls)
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidArgument { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("rediss://"), "{err}");
    }
}

mod cluster {
    use super::*;

    /// Names whose slots are on three different masters.
    fn names(cluster: &RedisCluster) -> Vec<&'static str> {
        let mut picked: Vec<(&str, usize)> = Vec::new();
        for name in [
            "a",
            "b",
            "c",
            "jobs/nightly",
            "deploy/prod",
            "x",
            "y",
            "z",
            "tls/1",
            "tls/2",
        ] {
            let master = cluster.master_of_slot(cluster.slot_of(name).unwrap());
            if picked.iter().all(|(_, m)| *m != master) {
                picked.push((name, master));
            }
        }
        assert_eq!(picked.len(), 3, "names on every master: {picked:?}");
        picked.into_iter().map(|(n, _)| n).collect()
    }

    /// Sharded subscribers of `name`'s wake channel on its slot's master.
    fn listening(cluster: &RedisCluster, name: &str) -> bool {
        let channel = format!("leasehold:{{{name}}}:wake");
        let master = cluster.master_of_slot(cluster.slot_of(&channel).unwrap());
        match cluster
            .call(master, &["PUBSUB", "SHARDNUMSUB", &channel])
            .unwrap()
        {
            Reply::Array(Some(r)) => matches!(r.get(1), Some(Reply::Integer(n)) if *n > 0),
            other => panic!("PUBSUB SHARDNUMSUB: {other:?}"),
        }
    }

    fn held(cluster: &RedisCluster, name: &str) -> bool {
        let master = cluster.master_of_slot(cluster.slot_of(name).unwrap());
        !matches!(
            cluster.call(master, &["GET", name]).unwrap(),
            Reply::Bulk(None)
        )
    }

    async fn acquires_waits_and_releases(auth: ClientAuth, mutual: bool) {
        let cluster = cluster(auth).await;
        let files = cluster.tls_files().unwrap().clone();
        let connect = || {
            builder(&files, mutual)
                .cluster(cluster.tls_seeds())
                .connect()
        };
        let (a, b) = (connect().await.unwrap(), connect().await.unwrap());

        for name in names(&cluster) {
            let guard = a.lease(name).acquire().await.unwrap();
            assert!(
                held(&cluster, name),
                "{name} written over TLS on its master"
            );
            guard.release().await.unwrap();
            assert!(!held(&cluster, name), "{name}");

            woken_by_the_release(&a, &b, name, || {
                let listening = listening(&cluster, name);
                async move { listening }
            })
            .await;
            assert!(!held(&cluster, name), "{name}");
        }
        // A transaction runs on a connection of its own to the slot's
        // master, over TLS too.
        let bought = a
            .optimistic(["{tls}:stock"])
            .run(async |tx| {
                let stock: i64 = tx.get::<Option<i64>>("{tls}:stock").await?.unwrap_or(0);
                tx.queue(redis::cmd("SET").arg("{tls}:stock").arg(stock + 1).clone());
                Ok::<_, leasehold::Error>(stock)
            })
            .await
            .unwrap();
        assert_eq!(bought.value, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acquires_waits_and_releases_with_a_private_ca_on_every_master() {
        acquires_waits_and_releases(ClientAuth::Optional, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_that_require_a_client_certificate_accept_the_one_given() {
        acquires_waits_and_releases(ClientAuth::Required, true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_ca_fails_saying_the_certificate_could_not_be_verified() {
        let cluster = cluster(ClientAuth::Optional).await;
        let other = TlsFiles::generate_temp().unwrap();
        let err = builder(&other, false)
            .cluster(cluster.tls_seeds())
            .connect()
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("could not verify the TLS certificate"),
            "{message}"
        );
        assert!(err.is_connection(), "{err:?}");
        let seed = cluster.tls_seeds().remove(0);
        assert!(message.contains(&seed), "names the seeds: {message}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn certificate_files_with_plain_seeds_are_refused_not_ignored() {
        let cluster = cluster(ClientAuth::Optional).await;
        let files = cluster.tls_files().unwrap().clone();
        let err = builder(&files, false)
            .cluster(cluster.seeds())
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidArgument { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("rediss://"), "{err}");
    }
}
