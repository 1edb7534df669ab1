//! Bad input: one line on stderr that says what is wrong, a documented
//! exit code, never a panic.

use crate::common::*;

fn one_line_error(args: &[&str], server: Option<&RedisServer>, code: i32) -> String {
    let o = output(leasehold(server).args(args));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    assert!(
        err.starts_with("leasehold: ") || err.starts_with("error: "),
        "{args:?}: {err}"
    );
    err
}

#[test]
fn bad_inputs_name_themselves() {
    let server = RedisServer::start().unwrap();
    let s = Some(&server);
    let err = one_line_error(&["run", "x", "--ttl", "5", "--", "true"], s, 2);
    assert!(err.contains("5s"), "{err}");
    let err = one_line_error(&["run", "x", "--ttl", "0s", "--", "true"], s, 2);
    assert!(err.contains("ttl"), "{err}");
    let err = one_line_error(&["run", "", "--", "true"], s, 2);
    assert!(err.contains("name"), "{err}");
    let err = one_line_error(&["release", "x", "not-a-token"], s, 2);
    assert!(err.contains("token"), "{err}");
    let err = one_line_error(&["--url", "http://nowhere", "status", "x"], None, 2);
    assert!(err.contains("redis://"), "{err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let err = one_line_error(&["--url", &url, "status", "x"], None, 5);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // Nothing was left behind by the refused calls.
    let mut conn = redis(&server);
    let keys: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(keys, 0);
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
    let url = format!("redis://127.0.0.1:{}", server.port());
    let err = one_line_error(&["--url", &url, "status", "x"], None, 5);
    assert!(err.to_lowercase().contains("auth"), "{err}");
}

#[test]
fn help_explains_exit_codes_and_has_examples() {
    let o = output(leasehold(None).arg("--help"));
    let text = stdout(&o);
    assert!(
        text.contains("Exit codes") && text.contains("Examples"),
        "{text}"
    );
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
