//! `leasehold-torture`: runs the fault suite and prints one row per
//! scenario. Exits 1 when a scenario fails (a breach, or a control arm
//! that did not fail), 2 when the suite cannot run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use torture::report::{self, Verdict};
use torture::scenarios::Backend;
use torture::{scenarios, workers};

/// The fault suite of leasehold.
#[derive(Parser)]
#[command(name = "leasehold-torture")]
struct Cli {
    /// The quick set (CI): a few seconds per scenario.
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (repeatable); see --list.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Repeat the full set (or the chosen scenarios) for this long, e.g. 10m.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    soak: Option<Duration>,
    /// JSON Lines on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Write each scenario's history (JSON Lines) into this directory.
    #[arg(long, value_name = "DIR")]
    history: Option<std::path::PathBuf>,
    /// List the scenarios and exit (with --cluster or --redlock: those
    /// that run there).
    #[arg(long)]
    list: bool,
    /// Run the scenarios that apply against a 3-master Redis Cluster (one
    /// replica each where masters fail over) instead of one server.
    #[arg(long, conflicts_with = "redlock")]
    cluster: bool,
    /// Run the scenarios that apply against 5 independent masters
    /// (Redlock clients, and faults on the masters) instead of one server.
    #[arg(long, conflicts_with = "sentinel")]
    redlock: bool,
    /// Every client of the lock (workers, the control arm, `leasehold
    /// run`) connects by rediss://, trusting a CA testkit generates for
    /// the lock's servers; the faults keep the servers' plain ports.
    /// With --cluster or --redlock too.
    #[arg(long)]
    tls: bool,
    /// Run the scenarios that apply through Redis Sentinel (a master, its
    /// replica, 3 sentinels; the workers follow failovers) instead of one
    /// server.
    #[arg(long, conflicts_with_all = ["cluster", "redlock", "tls"])]
    sentinel: bool,
    #[command(subcommand)]
    worker: Option<Worker>,
}

#[derive(Subcommand)]
enum Worker {
    /// Internal: run as a worker process (events on stdout).
    #[command(hide = true)]
    Worker {
        /// The worker configuration, as JSON.
        #[arg(long)]
        config: String,
        /// How long to run.
        #[arg(long)]
        run_for_ms: u64,
    },
    /// Internal: the command `leasehold run` runs (fenced read, work,
    /// fenced write; events on stdout).
    #[command(hide = true)]
    Hold {
        /// The fenced store's URL.
        #[arg(long)]
        store: String,
        /// The worker's name in the history.
        #[arg(long)]
        worker: String,
        /// About how long the work takes.
        #[arg(long)]
        work_ms: u64,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 10m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{s}`: use s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Some(Worker::Hold {
        store,
        worker,
        work_ms,
    }) = &cli.worker
    {
        return match runtime.block_on(workers::hold_main(store, worker, *work_ms)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("leasehold-torture hold: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Worker::Worker { config, run_for_ms }) = cli.worker {
        let cfg: workers::WorkerConfig = match serde_json::from_str(&config) {
            Ok(cfg) => cfg,
            Err(e) => {
                eprintln!("leasehold-torture worker: bad --config: {e}");
                return ExitCode::from(2);
            }
        };
        return match runtime.block_on(workers::process_main(
            cfg,
            Duration::from_millis(run_for_ms),
        )) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("leasehold-torture worker: {e}");
                ExitCode::from(2)
            }
        };
    }
    let all = scenarios::all();
    let backend = match (cli.cluster, cli.redlock, cli.sentinel) {
        (true, ..) => Backend::Cluster,
        (_, true, _) => Backend::Redlock,
        (.., true) => Backend::Sentinel,
        _ => Backend::Single,
    };
    if cli.list {
        for s in all.iter().filter(|s| s.runs_on(backend)) {
            let quick = if s.quick { " (quick)" } else { "" };
            let runs_on: Vec<&str> = [
                (Backend::Single, "one server"),
                (Backend::Cluster, "cluster"),
                (Backend::Redlock, "redlock"),
                (Backend::Sentinel, "sentinel"),
            ]
            .into_iter()
            .filter(|(b, _)| s.runs_on(*b))
            .map(|(_, name)| name)
            .collect();
            println!("{}{quick} (on {})", s.name, runs_on.join(", "));
        }
        return ExitCode::SUCCESS;
    }
    let chosen: Vec<_> = if cli.scenarios.is_empty() {
        all.iter()
            .filter(|s| (s.quick || !cli.quick) && s.runs_on(backend))
            .cloned()
            .collect()
    } else {
        let mut chosen = Vec::new();
        for name in &cli.scenarios {
            match all.iter().find(|s| s.name == name) {
                Some(s) if s.runs_on(backend) => chosen.push(s.clone()),
                Some(s) => {
                    let there: Vec<&str> = [
                        Backend::Single,
                        Backend::Cluster,
                        Backend::Redlock,
                        Backend::Sentinel,
                    ]
                    .into_iter()
                    .filter(|b| s.runs_on(*b))
                    .map(Backend::flag)
                    .collect();
                    eprintln!(
                        "leasehold-torture: scenario `{name}` does not run {}; run it {} (--list shows where each runs)",
                        backend.flag(),
                        there.join(" or ")
                    );
                    return ExitCode::from(2);
                }
                None => {
                    eprintln!("leasehold-torture: no scenario `{name}`; --list shows them");
                    return ExitCode::from(2);
                }
            }
        }
        chosen
    };
    let started = Instant::now();
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .expect("a valid template"),
    );
    let mut rows = Vec::new();
    let mut round = 0;
    let mut not_run = 0;
    loop {
        round += 1;
        for scenario in &chosen {
            match runtime.block_on(scenarios::run(
                scenario,
                cli.quick,
                backend,
                cli.tls,
                &progress,
                cli.history.as_deref(),
            )) {
                Ok(row) => {
                    progress.suspend(|| {
                        if cli.json {
                            println!("{}", report::json_line("scenario", &row));
                        } else {
                            eprintln!(
                                "{}: {} ({:.1} s){}",
                                row.scenario,
                                row.verdict.label(),
                                row.seconds,
                                row.findings
                                    .overlap_example
                                    .as_ref()
                                    .map_or(String::new(), |e| format!("; e.g. {e}"))
                            );
                            for e in row.fault_errors.iter().take(3) {
                                eprintln!("  fault not injected: {e}");
                            }
                        }
                    });
                    rows.push(row);
                }
                Err(e) => {
                    progress.suspend(|| {
                        eprintln!(
                            "leasehold-torture: scenario {} could not run: {e}",
                            scenario.name
                        )
                    });
                    not_run += 1;
                }
            }
        }
        match cli.soak {
            Some(d) if started.elapsed() < d => {
                progress.set_message(format!("soak round {round} done"));
            }
            _ => break,
        }
    }
    progress.finish_and_clear();
    let failed = rows.iter().filter(|r| r.verdict == Verdict::Fail).count();
    if cli.json {
        println!(
            "{}",
            report::json_line(
                "summary",
                &serde_json::json!({"scenarios": rows.len(), "failed": failed, "not_run": not_run, "cluster": cli.cluster, "redlock": cli.redlock, "tls": cli.tls, "sentinel": cli.sentinel, "seconds": started.elapsed().as_secs_f64()})
            )
        );
    } else {
        print!("{}", report::table(&rows));
        println!(
            "{} scenario runs{}{}, {failed} failed, {:.0} s",
            rows.len(),
            backend.label(),
            if cli.tls { " over TLS" } else { "" },
            started.elapsed().as_secs_f64()
        );
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
