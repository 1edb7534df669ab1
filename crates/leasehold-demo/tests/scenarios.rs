//! The demo's four scenarios, small, against a real Redis: each must show
//! what it claims.

use leasehold_demo::{Event, Options, Scenario, Sizes, Target, run};
use testkit::{ClusterOptions, RedisCluster};

async fn events(scenario: Scenario) -> Vec<Event> {
    let server = testkit::RedisServer::start().expect("start redis-server");
    events_on(Target::Server(server.url()), scenario).await
}

async fn events_on(target: Target, scenario: Scenario) -> Vec<Event> {
    let opts = Options {
        target,
        sizes: Sizes::small(),
        progress: false,
    };
    let mut seen = Vec::new();
    run(&opts, &[scenario], &mut |e| seen.push(e.clone()))
        .await
        .unwrap();
    for e in &seen {
        // Every event is one JSON object with a type and data.
        let v: serde_json::Value = serde_json::from_str(&e.json()).unwrap();
        assert!(v["type"].is_string() && v["data"].is_object(), "{v}");
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_sale_naive_oversells_and_the_others_do_not() {
    flash_sale_shows_it(events(Scenario::FlashSale).await);
}

/// Every scenario on a 3-master Redis Cluster, through the cluster client,
/// shows what it shows on one server: the flash sale's script, WATCH and
/// lease each reach the stock's master, the lease-scoped script's key is in
/// the lease's slot, the stampede's and the job's leases work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_on_a_cluster() {
    let cluster = tokio::task::spawn_blocking(|| {
        RedisCluster::start_with(ClusterOptions {
            masters: 3,
            replicas_per_master: 0,
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .expect("start a 3-master cluster");
    let target = Target::Cluster(cluster.seeds());
    flash_sale_shows_it(events_on(target.clone(), Scenario::FlashSale).await);
    one_job_shows_it(events_on(target.clone(), Scenario::OneJob).await);
    stampede_shows_it(events_on(target.clone(), Scenario::CacheStampede).await);
    paused_holder_shows_it(events_on(target, Scenario::PausedHolder).await);
    drop(cluster);
}

fn flash_sale_shows_it(seen: Vec<Event>) {
    let rows: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            Event::FlashSale {
                strategy,
                sold,
                oversold,
                stock,
                ..
            } => Some((*strategy, *sold, *oversold, *stock)),
            _ => None,
        })
        .collect();
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        ["naive", "watch", "lease", "lua"]
    );
    for (strategy, sold, oversold, stock) in rows {
        if strategy == "naive" {
            assert!(
                oversold > 0,
                "the naive strategy did not oversell this time"
            );
        } else {
            assert_eq!(oversold, 0, "{strategy} oversold");
            assert_eq!(sold, stock, "{strategy} did not sell out");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_runs_exactly_once_per_tick() {
    one_job_shows_it(events(Scenario::OneJob).await);
}

fn one_job_shows_it(seen: Vec<Event>) {
    let ticks: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            Event::JobTick { ran, skipped, .. } => Some((ran.len(), *skipped)),
            _ => None,
        })
        .collect();
    let sizes = Sizes::small();
    assert_eq!(ticks.len(), sizes.ticks as usize);
    for (runs, skipped) in ticks {
        assert_eq!(runs, 1);
        assert_eq!(skipped, sizes.hosts - 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_stampede_rebuilds_once() {
    stampede_shows_it(events(Scenario::CacheStampede).await);
}

fn stampede_shows_it(seen: Vec<Event>) {
    let stampede = seen
        .iter()
        .find_map(|e| match e {
            Event::Stampede {
                readers,
                rebuilds,
                from_cache,
                waited,
                ..
            } => Some((*readers, *rebuilds, *from_cache, *waited)),
            _ => None,
        })
        .expect("a stampede event");
    assert_eq!(stampede.1, 1, "rebuilt more than once");
    assert_eq!(
        stampede.2 + stampede.3 + 1,
        stampede.0,
        "every reader was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holders_late_writes_are_refused_where_fenced() {
    paused_holder_shows_it(events(Scenario::PausedHolder).await);
}

fn paused_holder_shows_it(seen: Vec<Event>) {
    let refused = |step: &str| {
        seen.iter().find_map(|e| match e {
            Event::Paused {
                step: s, refused, ..
            } if *s == step => *refused,
            _ => None,
        })
    };
    assert_eq!(refused("fenced_store"), Some(true));
    assert_eq!(refused("lease_script"), Some(true));
    assert_eq!(
        refused("no_fencing"),
        Some(false),
        "without fencing the stale write lands"
    );
}

#[test]
fn scenario_names_round_trip() {
    for s in Scenario::ALL {
        assert_eq!(s.name().parse::<Scenario>().unwrap(), s);
    }
    let err = "flash".parse::<Scenario>().unwrap_err();
    assert!(err.contains("flash-sale"), "{err}");
}
