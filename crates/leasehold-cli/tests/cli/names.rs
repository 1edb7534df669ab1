//! Names in `--json`: whole, whatever their bytes, and taken back by the
//! commands as given (`--name-hex` for a name that is not UTF-8).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::common::*;

/// The JSON Lines of a command that must succeed.
fn json_lines(cmd: &mut std::process::Command) -> Vec<serde_json::Value> {
    let o = output(cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whether Redis has the key `name` (a lease's hold key is its name).
fn held(server: &RedisServer, name: &[u8]) -> bool {
    redis::cmd("EXISTS")
        .arg(name)
        .query::<bool>(&mut redis(server))
        .unwrap()
}

#[test]
fn json_gives_names_whole_and_release_takes_them_back() {
    let server = RedisServer::start().unwrap();
    let long = format!("jobs/{}", "x".repeat(100));
    let odd = "line\nbreak \"quoted\" back\\slash café ☃";
    for name in [long.as_str(), odd] {
        let rows = json_lines(leasehold(Some(&server)).args(["acquire", name, "--json"]));
        let token = rows[0]["data"]["token"].as_str().unwrap().to_string();
        assert_eq!(rows[0]["data"]["name"], name);

        let rows = json_lines(leasehold(Some(&server)).args(["status", name, "--json"]));
        assert_eq!(rows[0]["data"]["name"], name, "status");
        assert!(rows[0]["data"].get("name_hex").is_none(), "{}", rows[0]);

        // What `list` gives is what `release` takes.
        let rows = json_lines(leasehold(Some(&server)).args(["list", "*", "--json"]));
        let names: Vec<&str> = rows
            .iter()
            .map(|r| r["data"]["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&name), "{names:?}");
        let o = output(leasehold(Some(&server)).args(["release", name, &token]));
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!held(&server, name.as_bytes()), "{name:?} is still held");
    }
    // The text form stays shortened and escaped, on one line per name.
    output(leasehold(Some(&server)).args(["acquire", odd]));
    let o = output(leasehold(Some(&server)).args(["status", odd]));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains(r#"line\nbreak \"quoted\" back\\slash café ☃"#),
        "{text}"
    );
}

#[test]
fn a_name_that_is_not_utf8_round_trips_through_name_hex() {
    let server = RedisServer::start().unwrap();
    let name: &[u8] = b"bin/\xff\xfe\nend";
    let hex = "62696e2ffffe0a656e64";

    // Given as raw bytes on the command line.
    let rows = json_lines(
        leasehold(Some(&server))
            .arg("acquire")
            .arg(OsStr::from_bytes(name))
            .arg("--json"),
    );
    let d = &rows[0]["data"];
    assert_eq!(d["name_hex"], hex);
    assert_eq!(d["name"], "bin/\u{fffd}\u{fffd}\nend", "lossy");
    let token = d["token"].as_str().unwrap().to_string();
    assert!(held(&server, name));

    // list gives the exact bytes; --name-hex takes them back.
    let rows = json_lines(leasehold(Some(&server)).args(["list", "bin/*", "--json"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    let given = rows[0]["data"]["name_hex"].as_str().unwrap().to_string();
    assert_eq!(given, hex);
    let rows =
        json_lines(leasehold(Some(&server)).args(["status", "--name-hex", &given, "--json"]));
    assert_eq!(rows[0]["data"]["held"], true);
    assert_eq!(rows[0]["data"]["name_hex"], hex);
    let o = output(leasehold(Some(&server)).args(["release", "--name-hex", &given, &token]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!held(&server, name), "still held");

    // run: the command gets the exact bytes, and the record names them.
    let o = output(leasehold(Some(&server)).args([
        "run",
        "--name-hex",
        hex,
        "--json",
        "--",
        "sh",
        "-c",
        r#"printf %s "$LEASEHOLD_NAME" | od -An -tx1 | tr -d ' \n'; echo"#,
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(hex), "LEASEHOLD_NAME: {out}");
    let v: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(v["type"], "run");
    assert_eq!(v["data"]["name_hex"], hex);
}

#[test]
fn a_name_with_a_nul_byte_comes_with_name_hex() {
    // UTF-8, but no command-line argument can carry it: name_hex too.
    let server = RedisServer::start().unwrap();
    let rows =
        json_lines(leasehold(Some(&server)).args(["acquire", "--name-hex", "610062", "--json"]));
    let d = &rows[0]["data"];
    assert_eq!(
        (d["name"].as_str(), d["name_hex"].as_str()),
        (Some("a\0b"), Some("610062"))
    );
    assert!(held(&server, b"a\0b"));
    let token = d["token"].as_str().unwrap();
    let o = output(leasehold(Some(&server)).args(["release", "--name-hex", "610062", token]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!held(&server, b"a\0b"));
    // run cannot give it to the command: refused before taking the lease.
    let fence = fence_counter(&server, "a\0b");
    let o = output(leasehold(Some(&server)).args(["run", "--name-hex", "610062", "--", "true"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("NUL"), "{}", stderr(&o));
    assert_eq!(fence_counter(&server, "a\0b"), fence, "run took the lease");
    assert!(!held(&server, b"a\0b"));
}
