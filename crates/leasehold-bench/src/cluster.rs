//! W6: W2 and W3 on a Redis Cluster beside the one server, in the same run.
//!
//! Each leg runs W2 (tasks on names of their own) and W3 (workers on one
//! name, not fair) as their own modules do, first on the one server, then on
//! the cluster (3 masters on loopback, started for the run unless seeds are
//! given), with the same sizes; W3 runs 5 s per leg unless `--duration`
//! says otherwise. The legs' rows come out as `W6-single` and `W6-cluster`
//! (figures `w2_...` and `w3_...`), then `W6`'s ratios, cluster over
//! single: CPU per cycle (this process + every master, `INFO cpu`) and W3's
//! handoffs per second.
//!
//! Every node of the loopback cluster shares this machine's cores with the
//! client and with each other, so throughput cannot grow with shards here;
//! what the cluster costs is the CPU per cycle, on each side.

use std::time::Duration;

use testkit::{ClusterOptions, RedisCluster};

use crate::report::Row;
use crate::target::Target;
use crate::{Ctx, Error, contended, uncontended};

/// The two legs, in the order they run.
const LEGS: [&str; 2] = ["single", "cluster"];

/// W6. `seeds`: a cluster to use; `None` starts a private 3-master one.
pub(crate) async fn w6(ctx: &mut Ctx<'_>, seeds: Option<Vec<String>>) -> Result<(), Error> {
    // Declared before the client of the cluster, so dropped after it.
    let private;
    let (seeds, what) = match seeds {
        Some(seeds) => (seeds, "the cluster given (--cluster-url)".to_owned()),
        None => {
            private = tokio::task::spawn_blocking(|| {
                RedisCluster::start_with(ClusterOptions {
                    masters: 3,
                    replicas_per_master: 0,
                    ..Default::default()
                })
            })
            .await?
            .map_err(|e| {
                Error::Invalid(format!(
                    "W6 needs a Redis Cluster and a private one could not be started ({e}); give the seeds of one with --cluster-url, or leave W6 out"
                ))
            })?;
            (
                private.seeds(),
                "a private 3-master cluster on loopback (no replicas)".to_owned(),
            )
        }
    };
    let mut sizes = ctx.sizes.clone();
    sizes.w3_duration = sizes.w6_w3_duration;
    let cluster = Target::Cluster(seeds);
    let mut legs = Vec::new();
    for leg in LEGS {
        let (target, client) = if leg == "single" {
            (ctx.target.clone(), ctx.client.clone())
        } else {
            (cluster.clone(), cluster.client().await?)
        };
        let mut rows = Vec::new();
        {
            let mut sink = |r: Row| rows.push(r);
            let mut leg_ctx = Ctx {
                url: ctx.url.clone(),
                target,
                client,
                sizes: sizes.clone(),
                limits: None,
                progress: ctx.progress,
                sink: &mut sink,
            };
            uncontended::w2(&mut leg_ctx).await?;
            contended::contended(&mut leg_ctx, false).await?;
        }
        legs.push(Leg::new(leg, rows));
    }
    for leg in &legs {
        for row in leg.rows() {
            ctx.emit(row);
        }
    }
    let [single, cluster] = [&legs[0], &legs[1]];
    let ratio = |figure: &str| cluster.value(figure) / single.value(figure);
    let us = |leg: &Leg, unit: &str| {
        format!(
            "{:.1} us ({:.1} client + {:.1} redis)",
            leg.cpu(unit),
            leg.part("client", unit),
            leg.part("redis", unit)
        )
    };
    let cpu_cycle = cluster.cpu("cycle") / single.cpu("cycle");
    ctx.emit(
        Row::new("W6", "cpu_per_cycle_cluster_over_single", cpu_cycle, "ratio")
            .at_most(1.25)
            .note(format!(
                "W2, client + redis CPU per cycle: cluster {} / single {}; cluster: {what}, redis CPU summed over its masters",
                us(cluster, "cycle"),
                us(single, "cycle")
            )),
    );
    ctx.emit(
        Row::new(
            "W6",
            "cpu_per_handoff_cluster_over_single",
            cluster.cpu("handoff") / single.cpu("handoff"),
            "ratio",
        )
        .note(format!(
            "W3: cluster {} / single {}",
            us(cluster, "handoff"),
            us(single, "handoff")
        )),
    );
    ctx.emit(
        Row::new(
            "W6",
            "cycles_per_s_cluster_over_single",
            ratio("w2_cycles_per_s"),
            "ratio",
        )
        .note("W2; every node shares this machine's cores, so shards cannot add throughput here"),
    );
    ctx.emit(
        Row::new(
            "W6",
            "handoffs_cluster_over_single",
            ratio("w3_handoffs_per_s"),
            "ratio",
        )
        .at_least(0.9)
        .note(format!(
            "W3 handoffs/s: cluster {:.0} / single {:.0}, {} each",
            cluster.value("w3_handoffs_per_s"),
            single.value("w3_handoffs_per_s"),
            fmt_secs(sizes.w3_duration)
        )),
    );
    Ok(())
}

fn fmt_secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The rows of one leg, renamed: `W6-<leg>`, `w2_<figure>`.
struct Leg {
    rows: Vec<Row>,
}

impl Leg {
    fn new(leg: &str, rows: Vec<Row>) -> Leg {
        let rows = rows
            .into_iter()
            .map(|mut r| {
                r.figure = format!("{}_{}", r.workload.to_lowercase(), r.figure);
                r.workload = format!("W6-{leg}");
                // W2's and W3's targets are for one server and their full
                // sizes; W6's own are its ratios. A lost update is a failure
                // anywhere.
                if !r.figure.ends_with("lost_updates") {
                    r.target = None;
                    r.met = None;
                }
                r
            })
            .collect();
        Leg { rows }
    }

    /// The value of `figure` (`w3_handoffs_per_s`); NaN if absent.
    fn value(&self, figure: &str) -> f64 {
        self.rows
            .iter()
            .find(|r| r.figure == figure)
            .map_or(f64::NAN, |r| r.value)
    }

    /// `side`'s (`client`, `redis`) CPU per `unit` (`cycle`: W2,
    /// `handoff`: W3), in µs.
    fn part(&self, side: &str, unit: &str) -> f64 {
        let w = if unit == "cycle" { "w2" } else { "w3" };
        self.value(&format!("{w}_{side}_cpu_us_per_{unit}"))
    }

    /// Client + server CPU per `unit`, in µs.
    fn cpu(&self, unit: &str) -> f64 {
        self.part("client", unit) + self.part("redis", unit)
    }

    /// The rows, each leg's summed CPU rows after its parts.
    fn rows(&self) -> Vec<Row> {
        let workload = self.rows.first().map(|r| r.workload.clone());
        let mut out = self.rows.clone();
        if let Some(workload) = workload {
            out.push(
                Row::new(&workload, "w2_cpu_us_per_cycle", self.cpu("cycle"), "us")
                    .note("client + redis CPU per W2 cycle"),
            );
            out.push(
                Row::new(
                    &workload,
                    "w3_cpu_us_per_handoff",
                    self.cpu("handoff"),
                    "us",
                )
                .note("client + redis CPU per W3 handoff"),
            );
        }
        out
    }
}
