//! Cluster faults: a slot that moves while workers contend on a lease in
//! it, and masters that fail over while leases in their slots are held.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use leasehold::Client;
use testkit::{ClusterOptions, RedisCluster};
use tokio::time::Instant;

use crate::deploy::Raw;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn start(replicas_per_master: usize) -> RedisCluster {
    tokio::task::spawn_blocking(move || {
        RedisCluster::start_with(ClusterOptions {
            masters: 3,
            replicas_per_master,
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .expect("start a redis cluster")
}

async fn connect(cluster: &RedisCluster) -> Client {
    Client::builder()
        .cluster(cluster.seeds())
        .connect()
        .await
        .expect("connect to the cluster")
}

async fn raw(cluster: &RedisCluster) -> Raw {
    Raw::Cluster(
        redis::cluster::ClusterClient::new(cluster.seeds())
            .unwrap()
            .get_async_connection()
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_that_moves_under_sixteen_workers_loses_no_update() {
    let cluster = start(0).await;
    let name = "hot";
    let counter = "{hot}:counter"; // in the lease's slot: it moves too
    let slot = cluster.slot_of(name).unwrap();
    let from = cluster.master_of_slot(slot);
    let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
    let clients = [connect(&cluster).await, connect(&cluster).await];
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let slowest = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let lease = clients[i % 2]
            .lease(name)
            .ttl(ms(2000))
            .wait(Duration::from_secs(20))
            .backoff(ms(50), ms(1000));
        let mut conn = raw(&cluster).await;
        let (inside, most, done, slowest) = (
            Arc::clone(&inside),
            Arc::clone(&most),
            Arc::clone(&done),
            Arc::clone(&slowest),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let asked = Instant::now();
                let g = lease.acquire().await.unwrap();
                slowest.fetch_max(asked.elapsed().as_millis() as u64, Ordering::SeqCst);
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // A non-atomic increment: two holders would lose updates.
                let n: Option<u64> = redis::cmd("GET")
                    .arg(counter)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                let _: () = redis::cmd("SET")
                    .arg(counter)
                    .arg(n.unwrap_or(0) + 1)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::SeqCst);
                inside.fetch_sub(1, Ordering::SeqCst);
                g.release().await.unwrap();
            }
        }));
    }
    // Move the slot while they run.
    tokio::time::sleep(ms(1000)).await;
    let mut cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.move_slot(slot, to).expect("move the slot");
        cluster
    })
    .await
    .unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(cluster.master_of_slot(slot), to, "the slot did not move");
    let mut conn = raw(&cluster).await;
    let n: u64 = redis::cmd("GET")
        .arg(counter)
        .query_async(&mut conn)
        .await
        .unwrap();
    let done = done.load(Ordering::SeqCst);
    assert_eq!(most.load(Ordering::SeqCst), 1, "two holders at once");
    assert_eq!(n, done, "lost updates: {} of {done}", done - n);
    assert!(done > 50, "only {done} increments");
    // Waiters kept being woken: no wait much past the fallback cap (1 s).
    // (When the old owner unsubscribed the wake channel and nobody
    // subscribed again at the new one, waits of 3.2-3.8 s.)
    let slowest = slowest.load(Ordering::SeqCst);
    eprintln!("slowest wait {slowest} ms, {done} increments");
    assert!(slowest < 2000, "a waiter waited {slowest} ms");
    cluster.wait_settled().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_fails_over_leaves_each_lease_held_or_lost_never_both() {
    let cluster = start(1).await;
    let client = connect(&cluster).await;
    let other = connect(&cluster).await;
    let names: Vec<String> = (0..12).map(|i| format!("held/{i}")).collect();
    let mut guards = Vec::new();
    for n in &names {
        guards.push(client.lease(n).ttl(ms(3000)).acquire().await.unwrap());
    }
    let fences: Vec<u64> = guards.iter().map(|g| g.fence()).collect();
    // One master hands over gracefully, another is killed.
    let masters = cluster.masters();
    let (graceful, killed) = (masters[0], masters[1]);
    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.failover(graceful).expect("fail over gracefully");
        cluster.kill_master(killed).expect("kill a master");
        cluster
    })
    .await
    .unwrap();
    // Two renewal periods after the cluster settled: each guard knows.
    tokio::time::sleep(ms(2500)).await;
    let mut conn = raw(&cluster).await;
    let mut held = 0;
    for ((g, n), fence) in guards.iter().zip(&names).zip(&fences) {
        let holder: Option<String> = redis::cmd("GET")
            .arg(n)
            .query_async(&mut conn)
            .await
            .unwrap();
        if g.is_lost() {
            // Someone else may take it now, with a higher fence.
            let next = other.lease(n).wait(ms(5000)).acquire().await.unwrap();
            assert!(next.fence() > *fence, "{n}: the fence went back");
            next.release().await.unwrap();
        } else {
            held += 1;
            assert_eq!(
                holder.as_deref(),
                Some(g.token().as_str()),
                "{n}: the guard claims a lease Redis does not give it"
            );
            assert!(
                other.lease(n).try_acquire().await.unwrap_err().is_held(),
                "{n}: two holders"
            );
        }
    }
    // The graceful failover loses nothing: at least its slots' leases held.
    assert!(held > 0, "every lease was lost");
    drop(guards);
    drop(cluster);
}
