//! Direct connections: a lone acquire or release goes over a socket its
//! caller writes and reads itself (backend/direct.rs), never sharing a
//! reply with anyone.

use std::time::Duration;

use leasehold::Client;
use testkit::RedisServer;

use crate::common::{eventually, get, ms, raw, raw_at};

/// Cycles `lease` until the client has opened its direct connection (the
/// first lone operation finds none idle, goes over the shared connection
/// and has one opened in the background).
async fn until_direct(client: &Client, lease: &leasehold::Lease) {
    eventually(Duration::from_secs(5), "a direct connection", || async {
        lease.try_acquire().await.unwrap().release().await.unwrap();
        client.connections() >= 2
    })
    .await;
}

#[tokio::test]
async fn lone_operations_open_a_few_direct_connections_and_no_more() {
    let server = RedisServer::start().expect("start redis-server");
    let client = Client::connect(&server.url()).await.unwrap();
    let lease = client.lease("direct:few").ttl(Duration::from_secs(30));
    until_direct(&client, &lease).await;
    // 8 tasks at once, all alone (below the batcher's threshold): the lane
    // grows to its cap at most, the rest go over the shared connection.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let lease = client
            .lease(format!("direct:few:{i}"))
            .ttl(Duration::from_secs(30));
        tasks.spawn(async move {
            for _ in 0..200 {
                lease.try_acquire().await.unwrap().release().await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let open = client.connections();
    assert!(
        (2..=1 + 4 + 1).contains(&open),
        "the shared connection, at most 4 direct ones and the subscriber: {open}"
    );
    let mut conn = raw(&server).await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    // Ours, and this raw one.
    assert!(list.lines().count() <= open + 1, "{list}");
}

#[tokio::test]
async fn a_user_a_password_and_a_database_in_the_url_apply_to_the_direct_connections_too() {
    let server = RedisServer::start().expect("start redis-server");
    let mut admin = raw(&server).await;
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "lh", "on", ">s3cret", "~*", "&*", "+@all"][..])
        .query_async(&mut admin)
        .await
        .unwrap();
    // Nobody gets in without the password.
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "off"][..])
        .query_async(&mut admin)
        .await
        .unwrap();
    let port = server.port();
    let url = format!("redis://lh:s3cret@127.0.0.1:{port}/3");
    let client = Client::connect(&url).await.unwrap();
    let lease = client.lease("direct:db").ttl(Duration::from_secs(30));
    until_direct(&client, &lease).await;
    for _ in 0..20 {
        let guard = lease.try_acquire().await.unwrap();
        let mut db3 = raw_at(url.clone()).await;
        assert_eq!(
            get(&mut db3, "direct:db").await.as_deref(),
            Some(guard.token().as_str()),
            "the lease is in database 3"
        );
        let mut db0 = raw_at(format!("redis://lh:s3cret@127.0.0.1:{port}/0")).await;
        assert_eq!(get(&mut db0, "direct:db").await, None, "not in database 0");
        guard.release().await.unwrap();
        assert_eq!(get(&mut db3, "direct:db").await, None, "released");
    }
}

/// A direct connection whose reply did not come in time is closed: were
/// it used again, the next operation would read the late reply of the
/// last one. Here the late reply is a grant ({1, fence}) and the next
/// operation's true reply a refusal: reading the wrong one would take a
/// lease that someone else holds.
#[tokio::test]
async fn a_direct_connection_whose_reply_came_late_is_never_used_again() {
    let server = RedisServer::start().expect("start redis-server");
    let client = Client::builder()
        .response_timeout(ms(200))
        .connect(&server.url())
        .await
        .unwrap();
    let other = Client::connect(&server.url()).await.unwrap();
    let mine = client
        .lease("direct:late:mine")
        .ttl(Duration::from_secs(30));
    let theirs = client
        .lease("direct:late:theirs")
        .ttl(Duration::from_secs(30));
    until_direct(&client, &mine).await;
    let _held = other
        .lease("direct:late:theirs")
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await
        .unwrap();
    for cancel in [false, true] {
        server.pause();
        let attempt = mine.try_acquire();
        let outcome = if cancel {
            // Dropped mid-flight by its caller.
            tokio::time::timeout(ms(50), attempt).await.ok()
        } else {
            Some(attempt.await)
        };
        match outcome {
            None => {}
            Some(Err(e)) => assert!(e.is_timeout() || e.is_connection(), "{e}"),
            Some(Ok(_)) => panic!("granted by a paused server"),
        }
        server.resume();
        // The late grant of `mine` reaches the client now, or never.
        for _ in 0..20 {
            let e = theirs.try_acquire().await.map(|g| g.fence()).unwrap_err();
            assert!(e.is_held(), "held by the other client: {e}");
        }
        // The timed-out grant may have run: it is ours to give back.
        let mut conn = raw(&server).await;
        let _: i64 = redis::cmd("DEL")
            .arg("direct:late:mine")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
