//! `--log-format json`: every line on stderr is a JSON object with a level
//! and a message, the CLI's own messages and the library's events alike,
//! and no whole token among them.

use std::process::Stdio;

use crate::common::*;

/// Each line of `stderr` as JSON, failing on one that is not.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{stderr}"));
            assert!(v["level"].is_string(), "no level: {line}");
            assert!(v["message"].is_string(), "no message: {line}");
            assert!(v["timestamp"].is_string(), "no timestamp: {line}");
            v
        })
        .collect()
}

/// A 32-hex-digit word: a whole token.
fn has_whole_token(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .any(|w| w.len() >= 32)
}

#[test]
fn run_json_log_of_a_lost_lease_is_json_lines() {
    let server = kept_server();
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let script = format!("touch {}; while true; do sleep 0.05; done", ready.display());
    let child = leasehold(Some(&server))
        .args([
            "run",
            "--log-format",
            "json",
            "fragile",
            "--ttl",
            "600ms",
            "--grace",
            "1s",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(5 * SECOND, "the command to start", || ready.exists());
    let () = redis::cmd("DEL")
        .arg("fragile")
        .query(&mut redis(&server))
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let err = stderr(&o);
    let lines = json_lines(&err);
    // The library's event, with its fields.
    let lost = lines
        .iter()
        .find(|v| v["message"].as_str().unwrap().contains("lease lost"))
        .unwrap_or_else(|| panic!("no loss event: {err}"));
    assert_eq!(lost["level"], "WARN", "{lost}");
    assert_eq!(lost["target"], "leasehold", "{lost}");
    assert_eq!(lost["name"], "fragile", "{lost}");
    assert_eq!(lost["kind"], "lease", "{lost}");
    assert_eq!(lost["cause"], "gone", "{lost}");
    assert_eq!(lost["token"].as_str().unwrap().len(), 8, "{lost}");
    assert!(lost["fence"].as_u64().unwrap() > 0, "{lost}");
    // leasehold's own message.
    let stopping = lines
        .iter()
        .find(|v| v["target"] == "leasehold_cli")
        .unwrap_or_else(|| panic!("no message of leasehold's own: {err}"));
    assert_eq!(stopping["level"], "ERROR", "{stopping}");
    assert!(
        stopping["message"]
            .as_str()
            .unwrap()
            .contains("lease `fragile` was lost"),
        "{stopping}"
    );
    assert!(!has_whole_token(&err), "{err}");
}

#[test]
fn run_json_log_of_a_busy_lease_is_one_json_line() {
    let server = kept_server();
    let () = redis::cmd("SET")
        .arg("busy")
        .arg("someone-elses-token")
        .arg("PX")
        .arg(10_000)
        .query(&mut redis(&server))
        .unwrap();
    let o = output(leasehold(Some(&server)).args([
        "--log-format",
        "json",
        "run",
        "busy",
        "--no-wait",
        "--",
        "sh",
        "-c",
        "exit 0",
    ]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let lines = json_lines(&stderr(&o));
    assert_eq!(lines.len(), 1, "{}", stderr(&o));
    assert_eq!(lines[0]["level"], "ERROR");
    assert_eq!(lines[0]["target"], "leasehold_cli");
    let message = lines[0]["message"].as_str().unwrap();
    assert!(
        message.contains("lease `busy` is held by someone else"),
        "{message}"
    );
    assert!(!message.starts_with("leasehold: "), "{message}");
}

#[test]
fn text_is_the_default_and_a_bad_filter_is_told() {
    let server = kept_server();
    let () = redis::cmd("SET")
        .arg("busy")
        .arg("x")
        .arg("PX")
        .arg(10_000)
        .query(&mut redis(&server))
        .unwrap();
    let args = ["run", "busy", "--no-wait", "--", "true"];
    // As always: one line for people.
    let line = one_line_error(&args, Some(&server), 3);
    assert!(line.contains("is held by someone else"), "{line}");
    // LEASEHOLD_LOG_FORMAT picks the format too.
    let o = output(
        leasehold(Some(&server))
            .env("LEASEHOLD_LOG_FORMAT", "json")
            .args(args),
    );
    assert_eq!(json_lines(&stderr(&o)).len(), 1, "{}", stderr(&o));
    // A bad filter is said once, and the command goes on.
    let o = output(
        leasehold(Some(&server))
            .env("LEASEHOLD_LOG", "leasehold=loud")
            .args(args),
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("LEASEHOLD_LOG=`leasehold=loud` is not a filter"),
        "{err}"
    );
    assert!(err.contains("is held by someone else"), "{err}");
}

/// A server that keeps its leases (AOF, no eviction): no connect warning
/// (which comes from a background task, racing the command's end) mixes
/// into the lines the tests count.
fn kept_server() -> RedisServer {
    RedisServer::start_with(testkit::ServerOptions {
        aof: true,
        ..Default::default()
    })
    .unwrap()
}
