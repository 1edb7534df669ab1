//! `status` and `list`, as text and JSON.

use crate::common::*;

#[test]
fn status_and_list_json_show_holder_and_ttl() {
    let server = RedisServer::start().unwrap();
    let o = output(leasehold(Some(&server)).args(["acquire", "jobs/a", "--ttl", "40s"]));
    let token = stdout(&o).split_whitespace().next().unwrap().to_string();
    output(leasehold(Some(&server)).args(["acquire", "jobs/b", "--ttl", "1s"]));

    let o = output(leasehold(Some(&server)).args(["status", "jobs/a", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["type"], "lease");
    assert_eq!(v["data"]["held"], true);
    assert_eq!(v["data"]["holder"], &token[..8]);
    let ms = v["data"]["remaining_ms"].as_u64().unwrap();
    assert!(ms > 30_000 && ms <= 40_000, "{ms}");
    assert_eq!(v["data"]["fence"], 1);

    let o = output(leasehold(Some(&server)).args(["list", "jobs/*", "--json"]));
    let rows: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["data"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["jobs/a", "jobs/b"]);

    // The text form names the holder by its prefix only.
    let o = output(leasehold(Some(&server)).args(["status", "jobs/a"]));
    let text = stdout(&o);
    assert!(
        text.contains(&token[..8]) && !text.contains(&token),
        "{text}"
    );
    assert!(text.contains("held"), "{text}");
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let server = RedisServer::start().unwrap();
    for i in 0..50 {
        output(leasehold(Some(&server)).args(["acquire", &format!("many/{i}"), "--ttl", "20s"]));
    }
    // `| head -1`: the reader goes away early.
    let mut child = leasehold(Some(&server))
        .args(["list", "many/*"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
