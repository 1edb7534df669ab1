//! The `leasehold-bench` binary's workload names: clap refuses an unknown
//! one with the list of valid ones, and takes the spellings it always took.

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leasehold-bench"))
        .args(args)
        .env_remove("LEASEHOLD_URL")
        .output()
        .expect("run leasehold-bench")
}

#[test]
fn an_unknown_workload_is_refused_with_the_list() {
    for bad in [&["W9"][..], &["W1,W9"], &["W1", "w7"]] {
        let o = bench(bad);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains("invalid value"), "{bad:?}: {err}");
        for name in ["W1", "W2", "W3", "W4", "W5", "W6", "all"] {
            assert!(err.contains(name), "{bad:?}: {name} not listed: {err}");
        }
    }
}

/// Any case, commas, `all`: with no server there, the run fails (exit 1),
/// but only after the names were taken.
#[test]
fn workload_spellings_still_parse() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("redis://127.0.0.1:{port}");
    for ok in [
        &["w1,W3"][..],
        &["all"],
        &["W2", "w5"],
        &["ALL"],
        &["w0"],
        &[],
    ] {
        let mut args = ok.to_vec();
        args.extend(["--no-progress", "--url", &nowhere]);
        let o = bench(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{ok:?}: {err}");
        assert!(err.contains("could not reach Redis"), "{ok:?}: {err}");
    }
}
