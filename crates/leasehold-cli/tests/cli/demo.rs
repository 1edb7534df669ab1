//! `demo` on a private redis-server; `demo`'s and `bench`'s names refused or taken.

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

/// `demo --cluster` without a URL: a private 3-master cluster, and the
/// scenario on it through the cluster client (the lease-scoped script's key
/// in the lease's slot), refusing the paused holder's late writes as on one
/// server.
#[test]
fn demo_on_a_private_cluster() {
    let o = output(leasehold(None).args(["demo", "--cluster", "paused-holder", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let refused: Vec<(String, serde_json::Value)> = stdout(&o)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|v| v["type"] == "paused_holder")
        .map(|v| {
            (
                v["data"]["step"].as_str().unwrap().to_owned(),
                v["data"]["refused"].clone(),
            )
        })
        .collect();
    let step = |s: &str| {
        refused
            .iter()
            .find(|(name, _)| name == s)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("no step {s}: {refused:?}"))
    };
    assert_eq!(step("fenced_store"), true);
    assert_eq!(step("lease_script"), true);
    assert_eq!(step("no_fencing"), false);
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

#[test]
fn an_unknown_scenario_is_refused_with_the_list() {
    let o = output(leasehold(None).args(["demo", "flash"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("'flash'"), "{err}");
    for name in ["flash-sale", "one-job", "cache-stampede", "paused-holder"] {
        assert!(err.contains(name), "{name} not listed: {err}");
    }
    // And `--help` lists them, with what each shows.
    let help = stdout(&output(leasehold(None).args(["demo", "--help"])));
    assert!(help.contains("paused-holder:"), "{help}");
}

#[test]
fn an_unknown_workload_is_refused_with_the_list() {
    for bad in [&["W9"][..], &["W1,W9"], &["W1", "w7"]] {
        let o = output(leasehold(None).arg("bench").args(bad));
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        for name in ["W1", "W2", "W3", "W4", "W5", "W6", "all"] {
            assert!(err.contains(name), "{bad:?}: {name} not listed: {err}");
        }
    }
    let help = stdout(&output(leasehold(None).args(["bench", "--help"])));
    assert!(
        help.contains("W6:") && help.contains("all:") && help.contains("--cluster-url"),
        "{help}"
    );
}

/// The spellings taken before the value enums still are: any case, commas,
/// `all`. With no server the run fails (exit 1), but after parsing.
#[test]
fn workload_spellings_still_parse() {
    let nowhere = format!("redis://127.0.0.1:{}", closed_port());
    for ok in [&["w1,W3"][..], &["all"], &["W2", "w5"], &["ALL"], &[]] {
        let o = output(leasehold(None).args(["--url", &nowhere, "bench"]).args(ok));
        assert_eq!(o.status.code(), Some(1), "{ok:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("the benchmark failed"),
            "{ok:?}: {}",
            stderr(&o)
        );
    }
}
