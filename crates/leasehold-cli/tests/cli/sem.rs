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
