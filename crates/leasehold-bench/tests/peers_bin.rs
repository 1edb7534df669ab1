//! The `leasehold-bench-peers` binary's flags.

use std::process::Command;

/// `cargo xtask bench --no-peers` whose measured run fails passes
/// `--no-peers` twice; that must still print leasehold's rows, not a
/// usage error.
#[test]
fn no_peers_twice_is_no_peers() {
    let rows = std::env::temp_dir().join(format!("peers-bin-test-{}.jsonl", std::process::id()));
    std::fs::write(&rows, "").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_leasehold-bench-peers"))
        .arg("--rows")
        .arg(&rows)
        .args(["--url", "redis://127.0.0.1:1", "--peers", "no-such-dir"])
        .args(["--no-peers", "--no-peers"])
        .output()
        .expect("run leasehold-bench-peers");
    let _ = std::fs::remove_file(&rows);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    assert!(out.starts_with("## leasehold"), "{out}");
    assert!(!out.contains("peers:"), "ran the peers: {out}");
}

/// `--interleave 1` with the peers left out: leasehold's pass runs on a
/// private server with its own raw floor, the peers are in the records as
/// missing with why, and `--json` gives a record per pass and library, per
/// library and per ratio.
#[test]
fn interleave_reports_every_library_even_a_missing_one() {
    let o = Command::new(env!("CARGO_BIN_EXE_leasehold-bench-peers"))
        .args(["--interleave", "1", "--no-peers", "--peers", "no-such-dir"])
        .arg("--json")
        .output()
        .expect("run leasehold-bench-peers");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        records
            .iter()
            .filter(|r| r["type"] == kind)
            .map(|r| &r["data"])
            .collect()
    };
    let passes = of("interleave_pass");
    let libraries: Vec<&str> = passes
        .iter()
        .map(|p| p["library"].as_str().unwrap())
        .collect();
    assert_eq!(libraries, ["leasehold", "node-redlock", "rslock"], "{out}");
    let ours = passes[0];
    assert!(ours["w1_cycles_per_s"].as_f64().unwrap() > 0.0, "{ours}");
    assert!(ours["w2_cycles_per_s"].as_f64().unwrap() > 0.0, "{ours}");
    let floor = ours["raw_cycle_p50_us"].as_f64().unwrap();
    assert!(floor > 0.0, "{ours}");
    // Every library of the pass shares the pass's floor.
    assert!(
        passes
            .iter()
            .all(|p| p["raw_cycle_p50_us"].as_f64() == Some(floor))
    );
    for peer in &passes[1..] {
        assert!(peer["w1_cycles_per_s"].is_null(), "{peer}");
        assert_eq!(peer["problem"], "--no-peers", "{peer}");
    }
    assert_eq!(of("interleave_library").len(), 3, "{out}");
    let ratios = of("interleave_ratio");
    let floor_ratio = ratios
        .iter()
        .find(|r| r["figure"] == "W1 p50 / raw_cycle_p50")
        .expect("the floor's ratio");
    assert!(floor_ratio["ratio"].as_f64().unwrap() > 0.0);
    // No peer ran: the W1 ratio has none, rather than a made-up one.
    let w1 = ratios
        .iter()
        .find(|r| r["figure"] == "W1 cycles/s")
        .unwrap();
    assert!(w1["ratio"].is_null(), "{w1}");
    assert!(err.contains("interleave: pass 1/1: leasehold"), "{err}");
    assert!(err.contains("median (min–max)"), "{err}");
}
