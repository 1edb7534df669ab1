//! `rediss://` against a redis-server listening for TLS with certificates of
//! a private CA (testkit generates them): the CA and client certificate
//! options of the builder, and the errors when they do not fit.

use std::time::Duration;

use leasehold::{Client, ErrorKind};
use testkit::{ClientAuth, RedisServer, ServerOptions, TlsFiles};

use crate::common::{get, raw};

fn tls_server(auth: ClientAuth) -> RedisServer {
    RedisServer::start_with(ServerOptions {
        tls: Some(auth),
        ..Default::default()
    })
    .expect("start redis-server with TLS")
}

#[tokio::test]
async fn acquires_waits_and_releases_over_tls_with_a_private_ca() {
    let server = tls_server(ClientAuth::Optional);
    let files = server.tls_files().unwrap();
    let url = server.tls_url().unwrap();
    let connect = || Client::builder().tls_ca_file(files.ca()).connect(&url);
    let (client, other) = (connect().await.unwrap(), connect().await.unwrap());
    let mut plain = raw(&server).await;

    let guard = client.lease("tls/job").acquire().await.unwrap();
    assert!(
        get(&mut plain, "tls/job").await.is_some(),
        "the lease key is written over TLS"
    );
    // The waiter is woken through the subscriber, which talks TLS too.
    let waiter = tokio::spawn(async move {
        other
            .lease("tls/job")
            .wait(Duration::from_secs(30))
            .acquire()
            .await
    });
    guard.release().await.unwrap();
    let next = waiter
        .await
        .unwrap()
        .expect("the waiter gets the lease after the release");
    assert!(next.fence() > 0);
    next.release().await.unwrap();
    assert_eq!(get(&mut plain, "tls/job").await, None);
}

#[tokio::test]
async fn a_server_that_requires_a_client_certificate_accepts_the_one_given() {
    let server = tls_server(ClientAuth::Required);
    let files = server.tls_files().unwrap();
    let url = server.tls_url().unwrap();

    let without = Client::builder()
        .tls_ca_file(files.ca())
        .connect_timeout(Duration::from_secs(10))
        .connect(&url)
        .await;
    assert!(without.is_err(), "refused without a client certificate");

    let client = Client::builder()
        .tls_ca_file(files.ca())
        .tls_client_cert_files(files.client_cert(), files.client_key())
        .connect(&url)
        .await
        .unwrap();
    let guard = client.lease("tls/mutual").acquire().await.unwrap();
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_wrong_ca_fails_saying_the_certificate_could_not_be_verified() {
    let server = tls_server(ClientAuth::Optional);
    let elsewhere = tempfile::tempdir().unwrap();
    let other = TlsFiles::generate(elsewhere.path()).unwrap();

    let err = Client::builder()
        .tls_ca_file(other.ca())
        .connect(&server.tls_url().unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("could not verify the TLS certificate"),
        "{err}"
    );
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    assert!(err.is_connection(), "{err:?}");
}

#[tokio::test]
async fn certificate_files_are_read_at_connect_and_named_when_missing() {
    let server = tls_server(ClientAuth::Optional);
    let err = Client::builder()
        .tls_ca_file("no/such/ca.pem")
        .connect(&server.tls_url().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidArgument { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no/such/ca.pem"), "{err}");

    // Certificates for a plain URL are a mistake, not ignored.
    let err = Client::builder()
        .tls_ca_file(server.tls_files().unwrap().ca())
        .connect(&server.url())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rediss://"), "{err}");
}
