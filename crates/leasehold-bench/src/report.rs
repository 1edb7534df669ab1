//! Rows: what every workload reports, as a table for people and JSON Lines
//! for scripts.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One measured figure.
///
/// ```
/// let row = leasehold_bench::Row {
///     workload: "W3".into(),
///     figure: "handoffs_per_s".into(),
///     value: 6120.0,
///     unit: "1/s".into(),
///     limit: Some(9800.0),
///     limit_of: Some("acquire, GET, SET, release in series at -c 1".into()),
///     share: Some(6120.0 / 9800.0),
///     target: Some(">= 5000".into()),
///     met: Some(true),
///     note: None,
/// };
/// let line = leasehold_bench::row_json(&row);
/// assert!(line.starts_with(r#"{"type":"figure","data":{"workload":"W3","figure":"handoffs_per_s""#));
/// assert_eq!(leasehold_bench::parse_row_json(&line), Some(row));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `W0` to `W5`.
    pub workload: String,
    /// A plain name: `cycles_per_s`, `cycle_p50_us`, `handoffs_per_s`,
    /// `lost_updates`, `lua_secs_to_sell_out`, ... The unit ends the name
    /// where there is one.
    pub figure: String,
    /// The measured value.
    pub value: f64,
    /// `1/s`, `us`, `ms`, `s`, `MiB`, `count`, `ratio`, ...
    pub unit: String,
    /// The physical limit for this figure measured in the same run (from
    /// W0), in the same unit; `None` where there is none.
    pub limit: Option<f64>,
    /// What the limit is made of (`SET NX PX + EVAL in series at -c 1`).
    pub limit_of: Option<String>,
    /// leasehold's share of the limit: `value / limit` for rates, `limit /
    /// value` for times; near 1 is as fast as the server allows.
    pub share: Option<f64>,
    /// The target of the repository's BENCH.md for this figure (`>= 250000`,
    /// `<= 0.5`, `= 0`).
    pub target: Option<String>,
    /// Whether the target is met; `None` when it needs the peers' figures
    /// (see [`crate::peers`]) or there is no target.
    pub met: Option<bool>,
    /// Anything a reader must know to read the figure right.
    pub note: Option<String>,
}

/// Whether a bigger or a smaller value is better; decides the share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Better {
    Higher,
    Lower,
}

impl Row {
    pub(crate) fn new(workload: &str, figure: &str, value: f64, unit: &str) -> Row {
        Row {
            workload: workload.to_owned(),
            figure: figure.to_owned(),
            value,
            unit: unit.to_owned(),
            limit: None,
            limit_of: None,
            share: None,
            target: None,
            met: None,
            note: None,
        }
    }

    /// Sets the limit and computes the share.
    pub(crate) fn limit(mut self, limit: Option<f64>, of: &str, better: Better) -> Row {
        if let Some(limit) = limit.filter(|l| l.is_finite() && *l > 0.0) {
            self.limit = Some(limit);
            self.limit_of = Some(of.to_owned());
            self.share = match better {
                Better::Higher => Some(self.value / limit),
                Better::Lower if self.value > 0.0 => Some(limit / self.value),
                Better::Lower => None,
            };
        }
        self
    }

    /// `value >= min`.
    pub(crate) fn at_least(self, min: f64) -> Row {
        let met = self.value >= min;
        self.target(format!(">= {}", fmt_num(min)), Some(met))
    }

    /// `value <= max`.
    pub(crate) fn at_most(self, max: f64) -> Row {
        let met = self.value <= max;
        self.target(format!("<= {}", fmt_num(max)), Some(met))
    }

    /// `value <= max`, the value rounded to two decimals first (as the table
    /// shows it): for averages where a few calls at start-up are noise.
    pub(crate) fn at_most_rounded(self, max: f64) -> Row {
        let met = (self.value * 100.0).round() / 100.0 <= max;
        self.target(format!("<= {}", fmt_num(max)), Some(met))
    }

    /// `value == want`.
    pub(crate) fn exactly(self, want: f64) -> Row {
        let met = self.value == want;
        self.target(format!("= {}", fmt_num(want)), Some(met))
    }

    pub(crate) fn target(mut self, text: String, met: Option<bool>) -> Row {
        self.target = Some(text);
        self.met = met;
        self
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Row {
        self.note = Some(note.into());
        self
    }
}

/// The row as one line of JSON (no newline): `{"type":"figure","data":{..}}`
/// with every field of [`Row`] in `data`, `null` for what is absent. One
/// object per line is the `--json` contract of `leasehold bench`.
pub fn row_json(row: &Row) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        r#type: &'static str,
        data: &'a Row,
    }
    serde_json::to_string(&Line {
        r#type: "figure",
        data: row,
    })
    .expect("a Row always serializes")
}

/// Reads back a line written by [`row_json`]; `None` for anything else
/// (other lines of a JSON Lines stream, blank lines).
pub fn parse_row_json(line: &str) -> Option<Row> {
    #[derive(Deserialize)]
    struct Line {
        r#type: String,
        data: Row,
    }
    let line: Line = serde_json::from_str(line.trim()).ok()?;
    (line.r#type == "figure").then_some(line.data)
}

/// The rows as a plain-text table, one section per workload, with the
/// limit, the share and the target side by side.
pub fn format_table(rows: &[Row]) -> String {
    let head = [
        "workload", "figure", "value", "unit", "limit", "share", "target", "met", "note",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.workload.clone(),
                r.figure.clone(),
                fmt_num(r.value),
                r.unit.clone(),
                r.limit.map(fmt_num).unwrap_or_default(),
                r.share
                    .map(|s| format!("{:.0}%", s * 100.0))
                    .unwrap_or_default(),
                r.target.clone().unwrap_or_default(),
                match r.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => String::new(),
                },
                r.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    // The note is last and not padded.
    width[8] = 0;
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            let pad = w.saturating_sub(c.chars().count());
            // Numbers right-aligned, text left-aligned.
            if matches!(i, 2 | 4 | 5) {
                let _ = write!(s, "{}{c}  ", " ".repeat(pad));
            } else {
                let _ = write!(s, "{c}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut out, &head.map(String::from));
    let rule: Vec<String> = width
        .iter()
        .enumerate()
        .map(|(i, w)| "-".repeat(if i == 8 { 4 } else { *w }))
        .collect();
    line(&mut out, &rule);
    let mut last: Option<&str> = None;
    for (row, cells) in rows.iter().zip(&cells) {
        if last.is_some_and(|l| l != row.workload) {
            out.push('\n');
        }
        last = Some(&row.workload);
        line(&mut out, cells);
    }
    let limits: Vec<String> = {
        let mut seen = Vec::new();
        for r in rows {
            if let Some(of) = &r.limit_of {
                let s = format!("{} {}: {of}", r.workload, r.figure);
                seen.push(s);
            }
        }
        seen
    };
    if !limits.is_empty() {
        out.push_str("\nlimit = W0's floor for the same Redis commands, this run (BENCH.md at the repository's root, \"Floors\"):\n");
        for l in limits {
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}

/// Prints [`format_table`] on stdout.
pub fn print_table(rows: &[Row]) {
    print!("{}", format_table(rows));
}

/// A number for people: thousands separated above 1,000, three
/// significant digits below.
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let n = v.round() as i128;
        let digits = n.unsigned_abs().to_string();
        let mut s = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                s.push(',');
            }
            s.push(c);
        }
        if n < 0 { format!("-{s}") } else { s }
    } else if v == v.trunc() {
        format!("{v:.0}")
    } else {
        let s = if a >= 100.0 {
            format!("{v:.1}")
        } else if a >= 10.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.3}")
        };
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(1234567.4), "1,234,567");
        assert_eq!(fmt_num(-2500.0), "-2,500");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(12.345), "12.35");
        assert_eq!(fmt_num(0.1234), "0.123");
        assert_eq!(fmt_num(0.9), "0.9");
        assert_eq!(fmt_num(0.0001), "0");
    }

    #[test]
    fn shares_and_targets() {
        let r = Row::new("W1", "cycle_p50_us", 100.0, "us")
            .limit(Some(50.0), "x", Better::Lower)
            .at_most(50.0);
        assert_eq!(r.share, Some(0.5));
        assert_eq!(r.met, Some(false));
        let r = Row::new("W2", "cycles_per_s", 300.0, "1/s")
            .limit(Some(600.0), "x", Better::Higher)
            .at_least(250.0);
        assert_eq!(r.share, Some(0.5));
        assert_eq!(r.met, Some(true));
        let table = format_table(&[r]);
        assert!(table.contains("cycles_per_s"));
        assert!(table.contains(">= 250"));
    }
}
