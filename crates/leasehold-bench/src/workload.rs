//! [`Workload`]: W0 to W6 of BENCH.md and R1 to R4 (Redlock over 5
//! masters), and [`WorkloadArg`], the way the command line names them (`W0`
//! to `W6`, `R1` to `R4`, `all` for W1 to W6, `redlock` for R1 to R4). Both
//! are clap value enums, so `--help` lists the names and clap refuses any
//! other.

use std::fmt;
use std::str::FromStr;

use clap::ValueEnum;
use clap::builder::PossibleValue;

use crate::Error;

/// One workload of BENCH.md. W0 (the floors) also runs whenever one of W1
/// to W4 does, since their rows are compared with it; asked for alone, it
/// runs alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum Workload {
    /// The floors alone: the raw blocking client's (PING, W1's cycle, W3's
    /// three-command chain), redis-benchmark's shapes, the redis-rs floors.
    #[value(name = "W0")]
    W0,
    /// Uncontended latency: one worker, acquire + release cycles on one name.
    #[value(name = "W1")]
    W1,
    /// Uncontended throughput: 64 tasks, each on its own name.
    #[value(name = "W2")]
    W2,
    /// Contended: 16 workers on one name, a non-atomic counter under the
    /// lease; run twice, as BENCH.md defines it, then in fair mode (rows
    /// `W3-fair`).
    #[value(name = "W3")]
    W3,
    /// Flash sale: 32 buyers, 2,000 units, four strategies.
    #[value(name = "W4")]
    W4,
    /// Many waiters: 10,000 tasks in one process wait on one name.
    #[value(name = "W5")]
    W5,
    /// Redis Cluster: W2 and W3 on a 3-master loopback cluster beside the
    /// one server (about 15 s, the cluster's start included).
    #[value(name = "W6")]
    W6,
    /// Redlock, uncontended latency: one worker, acquire + release cycles
    /// on one name over 5 independent masters; the keys left on masters.
    #[value(name = "R1")]
    R1,
    /// Redlock, uncontended throughput: 64 tasks, each on its own name.
    #[value(name = "R2")]
    R2,
    /// Redlock, contended: 16 workers on one name, a non-atomic counter on
    /// master 1 under the lease.
    #[value(name = "R3")]
    R3,
    /// Redlock, minority down: masters 4 and 5 frozen (SIGSTOP), one
    /// worker on a fresh name.
    #[value(name = "R4")]
    R4,
}

impl Workload {
    /// W1 to W6, in order: what `all` runs.
    pub const ALL: [Workload; 6] = [
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
        Workload::W6,
    ];

    /// R1 to R4, in order: what `redlock` runs.
    pub const REDLOCK: [Workload; 4] = [Workload::R1, Workload::R2, Workload::R3, Workload::R4];

    /// Every workload, W0 to W6 then R1 to R4.
    pub const EVERY: [Workload; 11] = [
        Workload::W0,
        Workload::W1,
        Workload::W2,
        Workload::W3,
        Workload::W4,
        Workload::W5,
        Workload::W6,
        Workload::R1,
        Workload::R2,
        Workload::R3,
        Workload::R4,
    ];

    /// Whether it runs over Redlock's independent masters (R1 to R4).
    pub fn is_redlock(self) -> bool {
        Workload::REDLOCK.contains(&self)
    }

    /// `"W0"` to `"W6"`, `"R1"` to `"R4"`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::W0 => "W0",
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W5 => "W5",
            Workload::W6 => "W6",
            Workload::R1 => "R1",
            Workload::R2 => "R2",
            Workload::R3 => "R3",
            Workload::R4 => "R4",
        }
    }

    /// Parses a list: `all`, `redlock`, or names separated by commas
    /// (`W1,W3`); case does not matter. The same names as [`WorkloadArg`]
    /// takes.
    ///
    /// ```
    /// use leasehold_bench::Workload;
    /// assert_eq!(Workload::parse_list("all")?, Workload::ALL.to_vec());
    /// assert_eq!(Workload::parse_list("redlock")?, Workload::REDLOCK.to_vec());
    /// assert_eq!(Workload::parse_list("w3,W1")?, vec![Workload::W1, Workload::W3]);
    /// assert!(Workload::parse_list("W9").is_err());
    /// # Ok::<(), leasehold_bench::Error>(())
    /// ```
    pub fn parse_list(s: &str) -> Result<Vec<Workload>, Error> {
        let args = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| WorkloadArg::from_str(p, true).map_err(|_| unknown(p)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(WorkloadArg::expand(&args))
    }
}

/// The refusal of a name that is not a workload, listing the valid ones.
fn unknown(s: &str) -> Error {
    Error::Invalid(format!(
        "`{s}` is not a workload: use W0 to W6, all (W1 to W6), R1 to R4 or redlock (R1 to R4)"
    ))
}

impl FromStr for Workload {
    type Err = Error;

    /// `W1` to `W6`, `R1` to `R4` (any case); use [`Workload::parse_list`]
    /// for `all` and `redlock`.
    fn from_str(s: &str) -> Result<Workload, Error> {
        <Workload as ValueEnum>::from_str(s.trim(), true).map_err(|_| unknown(s))
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A workload as the command line names it: one of `W0` to `W6` or `R1` to
/// `R4`, `all` (W1 to W6) or `redlock` (R1 to R4).
/// A clap value enum; the binaries take it case-insensitively, as a list
/// that may also be comma-separated (`W1,W3`).
///
/// ```
/// use leasehold_bench::{Workload, WorkloadArg};
/// let args = [WorkloadArg::One(Workload::W3), WorkloadArg::One(Workload::W1)];
/// assert_eq!(WorkloadArg::expand(&args), [Workload::W1, Workload::W3]);
/// assert_eq!(WorkloadArg::expand(&[WorkloadArg::All]), Workload::ALL);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadArg {
    /// That workload.
    One(Workload),
    /// W1 to W6.
    All,
    /// R1 to R4.
    Redlock,
}

impl WorkloadArg {
    /// The workloads `args` name, in order, each once. Empty for no
    /// arguments, which [`Options::workloads`](crate::Options::workloads)
    /// takes as all of them.
    pub fn expand(args: &[WorkloadArg]) -> Vec<Workload> {
        let mut out = Vec::new();
        for arg in args {
            match arg {
                WorkloadArg::One(w) => out.push(*w),
                WorkloadArg::All => out.extend(Workload::ALL),
                WorkloadArg::Redlock => out.extend(Workload::REDLOCK),
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

impl ValueEnum for WorkloadArg {
    fn value_variants<'a>() -> &'a [WorkloadArg] {
        &[
            WorkloadArg::One(Workload::W0),
            WorkloadArg::One(Workload::W1),
            WorkloadArg::One(Workload::W2),
            WorkloadArg::One(Workload::W3),
            WorkloadArg::One(Workload::W4),
            WorkloadArg::One(Workload::W5),
            WorkloadArg::One(Workload::W6),
            WorkloadArg::All,
            WorkloadArg::One(Workload::R1),
            WorkloadArg::One(Workload::R2),
            WorkloadArg::One(Workload::R3),
            WorkloadArg::One(Workload::R4),
            WorkloadArg::Redlock,
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self {
            WorkloadArg::One(w) => w.to_possible_value(),
            WorkloadArg::All => Some(PossibleValue::new("all").help("W1 to W6")),
            WorkloadArg::Redlock => Some(PossibleValue::new("redlock").help("R1 to R4")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's names are the ones `name()` prints (the rows' `workload`).
    #[test]
    fn clap_names_are_the_printed_names() {
        assert_eq!(Workload::value_variants(), Workload::EVERY);
        for w in Workload::EVERY {
            assert_eq!(w.to_possible_value().unwrap().get_name(), w.name());
            assert_eq!(
                WorkloadArg::from_str(&w.name().to_lowercase(), true),
                Ok(WorkloadArg::One(w))
            );
        }
        assert_eq!(WorkloadArg::from_str("ALL", true), Ok(WorkloadArg::All));
        assert_eq!(
            WorkloadArg::from_str("Redlock", true),
            Ok(WorkloadArg::Redlock)
        );
        assert!(Workload::REDLOCK.iter().all(|w| w.is_redlock()));
        assert!(!Workload::ALL.iter().any(|w| w.is_redlock()));
    }
}
