//! Bad input: one line on stderr that says what is wrong, a documented
//! exit code, never a panic or a backtrace.

use crate::common::*;

#[test]
fn bad_inputs_name_themselves() {
    let server = RedisServer::start().unwrap();
    let s = Some(&server);
    let err = one_line_error(&["run", "x", "--ttl", "5", "--", "true"], s, 2);
    assert!(err.contains("5s"), "{err}");
    let err = one_line_error(&["run", "x", "--ttl", "0s", "--", "true"], s, 2);
    assert!(err.contains("ttl") && err.contains("10ms"), "{err}");
    let err = one_line_error(&["acquire", "x", "--wait", "soon"], s, 2);
    assert!(err.contains("--wait") && err.contains("30s"), "{err}");
    let err = one_line_error(&["run", "", "--", "true"], s, 2);
    assert!(err.contains("name"), "{err}");
    let err = one_line_error(&["status", ""], s, 2);
    assert!(err.contains("name"), "{err}");
    let err = one_line_error(&["sem", "run", "p", "--limit", "0", "--", "true"], s, 2);
    assert!(err.contains("at least 1"), "{err}");
    let err = one_line_error(&["status", "--name-hex", "6g"], s, 2);
    assert!(
        err.contains("hex") && err.contains("usage: leasehold status"),
        "{err}"
    );
    let err = one_line_error(&["status", "--name-hex", ""], s, 2);
    assert!(err.contains("empty"), "{err}");
    let err = one_line_error(&["release", "x", "not-a-token"], s, 2);
    assert!(err.contains("token"), "{err}");
    // clap's own refusals fold into one line too, with the usage.
    let err = one_line_error(&["run", "x"], s, 2);
    assert!(err.contains("usage: leasehold run"), "{err}");
    let err = one_line_error(&["status", "x", "--bogus"], s, 2);
    assert!(err.contains("--bogus"), "{err}");
    let err = one_line_error(&["--url", "http://nowhere", "status", "x"], None, 2);
    assert!(err.contains("redis://"), "{err}");
    let port = closed_port();
    let url = format!("redis://127.0.0.1:{port}");
    let err = one_line_error(&["--url", &url, "status", "x"], None, 5);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    // Nothing was left behind by the refused calls.
    let keys: i64 = redis::cmd("DBSIZE").query(&mut redis(&server)).unwrap();
    assert_eq!(keys, 0);
}

#[test]
fn a_connect_timeout_exits_as_an_unreachable_redis_not_a_busy_lease() {
    // Takes connections and never answers: the connect timeout runs out.
    // That is Redis not reachable (5), not the lease not obtained (3).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let url = format!("redis://{addr}");
    let args = ["--url", &url, "--connect-timeout", "300ms"];
    for cmd in [
        &["acquire", "x", "--wait", "10s"][..],
        &["run", "x", "--", "true"],
    ] {
        let args: Vec<&str> = args.iter().chain(cmd).copied().collect();
        let err = one_line_error(&args, None, 5);
        assert!(err.contains(&addr) && err.contains("connect"), "{err}");
    }
}

#[test]
fn bad_input_is_refused_before_connecting() {
    // No server anywhere: still a usage error (2), not an unreachable
    // Redis (5), and the command never ran.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let touch = ["--", "touch", marker.to_str().unwrap()];
    for args in [
        &["run", "x", "--ttl", "0s"][..],
        &["run", "x", "--ttl", "400d"],
        &["run", ""],
        &["run", "x", "--grace", "10"],
    ] {
        let args: Vec<&str> = ["--url", &url]
            .iter()
            .chain(args)
            .chain(&touch)
            .copied()
            .collect();
        one_line_error(&args, None, 2);
    }
    assert!(!marker.exists(), "the command ran");
}

#[test]
fn a_refused_password_is_named() {
    let server = RedisServer::start().unwrap();
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("sesame")
        .query(&mut redis(&server))
        .unwrap();
    let url = format!("redis://:wrong@127.0.0.1:{}", server.port());
    let err = one_line_error(&["--url", &url, "status", "x"], None, 5);
    assert!(!err.contains("wrong"), "the password leaked: {err}");
    assert!(err.contains("password"), "{err}");
    let url = format!("redis://127.0.0.1:{}", server.port());
    let err = one_line_error(&["--url", &url, "status", "x"], None, 5);
    assert!(err.to_lowercase().contains("auth"), "{err}");
    // The right password works.
    let url = format!("redis://:sesame@127.0.0.1:{}", server.port());
    let o = output(leasehold(None).args(["--url", &url, "status", "x"]));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn the_address_comes_from_leasehold_url_then_redis_url() {
    let server = RedisServer::start().unwrap();
    let nowhere = format!("redis://127.0.0.1:{}", closed_port());
    // REDIS_URL alone.
    let o = output(
        leasehold(None)
            .env("REDIS_URL", server.url())
            .args(["status", "x"]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // LEASEHOLD_URL before REDIS_URL.
    let o = output(
        leasehold(None)
            .env("LEASEHOLD_URL", &nowhere)
            .env("REDIS_URL", server.url())
            .args(["status", "x"]),
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    // --url before both.
    let o = output(
        leasehold(None)
            .env("LEASEHOLD_URL", &nowhere)
            .env("REDIS_URL", &nowhere)
            .args(["--url", &server.url(), "status", "x"]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn help_explains_exit_codes_and_has_examples() {
    let o = output(leasehold(None).arg("--help"));
    assert!(o.status.success());
    let text = stdout(&o);
    for needle in ["Exit codes", "Examples", "JSON", "130", "LEASEHOLD_URL"] {
        assert!(text.contains(needle), "--help lacks {needle}: {text}");
    }
    for cmd in [
        "run", "acquire", "extend", "release", "status", "list", "demo", "bench",
    ] {
        let o = output(leasehold(None).args([cmd, "--help"]));
        assert!(
            stdout(&o).contains("Example"),
            "`{cmd} --help` has no example"
        );
    }
    let o = output(leasehold(None).args(["sem", "run", "--help"]));
    assert!(stdout(&o).contains("Example"));
}
