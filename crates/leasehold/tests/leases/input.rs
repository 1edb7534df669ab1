//! Bad input gets an error that names it, and leaves nothing behind.

use std::time::Duration;

use leasehold::{Client, ErrorKind};
use tokio::time::Instant;

use crate::common::*;

fn assert_invalid(err: &leasehold::Error, what: &str) {
    match err.kind() {
        ErrorKind::InvalidArgument { what: w, .. } => assert_eq!(*w, what, "{err}"),
        other => panic!("expected an invalid {what}, got {other:?}"),
    }
    assert!(
        err.to_string().contains(what),
        "message does not name {what}: {err}"
    );
}

#[tokio::test]
async fn bad_names_and_ttls_are_refused_and_leave_nothing_behind() {
    let (server, client) = setup().await;
    let mut conn = raw(&server).await;

    let err = client.lease("").acquire().await.unwrap_err();
    assert_invalid(&err, "name");
    assert!(err.to_string().contains("empty"), "{err}");

    let long = vec![b'n'; 1025];
    let err = client.lease(&long).try_acquire().await.unwrap_err();
    assert_invalid(&err, "name");
    assert!(err.to_string().contains("1024"), "{err}");

    let err = client
        .lease("zero")
        .ttl(Duration::ZERO)
        .acquire()
        .await
        .unwrap_err();
    assert_invalid(&err, "ttl");
    let err = client
        .lease("huge")
        .ttl(Duration::from_secs(u64::MAX))
        .acquire()
        .await
        .unwrap_err();
    assert_invalid(&err, "ttl");
    assert!(err.to_string().contains("365 days"), "{err}");
    let err = client
        .lease("huge")
        .ttl(Duration::from_millis(i64::MAX as u64))
        .try_acquire()
        .await
        .unwrap_err();
    assert_invalid(&err, "ttl");
    let err = client
        .lease("backoff")
        .backoff(ms(10), ms(1))
        .acquire()
        .await
        .unwrap_err();
    assert_invalid(&err, "backoff");
    let err = client
        .lease("huge")
        .ttl(Duration::from_secs(u64::MAX))
        .extend_by_token(&leasehold::Token::random())
        .await
        .unwrap_err();
    assert_invalid(&err, "ttl");

    assert_eq!(
        dbsize(&mut conn).await,
        0,
        "a refused call left keys behind"
    );

    // 1024 bytes is fine.
    let name = vec![b'n'; 1024];
    client
        .lease(&name)
        .try_acquire()
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_bad_url_is_named() {
    let err = Client::connect("http://localhost:6379").await.unwrap_err();
    assert_invalid(&err, "url");
    assert!(err.to_string().contains("redis://"), "{err}");
}

#[tokio::test]
async fn an_unreachable_address_is_named_within_the_timeout() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let err = Client::builder()
        .connect_timeout(SECOND)
        .connect(&format!("redis://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < 2 * SECOND,
        "took {:?}",
        started.elapsed()
    );
    assert!(err.is_connection(), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_connect_timeout_is_a_connection_problem_not_a_busy_lease() {
    // Takes connections (the kernel completes them into the backlog) and
    // never answers: the handshake waits until the connect timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let started = Instant::now();
    let err = Client::builder()
        .connect_timeout(ms(300))
        .response_timeout(5 * SECOND)
        .connect(&format!("redis://{addr}"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < 3 * SECOND,
        "took {:?}",
        started.elapsed()
    );
    assert!(
        !err.is_timeout(),
        "a dead Redis read as a busy lease: {err:?}"
    );
    assert!(err.is_connection() && err.is_retryable(), "{err:?}");
    assert_eq!(err.addr(), Some(addr.to_string().as_str()), "{err:?}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn a_server_that_does_not_answer_times_out_with_its_address() {
    let (server, _) = setup().await;
    server.pause();
    let started = Instant::now();
    let result = Client::builder()
        .connect_timeout(ms(500))
        .response_timeout(ms(500))
        .connect(&server.url())
        .await;
    let client = match result {
        // Some handshakes need no reply; then the first command times out.
        Ok(client) => client,
        Err(err) => {
            assert!(err.is_connection(), "{err:?}");
            assert!(
                err.to_string().contains(&server.port().to_string()),
                "{err}"
            );
            assert!(started.elapsed() < 2 * SECOND);
            server.resume();
            return;
        }
    };
    let err = client.lease("frozen").try_acquire().await.unwrap_err();
    assert!(err.is_connection(), "{err:?}");
    assert!(
        err.to_string().contains(&server.port().to_string()),
        "{err}"
    );
    assert!(
        started.elapsed() < 2 * SECOND,
        "took {:?}",
        started.elapsed()
    );
    server.resume();
}
