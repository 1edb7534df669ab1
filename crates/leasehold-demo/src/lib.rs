//! The scenarios of the tutorials leasehold answers, run live against a
//! real Redis: `leasehold demo` (and `cargo xtask demo`).
//!
//! # Layout
//!
//! - [`Scenario`]: the four scenarios and their names on the command line.
//! - [`Sizes`]: how big each run is (the full demo, or a quick one for tests).
//! - [`Event`]: what a scenario reports, as text for people
//!   ([`Event::human`]) or one JSON object per line ([`Event::json`]).
//! - [`run`]: runs scenarios, handing each event to a sink.
//!
//! The scenarios:
//!
//! 1. **flash sale**: `stock` units, `buyers` concurrent buyers buying one
//!    unit at a time until sold out, once per strategy: naive GET-then-SET
//!    (it oversells: that is the point), WATCH/MULTI/EXEC, a lease around
//!    GET/SET, and one Lua script.
//! 2. **one job, many hosts**: every host tries to run a scheduled job at
//!    each tick; exactly one runs it per tick.
//! 3. **cache stampede**: many readers miss a cold cache at once; the value
//!    is rebuilt once ([`leasehold::SingleFlight`]).
//! 4. **a paused holder**: a holder freezes past its TTL, another takes the
//!    lease and writes; the frozen one wakes and writes too. The fenced
//!    store and the lease-scoped script refuse it; a store without fencing
//!    takes it and loses the newer write.

#![deny(missing_docs)]

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use leasehold::{Client, FenceGate, LeaseScript, Source};
use leasehold_bench::flash_sale::{self, Sale, Strategy};
use serde_json::json;

/// A scenario of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// `flash-sale`: four ways to sell limited stock.
    FlashSale,
    /// `one-job`: a scheduled job on many hosts runs once per tick.
    OneJob,
    /// `cache-stampede`: a cold cache is rebuilt once.
    CacheStampede,
    /// `paused-holder`: fencing stops a holder that froze past its TTL.
    PausedHolder,
}

impl Scenario {
    /// All four, in the order the demo runs them.
    pub const ALL: [Scenario; 4] = [
        Scenario::FlashSale,
        Scenario::OneJob,
        Scenario::CacheStampede,
        Scenario::PausedHolder,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::FlashSale => "flash-sale",
            Scenario::OneJob => "one-job",
            Scenario::CacheStampede => "cache-stampede",
            Scenario::PausedHolder => "paused-holder",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scenario `{s}`; choose one of: flash-sale, one-job, cache-stampede, paused-holder"
                )
            })
    }
}

/// How big each scenario is.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Flash sale: units in stock.
    pub stock: u64,
    /// Flash sale: concurrent buyers.
    pub buyers: usize,
    /// One job: hosts (each its own [`Client`], as on separate machines).
    pub hosts: usize,
    /// One job: ticks of the schedule.
    pub ticks: u32,
    /// One job: time between ticks.
    pub tick: Duration,
    /// Cache stampede: concurrent readers.
    pub readers: usize,
    /// Paused holder: the frozen holder's ttl.
    pub pause_ttl: Duration,
}

impl Default for Sizes {
    /// The full demo: 2,000 units and 32 buyers, 5 hosts for 5 ticks, 100
    /// readers.
    fn default() -> Sizes {
        Sizes {
            stock: 2_000,
            buyers: 32,
            hosts: 5,
            ticks: 5,
            tick: Duration::from_millis(300),
            readers: 100,
            pause_ttl: Duration::from_millis(300),
        }
    }
}

impl Sizes {
    /// A quick run, for tests.
    pub fn small() -> Sizes {
        Sizes {
            stock: 300,
            buyers: 16,
            hosts: 4,
            ticks: 3,
            tick: Duration::from_millis(150),
            readers: 40,
            pause_ttl: Duration::from_millis(150),
        }
    }
}

/// What the demo reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A scenario starts.
    Start {
        /// Which.
        scenario: Scenario,
        /// One line on what it shows.
        about: String,
    },
    /// One flash-sale strategy ran.
    FlashSale {
        /// `naive`, `watch`, `lease` or `lua`.
        strategy: &'static str,
        /// Units in stock at the start.
        stock: u64,
        /// Purchases the buyers believe they made.
        sold: u64,
        /// Units sold beyond the stock (only naive may have any).
        oversold: u64,
        /// Time to sell out.
        seconds: f64,
        /// EXECs that aborted on a conflict (watch only).
        conflicts: u64,
        /// Units the least and the most lucky buyer got.
        per_buyer: (u64, u64),
    },
    /// One tick of the scheduled job.
    JobTick {
        /// Tick number, from 1.
        tick: u32,
        /// Hosts that ran the job this tick (exactly one, when it works).
        ran: Vec<usize>,
        /// Hosts that found it taken and skipped it.
        skipped: usize,
    },
    /// The cache stampede's outcome.
    Stampede {
        /// Concurrent readers.
        readers: usize,
        /// Times the value was rebuilt (1, when it works).
        rebuilds: u32,
        /// Readers that found it in the cache.
        from_cache: usize,
        /// Readers that waited for the rebuild.
        waited: usize,
        /// Time until every reader had the value.
        seconds: f64,
    },
    /// A step of the paused-holder story.
    Paused {
        /// `frozen`, `taken`, `fenced_store`, `lease_script`, `no_fencing`.
        step: &'static str,
        /// What happened, in words.
        text: String,
        /// For the write attempts of the woken holder: whether it was
        /// refused. `None` for the other steps.
        refused: Option<bool>,
    },
}

impl Event {
    /// One JSON object: `{"type": ..., "data": {...}}`.
    pub fn json(&self) -> String {
        let (kind, data) = match self {
            Event::Start { scenario, about } => (
                "scenario",
                json!({ "scenario": scenario.name(), "about": about }),
            ),
            Event::FlashSale {
                strategy,
                stock,
                sold,
                oversold,
                seconds,
                conflicts,
                per_buyer,
            } => (
                "flash_sale",
                json!({
                    "strategy": strategy,
                    "stock": stock,
                    "sold": sold,
                    "oversold": oversold,
                    "seconds": seconds,
                    "conflicts": conflicts,
                    "per_buyer_min": per_buyer.0,
                    "per_buyer_max": per_buyer.1,
                }),
            ),
            Event::JobTick { tick, ran, skipped } => (
                "job_tick",
                json!({ "tick": tick, "ran_by": ran, "runs": ran.len(), "skipped": skipped }),
            ),
            Event::Stampede {
                readers,
                rebuilds,
                from_cache,
                waited,
                seconds,
            } => (
                "cache_stampede",
                json!({
                    "readers": readers,
                    "rebuilds": rebuilds,
                    "from_cache": from_cache,
                    "waited": waited,
                    "seconds": seconds,
                }),
            ),
            Event::Paused {
                step,
                text,
                refused,
            } => (
                "paused_holder",
                json!({ "step": step, "text": text, "refused": refused }),
            ),
        };
        json!({ "type": kind, "data": data }).to_string()
    }

    /// The event as text for people (one or more lines, no trailing newline).
    pub fn human(&self) -> String {
        match self {
            Event::Start { scenario, about } => format!("\n== {scenario}: {about}"),
            Event::FlashSale {
                strategy,
                stock,
                sold,
                oversold,
                seconds,
                conflicts,
                per_buyer,
            } => {
                let verdict = if *oversold > 0 {
                    format!("OVERSOLD {oversold}")
                } else {
                    "oversold 0".to_string()
                };
                format!(
                    "  {strategy:<6} {sold:>6} sold of {stock:<6} {verdict:<16} {seconds:>7.3}s  conflicts {conflicts:<6} per buyer {}..{}",
                    per_buyer.0, per_buyer.1
                )
            }
            Event::JobTick { tick, ran, skipped } => {
                let who = ran
                    .iter()
                    .map(|h| format!("host-{h}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "  tick {tick}: ran by {who} ({} run{}), {skipped} host(s) skipped",
                    ran.len(),
                    if ran.len() == 1 { "" } else { "s" }
                )
            }
            Event::Stampede {
                readers,
                rebuilds,
                from_cache,
                waited,
                seconds,
            } => format!(
                "  {readers} readers missed the cache at once: rebuilt {rebuilds} time(s); {waited} waited for the rebuild, {from_cache} found it cached; all served in {seconds:.3}s"
            ),
            Event::Paused { text, refused, .. } => match refused {
                Some(true) => format!("  refused: {text}"),
                Some(false) => format!("  ACCEPTED: {text}"),
                None => format!("  {text}"),
            },
        }
    }
}

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Redis to use (the CLI starts a private one when none is given).
    pub url: String,
    /// Sizes of the scenarios.
    pub sizes: Sizes,
    /// Show progress bars on stderr.
    pub progress: bool,
}

/// Something the demo could not do.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<leasehold::Error> for Error {
    fn from(e: leasehold::Error) -> Error {
        Error(e.to_string())
    }
}

impl From<leasehold_bench::Error> for Error {
    fn from(e: leasehold_bench::Error) -> Error {
        Error(e.to_string())
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Error {
        Error(format!("redis: {e}"))
    }
}

/// Runs `scenarios` in order against `opts.url`, handing every event to
/// `sink` as it happens. Each scenario uses keys of its own under
/// `leasehold-demo:`.
pub async fn run(
    opts: &Options,
    scenarios: &[Scenario],
    sink: &mut dyn FnMut(&Event),
) -> Result<(), Error> {
    let client = Client::connect(&opts.url).await?;
    for &scenario in scenarios {
        match scenario {
            Scenario::FlashSale => flash_sale(opts, &client, sink).await?,
            Scenario::OneJob => one_job(opts, sink).await?,
            Scenario::CacheStampede => cache_stampede(opts, &client, sink).await?,
            Scenario::PausedHolder => paused_holder(opts, &client, sink).await?,
        }
    }
    Ok(())
}

fn bar(show: bool, len: u64, label: String) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("  {msg:<18} [{bar:30}] {pos}/{len}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(label);
    bar
}

async fn flash_sale(
    opts: &Options,
    client: &Client,
    sink: &mut dyn FnMut(&Event),
) -> Result<(), Error> {
    sink(&Event::Start {
        scenario: Scenario::FlashSale,
        about: format!(
            "{} units, {} buyers, four ways; only the naive one may oversell",
            opts.sizes.stock, opts.sizes.buyers
        ),
    });
    let sale = Sale {
        stock: opts.sizes.stock,
        buyers: opts.sizes.buyers,
        key: "leasehold-demo:flash:stock".into(),
        ..Sale::default()
    };
    for strategy in Strategy::ALL {
        let progress = bar(opts.progress, sale.stock, format!("{strategy}"));
        let r = flash_sale::run(strategy, client, &opts.url, &sale, &mut |n| {
            progress.set_position(n)
        })
        .await?;
        progress.finish_and_clear();
        sink(&Event::FlashSale {
            strategy: strategy.name(),
            stock: sale.stock,
            sold: r.sold,
            oversold: r.oversold,
            seconds: r.elapsed.as_secs_f64(),
            conflicts: r.watch_aborts,
            per_buyer: (r.per_buyer_min, r.per_buyer_max),
        });
    }
    Ok(())
}

/// Every host tries the job at each tick. The lease is named after the tick
/// and left to expire, never released early: a host whose clock or start
/// is a little late finds it still taken and does not run the job twice.
async fn one_job(opts: &Options, sink: &mut dyn FnMut(&Event)) -> Result<(), Error> {
    sink(&Event::Start {
        scenario: Scenario::OneJob,
        about: format!(
            "a scheduled job on {} hosts; exactly one runs it per tick",
            opts.sizes.hosts
        ),
    });
    let mut hosts = Vec::new();
    for _ in 0..opts.sizes.hosts {
        hosts.push(Client::connect(&opts.url).await?);
    }
    let run_id = leasehold::Token::random();
    for tick in 1..=opts.sizes.ticks {
        let started = Instant::now();
        let mut tries = tokio::task::JoinSet::new();
        for (h, host) in hosts.iter().enumerate() {
            let lease = host
                .lease(format!(
                    "leasehold-demo:job:{}:tick-{tick}",
                    run_id.prefix()
                ))
                .ttl(opts.sizes.tick * 2)
                .auto_renew(false);
            tries.spawn(async move {
                match lease.try_acquire().await {
                    Ok(guard) => {
                        // "Run" the job, then leave the lease to expire.
                        let _ = guard.detach();
                        Ok(Some(h + 1))
                    }
                    Err(e) if e.is_held() => Ok(None),
                    Err(e) => Err(e),
                }
            });
        }
        let mut ran = Vec::new();
        let mut skipped = 0;
        while let Some(r) = tries.join_next().await {
            match r.map_err(|e| Error(e.to_string()))?? {
                Some(h) => ran.push(h),
                None => skipped += 1,
            }
        }
        sink(&Event::JobTick { tick, ran, skipped });
        tokio::time::sleep(opts.sizes.tick.saturating_sub(started.elapsed())).await;
    }
    Ok(())
}

async fn cache_stampede(
    opts: &Options,
    client: &Client,
    sink: &mut dyn FnMut(&Event),
) -> Result<(), Error> {
    sink(&Event::Start {
        scenario: Scenario::CacheStampede,
        about: format!(
            "{} readers miss a cold cache at once; one rebuilds, the rest wait for it",
            opts.sizes.readers
        ),
    });
    let key = format!(
        "leasehold-demo:cache:{}",
        leasehold::Token::random().prefix()
    );
    let rebuilds = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..opts.sizes.readers {
        let sf = client
            .single_flight(&key)
            .cache_ttl(Duration::from_secs(60));
        let rebuilds = rebuilds.clone();
        readers.spawn(async move {
            sf.get(async || {
                rebuilds.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await; // a slow query
                Ok::<_, leasehold::Error>("<html>home</html>".to_string())
            })
            .await
            .map(|f| f.source)
        });
    }
    let (mut from_cache, mut waited) = (0, 0);
    while let Some(r) = readers.join_next().await {
        match r.map_err(|e| Error(e.to_string()))?? {
            Source::Cache => from_cache += 1,
            Source::Waited => waited += 1,
            Source::Rebuilt => {}
        }
    }
    let () = redis::cmd("DEL")
        .arg(&key)
        .query_async(
            &mut redis::Client::open(opts.url.as_str())?
                .get_multiplexed_async_connection()
                .await?,
        )
        .await?;
    sink(&Event::Stampede {
        readers: opts.sizes.readers,
        rebuilds: rebuilds.load(Ordering::SeqCst),
        from_cache,
        waited,
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(())
}

async fn paused_holder(
    opts: &Options,
    client: &Client,
    sink: &mut dyn FnMut(&Event),
) -> Result<(), Error> {
    sink(&Event::Start {
        scenario: Scenario::PausedHolder,
        about: "a holder freezes past its TTL; fencing stops its late write".into(),
    });
    let tag = leasehold::Token::random();
    let name = format!("leasehold-demo:report:{}", tag.prefix());
    let data = format!("{{{name}}}:body"); // same slot as the lease, for the script
    let unfenced = format!("leasehold-demo:unfenced:{}", tag.prefix());
    let mut conn = redis::Client::open(opts.url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let store = FenceGate::new();
    let write = LeaseScript::new("return redis.call('SET', KEYS[1], ARGV[1])");
    let lease = client.lease(&name).ttl(opts.sizes.pause_ttl);

    // A takes the lease, then freezes (a GC pause: not even its renewal runs).
    let a = lease.clone().auto_renew(false).acquire().await?;
    sink(&Event::Paused {
        step: "frozen",
        text: format!(
            "holder A takes `{name}` with fence {} and freezes for longer than its {:?} ttl",
            a.fence(),
            opts.sizes.pause_ttl
        ),
        refused: None,
    });
    a.lost().await;

    // B takes over and writes, everywhere.
    let b = lease.acquire().await?;
    store
        .admit(b.fence())
        .map_err(|e| Error(format!("B's fenced write was refused: {e}")))?;
    let () = write.key(&data).arg("from B").invoke(&b).await?;
    let () = redis::cmd("SET")
        .arg(&unfenced)
        .arg("from B")
        .query_async(&mut conn)
        .await?;
    sink(&Event::Paused {
        step: "taken",
        text: format!(
            "holder B takes the lease with fence {} and writes the report",
            b.fence()
        ),
        refused: None,
    });

    // A wakes up, unaware, and writes.
    let fenced = store.admit(a.fence());
    sink(&Event::Paused {
        step: "fenced_store",
        text: match &fenced {
            Err(stale) => format!("A's write to the fenced store: {stale}"),
            Ok(()) => format!(
                "A's write to the fenced store went through with fence {}",
                a.fence()
            ),
        },
        refused: Some(fenced.is_err()),
    });
    let scripted = write
        .key(&data)
        .arg("from A (stale)")
        .invoke::<()>(&a)
        .await;
    let body: String = redis::cmd("GET").arg(&data).query_async(&mut conn).await?;
    sink(&Event::Paused {
        step: "lease_script",
        text: match &scripted {
            Err(e) if e.is_lost() => {
                format!(
                    "A's lease-scoped write: the lease is not A's any more; nothing written (report = {body:?})"
                )
            }
            Err(e) => format!("A's lease-scoped write failed: {e}"),
            Ok(()) => format!("A's lease-scoped write went through (report = {body:?})"),
        },
        refused: Some(matches!(&scripted, Err(e) if e.is_lost())),
    });
    // Without fencing, nothing stops A.
    let () = redis::cmd("SET")
        .arg(&unfenced)
        .arg("from A (stale)")
        .query_async(&mut conn)
        .await?;
    let now: String = redis::cmd("GET")
        .arg(&unfenced)
        .query_async(&mut conn)
        .await?;
    sink(&Event::Paused {
        step: "no_fencing",
        text: format!("without fencing, A's late write lands and B's is lost: report = {now:?}"),
        refused: Some(false),
    });
    b.release().await?;
    drop(a);
    let () = redis::cmd("DEL")
        .arg(&data)
        .arg(&unfenced)
        .query_async(&mut conn)
        .await?;
    Ok(())
}
