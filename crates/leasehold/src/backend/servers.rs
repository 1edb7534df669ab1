//! Each server of a deployment, for checks of the deployment itself
//! (settings read at connect, `Client::doctor`): one server, each master
//! of a cluster, each independent master.

use redis::Value;
use redis::cluster_routing::SingleNodeRoutingInfo;

use super::Backend;
use crate::error::{Error, Result};

/// What one server answered to a pipeline.
pub(crate) struct Answer {
    /// The server's printable address.
    pub(crate) addr: String,
    /// Its replies, or why there are none.
    pub(crate) replies: redis::RedisResult<Vec<Value>>,
}

/// One server, to talk to on connections of its own.
pub(crate) struct Server {
    /// The server's printable address (never with a password).
    pub(crate) addr: String,
    /// Opens connections to it, with the deployment's user and password.
    pub(crate) client: redis::Client,
}

impl Backend {
    /// Runs `pipe` on every server (every master), on the connections the
    /// client already has, each within the response timeout.
    pub(crate) async fn on_each_server(&self, pipe: &redis::Pipeline) -> Result<Vec<Answer>> {
        Ok(match self {
            Backend::Single(s) => vec![Answer {
                addr: s.node.addr().to_owned(),
                replies: pipe.query_async(&mut s.node.conn()).await,
            }],
            Backend::Cluster(c) => {
                let mut out = Vec::new();
                for (host, port) in c.masters().await? {
                    let route = SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port,
                    };
                    let replies = c
                        .conn()
                        .route_pipeline(pipe.clone(), 0, pipe.len(), route)
                        .await;
                    out.push(Answer {
                        addr: format!("{host}:{port}"),
                        replies,
                    });
                }
                out
            }
            Backend::Redlock(r) => {
                let addrs: Vec<String> = r
                    .redis_clients()
                    .iter()
                    .map(|c| c.get_connection_info().addr().to_string())
                    .collect();
                let each = r
                    .pipeline_on_each(pipe.clone(), "reading the settings")
                    .await;
                addrs
                    .into_iter()
                    .zip(each)
                    .map(|(addr, replies)| Answer {
                        addr,
                        replies: replies.ok_or_else(|| {
                            std::io::Error::other("no answer within the response timeout").into()
                        }),
                    })
                    .collect()
            }
        })
    }

    /// Every server (every master), to open connections of their own to.
    pub(crate) async fn servers(&self) -> Result<Vec<Server>> {
        Ok(match self {
            Backend::Single(s) => vec![Server {
                addr: s.node.addr().to_owned(),
                client: s.node.redis().clone(),
            }],
            Backend::Redlock(r) => r
                .redis_clients()
                .into_iter()
                .map(|client| Server {
                    addr: client.get_connection_info().addr().to_string(),
                    client,
                })
                .collect(),
            Backend::Cluster(c) => {
                let seed = redis::IntoConnectionInfo::into_connection_info(c.seeds()[0].as_str())
                    .map_err(|e| Error::redis("the connection settings", c.addr(), e))?;
                let mut out = Vec::new();
                for (host, port) in c.masters().await? {
                    let addr = match seed.addr() {
                        redis::ConnectionAddr::TcpTls {
                            insecure,
                            tls_params,
                            ..
                        } => redis::ConnectionAddr::TcpTls {
                            host: host.clone(),
                            port,
                            insecure: *insecure,
                            tls_params: tls_params.clone(),
                        },
                        _ => redis::ConnectionAddr::Tcp(host.clone(), port),
                    };
                    let at = format!("{host}:{port}");
                    let client = redis::Client::open(seed.clone().set_addr(addr))
                        .map_err(|e| Error::redis("the connection settings", &at, e))?;
                    out.push(Server { addr: at, client });
                }
                out
            }
        })
    }
}
