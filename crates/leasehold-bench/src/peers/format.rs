//! The peers' figures and the comparison as plain-text tables.

use std::fmt::Write as _;

use serde_json::Value;

use super::compare::{Comparison, Direction};
use super::{num, records};
use crate::report::{Row, fmt_num};

/// The comparisons as a plain-text table.
pub fn format_comparison(comparisons: &[Comparison]) -> String {
    let mut rows = vec![[
        "workload".to_owned(),
        "figure".to_owned(),
        "leasehold".to_owned(),
        "peer".to_owned(),
        "peer value".to_owned(),
        "leasehold / peer".to_owned(),
        "better".to_owned(),
        "target".to_owned(),
        "met".to_owned(),
    ]];
    for c in comparisons {
        rows.push([
            c.workload.clone(),
            c.figure.clone(),
            fmt_num(c.leasehold),
            c.peer.clone().unwrap_or_else(|| "(no peer ran)".into()),
            c.peer_value.map(fmt_num).unwrap_or_default(),
            c.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
            match c.direction {
                Direction::Higher => "> 1".into(),
                Direction::Lower => "< 1".into(),
            },
            c.target.clone().unwrap_or_default(),
            match c.met {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => String::new(),
            },
        ]);
    }
    table(&rows)
}

/// The peers' own headline figures, one line per library and variant.
pub fn format_peer_table(peer_lines: &[impl AsRef<str>]) -> String {
    let records = records(peer_lines);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let f = |x: Option<f64>| x.map(fmt_num).unwrap_or_else(|| "-".into());
    let mut rows = vec![
        [
            "workload", "library", "variant", "figures", "", "", "", "", "",
        ]
        .map(String::from),
    ];
    for v in &records {
        let w = s(v, "workload");
        let cells: Vec<String> = match w.as_str() {
            "W1" => vec![
                format!("{} cycles/s", f(num(v, "cycles_per_s"))),
                format!("p50 {} us", f(num(v, "p50_us"))),
                format!("p99 {} us", f(num(v, "p99_us"))),
            ],
            "W2" => vec![format!("{} cycles/s", f(num(v, "cycles_per_s")))],
            "W3" => vec![
                format!("{} acq/s", f(num(v, "acq_per_s"))),
                format!(
                    "{} handoffs/s",
                    f(num(v, "handoffs").zip(num(v, "secs")).map(|(h, s)| h / s))
                ),
                format!(
                    "handoff p50/p99 {}/{} ms",
                    f(num(v, "handoff_p50_us").map(|x| x / 1e3)),
                    f(num(v, "handoff_p99_us").map(|x| x / 1e3))
                ),
                format!("wait max {} ms", f(num(v, "wait_max_us").map(|x| x / 1e3))),
                format!(
                    "min/max {}",
                    f(num(v, "per_worker_min")
                        .zip(num(v, "per_worker_max"))
                        .map(|(a, b)| a / b.max(1.0)))
                ),
                format!("lost {}", f(num(v, "lost_updates"))),
            ],
            "W4" => vec![
                format!("{} s", f(num(v, "secs_to_sell_out"))),
                format!("sold {}", f(num(v, "sold"))),
                format!("oversold {}", f(num(v, "oversold"))),
                format!("aborts {}", f(num(v, "watch_aborts"))),
            ],
            "ERROR" => vec![s(v, "error")],
            _ => continue,
        };
        let mut row: [String; 9] = Default::default();
        row[0] = w;
        row[1] = s(v, "lib");
        row[2] = s(v, "variant");
        for (i, c) in cells.into_iter().take(6).enumerate() {
            row[3 + i] = c;
        }
        rows.push(row);
    }
    table(&rows)
}

/// The lines of the peers' Redlock harness, one line per library, variant
/// and workload (R1 to R4), with the figures the peers' README lists.
pub fn format_redlock_peer_table(peer_lines: &[impl AsRef<str>]) -> String {
    let records = records(peer_lines);
    let s = |v: &Value, k: &str| match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => String::new(),
        Some(x) => x.to_string(),
    };
    let f = |x: Option<f64>| x.map(fmt_num).unwrap_or_else(|| "-".into());
    let ms = |v: &Value, k: &str| f(num(v, k).map(|x| x / 1e3));
    let mut rows = vec![
        [
            "workload", "library", "variant", "figures", "", "", "", "", "",
        ]
        .map(String::from),
    ];
    for v in &records {
        let w = s(v, "workload");
        // A long reason goes last, so that it widens no column.
        let mut last = String::new();
        let cells: Vec<String> = if v.get("skipped").is_some() {
            last = format!("skipped: {}", s(v, "skipped"));
            Vec::new()
        } else {
            match w.as_str() {
                "R1" => vec![
                    format!("{} cycles/s", f(num(v, "cycles_per_s"))),
                    format!("p50 {} us", f(num(v, "p50_us"))),
                    format!("p99 {} us", f(num(v, "p99_us"))),
                    format!("keys left on masters {}", s(v, "orphan_keys_after")),
                ],
                "R2" => vec![
                    format!("{} cycles/s", f(num(v, "cycles_per_s"))),
                    format!("{} cycles", f(num(v, "cycles"))),
                    format!("{} s", f(num(v, "secs"))),
                ],
                "R3" => vec![
                    format!("{} acq/s", f(num(v, "acq_per_s"))),
                    format!("{} handoffs/s", f(num(v, "handoffs_per_s"))),
                    format!("min/max {}", f(num(v, "min_max_ratio"))),
                    format!("lost {}", f(num(v, "lost_updates"))),
                    format!(
                        "wait p50/p99 {}/{} ms",
                        ms(v, "wait_p50_us"),
                        ms(v, "wait_p99_us")
                    ),
                    format!("retry: {}", s(v, "retry")),
                ],
                "R4" => vec![
                    format!("{} cycles/s", f(num(v, "cycles_per_s"))),
                    format!("p50 {} ms", ms(v, "p50_us")),
                    format!("p99 {} ms", ms(v, "p99_us")),
                    format!("{} cycles in {} s", f(num(v, "cycles")), f(num(v, "secs"))),
                    if v.get("stalled").and_then(Value::as_bool) == Some(true) {
                        "STALLED".into()
                    } else {
                        String::new()
                    },
                    format!("node timeout: {}", s(v, "node_timeout")),
                ],
                "ERROR" => {
                    last = s(v, "error");
                    Vec::new()
                }
                _ => continue,
            }
        };
        let mut row: [String; 9] = Default::default();
        row[0] = w;
        row[1] = s(v, "library");
        row[2] = s(v, "variant");
        for (i, c) in cells.into_iter().take(6).enumerate() {
            row[3 + i] = c;
        }
        if !last.is_empty() {
            row[8] = last;
        }
        rows.push(row);
    }
    table(&rows)
}

/// Several runs of the same workloads side by side (one column per pass,
/// in the order they ran), and their median: the rows of the first pass
/// decide the order. Returns the table and the median rows (the first
/// pass's rows with the median value), for [`compare_redlock`](super::compare_redlock).
pub fn format_passes(passes: &[Vec<Row>]) -> (String, Vec<Row>) {
    let Some(first) = passes.first() else {
        return (String::new(), Vec::new());
    };
    let mut head = vec![
        "workload".to_owned(),
        "figure".to_owned(),
        "unit".to_owned(),
    ];
    head.extend((1..=passes.len()).map(|i| format!("pass {i}")));
    head.extend(["median".to_owned(), "target".to_owned(), "met".to_owned()]);
    let mut lines = vec![head];
    let mut medians = Vec::new();
    for row in first {
        let values: Vec<Option<f64>> = passes
            .iter()
            .map(|p| {
                p.iter()
                    .find(|r| r.workload == row.workload && r.figure == row.figure)
                    .map(|r| r.value)
            })
            .collect();
        let mut sorted: Vec<f64> = values.iter().flatten().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => continue,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        let mut m = row.clone();
        m.value = median;
        // The target as the row states it, judged again on the median.
        m.met = row.target.as_deref().and_then(|t| met(t, median));
        let mut line = vec![row.workload.clone(), row.figure.clone(), row.unit.clone()];
        line.extend(values.iter().map(|v| v.map(fmt_num).unwrap_or_default()));
        line.push(fmt_num(median));
        line.push(row.target.clone().unwrap_or_default());
        line.push(match m.met {
            Some(true) => "yes".into(),
            Some(false) => "NO".into(),
            None => String::new(),
        });
        lines.push(line);
        medians.push(m);
    }
    (table_vec(&lines), medians)
}

/// Whether `value` meets a target written as [`Row`]'s are (`>= 0.9`,
/// `<= 1.5`, `= 0`); `None` for a target on something else (`>= 1.2 x
/// best peer`).
fn met(target: &str, value: f64) -> Option<bool> {
    let (op, n) = target.split_once(' ')?;
    let n: f64 = n.replace(',', "").parse().ok()?;
    match op {
        ">=" => Some(value >= n),
        "<=" => Some(value <= n),
        "=" => Some(value == n),
        _ => None,
    }
}

pub(super) fn table_vec(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut w = vec![0usize; width];
    for r in rows {
        for (w, c) in w.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, w) in r.iter().zip(&w) {
            let _ = write!(line, "{c}{}  ", " ".repeat(w - c.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = w.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(rule.join("  ").trim_end());
            out.push('\n');
        }
    }
    out
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    table_vec(&rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workload: &str, figure: &str, value: f64, target: Option<&str>) -> Row {
        Row {
            workload: workload.into(),
            figure: figure.into(),
            value,
            unit: "1/s".into(),
            limit: None,
            limit_of: None,
            share: None,
            target: target.map(String::from),
            met: None,
            note: None,
        }
    }

    /// The median of each figure over the passes, its target judged again
    /// on the median; a pass that lacks a figure (it failed) is left out.
    #[test]
    fn passes_give_their_median() {
        let passes = vec![
            vec![
                row("R1", "cycles_per_s", 100.0, None),
                row("R3", "ratio", 0.8, Some(">= 0.9")),
            ],
            vec![row("R1", "cycles_per_s", 300.0, None)],
            vec![
                row("R1", "cycles_per_s", 200.0, None),
                row("R3", "ratio", 1.0, Some(">= 0.9")),
            ],
        ];
        let (table, medians) = format_passes(&passes);
        assert_eq!(medians[0].value, 200.0);
        assert_eq!(medians[1].value, 0.9);
        assert_eq!(medians[1].met, Some(true));
        assert!(table.contains("pass 3"), "{table}");
        assert_eq!(met("= 0", 0.0), Some(true));
        assert_eq!(met("<= 1,500", 2000.0), Some(false));
        assert_eq!(met(">= 1.2 x best peer", 2.0), None);
    }
}
