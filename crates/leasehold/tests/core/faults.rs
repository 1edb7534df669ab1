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

/// Calls of EVALSHA and EVAL over the masters (INFO commandstats).
async fn script_calls(cluster: &RedisCluster) -> u64 {
    let mut total = 0;
    for m in cluster.masters() {
        let mut conn = redis::Client::open(cluster.node(m).url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        for line in info.lines() {
            if line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:") {
                let calls = line
                    .split("calls=")
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap();
                total += calls.parse::<u64>().unwrap();
            }
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_per_master_survive_slots_moving_under_them() {
    let cluster = start(0).await;
    let client = connect(&cluster).await;
    let names: Vec<String> = (0..64).map(|i| format!("w2/{i}")).collect();
    let stop = Instant::now() + Duration::from_secs(4);
    let cycles = Arc::new(AtomicU64::new(0));
    let before = script_calls(&cluster).await;
    let mut tasks = Vec::new();
    for n in &names {
        // Each name has one task: every try_acquire must get it.
        let lease = client.lease(n).ttl(ms(5000));
        let cycles = Arc::clone(&cycles);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let g = lease.try_acquire().await.unwrap();
                g.release().await.unwrap();
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Move the slots of a quarter of the names, one by one, while they run.
    tokio::time::sleep(ms(800)).await;
    let moved: Vec<u16> = names
        .iter()
        .step_by(4)
        .map(|n| cluster.slot_of(n).unwrap())
        .collect();
    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        for &slot in &moved {
            let from = cluster.master_of_slot(slot);
            let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
            cluster.move_slot(slot, to).expect("move a slot");
        }
        (cluster, moved)
    })
    .await
    .unwrap();
    let (cluster, moved) = cluster;
    for t in tasks {
        t.await.unwrap();
    }
    let cycles = cycles.load(Ordering::Relaxed);
    let calls = script_calls(&cluster).await - before;
    eprintln!("{cycles} cycles, {calls} script calls");
    assert!(cycles > 1000, "only {cycles} cycles");
    // Batched: far fewer calls than the two a cycle would cost alone.
    assert!(
        calls < cycles,
        "{calls} script calls for {cycles} cycles: not batched"
    );
    // Nothing was written on a node that does not serve the slot.
    for &slot in &moved {
        let owner = cluster.master_of_slot(slot);
        for m in cluster.masters() {
            if m == owner {
                continue;
            }
            let n = cluster
                .call(m, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()])
                .unwrap();
            assert_eq!(
                n,
                testkit::Reply::Integer(0),
                "keys of slot {slot} left on a node that gave it away"
            );
        }
    }
    for n in &names {
        assert!(!client.status(n).await.unwrap().is_held(), "{n} left held");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_keeps_renewing_while_its_slot_moves() {
    let cluster = start(0).await;
    let client = connect(&cluster).await;
    let name = "renewed/through/a/move";
    let g = client.lease(name).ttl(ms(600)).acquire().await.unwrap();
    let slot = cluster.slot_of(name).unwrap();
    let from = cluster.master_of_slot(slot);
    let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
    let cluster = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        cluster.move_slot(slot, to).expect("move the slot");
        cluster
    })
    .await
    .unwrap();
    // Several ttls later, renewed at the new master all along.
    tokio::time::sleep(ms(2000)).await;
    assert!(!g.is_lost(), "lost while its slot moved");
    let holder = cluster.call(to, &["GET", name]).unwrap();
    assert_eq!(
        holder,
        testkit::Reply::Bulk(Some(g.token().as_str().as_bytes().to_vec()))
    );
    g.release().await.unwrap();
}

/// An error on a cluster names the master of the name's slot, not the
/// seed list: that is the server to look at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_names_the_master_of_the_slot() {
    let mut cluster = start(0).await;
    let client = Client::builder()
        .response_timeout(ms(300))
        .cluster(cluster.seeds())
        .connect()
        .await
        .expect("connect to the cluster");
    // The listing reads the slot map.
    client.list("*").await.unwrap();
    let name = "jobs/nightly";
    let slot = cluster.slot_of(name).unwrap();
    let master = cluster.master_of_slot(slot);
    let addr = format!("127.0.0.1:{}", cluster.node(master).port());
    cluster.pause(master);
    let err = client.lease(name).try_acquire().await.unwrap_err();
    cluster.resume(master);
    assert_eq!(err.addr(), Some(addr.as_str()), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
}

/// An acquire that starts right after its slot's master died waits out the
/// failover (MOVED / CLUSTERDOWN / connection errors are retried within
/// its wait) and gets the lease from the promoted replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_waits_out_a_killed_master() {
    let mut cluster = start(1).await;
    let client = connect(&cluster).await;
    let name = "jobs/after-kill";
    // Known to the client's connection before the kill.
    client
        .lease(name)
        .try_acquire()
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    let slot = cluster.slot_of(name).unwrap();
    let master = cluster.master_of_slot(slot);
    cluster.kill(master).unwrap();
    let started = Instant::now();
    let got = client
        .lease(name)
        .wait(Duration::from_secs(20))
        .acquire()
        .await;
    let took = started.elapsed();
    let g = got.unwrap_or_else(|e| panic!("after {took:?}: {e} ({e:?})"));
    g.release().await.unwrap();
    drop(cluster);
}
