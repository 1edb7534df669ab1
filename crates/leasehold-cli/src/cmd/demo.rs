//! `demo`: the tutorials' scenarios, live (see the leasehold-demo crate).

use std::io::IsTerminal;
use std::process::ExitCode;

use leasehold_demo::{Options, Scenario, Sizes};

use crate::cli::{Cli, DemoArgs};
use crate::exit::Exit;
use crate::output;

/// Runs one scenario or all four, against `url` or a private redis-server.
pub async fn run(cli: &Cli, url: Option<String>, args: &DemoArgs) -> leasehold::Result<ExitCode> {
    let scenarios = match &args.scenario {
        None => Scenario::ALL.to_vec(),
        Some(name) => match name.parse::<Scenario>() {
            Ok(s) => vec![s],
            Err(why) => {
                eprintln!("leasehold: {why}");
                return Ok(Exit::Usage.into());
            }
        },
    };
    // No address given: a private, throwaway server, stopped on return.
    let (_server, url) = match url {
        Some(url) => (None, url),
        None => match testkit::RedisServer::start() {
            Ok(server) => {
                let url = server.url();
                if !cli.json {
                    eprintln!("leasehold: started a private redis-server at {url} for the demo");
                }
                (Some(server), url)
            }
            Err(e) => {
                eprintln!("leasehold: {e}");
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
            eprintln!("leasehold: the demo failed: {e}");
            Ok(Exit::Failure.into())
        }
    }
}
