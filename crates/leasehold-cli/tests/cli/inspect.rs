//! `status` and `list`, as text and JSON.

use serde_json::json;

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
    assert_eq!(v["data"]["fence"], fence_counter(&server, "jobs/a"));
    assert_eq!(v["data"]["kind"], "lease");
    assert_eq!(v["data"]["holders"][0]["token"], &token[..8]);

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

/// A runtime and a library client, to hold semaphores and read-write locks
/// while the binary looks at them. Guards renew on the runtime's threads.
fn library(server: &RedisServer) -> (tokio::runtime::Runtime, leasehold::Client) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt
        .block_on(leasehold::Client::connect(&server.url()))
        .unwrap();
    (rt, client)
}

/// The JSON Lines of a command that must succeed.
fn json_lines(cmd: &mut std::process::Command) -> Vec<serde_json::Value> {
    let o = output(cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn status_of_a_semaphore_shows_each_permit_and_the_limit() {
    let server = RedisServer::start().unwrap();
    let (rt, client) = library(&server);
    let sem = client.semaphore("pool", 3).ttl(40 * SECOND);
    let a = rt.block_on(sem.acquire()).unwrap();
    let b = rt.block_on(sem.acquire()).unwrap();
    let mut want = vec![a.token().prefix(), b.token().prefix()];
    want.sort();

    let rows = json_lines(leasehold(Some(&server)).args(["status", "pool", "--json"]));
    assert_eq!(rows.len(), 1);
    let d = &rows[0]["data"];
    assert_eq!(rows[0]["type"], "lease");
    assert_eq!(d["kind"], "semaphore");
    assert_eq!(d["limit"], 3);
    assert_eq!(
        (&d["held"], &d["fence"]),
        (&json!(true), &json!(a.fence().max(b.fence())))
    );
    let holders = d["holders"].as_array().unwrap();
    let mut tokens: Vec<&str> = holders
        .iter()
        .map(|h| h["token"].as_str().unwrap())
        .collect();
    tokens.sort();
    assert_eq!(tokens, want);
    for h in holders {
        assert_eq!(h["role"], "permit");
        let ms = h["remaining_ms"].as_u64().unwrap();
        assert!(ms > 30_000 && ms <= 40_000, "{ms}");
    }
    // The old fields keep their meaning: the holder is one of the permits.
    assert!(want.contains(&d["holder"].as_str().unwrap()), "{d}");
    assert!(d["remaining_ms"].as_u64().unwrap() > 30_000, "{d}");

    let o = output(leasehold(Some(&server)).args(["status", "pool"]));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].contains("KIND"), "{text}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..4], ["pool", "semaphore", "held", "2/3"], "{text}");
    let mut under: Vec<String> = lines[2..]
        .iter()
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cells[0], "permit", "{text}");
            assert!(cells[2].ends_with('s'), "a TTL: {text}");
            cells[1].trim_end_matches('…').to_string()
        })
        .collect();
    under.sort();
    assert_eq!(under, want);
    assert!(
        !text.contains(a.token().as_str()) && !text.contains(b.token().as_str()),
        "{text}"
    );
}

#[test]
fn status_and_list_of_a_rwlock_show_readers_then_the_writer() {
    let server = RedisServer::start().unwrap();
    let (rt, client) = library(&server);
    output(leasehold(Some(&server)).args(["acquire", "k/lease", "--ttl", "40s"]));
    let permit = rt.block_on(client.semaphore("k/sem", 2).acquire()).unwrap();
    let lock = client.rwlock("k/rw").ttl(40 * SECOND);
    let r1 = rt.block_on(lock.read().acquire()).unwrap();
    let r2 = rt.block_on(lock.read().acquire()).unwrap();

    let rows = json_lines(leasehold(Some(&server)).args(["list", "k/*", "--json"]));
    let kinds: Vec<(&str, &str, usize)> = rows
        .iter()
        .map(|r| {
            let d = &r["data"];
            (
                d["name"].as_str().unwrap(),
                d["kind"].as_str().unwrap(),
                d["holders"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("k/lease", "lease", 1),
            ("k/rw", "rwlock", 2),
            ("k/sem", "semaphore", 1)
        ]
    );
    let rw = &rows[1]["data"];
    assert_eq!(rw["writer_waiting"], false);
    assert!(rw.get("limit").is_none(), "{rw}");
    let mut readers: Vec<&str> = rw["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert_eq!(h["role"], "reader");
            h["token"].as_str().unwrap()
        })
        .collect();
    readers.sort();
    let mut want = vec![r1.token().prefix(), r2.token().prefix()];
    want.sort();
    assert_eq!(readers, want);
    assert_eq!(
        rows[2]["data"]["holders"][0]["token"],
        permit.token().prefix()
    );

    let o = output(leasehold(Some(&server)).args(["list", "k/*"]));
    let text = stdout(&o);
    let rw_row = text.lines().find(|l| l.starts_with("k/rw")).unwrap();
    assert_eq!(
        rw_row.split_whitespace().take(4).collect::<Vec<_>>(),
        ["k/rw", "rwlock", "held", "r×2"],
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("semaphore") && l.contains("1/2")),
        "{text}"
    );
    // list has no holder lines: one row per name and the header.
    assert_eq!(text.lines().count(), 4, "{text}");

    rt.block_on(r1.release()).unwrap();
    rt.block_on(r2.release()).unwrap();
    let w = rt.block_on(lock.write().acquire()).unwrap();
    let o = output(leasehold(Some(&server)).args(["status", "k/rw"]));
    let text = stdout(&o);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[1][..4], ["k/rw", "rwlock", "held", "w"], "{text}");
    assert_eq!(lines[2][0], "writer", "{text}");
    assert_eq!(lines[2][1], format!("{}…", w.token().prefix()), "{text}");
}
