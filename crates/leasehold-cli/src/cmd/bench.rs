//! `bench`: the workloads of BENCH.md (see the leasehold-bench crate).

use std::io::IsTerminal;
use std::process::ExitCode;

use leasehold_bench::{Options, WorkloadArg};

use crate::cli::{BenchArgs, Cli};
use crate::cmd::Address;
use crate::exit::Exit;
use crate::output;

/// Runs the chosen workloads against the given server or a private
/// redis-server (not a Redis Cluster yet), then prints one table (or JSON
/// rows).
pub async fn run(cli: &Cli, address: &Address, args: &BenchArgs) -> leasehold::Result<ExitCode> {
    let url = match address {
        Address::Unset => None,
        Address::Server(url) => Some(url.clone()),
        Address::Cluster(_) => {
            output::error(
                "bench on a Redis Cluster (--cluster) is not built yet; give bench one server's --url, or none for a private redis-server",
            );
            return Ok(Exit::Usage.into());
        }
    };
    let opts = Options {
        url,
        workloads: WorkloadArg::expand(&args.workloads),
        duration: args.duration,
        workers: args.workers,
        progress: std::io::stderr().is_terminal(),
        ..Options::default()
    };
    let json = cli.json;
    let mut rows = Vec::new();
    let result = leasehold_bench::run(opts, &mut |row| {
        if json {
            output::line(&leasehold_bench::row_json(&row));
        }
        rows.push(row);
    })
    .await;
    if !json {
        leasehold_bench::print_table(&rows);
    }
    match result {
        Ok(()) => Ok(Exit::Success.into()),
        Err(e) => {
            output::error(&format!("the benchmark failed: {e}"));
            Ok(Exit::Failure.into())
        }
    }
}
