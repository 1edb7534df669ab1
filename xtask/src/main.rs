//! `cargo xtask`: the project's chores, runnable the same way locally and in CI.
//!
//! - `setup`: make sure `redis-server`, `redis-cli`, `redis-sentinel` and
//!   `faketime` are installed (tests need a real Redis; the fault suite its
//!   tools).
//! - `test`: setup, `cargo fmt --check`, `layers`, `cargo clippy -D
//!   warnings`, the workspace's docs with warnings denied, `cargo test`
//!   (clippy and tests with the library's `metrics` feature), then the
//!   fault suite's quick set (`torture --quick`), and one scenario each
//!   over TLS (`--tls`) and through Sentinel (`--sentinel`).
//! - `layers`: the library's modules import downward only, never in a
//!   cycle (see [`layers`]): `[--json | --dot] [--src DIR]`.
//! - `torture`: setup, then the fault suite (`leasehold-torture`, release
//!   build): `[--quick] [--scenario NAME] [--soak 10m] [--json]
//!   [--cluster | --redlock | --sentinel] [--tls]` (a 3-master cluster, 5
//!   independent masters with faults on them, or a master, its replica and
//!   3 sentinels with failovers; every client over TLS).
//! - `demo`: setup, then `leasehold demo` (it starts its own throwaway Redis).
//! - `bench`: setup, then `leasehold bench` built with `--release` on a private
//!   redis-server, then the peers of `../shared/peers` on the same server.
//!   `bench --redlock`: R1 to R4 instead, leasehold's and the peers' Redlock
//!   harness's, interleaved on 5 private masters. `bench --interleave K`:
//!   W1 and W2 of leasehold, node-redlock and rslock, K interleaved passes
//!   on one server, medians and spreads (see BENCH.md at the root).
//!
//! xtask's own messages go to stderr so `demo` and `bench` output stays clean.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

mod layers;

/// Project chores for leasehold.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Make sure redis-server, redis-cli, redis-sentinel and faketime are
    /// installed; installs them with apt-get when root.
    Setup,
    /// setup, then cargo fmt --check, the layers check, clippy -D
    /// warnings, the workspace's docs (warnings denied) and the test suite.
    ///
    /// Extra arguments go to `cargo test --workspace`, e.g.
    /// `cargo xtask test -- lease` or `cargo xtask test -- -- --nocapture`.
    Test {
        /// Arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Check that the library's modules use only modules of lower layers
    /// (the table in xtask/src/layers.rs), with no cycle; print the module
    /// graph and the files that call Redis directly.
    ///
    /// Reads the source only: no build. Exits non-zero on a cycle, a use
    /// against the layers, or a module missing from the table.
    Layers {
        /// Print the report as one JSON object.
        #[arg(long, conflicts_with = "dot")]
        json: bool,
        /// Print the graph for graphviz (`| dot -Tsvg`).
        #[arg(long)]
        dot: bool,
        /// The library's source directory [default: crates/leasehold/src].
        #[arg(long, value_name = "DIR")]
        src: Option<PathBuf>,
    },
    /// setup, then the fault suite (release build): workers on one lease
    /// under injected faults, checked for two holders at once, lost
    /// updates, stale writes, slow recovery and leftovers.
    ///
    /// `cargo xtask torture [--quick] [--scenario NAME] [--soak 10m]
    /// [--json] [--list] [--history DIR] [--cluster | --redlock] [--tls]`
    /// (--tls: every client of the lock connects by rediss://, trusting a
    /// CA generated for the run). Exits non-zero when a scenario breaches
    /// (or the control arm does not).
    Torture {
        /// Arguments for `leasehold-torture`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// setup, then run `leasehold demo` against a throwaway redis-server.
    Demo {
        /// Arguments for `leasehold demo`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// setup, then `leasehold bench` (release build) on a private
    /// redis-server, then the peer libraries of ../shared/peers on the same
    /// server, and the ratio leasehold / best peer.
    ///
    /// xtask's own flags: --no-peers (leasehold only), --quick-peers (the
    /// peers' W2/W3 cut to 2 s), --peers DIR (the peers' scripts; default
    /// ../shared/peers beside the workspace), --peers-work DIR (where the peers are
    /// copied and set up; default a directory under the system's temporary
    /// one). With --url URL, that server is used instead of a private one.
    ///
    /// --redlock: R1 to R4 (Redlock over 5 masters) instead: leasehold's
    /// and the peers' Redlock harness (`run-redlock.sh`'s scripts) on the
    /// same 5 private masters, leasehold before each peer library and after
    /// the last, then one table with the ratio of leasehold's median to the
    /// best peer (about 4 minutes; with --quick-peers about 2, leasehold's
    /// R2/R3 cut to 2 s too). --node-timeout-ms N (default 50) is R4's
    /// per-node timeout for the peers that let one be set, as in
    /// `run-redlock.sh`; leasehold runs with its default.
    ///
    /// --interleave K: W1 and W2 only, K passes on one server (private, or
    /// --url), each running leasehold (W0 cut to the raw client's floor, so
    /// that each pass has its own), node-redlock and rslock (QUICK=1,
    /// stopped once they printed W1 and W2) in an order that rotates; then
    /// each library's median and spread (min-max) and the ratios of the
    /// medians, with BENCH.md's targets (W1 cycles/s >= 1.2 x best peer, W1
    /// p50 <= 1.25 x raw_cycle_p50, W2 >= 1.2 x rslock). With --json, one
    /// record per pass and library, per library and per ratio. About 15 s
    /// a pass. The workloads, floors and targets: BENCH.md at the
    /// repository's root.
    Bench {
        /// Arguments for `leasehold bench`: [W1|..|W6|all] [--json]
        /// [--duration D] [--workers N] [--url URL] [--cluster-url URL]...
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// Why a task failed, and the exit code to report it with.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(message: impl fmt::Display) -> Failure {
        Failure {
            message: message.to_string(),
            code: 1,
        }
    }
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup => setup(),
        Task::Test { args } => test(args),
        Task::Layers { json, dot, src } => check_layers(src, |report| {
            if json {
                println!("{}", report.json());
            } else if dot {
                print!("{}", report.dot());
            } else {
                print!("{}", report.text());
            }
        }),
        Task::Demo { args } => setup().and_then(|()| {
            run(cargo(["run", "--quiet", "-p", "leasehold-cli", "--", "demo"]).args(args))
        }),
        Task::Bench { args } => setup().and_then(|()| bench(args)),
        Task::Torture { args } => setup()
            .and_then(|()| run(&mut torture_build()))
            .and_then(|()| run(&mut torture(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("xtask: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// `cargo xtask bench`: leasehold's workloads, then the peers', on one
/// server, in one run.
///
/// The workloads run as `leasehold bench --json` and their rows go to a
/// file; `leasehold-bench-peers` (a binary of the bench crate) prints them as a
/// table, sets up and runs the peers (copied out of the read-only
/// `../shared/peers`, never into the repository) against the same server,
/// and prints the comparison.
fn bench(args: Vec<OsString>) -> Result<(), Failure> {
    let mut peers_flags: Vec<OsString> = Vec::new();
    let mut bench_args: Vec<OsString> = Vec::new();
    let mut url: Option<OsString> = None;
    let mut redlock = false;
    let mut interleave: Option<OsString> = None;
    let mut peers_dir: Option<PathBuf> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--redlock") => redlock = true,
            Some("--interleave") => interleave = args.next(),
            Some(a) if a.starts_with("--interleave=") => {
                interleave = Some(a["--interleave=".len()..].into());
            }
            Some("--peers") => peers_dir = args.next().map(PathBuf::from),
            Some("--peers-work") => {
                peers_flags.push("--work".into());
                peers_flags.extend(args.next());
            }
            Some("--node-timeout-ms") => {
                peers_flags.push(arg);
                peers_flags.extend(args.next());
            }
            Some("--no-peers") => peers_flags.push("--no-peers".into()),
            Some("--quick-peers") => peers_flags.push("--quick".into()),
            Some("--json") => {
                peers_flags.push("--json".into());
                bench_args.push(arg);
            }
            Some("--url") => url = args.next(),
            Some(a) if a.starts_with("--url=") => url = Some(a["--url=".len()..].into()),
            _ => bench_args.push(arg),
        }
    }
    let interleave = match interleave.map(|k| k.to_string_lossy().parse::<usize>()) {
        None => None,
        Some(Ok(k)) if k > 0 => Some(k),
        Some(_) => {
            return Err(Failure {
                message: "--interleave takes a number of passes, at least 1".into(),
                code: 2,
            });
        }
    };
    if redlock && interleave.is_some() {
        return Err(Failure {
            message: "--redlock and --interleave are two different runs: give one".into(),
            code: 2,
        });
    }
    // Built first, so that compiling is not part of the run.
    run(&mut cargo([
        "build",
        "--quiet",
        "--release",
        "-p",
        "leasehold-cli",
        "-p",
        "leasehold-bench",
        "--bins",
    ]))?;
    if redlock {
        return bench_redlock(peers_flags, bench_args, url, peers_dir);
    }
    if let Some(k) = interleave {
        return bench_interleave(k, peers_flags, bench_args, url, peers_dir);
    }
    let server;
    let url = match url {
        Some(url) => url,
        None => {
            server = testkit::RedisServer::start().map_err(Failure::new)?;
            eprintln!("xtask: private redis-server at {}", server.url());
            server.url().into()
        }
    };
    let rows = std::env::temp_dir().join(format!("leasehold-bench-{}.jsonl", std::process::id()));
    let rows_file = std::fs::File::create(&rows)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", rows.display())))?;
    // `leasehold bench` (the bench crate's own `leasehold-bench` binary
    // takes the same flags, for profiling without the CLI).
    let mut workloads = cargo([
        "run",
        "--quiet",
        "--release",
        "-p",
        "leasehold-cli",
        "--",
        "bench",
    ]);
    workloads
        .arg("--url")
        .arg(&url)
        .arg("--json")
        .args(bench_args.iter().filter(|a| *a != "--json"))
        .stdout(rows_file);
    let measured = run(&mut workloads);
    if measured.is_err() {
        peers_flags.push("--no-peers".into());
    }
    let mut compare = cargo([
        "run",
        "--quiet",
        "--release",
        "-p",
        "leasehold-bench",
        "--bin",
        "leasehold-bench-peers",
        "--",
    ]);
    compare
        .arg("--rows")
        .arg(&rows)
        .arg("--url")
        .arg(&url)
        .arg("--peers")
        .arg(peers_dir.unwrap_or_else(default_peers))
        .args(&peers_flags);
    let compared = run(&mut compare);
    let _ = std::fs::remove_file(&rows);
    measured.and(compared)
}

/// `cargo xtask bench --redlock`: `leasehold-bench-peers --redlock`,
/// which starts the 5 masters, runs leasehold's R1 to R4 (through the bench
/// library, as `leasehold bench redlock` does) interleaved with the peers'
/// Redlock harness on them, and prints the comparison. `run-redlock.sh`
/// starts masters of its own on fixed ports, so its scripts are run with
/// the environment it would give them, on the shared masters.
fn bench_redlock(
    peers_flags: Vec<OsString>,
    bench_args: Vec<OsString>,
    url: Option<OsString>,
    peers_dir: Option<PathBuf>,
) -> Result<(), Failure> {
    if url.is_some() || !bench_args.iter().all(|a| a == "--json") {
        return Err(Failure {
            message: format!(
                "bench --redlock starts its own 5 masters and takes only --quick-peers, --no-peers, --peers DIR, --peers-work DIR, --json and --node-timeout-ms N; not {}",
                bench_args
                    .iter()
                    .filter(|a| *a != "--json")
                    .map(|a| a.to_string_lossy())
                    .chain(url.iter().map(|_| "--url".into()))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            code: 2,
        });
    }
    let mut compare = cargo([
        "run",
        "--quiet",
        "--release",
        "-p",
        "leasehold-bench",
        "--bin",
        "leasehold-bench-peers",
        "--",
        "--redlock",
    ]);
    compare
        .arg("--peers")
        .arg(peers_dir.unwrap_or_else(default_peers))
        .args(&peers_flags);
    run(&mut compare)
}

/// `cargo xtask bench --interleave K`: `leasehold-bench-peers --interleave
/// K`, which runs leasehold's W1 and W2 (through the bench library, W0 cut
/// to the raw floor) and node-redlock's and rslock's scripts K times in
/// turn on one server, and prints medians, spreads and ratios.
fn bench_interleave(
    k: usize,
    peers_flags: Vec<OsString>,
    bench_args: Vec<OsString>,
    url: Option<OsString>,
    peers_dir: Option<PathBuf>,
) -> Result<(), Failure> {
    if !bench_args.iter().all(|a| a == "--json") {
        return Err(Failure {
            message: format!(
                "bench --interleave runs W1 and W2 and takes only --url URL, --no-peers, --peers DIR, --peers-work DIR and --json; not {}",
                bench_args
                    .iter()
                    .filter(|a| *a != "--json")
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            code: 2,
        });
    }
    let mut compare = cargo([
        "run",
        "--quiet",
        "--release",
        "-p",
        "leasehold-bench",
        "--bin",
        "leasehold-bench-peers",
        "--",
    ]);
    compare
        .arg("--interleave")
        .arg(k.to_string())
        .arg("--peers")
        .arg(peers_dir.unwrap_or_else(default_peers))
        .args(&peers_flags);
    if let Some(url) = url {
        compare.arg("--url").arg(url);
    }
    run(&mut compare)
}

/// The peers' scripts: `../shared/peers` beside the workspace.
fn default_peers() -> PathBuf {
    workspace_root().join("../shared/peers")
}

/// `cargo xtask layers`: checks the library's source in `src` (by default
/// `crates/leasehold/src`) against [`layers::TABLE`], hands the report to
/// `show`, and fails when the layers are broken.
fn check_layers(src: Option<PathBuf>, show: impl FnOnce(&layers::Report)) -> Result<(), Failure> {
    let root = workspace_root();
    let (src, shown) = match src {
        Some(src) => (src.clone(), src),
        None => {
            let shown = PathBuf::from("crates/leasehold/src");
            (root.join(&shown), shown)
        }
    };
    let report = layers::check(&src, &shown, layers::TABLE).map_err(Failure::new)?;
    show(&report);
    if report.ok() {
        Ok(())
    } else {
        Err(Failure::new(
            "the library's modules break their layers (see above); fix the use, \
             or move the module in LAYERS (xtask/src/layers.rs) if the layering changed",
        ))
    }
}

/// The Debian packages the tests and the fault suite need, and a binary
/// that shows each is installed.
const PACKAGES: &[(&str, &str)] = &[
    ("redis-server", "redis-server"),
    ("redis-tools", "redis-cli"),
    ("redis-sentinel", "redis-sentinel"),
    ("faketime", "faketime"),
    // `leasehold top`'s test runs it in a real terminal.
    ("tmux", "tmux"),
];

/// Ensures `redis-server` can be found the way testkit finds it, and the
/// fault suite's tools (`redis-cli`, `redis-sentinel`, `faketime`) and `tmux` are on
/// `PATH`; installs what is missing with apt-get when root.
fn setup() -> Result<(), Failure> {
    // Installing a package would not fix a wrong LEASEHOLD_REDIS_SERVER.
    let server_missing = match testkit::redis_server_binary() {
        Ok(_) => false,
        Err(e @ testkit::Error::NotFound { env: Some(_) }) => return Err(Failure::new(e)),
        Err(_) => true,
    };
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(package, binary)| {
            if *package == "redis-server" {
                server_missing
            } else {
                !on_path(binary)
            }
        })
        .map(|(package, _)| *package)
        .collect();
    if !missing.is_empty() {
        let list = missing.join(" ");
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Failure::new(format!(
                "{list} not installed and installing needs root; run:\n  \
                 sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y {list}\n\
                 (or point LEASEHOLD_REDIS_SERVER at a redis-server binary)"
            )));
        }
        eprintln!("xtask: {list} not found; installing with apt-get");
        let mut install = vec!["install", "-y"];
        install.extend(&missing);
        for args in [&["update"][..], &install] {
            // No stdin and a noninteractive frontend: CI has nobody to answer prompts.
            let mut apt = Command::new("apt-get");
            apt.args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null());
            run(&mut apt).map_err(|f| Failure {
                message: format!(
                    "{}\ninstall {list} with your system's package manager instead",
                    f.message
                ),
                ..f
            })?;
        }
    }
    let binary = testkit::redis_server_binary().map_err(Failure::new)?;
    report_version(&binary)
}

/// Is an executable `name` on `PATH`?
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join(name)
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Builds `leasehold-torture` and the `leasehold` CLI (its `leasehold run`
/// workers) with `--release`: the suite's timings assume optimised workers.
fn torture_build() -> Command {
    cargo([
        "build",
        "--quiet",
        "--release",
        "-p",
        "torture",
        "-p",
        "leasehold-cli",
        "--bins",
    ])
}

/// `leasehold-torture ARGS`, as built by [`torture_build`], run from the
/// workspace root.
fn torture(args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>) -> Command {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let mut command = Command::new(target.join("release").join("leasehold-torture"));
    command.args(args).current_dir(workspace_root());
    command
}

fn report_version(binary: &Path) -> Result<(), Failure> {
    let output = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Failure::new(format!("could not run {}: {e}", binary.display())))?;
    let version = String::from_utf8_lossy(&output.stdout);
    eprintln!(
        "xtask: redis-server found: {} ({})",
        binary.display(),
        version.trim()
    );
    Ok(())
}

/// One step of `cargo xtask test`.
enum Step {
    Setup,
    Layers,
    Run(Command),
}

/// The checks CI runs, in order, stopping at the first failure.
fn test(test_args: Vec<OsString>) -> Result<(), Failure> {
    // With the library's `metrics` feature, so that its tests run too (as
    // clippy's; the docs step builds the library without it).
    let mut cargo_test = cargo(["test", "--workspace", "--features", "leasehold/metrics"]);
    cargo_test.args(test_args);
    // Every crate's docs build without a broken link or a bad example.
    let mut docs = cargo(["doc", "--workspace", "--no-deps"]);
    docs.env("RUSTDOCFLAGS", "-D warnings");
    let mut steps: Vec<(&str, Step)> = vec![
        ("setup", Step::Setup),
        ("fmt", Step::Run(cargo(["fmt", "--all", "--", "--check"]))),
        // Reads the source only: seconds, before the first build.
        ("layers", Step::Layers),
        (
            "clippy",
            Step::Run(cargo([
                "clippy",
                "--workspace",
                "--all-targets",
                "--features",
                "leasehold/metrics",
                "--",
                "-D",
                "warnings",
            ])),
        ),
        ("docs", Step::Run(docs)),
        ("test", Step::Run(cargo_test)),
        // The fault suite's quick set: a few seconds per scenario.
        ("build", Step::Run(torture_build())),
        ("torture", Step::Run(torture(["--quick"]))),
        // The same workers over TLS, and through Sentinel across
        // failovers: one scenario each here, every one with
        // `cargo xtask torture --tls` / `--sentinel`.
        (
            "tls",
            Step::Run(torture(["--quick", "--tls", "--scenario", "chaos"])),
        ),
        (
            "sentinel",
            Step::Run(torture([
                "--quick",
                "--sentinel",
                "--scenario",
                "sentinel-failover",
            ])),
        ),
    ];

    let total = steps.len();
    let mut timings: Vec<(&str, Duration)> = Vec::new();
    let mut outcome = Ok(());
    for (i, (name, step)) in steps.iter_mut().enumerate() {
        let what = match step {
            Step::Setup => "cargo xtask setup".to_owned(),
            Step::Layers => "cargo xtask layers".to_owned(),
            Step::Run(command) => show(command),
        };
        eprintln!("\n==> [{}/{total}] {name}: {what}", i + 1);
        let started = Instant::now();
        let result = match step {
            Step::Setup => setup(),
            // The report on stderr, with the other steps' output.
            Step::Layers => check_layers(None, |report| eprint!("{}", report.text())),
            Step::Run(command) => run(command),
        };
        timings.push((name, started.elapsed()));
        if let Err(failure) = result {
            outcome = Err(Failure {
                message: format!("step `{name}` failed: {}", failure.message),
                code: 1,
            });
            break;
        }
    }

    eprintln!("\n==> time per step");
    for (name, elapsed) in &timings {
        eprintln!("    {name:<8} {:>7.1}s", elapsed.as_secs_f64());
    }
    if outcome.is_ok() {
        eprintln!("==> all {total} steps passed");
    }
    outcome
}

/// A `cargo` command run from the workspace root. `$CARGO` is the cargo that
/// runs xtask, so the same toolchain builds everything.
fn cargo<const N: usize>(args: [&str; N]) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.args(args).current_dir(workspace_root());
    command
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_owned()
}

/// Runs `command` to completion; a non-zero exit becomes a [`Failure`] with
/// the same exit code.
fn run(command: &mut Command) -> Result<(), Failure> {
    let status = command
        .status()
        .map_err(|e| Failure::new(format!("could not run `{}`: {e}", show(command))))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure {
            message: format!("`{}` {}", show(command), describe(status)),
            code: exit_code(status),
        })
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("failed ({status})"),
    }
}

/// The child's exit code, or 128 + signal as a shell reports it.
fn exit_code(status: ExitStatus) -> u8 {
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    u8::try_from(code).ok().filter(|&c| c != 0).unwrap_or(1)
}

/// `program arg...` for messages; `$CARGO` is shown as plain `cargo`.
fn show(command: &Command) -> String {
    let program = Path::new(command.get_program());
    let program = program.file_name().unwrap_or(program.as_os_str());
    std::iter::once(program)
        .chain(command.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
