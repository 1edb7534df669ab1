//! `run`: mutual exclusion across processes, exit codes, environment,
//! signals, and a stop when the lease is lost.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

/// Reads `id start end` lines (nanoseconds) from the log.
fn intervals(log: &std::path::Path) -> Vec<(String, u128, u128)> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut starts = std::collections::HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (id, what, at) = (
            parts[0].to_string(),
            parts[1],
            parts[2].parse::<u128>().unwrap(),
        );
        if what == "start" {
            starts.insert(id, at);
        } else {
            out.push((id.clone(), starts[&id], at));
        }
    }
    out
}

#[test]
fn three_runs_at_once_never_overlap_and_all_run() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let children: Vec<_> = (0..3)
        .map(|i| {
            let script = format!(
                "echo \"{i} start $(date +%s%N)\" >> {log}; sleep 0.2; echo \"{i} end $(date +%s%N)\" >> {log}",
                log = log.display()
            );
            leasehold(Some(&server))
                .args(["run", "nightly", "--wait", "30s", "--", "sh", "-c", &script])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let mut runs = intervals(&log);
    assert_eq!(runs.len(), 3, "all three ran");
    runs.sort_by_key(|r| r.1);
    for w in runs.windows(2) {
        assert!(
            w[0].2 <= w[1].1,
            "runs {} and {} overlapped",
            w[0].0,
            w[1].0
        );
    }
}

#[test]
fn no_wait_on_a_held_name_exits_3_and_never_starts_the_command() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let mut holder = leasehold(Some(&server))
        .args(["run", "busy", "--", "sleep", "5"])
        .spawn()
        .unwrap();
    let mut conn = redis(&server);
    eventually(5 * SECOND, "the first run to hold the lease", || {
        redis::cmd("EXISTS")
            .arg("busy")
            .query::<bool>(&mut conn)
            .unwrap()
    });
    let started = Instant::now();
    let o = output(leasehold(Some(&server)).args([
        "run",
        "busy",
        "--no-wait",
        "--",
        "touch",
        marker.to_str().unwrap(),
    ]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(started.elapsed() < 2 * SECOND, "it waited");
    assert!(stderr(&o).starts_with("leasehold: "), "{}", stderr(&o));
    assert!(!exists(&marker), "the command ran without the lease");
    holder.kill().unwrap();
    holder.wait().unwrap();
}

#[test]
fn the_child_sees_its_fence_and_fences_grow() {
    let server = RedisServer::start().unwrap();
    let fence = || {
        let o = output(leasehold(Some(&server)).args([
            "run",
            "fenced",
            "--",
            "sh",
            "-c",
            "echo $LEASEHOLD_NAME $LEASEHOLD_FENCE",
        ]));
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let mut it = out.split_whitespace();
        assert_eq!(it.next(), Some("fenced"));
        it.next().unwrap().parse::<u64>().unwrap()
    };
    let (a, b, c) = (fence(), fence(), fence());
    assert!(a < b && b < c, "fences {a} {b} {c}");
}

#[test]
fn the_childs_exit_status_is_leaseholds() {
    let server = RedisServer::start().unwrap();
    let o = output(leasehold(Some(&server)).args(["run", "status", "--", "sh", "-c", "exit 7"]));
    assert_eq!(o.status.code(), Some(7));
    let o = output(leasehold(Some(&server)).args(["run", "status", "--", "no-such-command-here"]));
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    // The lease was given back each time.
    let mut conn = redis(&server);
    assert!(
        !redis::cmd("EXISTS")
            .arg("status")
            .query::<bool>(&mut conn)
            .unwrap()
    );
}

/// A shell script that touches `ready` once running, and `got-term` then
/// exits 0 when it receives SIGTERM; both files live in the returned dir.
fn trapping_child() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "trap 'touch {got}; exit 0' TERM; touch {ready}; while true; do sleep 0.05; done",
        got = dir.path().join("got-term").display(),
        ready = dir.path().join("ready").display()
    );
    (dir, script)
}

#[test]
fn sigterm_to_leasehold_reaches_the_child() {
    let server = RedisServer::start().unwrap();
    let (dir, script) = trapping_child();
    let (ready, got) = (dir.path().join("ready"), dir.path().join("got-term"));
    let mut child = leasehold(Some(&server))
        .args(["run", "signals", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    eventually(5 * SECOND, "the command to start", || ready.exists());
    // SAFETY: a pid we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    eventually(5 * SECOND, "the command to get SIGTERM", || got.exists());
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status of the child that trapped TERM"
    );
}

#[test]
fn a_lost_lease_stops_the_command_and_exits_4() {
    let server = RedisServer::start().unwrap();
    let (dir, script) = trapping_child();
    let (ready, got) = (dir.path().join("ready"), dir.path().join("got-term"));
    let child = leasehold(Some(&server))
        .args([
            "run", "fragile", "--ttl", "600ms", "--grace", "2s", "--", "sh", "-c", &script,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(5 * SECOND, "the command to start", || ready.exists());
    let mut conn = redis(&server);
    let () = redis::cmd("DEL").arg("fragile").query(&mut conn).unwrap();
    let deleted = Instant::now();
    eventually(2 * SECOND, "SIGTERM after the loss", || got.exists());
    let took = deleted.elapsed();
    assert!(
        took < Duration::from_millis(200 + 400),
        "SIGTERM came {took:?} after the loss (ttl/3 = 200ms)"
    );
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("was lost"), "{}", stderr(&o));
}

#[test]
fn a_command_killed_by_a_signal_gives_128_plus_it() {
    let server = RedisServer::start().unwrap();
    let o =
        output(leasehold(Some(&server)).args(["run", "killed", "--", "sh", "-c", "kill -9 $$"]));
    assert_eq!(o.status.code(), Some(128 + 9), "{}", stderr(&o));
    assert!(!key_exists(&server, "killed"), "the lease was not released");
}

#[test]
fn sigint_while_waiting_for_the_lease_exits_130_and_never_starts_the_command() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let o = output(leasehold(Some(&server)).args(["acquire", "queue", "--ttl", "20s"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let holder = stdout(&o).split_whitespace().next().unwrap().to_string();
    let mut waiter = leasehold(Some(&server))
        .args(["run", "queue", "--wait", "30s", "--", "touch"])
        .arg(&marker)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    one_client_waits(&server, "queue");
    signal(&waiter, libc::SIGINT);
    let status = wait_within(&mut waiter, 5 * SECOND);
    assert_eq!(status.code(), Some(130));
    // The holder still holds it, and once it lets go nobody has it: the
    // interrupted waiter took nothing.
    let o = output(leasehold(Some(&server)).args(["release", "queue", &holder]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!key_exists(&server, "queue"));
    assert!(!marker.exists(), "the command ran without the lease");
}

#[test]
fn run_json_ends_with_a_run_record() {
    let server = RedisServer::start().unwrap();
    let o = output(leasehold(Some(&server)).args([
        "run",
        "rec",
        "--json",
        "--",
        "sh",
        "-c",
        "echo from-the-command; exit 3",
    ]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("from-the-command"));
    let v: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(v["type"], "run");
    assert_eq!(v["data"]["name"], "rec");
    assert_eq!(v["data"]["fence"], fence_counter(&server, "rec"));
    assert_eq!(v["data"]["exit_code"], 3);
    assert_eq!(v["data"]["lost"], false);
    assert_eq!(lines.next(), None);
}

#[test]
fn run_fair_keeps_the_turn_of_a_queued_waiter() {
    let server = RedisServer::start().unwrap();
    // A waiter of another host stands in the fair queue for 30 s.
    let mut conn = redis(&server);
    let now: (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    let deadline = now.0 * 1000 + now.1 / 1000 + 30_000;
    let () = redis::pipe()
        .cmd("ZADD")
        .arg("leasehold:{nightly}:queue")
        .arg(1)
        .arg("elsewhere")
        .ignore()
        .cmd("ZADD")
        .arg("leasehold:{nightly}:queue-deadlines")
        .arg(deadline)
        .arg("elsewhere")
        .ignore()
        .query(&mut conn)
        .unwrap();
    // The lease is free, but it is the queued waiter's turn.
    let fair = output(leasehold(Some(&server)).args([
        "run",
        "nightly",
        "--fair",
        "--no-wait",
        "--",
        "true",
    ]));
    assert_eq!(fair.status.code(), Some(3), "{}", stderr(&fair));
    // Without --fair the queue is not looked at.
    let plain =
        output(leasehold(Some(&server)).args(["run", "nightly", "--no-wait", "--", "true"]));
    assert!(plain.status.success(), "{}", stderr(&plain));
}

/// True once process `pid` is gone: no such process, or a zombie waiting
/// for its new parent to reap it.
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) S ...`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Whether a `leasehold __watchdog` process watches the process group
/// `pgid`.
///
/// `run` starts the watchdog just after the command: a SIGKILL in between
/// leaves the command's later processes running (its first one dies with
/// `run`). That window is not covered yet; these tests kill a `run` whose
/// watchdog is up.
fn watchdog_of(pgid: i32) -> bool {
    let wanted = format!("__watchdog\0{pgid}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .any(|cmdline| String::from_utf8_lossy(&cmdline).contains(&wanted))
}

/// A command whose shell starts a grandchild (`sleep 1000`) and waits for
/// it; it writes `SHELL_PID GRANDCHILD_PID` to `pids` once both run.
/// `prelude` runs first in the shell (a `trap`, say).
fn shell_with_a_grandchild(pids: &std::path::Path, prelude: &str) -> String {
    format!(
        "{prelude} sleep 1000 & echo $$ $! > {tmp}; mv {tmp} {pids}; wait",
        tmp = pids.with_extension("tmp").display(),
        pids = pids.display()
    )
}

/// Waits for the `pids` file and reads it.
fn read_pids(pids: &std::path::Path) -> (i32, i32) {
    eventually(5 * SECOND, "the command to start its grandchild", || {
        pids.exists()
    });
    let text = std::fs::read_to_string(pids).unwrap();
    let mut it = text.split_whitespace().map(|p| p.parse::<i32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

#[cfg(target_os = "linux")]
fn kill_9_of_run_stops_the_whole_command_within_the_ttl(prelude: &str) {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = shell_with_a_grandchild(&pids, prelude);
    let ttl = 2 * SECOND;
    let mut run = leasehold(Some(&server))
        .args(["run", "orphaned", "--ttl", "2s", "--", "sh", "-c", &script])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (shell, grandchild) = read_pids(&pids);
    assert!(!gone(shell) && !gone(grandchild));
    // `run` starts its watchdog right after the command (see the note in
    // `watchdog_of`): the kill comes once it watches.
    eventually(5 * SECOND, "the watchdog to watch the command", || {
        watchdog_of(shell)
    });
    signal(&run, libc::SIGKILL);
    let killed = Instant::now();
    run.wait().unwrap();
    // Nobody renews the lease now: after its ttl, another host may take it.
    eventually(ttl, "the shell and its grandchild to be gone", || {
        gone(shell) && gone(grandchild)
    });
    eprintln!("the command was gone {:?} after kill -9", killed.elapsed());
}

#[cfg(target_os = "linux")]
#[test]
fn kill_9_of_run_stops_the_command_and_its_grandchildren_within_the_ttl() {
    kill_9_of_run_stops_the_whole_command_within_the_ttl("");
}

#[cfg(target_os = "linux")]
#[test]
fn kill_9_of_run_stops_a_command_that_ignores_sigterm_within_the_ttl() {
    // The grandchild inherits the ignored SIGTERM: only SIGKILL stops it,
    // which must come before the lease's validity (not --grace's 10 s).
    kill_9_of_run_stops_the_whole_command_within_the_ttl("trap '' TERM;");
}

#[test]
fn a_lost_lease_stops_the_commands_grandchildren_too() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = shell_with_a_grandchild(&pids, "");
    let mut run = leasehold(Some(&server))
        .args([
            "run", "fragile", "--ttl", "600ms", "--grace", "2s", "--", "sh", "-c", &script,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (shell, grandchild) = read_pids(&pids);
    let () = redis::cmd("DEL")
        .arg("fragile")
        .query(&mut redis(&server))
        .unwrap();
    let status = wait_within(&mut run, 5 * SECOND);
    assert_eq!(status.code(), Some(4), "exit code on a lost lease");
    // run waits for the whole group before it exits.
    assert!(gone(shell), "the shell outlived run");
    assert!(gone(grandchild), "the grandchild outlived run");
}

#[test]
fn processes_the_command_leaves_behind_are_stopped_before_the_release() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // The shell exits at once with 0, leaving `sleep` in its group.
    let script = format!("sleep 1000 & echo $$ $! > {}", pids.display());
    let o = output(leasehold(Some(&server)).args(["run", "leftover", "--", "sh", "-c", &script]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("left processes"), "{}", stderr(&o));
    let (_, grandchild) = read_pids(&pids);
    assert!(gone(grandchild), "a leftover process outlived the lease");
    assert!(
        !key_exists(&server, "leftover"),
        "the lease was not released"
    );
}

#[test]
fn sigint_to_runs_process_group_reaches_the_command_in_its_own() {
    // As Ctrl-C in a terminal does: the signal goes to run's process group,
    // which the command is no longer in; run passes it on.
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ready, got) = (dir.path().join("ready"), dir.path().join("got-int"));
    let script = format!(
        "trap 'touch {got}; exit 0' INT; touch {ready}; while true; do sleep 0.05; done",
        got = got.display(),
        ready = ready.display()
    );
    let mut run = leasehold(Some(&server));
    std::os::unix::process::CommandExt::process_group(&mut run, 0);
    let mut run = run
        .args(["run", "interrupted", "--", "sh", "-c", &script])
        .spawn()
        .unwrap();
    eventually(5 * SECOND, "the command to start", || ready.exists());
    // SAFETY: killpg(2) on the group of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::killpg(run.id() as i32, libc::SIGINT) }, 0);
    eventually(5 * SECOND, "the command to get SIGINT", || got.exists());
    assert_eq!(wait_within(&mut run, 5 * SECOND).code(), Some(0));
}

#[test]
fn run_help_documents_the_process_group_and_the_exit_codes() {
    let o = output(leasehold(None).args(["run", "--help"]));
    assert!(o.status.success());
    let help = stdout(&o);
    for needle in [
        "process group",
        "kill -9",
        "other systems",
        "exits with 4",
        "--grace",
    ] {
        assert!(
            help.contains(needle),
            "`{needle}` missing from run --help:\n{help}"
        );
    }
}

#[test]
fn renewals_failing_stop_the_command_before_the_lease_runs_out() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // Ignores SIGTERM: only SIGKILL stops it, and --grace is 10 s.
    let script = shell_with_a_grandchild(&pids, "trap '' TERM;");
    let ttl = Duration::from_millis(1500);
    let mut run = leasehold(Some(&server))
        .args([
            "run",
            "unrenewed",
            "--ttl",
            "1500ms",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (shell, grandchild) = read_pids(&pids);
    server.pause(); // renewals go unanswered from now on
    let paused = Instant::now();
    // The last renewal came before the pause: the validity ends within a
    // ttl of it, and another host may take the lease then.
    let deadline = paused + ttl;
    while !(gone(shell) && gone(grandchild)) {
        assert!(
            Instant::now() < deadline,
            "the command still ran a ttl after renewals stopped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "the command was gone {:?} after the pause",
        paused.elapsed()
    );
    server.resume();
    let status = wait_within(&mut run, 10 * SECOND);
    assert_eq!(status.code(), Some(4));
}

#[test]
fn run_passes_on_arguments_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let server = RedisServer::start().unwrap();
    let o = output(
        leasehold(Some(&server))
            .args(["run", "bytes", "--", "printf", "%s"])
            .arg(std::ffi::OsStr::from_bytes(b"a\xffb")),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b"a\xffb");
}
