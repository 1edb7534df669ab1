//! Measuring helpers: latency histograms, `INFO commandstats`, the memory
//! of this process, a ticker that moves a progress bar.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::ProgressBar;

use crate::Error;

/// Latencies in nanoseconds, 3 significant digits, up to one hour.
#[derive(Clone)]
pub(crate) struct Hist(Histogram<u64>);

impl Hist {
    pub(crate) fn new() -> Hist {
        Hist(Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds"))
    }

    pub(crate) fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.0.saturating_record(ns);
    }

    pub(crate) fn record_n(&mut self, d: Duration, n: u64) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
        // Out of range only past an hour; clamp like saturating_record.
        let ns = ns.min(self.0.high());
        let _ = self.0.record_n(ns, n);
    }

    pub(crate) fn merge(&mut self, other: &Hist) {
        self.0.add(&other.0).expect("same bounds");
    }

    pub(crate) fn len(&self) -> u64 {
        self.0.len()
    }

    /// The `q` quantile (0..=1), in microseconds; 0 when empty.
    pub(crate) fn quantile_us(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1e3
    }

    pub(crate) fn max_us(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.max() as f64 / 1e3
    }
}

/// `INFO commandstats` as command name to number of calls, summed over
/// `servers` (a cluster's masters, or the one server). Commands run by
/// scripts are counted too (Redis counts them under their own names).
pub(crate) async fn commandstats(
    servers: &mut [redis::aio::MultiplexedConnection],
) -> Result<HashMap<String, u64>, Error> {
    let mut out = HashMap::new();
    for conn in servers {
        let text: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(conn)
            .await?;
        for (name, n) in parse_commandstats(&text, "calls=") {
            *out.entry(name).or_insert(0) += n;
        }
    }
    Ok(out)
}

/// [`server_work`] summed over `servers`.
pub(crate) async fn servers_work(
    servers: &mut [redis::aio::MultiplexedConnection],
) -> Result<(f64, u64), Error> {
    let (mut cpu, mut script) = (0.0, 0);
    for conn in servers {
        let (c, s) = server_work(conn).await?;
        cpu += c;
        script += s;
    }
    Ok((cpu, script))
}

/// The server's own measure of its work: CPU seconds (`INFO cpu`, user +
/// sys) and microseconds spent in scripts (`usec` of EVALSHA + EVAL, the
/// commands they run included).
pub(crate) async fn server_work(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<(f64, u64), Error> {
    let cpu: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    let field = |name: &str| -> f64 {
        cpu.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':')?.parse().ok())
            .unwrap_or(0.0)
    };
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let usec = parse_commandstats(&stats, "usec=");
    let scripts =
        usec.get("evalsha").copied().unwrap_or(0) + usec.get("eval").copied().unwrap_or(0);
    Ok((field("used_cpu_user") + field("used_cpu_sys"), scripts))
}

/// Where the CPU went during a workload: this process, the server, the
/// server's scripts. Taken before and after; see [`Work::per`].
pub(crate) struct Work {
    client: Duration,
    server_s: f64,
    script_us: u64,
}

/// [`Work`] spent per unit of a workload (a cycle, a handoff), in µs.
pub(crate) struct WorkPer {
    pub(crate) client_us: f64,
    pub(crate) server_us: f64,
    pub(crate) script_us: f64,
}

impl Work {
    /// Now, the server side summed over `servers` (a cluster's masters).
    pub(crate) async fn now(
        servers: &mut [redis::aio::MultiplexedConnection],
    ) -> Result<Work, Error> {
        let (server_s, script_us) = servers_work(servers).await?;
        Ok(Work {
            client: own_cpu(),
            server_s,
            script_us,
        })
    }

    /// Spent from `self` to `later`, divided by `units`.
    pub(crate) fn per(&self, later: &Work, units: u64) -> WorkPer {
        let n = units.max(1) as f64;
        WorkPer {
            client_us: (later.client.saturating_sub(self.client)).as_secs_f64() * 1e6 / n,
            server_us: (later.server_s - self.server_s).max(0.0) * 1e6 / n,
            script_us: later.script_us.saturating_sub(self.script_us) as f64 / n,
        }
    }
}

impl WorkPer {
    /// The three rows, `client_cpu_us_per_<unit>` and so on.
    pub(crate) fn rows(&self, workload: &str, unit: &str) -> Vec<crate::Row> {
        use crate::report::Row;
        vec![
            Row::new(
                workload,
                &format!("client_cpu_us_per_{unit}"),
                self.client_us,
                "us",
            )
            .note("CPU of this process (getrusage, user + sys)"),
            Row::new(
                workload,
                &format!("redis_cpu_us_per_{unit}"),
                self.server_us,
                "us",
            )
            .note(format!(
                "INFO cpu of redis-server (user + sys): alone it could do at most {:.0} {unit}s/s",
                1e6 / self.server_us.max(1e-9)
            )),
            Row::new(
                workload,
                &format!("redis_script_us_per_{unit}"),
                self.script_us,
                "us",
            )
            .note("INFO commandstats usec of EVALSHA + EVAL, their inner commands included"),
        ]
    }
}

/// CPU time (user + system) this process has used so far.
pub(crate) fn own_cpu() -> Duration {
    // SAFETY: getrusage(2) only writes the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn parse_commandstats(text: &str, key: &str) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, fields)) = rest.split_once(':') else {
            continue;
        };
        let calls = fields
            .split(',')
            .find_map(|f| f.strip_prefix(key))
            .and_then(|n| n.parse().ok());
        if let Some(calls) = calls {
            out.insert(name.to_owned(), calls);
        }
    }
    out
}

/// Calls per command between two snapshots; the harness's own `INFO` and
/// `CLIENT` calls are left out.
pub(crate) fn diff(
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
) -> HashMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| *name != "info" && !name.starts_with("client"))
        .map(|(name, n)| (name.clone(), n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// One line of `/proc/self/status` in kB (`VmHWM`, `VmRSS`), as MiB.
pub(crate) fn proc_status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: f64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb / 1024.0)
    })
}

/// Resets the peak resident set size (`VmHWM`) to the current one, so that
/// a workload's peak is its own. Linux 4.0 and later; false elsewhere.
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Moves `bar` to the value of `count` every 100 ms until dropped.
pub(crate) struct Ticker(tokio::task::JoinHandle<()>);

impl Ticker {
    pub(crate) fn start(bar: &ProgressBar, count: &Arc<AtomicU64>) -> Ticker {
        let count = Arc::clone(count);
        Ticker::with(bar, move || count.load(Ordering::Relaxed))
    }

    /// Moves `bar` to `position()` every 100 ms until dropped.
    pub(crate) fn with(bar: &ProgressBar, position: impl Fn() -> u64 + Send + 'static) -> Ticker {
        let bar = bar.clone();
        Ticker(tokio::spawn(async move {
            loop {
                bar.set_position(position());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commandstats() {
        let text = "# Commandstats\r\ncmdstat_evalsha:calls=12,usec=90,usec_per_call=7.50,rejected_calls=0,failed_calls=0\r\ncmdstat_client|list:calls=1,usec=3\r\n";
        let m = parse_commandstats(text, "calls=");
        assert_eq!(parse_commandstats(text, "usec=")["evalsha"], 90);
        assert_eq!(m["evalsha"], 12);
        assert_eq!(m["client|list"], 1);
        let mut after = m.clone();
        *after.get_mut("evalsha").unwrap() += 5;
        after.insert("get".into(), 2);
        let d = diff(&m, &after);
        assert_eq!(d["evalsha"], 5);
        assert_eq!(d["get"], 2);
        assert!(!d.contains_key("client|list"));
    }

    #[test]
    fn histogram_quantiles() {
        let mut h = Hist::new();
        for us in 1..=100 {
            h.record(Duration::from_micros(us));
        }
        assert!((h.quantile_us(0.5) - 50.0).abs() < 1.0);
        assert!((h.max_us() - 100.0).abs() < 1.0);
        assert_eq!(h.len(), 100);
    }

    #[test]
    fn counts_own_cpu() {
        let before = own_cpu();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(own_cpu() >= before);
    }

    #[test]
    fn reads_own_memory() {
        if cfg!(target_os = "linux") {
            assert!(proc_status_mib("VmRSS").unwrap() > 0.0);
        }
    }
}
