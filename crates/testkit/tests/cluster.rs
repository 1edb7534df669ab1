//! testkit's Redis Cluster against real redis-server processes.

use std::time::Instant;

use testkit::{RedisCluster, Reply};

#[test]
fn smoke() {
    let t = Instant::now();
    let mut cluster = RedisCluster::start(3, 1).unwrap();
    eprintln!("start {:?}", t.elapsed());
    eprintln!("{:?} {:?}", cluster.masters(), cluster.seeds());
    let slot = cluster.slot_of("k").unwrap();
    let m = cluster.master_of_slot(slot);
    assert_eq!(
        cluster.call(m, &["SET", "k", "v"]).unwrap(),
        Reply::Status("OK".into())
    );
    let to = cluster.masters().into_iter().find(|x| *x != m).unwrap();
    let t = Instant::now();
    cluster.move_slot(slot, to).unwrap();
    eprintln!("move {:?}", t.elapsed());
    let t = Instant::now();
    let n = cluster.failover(to).unwrap();
    eprintln!("failover {:?}", t.elapsed());
    let t = Instant::now();
    let n2 = cluster.kill_master(n).unwrap();
    eprintln!("kill {:?} -> {n2}", t.elapsed());
    let t = Instant::now();
    cluster.restart(n).unwrap();
    eprintln!("restart {:?} {:?}", t.elapsed(), cluster.replicas_of(n2));
}
