//! [`run_all`]: runs each peer script against the server, with a time
//! limit, and keeps the JSON lines it prints.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One peer script.
struct Step {
    name: &'static str,
    program: &'static str,
    args: &'static [&'static str],
    timeout: Duration,
}

impl Step {
    /// The program to run: a path under `work` (which must exist: set up
    /// by `prepare`), or a command found on `PATH`.
    fn program_in(&self, work: &Path) -> Result<PathBuf, String> {
        if !self.program.contains('/') {
            return Ok(PathBuf::from(self.program));
        }
        let program = work.join(self.program);
        if program.exists() {
            Ok(program)
        } else {
            Err(format!(
                "{}: not set up ({} is missing)",
                self.name, self.program
            ))
        }
    }
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

/// The peers' Redlock harness (`run-redlock.sh` runs these three), by
/// library name, in the order the script runs them.
const REDLOCK_STEPS: [Step; 3] = [
    Step {
        name: "pottery",
        program: ".venv/bin/python",
        args: &["python/redlock_pottery.py"],
        timeout: Duration::from_secs(300),
    },
    Step {
        name: "node-redlock",
        program: "node",
        args: &["node/redlock_multi.js"],
        timeout: Duration::from_secs(300),
    },
    Step {
        name: "rslock",
        program: "rust/target/release/peers-rslock-redlock",
        args: &[],
        timeout: Duration::from_secs(300),
    },
];

/// The libraries of the peers' Redlock harness, in the order it runs them.
pub fn redlock_peers() -> Vec<&'static str> {
    REDLOCK_STEPS.iter().map(|s| s.name).collect()
}

/// Where the Redlock peers run: the masters `run-redlock.sh` would start,
/// here started by the caller and shared with leasehold's R1 to R4.
#[derive(Debug, Clone)]
pub struct RedlockMasters {
    /// Loopback ports, in master order (master 1 holds R3's counter).
    pub ports: Vec<u16>,
    /// The masters' pids, in the same order: R4 SIGSTOPs the last two by
    /// pid and SIGCONTs them.
    pub pids: Vec<u32>,
    /// R4's per-node timeout where a library lets one be set
    /// (`NODE_TIMEOUT_MS`, 50 in the peers' runs).
    pub node_timeout_ms: u64,
    /// `QUICK=1`: R2/R3 cut to 2 s, R4 to 5 s.
    pub quick: bool,
}

/// Runs one library of the peers' Redlock harness (`pottery`,
/// `node-redlock` or `rslock`, see [`redlock_peers`]) in `work` (as
/// [`prepare`](super::prepare) left it) on `masters`, with the environment
/// `run-redlock.sh` gives it (`REDLOCK_PORTS`, `REDLOCK_PIDS`,
/// `NODE_TIMEOUT_MS`, `QUICK`). The script SIGCONTs the masters it
/// stopped; the caller should too, in case it was killed.
pub fn run_redlock(work: &Path, library: &str, masters: &RedlockMasters) -> PeerRun {
    let mut out = PeerRun::default();
    let Some(step) = REDLOCK_STEPS.iter().find(|s| s.name == library) else {
        out.problems
            .push(format!("{library}: not a library of the Redlock harness"));
        return out;
    };
    let program = match step.program_in(work) {
        Ok(program) => program,
        Err(why) => {
            out.problems.push(why);
            return out;
        }
    };
    let join = |v: Vec<String>, sep: &str| v.join(sep);
    eprintln!("peers: running {} (Redlock, R1-R4)", step.name);
    let mut cmd = Command::new(&program);
    cmd.args(step.args)
        .current_dir(work)
        .env(
            "REDLOCK_PORTS",
            join(masters.ports.iter().map(u16::to_string).collect(), ","),
        )
        .env(
            "REDLOCK_PIDS",
            join(masters.pids.iter().map(u32::to_string).collect(), " "),
        )
        .env("NODE_TIMEOUT_MS", masters.node_timeout_ms.to_string());
    if masters.quick {
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
    out
}

/// What [`run_all`] collected.
#[derive(Debug, Clone, Default)]
pub struct PeerRun {
    /// Every JSON line the peer scripts printed.
    pub lines: Vec<String>,
    /// Peers that could not run, and why.
    pub problems: Vec<String>,
}

/// Runs every peer script in `work` (as [`prepare`](super::prepare) left
/// it) against the server at `url` (`REDIS_URL`, `REDIS_HOST` and
/// `REDIS_PORT` are set from it). `quick` sets `QUICK=1` (W2/W3 cut to
/// 2 s). Progress goes to stderr.
pub fn run_all(work: &Path, url: &str, quick: bool) -> PeerRun {
    let (host, port) = host_port(url);
    let mut out = PeerRun::default();
    for step in &STEPS {
        let program = match step.program_in(work) {
            Ok(program) => program,
            Err(why) => {
                out.problems.push(why);
                continue;
            }
        };
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

/// Runs the one peer script `name` of [`run_all`] (`node-redlock`,
/// `rslock`, ...) against `url`, and stops it (our own child, by its
/// handle) as soon as it has printed a line for each workload of `until`
/// (`["W1", "W2"]`): interleaved passes want those only, and the rest of
/// the script (W3) would only lengthen them. Progress goes to stderr.
///
/// ```no_run
/// let work = std::env::temp_dir().join("leasehold-bench-peers");
/// let run = leasehold_bench::peers::run_one(&work, "rslock", "redis://127.0.0.1:6379", true, &["W1", "W2"]);
/// assert!(run.problems.is_empty(), "{:?}", run.problems);
/// ```
pub fn run_one(work: &Path, name: &str, url: &str, quick: bool, until: &[&str]) -> PeerRun {
    let mut out = PeerRun::default();
    let Some(step) = STEPS.iter().find(|s| s.name == name) else {
        out.problems.push(format!("{name}: not a peer script"));
        return out;
    };
    let program = match step.program_in(work) {
        Ok(program) => program,
        Err(why) => {
            out.problems.push(why);
            return out;
        }
    };
    if step.args.iter().any(|a| !work.join(a).exists()) {
        out.problems.push(format!(
            "{}: not set up ({} is missing in {})",
            step.name,
            step.args.join(" "),
            work.display()
        ));
        return out;
    }
    let (host, port) = host_port(url);
    let mut cmd = Command::new(&program);
    cmd.args(step.args)
        .current_dir(work)
        .env("REDIS_URL", url)
        .env("REDIS_HOST", &host)
        .env("REDIS_PORT", &port);
    if quick {
        cmd.env("QUICK", "1");
    }
    match run_lines(&mut cmd, step.timeout, until) {
        Ok(lines) => out.lines = lines,
        Err(why) => out.problems.push(format!("{}: {why}", step.name)),
    }
    out
}

/// Whether `lines` hold a JSON record of each workload of `until`.
fn has_all(lines: &[String], until: &[&str]) -> bool {
    let records = super::records(lines);
    until.iter().all(|w| {
        records
            .iter()
            .any(|v| v.get("workload").and_then(|x| x.as_str()) == Some(*w))
    })
}

/// Runs a peer script, keeping the JSON lines it prints, until it exits,
/// has printed a line for each workload of `until` (then it is killed: our
/// own child, by its handle), or `timeout` passes.
fn run_lines(cmd: &mut Command, timeout: Duration, until: &[&str]) -> Result<Vec<String>, String> {
    use std::io::BufRead;
    use std::sync::mpsc;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start it ({e})"))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut lines = Vec::new();
    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                if line.trim_start().starts_with('{') {
                    lines.push(line);
                    if !until.is_empty() && has_all(&lines, until) {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Ok(());
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break match child.wait() {
                    Ok(s) if s.success() => Ok(()),
                    Ok(s) if !lines.is_empty() => {
                        eprintln!("peers: exited with {s}; keeping the lines it printed");
                        Ok(())
                    }
                    Ok(s) => Err(format!("failed ({s})")),
                    Err(e) => Err(e.to_string()),
                };
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if started.elapsed() > timeout {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("timed out after {} s", timeout.as_secs()));
                }
            }
        }
    };
    drop(rx);
    let _ = reader.join();
    outcome.map(|()| lines)
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
}
