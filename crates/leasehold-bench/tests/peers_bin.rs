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
