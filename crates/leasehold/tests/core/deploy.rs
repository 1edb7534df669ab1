//! The deployments the core suite runs on: one server, a Redis Cluster of
//! three masters, and three independent masters (Redlock). Each test gets
//! its own, started fresh.

use leasehold::Client;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use testkit::{ClusterOptions, RedisCluster, RedisServer};

/// Where a test runs.
pub enum Deployment {
    Single(RedisServer),
    Cluster(RedisCluster),
    Redlock(Vec<RedisServer>),
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

    /// Three independent masters.
    pub async fn redlock() -> Deployment {
        let masters = tokio::task::spawn_blocking(|| RedisServer::start_many(3))
            .await
            .unwrap()
            .expect("start 3 redis-servers");
        Deployment::Redlock(masters)
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
            Deployment::Redlock(m) => Client::builder()
                .redlock(m.iter().map(|s| s.url()))
                .connect()
                .await
                .expect("connect to the masters"),
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
            Deployment::Redlock(m) => {
                let mut conns = Vec::new();
                for s in m {
                    conns.push(raw_at(s.url()).await);
                }
                Raw::Masters(conns)
            }
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
    /// Each command to every master in turn; the first master's reply.
    Masters(Vec<MultiplexedConnection>),
}

impl ConnectionLike for Raw {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Raw::Single(c) => c.req_packed_command(cmd),
            Raw::Cluster(c) => c.req_packed_command(cmd),
            Raw::Masters(conns) => Box::pin(async move {
                let mut first = None;
                for c in conns.iter_mut() {
                    let r = c.req_packed_command(cmd).await;
                    first.get_or_insert(r);
                }
                first.expect("at least one master")
            }),
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
            Raw::Masters(conns) => Box::pin(async move {
                let mut first = None;
                for c in conns.iter_mut() {
                    let r = c.req_packed_commands(pipeline, offset, count).await;
                    first.get_or_insert(r);
                }
                first.expect("at least one master")
            }),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Every test of the suite, once on each deployment: `mod single`,
/// `mod cluster` and `mod redlock` get a test of the same name. The tests
/// under `not_on_redlock` are of what Redlock refuses (fair order,
/// read-write locks), checked to be refused in the Redlock suite.
macro_rules! suite {
    (
        everywhere { $(async fn $a:ident($da:ident: &Deployment) $ba:block)* }
        not_on_redlock { $(async fn $b:ident($db:ident: &Deployment) $bb:block)* }
    ) => {
        $( async fn $a($da: &Deployment) $ba )*
        $( async fn $b($db: &Deployment) $bb )*
        mod single {
            $( crate::deploy::one_test!($a, single); )*
            $( crate::deploy::one_test!($b, single); )*
        }
        mod cluster {
            $( crate::deploy::one_test!($a, cluster); )*
            $( crate::deploy::one_test!($b, cluster); )*
        }
        mod redlock {
            $( crate::deploy::one_test!($a, redlock); )*
        }
    };
}
pub(crate) use suite;

/// One test of the suite on one deployment.
macro_rules! one_test {
    ($name:ident, $deployment:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let d = crate::deploy::Deployment::$deployment().await;
            super::$name(&d).await;
        }
    };
}
pub(crate) use one_test;
