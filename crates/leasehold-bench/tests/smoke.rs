//! Runs every workload with tiny sizes against a throwaway redis-server and
//! checks that each reports its rows with sane values.

use std::collections::HashMap;
use std::time::Duration;

use leasehold_bench::flash_sale::{self, Sale, Strategy};
use leasehold_bench::{Options, Row, Sizes, Target, Workload};

fn tiny() -> Sizes {
    Sizes {
        w0_scale: 0.002,
        w0_raw: false,
        w0_floor_only: false,
        w1_warmup: 10,
        w1_cycles: 100,
        w2_workers: 8,
        w2_max_cycles: 400,
        w2_max_duration: Duration::from_secs(2),
        w3_workers: 4,
        w3_duration: Duration::from_millis(300),
        w4_stock: 100,
        w4_buyers: 8,
        w4_cap: Duration::from_secs(5),
        w5_waiters: 300,
        w6_w3_duration: Duration::from_millis(300),
        r1_warmup: 10,
        r1_cycles: 100,
        r2_workers: 8,
        r2_max_cycles: 400,
        r2_max_duration: Duration::from_secs(2),
        r3_workers: 4,
        r3_duration: Duration::from_millis(300),
        r4_warmup: 10,
        r4_cycles: 50,
        r4_max_duration: Duration::from_secs(5),
    }
}

fn by_figure(rows: &[Row], workload: &str) -> HashMap<String, Row> {
    rows.iter()
        .filter(|r| r.workload == workload)
        .map(|r| (r.figure.clone(), r.clone()))
        .collect()
}

/// Runs `workloads` with `sizes` on `server` and answers every row.
async fn rows_of(
    server: &testkit::RedisServer,
    workloads: Vec<Workload>,
    sizes: Sizes,
) -> Vec<Row> {
    let opts = Options {
        url: Some(server.url()),
        workloads,
        sizes,
        ..Options::default()
    };
    let mut rows = Vec::new();
    leasehold_bench::run(opts, &mut |r| rows.push(r))
        .await
        .unwrap();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_reports_sane_rows() {
    let server = testkit::RedisServer::start().unwrap();
    let rows = rows_of(&server, Workload::ALL.to_vec(), tiny()).await;

    for r in &rows {
        assert!(r.value.is_finite() && r.value >= 0.0, "{r:?}");
        // Every row survives the JSON round trip.
        let line = leasehold_bench::row_json(r);
        assert!(!line.contains('\n'));
        assert_eq!(leasehold_bench::parse_row_json(&line).as_ref(), Some(r));
    }

    let w0 = by_figure(&rows, "W0");
    assert!(w0["ping_c1_p1_rps"].value > 0.0);
    assert!(w0["eval_cas_del_c64_p16_rps"].value > 0.0);
    assert!(w0["cycle_ceiling_pipelined_per_s"].value > 0.0);

    let w1 = by_figure(&rows, "W1");
    assert!(w1["cycles_per_s"].value > 0.0);
    assert!(w1["cycles_per_s"].limit.is_some());
    assert!(w1["cycle_p50_us"].value > 0.0);
    assert!(w1["cycle_p99_us"].value >= w1["cycle_p50_us"].value);

    let w2 = by_figure(&rows, "W2");
    assert!(w2["cycles_per_s"].value > 0.0);
    assert!(w2["cycles_per_s"].share.is_some());
    let scripts = w2["script_calls_per_cycle"].value;
    assert!(scripts > 0.0 && scripts <= 2.0, "{scripts}");

    let w3 = by_figure(&rows, "W3");
    // W3's limits are the raw client's three-command chain and release.
    assert_eq!(
        w3["handoffs_per_s"].limit,
        Some(w0["raw_handoff_chain_per_s"].value)
    );
    let target = w3["handoffs_per_s"].target.as_deref().unwrap();
    assert!(target.contains("85% of raw chain"), "{target}");
    assert_eq!(
        w3["handoff_p50_ms"].limit,
        Some(w0["raw_release_p50_us"].value / 1e3)
    );
    assert_eq!(w3["lost_updates"].value, 0.0, "{:?}", w3["lost_updates"]);
    assert!(w3["acquisitions_per_s"].value > 0.0);
    assert!(w3["handoffs_per_s"].value > 0.0);
    assert!(w3["per_worker_min_max_ratio"].value <= 1.0);
    assert!(w3["cmds_per_handoff_top_level"].value >= 2.0);
    assert!(w3["cmds_per_handoff_incl_in_script"].value >= w3["cmds_per_handoff_top_level"].value);
    assert!(w3["wait_max_ms"].value >= w3["wait_p50_ms"].value);

    let w4 = by_figure(&rows, "W4");
    for s in ["watch", "lease", "lua"] {
        assert_eq!(w4[&format!("{s}_oversold")].value, 0.0, "{s}");
        assert_eq!(w4[&format!("{s}_sold")].value, 100.0, "{s}");
    }
    assert!(w4["naive_sold"].value >= 100.0);
    assert!(w4.contains_key("watch_aborts"));

    let w5 = by_figure(&rows, "W5");
    assert_eq!(w5["served"].value, 300.0);
    assert_eq!(w5["waiters_queued"].value, 300.0);
    assert_eq!(w5["subscriber_connections"].value, 1.0);
    assert!(w5["drain_secs"].value > 0.0);

    // W6: both legs on a private 3-master cluster and the server, then
    // the ratios, every one a finite number.
    for leg in ["W6-single", "W6-cluster"] {
        let w6 = by_figure(&rows, leg);
        assert!(w6["w2_cycles_per_s"].value > 0.0, "{leg}");
        assert!(w6["w2_cpu_us_per_cycle"].value > 0.0, "{leg}");
        assert!(w6["w2_redis_cpu_us_per_cycle"].value > 0.0, "{leg}");
        assert!(w6["w3_handoffs_per_s"].value > 0.0, "{leg}");
        assert!(w6["w3_cpu_us_per_handoff"].value > 0.0, "{leg}");
        assert_eq!(w6["w3_lost_updates"].value, 0.0, "{leg}");
        assert_eq!(w6["w3_lost_updates"].met, Some(true), "{leg}");
    }
    let w6 = by_figure(&rows, "W6");
    for figure in [
        "cpu_per_cycle_cluster_over_single",
        "cpu_per_handoff_cluster_over_single",
        "cycles_per_s_cluster_over_single",
        "handoffs_cluster_over_single",
    ] {
        let v = w6[figure].value;
        assert!(v.is_finite() && v > 0.0, "{figure}: {v}");
    }
    assert!(w6["cpu_per_cycle_cluster_over_single"].met.is_some());
    assert!(w6["handoffs_cluster_over_single"].met.is_some());

    let table = leasehold_bench::format_table(&rows);
    assert!(table.contains("handoffs_per_s"));
}

/// R1 to R4 on 5 private masters: every row, sane values, 0 lost updates,
/// and R4 ran with two masters frozen and thawed them (a master that stayed
/// stopped would not answer the check after the run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_workloads_report_sane_rows() {
    let masters = testkit::RedisServer::start_many(5).unwrap();
    let urls: Vec<String> = masters.iter().map(|m| m.url()).collect();
    let opts = Options {
        workloads: Workload::REDLOCK.to_vec(),
        redlock: Some(urls.clone()),
        node_timeout: Some(Duration::from_millis(50)),
        sizes: tiny(),
        ..Options::default()
    };
    let mut rows = Vec::new();
    leasehold_bench::run(opts, &mut |r| rows.push(r))
        .await
        .unwrap();
    assert!(rows.iter().all(|r| r.workload.starts_with('R')), "{rows:?}");
    for r in &rows {
        assert!(r.value.is_finite() && r.value >= 0.0, "{r:?}");
    }
    let r1 = by_figure(&rows, "R1");
    assert!(r1["cycles_per_s"].value > 0.0);
    assert!(r1["cycle_p99_us"].value >= r1["cycle_p50_us"].value);
    assert!(r1["keys_left_on_masters"].value <= 5.0);
    let r2 = by_figure(&rows, "R2");
    assert!(r2["cycles_per_s"].value > 0.0);
    let r3 = by_figure(&rows, "R3");
    assert_eq!(r3["lost_updates"].value, 0.0, "{:?}", r3["lost_updates"]);
    assert!(r3["acquisitions_per_s"].value >= r3["handoffs_per_s"].value);
    assert!(r3["per_worker_min_max_ratio"].value <= 1.0);
    let r4 = by_figure(&rows, "R4");
    assert_eq!(r4["stalled"].value, 0.0);
    assert!(r4["cycles_per_s"].value > 0.0);
    assert!(r4["cycle_p50_over_r1"].value > 0.0);
    assert!(
        r4["cycles_per_s"]
            .note
            .as_deref()
            .unwrap()
            .contains("masters 4, 5"),
        "{:?}",
        r4["cycles_per_s"]
    );
    for url in &urls {
        let mut conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let pong: String = tokio::time::timeout(
            Duration::from_secs(5),
            redis::cmd("PING").query_async(&mut conn),
        )
        .await
        .expect("every master answers after R4")
        .unwrap();
        assert_eq!(pong, "PONG");
    }
}

#[tokio::test]
async fn raw_w0_when_asked() {
    let server = testkit::RedisServer::start().unwrap();
    let mut sizes = tiny();
    sizes.w0_raw = true;
    let rows = rows_of(&server, vec![Workload::W1], sizes).await;
    let w0 = by_figure(&rows, "W0");
    assert!(w0["set_nx_px_c64_p16_rps"].value > 0.0);
    assert!(
        w0["set_nx_px_c1_p1_rps"]
            .note
            .as_deref()
            .unwrap()
            .contains("raw")
    );
}

/// W0's raw floor (the blocking std::net client) comes before W1 and sets
/// W1's limits and its p50 target; with `w0_floor_only` W0 is the floor
/// alone.
#[tokio::test]
async fn the_raw_floor_sets_w1s_limits() {
    let server = testkit::RedisServer::start().unwrap();
    let mut sizes = tiny();
    sizes.w0_floor_only = true;
    let rows = rows_of(&server, vec![Workload::W1], sizes).await;
    let w0 = by_figure(&rows, "W0");
    let floor = [
        "raw_rtt_p50_us",
        "raw_rtt_p99_us",
        "raw_cycle_p50_us",
        "raw_cycle_p99_us",
        "raw_cycle_per_s",
        "raw_handoff_chain_per_s",
        "raw_handoff_chain_p50_us",
        "raw_release_p50_us",
    ];
    let mut names: Vec<&str> = w0.keys().map(String::as_str).collect();
    names.sort();
    let mut want = floor.to_vec();
    want.sort();
    assert_eq!(names, want, "floor only: no redis-benchmark shape");
    for f in floor {
        assert!(w0[f].value > 0.0 && w0[f].value.is_finite(), "{:?}", w0[f]);
    }
    assert!(w0["raw_rtt_p99_us"].value >= w0["raw_rtt_p50_us"].value);
    // How the cycle's and the chain's times compare with a round trip's is
    // the machine's to say (a round trip swings several-fold within a run,
    // see BENCH.md): timings are compared in benchmarks, not here.
    let w1 = by_figure(&rows, "W1");
    assert_eq!(w1["cycles_per_s"].limit, Some(w0["raw_cycle_per_s"].value));
    let p50 = &w1["cycle_p50_us"];
    assert_eq!(p50.limit, Some(w0["raw_cycle_p50_us"].value));
    assert!(
        p50.target
            .as_deref()
            .unwrap()
            .contains("1.25 x raw_cycle_p50")
    );
    assert_eq!(
        p50.met,
        Some(p50.value <= 1.25 * w0["raw_cycle_p50_us"].value)
    );
}

/// The naive sale's figures add up: what left the stock, plus what was sold
/// twice, is what buyers got.
#[tokio::test]
async fn flash_sale_strategies_account_for_every_unit() {
    let server = testkit::RedisServer::start().unwrap();
    let redis = Target::Server(server.url());
    let client = redis.client().await.unwrap();
    let sale = Sale {
        stock: 200,
        buyers: 8,
        ..Sale::default()
    };
    for strategy in Strategy::ALL {
        let mut last = 0;
        let r = flash_sale::run(strategy, &client, &redis, &sale, &mut |n| last = n)
            .await
            .unwrap();
        assert_eq!(
            last, r.sold,
            "{strategy}: the last progress call is the total"
        );
        assert!(r.sold_out, "{strategy}: {r:?}");
        assert_eq!(r.final_stock, 0, "{strategy}");
        assert_eq!(r.sold, sale.stock + r.oversold, "{strategy}: {r:?}");
        if strategy.is_safe() {
            assert_eq!(r.oversold, 0, "{strategy}");
        }
        if strategy != Strategy::Watch {
            assert_eq!(r.watch_aborts, 0);
        }
        assert!(r.per_buyer_min <= r.per_buyer_max);
    }
}
