//! The `leasehold` command line (placeholder until the CLI issue lands).

use clap::Parser;

/// Distributed leases on Redis: run commands under a lease across machines.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
