//! The peers' figures and the comparison as plain-text tables.

use std::fmt::Write as _;

use serde_json::Value;

use super::compare::{Comparison, Direction};
use super::{num, records};
use crate::report::fmt_num;

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

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, w) in r.iter().zip(width) {
            let _ = write!(line, "{c}{}  ", " ".repeat(w - c.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(rule.join("  ").trim_end());
            out.push('\n');
        }
    }
    out
}
