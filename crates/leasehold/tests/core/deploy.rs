//! The deployments the core suite runs on: one server, and a Redis Cluster
//! of three masters. Each test gets its own, started fresh.

use leasehold::Client;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use testkit::{ClusterOptions, RedisCluster, RedisServer};

/// Where a test runs.
pub enum Deployment {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Deployment {
    pub async fn single() -> Deployment {
        Deployment::Single(RedisServer::start().expect("start redis-server"))
    }

    /// Three masters, every slot assigned, `cluster_state:ok` on each.
    pub async fn cluster() -> Deployment {
        let cluster = tokio::task::spawn_blocking(|| {
            RedisCluster::start_with(ClusterOptions {
                masters: 3,
                replicas_per_master: 0,
                ..Default::default()
            })
        })
        .await
        .unwrap()
        .expect("start a 3-master redis cluster");
        Deployment::Cluster(cluster)
    }

    /// A leasehold client of the deployment.
    pub async fn client(&self) -> Client {
        match self {
            Deployment::Single(s) => Client::connect(&s.url()).await.expect("connect"),
            Deployment::Cluster(c) => Client::builder()
                .cluster(c.seeds())
                .connect()
                .await
                .expect("connect to the cluster"),
        }
    }

    /// A raw connection, for looking behind leasehold's back.
    pub async fn raw(&self) -> Raw {
        match self {
            Deployment::Single(s) => Raw::Single(raw_at(s.url()).await),
            Deployment::Cluster(c) => Raw::Cluster(
                redis::cluster::ClusterClient::new(c.seeds())
                    .unwrap()
                    .get_async_connection()
                    .await
                    .unwrap(),
            ),
        }
    }
}

async fn raw_at(url: String) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A raw connection to either kind.
#[derive(Clone)]
pub enum Raw {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Raw {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Raw::Single(c) => c.req_packed_command(cmd),
            Raw::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Raw::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Raw::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Every test of the suite, once on each deployment: `mod single` and
/// `mod cluster` get a test of the same name.
macro_rules! on_both {
    ($(async fn $name:ident($d:ident: &Deployment) $body:block)*) => {
        $(
            async fn $name($d: &Deployment) $body
        )*
        mod single {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let d = crate::deploy::Deployment::single().await;
                    super::$name(&d).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let d = crate::deploy::Deployment::cluster().await;
                    super::$name(&d).await;
                }
            )*
        }
    };
}
pub(crate) use on_both;
