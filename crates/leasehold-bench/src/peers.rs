//! The peer libraries side by side: runs the scripts of `shared/peers/`
//! (redis-py, python-redis-lock, pottery, node-redlock, rslock) against the
//! server leasehold was just measured on, and compares.
//!
//! `cargo xtask bench` uses this through the `leasehold-bench-peers`
//! binary. The scripts are never copied into the repository: [`prepare`]
//! copies them into a work directory (under the system's temporary
//! directory by default) and sets them up there (a Python venv, `npm
//! install`, a release build of the rslock harness). Set-up needs the
//! package registries (PyPI, npm, crates.io); a peer that cannot be set up
//! or run is reported as a problem and the others go on.
//!
//! Each peer script prints one JSON object per line (`lib`, `workload`,
//! `variant` and its figures); [`compare`] picks the best peer for each of
//! leasehold's headline figures.

use std::fmt::Write as _;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Error;
use crate::report::{Row, fmt_num};

/// Copies `source` (the read-only `shared/peers/`) into `work` and sets the
/// peers up there, each independently: Python (venv + pip), node (`npm
/// install`), rslock (`cargo build --release`). Set-up output goes to
/// stderr. Returns the problems met (empty when all went well).
///
/// `work` is kept between runs, so the second set-up is quick.
///
/// # Errors
///
/// Only when `source` cannot be copied.
pub fn prepare(source: &Path, work: &Path) -> Result<Vec<String>, Error> {
    copy_tree(source, work)?;
    let mut problems = Vec::new();
    let mut step = |what: &str, cmd: &mut Command| {
        eprintln!("peers: {what}");
        if let Err(why) = run_quietly(cmd) {
            problems.push(format!("{what}: {why}"));
        }
    };
    if !work.join(".venv/bin/python").is_file() {
        step(
            "python3 -m venv .venv",
            Command::new("python3")
                .args(["-m", "venv", ".venv"])
                .current_dir(work),
        );
    }
    if work.join(".venv/bin/python").is_file() {
        step(
            "pip install -r python/requirements.txt",
            Command::new(work.join(".venv/bin/pip"))
                .args(["install", "-q", "-r", "python/requirements.txt"])
                .current_dir(work),
        );
    }
    step(
        "npm install (node/)",
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent"])
            .current_dir(work.join("node")),
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    step(
        "cargo build --release (rust/, rslock)",
        Command::new(cargo)
            .args(["build", "--release", "--quiet"])
            .env("CARGO_TARGET_DIR", work.join("rust/target"))
            .current_dir(work.join("rust")),
    );
    Ok(problems)
}

/// One peer script.
struct Step {
    name: &'static str,
    program: &'static str,
    args: &'static [&'static str],
    timeout: Duration,
}

const STEPS: [Step; 7] = [
    Step {
        name: "redis-py",
        program: ".venv/bin/python",
        args: &["python/bench_redispy.py"],
        timeout: Duration::from_secs(120),
    },
    Step {
        name: "redis-py-async",
        program: ".venv/bin/python",
        args: &["python/bench_redispy_async.py"],
        timeout: Duration::from_secs(120),
    },
    Step {
        name: "python-redis-lock",
        program: ".venv/bin/python",
        args: &["python/bench_prl.py"],
        timeout: Duration::from_secs(120),
    },
    Step {
        name: "pottery",
        program: ".venv/bin/python",
        args: &["python/bench_pottery.py"],
        timeout: Duration::from_secs(120),
    },
    Step {
        name: "node-redlock",
        program: "node",
        args: &["node/bench_redlock.js"],
        timeout: Duration::from_secs(120),
    },
    Step {
        name: "rslock",
        program: "rust/target/release/peers-rslock",
        args: &[],
        timeout: Duration::from_secs(120),
    },
    Step {
        name: "W4 flash sale (redis-py)",
        program: ".venv/bin/python",
        args: &["python/flash_sale.py"],
        timeout: Duration::from_secs(200),
    },
];

/// What [`run_all`] collected.
#[derive(Debug, Clone, Default)]
pub struct PeerRun {
    /// Every JSON line the peer scripts printed.
    pub lines: Vec<String>,
    /// Peers that could not run, and why.
    pub problems: Vec<String>,
}

/// Runs every peer script in `work` (as [`prepare`] left it) against the
/// server at `url` (`REDIS_URL`, `REDIS_HOST` and `REDIS_PORT` are set from
/// it). `quick` sets `QUICK=1` (W2/W3 cut to 2 s). Progress goes to stderr.
pub fn run_all(work: &Path, url: &str, quick: bool) -> PeerRun {
    let (host, port) = host_port(url);
    let mut out = PeerRun::default();
    for step in &STEPS {
        let program = if step.program.contains('/') {
            work.join(step.program)
        } else {
            PathBuf::from(step.program)
        };
        if step.program.contains('/') && !program.exists() {
            out.problems.push(format!(
                "{}: not set up ({} is missing)",
                step.name, step.program
            ));
            continue;
        }
        eprintln!("peers: running {}", step.name);
        let mut cmd = Command::new(&program);
        cmd.args(step.args)
            .current_dir(work)
            .env("REDIS_URL", url)
            .env("REDIS_HOST", &host)
            .env("REDIS_PORT", &port);
        if quick {
            cmd.env("QUICK", "1");
        }
        match run_capturing(&mut cmd, step.timeout) {
            Ok(stdout) => out.lines.extend(
                stdout
                    .lines()
                    .filter(|l| l.trim_start().starts_with('{'))
                    .map(str::to_owned),
            ),
            Err(why) => out.problems.push(format!("{}: {why}", step.name)),
        }
    }
    out
}

/// Host and port of a `redis://host:port/db` URL, for scripts that want
/// them apart.
fn host_port(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.to_owned()),
        None => (hostport.to_owned(), "6379".to_owned()),
    }
}

/// Which way is better for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A rate: more is better.
    Higher,
    /// A time: less is better.
    Lower,
}

/// leasehold against the best peer on one figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// `W1` to `W4`.
    pub workload: String,
    /// leasehold's figure name.
    pub figure: String,
    /// leasehold's value.
    pub leasehold: f64,
    /// The peer compared with (`rslock aggressive`), if any ran.
    pub peer: Option<String>,
    /// That peer's value, in leasehold's unit.
    pub peer_value: Option<f64>,
    /// leasehold / peer.
    pub ratio: Option<f64>,
    /// Whether a higher or lower ratio is better.
    pub direction: Direction,
    /// BENCH.md's target on the ratio, if it sets one (`>= 1.2`).
    pub target: Option<String>,
    /// Whether the ratio meets it.
    pub met: Option<bool>,
}

/// How to find a figure among the peers' JSON lines.
struct Pick {
    workload: &'static str,
    figure: &'static str,
    direction: Direction,
    /// Only this lib (and variant prefix), or every one.
    only: Option<(&'static str, Option<&'static str>)>,
    /// The peer's figure in leasehold's unit.
    value: fn(&Value) -> Option<f64>,
    /// BENCH.md's target on the ratio leasehold / peer.
    target: Option<Bound>,
}

/// A target on a ratio.
#[derive(Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key)?.as_f64()
}

const PICKS: [Pick; 16] = [
    Pick {
        workload: "W1",
        figure: "cycles_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| num(v, "cycles_per_s"),
        target: None,
    },
    Pick {
        workload: "W1",
        figure: "cycles_per_s",
        direction: Direction::Higher,
        only: Some(("node-redlock", None)),
        value: |v| num(v, "cycles_per_s"),
        target: Some(Bound::AtLeast(1.2)),
    },
    Pick {
        workload: "W1",
        figure: "cycle_p50_us",
        direction: Direction::Lower,
        only: None,
        value: |v| num(v, "p50_us"),
        target: None,
    },
    Pick {
        workload: "W2",
        figure: "cycles_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| num(v, "cycles_per_s"),
        target: None,
    },
    Pick {
        workload: "W2",
        figure: "cycles_per_s",
        direction: Direction::Higher,
        only: Some(("rslock", None)),
        value: |v| num(v, "cycles_per_s"),
        target: Some(Bound::AtLeast(2.0)),
    },
    Pick {
        workload: "W3",
        figure: "acquisitions_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| num(v, "acq_per_s"),
        target: None,
    },
    Pick {
        workload: "W3",
        figure: "handoffs_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| Some(num(v, "handoffs")? / num(v, "secs")?),
        target: None,
    },
    Pick {
        workload: "W3",
        figure: "handoffs_per_s",
        direction: Direction::Higher,
        only: Some(("rslock", Some("aggressive"))),
        value: |v| Some(num(v, "handoffs")? / num(v, "secs")?),
        target: Some(Bound::AtLeast(1.8)),
    },
    Pick {
        workload: "W3",
        figure: "handoff_p50_ms",
        direction: Direction::Lower,
        only: None,
        value: |v| Some(num(v, "handoff_p50_us")? / 1e3),
        target: None,
    },
    Pick {
        workload: "W3",
        figure: "handoff_p99_ms",
        direction: Direction::Lower,
        only: None,
        value: |v| Some(num(v, "handoff_p99_us")? / 1e3),
        target: None,
    },
    Pick {
        workload: "W3",
        figure: "wait_max_ms",
        direction: Direction::Lower,
        only: None,
        value: |v| Some(num(v, "wait_max_us")? / 1e3),
        target: None,
    },
    Pick {
        workload: "W3",
        figure: "per_worker_min_max_ratio",
        direction: Direction::Higher,
        only: None,
        value: |v| Some(num(v, "per_worker_min")? / num(v, "per_worker_max")?.max(1.0)),
        target: None,
    },
    Pick {
        workload: "W4",
        figure: "lua_secs_to_sell_out",
        direction: Direction::Lower,
        only: Some(("redis-py", Some("c-lua"))),
        value: |v| num(v, "secs_to_sell_out"),
        target: None,
    },
    Pick {
        workload: "W4",
        figure: "watch_secs_to_sell_out",
        direction: Direction::Lower,
        only: Some(("redis-py", Some("a-watch"))),
        value: |v| num(v, "secs_to_sell_out"),
        target: None,
    },
    Pick {
        workload: "W4",
        figure: "lease_secs_to_sell_out",
        direction: Direction::Lower,
        only: Some(("redis-py", Some("b-lock"))),
        value: |v| num(v, "secs_to_sell_out"),
        target: None,
    },
    // BENCH.md: "the lease strategy within 3 x Lua", Lua as the peers
    // measured it (redis-py).
    Pick {
        workload: "W4",
        figure: "lease_secs_to_sell_out",
        direction: Direction::Lower,
        only: Some(("redis-py", Some("c-lua"))),
        value: |v| num(v, "secs_to_sell_out"),
        target: Some(Bound::AtMost(3.0)),
    },
];

/// leasehold's rows against the peers' JSON lines: for each headline figure,
/// the best peer (or the one BENCH.md's target names), and the ratio.
///
/// ```
/// use leasehold_bench::{Row, peers};
/// let rows = vec![Row {
///     workload: "W2".into(), figure: "cycles_per_s".into(), value: 260_000.0,
///     unit: "1/s".into(), limit: None, limit_of: None, share: None,
///     target: None, met: None, note: None,
/// }];
/// let lines = [r#"{"lib":"rslock","workload":"W2","variant":"default","cycles_per_s":130000.0}"#];
/// let c = peers::compare(&rows, &lines);
/// let vs_rslock = c.iter().find(|c| c.target.is_some()).unwrap();
/// assert_eq!(vs_rslock.ratio, Some(2.0));
/// assert_eq!(vs_rslock.met, Some(true));
/// ```
pub fn compare(rows: &[Row], peer_lines: &[impl AsRef<str>]) -> Vec<Comparison> {
    let records: Vec<Value> = peer_lines
        .iter()
        .filter_map(|l| serde_json::from_str(l.as_ref().trim()).ok())
        .collect();
    let mut out = Vec::new();
    for pick in &PICKS {
        let Some(ours) = rows
            .iter()
            .find(|r| r.workload == pick.workload && r.figure == pick.figure)
        else {
            continue;
        };
        let candidates = records.iter().filter_map(|v| {
            if v.get("workload")?.as_str()? != pick.workload {
                return None;
            }
            let lib = v.get("lib")?.as_str()?;
            let variant = v.get("variant").and_then(Value::as_str).unwrap_or("");
            if let Some((want_lib, want_variant)) = pick.only
                && (lib != want_lib || want_variant.is_some_and(|w| !variant.starts_with(w)))
            {
                return None;
            }
            let value = (pick.value)(v).filter(|x| x.is_finite())?;
            let label = if variant.is_empty() || variant == "default" {
                lib.to_owned()
            } else {
                format!("{lib} {variant}")
            };
            Some((label, value))
        });
        let best = candidates.reduce(|a, b| {
            let b_better = match pick.direction {
                Direction::Higher => b.1 > a.1,
                Direction::Lower => b.1 < a.1,
            };
            if b_better { b } else { a }
        });
        let ratio = best
            .as_ref()
            .and_then(|(_, p)| (*p != 0.0).then(|| ours.value / p));
        let (target, met) = match pick.target {
            Some(Bound::AtLeast(t)) => (Some(format!(">= {t}")), ratio.map(|r| r >= t)),
            Some(Bound::AtMost(t)) => (Some(format!("<= {t}")), ratio.map(|r| r <= t)),
            None => (None, None),
        };
        out.push(Comparison {
            workload: pick.workload.to_owned(),
            figure: pick.figure.to_owned(),
            leasehold: ours.value,
            peer: best.as_ref().map(|(l, _)| l.clone()),
            peer_value: best.map(|(_, v)| v),
            ratio,
            direction: pick.direction,
            target,
            met,
        });
    }
    out
}

/// The comparisons as a plain-text table.
pub fn format_comparison(comparisons: &[Comparison]) -> String {
    let mut rows = vec![[
        "workload".to_owned(),
        "figure".to_owned(),
        "leasehold".to_owned(),
        "peer".to_owned(),
        "peer value".to_owned(),
        "leasehold / peer".to_owned(),
        "better".to_owned(),
        "target".to_owned(),
        "met".to_owned(),
    ]];
    for c in comparisons {
        rows.push([
            c.workload.clone(),
            c.figure.clone(),
            fmt_num(c.leasehold),
            c.peer.clone().unwrap_or_else(|| "(no peer ran)".into()),
            c.peer_value.map(fmt_num).unwrap_or_default(),
            c.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
            match c.direction {
                Direction::Higher => "> 1".into(),
                Direction::Lower => "< 1".into(),
            },
            c.target.clone().unwrap_or_default(),
            match c.met {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => String::new(),
            },
        ]);
    }
    table(&rows)
}

/// The peers' own headline figures, one line per library and variant.
pub fn format_peer_table(peer_lines: &[impl AsRef<str>]) -> String {
    let records: Vec<Value> = peer_lines
        .iter()
        .filter_map(|l| serde_json::from_str(l.as_ref().trim()).ok())
        .collect();
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let f = |x: Option<f64>| x.map(fmt_num).unwrap_or_else(|| "-".into());
    let mut rows = vec![
        [
            "workload", "library", "variant", "figures", "", "", "", "", "",
        ]
        .map(String::from),
    ];
    for v in &records {
        let w = s(v, "workload");
        let cells: Vec<String> = match w.as_str() {
            "W1" => vec![
                format!("{} cycles/s", f(num(v, "cycles_per_s"))),
                format!("p50 {} us", f(num(v, "p50_us"))),
                format!("p99 {} us", f(num(v, "p99_us"))),
            ],
            "W2" => vec![format!("{} cycles/s", f(num(v, "cycles_per_s")))],
            "W3" => vec![
                format!("{} acq/s", f(num(v, "acq_per_s"))),
                format!(
                    "{} handoffs/s",
                    f(num(v, "handoffs").zip(num(v, "secs")).map(|(h, s)| h / s))
                ),
                format!(
                    "handoff p50/p99 {}/{} ms",
                    f(num(v, "handoff_p50_us").map(|x| x / 1e3)),
                    f(num(v, "handoff_p99_us").map(|x| x / 1e3))
                ),
                format!("wait max {} ms", f(num(v, "wait_max_us").map(|x| x / 1e3))),
                format!(
                    "min/max {}",
                    f(num(v, "per_worker_min")
                        .zip(num(v, "per_worker_max"))
                        .map(|(a, b)| a / b.max(1.0)))
                ),
                format!("lost {}", f(num(v, "lost_updates"))),
            ],
            "W4" => vec![
                format!("{} s", f(num(v, "secs_to_sell_out"))),
                format!("sold {}", f(num(v, "sold"))),
                format!("oversold {}", f(num(v, "oversold"))),
                format!("aborts {}", f(num(v, "watch_aborts"))),
            ],
            "ERROR" => vec![s(v, "error")],
            _ => continue,
        };
        let mut row: [String; 9] = Default::default();
        row[0] = w;
        row[1] = s(v, "lib");
        row[2] = s(v, "variant");
        for (i, c) in cells.into_iter().take(6).enumerate() {
            row[3 + i] = c;
        }
        rows.push(row);
    }
    table(&rows)
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, w) in r.iter().zip(width) {
            let _ = write!(line, "{c}{}  ", " ".repeat(w - c.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(rule.join("  ").trim_end());
            out.push('\n');
        }
    }
    out
}

/// Copies a directory tree, leaving out what set-up makes (`.venv`,
/// `node_modules`, `target`, `results`); copies are made writable, since
/// the source may be read-only and the next copy overwrites them.
fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if [".venv", "node_modules", "target", "results"]
            .iter()
            .any(|skip| name == *skip)
        {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            if dst.exists() {
                std::fs::remove_file(&dst)?;
            }
            std::fs::copy(&src, &dst)?;
            let mode = std::fs::metadata(&src)?.permissions().mode();
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode | 0o600))?;
        }
    }
    Ok(())
}

/// Runs a set-up command with its output on stderr (stdout stays clean).
fn run_quietly(cmd: &mut Command) -> Result<(), String> {
    let to_stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| e.to_string())?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(to_stderr))
        .status()
        .map_err(|e| format!("could not run it ({e})"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("failed ({status})"))
    }
}

/// Runs a peer script, stdout captured, stderr passed on, killed (our own
/// child, by its handle) after `timeout`.
fn run_capturing(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start it ({e})"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let out = reader.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(out),
        // Keep what it printed before failing: some workloads may be there.
        Some(s) if out.contains('{') => {
            eprintln!("peers: exited with {s}; keeping the lines it printed");
            Ok(out)
        }
        Some(s) => Err(format!("failed ({s})")),
        None => Err(format!("timed out after {} s", timeout.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            host_port("redis://127.0.0.1:6391/0"),
            ("127.0.0.1".into(), "6391".into())
        );
        assert_eq!(host_port("redis://u:p@h:7"), ("h".into(), "7".into()));
    }

    #[test]
    fn picks_the_best_peer() {
        let rows = vec![Row {
            workload: "W3".into(),
            figure: "handoff_p50_ms".into(),
            value: 0.1,
            unit: "ms".into(),
            limit: None,
            limit_of: None,
            share: None,
            target: None,
            met: None,
            note: None,
        }];
        let lines = [
            r#"{"lib":"a","workload":"W3","variant":"default","handoff_p50_us":300.0}"#,
            r#"{"lib":"b","workload":"W3","variant":"fast","handoff_p50_us":200.0}"#,
        ];
        let c = compare(&rows, &lines);
        assert_eq!(c[0].peer.as_deref(), Some("b fast"));
        assert!((c[0].ratio.unwrap() - 0.5).abs() < 1e-9);
        assert!(format_comparison(&c).contains("b fast"));
        assert!(format_peer_table(&lines).contains("b"));
    }
}
