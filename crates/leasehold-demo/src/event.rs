//! [`Event`]: what a scenario reports, for people ([`Event::human`]) or as
//! JSON Lines ([`Event::json`]).

use serde_json::json;

use crate::Scenario;

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
                    "  {strategy:<6} {sold:>6} sold of {stock:<6} {verdict:<16} {:>8}  conflicts {conflicts:<6} per buyer {}..{}",
                    secs(*seconds),
                    per_buyer.0,
                    per_buyer.1
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
                "  {readers} readers missed the cache at once: rebuilt {rebuilds} time(s); {waited} waited for the rebuild, {from_cache} found it cached; all served in {}",
                secs(*seconds)
            ),
            Event::Paused { text, refused, .. } => match refused {
                Some(true) => format!("  refused: {text}"),
                Some(false) => format!("  ACCEPTED: {text}"),
                None => format!("  {text}"),
            },
        }
    }
}

/// A time for people, in seconds to the millisecond: `0.125s`. The demo's
/// one duration format, so that every line reads alike.
fn secs(seconds: f64) -> String {
    format!("{seconds:.3}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_in_seconds_to_the_millisecond() {
        assert_eq!(secs(0.1234), "0.123s");
        let e = Event::Stampede {
            readers: 3,
            rebuilds: 1,
            from_cache: 0,
            waited: 2,
            seconds: 0.5,
        };
        assert!(e.human().ends_with("all served in 0.500s"), "{}", e.human());
        let e = Event::FlashSale {
            strategy: "lua",
            stock: 10,
            sold: 10,
            oversold: 0,
            seconds: 0.014,
            conflicts: 0,
            per_buyer: (1, 2),
        };
        assert_eq!(
            e.human(),
            "  lua        10 sold of 10     oversold 0         0.014s  conflicts 0      per buyer 1..2"
        );
    }
}
