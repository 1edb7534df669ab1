//! `leasehold-bench-peers`: after a `leasehold bench --json` run, runs the
//! peer libraries of `shared/peers/` against the same server and prints
//! leasehold's table, the peers' figures and the ratio leasehold / best peer.
//! `cargo xtask bench` calls it.
//!
//! ```text
//! leasehold-bench-peers --rows ROWS.jsonl --url URL --peers DIR [--work DIR] [--quick] [--json]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use leasehold_bench::peers;

/// Compares a leasehold bench run with the peer libraries on the same server.
///
/// A flag given twice counts once: `cargo xtask bench --no-peers` adds its
/// own `--no-peers` when the measured run failed.
#[derive(Parser)]
#[command(name = "leasehold-bench-peers", args_override_self = true)]
struct Args {
    /// leasehold's rows, as `leasehold bench --json` printed them.
    #[arg(long)]
    rows: PathBuf,
    /// The server leasehold was measured on.
    #[arg(long)]
    url: String,
    /// The peers' scripts (shared/peers/); read only, copied to --work.
    #[arg(long)]
    peers: PathBuf,
    /// Where to copy and set up the peers [default: a directory under the
    /// system's temporary directory, kept between runs].
    #[arg(long)]
    work: Option<PathBuf>,
    /// QUICK=1 for the peers: W2 and W3 cut to 2 s.
    #[arg(long)]
    quick: bool,
    /// Print leasehold's rows as JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Print leasehold's rows only; run no peer.
    #[arg(long)]
    no_peers: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = match std::fs::read_to_string(&args.rows) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "leasehold-bench-peers: cannot read {}: {e}",
                args.rows.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let rows: Vec<_> = text
        .lines()
        .filter_map(leasehold_bench::parse_row_json)
        .collect();
    if args.json {
        for row in &rows {
            println!("{}", leasehold_bench::row_json(row));
        }
    } else {
        println!("## leasehold\n");
        leasehold_bench::print_table(&rows);
    }
    if args.no_peers {
        return ExitCode::SUCCESS;
    }
    if !args.peers.is_dir() {
        println!(
            "\npeers: {} not found; no comparison with the peer libraries",
            args.peers.display()
        );
        return ExitCode::SUCCESS;
    }
    let work = args
        .work
        .unwrap_or_else(|| std::env::temp_dir().join("leasehold-bench-peers"));
    let mut problems = match peers::prepare(&args.peers, &work) {
        Ok(p) => p,
        Err(e) => {
            println!("\npeers: could not copy {}: {e}", args.peers.display());
            return ExitCode::SUCCESS;
        }
    };
    let run = peers::run_all(&work, &args.url, args.quick);
    problems.extend(run.problems.iter().cloned());
    // The peers' rows are kept next to their copy, for a later look.
    let _ = std::fs::write(work.join("last-run.jsonl"), run.lines.join("\n") + "\n");
    let report = format!(
        "\n## peers (same server, same run)\n\n{}\n## leasehold / best peer\n\n{}",
        peers::format_peer_table(&run.lines),
        peers::format_comparison(&peers::compare(&rows, &run.lines)),
    );
    if args.json {
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    if !problems.is_empty() {
        let list: String = problems.iter().map(|p| format!("  - {p}\n")).collect();
        let msg = format!("\npeers that could not be set up or run (the others went on):\n{list}");
        if args.json {
            eprint!("{msg}");
        } else {
            print!("{msg}");
        }
    }
    ExitCode::SUCCESS
}
