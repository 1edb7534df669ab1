//! `demo`: the tutorials' scenarios, live (see the leasehold-demo crate).

use std::io::IsTerminal;
use std::process::ExitCode;

use leasehold_demo::{Options, Scenario, Sizes};

use crate::cli::{Cli, DemoArgs};
use crate::cmd::Address;
use crate::exit::Exit;
use crate::output;

/// Runs one scenario or all four, against the given server or a private
/// redis-server; not on a Redis Cluster yet.
pub async fn run(cli: &Cli, address: &Address, args: &DemoArgs) -> leasehold::Result<ExitCode> {
    let scenarios = match args.scenario {
        None => Scenario::ALL.to_vec(),
        Some(s) => vec![s],
    };
    // No address given: a private, throwaway server, stopped on return
    // (also when a signal or a closed stdout drops this future).
    let (_server, url) = match address {
        Address::Server(url) => (None, url.clone()),
        Address::Cluster(_) => {
            output::error(
                "demo on a Redis Cluster (--cluster) is not built yet; give demo one server's --url, or none for a private redis-server",
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
                (Some(server), url)
            }
            Err(e) => {
                output::error(&e.to_string());
                return Ok(Exit::Failure.into());
            }
        },
    };
    let opts = Options {
        url,
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
