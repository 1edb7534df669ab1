//! Printing: text for people, JSON Lines for scripts. Only JSON goes to
//! stdout with `--json`; a closed stdout (`| head`) ends quietly.

use std::io::Write;

use serde_json::{Value, json};

/// Prints one line on stdout. A broken pipe exits the process with 0: the
/// reader has all it wanted.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// Prints `{"type": kind, "data": data}` on one line.
pub fn record(kind: &str, data: Value) {
    line(&json!({ "type": kind, "data": data }).to_string());
}

/// A duration in milliseconds for JSON, or null.
pub fn ms(d: Option<std::time::Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_millis() as u64))
}

/// A duration for people: `4.2s`, `350ms`, `2m5s`, or `-`.
pub fn human(d: Option<std::time::Duration>) -> String {
    let Some(d) = d else {
        return "-".into();
    };
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{}s", ms / 60_000, (ms % 60_000) / 1_000)
    } else {
        format!("{}h{}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}
