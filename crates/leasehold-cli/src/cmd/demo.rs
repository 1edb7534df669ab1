//! `demo`: the tutorials' scenarios, live (see the leasehold-demo crate).

use std::io::IsTerminal;
use std::process::ExitCode;

use leasehold_demo::{Options, Scenario, Sizes, Target};

use crate::cli::{Cli, DemoArgs};
use crate::cmd::Address;
use crate::exit::Exit;
use crate::output;

/// Runs one scenario or all four, against the given server or cluster, or
/// a private redis-server (a private 3-master cluster with `--cluster` and
/// no URL).
pub async fn run(cli: &Cli, address: &Address, args: &DemoArgs) -> leasehold::Result<ExitCode> {
    let scenarios = match args.scenario {
        None => Scenario::ALL.to_vec(),
        Some(s) => vec![s],
    };
    // No address given: a private, throwaway server or cluster, stopped on
    // return (also when a signal or a closed stdout drops this future).
    let (_server, _cluster, target) = match address {
        Address::Server(url) => (None, None, Target::Server(url.clone())),
        Address::Cluster(seeds) => (None, None, Target::Cluster(seeds.clone())),
        Address::Redlock(_) => {
            output::error(
                "demo: its scenarios keep their data beside the lease (single-flight's cache, the stock), which independent masters cannot: run it on one server (--url) or a Redis Cluster (--cluster)",
            );
            return Ok(Exit::Usage.into());
        }
        Address::Unset => match testkit::RedisServer::start() {
            Ok(server) => {
                let url = server.url();
                if !cli.json {
                    output::error(&format!(
                        "started a private redis-server at {url} for the demo"
                    ));
                }
                (Some(server), None, Target::Server(url))
            }
            Err(e) => {
                output::error(&e.to_string());
                return Ok(Exit::Failure.into());
            }
        },
        Address::PrivateCluster => {
            let started = tokio::task::spawn_blocking(|| {
                testkit::RedisCluster::start_with(testkit::ClusterOptions {
                    masters: 3,
                    replicas_per_master: 0,
                    ..Default::default()
                })
            })
            .await;
            match started {
                Ok(Ok(cluster)) => {
                    let seeds = cluster.seeds();
                    if !cli.json {
                        output::error(&format!(
                            "started a private 3-master Redis Cluster at {} for the demo",
                            seeds.join(" ")
                        ));
                    }
                    (None, Some(cluster), Target::Cluster(seeds))
                }
                Ok(Err(e)) => {
                    output::error(&format!("cannot start a private Redis Cluster: {e}"));
                    return Ok(Exit::Failure.into());
                }
                Err(e) => {
                    output::error(&format!("cannot start a private Redis Cluster: {e}"));
                    return Ok(Exit::Failure.into());
                }
            }
        }
    };
    let opts = Options {
        target,
        sizes: Sizes::default(),
        progress: !cli.json && std::io::stderr().is_terminal(),
    };
    let json = cli.json;
    let result = leasehold_demo::run(&opts, &scenarios, &mut |event| {
        if json {
            output::line(&event.json());
        } else {
            output::line(&event.human());
        }
    })
    .await;
    match result {
        Ok(()) => Ok(Exit::Success.into()),
        Err(e) => {
            output::error(&format!("the demo failed: {e}"));
            Ok(Exit::Failure.into())
        }
    }
}
