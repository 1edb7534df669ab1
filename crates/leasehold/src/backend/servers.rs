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
                // Connections of their own: a background read must not
                // count against a master in the links' bookkeeping (a
                // missed deadline makes a master silent).
                let within = r.response_timeout();
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(within))
                    .set_response_timeout(Some(within));
                let mut out = Vec::new();
                for client in r.redis_clients() {
                    let replies = match client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                    {
                        Ok(mut conn) => pipe.query_async(&mut conn).await,
                        Err(e) => Err(e),
                    };
                    out.push(Answer {
                        addr: client.get_connection_info().addr().to_string(),
                        replies,
                    });
                }
                out
            }
        })
    }

    /// Every server (every master), to open connections of their own to.
    pub(crate) async fn servers(&self) -> Result<Vec<Server>> {
        Ok(match self {
            Backend::Single(s) => vec![Server {
                addr: s.node.addr().to_owned(),
                client: s.node.redis(),
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
                let mut out = Vec::new();
                for (host, port) in c.masters().await? {
                    let client = c.client_to(&host, port)?;
                    out.push(Server {
                        addr: format!("{host}:{port}"),
                        client,
                    });
                }
                out
            }
        })
    }
}

/// A connection the doctor sends single commands on: the client's shared
/// one (one server; a cluster, routed by key), or one of its own (each
/// Redlock master).
pub(crate) enum Link {
    /// The client's shared connection.
    Shared(super::Conn),
    /// A connection of its own.
    Own(redis::aio::MultiplexedConnection),
}

impl redis::aio::ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Link::Shared(c) => c.req_packed_command(cmd),
            Link::Own(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Shared(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Own(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Shared(c) => c.get_db(),
            Link::Own(c) => c.get_db(),
        }
    }
}

impl Backend {
    /// Where commands on a name's keys go, with the printable address of
    /// each: the one server, the cluster (routed by key), or each master
    /// (a connection of its own, within the connect timeout).
    pub(crate) async fn links(&self, connect: std::time::Duration) -> Vec<(String, Result<Link>)> {
        match self {
            Backend::Single(s) => vec![(
                s.node.addr().to_owned(),
                Ok(Link::Shared(super::Conn::Single(s.node.conn()))),
            )],
            Backend::Cluster(c) => vec![(
                c.addr().to_owned(),
                Ok(Link::Shared(super::Conn::Cluster(c.conn()))),
            )],
            Backend::Redlock(r) => {
                let mut out = Vec::new();
                for client in r.redis_clients() {
                    let addr = client.get_connection_info().addr().to_string();
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(connect))
                        .set_response_timeout(Some(connect));
                    let conn = client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map(Link::Own)
                        .map_err(|e| Error::redis("opening a connection", &addr, e));
                    out.push((addr, conn));
                }
                out
            }
        }
    }

    /// Subscribes to `channel` and unsubscribes, as the client's
    /// subscriber would (sharded on a cluster), on a connection of its own
    /// to each server that waiters listen to: what each answered.
    pub(crate) async fn try_subscribe(
        &self,
        channel: &[u8],
    ) -> Vec<(String, redis::RedisResult<()>)> {
        match self {
            Backend::Cluster(c) => {
                let (tx, _rx) = tokio::sync::mpsc::unbounded_channel::<redis::PushInfo>();
                let subscribed = async {
                    let client = c
                        .settings()
                        .builder(c.timeouts())
                        .use_protocol(redis::ProtocolVersion::RESP3)
                        .push_sender(tx)
                        .build()?;
                    let mut conn = client.get_async_connection().await?;
                    conn.ssubscribe(channel).await?;
                    conn.sunsubscribe(channel).await
                };
                vec![(c.addr().to_owned(), subscribed.await)]
            }
            Backend::Single(_) | Backend::Redlock(_) => {
                let clients: Vec<redis::Client> = match self {
                    Backend::Single(s) => vec![s.node.redis()],
                    Backend::Redlock(r) => r.redis_clients(),
                    Backend::Cluster(_) => unreachable!("above"),
                };
                let mut out = Vec::new();
                for client in clients {
                    let addr = client.get_connection_info().addr().to_string();
                    let subscribed = async {
                        let mut pubsub = client.get_async_pubsub().await?;
                        pubsub.subscribe(channel).await?;
                        pubsub.unsubscribe(channel).await
                    };
                    out.push((addr, subscribed.await));
                }
                out
            }
        }
    }
}

impl Backend {
    /// How long one command waits for its reply, for checks of the deployment.
    pub(crate) fn reply_timeout(&self) -> std::time::Duration {
        self.response_timeout()
    }
}
