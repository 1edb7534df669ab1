//! `--sentinel NAME` and `redis+sentinel://` URLs: the master found through
//! the sentinels of a testkit Sentinel deployment, and followed after a
//! failover.

use testkit::RedisSentinel;

use crate::common::*;

#[test]
fn sentinel_urls_and_the_sentinel_flag_reach_the_master_and_follow_a_failover() {
    let mut sentinel = RedisSentinel::start().expect("start the Sentinel deployment");
    let run = |args: &[&str]| {
        let o = output(leasehold(None).args(args));
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let url = sentinel.url();
    let token = run(&["--url", &url, "acquire", "sentinel/job", "--ttl", "60s"]);
    let token = token.split_whitespace().next().unwrap().to_owned();

    sentinel.failover().expect("SENTINEL FAILOVER");

    // `--sentinel NAME` with the sentinels as --url values: the lease
    // acquired before the failover is on the new master.
    let mut flag = vec!["--sentinel", "leasehold"];
    let addrs: Vec<String> = sentinel.sentinel_addrs();
    for a in &addrs {
        flag.extend(["--url", a.as_str()]);
    }
    let status = run(&[&flag[..], &["status", "sentinel/job", "--json"]].concat());
    let v: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert_eq!(v["data"]["held"], true, "{status}");
    run(&[&flag[..], &["release", "sentinel/job", &token]].concat());

    // LEASEHOLD_URL holds the whole Sentinel URL, commas and all.
    let o = output(leasehold(None).env("LEASEHOLD_URL", &url).args([
        "status",
        "sentinel/job",
        "--json",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["data"]["held"], false, "{}", stdout(&o));

    // A service the sentinels do not know: exit 2, naming it.
    let wrong = format!("redis+sentinel://{}/nope", addrs.join(","));
    let err = one_line_error(&["--url", &wrong, "status", "x"], None, 2);
    assert!(err.contains("`nope`"), "{err}");
}
