use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let servers = testkit::RedisServer::start_many(5).unwrap();
    let c = leasehold::Client::builder()
        .redlock(servers.iter().map(|s| s.url()))
        .connect()
        .await
        .unwrap();
    let lease = c.lease("r1").ttl(Duration::from_secs(30));
    for _ in 0..100 {
        lease.acquire().await.unwrap().release().await.unwrap();
    }
    let mut lat = Vec::new();
    let t = Instant::now();
    for _ in 0..2000 {
        let s = Instant::now();
        lease.acquire().await.unwrap().release().await.unwrap();
        lat.push(s.elapsed().as_micros());
    }
    let el = t.elapsed();
    lat.sort();
    println!(
        "R1 {:.0} cycles/s p50 {} µs p99 {} µs",
        2000.0 / el.as_secs_f64(),
        lat[1000],
        lat[1980]
    );
    // R3
    let acq = Arc::new(AtomicU64::new(0));
    let hand = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(99));
    let end = Instant::now() + Duration::from_secs(5);
    let mut tasks = vec![];
    let mut counts = vec![];
    for w in 0..16u64 {
        let c = c.clone();
        let (acq, hand, last) = (acq.clone(), hand.clone(), last.clone());
        let cnt = Arc::new(AtomicU64::new(0));
        counts.push(cnt.clone());
        tasks.push(tokio::spawn(async move {
            let lease = c
                .lease("r3")
                .ttl(Duration::from_secs(30))
                .wait(Duration::from_secs(30));
            while Instant::now() < end {
                let g = lease.acquire().await.unwrap();
                acq.fetch_add(1, Ordering::Relaxed);
                cnt.fetch_add(1, Ordering::Relaxed);
                if last.swap(w, Ordering::Relaxed) != w {
                    hand.fetch_add(1, Ordering::Relaxed);
                }
                g.release().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    println!(
        "R3 acq/s {:.0} handoffs/s {:.0} min/max {:.2}",
        acq.load(Ordering::Relaxed) as f64 / 5.0,
        hand.load(Ordering::Relaxed) as f64 / 5.0,
        *v.iter().min().unwrap() as f64 / *v.iter().max().unwrap() as f64
    );
    // R4
    servers[3].pause();
    servers[4].pause();
    let lease = c.lease("r4").ttl(Duration::from_secs(30));
    let mut lat = Vec::new();
    let t = Instant::now();
    for _ in 0..500 {
        let s = Instant::now();
        lease.acquire().await.unwrap().release().await.unwrap();
        lat.push(s.elapsed().as_micros());
    }
    let el = t.elapsed();
    lat.sort();
    println!(
        "R4 {:.0} cycles/s p50 {} µs p99 {} µs",
        500.0 / el.as_secs_f64(),
        lat[250],
        lat[495]
    );
    servers[3].resume();
    servers[4].resume();
}
