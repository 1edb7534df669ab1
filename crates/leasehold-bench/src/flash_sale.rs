//! W4, the flash sale: `stock` units, `buyers` tasks each buying one unit at
//! a time until it is sold out, four ways.
//!
//! - [`naive`]: `GET stock`, then `SET stock v-1`, no lock. Two buyers read
//!   the same `v` and both sell a unit: it oversells. Here to show why the
//!   others exist.
//! - [`watch`]: optimistic, `WATCH stock; GET; MULTI; SET v-1; EXEC`,
//!   retried when EXEC aborts because another buyer changed the stock. Each
//!   buyer has a connection of its own, since WATCH belongs to a connection.
//! - [`lease`]: a leasehold lease around the same `GET` / `SET`.
//! - [`lua`]: one script that decrements if positive; Redis runs it
//!   atomically, so there is nothing to retry or wait for.
//!
//! `leasehold demo` runs them too, so each is a plain function:
//!
//! ```no_run
//! # async fn f() -> Result<(), leasehold_bench::Error> {
//! use leasehold_bench::Target;
//! use leasehold_bench::flash_sale::{self, Sale};
//!
//! let redis = Target::Server("redis://127.0.0.1:6379".into());
//! let sale = Sale { stock: 500, buyers: 8, ..Sale::default() };
//! let naive = flash_sale::naive(&redis, &sale, &mut |sold| eprint!("\r{sold} sold")).await?;
//! println!("naive: sold {} of {}, oversold {}", naive.sold, sale.stock, naive.oversold);
//!
//! let client = redis.client().await?;
//! let leased = flash_sale::lease(&client, &redis, &sale, &mut |_| {}).await?;
//! assert_eq!(leased.oversold, 0);
//! # Ok(()) }
//! ```
//!
//! Every function writes the stock to `sale.key` first (and `lease` uses
//! `<key>:lease` as its lease), so runs do not disturb each other's keys
//! as long as the keys differ. On a Redis Cluster ([`Target::Cluster`]) each
//! strategy works as on one server: the script and the WATCH have one key,
//! and WATCH runs on a connection of its own to the master of its slot. A
//! tagged key (`{sale}:stock`) puts the lease in the stock's slot too, so
//! that one master serves the whole sale, as one server does.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use crate::physical::rate;
use crate::report::Row;
use crate::target::{Conn, Target};
use crate::{Ctx, Error, KEY_PREFIX, TTL};

/// The decrement-if-positive script of the Lua strategy (the peers' one).
pub const DECR_IF_POSITIVE: &str = "local s = tonumber(redis.call('GET', KEYS[1]))
if s and s > 0 then redis.call('DECR', KEYS[1]) return 1 end
return 0";

/// What is sold, to how many buyers.
#[derive(Debug, Clone)]
pub struct Sale {
    /// Units in stock at the start (BENCH.md: 2,000).
    pub stock: u64,
    /// Buyers, each a task buying one unit at a time (BENCH.md: 32).
    pub buyers: usize,
    /// Buyers stop starting purchases after this long even if units are
    /// left (the peers' cap: 25 s).
    pub cap: Duration,
    /// The key holding the stock.
    pub key: String,
}

impl Default for Sale {
    fn default() -> Sale {
        Sale {
            stock: 2_000,
            buyers: 32,
            cap: Duration::from_secs(25),
            key: format!("{KEY_PREFIX}flash:stock"),
        }
    }
}

/// A way to sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// GET then SET, no lock: oversells.
    Naive,
    /// WATCH / MULTI / EXEC with retry, a connection per buyer.
    Watch,
    /// A leasehold lease around GET / SET.
    Lease,
    /// One decrement-if-positive script.
    Lua,
}

impl Strategy {
    /// All four, in BENCH.md's order.
    pub const ALL: [Strategy; 4] = [
        Strategy::Naive,
        Strategy::Watch,
        Strategy::Lease,
        Strategy::Lua,
    ];

    /// `naive`, `watch`, `lease`, `lua`: the prefix of W4's figure names.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Naive => "naive",
            Strategy::Watch => "watch",
            Strategy::Lease => "lease",
            Strategy::Lua => "lua",
        }
    }

    /// Whether it is meant to sell each unit once (all but naive).
    pub fn is_safe(self) -> bool {
        self != Strategy::Naive
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The outcome of one sale.
#[derive(Debug, Clone, PartialEq)]
pub struct SaleResult {
    /// How it sold.
    pub strategy: Strategy,
    /// From the first buyer's start to the last buyer's end.
    pub elapsed: Duration,
    /// Purchases the buyers made (each believes it got one unit).
    pub sold: u64,
    /// The stock key at the end.
    pub final_stock: i64,
    /// Units sold beyond the stock: `max(0, sold - stock) + max(0,
    /// -final_stock)` (the peers' definition). Only naive is allowed any.
    pub oversold: u64,
    /// EXECs that aborted because the stock changed after WATCH (watch only).
    pub watch_aborts: u64,
    /// Units the least lucky buyer got.
    pub per_buyer_min: u64,
    /// Units the luckiest buyer got.
    pub per_buyer_max: u64,
    /// The stock reached 0 and at least `stock` units were sold (false when
    /// the cap stopped the sale first).
    pub sold_out: bool,
}

impl SaleResult {
    /// Purchases per second.
    pub fn units_per_s(&self) -> f64 {
        self.sold as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What every buyer shares: the running count, the deadline.
struct Shop {
    key: String,
    sold: AtomicU64,
    deadline: OnceLock<Instant>,
}

impl Shop {
    fn open(&self) -> bool {
        self.deadline.get().is_none_or(|d| Instant::now() < *d)
    }

    fn bought(&self) {
        self.sold.fetch_add(1, Ordering::Relaxed);
    }
}

/// A buyer's end: units bought, WATCH aborts.
type Outcome = Result<(u64, u64), Error>;

/// Stocks the shop; the buyers are made after this, the clock starts in
/// [`sell`].
async fn stock_up(conn: &mut Conn, sale: &Sale) -> Result<Arc<Shop>, Error> {
    if sale.buyers == 0 {
        return Err(Error::Invalid("a sale needs at least one buyer".into()));
    }
    let _: () = conn.set(&sale.key, sale.stock).await?;
    Ok(Arc::new(Shop {
        key: sale.key.clone(),
        sold: AtomicU64::new(0),
        deadline: OnceLock::new(),
    }))
}

/// Starts the clock and the buyers, reports progress every 50 ms, and
/// totals up.
async fn sell<F>(
    strategy: Strategy,
    mut conn: Conn,
    sale: &Sale,
    shop: Arc<Shop>,
    buyers: Vec<F>,
    progress: &mut dyn FnMut(u64),
) -> Result<SaleResult, Error>
where
    F: Future<Output = Outcome> + Send + 'static,
{
    let started = Instant::now();
    let _ = shop.deadline.set(started + sale.cap);
    let mut tasks = tokio::task::JoinSet::new();
    for b in buyers {
        tasks.spawn(b);
    }
    let mut per_buyer = Vec::with_capacity(sale.buyers);
    let mut aborts = 0;
    let mut failure = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            r = tasks.join_next() => match r {
                None => break,
                Some(r) => match r? {
                    Ok((n, a)) => {
                        per_buyer.push(n);
                        aborts += a;
                    }
                    Err(e) => failure = failure.or(Some(e)),
                },
            },
            _ = tick.tick() => progress(shop.sold.load(Ordering::Relaxed)),
        }
    }
    let elapsed = started.elapsed();
    if let Some(e) = failure {
        return Err(e);
    }
    let sold: u64 = per_buyer.iter().sum();
    progress(sold);
    let final_stock: i64 = conn.get::<_, Option<i64>>(&sale.key).await?.unwrap_or(0);
    let oversold = sold.saturating_sub(sale.stock) + (-final_stock).max(0) as u64;
    Ok(SaleResult {
        strategy,
        elapsed,
        sold,
        final_stock,
        oversold,
        watch_aborts: aborts,
        per_buyer_min: per_buyer.iter().copied().min().unwrap_or(0),
        per_buyer_max: per_buyer.iter().copied().max().unwrap_or(0),
        sold_out: final_stock <= 0 && sold >= sale.stock,
    })
}

/// GET then SET, no lock, all buyers on one multiplexed connection. It
/// oversells whenever two buyers read the same stock.
///
/// `progress` is called with the units sold so far, every 50 ms and at the
/// end, from the calling task.
///
/// # Cancel safety
///
/// Dropping the future leaves the spawned buyers running to the end of
/// the sale.
pub async fn naive(
    target: &Target,
    sale: &Sale,
    progress: &mut dyn FnMut(u64),
) -> Result<SaleResult, Error> {
    let mut conn = target.conn().await?;
    let shop = stock_up(&mut conn, sale).await?;
    let buyers = (0..sale.buyers)
        .map(|_| {
            let mut conn = conn.clone();
            let shop = Arc::clone(&shop);
            async move {
                let mut n = 0;
                while shop.open() {
                    let v: i64 = conn.get::<_, Option<i64>>(&shop.key).await?.unwrap_or(0);
                    if v <= 0 {
                        break;
                    }
                    let _: () = conn.set(&shop.key, v - 1).await?;
                    n += 1;
                    shop.bought();
                }
                Ok((n, 0))
            }
        })
        .collect();
    sell(Strategy::Naive, conn, sale, shop, buyers, progress).await
}

/// WATCH / GET / MULTI / SET / EXEC, retried on abort, on a connection per
/// buyer (a WATCH on a shared connection would be ended by another buyer's
/// EXEC). See [`naive`] for `progress`.
///
/// # Cancel safety
///
/// As [`naive`].
pub async fn watch(
    target: &Target,
    sale: &Sale,
    progress: &mut dyn FnMut(u64),
) -> Result<SaleResult, Error> {
    let mut conn = target.conn().await?;
    let shop = stock_up(&mut conn, sale).await?;
    let mut buyers = Vec::with_capacity(sale.buyers);
    for _ in 0..sale.buyers {
        let mut own = target.conn_for(&sale.key).await?;
        let shop = Arc::clone(&shop);
        buyers.push(async move {
            let (mut n, mut aborts) = (0, 0);
            'buying: while shop.open() {
                loop {
                    let _: () = redis::cmd("WATCH")
                        .arg(&shop.key)
                        .query_async(&mut own)
                        .await?;
                    let v: i64 = own.get::<_, Option<i64>>(&shop.key).await?.unwrap_or(0);
                    if v <= 0 {
                        let _: () = redis::cmd("UNWATCH").query_async(&mut own).await?;
                        break 'buying;
                    }
                    let exec: Option<(String,)> = redis::pipe()
                        .atomic()
                        .set(&shop.key, v - 1)
                        .query_async(&mut own)
                        .await?;
                    if exec.is_some() {
                        break;
                    }
                    aborts += 1;
                }
                n += 1;
                shop.bought();
            }
            Ok((n, aborts))
        });
    }
    sell(Strategy::Watch, conn, sale, shop, buyers, progress).await
}

/// A leasehold lease (`<key>:lease`, ttl 30 s) around GET / SET, through
/// `client` (one for all buyers), the GET / SET on one connection of their
/// own to `target`. See [`naive`] for `progress`.
///
/// # Cancel safety
///
/// As [`naive`]; leases held by buyers are released when their guards drop.
pub async fn lease(
    client: &leasehold::Client,
    target: &Target,
    sale: &Sale,
    progress: &mut dyn FnMut(u64),
) -> Result<SaleResult, Error> {
    let mut conn = target.conn().await?;
    let shop = stock_up(&mut conn, sale).await?;
    let lease = client
        .lease(format!("{}:lease", sale.key))
        .ttl(TTL)
        .wait(sale.cap + Duration::from_secs(30));
    let buyers = (0..sale.buyers)
        .map(|_| {
            let mut conn = conn.clone();
            let shop = Arc::clone(&shop);
            let lease = lease.clone();
            async move {
                let mut n = 0;
                while shop.open() {
                    let guard = lease.acquire().await?;
                    let v: i64 = conn.get::<_, Option<i64>>(&shop.key).await?.unwrap_or(0);
                    if v <= 0 {
                        guard.release().await?;
                        break;
                    }
                    let _: () = conn.set(&shop.key, v - 1).await?;
                    guard.release().await?;
                    n += 1;
                    shop.bought();
                }
                Ok((n, 0))
            }
        })
        .collect();
    sell(Strategy::Lease, conn, sale, shop, buyers, progress).await
}

/// One [`DECR_IF_POSITIVE`] script per purchase (EVALSHA), all buyers on one
/// multiplexed connection. See [`naive`] for `progress`.
///
/// # Cancel safety
///
/// As [`naive`].
pub async fn lua(
    target: &Target,
    sale: &Sale,
    progress: &mut dyn FnMut(u64),
) -> Result<SaleResult, Error> {
    let mut conn = target.conn().await?;
    let shop = stock_up(&mut conn, sale).await?;
    let script = redis::Script::new(DECR_IF_POSITIVE);
    // Load it once, so that no buyer's first call falls back to EVAL.
    let _: String = script.prepare_invoke().load_async(&mut conn).await?;
    let buyers = (0..sale.buyers)
        .map(|_| {
            let mut conn = conn.clone();
            let shop = Arc::clone(&shop);
            let script = script.clone();
            async move {
                let mut n = 0;
                while shop.open() {
                    let got: i64 = script.key(&shop.key).invoke_async(&mut conn).await?;
                    if got == 0 {
                        break;
                    }
                    n += 1;
                    shop.bought();
                }
                Ok((n, 0))
            }
        })
        .collect();
    sell(Strategy::Lua, conn, sale, shop, buyers, progress).await
}

/// Runs `strategy`: [`naive`], [`watch`], [`lease`] or [`lua`].
///
/// # Cancel safety
///
/// As [`naive`].
pub async fn run(
    strategy: Strategy,
    client: &leasehold::Client,
    target: &Target,
    sale: &Sale,
    progress: &mut dyn FnMut(u64),
) -> Result<SaleResult, Error> {
    match strategy {
        Strategy::Naive => naive(target, sale, progress).await,
        Strategy::Watch => watch(target, sale, progress).await,
        Strategy::Lease => lease(client, target, sale, progress).await,
        Strategy::Lua => lua(target, sale, progress).await,
    }
}

/// W4: the four strategies in turn, then their rows.
pub(crate) async fn w4(ctx: &mut Ctx<'_>) -> Result<(), Error> {
    let sale = Sale {
        stock: ctx.sizes.w4_stock,
        buyers: ctx.sizes.w4_buyers,
        cap: ctx.sizes.w4_cap,
        key: format!("{KEY_PREFIX}w4:stock"),
    };
    let mut results = Vec::new();
    for strategy in Strategy::ALL {
        let bar = ctx
            .progress
            .bar(sale.stock, &format!("W4 flash sale, {strategy}"), "units");
        let r = run(strategy, &ctx.client, &ctx.target, &sale, &mut |n| {
            bar.set_position(n)
        })
        .await?;
        bar.finish_and_clear();
        results.push(r);
    }
    let mut raw = ctx.raw().await?;
    let _: () = raw
        .del(&[sale.key.clone(), format!("{}:lease", sale.key)])
        .await?;
    let lua_secs = results
        .iter()
        .find(|r| r.strategy == Strategy::Lua)
        .map(|r| r.elapsed.as_secs_f64());
    let eval_c64 = ctx.limits.as_ref().and_then(|l| l.eval_c64_per_s());
    let handoff_chain = ctx.limits.as_ref().and_then(|l| l.handoff_chain_per_s());
    for r in &results {
        let s = r.strategy.name();
        let secs = r.elapsed.as_secs_f64();
        let mut row = Row::new("W4", &format!("{s}_secs_to_sell_out"), secs, "s").note(format!(
            "{} buyers got {} to {} units each{}",
            sale.buyers,
            r.per_buyer_min,
            r.per_buyer_max,
            if r.sold_out {
                ""
            } else {
                "; NOT sold out (cap)"
            }
        ));
        if r.strategy == Strategy::Lease
            && let Some(lua) = lua_secs
        {
            let note = format!(
                "{}; held to this run's Lua (redis-rs); the peers' comparison holds it to redis-py's",
                row.note.as_deref().unwrap_or_default()
            );
            row = row
                .target(
                    format!("<= 3 x lua = {:.3}", 3.0 * lua),
                    Some(secs <= 3.0 * lua),
                )
                .note(note);
        }
        ctx.emit(row);
        let mut per_s = Row::new("W4", &format!("{s}_units_per_s"), r.units_per_s(), "1/s");
        if r.strategy == Strategy::Lease {
            // Every unit is one pass of the lease from buyer to buyer.
            per_s = rate(
                per_s,
                handoff_chain,
                "raw client: GET, SET, EVALSHA release in series (a unit is a handoff; W0 raw_handoff_chain_per_s)",
            );
        }
        if r.strategy == Strategy::Lua {
            per_s = rate(per_s, eval_c64, "EVAL at -c 64");
            if let Some(limit) = eval_c64 {
                let met = r.units_per_s() >= 0.7 * limit;
                per_s = per_s.target(format!(">= 0.7 x limit = {:.0}", 0.7 * limit), Some(met));
            }
        }
        ctx.emit(per_s);
        ctx.emit(
            Row::new("W4", &format!("{s}_sold"), r.sold as f64, "count")
                .note(format!("of {}; final stock {}", sale.stock, r.final_stock)),
        );
        let over = Row::new("W4", &format!("{s}_oversold"), r.oversold as f64, "count");
        ctx.emit(if r.strategy.is_safe() {
            over.exactly(0.0)
        } else {
            over.note("no lock: oversells by design")
        });
        if r.strategy == Strategy::Watch {
            ctx.emit(
                Row::new("W4", "watch_aborts", r.watch_aborts as f64, "count").note(format!(
                    "{:.2} per unit sold",
                    r.watch_aborts as f64 / r.sold.max(1) as f64
                )),
            );
        }
    }
    Ok(())
}
