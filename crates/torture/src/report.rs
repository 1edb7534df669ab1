//! The results: one row per scenario, as a table or as JSON Lines.
//!
//! # JSON
//!
//! With `--json`, stdout carries only JSON Lines, each `{"type": ..., "data": ...}`:
//!
//! - `{"type":"scenario","data":{...}}`: one per scenario run, the fields of
//!   [`Row`] (`findings` holds every figure of [`Findings`]);
//! - `{"type":"summary","data":{"scenarios":N,"failed":N,"not_run":N,"seconds":S}}`:
//!   last (`not_run`: scenarios whose servers or workers could not start;
//!   also `cluster` and `redlock`: the backend the run used, and `tls`:
//!   whether the clients talked TLS).

use serde::Serialize;

use crate::checker::Findings;
use crate::workers::Arm;

/// How a scenario ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every check held.
    Pass,
    /// A check failed that must hold (or the control arm did not fail).
    Fail,
    /// Only C2 failed, on a fault outside what a lock on one server can
    /// promise; the fences still kept the data right.
    Documented,
    /// The control arm broke the checks, as it must.
    ControlFailed,
}

impl Verdict {
    /// As printed in the table.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Documented => "documented",
            Verdict::ControlFailed => "control-failed-as-expected",
        }
    }
}

/// One scenario's result.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The scenario's name.
    pub scenario: String,
    /// It ran on a Redis Cluster (`--cluster`), not on one server.
    pub cluster: bool,
    /// It ran on independent masters (`--redlock`), not on one server.
    pub redlock: bool,
    /// Every client talked TLS to the lock (`--tls`).
    pub tls: bool,
    /// The lock under test.
    pub arm: Arm,
    /// How long the scenario took, set-up and checks included.
    pub seconds: f64,
    /// What the checkers found.
    pub findings: Findings,
    /// The checks that failed (`C1`..`C5`).
    pub breaches: Vec<String>,
    /// Faults that could not be injected (a missing tool, say).
    pub fault_errors: Vec<String>,
    /// The verdict.
    pub verdict: Verdict,
}

/// The rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let head = [
        "scenario",
        "ops",
        "errors",
        "faults",
        "overlaps",
        "lost upd",
        "stale acc",
        "stale ref",
        "fence back",
        "worst rec ms",
        "secs",
        "verdict",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|s| (*s).to_owned()).collect()];
    for r in rows {
        let f = &r.findings;
        cells.push(vec![
            r.scenario.clone(),
            f.operations.to_string(),
            f.errors.to_string(),
            format!("{}+{}c", f.faults, f.cancellations),
            f.overlaps.to_string(),
            f.lost_updates.to_string(),
            f.stale_accepted.to_string(),
            f.stale_refused.to_string(),
            f.fence_regressions.to_string(),
            f.worst_recovery_ms
                .map_or("-".into(), |m| format!("{m:.0}")),
            format!("{:.1}", r.seconds),
            if r.breaches.is_empty() {
                r.verdict.label().to_owned()
            } else {
                format!("{} ({})", r.verdict.label(), r.breaches.join(","))
            },
        ]);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|i| cells.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 || i == head.len() - 1 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if n == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    out.push_str(
        "errors: operations failed or of unknown outcome; faults: injected + cancellations; stale acc: writes accepted below a fence already seen; \
         stale ref: stale accesses the fence refused; fence back: grants whose fence did not rise\n",
    );
    out
}

/// One JSON line: `{"type": kind, "data": data}`.
pub fn json_line(kind: &str, data: &impl Serialize) -> String {
    serde_json::json!({ "type": kind, "data": data }).to_string()
}
