//! `demo` on a private redis-server, and `bench`'s refusals.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;

use crate::common::*;

#[test]
fn demo_json_is_json_lines() {
    let o = output(leasehold(None).args(["demo", "paused-holder", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.lines().count() >= 2, "{out}");
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["type"].is_string() && v["data"].is_object(), "{line}");
    }
}

#[test]
fn sigint_stops_the_demo_and_its_private_server() {
    let mut demo = leasehold(None)
        .arg("demo")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its first line on stderr names the private server.
    let (tx, rx) = mpsc::channel();
    let err = BufReader::new(demo.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in err.lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let first = rx.recv_timeout(10 * SECOND).expect("the demo's first line");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("redis://"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_string();
    let addr = url.trim_start_matches("redis://").to_string();
    assert!(std::net::TcpStream::connect(&addr).is_ok(), "{addr}");

    signal(&demo, libc::SIGINT);
    let status = wait_within(&mut demo, 10 * SECOND);
    assert_eq!(status.code(), Some(130));
    eventually(5 * SECOND, "the private server to stop", || {
        std::net::TcpStream::connect(&addr).is_err()
    });
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().all(|l| !l.contains("panicked")), "{rest:#?}");
}
