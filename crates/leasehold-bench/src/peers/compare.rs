//! [`compare`]: for each of leasehold's headline figures, the best peer
//! (or the one BENCH.md's target names), and the ratio.

use serde_json::Value;

use super::{num, records};
use crate::report::Row;

/// Which way is better for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A rate: more is better.
    Higher,
    /// A time: less is better.
    Lower,
}

/// leasehold against the best peer on one figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// `W1` to `W4`, `R1` to `R4`.
    pub workload: String,
    /// leasehold's figure name.
    pub figure: String,
    /// leasehold's value.
    pub leasehold: f64,
    /// The peer compared with (`rslock aggressive`), if any ran.
    pub peer: Option<String>,
    /// That peer's value, in leasehold's unit.
    pub peer_value: Option<f64>,
    /// leasehold / peer.
    pub ratio: Option<f64>,
    /// Whether a higher or lower ratio is better.
    pub direction: Direction,
    /// BENCH.md's target on the ratio, if it sets one (`>= 1.2`).
    pub target: Option<String>,
    /// Whether the ratio meets it.
    pub met: Option<bool>,
}

/// How to find a figure among the peers' JSON lines.
struct Pick {
    workload: &'static str,
    figure: &'static str,
    direction: Direction,
    /// Only this lib (and variant prefix), or every one.
    only: Option<(&'static str, Option<&'static str>)>,
    /// The peer's figure in leasehold's unit.
    value: fn(&Value) -> Option<f64>,
    /// BENCH.md's target on the ratio leasehold / peer.
    target: Option<Bound>,
}

/// R1 to R4: the figures of the peers' Redlock harness.
const REDLOCK_PICKS: [Pick; 9] = [
    Pick {
        workload: "R1",
        figure: "cycles_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| num(v, "cycles_per_s"),
        target: Some(Bound::AtLeast(1.2)),
    },
    Pick {
        workload: "R1",
        figure: "cycle_p50_us",
        direction: Direction::Lower,
        only: None,
        value: |v| num(v, "p50_us"),
        target: None,
    },
    Pick {
        workload: "R2",
        figure: "cycles_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| num(v, "cycles_per_s"),
        target: None,
    },
    Pick {
        workload: "R3",
        figure: "acquisitions_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| num(v, "acq_per_s"),
        target: None,
    },
    Pick {
        workload: "R3",
        figure: "handoffs_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| num(v, "handoffs_per_s"),
        target: Some(Bound::AtLeast(2.0)),
    },
    Pick {
        workload: "R3",
        figure: "per_worker_min_max_ratio",
        direction: Direction::Higher,
        only: None,
        value: |v| num(v, "min_max_ratio"),
        target: None,
    },
    Pick {
        workload: "R3",
        figure: "wait_p99_ms",
        direction: Direction::Lower,
        only: None,
        value: |v| Some(num(v, "wait_p99_us")? / 1e3),
        target: None,
    },
    Pick {
        workload: "R4",
        figure: "cycles_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| num(v, "cycles_per_s"),
        target: None,
    },
    Pick {
        workload: "R4",
        figure: "cycle_p50_us",
        direction: Direction::Lower,
        only: None,
        value: |v| num(v, "p50_us"),
        target: None,
    },
];

/// A target on a ratio.
#[derive(Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

const PICKS: [Pick; 15] = [
    // BENCH.md (issue 16): W1 cycles/s at least 1.2 x the best peer.
    Pick {
        workload: "W1",
        figure: "cycles_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| num(v, "cycles_per_s"),
        target: Some(Bound::AtLeast(1.2)),
    },
    Pick {
        workload: "W1",
        figure: "cycle_p50_us",
        direction: Direction::Lower,
        only: None,
        value: |v| num(v, "p50_us"),
        target: None,
    },
    Pick {
        workload: "W2",
        figure: "cycles_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| num(v, "cycles_per_s"),
        target: None,
    },
    Pick {
        workload: "W2",
        figure: "cycles_per_s",
        direction: Direction::Higher,
        only: Some(("rslock", None)),
        value: |v| num(v, "cycles_per_s"),
        target: Some(Bound::AtLeast(1.2)),
    },
    Pick {
        workload: "W3",
        figure: "acquisitions_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| num(v, "acq_per_s"),
        target: None,
    },
    Pick {
        workload: "W3",
        figure: "handoffs_per_s",
        direction: Direction::Higher,
        only: None,
        value: |v| Some(num(v, "handoffs")? / num(v, "secs")?),
        target: None,
    },
    Pick {
        workload: "W3",
        figure: "handoffs_per_s",
        direction: Direction::Higher,
        only: Some(("rslock", Some("aggressive"))),
        value: |v| Some(num(v, "handoffs")? / num(v, "secs")?),
        // W3's target is against the raw floor (its own row), not a peer.
        target: None,
    },
    Pick {
        workload: "W3",
        figure: "handoff_p50_ms",
        direction: Direction::Lower,
        only: None,
        value: |v| Some(num(v, "handoff_p50_us")? / 1e3),
        target: None,
    },
    Pick {
        workload: "W3",
        figure: "handoff_p99_ms",
        direction: Direction::Lower,
        only: None,
        value: |v| Some(num(v, "handoff_p99_us")? / 1e3),
        target: None,
    },
    Pick {
        workload: "W3",
        figure: "wait_max_ms",
        direction: Direction::Lower,
        only: None,
        value: |v| Some(num(v, "wait_max_us")? / 1e3),
        target: None,
    },
    Pick {
        workload: "W3",
        figure: "per_worker_min_max_ratio",
        direction: Direction::Higher,
        only: None,
        value: |v| Some(num(v, "per_worker_min")? / num(v, "per_worker_max")?.max(1.0)),
        target: None,
    },
    Pick {
        workload: "W4",
        figure: "lua_secs_to_sell_out",
        direction: Direction::Lower,
        only: Some(("redis-py", Some("c-lua"))),
        value: |v| num(v, "secs_to_sell_out"),
        target: None,
    },
    Pick {
        workload: "W4",
        figure: "watch_secs_to_sell_out",
        direction: Direction::Lower,
        only: Some(("redis-py", Some("a-watch"))),
        value: |v| num(v, "secs_to_sell_out"),
        target: None,
    },
    Pick {
        workload: "W4",
        figure: "lease_secs_to_sell_out",
        direction: Direction::Lower,
        only: Some(("redis-py", Some("b-lock"))),
        value: |v| num(v, "secs_to_sell_out"),
        target: None,
    },
    // BENCH.md: "the lease strategy within 3 x Lua", Lua as the peers
    // measured it (redis-py).
    Pick {
        workload: "W4",
        figure: "lease_secs_to_sell_out",
        direction: Direction::Lower,
        only: Some(("redis-py", Some("c-lua"))),
        value: |v| num(v, "secs_to_sell_out"),
        target: Some(Bound::AtMost(3.0)),
    },
];

/// leasehold's rows against the peers' JSON lines: for each headline figure,
/// the best peer (or the one BENCH.md's target names), and the ratio.
///
/// ```
/// use leasehold_bench::{Row, peers};
/// let rows = vec![Row {
///     workload: "W2".into(), figure: "cycles_per_s".into(), value: 260_000.0,
///     unit: "1/s".into(), limit: None, limit_of: None, share: None,
///     target: None, met: None, note: None,
/// }];
/// let lines = [r#"{"lib":"rslock","workload":"W2","variant":"default","cycles_per_s":130000.0}"#];
/// let c = peers::compare(&rows, &lines);
/// let vs_rslock = c.iter().find(|c| c.target.is_some()).unwrap();
/// assert_eq!(vs_rslock.ratio, Some(2.0));
/// assert_eq!(vs_rslock.met, Some(true));
/// ```
pub fn compare(rows: &[Row], peer_lines: &[impl AsRef<str>]) -> Vec<Comparison> {
    compare_with(rows, peer_lines, &PICKS, "lib")
}

/// R1 to R4 of leasehold against the lines of the peers' Redlock harness
/// (`library`, `workload`, `variant`, figures): the best peer over every
/// library and variant, and BENCH.md's targets on the ratio (R1 cycles/s
/// at least 1.2, R3 handoffs/s at least 2). Lines a library `skipped`
/// take no part.
///
/// ```
/// use leasehold_bench::{Row, peers};
/// let row = |figure: &str, value| Row {
///     workload: "R3".into(), figure: figure.into(), value,
///     unit: "1/s".into(), limit: None, limit_of: None, share: None,
///     target: None, met: None, note: None,
/// };
/// let lines = [
///     r#"{"library":"rslock","workload":"R3","variant":"aggressive","handoffs_per_s":1300.0}"#,
///     r#"{"library":"node-redlock","workload":"R3","variant":"default","handoffs_per_s":27.0}"#,
/// ];
/// let c = peers::compare_redlock(&[row("handoffs_per_s", 3250.0)], &lines);
/// assert_eq!(c[0].peer.as_deref(), Some("rslock aggressive"));
/// assert_eq!(c[0].ratio, Some(2.5));
/// assert_eq!(c[0].met, Some(true));
/// ```
pub fn compare_redlock(rows: &[Row], peer_lines: &[impl AsRef<str>]) -> Vec<Comparison> {
    compare_with(rows, peer_lines, &REDLOCK_PICKS, "library")
}

/// [`compare`] with a table of picks; `lib_key` names the library in the
/// peers' lines.
fn compare_with(
    rows: &[Row],
    peer_lines: &[impl AsRef<str>],
    picks: &[Pick],
    lib_key: &str,
) -> Vec<Comparison> {
    let records = records(peer_lines);
    let mut out = Vec::new();
    for pick in picks {
        let Some(ours) = rows
            .iter()
            .find(|r| r.workload == pick.workload && r.figure == pick.figure)
        else {
            continue;
        };
        let candidates = records.iter().filter_map(|v| {
            if v.get("workload")?.as_str()? != pick.workload || v.get("skipped").is_some() {
                return None;
            }
            let lib = v.get(lib_key)?.as_str()?;
            let variant = v.get("variant").and_then(Value::as_str).unwrap_or("");
            if let Some((want_lib, want_variant)) = pick.only
                && (lib != want_lib || want_variant.is_some_and(|w| !variant.starts_with(w)))
            {
                return None;
            }
            let value = (pick.value)(v).filter(|x| x.is_finite())?;
            let label = if variant.is_empty() || variant == "default" {
                lib.to_owned()
            } else {
                format!("{lib} {variant}")
            };
            Some((label, value))
        });
        let best = candidates.reduce(|a, b| {
            let b_better = match pick.direction {
                Direction::Higher => b.1 > a.1,
                Direction::Lower => b.1 < a.1,
            };
            if b_better { b } else { a }
        });
        let ratio = best
            .as_ref()
            .and_then(|(_, p)| (*p != 0.0).then(|| ours.value / p));
        let (target, met) = match pick.target {
            Some(Bound::AtLeast(t)) => (Some(format!(">= {t}")), ratio.map(|r| r >= t)),
            Some(Bound::AtMost(t)) => (Some(format!("<= {t}")), ratio.map(|r| r <= t)),
            None => (None, None),
        };
        out.push(Comparison {
            workload: pick.workload.to_owned(),
            figure: pick.figure.to_owned(),
            leasehold: ours.value,
            peer: best.as_ref().map(|(l, _)| l.clone()),
            peer_value: best.map(|(_, v)| v),
            ratio,
            direction: pick.direction,
            target,
            met,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::{format_comparison, format_peer_table};

    #[test]
    fn picks_the_best_peer() {
        let rows = vec![Row {
            workload: "W3".into(),
            figure: "handoff_p50_ms".into(),
            value: 0.1,
            unit: "ms".into(),
            limit: None,
            limit_of: None,
            share: None,
            target: None,
            met: None,
            note: None,
        }];
        let lines = [
            r#"{"lib":"a","workload":"W3","variant":"default","handoff_p50_us":300.0}"#,
            r#"{"lib":"b","workload":"W3","variant":"fast","handoff_p50_us":200.0}"#,
        ];
        let c = compare(&rows, &lines);
        assert_eq!(c[0].peer.as_deref(), Some("b fast"));
        assert!((c[0].ratio.unwrap() - 0.5).abs() < 1e-9);
        assert!(format_comparison(&c).contains("b fast"));
        assert!(format_peer_table(&lines).contains("b"));
    }
}
