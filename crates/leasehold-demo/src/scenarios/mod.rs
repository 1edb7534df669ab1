//! The four scenarios: [`Scenario`] names them, [`Sizes`] sizes them, and
//! each has a module of its own that runs it.

pub(crate) mod cache_stampede;
pub(crate) mod flash_sale;
pub(crate) mod one_job;
pub(crate) mod paused_holder;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A scenario of the demo. A clap [`ValueEnum`](clap::ValueEnum): its
/// command-line names are [`Scenario::name`]'s, and `--help` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Four ways to sell limited stock; only the naive one oversells.
    FlashSale,
    /// A scheduled job on many hosts runs once per tick.
    OneJob,
    /// A cold cache is rebuilt once, not once per reader.
    CacheStampede,
    /// Fencing stops a holder that froze past its TTL.
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

    /// The name on the command line: `flash-sale`, `one-job`,
    /// `cache-stampede`, `paused-holder`.
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

    /// The command-line names, as clap takes them.
    fn from_str(s: &str) -> Result<Scenario, String> {
        <Scenario as clap::ValueEnum>::from_str(s, false).map_err(|_| {
            let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
            format!(
                "unknown scenario `{s}`; choose one of: {}",
                names.join(", ")
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
    /// One job: hosts (each its own [`leasehold::Client`], as on separate
    /// machines).
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

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    /// clap's names (derived from the variants) are the ones `name()`
    /// prints, so `--help`, the events and the parser agree.
    #[test]
    fn clap_names_are_the_printed_names() {
        assert_eq!(Scenario::value_variants(), Scenario::ALL);
        for s in Scenario::ALL {
            let value = s.to_possible_value().unwrap();
            assert_eq!(value.get_name(), s.name());
        }
    }
}
