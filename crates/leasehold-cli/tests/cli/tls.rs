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

/// `leasehold --url rediss://.. --url rediss://.. --url rediss://.. --tls-ca
/// ca.pem run NAME -- CMD`: Redlock masters over TLS, with their one CA and
/// the client certificate they require.
#[test]
fn run_on_redlock_masters_over_tls() {
    let masters = RedisServer::start_many_with(
        3,
        ServerOptions {
            tls: Some(ClientAuth::Required),
            ..Default::default()
        },
    )
    .expect("start 3 TLS redis-servers");
    let files = masters[0].tls_files().unwrap();
    let mut cmd = leasehold(None);
    for m in &masters {
        cmd.arg("--url").arg(m.tls_url().unwrap());
    }
    cmd.arg("--tls-ca")
        .arg(files.ca())
        .arg("--tls-cert")
        .arg(files.client_cert())
        .arg("--tls-key")
        .arg(files.client_key());
    let o = output(cmd.args(["run", "tls/run", "--", "sh", "-c", "echo $LEASEHOLD_FENCE"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let fence: u64 = stdout(&o).trim().parse().expect("the child's fence");
    assert!(fence > 0);
    for m in &masters {
        // Every master took the acquire (its fence counter), and the
        // release (the key).
        assert!(fence_counter(m, "tls/run") > 0, "acquired on :{}", m.port());
        assert!(!key_exists(m, "tls/run"), "released on :{}", m.port());
    }
}

#[test]
fn a_wrong_tls_ca_on_redlock_names_each_master() {
    let masters = RedisServer::start_many_with(
        3,
        ServerOptions {
            tls: Some(ClientAuth::Optional),
            ..Default::default()
        },
    )
    .expect("start 3 TLS redis-servers");
    let other = TlsFiles::generate_temp().unwrap();
    let mut cmd = leasehold(None);
    for m in &masters {
        cmd.arg("--url").arg(m.tls_url().unwrap());
    }
    let o = output(
        cmd.arg("--tls-ca")
            .arg(other.ca())
            .args(["run", "tls/run", "--", "true"]),
    );
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    for m in &masters {
        let addr = format!("127.0.0.1:{}", m.tls_port().unwrap());
        assert!(
            err.contains(&format!(
                "could not verify the TLS certificate of Redis at {addr}"
            )),
            "{err}"
        );
    }
}

/// `leasehold --cluster --url rediss://.. --tls-ca ca.pem run NAME -- CMD`
/// on a TLS cluster.
#[test]
fn run_on_a_tls_cluster() {
    let cluster = testkit::RedisCluster::start_with(testkit::ClusterOptions {
        masters: 3,
        replicas_per_master: 0,
        server: ServerOptions {
            tls: Some(ClientAuth::Optional),
            ..Default::default()
        },
        ..Default::default()
    })
    .expect("start a 3-master TLS redis cluster");
    let ca = cluster.tls_files().unwrap().ca();
    for name in ["jobs/a", "jobs/b", "jobs/c"] {
        let node = cluster.master_of_slot(cluster.slot_of(name).unwrap());
        let o = output(
            leasehold(None)
                .args(["--cluster", "--url", &cluster.tls_seeds()[0]])
                .arg("--tls-ca")
                .arg(&ca)
                .args(["run", name, "--", "sh", "-c", "echo $LEASEHOLD_FENCE"]),
        );
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let fence: u64 = stdout(&o).trim().parse().expect("the child's fence");
        assert!(fence > 0, "{name}");
        let server = cluster.node(node).server();
        assert_eq!(fence_counter(server, name), fence, "{name} on its master");
        assert!(!key_exists(server, name), "{name} released");
    }
}
