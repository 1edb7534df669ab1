//! [`summarize`]: interleaved passes of W1 and W2 by leasehold and the
//! peers on one server (`cargo xtask bench --interleave K`), reduced to the
//! median and spread of each library's figures and the ratios of medians.
//!
//! One run of W1 swings two-fold with how busy the cores are; a ratio of
//! two runs taken a minute apart says more about that minute than about the
//! libraries. Interleaving the libraries K times and comparing medians
//! leaves the noise to the spread, where it can be seen.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use super::num;
use crate::report::{Row, fmt_num};

/// The name leasehold's passes go by.
pub const LEASEHOLD: &str = "leasehold";

/// One library's figures in one pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassResult {
    /// 1 to K.
    pub pass: usize,
    /// `leasehold`, `node-redlock`, `rslock`.
    pub library: String,
    /// W1 cycles/s.
    pub w1_cycles_per_s: Option<f64>,
    /// W1 p50 of one cycle, µs.
    pub w1_p50_us: Option<f64>,
    /// W2 cycles/s.
    pub w2_cycles_per_s: Option<f64>,
    /// This pass's floor: W0's `raw_cycle_p50_us`, measured once per pass.
    pub raw_cycle_p50_us: Option<f64>,
    /// Why figures are missing, if they are.
    pub problem: Option<String>,
}

impl PassResult {
    /// leasehold's pass from its rows (W1 and W2).
    ///
    /// ```
    /// use leasehold_bench::{Row, peers::PassResult};
    /// let row = |w: &str, f: &str, v| Row {
    ///     workload: w.into(), figure: f.into(), value: v, unit: "us".into(),
    ///     limit: None, limit_of: None, share: None, target: None, met: None, note: None,
    /// };
    /// let rows = [row("W1", "cycle_p50_us", 100.0), row("W0", "raw_cycle_p50_us", 80.0)];
    /// let p = PassResult::from_rows(1, &rows, Some(80.0), None);
    /// assert_eq!(p.w1_p50_us, Some(100.0));
    /// assert_eq!(p.p50_over_floor(), Some(1.25));
    /// ```
    pub fn from_rows(
        pass: usize,
        rows: &[Row],
        floor: Option<f64>,
        problem: Option<String>,
    ) -> PassResult {
        let get = |w: &str, f: &str| {
            rows.iter()
                .find(|r| r.workload == w && r.figure == f)
                .map(|r| r.value)
        };
        PassResult {
            pass,
            library: LEASEHOLD.into(),
            w1_cycles_per_s: get("W1", "cycles_per_s"),
            w1_p50_us: get("W1", "cycle_p50_us"),
            w2_cycles_per_s: get("W2", "cycles_per_s"),
            raw_cycle_p50_us: floor,
            problem,
        }
    }

    /// A peer's pass from the JSON lines its script printed (`W1`: its
    /// `cycles_per_s` and `p50_us`; `W2`: its `cycles_per_s`); `problems`
    /// are what went wrong running it.
    ///
    /// ```
    /// use leasehold_bench::peers::PassResult;
    /// let lines = [
    ///     r#"{"lib":"rslock","workload":"W1","variant":"default","cycles_per_s":7000.0,"p50_us":140.0}"#,
    ///     r#"{"lib":"rslock","workload":"W2","variant":"default","cycles_per_s":150000.0}"#,
    /// ];
    /// let p = PassResult::from_peer_lines(2, "rslock", &lines, Some(70.0), &[]);
    /// assert_eq!(p.w2_cycles_per_s, Some(150000.0));
    /// assert_eq!(p.p50_over_floor(), Some(2.0));
    /// assert_eq!(p.problem, None);
    /// ```
    pub fn from_peer_lines(
        pass: usize,
        library: &str,
        lines: &[impl AsRef<str>],
        floor: Option<f64>,
        problems: &[String],
    ) -> PassResult {
        let records = super::records(lines);
        let of = |w: &str| {
            records.iter().find(|v| {
                v.get("workload").and_then(|x| x.as_str()) == Some(w)
                    && v.get("variant").and_then(|x| x.as_str()) != Some("aggressive")
            })
        };
        let error = records
            .iter()
            .find(|v| v.get("workload").and_then(|x| x.as_str()) == Some("ERROR"))
            .and_then(|v| v.get("error")?.as_str())
            .map(|e| e.lines().next().unwrap_or_default().to_owned());
        let w1 = of("W1");
        let w2 = of("W2");
        let mut why: Vec<String> = problems.to_vec();
        why.extend(error);
        if w1.is_none() && why.is_empty() {
            why.push("printed no W1 line".into());
        }
        if w2.is_none() && why.is_empty() {
            why.push("printed no W2 line".into());
        }
        PassResult {
            pass,
            library: library.into(),
            w1_cycles_per_s: w1.and_then(|v| num(v, "cycles_per_s")),
            w1_p50_us: w1.and_then(|v| num(v, "p50_us")),
            w2_cycles_per_s: w2.and_then(|v| num(v, "cycles_per_s")),
            raw_cycle_p50_us: floor,
            problem: (!why.is_empty()).then(|| why.join("; ")),
        }
    }

    /// W1 p50 over this pass's raw floor.
    pub fn p50_over_floor(&self) -> Option<f64> {
        let (p50, floor) = (self.w1_p50_us?, self.raw_cycle_p50_us?);
        (floor > 0.0).then(|| p50 / floor)
    }
}

/// The median and the range of some passes' values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// The median (of an even count: the mean of the middle two).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

/// The [`Spread`] of `values` (non-finite ones left out); `None` for none.
///
/// ```
/// let s = leasehold_bench::peers::spread([3.0, 1.0, 10.0, 2.0]).unwrap();
/// assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 10.0, 4));
/// assert!(leasehold_bench::peers::spread([]).is_none());
/// ```
pub fn spread(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = match n {
        0 => return None,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// One library over all passes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LibrarySummary {
    /// `leasehold`, `node-redlock`, `rslock`.
    pub library: String,
    /// Passes it ran in.
    pub passes: usize,
    /// W1 cycles/s.
    pub w1_cycles_per_s: Option<Spread>,
    /// W1 p50, µs.
    pub w1_p50_us: Option<Spread>,
    /// W2 cycles/s.
    pub w2_cycles_per_s: Option<Spread>,
    /// W1 p50 / the same pass's `raw_cycle_p50_us`, per pass.
    pub w1_p50_over_raw_cycle_p50: Option<Spread>,
    /// Why some passes lack figures (each reason once).
    pub problems: Vec<String>,
}

/// leasehold's median against the best peer's (or a floor's) on one figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatioSummary {
    /// `W1 cycles/s`, `W1 p50 us`, `W2 cycles/s`, `W1 p50 / raw_cycle_p50`.
    pub figure: String,
    /// leasehold's median.
    pub leasehold: Option<f64>,
    /// The peer compared with: the best median, or the one the target
    /// names; `None` for the floor's ratio.
    pub peer: Option<String>,
    /// That peer's median.
    pub peer_median: Option<f64>,
    /// leasehold / peer; for the floor, the median of per-pass ratios.
    pub ratio: Option<f64>,
    /// `higher` or `lower` is better.
    pub better: &'static str,
    /// BENCH.md's target on the ratio.
    pub target: Option<String>,
    /// Whether the ratio meets it.
    pub met: Option<bool>,
}

/// What [`summarize`] makes of the passes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Passes run.
    pub passes: usize,
    /// The raw floor (`raw_cycle_p50_us`) over the passes.
    pub raw_cycle_p50_us: Option<Spread>,
    /// Each library, in the order they first appear.
    pub libraries: Vec<LibrarySummary>,
    /// The ratios of medians, with BENCH.md's targets.
    pub ratios: Vec<RatioSummary>,
}

/// Medians and spreads per library, the floor's ratio per pass, and the
/// ratios leasehold / best peer of the medians (W1 cycles/s at least 1.2 x
/// the best peer, W2 at least 1.2 x rslock, W1 p50 at most 1.25 x the raw
/// floor: BENCH.md's targets).
///
/// ```
/// use leasehold_bench::peers::{PassResult, summarize};
/// let pass = |pass, library: &str, w1, p50| PassResult {
///     pass, library: library.into(), w1_cycles_per_s: Some(w1), w1_p50_us: Some(p50),
///     w2_cycles_per_s: None, raw_cycle_p50_us: Some(100.0), problem: None,
/// };
/// let s = summarize(&[
///     pass(1, "leasehold", 9000.0, 110.0),
///     pass(1, "rslock", 6000.0, 150.0),
/// ]);
/// let w1 = s.ratios.iter().find(|r| r.figure == "W1 cycles/s").unwrap();
/// assert_eq!(w1.ratio, Some(1.5));
/// assert_eq!(w1.met, Some(true));
/// ```
pub fn summarize(passes: &[PassResult]) -> Summary {
    let mut names: Vec<String> = Vec::new();
    for p in passes {
        if !names.contains(&p.library) {
            names.push(p.library.clone());
        }
    }
    let libraries: Vec<LibrarySummary> = names
        .iter()
        .map(|name| {
            let mine: Vec<&PassResult> = passes.iter().filter(|p| &p.library == name).collect();
            let problems: BTreeSet<String> =
                mine.iter().filter_map(|p| p.problem.clone()).collect();
            LibrarySummary {
                library: name.clone(),
                passes: mine.len(),
                w1_cycles_per_s: spread(mine.iter().filter_map(|p| p.w1_cycles_per_s)),
                w1_p50_us: spread(mine.iter().filter_map(|p| p.w1_p50_us)),
                w2_cycles_per_s: spread(mine.iter().filter_map(|p| p.w2_cycles_per_s)),
                w1_p50_over_raw_cycle_p50: spread(mine.iter().filter_map(|p| p.p50_over_floor())),
                problems: problems.into_iter().collect(),
            }
        })
        .collect();
    let floor = spread({
        let mut by_pass: Vec<(usize, f64)> = passes
            .iter()
            .filter_map(|p| Some((p.pass, p.raw_cycle_p50_us?)))
            .collect();
        by_pass.sort_by_key(|(pass, _)| *pass);
        by_pass.dedup_by_key(|(pass, _)| *pass);
        by_pass.into_iter().map(|(_, f)| f)
    });
    let ours = libraries.iter().find(|l| l.library == LEASEHOLD);
    let peers: Vec<&LibrarySummary> = libraries
        .iter()
        .filter(|l| l.library != LEASEHOLD)
        .collect();
    let median = |s: Option<Spread>| s.map(|s| s.median);
    type Get = fn(&LibrarySummary) -> Option<Spread>;
    let versus = |figure: &str,
                  get: Get,
                  higher: bool,
                  only: Option<&str>,
                  target: Option<f64>|
     -> RatioSummary {
        let mine = ours.and_then(|l| median(get(l)));
        let best = peers
            .iter()
            .filter(|p| only.is_none_or(|o| p.library == o))
            .filter_map(|p| Some((p.library.clone(), median(get(p))?)))
            .reduce(|a, b| {
                let b_better = if higher { b.1 > a.1 } else { b.1 < a.1 };
                if b_better { b } else { a }
            });
        let ratio = mine
            .zip(best.as_ref().map(|b| b.1))
            .and_then(|(m, p)| (p != 0.0).then(|| m / p));
        RatioSummary {
            figure: figure.into(),
            leasehold: mine,
            peer: best
                .as_ref()
                .map(|b| b.0.clone())
                .or_else(|| only.map(|o| format!("{o} (did not run)"))),
            peer_median: best.map(|b| b.1),
            ratio,
            better: if higher { "higher" } else { "lower" },
            target: target.map(|t| format!(">= {t}")),
            met: target.and_then(|t| ratio.map(|r| r >= t)),
        }
    };
    let floor_ratio = ours.and_then(|l| median(l.w1_p50_over_raw_cycle_p50));
    let ratios = vec![
        versus("W1 cycles/s", |l| l.w1_cycles_per_s, true, None, Some(1.2)),
        versus("W1 p50 us", |l| l.w1_p50_us, false, None, None),
        versus("W2 cycles/s", |l| l.w2_cycles_per_s, true, None, None),
        versus(
            "W2 cycles/s",
            |l| l.w2_cycles_per_s,
            true,
            Some("rslock"),
            Some(1.2),
        ),
        RatioSummary {
            figure: "W1 p50 / raw_cycle_p50".into(),
            leasehold: ours.and_then(|l| median(l.w1_p50_us)),
            peer: None,
            peer_median: median(floor),
            ratio: floor_ratio,
            better: "lower",
            target: Some("<= 1.25".into()),
            met: floor_ratio.map(|r| r <= 1.25),
        },
    ];
    Summary {
        passes: passes.iter().map(|p| p.pass).max().unwrap_or(0),
        raw_cycle_p50_us: floor,
        libraries,
        ratios,
    }
}

/// The summary as two plain-text tables: per library, then the ratios.
pub fn format_interleave(summary: &Summary) -> String {
    let s = |x: Option<Spread>| match x {
        Some(s) if s.n > 1 => format!(
            "{} ({}–{})",
            fmt_num(s.median),
            fmt_num(s.min),
            fmt_num(s.max)
        ),
        Some(s) => fmt_num(s.median),
        None => "-".into(),
    };
    let mut rows = vec![
        [
            "library",
            "passes",
            "W1 cycles/s",
            "W1 p50 us",
            "W2 cycles/s",
            "W1 p50 / raw_cycle_p50",
            "missing",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for l in &summary.libraries {
        rows.push(vec![
            l.library.clone(),
            l.passes.to_string(),
            s(l.w1_cycles_per_s),
            s(l.w1_p50_us),
            s(l.w2_cycles_per_s),
            s(l.w1_p50_over_raw_cycle_p50),
            l.problems.join("; "),
        ]);
    }
    rows.push(vec![
        "(raw floor)".into(),
        summary
            .raw_cycle_p50_us
            .map_or("0".into(), |f| f.n.to_string()),
        String::new(),
        format!("{} raw_cycle_p50", s(summary.raw_cycle_p50_us)),
        String::new(),
        String::new(),
        String::new(),
    ]);
    let mut out = format!(
        "median (min–max) over {} interleaved pass(es), same server\n\n",
        summary.passes
    );
    out.push_str(&super::format::table_vec(&rows));
    let mut rows = vec![
        [
            "figure",
            "leasehold",
            "vs",
            "their median",
            "ratio",
            "better",
            "target",
            "met",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let f = |x: Option<f64>| x.map(fmt_num).unwrap_or_else(|| "-".into());
    for r in &summary.ratios {
        rows.push(vec![
            r.figure.clone(),
            f(r.leasehold),
            r.peer.clone().unwrap_or_else(|| match r.figure.as_str() {
                "W1 p50 / raw_cycle_p50" => "raw floor (median of per-pass ratios)".into(),
                _ => "(no peer ran)".into(),
            }),
            f(r.peer_median),
            r.ratio.map(|x| format!("{x:.2}")).unwrap_or_default(),
            if r.better == "higher" { "> 1" } else { "< 1" }.into(),
            r.target.clone().unwrap_or_default(),
            match r.met {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => String::new(),
            },
        ]);
    }
    let _ = write!(out, "\n## leasehold / best peer (medians)\n\n");
    out.push_str(&super::format::table_vec(&rows));
    out
}

/// The `--json` records: one per pass and library
/// (`{"type":"interleave_pass","data":{..}}`), one per library
/// (`interleave_library`), one per ratio (`interleave_ratio`).
///
/// ```
/// use leasehold_bench::peers::{PassResult, interleave_json, summarize};
/// let p = PassResult {
///     pass: 1, library: "leasehold".into(), w1_cycles_per_s: Some(1.0), w1_p50_us: None,
///     w2_cycles_per_s: None, raw_cycle_p50_us: None, problem: None,
/// };
/// let lines = interleave_json(&[p.clone()], &summarize(&[p]));
/// assert!(lines[0].starts_with(r#"{"type":"interleave_pass","data":{"pass":1"#));
/// ```
pub fn interleave_json(passes: &[PassResult], summary: &Summary) -> Vec<String> {
    #[derive(Serialize)]
    struct Line<'a, T: Serialize> {
        r#type: &'static str,
        data: &'a T,
    }
    fn line<T: Serialize>(kind: &'static str, data: &T) -> String {
        serde_json::to_string(&Line { r#type: kind, data }).expect("serializes")
    }
    let mut out: Vec<String> = passes.iter().map(|p| line("interleave_pass", p)).collect();
    out.extend(
        summary
            .libraries
            .iter()
            .map(|l| line("interleave_library", l)),
    );
    out.extend(summary.ratios.iter().map(|r| line("interleave_ratio", r)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(
        pass: usize,
        library: &str,
        w1: Option<f64>,
        p50: Option<f64>,
        w2: Option<f64>,
        floor: f64,
    ) -> PassResult {
        PassResult {
            pass,
            library: library.into(),
            w1_cycles_per_s: w1,
            w1_p50_us: p50,
            w2_cycles_per_s: w2,
            raw_cycle_p50_us: Some(floor),
            problem: None,
        }
    }

    /// Three passes: medians and ranges per library, the ratios of the
    /// medians, and the floor's ratio as the median of per-pass ratios
    /// (not the ratio of medians).
    #[test]
    fn medians_spreads_and_ratios() {
        let passes = vec![
            pass(
                1,
                "leasehold",
                Some(9_000.0),
                Some(120.0),
                Some(200_000.0),
                100.0,
            ),
            pass(
                1,
                "node-redlock",
                Some(12_000.0),
                Some(80.0),
                Some(90_000.0),
                100.0,
            ),
            pass(
                1,
                "rslock",
                Some(6_000.0),
                Some(160.0),
                Some(150_000.0),
                100.0,
            ),
            pass(
                2,
                "leasehold",
                Some(10_000.0),
                Some(100.0),
                Some(180_000.0),
                50.0,
            ),
            pass(
                2,
                "node-redlock",
                Some(4_000.0),
                Some(250.0),
                Some(70_000.0),
                50.0,
            ),
            pass(2, "rslock", Some(7_000.0), Some(140.0), None, 50.0),
            pass(
                3,
                "leasehold",
                Some(11_000.0),
                Some(90.0),
                Some(220_000.0),
                80.0,
            ),
            pass(
                3,
                "node-redlock",
                Some(5_000.0),
                Some(200.0),
                Some(80_000.0),
                80.0,
            ),
            PassResult {
                problem: Some("rslock: timed out after 120 s".into()),
                ..pass(3, "rslock", None, None, None, 80.0)
            },
        ];
        let s = summarize(&passes);
        assert_eq!(s.passes, 3);
        let lib = |n: &str| s.libraries.iter().find(|l| l.library == n).unwrap();
        let ours = lib("leasehold");
        assert_eq!(
            ours.w1_cycles_per_s,
            Some(Spread {
                median: 10_000.0,
                min: 9_000.0,
                max: 11_000.0,
                n: 3
            })
        );
        // Per pass: 120/100 = 1.2, 100/50 = 2.0, 90/80 = 1.125.
        let f = ours.w1_p50_over_raw_cycle_p50.unwrap();
        assert_eq!((f.median, f.min, f.max), (1.2, 1.125, 2.0));
        let rs = lib("rslock");
        assert_eq!(rs.w1_cycles_per_s.unwrap().median, 6_500.0);
        assert_eq!(rs.w2_cycles_per_s.unwrap().n, 1);
        assert_eq!(rs.problems, vec!["rslock: timed out after 120 s"]);
        assert_eq!(s.raw_cycle_p50_us.unwrap().median, 80.0);
        assert_eq!(s.raw_cycle_p50_us.unwrap().n, 3);

        let ratio = |fig: &str, peer: &str| {
            s.ratios
                .iter()
                .find(|r| r.figure == fig && r.peer.as_deref().is_some_and(|p| p.starts_with(peer)))
                .unwrap_or_else(|| panic!("{fig} vs {peer}: {:?}", s.ratios))
                .clone()
        };
        // The best peer's median: rslock 6,500 beats node-redlock's 5,000
        // even though node-redlock had the best single pass.
        let w1 = ratio("W1 cycles/s", "rslock");
        assert_eq!(w1.peer_median, Some(6_500.0));
        assert!((w1.ratio.unwrap() - 10_000.0 / 6_500.0).abs() < 1e-12);
        assert_eq!(w1.met, Some(true));
        // Lower is better: rslock's 150 us is the best peer median.
        let p50 = ratio("W1 p50 us", "rslock");
        assert_eq!(p50.ratio, Some(100.0 / 150.0));
        assert_eq!(p50.met, None);
        let w2 = ratio("W2 cycles/s", "rslock");
        assert_eq!(w2.ratio, Some(200_000.0 / 150_000.0));
        assert_eq!(w2.met, None, "the best peer's W2 has no target");
        let vs_rslock = s
            .ratios
            .iter()
            .find(|r| r.figure == "W2 cycles/s" && r.target.is_some())
            .unwrap();
        assert_eq!(vs_rslock.peer.as_deref(), Some("rslock"));
        assert_eq!(vs_rslock.met, Some(true));
        let floor = s
            .ratios
            .iter()
            .find(|r| r.figure == "W1 p50 / raw_cycle_p50")
            .unwrap();
        assert_eq!(floor.ratio, Some(1.2));
        assert_eq!(floor.met, Some(true));

        let table = format_interleave(&s);
        assert!(table.contains("10,000 (9,000–11,000)"), "{table}");
        assert!(table.contains("timed out"), "{table}");
        let json = interleave_json(&passes, &s);
        assert_eq!(json.len(), passes.len() + 3 + s.ratios.len());
        assert!(
            json.iter()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        );
    }

    /// A peer that never ran is in the table as missing, with why, and the
    /// ratios that need it have none (not a made-up number).
    #[test]
    fn a_missing_peer_is_shown_not_dropped() {
        let lines: [&str; 0] = [];
        let missing = PassResult::from_peer_lines(
            1,
            "rslock",
            &lines,
            Some(100.0),
            &["rslock: not set up (rust/target/release/peers-rslock is missing)".into()],
        );
        assert_eq!(missing.w1_cycles_per_s, None);
        let ours = pass(1, "leasehold", Some(9_000.0), Some(120.0), Some(1.0), 100.0);
        let s = summarize(&[ours, missing]);
        let rs = s.libraries.iter().find(|l| l.library == "rslock").unwrap();
        assert!(rs.problems[0].contains("not set up"));
        let w2 = s
            .ratios
            .iter()
            .find(|r| r.target.is_some() && r.figure == "W2 cycles/s")
            .unwrap();
        assert_eq!(w2.ratio, None);
        assert_eq!(w2.met, None);
        assert!(format_interleave(&s).contains("not set up"));
        // A script that printed an ERROR line: its first line is the why.
        let err = [
            r#"{"lib":"node-redlock","workload":"ERROR","error":"Error: connect ECONNREFUSED\n    at x"}"#,
        ];
        let p = PassResult::from_peer_lines(1, "node-redlock", &err, None, &[]);
        assert_eq!(p.problem.as_deref(), Some("Error: connect ECONNREFUSED"));
    }
}
