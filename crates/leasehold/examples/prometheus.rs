//! leasehold's metrics on a Prometheus endpoint.
//!
//! Installs `metrics-exporter-prometheus` with an HTTP listener, takes and
//! gives back a few leases (one uncontended, one waited for, one found
//! busy), prints where to scrape, and serves until Ctrl-C (or for
//! `LEASEHOLD_SERVE_SECS` seconds).
//!
//! ```sh
//! cargo run -p leasehold --features metrics --example prometheus -- redis://127.0.0.1:6379
//! curl -s http://127.0.0.1:9091/metrics | grep leasehold_
//! ```
//!
//! The Redis URL is the first argument, else `LEASEHOLD_URL`, else
//! `redis://127.0.0.1:6379`; the listen address `LEASEHOLD_METRICS_ADDR`,
//! else `127.0.0.1:9091`.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("LEASEHOLD_URL").ok())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let addr: SocketAddr = std::env::var("LEASEHOLD_METRICS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:9091".into())
        .parse()?;
    let serve = std::env::var("LEASEHOLD_SERVE_SECS")
        .ok()
        .map(|s| s.parse().map(Duration::from_secs))
        .transpose()?;

    // The recorder first: metrics recorded before it is installed are lost.
    // Histograms with buckets (else the exporter shows summaries, which
    // cannot be added up across hosts): durations from 0.5 ms to a minute.
    const SECONDS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(
            Matcher::Full("leasehold_batch_size".into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
        )?
        .install()?;
    leasehold::describe_metrics();

    let client = leasehold::Client::connect(&url).await?;
    let lease = client
        .lease("examples/prometheus")
        .ttl(Duration::from_secs(3))
        .wait(Duration::from_secs(5));

    // Uncontended: acquisitions{outcome="acquired"}, hold time.
    for _ in 0..3 {
        lease.acquire().await?.release().await?;
    }
    // Busy: a try while it is held.
    let guard = lease.acquire().await?;
    let busy = lease.try_acquire().await;
    assert!(busy.as_ref().is_err_and(|e| e.is_held()), "{busy:?}");
    // Waited for: a waiter gets it when the holder lets go (a hand-over,
    // both being tasks of this client), after a renewal or two.
    let waiter = tokio::spawn({
        let lease = lease.clone();
        async move { lease.acquire().await?.release().await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    guard.release().await?;
    waiter.await??;

    println!("leasehold metrics: scrape http://{addr}/metrics (Ctrl-C to stop)");
    match serve {
        Some(d) => tokio::time::sleep(d).await,
        None => tokio::signal::ctrl_c().await?,
    }
    Ok(())
}
