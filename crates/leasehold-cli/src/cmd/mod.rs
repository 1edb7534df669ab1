//! One module per command, and the connection they share.

pub mod bench;
pub mod demo;
pub mod doctor;
pub mod inspect;
pub mod run;
pub mod tokens;
pub mod top;

use leasehold::Client;

use crate::cli::{Cli, Command};

/// The default address, when none is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// Where Redis is, from `--url`, `--cluster` and the environment. `main`
/// works it out once, before anything connects or runs, so that a refused
/// form is exit 2 for every command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// Nothing given: [`DEFAULT_URL`], or a private server (`demo`, `bench`).
    Unset,
    /// One server.
    Server(String),
    /// Seeds of one Redis Cluster (`--cluster`); the rest is discovered.
    Cluster(Vec<String>),
    /// Independent masters (several URLs without `--cluster`): Redlock.
    Redlock(Vec<String>),
    /// `--cluster` without a URL, for `demo` and `bench` only: a private,
    /// throwaway cluster they start themselves.
    PrivateCluster,
}

impl Address {
    /// `--url` (given once or more), else `LEASEHOLD_URL` (several URLs
    /// separated by commas), else `REDIS_URL` (always one URL); empty
    /// variables count as unset. `--cluster` or `LEASEHOLD_CLUSTER` make
    /// them a cluster's seeds. clap's `env` takes one variable, and splits
    /// no commas, so the variables are read here.
    ///
    /// Several URLs without `--cluster` are Redlock's independent masters.
    ///
    /// Err is the one-line reason for a refusal (exit 2): `--cluster` without a URL
    /// (but for `demo` and `bench`, which start a private cluster), a seed
    /// that is no Redis URL (named), a bad `LEASEHOLD_CLUSTER`.
    pub fn of(cli: &Cli) -> Result<Address, String> {
        let private = matches!(cli.command, Command::Demo(_) | Command::Bench(_));
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(service) = &cli.sentinel {
            // The sentinels' addresses, from where URLs come from.
            let listed = if cli.url.is_empty() {
                env("LEASEHOLD_URL")
                    .map(|v| v.split(',').map(|u| u.trim().to_owned()).collect())
                    .or_else(|| env("REDIS_URL").map(|u| vec![u]))
                    .unwrap_or_default()
            } else {
                cli.url.clone()
            };
            return sentinel(listed, service);
        }
        resolve(&cli.url, cli.cluster, private, env)
    }

    /// Whether it names a Redis Cluster (whose failures get their own
    /// hints: [`crate::output::failure`]).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Address::Cluster(_) | Address::PrivateCluster)
    }
}

/// [`Address::of`], with the environment as a function (for the tests).
fn resolve(
    urls: &[String],
    cluster_flag: bool,
    private_cluster: bool,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Address, String> {
    let var = |name| env(name).filter(|s: &String| !s.is_empty());
    let cluster = cluster_flag
        || match var("LEASEHOLD_CLUSTER") {
            None => false,
            Some(v) => yes(&v).ok_or_else(|| {
                format!(
                    "LEASEHOLD_CLUSTER=`{v}` is neither yes nor no: set it to 1, true or yes for a Redis Cluster, or 0, false, no (or leave it unset) for one server"
                )
            })?,
        };
    let listed = var("LEASEHOLD_URL").map(|v| {
        if v.trim_start().starts_with("redis+sentinel://") {
            // One URL, whose commas separate its sentinels.
            return vec![v.trim().to_owned()];
        }
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    });
    let (urls, from) = if !urls.is_empty() {
        (urls.to_vec(), "--url")
    } else if let Some(listed) = listed.filter(|l| !l.is_empty()) {
        (listed, "LEASEHOLD_URL")
    } else if let Some(url) = var("REDIS_URL") {
        (vec![url], "REDIS_URL")
    } else {
        (Vec::new(), "")
    };
    if cluster {
        let asked = if cluster_flag {
            "--cluster"
        } else {
            "LEASEHOLD_CLUSTER"
        };
        if urls.is_empty() && private_cluster {
            return Ok(Address::PrivateCluster);
        }
        if urls.is_empty() {
            return Err(format!(
                "{asked} needs the URL of at least one node of the cluster: give --url redis://host:port (once per seed), or LEASEHOLD_URL with the URLs separated by commas"
            ));
        }
        for url in &urls {
            seed(url).map_err(|why| {
                format!(
                    "`{}` (in {from}) is not the URL of a cluster node: {why}; use redis://host:port or rediss://host:port",
                    redact(url)
                )
            })?;
        }
        return Ok(Address::Cluster(urls));
    }
    match <[String; 1]>::try_from(urls) {
        Ok([url]) => Ok(Address::Server(url)),
        Err(urls) if urls.is_empty() => Ok(Address::Unset),
        Err(urls) => {
            for url in &urls {
                redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(|e| {
                    format!(
                        "`{}` (in {from}) is not the URL of a Redis master: {e}; use redis://host:port, rediss://host:port or unix:///path",
                        redact(url)
                    )
                })?;
            }
            Ok(Address::Redlock(urls))
        }
    }
}

/// `--sentinel NAME`: the addresses given are sentinels of service NAME,
/// as one `redis+sentinel://` URL.
fn sentinel(urls: Vec<String>, service: &str) -> Result<Address, String> {
    let urls: Vec<String> = urls.into_iter().filter(|u| !u.is_empty()).collect();
    if urls.is_empty() {
        return Err(format!(
            "--sentinel {service} needs the sentinels' addresses: give --url redis://host:26379 once per sentinel, or LEASEHOLD_URL with them separated by commas"
        ));
    }
    if service.is_empty() || service.contains(['/', ',']) {
        return Err(format!(
            "--sentinel `{service}` is no service name: give the name of the sentinels' `sentinel monitor` line"
        ));
    }
    let mut userinfo = None;
    let mut hosts = Vec::with_capacity(urls.len());
    for url in &urls {
        let rest = url.strip_prefix("redis://").unwrap_or(url);
        if rest.contains("://") {
            return Err(format!(
                "`{}` is no sentinel address for --sentinel: use redis://host:port or host:port",
                redact(url)
            ));
        }
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.rsplit_once('@') {
            Some((user, host)) => {
                userinfo.get_or_insert(user);
                host
            }
            None => authority,
        };
        if host.is_empty() {
            return Err(format!("`{}` has no host for --sentinel", redact(url)));
        }
        hosts.push(host);
    }
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    Ok(Address::Server(format!(
        "redis+sentinel://{userinfo}{}/{service}",
        hosts.join(",")
    )))
}

/// `LEASEHOLD_CLUSTER`'s value as a yes or a no, as people write them.
fn yes(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Some(true),
        "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Checks a seed as the library will read it, so that a bad one in a list
/// is named here; the library's own refusal names the whole list. Cluster
/// nodes are reached over TCP: no unix socket.
fn seed(url: &str) -> Result<(), String> {
    use redis::{ConnectionAddr, IntoConnectionInfo};
    let info = url.into_connection_info().map_err(|e| e.to_string())?;
    match info.addr() {
        ConnectionAddr::Tcp(..) | ConnectionAddr::TcpTls { .. } => Ok(()),
        _ => Err("cluster nodes are reached over TCP, not a unix socket".into()),
    }
}

/// A URL without its password, to print.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// How long a command waits, before it exits, for the releases its client
/// still runs in the background (see [`Client::settle`]).
const SETTLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits until the releases `client` still runs in the background are
/// done (at most [`SETTLE_WITHIN`]), before the process exits and its
/// runtime stops them: those of an acquire cut short by a signal, or over
/// Redlock those of the masters a release did not wait for once a
/// majority answered. Their leases would stay held until their TTL.
pub async fn settle(client: &Client) {
    client.settle(SETTLE_WITHIN).await;
}

/// [`connect`], keeping the client in `connected` for the caller to
/// [`settle`] however the command ends.
pub async fn connect_kept(
    cli: &Cli,
    address: &Address,
    connected: &std::sync::OnceLock<Client>,
) -> leasehold::Result<Client> {
    let client = connect(cli, address).await?;
    let _ = connected.set(client.clone());
    Ok(client)
}

/// Connects to `address` (one server, [`DEFAULT_URL`] when unset, or a
/// cluster through its seeds) with the command line's timeouts. Every
/// command that talks to the user's Redis comes through here.
///
/// # Cancel safety
///
/// Dropping the future leaves nothing behind.
pub async fn connect(cli: &Cli, address: &Address) -> leasehold::Result<Client> {
    let mut builder = Client::builder().connect_timeout(cli.connect_timeout);
    if let Some(ca) = &cli.tls_ca {
        builder = builder.tls_ca_file(ca);
    }
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        builder = builder.tls_client_cert_files(cert, key);
    }
    if let Some(count) = cli.replicas {
        builder = builder.replicas(count, cli.replicas_timeout);
    }
    match address {
        Address::Unset => builder.connect(DEFAULT_URL).await,
        Address::Server(url) => builder.connect(url).await,
        Address::Cluster(seeds) => builder.cluster(seeds).connect().await,
        Address::Redlock(masters) => {
            builder
                .redlock(masters)
                .node_timeout(cli.node_timeout)
                .connect()
                .await
        }
        // Only demo and bench get it, and they start their own; the
        // library refuses a cluster without seeds.
        Address::PrivateCluster => builder.cluster(Vec::<String>::new()).connect().await,
    }
}

#[cfg(test)]
mod tests {
    use super::{Address, resolve, sentinel};

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn urls(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    const A: &str = "redis://10.0.0.1:7000";
    const B: &str = "redis://10.0.0.2:7000";

    #[test]
    fn one_url_from_the_flag_then_the_variables() {
        assert_eq!(resolve(&[], false, false, env(&[])), Ok(Address::Unset));
        let vars = [("LEASEHOLD_URL", A), ("REDIS_URL", B)];
        assert_eq!(
            resolve(&urls(&[B]), false, false, env(&vars)),
            Ok(Address::Server(B.into()))
        );
        assert_eq!(
            resolve(&[], false, false, env(&vars)),
            Ok(Address::Server(A.into()))
        );
        let vars = [("LEASEHOLD_URL", " , "), ("REDIS_URL", B)];
        assert_eq!(
            resolve(&[], false, false, env(&vars)),
            Ok(Address::Server(B.into()))
        );
    }

    #[test]
    fn several_urls_are_seeds_with_cluster_and_redlock_masters_without() {
        let both = urls(&[A, B]);
        assert_eq!(
            resolve(&both, true, false, env(&[])),
            Ok(Address::Cluster(both.clone()))
        );
        assert_eq!(
            resolve(&both, false, false, env(&[])),
            Ok(Address::Redlock(both.clone()))
        );
        let listed = format!("{A}, {B},");
        let vars = [("LEASEHOLD_URL", listed.as_str())];
        assert_eq!(
            resolve(&[], false, false, env(&vars)),
            Ok(Address::Redlock(both.clone()))
        );
        let err = resolve(&urls(&[A, "http://u:pw@x:1"]), false, false, env(&[])).unwrap_err();
        assert!(
            err.starts_with("`http://***@x:1` (in --url) is not the URL of a Redis master"),
            "{err}"
        );
        for yes in ["1", "true", "YES"] {
            let vars = [
                ("LEASEHOLD_URL", listed.as_str()),
                ("LEASEHOLD_CLUSTER", yes),
            ];
            assert_eq!(
                resolve(&[], false, false, env(&vars)),
                Ok(Address::Cluster(both.clone()))
            );
        }
        let vars = [("LEASEHOLD_URL", A), ("LEASEHOLD_CLUSTER", "0")];
        assert_eq!(
            resolve(&[], false, false, env(&vars)),
            Ok(Address::Server(A.into()))
        );
        let vars = [("LEASEHOLD_CLUSTER", "maybe")];
        let err = resolve(&urls(&[A]), false, false, env(&vars)).unwrap_err();
        assert!(err.contains("`maybe`"), "{err}");
        // REDIS_URL stays one URL: one seed.
        let vars = [("REDIS_URL", A)];
        assert_eq!(
            resolve(&[], true, false, env(&vars)),
            Ok(Address::Cluster(urls(&[A])))
        );
    }

    #[test]
    fn sentinel_addresses_become_one_sentinel_url() {
        let both = urls(&["redis://:pw@s1:26379", "s2:26380"]);
        assert_eq!(
            sentinel(both, "orders"),
            Ok(Address::Server(
                "redis+sentinel://:pw@s1:26379,s2:26380/orders".into()
            ))
        );
        // LEASEHOLD_URL holding a Sentinel URL is one URL, commas and all.
        let url = "redis+sentinel://s1:26379,s2:26379/orders";
        let vars = [("LEASEHOLD_URL", url)];
        assert_eq!(
            resolve(&[], false, false, env(&vars)),
            Ok(Address::Server(url.into()))
        );
        let err = sentinel(Vec::new(), "orders").unwrap_err();
        assert!(err.contains("needs the sentinels' addresses"), "{err}");
        let one = urls(&["redis://s1:26379"]);
        assert!(
            sentinel(one, "a/b")
                .unwrap_err()
                .contains("no service name")
        );
        let tls = urls(&["rediss://u:secret@s1:26379"]);
        let err = sentinel(tls, "orders").unwrap_err();
        assert!(
            err.contains("no sentinel address") && !err.contains("secret"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_seed_is_named_without_its_password() {
        let err = resolve(&urls(&[A, "http://x:1"]), true, false, env(&[])).unwrap_err();
        assert!(err.starts_with("`http://x:1` (in --url)"), "{err}");
        let err = resolve(&urls(&["unix:///tmp/r.sock"]), true, false, env(&[])).unwrap_err();
        assert!(err.contains("unix socket"), "{err}");
        let err = resolve(&urls(&["redis://u:secret@:1"]), true, false, env(&[])).unwrap_err();
        assert!(
            err.contains("redis://***@:1") && !err.contains("secret"),
            "{err}"
        );
        let err = resolve(&[], true, false, env(&[])).unwrap_err();
        assert!(err.starts_with("--cluster needs the URL"), "{err}");
        let err = resolve(&[], false, false, env(&[("LEASEHOLD_CLUSTER", "yes")])).unwrap_err();
        assert!(err.starts_with("LEASEHOLD_CLUSTER needs the URL"), "{err}");
    }

    /// demo and bench start a cluster of their own when none is given.
    #[test]
    fn a_cluster_without_url_is_a_private_one_where_one_can_be_started() {
        assert_eq!(
            resolve(&[], true, true, env(&[])),
            Ok(Address::PrivateCluster)
        );
        assert_eq!(
            resolve(&[], false, true, env(&[("LEASEHOLD_CLUSTER", "1")])),
            Ok(Address::PrivateCluster)
        );
        assert_eq!(
            resolve(&urls(&[A]), true, true, env(&[])),
            Ok(Address::Cluster(vec![A.into()]))
        );
        assert_eq!(resolve(&[], false, true, env(&[])), Ok(Address::Unset));
    }
}
