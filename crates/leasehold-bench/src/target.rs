//! [`Target`]: where a workload runs, one server or a Redis Cluster, and the
//! connections of the harness's own there ([`Conn`]).
//!
//! On a cluster the harness needs three kinds of connection: one that routes
//! each command by its key (redis-rs's cluster connection: the flash sale's
//! GET / SET and scripts), one of its own to the master serving a key's slot
//! (a WATCH belongs to a connection, and W3's critical section should cost
//! the same as on one server), and one to each master (`INFO`, whose CPU and
//! command counts are summed over the cluster).

use redis::aio::MultiplexedConnection;
use redis::{Cmd, ConnectionAddr, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use crate::Error;

/// Where a workload runs.
///
/// ```no_run
/// # async fn f() -> Result<(), leasehold_bench::Error> {
/// use leasehold_bench::Target;
///
/// let cluster = Target::Cluster(vec!["redis://127.0.0.1:7000".into()]);
/// let client = cluster.client().await?; // leasehold, on the cluster
/// let mut conn = cluster.conn().await?; // routes each command by its key
/// let () = redis::cmd("SET").arg("k").arg(1).query_async(&mut conn).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server, by URL.
    Server(String),
    /// A Redis Cluster, by the URLs of some of its nodes (the rest is
    /// discovered).
    Cluster(Vec<String>),
}

/// A connection of the harness: to one server, or redis-rs's cluster
/// connection, which sends each command to the master of its key's slot.
/// Both are cheap to clone (multiplexed).
#[derive(Clone)]
pub enum Conn {
    /// To one server.
    Server(MultiplexedConnection),
    /// To a cluster, routed by key.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Target {
    /// A leasehold client on the target.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the half-made connections.
    pub async fn client(&self) -> Result<leasehold::Client, Error> {
        Ok(match self {
            Target::Server(url) => leasehold::Client::connect(url).await?,
            Target::Cluster(seeds) => {
                leasehold::Client::builder()
                    .cluster(seeds.clone())
                    .connect()
                    .await?
            }
        })
    }

    /// A connection for plain commands and scripts; on a cluster each goes
    /// to the master of its key's slot.
    pub async fn conn(&self) -> Result<Conn, Error> {
        Ok(match self {
            Target::Server(url) => Conn::Server(multiplexed(url.as_str()).await?),
            Target::Cluster(seeds) => Conn::Cluster(
                redis::cluster::ClusterClient::new(seeds.clone())?
                    .get_async_connection()
                    .await?,
            ),
        })
    }

    /// A connection of its own to the master serving `key` (the server
    /// itself when there is one): for WATCH, and for commands that must
    /// cost what they cost on one server.
    pub async fn conn_for(&self, key: &str) -> Result<MultiplexedConnection, Error> {
        match self {
            Target::Server(url) => multiplexed(url.as_str()).await,
            Target::Cluster(_) => {
                let masters = self.topology().await?;
                let mut any = multiplexed(masters[0].info.clone()).await?;
                let slot: u16 = redis::cmd("CLUSTER")
                    .arg("KEYSLOT")
                    .arg(key)
                    .query_async(&mut any)
                    .await?;
                let owner = masters
                    .iter()
                    .find(|m| m.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
                    .ok_or_else(|| {
                        Error::Check(format!("no master serves slot {slot} (of `{key}`)"))
                    })?;
                multiplexed(owner.info.clone()).await
            }
        }
    }

    /// One connection to each master (to the server when there is one).
    pub(crate) async fn masters(&self) -> Result<Vec<MultiplexedConnection>, Error> {
        match self {
            Target::Server(url) => Ok(vec![multiplexed(url.as_str()).await?]),
            Target::Cluster(_) => {
                let mut out = Vec::new();
                for m in self.topology().await? {
                    out.push(multiplexed(m.info).await?);
                }
                Ok(out)
            }
        }
    }

    /// The cluster's masters that serve slots, from the first seed that
    /// answers `CLUSTER NODES`, each with the seed's URL settings (password,
    /// TLS) and its own address.
    async fn topology(&self) -> Result<Vec<Master>, Error> {
        let Target::Cluster(seeds) = self else {
            return Err(Error::Invalid("not a cluster".into()));
        };
        let mut last = None;
        for seed in seeds {
            let nodes: Result<String, Error> = async {
                let mut conn = multiplexed(seed.as_str()).await?;
                Ok(redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut conn)
                    .await?)
            }
            .await;
            match nodes {
                Ok(text) => {
                    let masters = parse_nodes(&text, seed)?;
                    if masters.is_empty() {
                        return Err(Error::Check(format!(
                            "the cluster of {seed} has no master serving slots"
                        )));
                    }
                    return Ok(masters);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Invalid("a cluster needs at least one seed".into())))
    }
}

/// A master of a cluster: where it is, which slots it serves.
struct Master {
    info: redis::ConnectionInfo,
    slots: Vec<(u16, u16)>,
}

/// The masters of `CLUSTER NODES` that are up and serve slots.
fn parse_nodes(text: &str, seed: &str) -> Result<Vec<Master>, Error> {
    let info = seed.into_connection_info()?;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let flags = f[2];
        if !flags.split(',').any(|x| x == "master")
            || flags
                .split(',')
                .any(|x| matches!(x, "fail" | "fail?" | "noaddr" | "handshake"))
        {
            continue;
        }
        // ip:port@cport[,hostname]
        let hostport = f[1].split('@').next().unwrap_or_default();
        let Some((host, port)) = hostport.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let slots: Vec<(u16, u16)> = f[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|n| (n, n)),
            })
            .collect();
        if slots.is_empty() {
            continue;
        }
        let host = host.to_owned();
        let addr = match info.addr().clone() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                tls_params,
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        out.push(Master {
            info: info.clone().set_addr(addr),
            slots,
        });
    }
    Ok(out)
}

/// A multiplexed connection to one server.
pub(crate) async fn multiplexed(
    url: impl IntoConnectionInfo,
) -> Result<MultiplexedConnection, Error> {
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_masters_of_cluster_nodes() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922 [10923->-c3]
c3 127.0.0.1:7002@17002,host master - 0 0 3 connected 10923 10924-16383
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
e5 127.0.0.1:7004@17004 master,fail - 0 0 4 disconnected
f6 127.0.0.1:7005@17005 master - 0 0 5 connected
";
        let m = parse_nodes(text, "redis://:pw@127.0.0.1:7000").unwrap();
        assert_eq!(m.len(), 3);
        let port = |m: &Master| match m.info.addr() {
            ConnectionAddr::Tcp(_, port) => *port,
            _ => 0,
        };
        assert_eq!(port(&m[0]), 7000);
        assert_eq!(m[0].info.redis_settings().password(), Some("pw"));
        assert_eq!(m[1].slots, vec![(5461, 10922)]);
        assert_eq!(port(&m[2]), 7002);
        assert_eq!(m[2].slots, vec![(10923, 10923), (10924, 16383)]);
    }
}
