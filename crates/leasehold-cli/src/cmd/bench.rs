//! `bench`: the workloads of the repository's BENCH.md (see the
//! leasehold-bench crate).

use std::io::IsTerminal;
use std::process::ExitCode;

use leasehold_bench::{Options, WorkloadArg};

use crate::cli::{BenchArgs, Cli};
use crate::cmd::Address;
use crate::exit::Exit;
use crate::output;

/// Runs the chosen workloads against the given server or a private
/// redis-server, W6 beside a Redis Cluster (`--cluster-url`, or
/// `--cluster --url`, else a private one), R1 to R4 on Redlock's masters
/// (several `--url`, else 5 private ones, with `--node-timeout`), then
/// prints one table (or JSON rows).
pub async fn run(cli: &Cli, address: &Address, args: &BenchArgs) -> leasehold::Result<ExitCode> {
    let given = (!args.cluster_url.is_empty()).then(|| args.cluster_url.clone());
    let (url, cluster, masters) = match address {
        Address::Unset | Address::PrivateCluster => (None, given, None),
        Address::Server(url) => (Some(url.clone()), given, None),
        Address::Cluster(_) if given.is_some() => {
            output::error(
                "bench: give W6's cluster once, either as --cluster --url SEED... or as --cluster-url SEED... beside one server's --url",
            );
            return Ok(Exit::Usage.into());
        }
        // The seeds are W6's cluster; the one server is a private one.
        Address::Cluster(seeds) => (None, Some(seeds.clone()), None),
        // The masters are R1 to R4's; W workloads get a private server.
        Address::Redlock(masters) => (None, given, Some(masters.clone())),
    };
    let opts = Options {
        url,
        cluster,
        redlock: masters,
        node_timeout: Some(cli.node_timeout),
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
