//! `leasehold-bench`: the workloads of BENCH.md (at the repository's root)
//! from the command line, with the flags of `leasehold bench` (which calls
//! the same library). W0's rows, the raw client's floor among them, come
//! first whenever one of W1 to W4 runs.
//!
//! ```text
//! leasehold-bench [W0|..|W6|all|R1|..|R4|redlock]... [--json] [--duration D] [--workers N]
//!                 [--url URL] [--cluster-url URL]... [--master URL]... [--node-timeout D]
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use leasehold_bench::{Options, WorkloadArg};

/// Runs the workloads of BENCH.md (at the repository's root: the workloads,
/// the floors, the targets) against Redis and prints one table (or, with
/// --json, one JSON object per line). W0, the floors (the raw blocking
/// client's `raw_*` rows first), runs whenever one of W1 to W4 does.
#[derive(Parser)]
#[command(name = "leasehold-bench")]
struct Args {
    /// Workloads to run: W0 (the floors alone), W1 to W6, all (the default:
    /// W1 to W6; W0 comes first whenever one of W1 to W4 runs), R1 to R4,
    /// redlock (R1 to R4); case does not matter, commas may separate them.
    #[arg(value_name = "WORKLOAD", ignore_case = true, value_delimiter = ',')]
    workloads: Vec<WorkloadArg>,
    /// Print one JSON object per figure and line instead of a table.
    #[arg(long)]
    json: bool,
    /// How long W3 runs, and W2's time cap (default 10s).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Workers of W2 (default 64) and W3 (default 16).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// The Redis server; without it a private redis-server is started.
    #[arg(long, env = "LEASEHOLD_URL")]
    url: Option<String>,
    /// W6: a seed of the Redis Cluster to measure beside the server (once
    /// per seed); without it W6 starts a private 3-master cluster.
    #[arg(long, value_name = "URL")]
    cluster_url: Vec<String>,
    /// R1 to R4: a Redlock master (once per master); without it R1 to R4
    /// start 5 private masters.
    #[arg(long, value_name = "URL")]
    master: Vec<String>,
    /// R1 to R4: the per-node timeout of the Redlock client [default: the
    /// library's].
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    node_timeout: Option<Duration>,
    /// No progress bars on stderr.
    #[arg(long)]
    no_progress: bool,
    /// For profiling: fraction of W0's request counts (1.0).
    #[arg(long, hide = true, default_value_t = 1.0)]
    w0_scale: f64,
    /// For profiling: run on a current-thread runtime instead of the
    /// multi-threaded one.
    #[arg(long, hide = true)]
    current_thread: bool,
    /// For profiling: W2's cycle budget (50,000).
    #[arg(long, hide = true)]
    w2_cycles: Option<u64>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    leasehold_bench::parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    match runtime {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => {
            eprintln!("leasehold-bench: cannot start a tokio runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> ExitCode {
    let mut sizes = leasehold_bench::Sizes {
        w0_scale: args.w0_scale,
        ..Default::default()
    };
    if let Some(n) = args.w2_cycles {
        sizes.w2_max_cycles = n;
    }
    let opts = Options {
        url: args.url,
        cluster: (!args.cluster_url.is_empty()).then_some(args.cluster_url),
        redlock: (!args.master.is_empty()).then_some(args.master),
        node_timeout: args.node_timeout,
        workloads: WorkloadArg::expand(&args.workloads),
        duration: args.duration,
        workers: args.workers,
        progress: !args.no_progress,
        sizes,
    };
    let mut rows = Vec::new();
    let json = args.json;
    let result = leasehold_bench::run(opts, &mut |row| {
        if json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", leasehold_bench::row_json(&row));
            let _ = out.flush();
        }
        rows.push(row);
    })
    .await;
    if !json {
        leasehold_bench::print_table(&rows);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leasehold-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
