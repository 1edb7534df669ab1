//! `rediss://` with `--tls-ca`, `--tls-cert` and `--tls-key`, against a
//! redis-server listening for TLS with certificates of a private CA.

use testkit::{ClientAuth, ServerOptions, TlsFiles};

use crate::common::*;

fn tls_server(auth: ClientAuth) -> RedisServer {
    RedisServer::start_with(ServerOptions {
        tls: Some(auth),
        ..Default::default()
    })
    .expect("start redis-server with TLS")
}

#[test]
fn tls_ca_lets_acquire_status_and_release_talk_tls() {
    let server = tls_server(ClientAuth::Optional);
    let url = server.tls_url().unwrap();
    let ca = server.tls_files().unwrap().ca();
    let run = |args: &[&str]| {
        let o = output(
            leasehold(None)
                .arg("--url")
                .arg(&url)
                .arg("--tls-ca")
                .arg(&ca)
                .args(args),
        );
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let token = run(&["acquire", "tls/job", "--ttl", "40s"]);
    let token = token.split_whitespace().next().unwrap().to_owned();
    let status = run(&["status", "tls/job", "--json"]);
    let v: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert_eq!(v["data"]["held"], true, "{status}");
    run(&["release", "tls/job", &token]);
    let status = run(&["status", "tls/job", "--json"]);
    let v: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert_eq!(v["data"]["held"], false, "{status}");
}

#[test]
fn tls_cert_and_key_are_shown_to_a_server_that_requires_them() {
    let server = tls_server(ClientAuth::Required);
    let files = server.tls_files().unwrap();
    let o = output(
        leasehold(None)
            .arg("--url")
            .arg(server.tls_url().unwrap())
            .arg("--tls-ca")
            .arg(files.ca())
            .arg("--tls-cert")
            .arg(files.client_cert())
            .arg("--tls-key")
            .arg(files.client_key())
            .args(["status", "tls/job"]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_wrong_tls_ca_is_one_line_saying_the_certificate_could_not_be_verified() {
    let server = tls_server(ClientAuth::Optional);
    let elsewhere = tempfile::tempdir().unwrap();
    let other = TlsFiles::generate(elsewhere.path()).unwrap();
    let err = refused(
        leasehold(None)
            .arg("--url")
            .arg(server.tls_url().unwrap())
            .arg("--tls-ca")
            .arg(other.ca())
            .args(["status", "tls/job"]),
        5,
    );
    assert!(
        err.contains("could not verify the TLS certificate"),
        "{err}"
    );
}

/// The issue's symptom: `rediss://` answered "can't connect with TLS, the
/// feature is not enabled". Now it talks TLS, and verifies the server
/// against the system's roots, which do not know the test CA.
#[test]
fn rediss_without_tls_ca_talks_tls_and_checks_the_system_roots() {
    let server = tls_server(ClientAuth::Optional);
    let err = refused(
        leasehold(None)
            .arg("--url")
            .arg(server.tls_url().unwrap())
            .args(["status", "tls/job"]),
        5,
    );
    assert!(
        err.contains("could not verify the TLS certificate"),
        "{err}"
    );
}
