//! `sem run`: never more than K commands at once across processes.

use crate::common::*;

#[test]
fn five_runs_with_limit_two_never_exceed_two_and_all_run() {
    let server = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let children: Vec<_> = (0..5)
        .map(|i| {
            let script = format!(
                "echo \"{i} start $(date +%s%N)\" >> {log}; sleep 0.2; echo \"{i} end $(date +%s%N)\" >> {log}",
                log = log.display()
            );
            leasehold(Some(&server))
                .args(["sem", "run", "pool", "--limit", "2", "--wait", "30s", "--", "sh", "-c", &script])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut events: Vec<(u128, i32)> = text
        .lines()
        .map(|l| {
            let p: Vec<&str> = l.split_whitespace().collect();
            (p[2].parse().unwrap(), if p[1] == "start" { 1 } else { -1 })
        })
        .collect();
    assert_eq!(events.len(), 10, "all five ran");
    // Ends before starts at the same instant.
    events.sort();
    let (mut now, mut peak) = (0, 0);
    for (_, d) in events {
        now += d;
        peak = peak.max(now);
    }
    assert!(peak <= 2, "{peak} commands ran at once with --limit 2");
    assert_eq!(peak, 2, "the limit was never reached");
}

#[test]
fn fair_sem_run_waits_its_turn_behind_a_queued_waiter() {
    let server = RedisServer::start().unwrap();
    let ok = output(leasehold(Some(&server)).args([
        "sem",
        "run",
        "fairjob",
        "--limit",
        "1",
        "--fair",
        "--",
        "sh",
        "-c",
        "echo $LEASEHOLD_FENCE",
    ]));
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(
        stdout(&ok).trim(),
        fence_counter(&server, "fairjob").to_string()
    );

    // A waiter of another host stands in the queue for 1.5 s more: the
    // free permit is its, not a newcomer's.
    let mut conn = redis(&server);
    let now: (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    let deadline = now.0 * 1000 + now.1 / 1000 + 1500;
    let () = redis::pipe()
        .cmd("ZADD")
        .arg("leasehold:{fairjob}:queue")
        .arg(1)
        .arg("elsewhere")
        .ignore()
        .cmd("ZADD")
        .arg("leasehold:{fairjob}:queue-deadlines")
        .arg(deadline)
        .arg("elsewhere")
        .ignore()
        // Its arrival ticket: whoever comes next draws 2.
        .cmd("SET")
        .arg("leasehold:{fairjob}:queue-ticket")
        .arg(1)
        .ignore()
        .query(&mut conn)
        .unwrap();
    let refused = output(leasehold(Some(&server)).args([
        "sem",
        "run",
        "fairjob",
        "--limit",
        "1",
        "--fair",
        "--no-wait",
        "--",
        "true",
    ]));
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    // Once its wait runs out, the queue moves on.
    let served = output(leasehold(Some(&server)).args([
        "sem", "run", "fairjob", "--limit", "1", "--fair", "--wait", "10s", "--", "true",
    ]));
    assert!(served.status.success(), "{}", stderr(&served));
    let after: (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    assert!(
        after.0 * 1000 + after.1 / 1000 >= deadline,
        "served before the queued waiter's turn ran out"
    );
}
