//! `leasehold-bench-peers`: after a `leasehold bench --json` run, runs the
//! peer libraries of `shared/peers/` against the same server and prints
//! leasehold's table, the peers' figures and the ratio leasehold / best peer.
//! `cargo xtask bench` calls it.
//!
//! ```text
//! leasehold-bench-peers --rows ROWS.jsonl --url URL --peers DIR [--work DIR] [--quick] [--json]
//! leasehold-bench-peers --redlock --peers DIR [--work DIR] [--quick] [--json] [--node-timeout-ms 50]
//! leasehold-bench-peers --interleave K --peers DIR [--work DIR] [--url URL] [--json] [--no-peers]
//! ```
//!
//! With `--interleave K`: on one server (`--url`, else a private one), K
//! passes, each running leasehold's W1 and W2 (in this process, W0 cut to
//! the raw client's floor, so that each pass has its own), node-redlock's
//! and rslock's scripts (`QUICK=1`, stopped once they printed W1 and W2),
//! in an order that rotates by one each pass; then the median and spread of
//! each library's figures and the ratios of the medians (see
//! `leasehold_bench::peers::summarize`). Progress on stderr; `--json` prints
//! one record per pass and library, per library and per ratio.
//!
//! With `--redlock`: starts 5 private masters, and on them runs leasehold's
//! R1 to R4 (in this process, through `leasehold_bench::run`) before each
//! library of the peers' Redlock harness and once more at the end
//! (leasehold, pottery, leasehold, node-redlock, leasehold, rslock,
//! leasehold), the masters flushed before each step; then prints
//! leasehold's passes and their median, the peers' figures, and the median
//! over the best peer. `run-redlock.sh` itself starts masters of its own
//! on fixed ports, so its scripts are run here with the environment it
//! would give them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use leasehold_bench::{Options, Row, Sizes, Workload, peers};

/// Compares a leasehold bench run with the peer libraries on the same server.
///
/// A flag given twice counts once: `cargo xtask bench --no-peers` adds its
/// own `--no-peers` when the measured run failed.
#[derive(Parser)]
#[command(name = "leasehold-bench-peers", args_override_self = true)]
struct Args {
    /// leasehold's rows, as `leasehold bench --json` printed them.
    #[arg(long, required_unless_present_any = ["redlock", "interleave"])]
    rows: Option<PathBuf>,
    /// The server leasehold was measured on (with --interleave: the server
    /// to run on [default: a private one]).
    #[arg(long, required_unless_present_any = ["redlock", "interleave"])]
    url: Option<String>,
    /// Interleaved mode: K passes of leasehold's W1 and W2, node-redlock's
    /// and rslock's, on one server; medians, spreads, ratios of medians.
    #[arg(long, value_name = "K", conflicts_with_all = ["rows", "redlock"])]
    interleave: Option<usize>,
    /// Redlock mode: R1 to R4 of leasehold and of the peers' Redlock
    /// harness on 5 private masters, interleaved.
    #[arg(long, conflicts_with_all = ["rows", "url"])]
    redlock: bool,
    /// Redlock mode: R4's per-node timeout for the peers that let one be
    /// set (`NODE_TIMEOUT_MS`, as in `run-redlock.sh`).
    #[arg(long, default_value_t = 50)]
    node_timeout_ms: u64,
    /// Redlock mode: leasehold's per-node timeout [default: the library's,
    /// what its users get].
    #[arg(long)]
    leasehold_node_timeout_ms: Option<u64>,
    /// The peers' scripts (shared/peers/); read only, copied to --work.
    #[arg(long)]
    peers: PathBuf,
    /// Where to copy and set up the peers [default: a directory under the
    /// system's temporary directory, kept between runs].
    #[arg(long)]
    work: Option<PathBuf>,
    /// QUICK=1 for the peers: W2 and W3 (R2 and R3) cut to 2 s, R4 to 5 s;
    /// leasehold's the same.
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
    if args.redlock {
        return redlock(&args);
    }
    if let Some(k) = args.interleave {
        return interleave(&args, k);
    }
    let (Some(rows), Some(url)) = (&args.rows, &args.url) else {
        unreachable!("clap requires --rows and --url without --redlock");
    };
    let text = match std::fs::read_to_string(rows) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("leasehold-bench-peers: cannot read {}: {e}", rows.display());
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
    let work = work_dir(&args);
    let mut problems = match peers::prepare(&args.peers, &work) {
        Ok(p) => p,
        Err(e) => {
            println!("\npeers: could not copy {}: {e}", args.peers.display());
            return ExitCode::SUCCESS;
        }
    };
    let run = peers::run_all(&work, url, args.quick);
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

fn work_dir(args: &Args) -> PathBuf {
    args.work
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("leasehold-bench-peers"))
}

/// Prints `text` on stdout, or on stderr with `--json` (stdout is rows).
fn say(args: &Args, text: &str) {
    if args.json {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

/// `--redlock`: see the crate's docs above.
fn redlock(args: &Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leasehold-bench-peers: cannot start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let work = work_dir(args);
    let mut problems = Vec::new();
    let have_peers = args.peers.is_dir() && !args.no_peers;
    if have_peers {
        match peers::prepare(&args.peers, &work) {
            Ok(p) => problems.extend(p),
            Err(e) => problems.push(format!("could not copy {}: {e}", args.peers.display())),
        }
    } else if !args.no_peers {
        problems.push(format!(
            "{} not found; no comparison with the peer libraries",
            args.peers.display()
        ));
    }
    let servers = match testkit::RedisServer::start_many(5) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("leasehold-bench-peers: cannot start 5 redis-servers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let masters = peers::RedlockMasters {
        ports: servers.iter().map(|s| s.port()).collect(),
        pids: servers.iter().filter_map(|s| s.pid()).collect(),
        node_timeout_ms: args.node_timeout_ms,
        quick: args.quick,
    };
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    eprintln!(
        "peers: 5 private masters on ports {:?}, pids {:?}",
        masters.ports, masters.pids
    );
    let libraries = if have_peers {
        peers::redlock_peers()
    } else {
        Vec::new()
    };
    let mut passes: Vec<Vec<Row>> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    // leasehold before each library and once after the last.
    for step in 0..=libraries.len() {
        flush(&urls);
        eprintln!(
            "peers: running leasehold (Redlock, R1-R4), pass {}",
            step + 1
        );
        let mut rows = Vec::new();
        let opts = Options {
            workloads: Workload::REDLOCK.to_vec(),
            redlock: Some(urls.clone()),
            node_timeout: args.leasehold_node_timeout_ms.map(Duration::from_millis),
            duration: args.quick.then_some(Duration::from_secs(2)),
            sizes: Sizes {
                r4_max_duration: Duration::from_secs(if args.quick { 5 } else { 20 }),
                ..Sizes::default()
            },
            ..Options::default()
        };
        let result = runtime.block_on(leasehold_bench::run(opts, &mut |r| rows.push(r)));
        thaw(&masters.pids);
        if let Err(e) = result {
            problems.push(format!("leasehold, pass {}: {e}", step + 1));
        }
        passes.push(rows);
        if let Some(library) = libraries.get(step) {
            flush(&urls);
            let run = peers::run_redlock(&work, library, &masters);
            thaw(&masters.pids);
            problems.extend(run.problems);
            lines.extend(run.lines);
        }
    }
    let _ = std::fs::write(work.join("last-redlock-run.jsonl"), lines.join("\n") + "\n");
    if args.json {
        for (i, pass) in passes.iter().enumerate() {
            for row in pass {
                let mut row = row.clone();
                let pass_note = format!("pass {} of {}", i + 1, passes.len());
                row.note = Some(match row.note {
                    Some(n) => format!("{pass_note}; {n}"),
                    None => pass_note,
                });
                println!("{}", leasehold_bench::row_json(&row));
            }
        }
    }
    let (table, medians) = peers::format_passes(&passes);
    let mut report = format!(
        "## leasehold R1-R4 on 5 masters, pass by pass (one before each peer library and one after the last)\n\n{table}"
    );
    if !libraries.is_empty() {
        report.push_str(&format!(
            "\n## peers' Redlock harness (same 5 masters, same run; R4's node timeout {} ms where settable)\n\n{}\n## leasehold (median of its passes) / best peer (leasehold's node timeout: {})\n\n{}",
            args.node_timeout_ms,
            peers::format_redlock_peer_table(&lines),
            args.leasehold_node_timeout_ms
                .map_or("the library's default".to_owned(), |ms| format!("{ms} ms")),
            peers::format_comparison(&peers::compare_redlock(&medians, &lines)),
        ));
    }
    say(args, &report);
    if !problems.is_empty() {
        let list: String = problems.iter().map(|p| format!("  - {p}\n")).collect();
        say(
            args,
            &format!("\nsteps that could not be set up or run (the others went on):\n{list}"),
        );
    }
    drop(servers);
    ExitCode::SUCCESS
}

/// The peers of the interleaved mode, in their first pass's order.
const INTERLEAVED_PEERS: [&str; 2] = ["node-redlock", "rslock"];

/// `--interleave K`: see the crate's docs above.
fn interleave(args: &Args, k: usize) -> ExitCode {
    if k == 0 {
        eprintln!("leasehold-bench-peers: --interleave needs at least 1 pass");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leasehold-bench-peers: cannot start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let work = work_dir(args);
    // Why a peer cannot run at all; every pass reports it as missing.
    let mut unavailable: Option<String> = None;
    if args.no_peers {
        unavailable = Some("--no-peers".into());
    } else if !args.peers.is_dir() {
        unavailable = Some(format!("{} not found", args.peers.display()));
    } else {
        match peers::prepare_only(
            &args.peers,
            &work,
            &[peers::Toolchain::Node, peers::Toolchain::Rust],
        ) {
            // A failed set-up shows in each pass as "not set up" or the
            // script's failure; here it is said once.
            Ok(problems) => {
                for p in problems {
                    eprintln!("peers: set-up problem: {p}");
                }
            }
            Err(e) => unavailable = Some(format!("could not copy {}: {e}", args.peers.display())),
        }
    }
    let server;
    let url = match &args.url {
        Some(url) => url.clone(),
        None => match testkit::RedisServer::start() {
            Ok(s) => {
                server = s;
                eprintln!("interleave: private redis-server at {}", server.url());
                server.url()
            }
            Err(e) => {
                eprintln!("leasehold-bench-peers: cannot start a redis-server: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut libraries = vec![peers::LEASEHOLD];
    libraries.extend(INTERLEAVED_PEERS);
    let mut results: Vec<peers::PassResult> = Vec::new();
    for pass in 1..=k {
        let mut order = libraries.clone();
        order.rotate_left((pass - 1) % libraries.len());
        let mut this_pass = Vec::new();
        let mut floor = None;
        for library in order {
            eprintln!("interleave: pass {pass}/{k}: {library}");
            if library == peers::LEASEHOLD {
                let mut rows = Vec::new();
                let opts = Options {
                    url: Some(url.clone()),
                    workloads: vec![Workload::W1, Workload::W2],
                    // The peers' QUICK W2 cap.
                    duration: Some(Duration::from_secs(2)),
                    sizes: Sizes {
                        w0_floor_only: true,
                        ..Sizes::default()
                    },
                    ..Options::default()
                };
                let result = runtime.block_on(leasehold_bench::run(opts, &mut |r| rows.push(r)));
                floor = rows
                    .iter()
                    .find(|r| r.workload == "W0" && r.figure == "raw_cycle_p50_us")
                    .map(|r| r.value);
                let mut problem = result.err().map(|e| e.to_string());
                if floor.is_none() {
                    let why = rows
                        .iter()
                        .find(|r| r.figure == "raw_floor_measured")
                        .and_then(|r| r.note.clone())
                        .unwrap_or_else(|| "no raw floor".into());
                    problem = Some(match problem {
                        Some(p) => format!("{p}; {why}"),
                        None => why,
                    });
                }
                this_pass.push(peers::PassResult::from_rows(pass, &rows, None, problem));
            } else if let Some(why) = &unavailable {
                this_pass.push(peers::PassResult::from_peer_lines(
                    pass,
                    library,
                    &[] as &[&str],
                    None,
                    std::slice::from_ref(why),
                ));
            } else {
                let run = peers::run_one(&work, library, &url, true, &["W1", "W2"]);
                this_pass.push(peers::PassResult::from_peer_lines(
                    pass,
                    library,
                    &run.lines,
                    None,
                    &run.problems,
                ));
            }
        }
        for mut r in this_pass {
            r.raw_cycle_p50_us = floor;
            eprintln!(
                "interleave: pass {pass}/{k}: {:<12} W1 {} cycles/s, p50 {} us, W2 {} cycles/s{}",
                r.library,
                show(r.w1_cycles_per_s),
                show(r.w1_p50_us),
                show(r.w2_cycles_per_s),
                r.problem
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            );
            results.push(r);
        }
    }
    let summary = peers::summarize(&results);
    let report = format!(
        "## leasehold, node-redlock, rslock interleaved: W1 and W2 (peers with QUICK=1; the order rotates each pass)\n\n{}",
        peers::format_interleave(&summary)
    );
    if args.json {
        for line in peers::interleave_json(&results, &summary) {
            println!("{line}");
        }
    }
    say(args, &report);
    ExitCode::SUCCESS
}

/// A figure for a progress line.
fn show(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}"))
}

/// FLUSHALL on every master, so that each step starts from the same state.
fn flush(urls: &[String]) {
    for url in urls {
        let done = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("FLUSHALL").query::<()>(&mut c));
        if let Err(e) = done {
            eprintln!("peers: FLUSHALL on {url} failed: {e}");
        }
    }
}

/// SIGCONT to every master, in case a step was stopped while two were
/// frozen (the scripts and leasehold's R4 thaw them themselves).
fn thaw(pids: &[u32]) {
    for &pid in pids {
        // SAFETY: kill(2) has no memory effects; the pids are our own
        // children's (the masters started above).
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGCONT);
        }
    }
}
